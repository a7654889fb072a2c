"""The event log in SQLite (via sqlite-utils): append-only, indexed, WAL mode."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson
import sqlite_utils

from forewarn.events import ENTITY_OF, EVENT_CLASSES, SUBJECT_KINDS, Event, KnownEntity, SourcedEvent
from forewarn.instants import epoch_us
from forewarn.log import schema
from forewarn.log.chain import GENESIS, Chain, Fingerprint
from forewarn.log.columns import COLUMNS_OF, EXTRACTORS, TYPED, TYPED_NAMES

SCHEMA_VERSION = str(schema.CURRENT)
PAGE_SIZE = 8192
"""Page size of new logs: fewer, larger pages make a bulk import's insert, index build and checkpoint cheaper
than SQLite's default 4096."""



@dataclass(frozen=True)
class StoredEvent:
    """One row of the log: the recording sequence and the canonical payload."""

    seq: int
    id: str
    type: str
    at: datetime
    payload: str


_UTC_Z = orjson.OPT_UTC_Z


def _utc_text(t: datetime) -> str:
    if t.tzinfo is UTC:  # validated timestamps are held in UTC; orjson's RFC 3339 is isoformat's, with `Z`
        return orjson.dumps(t, option=_UTC_Z).decode()[1:-1]
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


BASE_COLUMNS: dict[str, str] = {
    "seq": "recording sequence, from 1, dense (the primary key)",
    "id": "the event's id (unique)",
    "type": "the event type",
    "at": "when it happened, RFC 3339 in UTC (`Z`)",
    "at_us": "`at` in epoch microseconds (evaluation order: `at_us`, then `seq`)",
    "subject": "the maintenance, incident or release it is about (the first of them set)",
    "customer": "its `customer` field",
    "entity_kind": "the kind of entity it defines (customer, maintenance, ...), if any",
    "entity_id": "the id of the entity it defines",
    "payload": "the event as canonical JSON (sorted keys, UTC `Z`, defaults left out): what the hash covers",
    "hash": "the hash chain: SHA-256 over the previous hash, `seq` and `payload` (forewarn.log.chain)",
}
"""The columns of `events` besides the typed ones (forewarn.log.columns), and what each holds."""

COLUMNS = ("id", "type", "at", "at_us", "subject", "customer", "entity_kind", "entity_id", "payload", *TYPED_NAMES)
"""The columns written for one event, in the order of `row_values` (the typed columns last: forewarn.log.columns)."""
PAYLOAD = COLUMNS.index("payload")
INSERT_SQL = f"INSERT INTO events ({', '.join(COLUMNS)}, seq, hash) VALUES ({', '.join('?' * (len(COLUMNS) + 2))})"
"""Inserts one event: its `COLUMNS`, then its (seq, hash) (`Chain.rows`)."""


def _filled_by(kind: str) -> tuple[str, ...]:
    """The columns an event of type `kind` may fill (the others are NULL for every event of the type)."""
    fields = EVENT_CLASSES[kind].model_fields
    maybe = {"id", "type", "at", "at_us", "payload", *COLUMNS_OF[kind]}
    if any(f in fields for f in SUBJECT_KINDS):
        maybe.add("subject")
    if "customer" in fields:
        maybe.add("customer")
    if ENTITY_OF.get(kind):
        maybe.update(("entity_kind", "entity_id"))
    return tuple(c for c in COLUMNS if c in maybe)


def _insert_of(kind: str) -> tuple[str, Callable[[tuple[Any, ...]], tuple[Any, ...]]]:
    names = [*_filled_by(kind), "seq", "hash"]
    every = [*COLUMNS, "seq", "hash"]
    sql = f"INSERT INTO events ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    return sql, itemgetter(*(every.index(name) for name in names))


_INSERTS = {kind: _insert_of(kind) for kind in EVENT_CLASSES}


def insert_rows(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert rows of `COLUMNS` + (seq, hash), by type, each type binding only the columns its events may fill.

    A NULL costs more to bind than a value (Python's sqlite3 looks for an adapter for None) and most of the
    typed columns are NULL for most types; the order of insertion does not matter (`seq` is given).
    """
    by_type: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        group = by_type.get(row[1])
        if group is None:
            group = by_type[row[1]] = []
        group.append(row)
    for kind, group in by_type.items():
        sql, project = _INSERTS[kind]
        conn.executemany(sql, map(project, group))


_AT_COLUMNS: dict[datetime, tuple[str, int]] = {}
_AT_COLUMNS_LIMIT = 4096


def at_columns(at: datetime) -> tuple[str, int]:
    """(`at` text, `at_us`) of an instant, memoised (bounded): many events share their `at`."""
    hit = _AT_COLUMNS.get(at)  # aware datetimes are equal (and hash alike) when the instant is: exact
    return hit if hit is not None else new_at_columns(at)


def new_at_columns(at: datetime) -> tuple[str, int]:
    """`at_columns` of an instant not in the memo (`_AT_COLUMNS.get(at)` gave None): computed and kept."""
    if len(_AT_COLUMNS) >= _AT_COLUMNS_LIMIT:
        _AT_COLUMNS.clear()
    text = orjson.dumps(at, option=_UTC_Z).decode()[1:-1] if at.tzinfo is UTC else _utc_text(at)  # = _utc_text(at)
    hit = _AT_COLUMNS[at] = (text, epoch_us(at))
    return hit


def row_values(event: Event, canonical: str) -> tuple[object, ...]:
    """The column values stored for one event (see `EventStore._create` and `COLUMNS`)."""
    data = event.__dict__
    subject = None
    for field in SUBJECT_KINDS:  # the first one set names the subject (indexed column)
        value = data.get(field)
        if value:
            subject = value
            break
    kind = event.type
    at_text, at_us = at_columns(event.at)
    entity_kind = ENTITY_OF.get(kind)
    return (
        event.id,
        kind,
        at_text,
        at_us,
        subject,
        data.get("customer"),
        entity_kind,
        data.get(entity_kind) if entity_kind else None,
        canonical,
        *EXTRACTORS[type(event)](data),
    )


def _row(sourced: SourcedEvent) -> tuple[object, ...]:
    """The column values stored for one event (see `EventStore._create`)."""
    return row_values(sourced.event, sourced.canonical)


class EventStore:
    """An append-only event log in one SQLite file (or in memory)."""

    def __init__(self, path: str | Path, upgrade: bool = False) -> None:
        """Open the log at `path`, creating it if new; a log of an older schema is upgraded if `upgrade`
        (a command that writes), else refused (`schema.OutdatedLog`)."""
        self.path = str(path)
        self.db = sqlite_utils.Database(self.path)
        self._create(upgrade)

    @classmethod
    def attach(cls, path: str | Path, conn: sqlite3.Connection) -> EventStore:
        """The existing log `conn` is open on (see forewarn.log.access): nothing is created or changed.
        A log of another schema version is refused (LogError), saying how to upgrade an older one."""
        try:
            version = schema.version_of(conn)
        except BaseException:
            conn.close()  # now: left to the garbage collector, it keeps the -wal and -shm files beside the log
            raise
        problem: Exception | None = None
        if version is None:
            problem = LogError(f"{path}: not a forewarn event log (it has an events table but no schema version)")
        elif version > schema.CURRENT:
            problem = schema.NewerLog(str(path), version)
        elif version < schema.CURRENT:
            problem = schema.OutdatedLog(str(path), version)
        if problem is not None:
            conn.close()
            raise LogError(str(problem))
        store = cls.__new__(cls)
        store.path = str(path)
        store.db = sqlite_utils.Database(conn)
        return store

    @classmethod
    def memory(cls) -> EventStore:
        """A temporary in-memory log (for `--events` and tests)."""
        return cls(":memory:")

    def _create(self, upgrade: bool) -> None:
        if self.path != ":memory:":
            if not self.db.table_names():  # a new file: larger pages (set before WAL, which fixes them)
                self.db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            self.db.enable_wal()
        if "events" in self.db.table_names():
            version = schema.version_of(self.db.conn)
            if version is None:
                raise sqlite3.DatabaseError("it has an events table but no schema version")
            if version > schema.CURRENT:
                raise schema.NewerLog(self.path, version)
            if version < schema.CURRENT:
                if not upgrade:
                    raise schema.OutdatedLog(self.path, version)
                schema.upgrade(self.db.conn, self.path)
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
                    "hash": bytes,  # forewarn.log.chain
                    **{name: int if kind == "INTEGER" else str for name, kind, _ in TYPED},  # forewarn.log.columns
                },
                pk="seq",
                not_null={"id", "type", "at", "at_us", "payload"},
            )
            # Each index adds to the cost of every import: only those a reader needs are built.
            # id: uniqueness, re-import and same-id checks (`known_events`, `stored_payloads`);
            # (at_us, seq): evaluation order (`payloads`, `known_entities`);
            # (entity_kind, entity_id): references to entities already in the log (`first_definitions*`);
            # (subject | customer | type, at_us): the lookups the log promises to serve (a subject's,
            # a customer's or a type's events in time order) for people querying the log with SQL; no
            # forewarn stage needs them.
            self.db["events"].create_index(["id"], unique=True)
            self.db["events"].create_index(["at_us", "seq"])
            self.db["events"].create_index(["entity_kind", "entity_id"])
            self.db["events"].create_index(["subject", "at_us"])
            self.db["events"].create_index(["customer", "at_us"])
            self.db["events"].create_index(["type", "at_us"])
            self.db["meta"].create({"key": str, "value": str}, pk="key")
            self.db["meta"].insert({"key": "schema_version", "value": SCHEMA_VERSION})
            schema.create_guards(self.db.conn)  # the log is append-only: the database itself refuses edits

    # -- writing -------------------------------------------------------------

    def begin_exclusive(self) -> None:
        """Take the write lock now, so validation and append see one state."""
        self.db.execute("BEGIN IMMEDIATE")

    def append_in_transaction(self, events: Sequence[SourcedEvent]) -> int:
        """Append within the transaction opened by `begin_exclusive`."""
        insert_rows(self.db.conn, self.chain_tip().rows(map(_row, events), PAYLOAD))
        return len(events)

    def chain_tip(self) -> Chain:
        """The hash chain's tip (last sequence and hash), to append after (forewarn.log.chain)."""
        row = self.db.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return Chain()
        seq, head = row
        if not isinstance(head, bytes) or len(head) != len(GENESIS):
            raise LogError(f"{self.path}: the last event (seq {seq}) has no valid hash; run `forewarn verify`")
        return Chain(int(seq), head)

    def fingerprint(self) -> Fingerprint:
        """The log's high-water sequence and chain head: names the exact log a report judged."""
        return self.chain_tip().fingerprint()

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

    # -- bulk appends (forewarn.log.bulk) -------------------------------------

    def last_seq(self) -> int:
        """The highest recording sequence (= the number of events: the log is append-only)."""
        return int(self.db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])

    def secondary_indexes(self) -> list[tuple[str, str]]:
        """(name, CREATE INDEX statement) of every index of the events table, in creation order."""
        rows = self.db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'"
            " AND sql IS NOT NULL ORDER BY rowid"
        )
        return [(name, sql) for name, sql in rows.fetchall()]

    def stored_payloads(self, ids: Sequence[str], upto_seq: int) -> dict[str, str]:
        """Payloads of the events among `ids` recorded at or before `upto_seq` (by the id index)."""
        found: dict[str, str] = {}
        chunk = 500  # stay well under SQLite's bound-parameter limit
        for i in range(0, len(ids), chunk):
            part = ids[i : i + chunk]
            marks = ",".join("?" * len(part))
            rows = self.db.execute(
                f"SELECT id, payload FROM events WHERE id IN ({marks}) AND seq <= ?", [*part, upto_seq]
            )
            found.update(rows.fetchall())
        return found

    def stored_ids(self, upto_seq: int) -> dict[str, int]:
        """id -> seq of every event recorded at or before `upto_seq`."""
        return dict(self.db.execute("SELECT id, seq FROM events WHERE seq <= ?", [upto_seq]).fetchall())

    def payload_at(self, seq: int) -> str:
        return str(self.db.execute("SELECT payload FROM events WHERE seq = ?", [seq]).fetchone()[0])

    def payloads_at(self, seqs: Sequence[int]) -> dict[int, str]:
        """seq -> payload of the events recorded as `seqs`."""
        found: dict[int, str] = {}
        chunk = 500
        for i in range(0, len(seqs), chunk):
            part = seqs[i : i + chunk]
            rows = self.db.execute(f"SELECT seq, payload FROM events WHERE seq IN ({','.join('?' * len(part))})", part)
            found.update(rows.fetchall())
        return found

    def first_definitions(self, upto_seq: int) -> dict[tuple[str, str], int]:
        """(entity kind, id) -> earliest `at` (epoch microseconds) among events up to `upto_seq`."""
        rows = self.db.execute(
            "SELECT entity_kind, entity_id, min(at_us) FROM events WHERE entity_kind IS NOT NULL AND seq <= ?"
            " GROUP BY entity_kind, entity_id",
            [upto_seq],
        )
        return {(kind, ident): at_us for kind, ident, at_us in rows.fetchall()}

    def first_definitions_of(self, kind: str, ids: Sequence[str], upto_seq: int) -> dict[str, int]:
        """id -> earliest `at` (epoch microseconds) of the definitions of `kind` entities among `ids`."""
        found: dict[str, int] = {}
        chunk = 500
        for i in range(0, len(ids), chunk):
            part = ids[i : i + chunk]
            marks = ",".join("?" * len(part))
            rows = self.db.execute(
                f"SELECT entity_id, min(at_us) FROM events WHERE entity_kind = ? AND entity_id IN ({marks})"
                " AND seq <= ? GROUP BY entity_id",
                [kind, *part, upto_seq],
            )
            found.update(rows.fetchall())
        return found

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

    def payloads(self, until: datetime | None = None, upto_seq: int | None = None) -> Iterator[bytes]:
        """Canonical payloads in evaluation order (`at`, then recording order), of the events up to `until` (by
        `at`) and recorded up to `upto_seq`."""
        sql = "SELECT payload FROM events"
        params: list[object] = []
        where = []
        if until is not None:
            where.append("at_us <= ?")
            params.append(epoch_us(until))
        if upto_seq is not None:
            where.append("seq <= ?")
            params.append(upto_seq)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY at_us, seq"
        cursor = self.db.conn.cursor()
        cursor.arraysize = 10_000
        for (payload,) in cursor.execute(sql, params):
            yield payload.encode() if isinstance(payload, str) else payload

    def close(self) -> None:
        self.db.close()


def open_store(path: str | Path, upgrade: bool = False) -> EventStore:
    """Open (creating if needed) the log at `path`, with a clear error if it is not one or has another schema
    (an older one is upgraded if `upgrade`: for commands that write)."""
    try:
        return EventStore(path, upgrade)
    except (schema.OutdatedLog, schema.NewerLog, schema.UpgradeFailed) as exc:
        raise LogError(str(exc)) from exc
    except sqlite3.DatabaseError as exc:
        raise LogError(_database_error(exc, path)) from exc


def _database_error(exc: sqlite3.DatabaseError, path: str | Path) -> str:
    """What went wrong opening the log: read-only, full or damaged (forewarn.errors.describe), else not a log."""
    from forewarn.errors import describe

    message = None if "not a database" in str(exc) else describe(exc, str(path))
    if message is None and "database is locked" in str(exc):  # e.g. an upgrade or an import holds the write lock
        message = f"{path}: the log is being written by another process ({exc}): run it again when that is done"
    return message or f"{path}: not a forewarn event log ({exc})"


def upgrade_log(path: str | Path) -> tuple[int, int]:
    """Upgrade the log at `path` to this forewarn's schema, in place and atomically: (version before, after)."""
    try:
        db = sqlite_utils.Database(str(path))
        try:
            if "events" not in db.table_names() or schema.version_of(db.conn) is None:
                raise LogError(f"{path}: not a forewarn event log")
            return schema.upgrade(db.conn, str(path))
        finally:
            db.close()
    except (schema.NewerLog, schema.UpgradeFailed) as exc:
        raise LogError(str(exc)) from exc
    except sqlite3.DatabaseError as exc:
        raise LogError(_database_error(exc, path)) from exc


class LogError(Exception):
    """The database cannot be used as an event log."""
