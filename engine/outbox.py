"""The outbox: intent recorded before delivery, completion after it, leases so one process sends each.

A pass registers what is due (`register`), then takes each entry just before sending it
(`take`): a lease taken at the start of a long pass would expire while the pass is still
busy with earlier messages, and another engine would send them too. While an entry is in
flight (sent, not yet recorded) its owner renews the lease (`renew`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # imported where used: `forewarn plan` reads the outbox (failing()) and must start fast
    from forewarn.engine.draft import Draft

LEASE_SECONDS = 60.0

INTENT, DELIVERED, RECORDED, FAILED = "intent", "delivered", "recorded", "failed"


def owner_id() -> str:
    """This process, as written into the leases it takes."""
    import socket  # here: `forewarn plan` reads the outbox and must start fast

    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    import socket

    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine: trust the lease's expiry only
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Entry(NamedTuple):
    """One outbox row."""

    key: str  # the Message-ID; a follow-up to refused recipients: "<Message-ID>#<its communication>"
    draft: Draft
    state: str
    attempts: int
    last_error: str | None
    not_after: str | None
    note: dict[str, object] | None = None  # a decision about the entry, stated in the record's meta

    @property
    def message_id(self) -> str:
        return self.draft.message_id


def key_of(draft: Draft) -> str:
    """The outbox key of DRAFT: its Message-ID, unless it is a follow-up that resends that message."""
    if draft.follow_up_of is None:
        return draft.message_id
    return f"{draft.message_id}#{draft.communication}"


_COLUMNS = {"follow_up_of": "TEXT", "note": "TEXT"}  # added after the first release: ALTERed into older logs


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS outbox ("
        " message_id TEXT PRIMARY KEY, communication TEXT NOT NULL, draft TEXT NOT NULL,"
        " state TEXT NOT NULL, owner TEXT, lease_until REAL NOT NULL DEFAULT 0,"
        " attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, not_after TEXT,"
        " created REAL NOT NULL, updated REAL NOT NULL, follow_up_of TEXT, note TEXT)"
    )
    have = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
    for name, kind in _COLUMNS.items():
        if name not in have:
            conn.execute(f"ALTER TABLE outbox ADD COLUMN {name} {kind}")
    conn.execute("CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state)")


def _stamp(deadline: datetime | None) -> str | None:
    return deadline.strftime("%Y-%m-%dT%H:%M:%SZ") if deadline else None


def _insert(
    conn: sqlite3.Connection, draft: Draft, state: str, not_after: str | None, error: str | None = None
) -> None:
    from forewarn.engine.draft import draft_to_json

    now = time.time()
    conn.execute(
        "INSERT OR IGNORE INTO outbox (message_id, communication, draft, state, owner, lease_until, attempts,"
        " last_error, not_after, created, updated, follow_up_of) VALUES (?, ?, ?, ?, NULL, 0, ?, ?, ?, ?, ?, ?)",
        (
            key_of(draft),
            draft.communication,
            json.dumps(draft_to_json(draft)),
            state,
            0 if error is None else 1,
            None if error is None else error[:500],
            not_after,
            now,
            now,
            draft.follow_up_of,
        ),
    )


def register(conn: sqlite3.Connection, drafts: Sequence[Draft], deadlines: dict[str, datetime]) -> list[str]:
    """Record the due drafts as intents (inside the caller's write transaction): the keys this pass
    may send, in order, followed by the follow-ups still owed (refused recipients to retry).

    A draft already in the outbox keeps its row; one not yet delivered takes the fresh draft
    (the customer's contacts may have been corrected since). Recorded and failed entries are
    left out (a failed one until `retry_failed`); leases are only taken by `take`."""
    from forewarn.engine.draft import draft_to_json

    keys: list[str] = []
    for draft in drafts:
        key = key_of(draft)
        row = conn.execute("SELECT state FROM outbox WHERE message_id = ?", (key,)).fetchone()
        if row is None:
            _insert(conn, draft, INTENT, _stamp(deadlines.get(draft.message_id)))
        elif row[0] in (RECORDED, FAILED):
            continue
        elif row[0] == INTENT:
            conn.execute(
                "UPDATE outbox SET draft = ? WHERE message_id = ?", (json.dumps(draft_to_json(draft)), key)
            )
        keys.append(key)
    seen = set(keys)
    for (key,) in conn.execute(
        "SELECT message_id FROM outbox WHERE follow_up_of IS NOT NULL AND state IN (?, ?) ORDER BY created, message_id",
        (INTENT, DELIVERED),
    ).fetchall():
        if key not in seen:
            keys.append(key)
    return keys


def take(conn: sqlite3.Connection, key: str, owner: str, lease: float) -> Entry | None:
    """Lease the entry KEY to OWNER for LEASE seconds (inside the caller's write transaction), or None:
    it is recorded, failed, gone, or leased to another live process."""
    from forewarn.engine.draft import draft_from_json

    row = conn.execute(
        "SELECT state, owner, lease_until, attempts, last_error, draft, not_after, note FROM outbox"
        " WHERE message_id = ?",
        (key,),
    ).fetchone()
    if row is None:
        return None
    state, holder, lease_until, attempts, last_error, stored, not_after, note = row
    now = time.time()
    if state in (RECORDED, FAILED):
        return None
    if holder and holder != owner and lease_until > now and _owner_alive(holder):
        return None
    conn.execute(
        "UPDATE outbox SET owner = ?, lease_until = ?, updated = ? WHERE message_id = ?",
        (owner, now + lease, now, key),
    )
    decided = json.loads(note) if note else None
    return Entry(key, draft_from_json(json.loads(stored)), state, attempts, last_error, not_after, decided)


def renew(conn: sqlite3.Connection, owner: str, lease: float) -> int:
    """Extend OWNER's live leases on entries not yet recorded (they are in flight); how many."""
    now = time.time()
    cur = conn.execute(
        "UPDATE outbox SET lease_until = ? WHERE owner = ? AND lease_until > ? AND state IN (?, ?)",
        (now + lease, owner, now, INTENT, DELIVERED),
    )
    return cur.rowcount


def release(conn: sqlite3.Connection, keys: Iterable[str], owner: str) -> None:
    """Give up OWNER's leases on KEYS (not sent this pass: another process may take them at once)."""
    conn.executemany(
        "UPDATE outbox SET lease_until = 0 WHERE message_id = ? AND owner = ?", [(k, owner) for k in keys]
    )


def mark(conn: sqlite3.Connection, key: str, state: str, error: str | None = None) -> None:
    """Move an entry on (delivered / recorded / failed), or release it after a failed attempt."""
    now = time.time()
    if error is not None:
        conn.execute(
            "UPDATE outbox SET state = ?, attempts = attempts + 1, last_error = ?, lease_until = 0, updated = ?"
            " WHERE message_id = ?",
            (state, error[:500], now, key),
        )
    else:
        conn.execute("UPDATE outbox SET state = ?, updated = ? WHERE message_id = ?", (state, now, key))


def mark_many(conn: sqlite3.Connection, keys: Sequence[str], state: str) -> None:
    """mark() without an error, for many entries."""
    now = time.time()
    rows = [(state, now, m) for m in keys]
    conn.executemany("UPDATE outbox SET state = ?, updated = ? WHERE message_id = ?", rows)


def add_follow_up(
    conn: sqlite3.Connection, draft: Draft, not_after: str | None, error: str, permanent: bool
) -> None:
    """Owe DRAFT (a follow-up: the same message to recipients the server refused with ERROR) as its
    own entry: an intent retried by later passes, or failed for a person when the refusal is PERMANENT."""
    _insert(conn, draft, FAILED if permanent else INTENT, not_after, error)


def retry_failed(conn: sqlite3.Connection, ids: Sequence[str], by: str) -> tuple[list[str], list[str]]:
    """Make failed entries intents again (all of them, or those named in IDS by key, Message-ID or
    communication id), noting the decision BY whom for the record: (keys reset, ids not found failed)."""
    rows = conn.execute(
        "SELECT message_id, communication, draft, last_error, attempts FROM outbox WHERE state = ?", (FAILED,)
    ).fetchall()
    wanted = set(ids)
    reset, found = [], set()
    for key, communication, stored, last_error, attempts in rows:
        names = {key, communication, json.loads(stored).get("message_id")}
        if wanted and not names & wanted:
            continue
        found |= names & wanted
        note = {"retry_failed": {"by": by, "previous_error": last_error, "attempts_before": attempts}}
        conn.execute(
            "UPDATE outbox SET state = ?, lease_until = 0, note = ?, updated = ? WHERE message_id = ?",
            (INTENT, json.dumps(note), time.time(), key),
        )
        reset.append(key)
    return reset, sorted(wanted - found)


def failing(conn: sqlite3.Connection) -> list[tuple[str, str, str | None, str | None, int, str]]:
    """(key, state, deadline, last error, attempts, communication) of entries whose delivery failed
    at least once and that are not recorded; none if the engine never ran on this log."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox'").fetchone()
    if not exists:
        return []
    rows = conn.execute(
        "SELECT message_id, state, not_after, last_error, attempts, communication FROM outbox"
        " WHERE attempts > 0 AND state IN (?, ?) ORDER BY not_after, message_id",
        (INTENT, FAILED),
    ).fetchall()
    return [(m, s, n, e, int(a), c) for m, s, n, e, a, c in rows]
