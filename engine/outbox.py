"""The outbox: intent recorded before delivery, completion after it, leases so one process sends each."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
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

    message_id: str
    draft: Draft
    state: str
    attempts: int
    last_error: str | None
    not_after: str | None


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS outbox ("
        " message_id TEXT PRIMARY KEY, communication TEXT NOT NULL, draft TEXT NOT NULL,"
        " state TEXT NOT NULL, owner TEXT, lease_until REAL NOT NULL DEFAULT 0,"
        " attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, not_after TEXT,"
        " created REAL NOT NULL, updated REAL NOT NULL)"
    )
    conn.execute("CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state)")


def claim(conn: sqlite3.Connection, drafts: Sequence[Draft], deadlines: dict[str, datetime]) -> list[Entry]:
    """Take the drafts this process may send now (inside the caller's write transaction).

    A draft new to the outbox is recorded as an intent and leased to this
    process. One already there is taken over only if its lease expired or
    its owner died (a crash): then it is resent with the same Message-ID.
    Drafts leased to a live process, or already recorded, are skipped.
    """
    import json

    from forewarn.engine.draft import draft_from_json, draft_to_json

    me, now = owner_id(), time.time()
    taken: list[Entry] = []
    for draft in drafts:
        row = conn.execute(
            "SELECT state, owner, lease_until, attempts, last_error, draft, not_after FROM outbox WHERE message_id = ?",
            (draft.message_id,),
        ).fetchone()
        if row is None:
            deadline = deadlines.get(draft.message_id)
            not_after = deadline.strftime("%Y-%m-%dT%H:%M:%SZ") if deadline else None
            conn.execute(
                "INSERT INTO outbox (message_id, communication, draft, state, owner, lease_until,"
                " not_after, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    draft.message_id,
                    draft.communication,
                    json.dumps(draft_to_json(draft)),
                    INTENT,
                    me,
                    now + LEASE_SECONDS,
                    not_after,
                    now,
                    now,
                ),
            )
            taken.append(Entry(draft.message_id, draft, INTENT, 0, None, not_after))
            continue
        state, owner, lease_until, attempts, last_error, stored, not_after = row
        if state in (RECORDED, FAILED):
            continue
        if owner != me and lease_until > now and owner and _owner_alive(owner):
            continue
        conn.execute(
            "UPDATE outbox SET owner = ?, lease_until = ?, updated = ? WHERE message_id = ?",
            (me, now + LEASE_SECONDS, now, draft.message_id),
        )
        taken.append(
            Entry(draft.message_id, draft_from_json(json.loads(stored)), state, attempts, last_error, not_after)
        )
    return taken


def mark(conn: sqlite3.Connection, message_id: str, state: str, error: str | None = None) -> None:
    """Move an entry on (delivered / recorded / failed), or release it after a failed attempt."""
    now = time.time()
    if error is not None:
        conn.execute(
            "UPDATE outbox SET state = ?, attempts = attempts + 1, last_error = ?, lease_until = 0, updated = ?"
            " WHERE message_id = ?",
            (state, error[:500], now, message_id),
        )
    else:
        conn.execute("UPDATE outbox SET state = ?, updated = ? WHERE message_id = ?", (state, now, message_id))


def mark_many(conn: sqlite3.Connection, message_ids: Sequence[str], state: str) -> None:
    """mark() without an error, for many entries."""
    now = time.time()
    rows = [(state, now, m) for m in message_ids]
    conn.executemany("UPDATE outbox SET state = ?, updated = ? WHERE message_id = ?", rows)


def failing(conn: sqlite3.Connection) -> list[tuple[str, str, str | None, str | None, int]]:
    """(message id, state, deadline, last error, attempts) of entries whose delivery failed
    at least once and that are not recorded; none if the engine never ran on this log."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox'").fetchone()
    if not exists:
        return []
    rows = conn.execute(
        "SELECT message_id, state, not_after, last_error, attempts FROM outbox"
        " WHERE attempts > 0 AND state IN (?, ?) ORDER BY not_after, message_id",
        (INTENT, FAILED),
    ).fetchall()
    return [(m, s, n, e, int(a)) for m, s, n, e, a in rows]
