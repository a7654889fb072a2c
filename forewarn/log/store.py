"""The event log in SQLite (via sqlite-utils): append-only, indexed, WAL mode."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils

from forewarn.events import ENTITY_OF, KnownEntity, SourcedEvent

SCHEMA_VERSION = "1"

# Which field of an event names the subject / the customer it is about; used
# for the indexed columns that later stages look events up by.
_SUBJECT_FIELDS = ("maintenance", "incident", "release")


@dataclass(frozen=True)
class StoredEvent:
    """One row of the log: the recording sequence and the canonical payload."""

    seq: int
    id: str
    type: str
    at: datetime
    payload: str


def _epoch_us(t: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact, no float)."""
    delta = t - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _utc_text(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _row(sourced: SourcedEvent) -> tuple[object, ...]:
    """The column values stored for one event (see `EventStore._create`)."""
    event = sourced.event
    data = event.__dict__
    subject = next((data[f] for f in _SUBJECT_FIELDS if data.get(f)), None)
    entity_kind = ENTITY_OF.get(event.type)
    entity_id = data.get(entity_kind) if entity_kind else None
    return (
        event.id,
        event.type,
        _utc_text(event.at),
        _epoch_us(event.at),
        subject,
        data.get("customer"),
        entity_kind,
        entity_id,
        sourced.canonical,
    )


class EventStore:
    """An append-only event log in one SQLite file (or in memory)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.db = sqlite_utils.Database(self.path)
        self._create()

    @classmethod
    def memory(cls) -> EventStore:
        """A temporary in-memory log (for `--events` and tests)."""
        return cls(":memory:")

    def _create(self) -> None:
        if self.path != ":memory:":
            self.db.enable_wal()
        if "events" in self.db.table_names():
            return
        with self.db.conn:
            self.db["events"].create(
                {
                    "seq": int,
                    "id": str,
                    "type": str,
                    "at": str,
                    "at_us": int,
                    "subject": str,
                    "customer": str,
                    "entity_kind": str,
                    "entity_id": str,
                    "payload": str,
                },
                pk="seq",
                not_null={"id", "type", "at", "at_us", "payload"},
            )
            self.db["events"].create_index(["id"], unique=True)
            self.db["events"].create_index(["at_us", "seq"])
            self.db["events"].create_index(["subject", "at_us"])
            self.db["events"].create_index(["customer", "at_us"])
            self.db["events"].create_index(["type", "at_us"])
            self.db["events"].create_index(["entity_kind", "entity_id"])
            self.db["meta"].create({"key": str, "value": str}, pk="key")
            self.db["meta"].insert({"key": "schema_version", "value": SCHEMA_VERSION})
            # The log is append-only: the database itself refuses edits.
            for op in ("UPDATE", "DELETE"):
                self.db.execute(
                    f"CREATE TRIGGER events_no_{op.lower()} BEFORE {op} ON events "
                    "BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END"
                )

    # -- writing -------------------------------------------------------------

    def begin_exclusive(self) -> None:
        """Take the write lock now, so validation and append see one state."""
        self.db.execute("BEGIN IMMEDIATE")

    def append_in_transaction(self, events: Sequence[SourcedEvent]) -> int:
        """Append within the transaction opened by `begin_exclusive`."""
        self.db.conn.executemany(
            "INSERT INTO events (id, type, at, at_us, subject, customer, entity_kind,"
            " entity_id, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (_row(e) for e in events),
        )
        return len(events)

    def commit(self) -> None:
        self.db.conn.commit()

    def rollback(self) -> None:
        self.db.conn.rollback()

    def append(self, events: Sequence[SourcedEvent]) -> int:
        """Append events in one transaction: all of them or none."""
        self.begin_exclusive()
        try:
            n = self.append_in_transaction(events)
        except BaseException:
            self.rollback()
            raise
        self.commit()
        return n

    # -- reading -------------------------------------------------------------

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM events").fetchone()[0])

    def counts_by_type(self) -> dict[str, int]:
        rows = self.db.execute("SELECT type, count(*) FROM events GROUP BY type ORDER BY type")
        return {t: int(n) for t, n in rows.fetchall()}

    def known_entities(self) -> Iterator[KnownEntity]:
        """Every entity defined in the log, with when and in which order."""
        rows = self.db.execute(
            "SELECT entity_kind, entity_id, at, seq FROM events WHERE entity_kind IS NOT NULL ORDER BY at_us, seq"
        )
        for kind, entity_id, at, seq in rows:
            yield KnownEntity(kind=kind, id=entity_id, at=datetime.fromisoformat(at), seq=seq)

    def known_events(self, ids: Iterable[str]) -> dict[str, str]:
        """Canonical payloads of the events among `ids` already in the log."""
        wanted = list(dict.fromkeys(ids))
        found: dict[str, str] = {}
        chunk = 500  # stay well under SQLite's bound-parameter limit
        for i in range(0, len(wanted), chunk):
            part = wanted[i : i + chunk]
            marks = ",".join("?" * len(part))
            rows = self.db.execute(f"SELECT id, payload FROM events WHERE id IN ({marks})", part)
            found.update(dict(rows.fetchall()))
        return found

    def payloads(self, until: datetime | None = None) -> Iterator[bytes]:
        """Canonical payloads in evaluation order (`at`, then recording order)."""
        sql = "SELECT payload FROM events"
        params: list[object] = []
        if until is not None:
            sql += " WHERE at_us <= ?"
            params.append(_epoch_us(until))
        sql += " ORDER BY at_us, seq"
        cursor = self.db.conn.cursor()
        cursor.arraysize = 10_000
        for (payload,) in cursor.execute(sql, params):
            yield payload.encode() if isinstance(payload, str) else payload

    def close(self) -> None:
        self.db.close()


def open_store(path: str | Path) -> EventStore:
    """Open (creating if needed) the log at `path`, with a clear error if it is not one."""
    try:
        return EventStore(path)
    except sqlite3.DatabaseError as exc:
        raise LogError(f"{path}: not a forewarn event log ({exc})") from exc


class LogError(Exception):
    """The database cannot be used as an event log."""
