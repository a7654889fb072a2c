"""The log's schema version, its append-only guards, and the upgrades of logs written by older forewarn.

A log records its schema version in `meta` (key `schema_version`). `MIGRATIONS[i]` upgrades a log from
version i + 1 to i + 2; to change the schema, append one function to it (and create the new shape in
`EventStore._create` for new logs). `upgrade` runs every step a log lacks in one transaction, with the
append-only triggers dropped for the duration and recreated before it commits: on any failure nothing
changes. A log is upgraded when a newer forewarn first opens it for writing (import, run, upgrade);
read-only commands refuse an older log with `OutdatedLog`, which says how to upgrade it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator

from forewarn.log.chain import GENESIS, link

__all__ = [
    "CURRENT",
    "MIGRATIONS",
    "TRIGGERS",
    "NewerLog",
    "OutdatedLog",
    "UpgradeFailed",
    "create_guards",
    "upgrade",
    "version_of",
]

TRIGGERS: dict[str, str] = {
    f"events_no_{op.lower()}": (
        f"CREATE TRIGGER events_no_{op.lower()} BEFORE {op} ON events "
        "BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END"
    )
    for op in ("UPDATE", "DELETE")
}
"""The append-only guards: name -> the exact statement that creates it (`forewarn verify` compares them)."""


class OutdatedLog(Exception):
    """The log has an older schema; a command that writes upgrades it, a read-only one refuses it."""

    def __init__(self, path: str, version: int) -> None:
        super().__init__(
            f"{path}: this log is schema {version}, this forewarn reads schema {CURRENT}: run "
            f"`forewarn upgrade --db {path}` (or any `forewarn import` into it) to upgrade it"
        )
        self.version = version


class UpgradeFailed(Exception):
    """An upgrade failed; its transaction was rolled back: the log is as it was."""


class NewerLog(Exception):
    """The log was written by a newer forewarn."""

    def __init__(self, path: str, version: int) -> None:
        super().__init__(
            f"{path}: this log is schema {version}, written by a newer forewarn (this one reads schema {CURRENT})"
        )
        self.version = version


def create_guards(conn: sqlite3.Connection) -> None:
    """The append-only triggers: the database itself refuses to update or delete an event."""
    for sql in TRIGGERS.values():
        conn.execute(sql)


def _drop_guards(conn: sqlite3.Connection) -> None:
    for name in TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")


def version_of(conn: sqlite3.Connection) -> int | None:
    """The log's schema version, or None if the database has no readable one."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError:  # no meta table
        return None
    if row is None or not str(row[0]).isdigit():
        return None
    return int(row[0])


# -- the migrations -------------------------------------------------------------------------------

UPGRADE_BATCH = 10_000


def _v2_hash_chain(conn: sqlite3.Connection) -> None:
    """Schema 2: the hash chain (forewarn.log.chain), computed over the events as they are now."""
    conn.execute("ALTER TABLE events ADD COLUMN [hash] BLOB")
    head = GENESIS
    for rows in _batches(conn):
        hashes = []
        for seq, payload in rows:  # the sequences as recorded: a gap stays one, for `verify` to report
            head = link(head, seq, payload)
            hashes.append((head, seq))
        conn.executemany("UPDATE events SET hash = ? WHERE seq = ?", hashes)


def _batches(conn: sqlite3.Connection) -> Iterator[list[tuple[int, str]]]:
    """The log's (seq, payload) rows in recording order, UPGRADE_BATCH at a time (bounded memory)."""
    last = 0
    while True:
        rows = conn.execute(
            "SELECT seq, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?", [last, UPGRADE_BATCH]
        ).fetchall()
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def _v3_typed_columns(conn: sqlite3.Connection) -> None:
    """Schema 3: the typed columns (forewarn.log.columns), filled from the payloads as recorded.

    Each payload is validated again (it was when recorded) to derive its columns exactly as an import does;
    a payload that no longer validates fails the upgrade: the log was altered (`forewarn verify` says how).
    """
    from pydantic import ValidationError

    from forewarn.events import EVENT_ADAPTER
    from forewarn.log.columns import EXTRACTORS, TYPED

    for name, kind, _ in TYPED:
        conn.execute(f"ALTER TABLE events ADD COLUMN [{name}] {kind}")  # names of ours, not input
    assignments = ", ".join(f"[{name}] = ?" for name, _, _ in TYPED)
    update = f"UPDATE events SET {assignments} WHERE seq = ?"
    validate = EVENT_ADAPTER.validate_json
    for rows in _batches(conn):
        values = []
        for seq, payload in rows:
            try:
                event = validate(payload)
            except ValidationError as exc:
                altered = f"the event at seq {seq} is not a valid event (the log was altered)"
                raise sqlite3.DatabaseError(altered) from exc
            values.append((*EXTRACTORS[type(event)](event.__dict__), seq))
        conn.executemany(update, values)


Migration = Callable[[sqlite3.Connection], None]

MIGRATIONS: list[Migration] = [_v2_hash_chain, _v3_typed_columns]
"""MIGRATIONS[i] upgrades a log of schema i + 1 to schema i + 2, within the caller's transaction."""

CURRENT = len(MIGRATIONS) + 1
"""The schema version this forewarn writes (and the only one it reads)."""


def upgrade(conn: sqlite3.Connection, path: str) -> tuple[int, int]:
    """Upgrade the log to `CURRENT` in one transaction: (version before, version after).

    Takes the write lock first and reads the version under it (another process may have just upgraded).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = version_of(conn)
        if version is None:
            raise sqlite3.DatabaseError("no schema_version in meta")
        if version > CURRENT:
            raise NewerLog(path, version)
        if version < CURRENT:
            _drop_guards(conn)
            for step in MIGRATIONS[version - 1 :]:
                try:
                    step(conn)
                except sqlite3.Error as exc:
                    raise UpgradeFailed(
                        f"{path}: the upgrade from schema {version} to {CURRENT} failed ({exc}); nothing was changed"
                    ) from exc
            create_guards(conn)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(CURRENT)])
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    return version, CURRENT
