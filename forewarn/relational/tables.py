"""The log as typed DuckDB tables: one scan of the canonical payloads, no Python object per event.

`ev` holds every event up to the as-of instant in evaluation order (`pos`), with the fields the
evaluation reads as typed columns; instants are epoch microseconds (exact). The payloads are the
log's canonical JSON (validated when they were recorded, or by the JSONL parser), so they are typed
here, not validated again.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from forewarn.evaluate.index import LIFECYCLE_TYPES
from forewarn.events import Event
from forewarn.events.parse import fast_canonical_json
from forewarn.instants import epoch_us

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
    p."to" AS to_list,
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
    p.subject AS waived_subject,
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
"""


MEMORY_LIMIT = os.environ.get("FOREWARN_DUCKDB_MEMORY", "192MB")
"""DuckDB's buffer limit: beyond it, sorts and joins spill to temporary files (the audit's resident memory
stays flat as the log grows)."""


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


def load_payloads(con: duckdb.DuckDBPyConnection, raw: pa.Table | pa.RecordBatchReader, as_of: datetime) -> None:
    """The typed tables from (pos, seq, at_us, type, payload) rows of canonical payloads (`pos`: the
    evaluation order, by `at` then `seq`), streamed: the payloads are typed as they come, only lifecycle
    and waiver payloads are kept."""
    con.register("raw", raw)
    con.execute(TYPED_EVENTS, {"as_of_us": epoch_us(as_of)})
    con.unregister("raw")
    con.execute(DERIVED)


def read_store_payloads(
    path: str | Path,
    as_of: datetime,
    seq: int | None = None,
    failures: list[BaseException] | None = None,
    closers: list[Callable[[], None]] | None = None,
) -> pa.RecordBatchReader:
    """The log's (pos, seq, at_us, type, payload) columns up to `as_of` (and recording sequence `seq`: the log
    as fingerprinted, events appended meanwhile left out) in evaluation order (the (at_us, seq)
    index's order, numbered as read) as a stream of Arrow batches (ADBC: no Python object per row, and never
    every payload in memory at once)."""
    import adbc_driver_sqlite.dbapi as adbc

    from forewarn.log.access import _uri, _writable_place

    # as forewarn.log.access.open_reader: where the log and its folder can be written, an ordinary connection
    # (the last to close removes the -wal and -shm files a read-only one would leave); elsewhere read-only
    # and immutable (a read-only folder cannot hold the -shm file a log in WAL mode needs)
    conn = adbc.connect(str(path) if _writable_place(path) else _uri(path, mode="ro", immutable="1"))
    cur = conn.cursor()
    # every event up to `seq` (those after `as_of` are left out as they are typed): the number read is
    # then checked against the fingerprint's (the log is append-only, its sequence dense from 1)
    try:
        cur.execute(
            "SELECT seq, at_us, type, payload FROM events WHERE seq <= ? ORDER BY at_us, seq",
            [(1 << 63) - 1 if seq is None else seq],
        )
        reader = cur.fetch_record_batch()
    except BaseException:
        # a log damaged where the query's first step reads (its first pages) fails here: closed now, not
        # when the error's traceback is collected (the open connection would keep the log's -wal file, whose
        # pages then stand for those of whatever file is next put at this path)
        cur.close()
        conn.close()
        raise
    schema = reader.schema.insert(0, pa.field("pos", pa.int64()))

    open_ = [True]

    def close() -> None:
        """Close the cursor and the connection once: a connection left to the garbage collector keeps the
        log's -wal and -shm files beside it."""
        if open_:
            open_.clear()
            cur.close()
            conn.close()

    def batches() -> Iterator[pa.RecordBatch]:  # the connection lives as long as the stream
        start = 0
        try:
            for batch in _noted(reader, failures):
                n = batch.num_rows
                yield pa.RecordBatch.from_arrays(
                    [pa.array(range(start, start + n), pa.int64()), *batch.columns], schema=schema
                )
                start += n
            if seq is not None and start != seq and failures is not None:
                from forewarn.log.source import DamagedLog

                failures.append(DamagedLog(f"{seq} events are recorded, {start} could be read"))
        finally:
            close()

    stream = batches()
    if closers is not None:
        closers.extend([stream.close, close])
    return pa.RecordBatchReader.from_batches(schema, stream)


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
