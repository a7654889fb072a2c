"""The log as typed DuckDB tables: one columnar scan, no Python object per event.

`ev` holds every event up to the as-of instant in evaluation order (`pos`), with the fields the
evaluation reads as typed columns; instants are epoch microseconds (exact). From a SQLite log (schema 3)
they are the log's typed columns (forewarn.log.columns, derived from each event when it was recorded),
read through ADBC as Arrow: no payload is parsed, and only lifecycle and waiver events' payloads are read.
From canonical payloads (the JSONL path: validated by the parser) they are typed with json_transform.
Both give the same `ev`: a column that is absent from an event's payload is NULL (`timezone` is NULL
for UTC, the default, which the canonical payload leaves out), `subject_kind` and `subject` are a
communication's, `to_list` a reply's addressees and `waived_subject` a waiver's subject (each NULL for other
types).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from forewarn.events import EVENT_CLASSES, Event
from forewarn.events.parse import fast_canonical_json
from forewarn.instants import epoch_us
from forewarn.lifecycle.fold import LIFECYCLE_TYPES
from forewarn.log.columns import COLUMNS_OF, TYPED, TYPED_NAMES

# Typed fields: name -> DuckDB type, as json_transform reads them from one payload (parsed once).
# `release` is a release's id in release and communication events and a flag in a maintenance's.
PAYLOAD_FIELDS: dict[str, str] = {
    "id": "VARCHAR",
    "customer": "VARCHAR",
    "communication": "VARCHAR",
    "kind": "VARCHAR",
    "maintenance": "VARCHAR",
    "incident": "VARCHAR",
    "release": "VARCHAR",
    "from": "VARCHAR",
    "to": "VARCHAR[]",
    "ticket": "VARCHAR",
    "reply": "VARCHAR",
    "in_reply_to": "VARCHAR",
    "plan": "VARCHAR",
    "timezone": "VARCHAR",
    "country": "VARCHAR",
    "subdivision": "VARCHAR",
    "contacts": "VARCHAR[]",
    "waiver": "VARCHAR",
    "rule": "VARCHAR",
    "subject": "VARCHAR",
    "labels": "JSON",
    "states": "STRUCT(window_start VARCHAR, window_end VARCHAR, impact VARCHAR, reason VARCHAR, "
    '"end" VARCHAR, next_update_by VARCHAR)',
}

_STRUCTURE = json.dumps(PAYLOAD_FIELDS)
assert "'" not in _STRUCTURE  # a constant of ours, written into the query text

TYPED_EVENTS = f"""
CREATE OR REPLACE TABLE ev AS
WITH parsed AS (
    SELECT pos, seq, at_us, type, json_transform(payload, '{_STRUCTURE}') AS p, payload
    FROM raw WHERE at_us <= $as_of_us
)
SELECT
    pos, seq, at_us, type,
    p.id AS id,
    p.customer AS customer,
    p.communication AS communication,
    p.kind AS kind,
    CASE WHEN type = 'communication.sent' THEN
        CASE WHEN p.maintenance IS NOT NULL THEN 'maintenance'
             WHEN p.incident IS NOT NULL THEN 'incident'
             WHEN p.release IS NOT NULL THEN 'release' END END AS subject_kind,
    CASE WHEN type = 'communication.sent' THEN coalesce(p.maintenance, p.incident, p.release) END AS subject,
    p."from" AS from_addr,
    CASE WHEN type = 'reply.received' THEN p."to" END AS to_list,
    p.ticket AS ticket,
    p.reply AS reply,
    p.in_reply_to AS in_reply_to,
    p.plan AS plan,
    p.timezone AS timezone,
    p.country AS country,
    p.subdivision AS subdivision,
    p.contacts AS contacts,
    p.labels AS labels,
    p.waiver AS waiver,
    p.rule AS rule,
    CASE WHEN type = 'waiver.granted' THEN p.subject END AS waived_subject,
    epoch_us(CAST(p.states.window_start AS TIMESTAMPTZ)) AS stated_window_start,
    epoch_us(CAST(p.states.window_end AS TIMESTAMPTZ)) AS stated_window_end,
    p.states.impact AS stated_impact,
    p.states.reason AS stated_reason,
    epoch_us(CAST(p.states."end" AS TIMESTAMPTZ)) AS stated_end,
    epoch_us(CAST(p.states.next_update_by AS TIMESTAMPTZ)) AS stated_next_update_by,
    CASE WHEN type IN {tuple(sorted(LIFECYCLE_TYPES | {"waiver.granted"}))} THEN payload END AS payload
FROM parsed
"""
"""Lifecycle and waiver events keep their payload: the lifecycle fold reads them (a few per subject)."""

_KEPT_PAYLOADS = tuple(sorted(LIFECYCLE_TYPES | {"waiver.granted"}))
"""Types whose payload `ev` keeps: the lifecycle fold and the waivers read them (a few per subject)."""

_INTEGER_COLUMNS = {name for name, kind, _ in TYPED if kind == "INTEGER"}


def _store_reads() -> list[tuple[str, list[object]]]:
    """(query, its parameters before the recording sequence) reading the log's typed columns, one per type
    (a cell costs the same to read as NULL or not: each reads only its type's columns), the types whose
    payload is kept (lifecycle, waivers: few) in one. Each starts with a row of the right types, seq 0 (no
    event has it): ADBC types each column by its first rows, and would take one NULL in all of them for
    integers and fail at the first text."""
    reads = []
    kept = [kind for kind in COLUMNS_OF if kind in _KEPT_PAYLOADS]
    groups: list[list[str]] = [[kind] for kind in COLUMNS_OF if kind not in _KEPT_PAYLOADS] + [kept]
    for kinds in groups:
        typed = sorted({name for kind in kinds for name in COLUMNS_OF[kind]}, key=TYPED_NAMES.index)
        if "communication.sent" not in kinds:
            typed = [name for name in typed if name != "subject_kind"]  # `ev` has a communication's only
        if "reply.received" not in kinds:
            typed = [name for name in typed if name != "to_list"]  # `ev` has a reply's only
        customer = ["customer"] if any("customer" in EVENT_CLASSES[kind].model_fields for kind in kinds) else []
        columns = ["seq", "at_us", "id", *customer, *typed]
        if "communication.sent" in kinds:
            columns.append("subject")
        first = [f"{0 if name in _INTEGER_COLUMNS or name in ('seq', 'at_us') else repr('')} AS {name}"
                 for name in columns]
        select = list(columns)
        if len(kinds) > 1:
            first.append("'' AS type")
            select.append("type")
        if kept == kinds:
            first.append("'' AS payload")
            select.append("payload")
        marks = ", ".join("?" * len(kinds))
        reads.append((
            f"SELECT {', '.join(first)} UNION ALL"
            f" SELECT {', '.join(select)} FROM events WHERE type IN ({marks}) AND seq <= ?",
            [*kinds],
        ))
    return reads


STORE_READS = _store_reads()
"""The queries `read_store_payloads` reads the log with (the names in them are ours, not input)."""

TYPED_COLUMNS = """
CREATE OR REPLACE TABLE ev AS
SELECT
    CAST(NULL AS BIGINT) AS pos, seq, at_us, type, id, customer, communication, kind,
    CASE WHEN type = 'communication.sent' THEN subject_kind END AS subject_kind,
    CASE WHEN type = 'communication.sent' THEN subject END AS subject,
    from_addr,
    CAST(CAST(to_list AS JSON) AS VARCHAR[]) AS to_list,
    ticket, reply, in_reply_to, plan, timezone, country, subdivision,
    CAST(CAST(contacts AS JSON) AS VARCHAR[]) AS contacts,
    CAST(labels AS JSON) AS labels,
    waiver, rule, waived_subject,
    stated_window_start, stated_window_end, stated_impact, stated_reason, stated_end, stated_next_update_by,
    payload
FROM ({union}) WHERE seq > 0 AND at_us <= $as_of_us;
UPDATE ev SET pos = o.pos
FROM (SELECT seq, row_number() OVER (ORDER BY at_us, seq) - 1 AS pos FROM ev) o WHERE ev.seq = o.seq;
"""
"""`ev` from the log's typed columns (`STORE_READS`, `{union}` their streams): as `TYPED_EVENTS` makes it from
the payloads; `pos` numbers the events in evaluation order (by `at`, then recording order), computed over
two narrow columns (a window over every column would hold them all in memory at once)."""

DERIVED = """
CREATE OR REPLACE TABLE comms AS
    SELECT pos, id, at_us, communication, customer, kind, subject_kind, subject, from_addr,
           stated_window_start, stated_window_end, stated_impact, stated_reason, stated_end, stated_next_update_by
    FROM ev WHERE type = 'communication.sent';
CREATE OR REPLACE TABLE tickets AS
    SELECT pos, id, at_us, communication FROM ev WHERE type = 'ticket.opened';
CREATE OR REPLACE TABLE replies AS
    SELECT pos, id, at_us, reply, customer, in_reply_to, to_list FROM ev WHERE type = 'reply.received';
CREATE OR REPLACE TABLE customer_versions AS
    SELECT customer, pos, lead(pos) OVER (PARTITION BY customer ORDER BY pos) AS pos_to,
           plan, coalesce(timezone, 'UTC') AS timezone, country, subdivision, contacts, labels, id
    FROM ev WHERE type = 'customer.upserted';
DROP TABLE IF EXISTS scoped_comms;
"""
"""The tables each kind of event makes; the checks' `scoped_comms` (forewarn.relational.checks.scoped, made once
per evaluation from these) is dropped with the previous evaluation's tables of a connection evaluated in again."""


MEMORY_DEFAULT = 192_000_000
MEMORY_LIMIT = os.environ.get("FOREWARN_DUCKDB_MEMORY", f"{MEMORY_DEFAULT // 1_000_000}MB")
"""DuckDB's buffer limit: beyond it, tables, sorts and joins spill to temporary files."""

MEMORY_PER_EVENT = 96
MEMORY_MOST = 768 << 20
"""A large log's evaluation gets MEMORY_PER_EVENT bytes of buffer per event, up to MEMORY_MOST (unless
FOREWARN_DUCKDB_MEMORY sets the limit): with every table of a log ten times the reference one spilled to
disk, its audit took half again as long per event; with up to 768 MiB it stays within a tenth of the
reference log's time per event."""


def fit_memory(con: duckdb.DuckDBPyConnection, events: int) -> None:
    """Raise the buffer limit of an evaluation's own connection for a log of `events` events (MEMORY_PER_EVENT)."""
    if "FOREWARN_DUCKDB_MEMORY" in os.environ:
        return  # the limit set stands
    want = min(events * MEMORY_PER_EVENT, MEMORY_MOST)
    if want > MEMORY_DEFAULT:
        con.execute(f"SET memory_limit = '{want >> 20}MiB'")  # an integer of ours


_SPILL_CLEANUPS: dict[int, weakref.finalize] = {}


def close(con: duckdb.DuckDBPyConnection) -> None:
    """Close an evaluation's DuckDB and remove its spill directory (a CLI process may exit without
    running finalizers)."""
    con.close()
    cleanup = _SPILL_CLEANUPS.pop(id(con), None)
    if cleanup is not None:
        cleanup()


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for one evaluation."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    con.execute("SET preserve_insertion_order = false")  # every read that needs an order says so
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    # Spilled data goes to a directory of our own, removed with the connection or at exit (DuckDB's
    # default is ./.tmp, and a process that exits with the connection open leaves its files there).
    spill = tempfile.mkdtemp(prefix="forewarn-duckdb-")
    con.execute("SET temp_directory = $dir", {"dir": spill})
    _SPILL_CLEANUPS[id(con)] = weakref.finalize(con, shutil.rmtree, spill, True)
    return con


@functools.lru_cache(maxsize=1024)
def _parsed(text: str) -> tuple[duckdb.Statement, ...]:
    with _PARSING:
        if not _PARSER:
            _PARSER.append(duckdb.connect(":memory:"))
        return tuple(_PARSER[0].extract_statements(text))


_PARSING = threading.Lock()
_PARSER: list[duckdb.DuckDBPyConnection] = []  # parses only: no table is ever made in it


def run(
    con: duckdb.DuckDBPyConnection, text: str, params: dict[str, object] | None = None
) -> duckdb.DuckDBPyConnection:
    """Execute the statements of `text` in turn on `con`, `params` bound in the last (whose result `con` then
    holds). Each text is parsed once per process and kept: an evaluation runs the same few dozen texts, and on a
    small log parsing them again would be a good part of its cost. The parameters are bound at every run."""
    *first, last = _parsed(text)
    for statement in first:
        con.execute(statement)
    return con.execute(last, params)


def workspace() -> duckdb.DuckDBPyConnection:
    """A connection to evaluate small inputs in, one after another, each evaluation replacing the previous one's
    tables (the engine's passes over a few subjects; a caller auditing many logs of a few events each): the
    database is made once, not per evaluation. One thread: on inputs this small, handing work to others costs
    more than it saves."""
    con = connect()
    con.execute("SET threads = 1")
    return con


class StoreColumns(list[pa.RecordBatchReader]):
    """The log's typed columns as Arrow streams, one per query of `STORE_READS` (`read_store_payloads`);
    `events`: how many events the log holds up to the sequence read (those after the as-of included)."""

    events = 0


def load_payloads(
    con: duckdb.DuckDBPyConnection, raw: pa.Table | pa.RecordBatchReader | StoreColumns, as_of: datetime
) -> int:
    """The typed tables from (pos, seq, at_us, type, payload) rows of canonical payloads (`pos`: the
    evaluation order, by `at` then `seq`), streamed: the payloads are typed as they come, only lifecycle
    and waiver payloads are kept; or from the log's typed columns (`read_store_payloads`), as they are. Returns
    how many events `ev` holds."""
    params = {"as_of_us": epoch_us(as_of)}
    if isinstance(raw, StoreColumns):
        names = [f"raw_{i}" for i in range(len(raw))]
        for name, stream in zip(names, raw, strict=True):
            con.register(name, stream)
        union = " UNION ALL BY NAME ".join(
            f"SELECT *{'' if len(kinds) > 1 else f', {kinds[0]!r} AS type'} FROM {name}"  # a type name of ours
            for name, (_, kinds) in zip(names, STORE_READS, strict=True)
        )
        try:
            first, *rest = TYPED_COLUMNS.format(union=union).split(";")
            [(events,)] = run(con, first, params).fetchall()
        finally:
            for name in names:
                con.unregister(name)
        for statement in rest:
            if statement.strip():
                run(con, statement)
    else:
        con.register("raw", raw)
        [(events,)] = run(con, TYPED_EVENTS, params).fetchall()
        con.unregister("raw")
    run(con, DERIVED)
    return int(events)


def read_store_payloads(
    path: str | Path,
    as_of: datetime,
    seq: int | None = None,
    failures: list[BaseException] | None = None,
    closers: list[Callable[[], None]] | None = None,
) -> StoreColumns:
    """The log's typed columns (`STORE_READS`: seq, at_us, type, the fields `ev` holds, and the payload of
    lifecycle and waiver events) up to recording sequence `seq` (the log as fingerprinted, events appended
    meanwhile left out), as streams of Arrow batches (ADBC: no Python object per row, never the whole log in
    memory at once), one per query, each on a connection of its own (DuckDB may read them side by side).
    Events after `as_of` are left out, and the events numbered in evaluation order, as they are loaded
    (`load_payloads`)."""
    import adbc_driver_sqlite.dbapi as adbc

    from forewarn.log.access import _uri, _writable_place

    # as forewarn.log.access.open_reader: where the log and its folder can be written, an ordinary connection
    # (the last to close removes the -wal and -shm files a read-only one would leave); elsewhere read-only
    # and immutable (a read-only folder cannot hold the -shm file a log in WAL mode needs)
    uri = str(path) if _writable_place(path) else _uri(path, mode="ro", immutable="1")
    upto = (1 << 63) - 1 if seq is None else seq
    read = [0]  # events read so far, over every stream
    done = [0]  # streams read to their end
    streams = StoreColumns()
    for sql, params in STORE_READS:
        conn = adbc.connect(uri)
        cur = conn.cursor()
        try:
            if not streams:
                cur.execute("SELECT coalesce(max(seq), 0) FROM events WHERE seq <= ?", [upto])
                streams.events = int(cur.fetchone()[0])
            cur.execute(sql, [*params, upto])
            reader = cur.fetch_record_batch()
        except BaseException:
            cur.close()
            conn.close()
            for close in closers or ():
                close()
            raise
        streams.append(_counted(reader, cur, conn, failures, closers, read, done, len(STORE_READS), seq))
    return streams


def _counted(
    reader: pa.RecordBatchReader,
    cur: Any,
    conn: Any,
    failures: list[BaseException] | None,
    closers: list[Callable[[], None]] | None,
    read: list[int],
    done: list[int],
    streams: int,
    seq: int | None,
) -> pa.RecordBatchReader:
    """`reader`, its events counted into `read` (its first, typed row left out); the last of `streams` to end
    checks the count against `seq` (the log is append-only, its sequence dense from 1: a damaged log must not
    look shorter)."""
    open_ = [True]

    def close() -> None:
        """Close the cursor and the connection once: a connection left to the garbage collector keeps the
        log's -wal and -shm files beside it."""
        if open_:
            open_.clear()
            cur.close()
            conn.close()

    def batches() -> Iterator[pa.RecordBatch]:  # the connection lives as long as the stream
        first = True
        try:
            for batch in _noted(reader, failures):
                read[0] += batch.num_rows - first
                first = False
                yield batch
            done[0] += 1
            if done[0] == streams and seq is not None and read[0] != seq and failures is not None:
                from forewarn.log.source import DamagedLog

                failures.append(DamagedLog(f"{seq} events are recorded, {read[0]} could be read"))
        finally:
            close()

    stream = batches()
    if closers is not None:
        closers.extend([stream.close, close])
    return pa.RecordBatchReader.from_batches(reader.schema, stream)


def _noted(reader: Iterable[pa.RecordBatch], failures: list[BaseException] | None) -> Iterator[pa.RecordBatch]:
    """`reader`'s batches; a failure reading them is also added to `failures`: DuckDB, scanning the stream,
    may end the scan at a failed batch instead of raising it (a damaged log would look shorter)."""
    try:
        yield from reader
    except BaseException as exc:
        if failures is not None:
            failures.append(exc)
        raise


PAYLOAD_SCHEMA = pa.schema(
    [("pos", pa.int64()), ("seq", pa.int64()), ("at_us", pa.int64()), ("type", pa.string()), ("payload", pa.string())]
)
BATCH = 50_000


def payloads_stream(events: Sequence[Event]) -> pa.RecordBatchReader:
    """Arrow (pos, seq, at_us, type, payload) of validated events in evaluation order, their canonical JSON
    made batch by batch (the JSONL path: only one batch of payload strings exists at a time)."""

    def batches() -> Iterator[pa.RecordBatch]:
        for start in range(0, len(events), BATCH):
            part = events[start : start + BATCH]
            positions = range(start, start + len(part))
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array(positions, pa.int64()),
                    pa.array(positions, pa.int64()),
                    pa.array([epoch_us(e.at) for e in part], pa.int64()),
                    pa.array([e.type for e in part], pa.string()),
                    pa.array([fast_canonical_json(e) for e in part], pa.string()),
                ],
                schema=PAYLOAD_SCHEMA,
            )

    return pa.RecordBatchReader.from_batches(PAYLOAD_SCHEMA, batches())


_DAMAGED = ("database disk image is malformed", "file is not a database", "malformed json", "invalid unicode",
            "utf-8", "utf8")
"""What SQLite (through ADBC) and DuckDB say of a log whose file or payloads were damaged."""


def log_failure(exc: BaseException, path: str | Path) -> str | None:
    """The cause and fix of a failure reading the log at `path` into DuckDB (forewarn.errors.describe's
    words for SQLite's), or None when it is none of those (a defect)."""
    text = " ".join(str(exc).split())
    if any(sign in text.lower() for sign in _DAMAGED):
        return (
            f"{path}: the log is damaged ({text}): restore it from a backup, or rebuild it with"
            " `forewarn import` from its JSONL"
        )
    return None
