"""Streaming import: validate files in chunks (across processes when large), append as it goes, one transaction.

The rules are those of `check_log` + `EventStore.append_in_transaction` (all-or-nothing, every error reported,
identical re-imports dropped, references checked in evaluation order, rows recorded in evaluation order); the
differences are in how the work is done:

- No models are kept: each line is validated, and only its row (the stored columns) and the light data the
  checks need (line, references, waiver rule) are kept, the row only until it is inserted.
- Large files are cut into byte ranges, validated by worker processes (fork) that return compact, marshalled
  rows; the main process checks and inserts them, in file order, as they arrive.
- Rows are inserted as they arrive inside the open transaction; a rejected import rolls it back. They must be
  recorded in evaluation order (by `at`, ties in file order): that is file order as long as `at` does not go
  back, the common case. Past the first step back, rows go to a scratch database and are inserted in
  `at` order at the end (after the prefix if they all come after it, else everything is re-inserted).
- A large append (more rows than the log holds, and at least `BULK_MIN_ROWS`) drops the events indexes and
  recreates them after the insert, within the same transaction: building an index by sorting is far cheaper
  than updating every index B-tree row by row. Ids and entity definitions of the log are then read once into memory.

$FOREWARN_IMPORT_WORKERS sets the number of worker processes (1: validate in this process);
$FOREWARN_IMPORT_TRACE prints the time of each phase on stderr.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import marshal
import multiprocessing
import os
import re
import sqlite3
import stat
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from forewarn import inputs
from forewarn.events import (
    EVENT_CLASSES,
    SUBJECT_KINDS,
    Event,
    EventBase,
    InputError,
    KnownEntity,
    MetaKeys,
    SourcedEvent,
    WaiverGranted,
)
from forewarn.events.parse import (
    MAX_LINE_BYTES,
    TOO_LONG,
    bounded_lines,
    common_event,
    fast_canonical_json,
    fast_canonical_texts,
    gc_paused,
    key_count,
    validate_line,
)
from forewarn.events.references import dangling_message, id_clash_message, unknown_rule_message
from forewarn.log.chain import Chain
from forewarn.log.columns import NAMESPACE, typed_source
from forewarn.log.store import (
    _AT_COLUMNS,
    COLUMNS,
    PAYLOAD,
    EventStore,
    at_columns,
    insert_rows,
    new_at_columns,
)

__all__ = [
    "BULK_MIN_ROWS", "CHUNK_BYTES", "PARALLEL_MIN_BYTES", "Progress", "check_events", "import_lines",
    "import_streaming", "import_validated", "validate_array", "validate_lines",
]

CHUNK_BYTES = 4 << 20
"""Bytes of input per unit of work (about 10,000 events)."""
PARALLEL_MIN_BYTES = 8 << 20
"""Below this much input, validate in this process (starting workers would cost more than it saves)."""
BULK_MIN_ROWS = 50_000
"""Drop and recreate the indexes when appending at least this many rows, and more than the log holds."""
EST_BYTES_PER_EVENT = 400
"""A conservative guess of bytes per event, to decide on bulk mode before reading anything."""
CACHE_KIB = 64 * 1024
"""SQLite page cache while inserting (KiB)."""
INDEX_CACHE_KIB = 2_000
"""SQLite page cache while building the indexes (KiB): the sorter's runs stay small."""
LOCAL_AHEAD = 2
"""Ranges validated by the main process while it waits for a worker, at most (each is held until its turn)."""
STREAM_LINES = 10_000
"""Lines per unit of work for inputs that cannot be cut into byte ranges (pipes)."""

Progress = Callable[[int], None]
"""Called with the number of bytes read since the last call."""
CHANGED_MESSAGE = (
    "the file changed while it was read (size, modification time or identity); nothing was imported:"
    " import it again once it is complete"
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST, _SECOND, _AT_US = itemgetter(0), itemgetter(1), itemgetter(COLUMNS.index("at_us"))


class _Trace:
    """Phase timings on stderr when $FOREWARN_IMPORT_TRACE is set (wall and this process's CPU seconds)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.on = bool(os.environ.get("FOREWARN_IMPORT_TRACE"))
        self.waited = 0.0
        self.chaining = self.inserting = self.checking = 0.0  # this process's CPU seconds in each, while reading
        if self.on:  # the clocks are read per request of the API too: only when traced
            self.wall = self.start = time.perf_counter()
            self.cpu = time.process_time()

    def note(self, text: str) -> None:
        if self.on:
            print(f"import:   {text}", file=sys.stderr)

    def __call__(self, label: str) -> None:
        if self.on:
            wall, cpu = time.perf_counter(), time.process_time()
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
            print(f"import: {label:<28} {wall - self.wall:7.2f} s wall {cpu - self.cpu:7.2f} s cpu"
                  f"  (total {wall - self.start:.2f} s, peak RSS {peak} MiB)", file=sys.stderr)
            self.wall, self.cpu = wall, cpu


_trace = _Trace()

# --------------------------------------------------------------------------- light data per event

_CUSTOMER_KINDS = ("customer",)

Adder = Callable[["_ChunkBuilder", Event, str, int, Any], None]


def _adder(cls: type[EventBase]) -> Adder:
    """`_ChunkBuilder.add` for an event of `cls`, as straight-line code compiled for the class: its row (as
    `row_values`), definition (`defines()`) and references (`references()`, in their order) read from the
    event's fields, no call, loop or look-up of what the class holds. The names in the source are ours (model
    fields, entity kinds, columns)."""
    fields = cls.model_fields
    entity = cls.ENTITY
    subjects = [f"d[{f!r}]" for f in SUBJECT_KINDS if f in fields]  # the first one set names the subject
    subject = f"({' or '.join(subjects)} or None)" if subjects else "None"
    customer = "d['customer']" if "customer" in fields else "None"
    entity_id = f"d[{entity!r}]" if entity is not None else "None"
    constants: dict[str, Any] = {}
    body = [
        "d = event.__dict__",
        "at = d['at']",
        "hit = _AT_COLUMNS.get(at)",
        "if hit is None:",
        "    hit = new_at_columns(at)",
        "at_us = hit[1]",
        "rows = b.rows",
        "i = len(rows)",
        "if tag is None:",
        f"    rows.append((d['id'], d['type'], hit[0], at_us, {subject}, {customer}, {entity!r}, {entity_id},"
        f" payload, {typed_source(cls)}))",
        "else:  # checked, not stored (`check_events`): what the checks read, and the tag",
        "    rows.append((d['id'], d['type'], None, at_us, None, None, None, None, payload, tag))",
        "b.numbers.append(number)",
        "if at_us < b.last:",
        "    b.ordered = False",
        "b.last = at_us",
    ]
    if cls.defines is not EventBase.defines:
        body += ["defined = event.defines()", "if defined is not None:", "    _define(b, defined[0], defined[1], i)"]
    elif entity is not None:
        body += [f"group = b.defs.get({entity!r})", "if group is None:", f"    group = b.defs[{entity!r}] = ([], [])",
                 f"group[0].append({entity_id})", "group[1].append(i)"]
    body += ["refs = b.refs", "j = 0"]
    if cls.references is not EventBase.references:
        body += ["for ref in event.references():", "    _refer(refs, ref.kinds, ref.field, ref.id, i, j)", "    j += 1"]
    else:
        for n, (field, kinds) in enumerate(cls.REFS):
            constants[f"K{n}"] = kinds
            body += [f"v = d[{field!r}]", "if v is not None:", f"    _refer(refs, K{n}, {field!r}, v, i, j)",
                     "    j += 1"]
        if cls.HAS_CUSTOMERS:  # the same entry for each of them
            body += ["customers = d['customers']", "if customers != 'all' and customers:",
                     "    entry = refs.get(_CUSTOMER_KINDS)", "    if entry is None:",
                     "        entry = refs[_CUSTOMER_KINDS] = ([], [], [], [])",
                     "    for v in customers:", "        entry[0].append('customers')", "        entry[1].append(v)",
                     "        entry[2].append(i)", "        entry[3].append(j)", "        j += 1"]
    if issubclass(cls, WaiverGranted):
        body += ["b.rules.append((i, d['rule']))"]
    source = "def add(b, event, payload, number, tag):\n" + "".join(f"    {line}\n" for line in body)
    namespace = {**NAMESPACE, **constants, "_AT_COLUMNS": _AT_COLUMNS, "new_at_columns": new_at_columns,
                 "_define": _define, "_refer": _refer, "_CUSTOMER_KINDS": _CUSTOMER_KINDS}
    exec(source, namespace)
    return namespace["add"]  # type: ignore[no-any-return]


def _define(b: _ChunkBuilder, kind: str, ident: str, i: int) -> None:
    group = b.defs.get(kind)
    if group is None:
        group = b.defs[kind] = ([], [])
    group[0].append(ident)
    group[1].append(i)


def _refer(refs: Refs, kinds: tuple[str, ...], field: str, ident: str, i: int, j: int) -> None:
    entry = refs.get(kinds)
    if entry is None:
        entry = refs[kinds] = ([], [], [], [])
    entry[0].append(field)
    entry[1].append(ident)
    entry[2].append(i)
    entry[3].append(j)


# --------------------------------------------------------------------------- validating a chunk

Defs = dict[str, tuple[list[str], list[int]]]
"""entity kind -> (ids, row indexes) of the rows defining one."""
Refs = dict[tuple[str, ...], tuple[list[str], list[str], list[int], list[int]]]
"""entity kinds -> (fields, ids, row indexes, position among the row's references) of references."""

Chunk = tuple[
    list[tuple[Any, ...]],  # rows (COLUMNS), valid events in file order
    list[int],  # line number (within the chunk) of each row
    Defs,
    Refs,
    list[tuple[int, str]],  # (row index, rule) of each waiver
    list[tuple[Any, ...]],  # errors as InputError fields, lines within the chunk
    int,  # lines read
    bool,  # whether `at` never goes back within the chunk
    bool,  # whether an over-long line ended it: the rest of the file is not read (TOO_LONG)
]


class _ChunkBuilder:
    """A chunk's rows and light data, one valid event at a time (`add`): what `parse_chunk` returns for lines,
    and `check_events` for events already validated."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.numbers: list[int] = []
        self.defs: Defs = {}
        self.refs: Refs = {}
        self.rules: list[tuple[int, str]] = []
        self.ordered = True
        self.last = -(1 << 63)

    def add(self, event: Event, payload: str, number: int, tag: Any = None) -> None:
        """One valid event, read at line `number`; `tag` (if not None) is added at the end of its row."""
        _ADDERS[type(event)](self, event, payload, number, tag)

    def chunk(self, errors: list[tuple[Any, ...]], lines: int, stopped: bool) -> Chunk:
        return self.rows, self.numbers, self.defs, self.refs, self.rules, errors, lines, self.ordered, stopped


_ADDERS: dict[type, Adder] = {cls: _adder(cls) for cls in EVENT_CLASSES.values()}
"""Event class -> its `_ChunkBuilder.add`."""


def parse_chunk(lines: Iterator[bytes] | Sequence[bytes], name: str, at_file_start: bool) -> Chunk:
    """Validate lines of one file: rows, light data and errors (line numbers counted from 1 in the chunk).

    The result is `validate_line` + `row_values` + `defines()` / `references()` of each line, computed inline
    for the common line (bytes, not too long, valid, storable); any other line goes through `validate_line`
    itself, which reports its errors (so they are exactly its errors). An over-long line is the last one read.
    """
    built = _ChunkBuilder()
    add = built.add
    errors: list[tuple[Any, ...]] = []
    number = 0
    counted = MetaKeys()
    for number, line in enumerate(lines, 1):
        try:
            event = common_event(line, number, at_file_start, counted)
            if event is None:
                raise _Unusual
            payload = fast_canonical_json(event)
        except (ValidationError, TypeError, ValueError, _Unusual):  # errors, blank or unusual lines: the slow way
            result = validate_line(line, name, number, at_file_start and number == 1)
            if type(result) is not tuple:
                if result is not None:
                    errors.extend((e.file, e.line, e.event_type, e.event_id, e.field, e.message) for e in result)
                    if result[-1].message == TOO_LONG:
                        return built.chunk(errors, number, True)
                continue
            event, payload = result
        add(event, payload, number)
    return built.chunk(errors, number, False)


class _Unusual(Exception):
    """A line `parse_chunk` leaves to `validate_line` (not bytes, too long, a BOM to skip, a key maybe repeated)."""


def _parse_range(path: str, name: str, start: int, end: int) -> Chunk | str:
    """The chunk of the lines in bytes [start, end) of a file, or why it cannot be read."""
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            data = handle.read(end - start)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    return parse_chunk(io.BytesIO(data), name, start == 0)


def _parse_range_marshalled(path: str, name: str, start: int, end: int) -> bytes:
    """Worker: `_parse_range`, marshalled (compact, and much faster to load than to unpickle)."""
    return marshal.dumps(_parse_range(path, name, start, end))


def _init_worker() -> None:
    import gc

    gc.disable()  # the worker's objects are short-lived and acyclic


# --------------------------------------------------------------------------- planning the work


def _ranges(handle: Any, size: int, chunk: int) -> list[tuple[int, int]]:
    """Byte ranges of about `chunk` bytes, each ending at a line end (or the end of the file).

    A line end is looked for at most `MAX_LINE_BYTES` + 1 bytes on: if there is none, the line there is too
    long, the range ends after those bytes (so it holds more than `MAX_LINE_BYTES` of that line, which
    `parse_chunk` refuses) and no range follows (the rest of the file is not read).
    """
    ranges = []
    start = 0
    while start < size:
        end = start + chunk
        if end >= size:
            end = size
        else:
            handle.seek(end)
            tail = handle.readline(MAX_LINE_BYTES + 1)
            end = min(end + len(tail), size)
            if len(tail) > MAX_LINE_BYTES:
                ranges.append((start, end))
                break
        ranges.append((start, end))
        start = end
    return ranges


Unit = tuple[str, int, Any]
"""("range", file index, (start, end)) | ("stream", file index, None) | ("error", file index, message)."""


def _plan(paths: Sequence[str | Path], chunk: int) -> tuple[list[Unit], int, dict[int, inputs.Fingerprint]]:
    """The units of work in file order, the total bytes of the regular files, and what each regular file
    was when its ranges were cut (to tell, before the commit, that none changed meanwhile)."""
    units: list[Unit] = []
    total = 0
    seen: dict[int, inputs.Fingerprint] = {}
    for index, path in enumerate(paths):
        try:
            if inputs.is_stdin(path) or not stat.S_ISREG(os.stat(path).st_mode):  # read once, later; or a directory
                units.append(("stream", index, None))
                continue
            with open(path, "rb") as handle:
                st = os.fstat(handle.fileno())
                size = st.st_size
                if handle.read(len(inputs.SQLITE_HEADER)).startswith(inputs.SQLITE_HEADER):
                    units.append(("error", index, str(inputs.NotJsonl(str(path)))))
                    continue
                seen[index] = inputs.Fingerprint.of(st)
                total += size
                units.extend(("range", index, r) for r in _ranges(handle, size, chunk))
        except OSError as exc:
            units.append(("error", index, f"cannot read: {exc.strerror}"))
    return units, total, seen


def _stream_chunks(path: str | Path, name: str) -> Iterator[tuple[Chunk | str, int]]:
    """Chunks of a file that cannot be cut by offset (a pipe, standard input), read once and validated here,
    with their byte counts.

    Lines are read bounded (`bounded_lines`): `import /dev/zero` is refused after one MiB, not out of memory.
    """
    budget = STREAM_LINES * EST_BYTES_PER_EVENT
    try:
        with inputs.open_input(path) as handle:
            reader = bounded_lines(handle)
            first = True
            while True:
                lines: list[bytes] = []
                size = 0
                for line in reader:  # as readlines(budget), line by line
                    lines.append(line)
                    size += len(line)
                    if size >= budget or len(line) > MAX_LINE_BYTES:  # too long: the chunk's last line
                        break
                if not lines:
                    return
                chunk = parse_chunk(lines, name, first)
                yield chunk, size
                if chunk[8]:
                    return
                first = False
    except inputs.NotJsonl as exc:
        yield str(exc), 0
    except OSError as exc:
        yield f"cannot read: {exc.strerror or exc}", 0


def _worker_count(requested: int | None, total: int) -> int:
    """Processes that validate, this one included (which inserts, and validates too whenever it would wait).

    As requested, or $FOREWARN_IMPORT_WORKERS; else 1 for small inputs, and for large ones one per CPU that is
    idle right now, plus one (up to 4): a worker costs more CPU in all (marshalling, a second process), which
    only pays when a CPU is free to run it (on CPUs busy with other jobs it makes the import slower); the
    extra one keeps the CPUs busy while this process inserts or waits for a chunk.
    """
    if requested is None and os.environ.get("FOREWARN_IMPORT_WORKERS", "").isdigit():
        requested = int(os.environ["FOREWARN_IMPORT_WORKERS"])
    if requested is not None:
        return max(1, requested)
    if total < PARALLEL_MIN_BYTES or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    from forewarn import parallel

    idle = int(parallel.idle_cpus() + 0.5)
    return max(1, min(parallel.cpus() + 1, 4, idle + 1 if idle else 1))



@contextlib.contextmanager
def _pool(workers: int) -> Iterator[Any]:
    """A pool of `workers - 1` forked processes, or None for validating in this process only."""
    if workers <= 1:
        yield None
        return
    with multiprocessing.get_context("fork").Pool(workers - 1, initializer=_init_worker) as pool:
        yield pool


def _chunks(
    units: Sequence[Unit], paths: Sequence[str | Path], pool: Any, workers: int
) -> Iterator[tuple[int, Chunk | str, int]]:
    """(file index, chunk or "cannot read" reason, bytes) for every unit, in order.

    With workers, ranges are validated by a pool of forked processes, a few units ahead of the consumer;
    rather than wait for one, this process validates the next unclaimed range itself (no marshalling then).
    """
    names = [str(p) for p in paths]
    if pool is None:
        for kind, index, arg in units:
            if kind == "range":
                yield index, _parse_range(str(paths[index]), names[index], *arg), arg[1] - arg[0]
            elif kind == "stream":
                for chunk, size in _stream_chunks(paths[index], names[index]):
                    yield index, chunk, size
            else:
                yield index, arg, 0
        return
    ranges = [i for i, unit in enumerate(units) if unit[0] == "range"]  # positions, in order
    futures: dict[int, Any] = {}  # validated by a worker
    local: dict[int, Chunk | str] = {}  # validated here, while waiting for a worker
    claimed = 0  # ranges[:claimed] are with a worker, here, or done

    def parse_here(position: int) -> Chunk | str:
        _, index, (start, end) = units[position]
        return _parse_range(str(paths[index]), names[index], start, end)

    def submit() -> None:
        nonlocal claimed
        while claimed < len(ranges) and len(futures) < 2 * (workers - 1):
            position = ranges[claimed]
            _, index, (start, end) = units[position]
            futures[position] = pool.apply_async(_parse_range_marshalled, (str(paths[index]), names[index], start, end))
            claimed += 1

    submit()
    for position, (kind, index, arg) in enumerate(units):
        if kind == "range":
            if position in local:
                chunk = local.pop(position)
            elif position in futures:
                future = futures.pop(position)
                while not future.ready() and claimed < len(ranges) and len(local) < LOCAL_AHEAD:
                    local[ranges[claimed]] = parse_here(ranges[claimed])  # rather than wait: the next unclaimed
                    claimed += 1
                waiting = time.perf_counter()
                chunk = marshal.loads(future.get())
                _trace.waited += time.perf_counter() - waiting
            else:  # the next unclaimed one
                claimed += 1
                chunk = parse_here(position)
            submit()
            yield index, chunk, arg[1] - arg[0]
        elif kind == "stream":
            for chunk, size in _stream_chunks(paths[index], names[index]):
                yield index, chunk, size
        else:
            yield index, arg, 0


# --------------------------------------------------------------------------- staging out-of-order rows


class _Staging:
    """A scratch database (outside the import's transaction) for rows that arrive out of `at` order."""

    def __init__(self) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="forewarn-import-")
        self.conn = sqlite3.connect(os.path.join(self.dir.name, "staging.db"), isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = OFF")
        self.conn.execute("PRAGMA synchronous = OFF")
        columns = ", ".join(COLUMNS)
        self.conn.execute(f"CREATE TABLE rows (ord INTEGER PRIMARY KEY, {columns})")
        self.insert_sql = f"INSERT INTO rows (ord, {columns}) VALUES ({', '.join('?' * (len(COLUMNS) + 1))})"
        self.select_sql = f"SELECT {columns} FROM rows ORDER BY at_us, ord"
        self.conn.execute("BEGIN")

    def add(self, first: int, rows: Sequence[tuple[Any, ...]]) -> None:
        self.conn.executemany(self.insert_sql, [(first + i, *row) for i, row in enumerate(rows)])

    def payload(self, ord_: int) -> str:
        return str(self.conn.execute("SELECT payload FROM rows WHERE ord = ?", [ord_]).fetchone()[0])

    def in_at_order(self, batch: int = 10_000) -> Iterator[list[tuple[Any, ...]]]:
        """The rows by `at`, ties by their order of arrival (`ord`)."""
        cursor = self.conn.execute(self.select_sql)
        while rows := cursor.fetchmany(batch):
            yield rows

    def close(self) -> None:
        self.conn.close()
        self.dir.cleanup()


# --------------------------------------------------------------------------- the import


class _Import:
    """State of one streaming import (one transaction).

    The fresh events (those to append) are numbered n = 0, 1, ... in file order; what the checks need of
    them is kept in columns (and refs / definitions grouped by entity kind), the rows only until inserted.
    """

    def __init__(
        self,
        store: EventStore | None,
        names: Sequence[str],
        rule_ids: Collection[str] | None,
        presume_new: bool = False,
    ) -> None:
        """`store`: the log appended to; None for checks only (`_Checks`).

        `presume_new`: the ids are not looked up in the log (a query per chunk), as if none were there. Where one
        is, its row fails the insert (the id index is unique); where the import finds errors, one of them may be
        missing (an id of the log with other content) and others wrong (that event's references). Only an import
        that appends without errors is the same either way; the caller does any other again without it.
        """
        self.presume_new = presume_new
        if store is not None:
            self.store = store
            self.conn = store.db.conn
            # the log before the import
            tip = store.chain_tip()
            self.base, self.base_head = tip.seq, tip.head
            self.chain = tip  # advances with every row inserted into events (forewarn.log.chain)
        self.names = names
        self.rule_ids = rule_ids
        self.parse_errors: list[InputError] = []
        self.clash_errors: list[InputError] = []
        self.valid = 0  # valid events read (appended or unchanged)
        self.known_ids: dict[str, int] | None = None  # id -> seq of the log's events, once in bulk mode
        self.known_definitions: dict[tuple[str, str], int] | None = None
        # fresh events
        self.seen: dict[str, int] = {}  # id -> n
        self.ids: list[str] = []
        self.types: list[str] = []
        self.ats = array("q")
        self.lines = array("q")
        self.file_starts: list[tuple[int, int]] = []  # (first n, file index)
        self.defs: dict[str, tuple[list[str], array[int]]] = {}  # kind -> (ids, n)
        self.refs: dict[tuple[str, ...], tuple[list[str], list[str], array[int], array[int]]] = {}
        self.rules: dict[int, str] = {}
        self.shared: dict[str, str] = {}  # one string per referenced id (customers are named by many events)
        # where rows went
        self.indexes: list[tuple[str, str]] = []  # of the log, read when going bulk (they are dropped then)
        self.bulk = False
        self.inserted = 0  # rows inserted into events, in file order (n < inserted)
        self.last_at: int | None = None
        self.staging: _Staging | None = None
        self.staged_min: int | None = None

    @property
    def fresh(self) -> int:
        return len(self.ids)

    # -- modes ----------------------------------------------------------------------

    def go_bulk(self) -> None:
        """Drop the indexes (recreated by `create_indexes`); the log's ids and definitions are read first."""
        if self.base:
            self.known_ids = self.store.stored_ids(self.base)
            self.known_definitions = self.store.first_definitions(self.base)
        self.indexes = self.store.secondary_indexes()
        self.drop_indexes()
        self.bulk = True

    def drop_indexes(self) -> None:
        existing = {name for name, _ in self.store.secondary_indexes()}
        for name, _ in self.indexes:
            if name in existing:
                self.conn.execute(f'DROP INDEX "{name}"')

    def create_indexes(self) -> None:
        existing = {name for name, _ in self.store.secondary_indexes()}
        cache = self.conn.execute("PRAGMA cache_size").fetchone()[0]
        threads = self.conn.execute("PRAGMA threads").fetchone()[0]
        self.conn.execute(f"PRAGMA cache_size = {-INDEX_CACHE_KIB}")  # sorts that fit the CPU caches run faster
        # The sorter's helper threads: nothing else runs now, so each index is built on every CPU.
        # A build without them keeps 0.
        self.conn.execute(f"PRAGMA threads = {int(os.cpu_count() or 1)}")
        try:
            for name, sql in self.indexes:
                if name not in existing:
                    self.conn.execute(sql)
        finally:
            self.conn.execute(f"PRAGMA cache_size = {int(cache)}")
            self.conn.execute(f"PRAGMA threads = {int(threads)}")

    # -- one chunk -------------------------------------------------------------------

    def take(self, file_index: int, line_base: int, chunk: Chunk) -> None:
        rows, numbers, defs, refs, rules, errors, _, ordered, _ = chunk
        self.valid += len(rows)
        if errors:
            self.parse_errors.extend(
                InputError(file, line + line_base, kind, ident, field, message)
                for file, line, kind, ident, field, message in errors
            )
        if self.parse_errors or not rows:
            return  # the import fails: only the input errors are reported, nothing else to check
        keep = self.dedupe(rows, self.names[file_index], numbers, line_base)
        if keep is not None:
            rows, numbers, defs, refs, rules = _select(keep, rows, numbers, defs, refs, rules)
            ordered = all(rows[i][3] <= rows[i + 1][3] for i in range(len(rows) - 1))
            if not rows:
                return
        n = self.fresh
        if not self.file_starts or self.file_starts[-1][1] != file_index:
            self.file_starts.append((n, file_index))
        self.ids.extend(map(_FIRST, rows))
        self.types.extend(map(_SECOND, rows))
        self.ats.extend(map(_AT_US, rows))
        self.lines.extend(map(line_base.__add__, numbers))
        for kind, (ids, indexes) in defs.items():
            group = self.defs.get(kind)
            if group is None:
                group = self.defs[kind] = ([], array("q"))
            group[0].extend(ids)
            group[1].extend(map(n.__add__, indexes))
        shared = self.shared.setdefault
        for kinds, (fields, ids, indexes, positions) in refs.items():
            entry = self.refs.get(kinds)
            if entry is None:
                entry = self.refs[kinds] = ([], [], array("q"), array("q"))
            entry[0].extend(fields)
            entry[1].extend(map(shared, ids, ids))
            entry[2].extend(map(n.__add__, indexes))
            entry[3].extend(positions)
        for i, rule in rules:
            self.rules[n + i] = rule
        if not self.bulk and self.fresh >= max(BULK_MIN_ROWS, self.base):
            self.go_bulk()
        self.insert(n, rows, ordered)

    def dedupe(self, rows: list[tuple[Any, ...]], file: str, numbers: list[int], line_base: int) -> list[int] | None:
        """Record the chunk's ids; None if every row is fresh, else the indexes of the fresh rows.

        Identical repeats (of the log's events or of earlier lines) are dropped; the same id with other
        content is an error (and the row is dropped too).
        """
        ids = list(map(_FIRST, rows))
        known = self.lookup_known(ids)
        seen = self.seen
        if not known and seen.keys().isdisjoint(ids):
            before = len(seen)
            seen.update(zip(ids, range(self.fresh, self.fresh + len(ids)), strict=True))
            if len(seen) - before == len(ids):
                return None
            for ident in ids:  # repeats within the chunk: undo, go one by one
                seen.pop(ident, None)
        lines = [line_base + number for number in numbers]
        keep: list[int] = []
        local: dict[int, str] = {}  # n -> payload, for the rows of this chunk
        n = self.fresh
        for i, row in enumerate(rows):
            ident = row[0]
            stored = known.get(ident)
            if stored is not None:
                if stored != row[8]:
                    self.clash(file, lines[i], row, "an event already in the log")
                continue
            first = seen.get(ident)
            if first is None:
                seen[ident] = n
                local[n] = row[8]
                keep.append(i)
                n += 1
            elif (local[first] if first in local else self.payload_of(first)) != row[8]:
                where = f"{file}:{lines[keep[first - self.fresh]]}" if first in local else self.where(first)
                self.clash(file, lines[i], row, f"the event at {where}")
        return keep

    def clash(self, file: str, line: int, row: tuple[Any, ...], other: str) -> None:
        self.clash_errors.append(InputError(file, line, row[1], row[0], "id", id_clash_message(other)))

    def lookup_known(self, ids: list[str]) -> dict[str, str]:
        """Payloads of the log's events (before this import) among `ids`."""
        if not self.base:
            return {}
        if self.known_ids is None:
            return {} if self.presume_new else self.store.stored_payloads(ids, self.base)
        known_ids = self.known_ids
        seqs = {known_ids[ident]: ident for ident in ids if ident in known_ids}
        return {seqs[seq]: payload for seq, payload in self.store.payloads_at(list(seqs)).items()}

    def payload_of(self, n: int) -> str:
        """Payload of fresh event n, wherever its row went."""
        if n < self.inserted:
            return self.store.payload_at(self.base + 1 + n)
        assert self.staging is not None
        return self.staging.payload(n)

    def where(self, n: int) -> str:
        """`file:line` of fresh event n."""
        return f"{self.names[self.file_of(n)]}:{self.lines[n]}"

    def file_of(self, n: int) -> int:
        return self.file_starts[bisect.bisect_right(self.file_starts, (n, 1 << 62)) - 1][1]

    def append(self, rows: list[tuple[Any, ...]]) -> None:
        """Chain the rows (in this order) and insert them."""
        if not _trace.on:
            insert_rows(self.conn, self.chain.rows(rows, PAYLOAD))
            return
        start = time.process_time()
        chained = self.chain.rows(rows, PAYLOAD)
        middle = time.process_time()
        insert_rows(self.conn, chained)
        _trace.chaining += middle - start
        _trace.inserting += time.process_time() - middle

    def insert(self, n: int, rows: list[tuple[Any, ...]], ordered: bool) -> None:
        if self.staging is None and ordered and (self.last_at is None or rows[0][3] >= self.last_at):
            self.append(rows)
            self.inserted += len(rows)
            self.last_at = rows[-1][3]
            return
        if self.staging is None:
            self.staging = _Staging()
        self.staging.add(n, rows)
        low = min(row[3] for row in rows)
        self.staged_min = low if self.staged_min is None else min(self.staged_min, low)

    # -- after the last chunk ---------------------------------------------------------------

    def evaluation_order(self) -> list[int] | None:
        """Fresh events (n) in evaluation order (`at`, ties in file order); None when that is file order."""
        if self.staging is None:
            return None  # rows went straight in: `at` never went back
        return sorted(range(self.fresh), key=self.ats.__getitem__)  # stable

    def check_references(self, order: list[int] | None) -> list[InputError]:
        """Every reference names an entity defined earlier in evaluation order (log events win ties).

        By positions in evaluation order: a reference is satisfied by a new definition at an earlier position
        (so not by the event itself), or by a definition in the log at or before its `at`.
        """
        if order is None:
            position = None
        else:
            position = array("q", bytes(8 * self.fresh))
            for pos, n in enumerate(order):
                position[n] = pos
        first = self.first_definitions(position)
        never = 1 << 62
        pending: list[tuple[int, int, str, tuple[str, ...], str]] = []  # (position, j, field, kinds, id)
        for kinds, (fields, ids, ns, js) in self.refs.items():
            at_of = position.__getitem__ if position is not None else None
            if len(kinds) == 1:
                get = first.get(kinds[0], {}).get
                if at_of is None:
                    bad = [k for k, ident, n in zip(range(len(ids)), ids, ns, strict=True) if get(ident, never) >= n]
                else:
                    bad = [k for k, ident, n in zip(range(len(ids)), ids, ns, strict=True)
                           if get(ident, never) >= at_of(n)]
            else:
                gets = [first.get(kind, {}).get for kind in kinds]
                bad = [
                    k for k, ident, n in zip(range(len(ids)), ids, ns, strict=True)
                    if min(g(ident, never) for g in gets) >= (n if at_of is None else at_of(n))
                ]
            for k in bad:
                n = ns[k]
                pending.append((n if position is None else position[n], js[k], fields[k], kinds, ids[k]))
        if pending and self.base:  # the log's definitions count when at or before the reference
            known = self.known_definitions
            if known is None:
                known = self.lookup_definitions(pending)
            ats = self.ats
            n_at = (lambda pos: pos) if order is None else order.__getitem__
            pending = [
                p for p in pending if not any(known.get((kind, p[4]), never) <= ats[n_at(p[0])] for kind in p[3])
            ]
        if not pending:
            return []
        pending.sort()
        return self.dangling_errors(first, order, pending)

    def first_definitions(self, position: array[int] | None) -> dict[str, dict[str, int]]:
        """kind -> id -> position (in evaluation order) of its first new definition."""
        first: dict[str, dict[str, int]] = {}
        for kind, (ids, ns) in self.defs.items():
            if position is None:  # n ascending: the first occurrence must win, so insert in reverse
                first[kind] = dict(zip(reversed(ids), reversed(ns), strict=True))
            else:
                pairs = sorted(zip(ids, [position[n] for n in ns], strict=True), key=lambda p: -p[1])
                first[kind] = dict(pairs)
        return first

    def lookup_definitions(
        self, refs: list[tuple[int, int, str, tuple[str, ...], str]]
    ) -> dict[tuple[str, str], int]:
        """The log's first definitions of the entities `refs` name (by the entity index)."""
        wanted: dict[str, set[str]] = {}
        for *_, kinds, ident in refs:
            for kind in kinds:
                wanted.setdefault(kind, set()).add(ident)
        found: dict[tuple[str, str], int] = {}
        for kind, ids in wanted.items():
            for ident, at_us in self.store.first_definitions_of(kind, sorted(ids), self.base).items():
                found[(kind, ident)] = at_us
        return found

    def dangling_errors(
        self,
        first: dict[str, dict[str, int]],
        order: list[int] | None,
        dangling: list[tuple[int, int, str, tuple[str, ...], str]],
    ) -> list[InputError]:
        errors = []
        for pos, _, field, kinds, ident in dangling:
            n = pos if order is None else order[pos]
            found = next((first[kind][ident] for kind in kinds if ident in first.get(kind, {})), None)
            where = None
            if found is not None:
                definer = found if order is None else order[found]
                where = (_datetime(self.ats[definer]), self.where(definer))
            message = dangling_message(field, kinds, ident, _datetime(self.ats[n]), where)
            errors.append(self.located(n, field, message))
        return errors

    def check_rules(self) -> list[InputError]:
        if self.rule_ids is None:
            return []
        return [
            self.located(n, "rule", unknown_rule_message(rule, self.rule_ids))
            for n, rule in sorted(self.rules.items())
            if rule not in self.rule_ids
        ]

    def located(self, n: int, field: str | None, message: str) -> InputError:
        return InputError(self.names[self.file_of(n)], self.lines[n], self.types[n], self.ids[n], field, message)

    def place_staged_rows(self) -> None:
        """Insert the staged rows so that the log records every new row in evaluation order."""
        staging = self.staging
        assert staging is not None
        low, high = self.staged_min, self.last_at
        if self.inserted and low is not None and high is not None and low < high:
            # some staged rows go before some of the prefix: take the prefix back, re-insert everything
            columns = ", ".join(COLUMNS)
            cursor = self.conn.execute(f"SELECT {columns} FROM events WHERE seq > ? ORDER BY seq", [self.base])
            n = 0
            while rows := cursor.fetchmany(10_000):
                staging.add(n, rows)
                n += len(rows)
            self.conn.execute("ROLLBACK TO forewarn_import")
            self.chain = Chain(self.base, self.base_head)
            if self.bulk:
                self.drop_indexes()
        for rows in staging.in_at_order():
            self.append(rows)

    def close(self) -> None:
        if self.staging is not None:
            self.staging.close()
            self.staging = None


class _Checks(_Import):
    """The checks of an import, on events already validated and not to be stored (`check_events`): the same
    rules, against a log given as mappings (its events' payloads, its entities' first definitions)."""

    def __init__(
        self,
        names: Sequence[str],
        rule_ids: Collection[str] | None,
        known_events: Mapping[str, str],
        known_definitions: dict[tuple[str, str], int],
    ) -> None:
        super().__init__(None, names, rule_ids)
        self.known_events = known_events
        self.kept: list[Any] = []  # tags of the fresh events, in order
        self.payloads: list[str] = []  # of the fresh events
        self.all_ordered = True
        self.base = 1 if known_events or known_definitions else 0  # whether the log counts
        self.known_definitions = known_definitions
        self.bulk = True  # never switches to the bulk mode (nothing is inserted)

    def lookup_known(self, ids: list[str]) -> dict[str, str]:
        known = self.known_events
        return {ident: known[ident] for ident in ids if ident in known} if known else {}

    def payload_of(self, n: int) -> str:
        return self.payloads[n]

    def insert(self, n: int, rows: list[tuple[Any, ...]], ordered: bool) -> None:
        if not ordered or (self.last_at is not None and rows[0][3] < self.last_at):
            self.all_ordered = False
        self.last_at = rows[-1][3]
        self.payloads.extend(row[8] for row in rows)
        self.kept.extend(row[-1] for row in rows)

    def evaluation_order(self) -> list[int] | None:
        if self.all_ordered:
            return None
        return sorted(range(self.fresh), key=self.ats.__getitem__)  # stable


def check_events(
    new: Sequence[SourcedEvent],
    known_entities: Iterable[KnownEntity] = (),
    known_events: Mapping[str, str] | None = None,
    rule_ids: Collection[str] | None = None,
) -> tuple[list[SourcedEvent], list[InputError]]:
    """(events to append, errors) for validated events against a log and each other: the checks of an import
    (`import_streaming`: identical repeats dropped, the same id with other content an error, every reference to
    an entity defined earlier in evaluation order, a waiver's rule in the policy), for events read elsewhere
    (`audit --events`). `known_entities` / `known_events`: what the log already holds (none: an empty log)."""
    definitions: dict[tuple[str, str], int] = {}
    for known in known_entities:
        key = (known.kind, known.id)
        at_us = at_columns(known.at)[1]
        if at_us < definitions.get(key, 1 << 62):
            definitions[key] = at_us
    names: list[str] = []
    index: dict[str, int] = {}
    runs: list[tuple[int, _ChunkBuilder]] = []  # one chunk per run of events from one file
    for position, item in enumerate(new):
        file_index = index.get(item.file)
        if file_index is None:
            file_index = index[item.file] = len(names)
            names.append(item.file)
        if not runs or runs[-1][0] != file_index:
            runs.append((file_index, _ChunkBuilder()))
        runs[-1][1].add(item.event, item.canonical, item.line, position)
    state = _Checks(names, rule_ids, known_events or {}, definitions)
    with gc_paused():
        for file_index, built in runs:
            state.take(file_index, 0, built.chunk([], 0, False))
        errors = [*state.clash_errors, *state.check_references(state.evaluation_order()), *state.check_rules()]
    return [new[position] for position in state.kept], errors


def _select(
    keep: list[int],
    rows: list[tuple[Any, ...]],
    numbers: list[int],
    defs: Defs,
    refs: Refs,
    rules: list[tuple[int, str]],
) -> tuple[list[tuple[Any, ...]], list[int], Defs, Refs, list[tuple[int, str]]]:
    """The chunk restricted to the rows `keep` (renumbered)."""
    new = {old: i for i, old in enumerate(keep)}
    kept_defs: Defs = {}
    for kind, (ids, indexes) in defs.items():
        pairs = [(ident, new[i]) for ident, i in zip(ids, indexes, strict=True) if i in new]
        kept_defs[kind] = ([p[0] for p in pairs], [p[1] for p in pairs])
    kept_refs: Refs = {}
    for kinds, (fields, ids, indexes, positions) in refs.items():
        ks = [k for k, i in enumerate(indexes) if i in new]
        kept_refs[kinds] = ([fields[k] for k in ks], [ids[k] for k in ks], [new[indexes[k]] for k in ks],
                            [positions[k] for k in ks])
    return (
        [rows[i] for i in keep],
        [numbers[i] for i in keep],
        kept_defs,
        kept_refs,
        [(new[i], rule) for i, rule in rules if i in new],
    )


def _datetime(at_us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=at_us)


@contextlib.contextmanager
def _bulk_settings(conn: sqlite3.Connection) -> Iterator[None]:
    """A larger page cache for the duration of an import (restored after)."""
    cache = conn.execute("PRAGMA cache_size").fetchone()[0]
    conn.execute(f"PRAGMA cache_size = {-CACHE_KIB}")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA cache_size = {int(cache)}")


def import_streaming(
    store: EventStore,
    paths: Sequence[str | Path],
    rule_ids: Collection[str] | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
    chunk_bytes: int | None = None,
) -> tuple[int, int, list[InputError]]:
    """(appended, unchanged, errors); with errors, nothing was changed."""
    _trace.reset()
    units, total, fingerprints = _plan(paths, chunk_bytes or CHUNK_BYTES)
    names = [str(p) for p in paths]

    def changed() -> list[InputError]:
        return [
            InputError(names[i], 0, None, None, None, CHANGED_MESSAGE)
            for i, fingerprint in fingerprints.items()
            if not fingerprint.same_as(paths[i])
        ]

    workers = _worker_count(workers, total)
    _trace(f"plan: {len(units)} units, {workers} process(es)")
    with gc_paused(), _pool(workers) as pool, _bulk_settings(store.db.conn):  # workers fork before the transaction
        chunks = _chunks(units, paths, pool, workers)
        try:
            return _run(store, names, rule_ids, progress, chunks, total, changed)
        finally:
            chunks.close()


def import_lines(
    store: EventStore, lines: Sequence[bytes], name: str, rule_ids: Collection[str] | None = None
) -> tuple[int, int, list[InputError]]:
    """`import_streaming` of lines held in memory (an HTTP request's body), named `name` in errors: the same
    validation, checks and all-or-nothing transaction. The lines are validated before the write lock is taken."""
    return import_validated(store, validate_lines(lines, name), name, rule_ids)


Validated = tuple[Chunk, int]
"""Lines validated by `validate_lines` (their chunk and size in bytes), to append with `import_validated`."""


def validate_lines(lines: Sequence[bytes], name: str) -> Validated:
    """The validation of `import_lines`, without the log (no lock taken): `import_validated` checks and appends."""
    with gc_paused():
        return parse_chunk(lines, name, True), sum(map(len, lines))


_ARRAY = TypeAdapter(list[Event]).validator  # the event models, for a JSON array of events in one call
_SPACED_KEY = re.compile(rb'"[ \t\r\n]+:')


def validate_array(body: bytes, items: Sequence[Any]) -> Validated | None:
    """`validate_lines` of a JSON array's items, each as its compact JSON text (orjson's) on a line of its own,
    done as one validation of the array `body` itself (`items`: the body as orjson parsed it); None where the
    result could differ, and whenever an item is invalid: the caller validates the lines then (which say why).

    The same events: JSON numbers are valid in `meta` only, where orjson's and pydantic's parsers agree (on
    finite doubles and 64-bit integers, the only numbers meta's validator accepts); no key repeats (counted
    over the whole body as `maybe_duplicate_keys` counts a line's); no item's line is over `MAX_LINE_BYTES`.
    The size returned is the body's.
    """
    with gc_paused():
        # Whitespace between a key and its colon (`"k" :`) would hide the key from the count below. It ends
        # in a space before the colon, or holds a tab, CR or LF (which JSON strings cannot hold raw): those
        # fast searches first, the exact one only if one of them finds something.
        if (b"\t" in body or b"\r" in body or b"\n" in body or b" :" in body) and _SPACED_KEY.search(body):
            return None
        counted = MetaKeys()
        try:
            events = _ARRAY.validate_json(body, by_name=False, context=counted)
        except ValidationError:
            return None
        if len(events) != len(items):
            return None
        # An item's line is no longer than its text in the body (whitespace dropped; a string is written as
        # given, or shorter where it was escaped), unless it holds numbers, which only meta can: orjson
        # writes 1e15 as 1000000000000000.0.
        sized = len(body) > MAX_LINE_BYTES
        keys = counted.keys
        for i, event in enumerate(events):
            keys += key_count(event, 0)
            if (sized or "meta" in event.__pydantic_fields_set__) and len(orjson.dumps(items[i])) > MAX_LINE_BYTES:
                return None
        if keys != body.count(b'":'):
            return None
        try:
            payloads = fast_canonical_texts(events)
        except (TypeError, ValueError):
            return None  # cannot be stored: the lines say so
        built = _ChunkBuilder()
        adders = _ADDERS
        for number, (event, payload) in enumerate(zip(events, payloads, strict=True), 1):
            adders[type(event)](built, event, payload, number, None)  # = built.add(event, payload, number)
        return built.chunk([], len(events), False), len(body)


def import_validated(
    store: EventStore, validated: Validated, name: str, rule_ids: Collection[str] | None = None, nested: bool = False
) -> tuple[int, int, list[InputError]]:
    """The rest of `import_lines`: checks against the log and the append, all or nothing. `nested`: within a
    transaction the caller opened and commits (several requests in one commit), in a savepoint of its own,
    released if the lines are appended and rolled back otherwise; else in a transaction of its own."""
    _trace.reset()
    chunk, size = validated
    transaction = _Savepoint(store) if nested else _Transaction(store)
    # The larger page cache pays only for large appends; setting it costs statements of its own.
    settings = _bulk_settings(store.db.conn) if size >= CHUNK_BYTES else contextlib.nullcontext()
    with gc_paused(), settings:
        if size < CHUNK_BYTES:  # a request's worth: presumed new to the log, see _Import
            try:
                result = _run(store, [name], rule_ids, None, iter([(0, chunk, size)]), size, transaction=transaction,
                              presume_new=True)
                if not result[2]:
                    return result  # appended: no id of the log among them (the insert would have failed)
            except sqlite3.IntegrityError as exc:  # an id already in the log (rolled back): as below
                if "events.id" not in str(exc):
                    raise
        return _run(store, [name], rule_ids, None, iter([(0, chunk, size)]), size, transaction=transaction)


class _Transaction:
    """An import's own transaction: the write lock taken at the start, committed or rolled back at the end."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def begin(self) -> None:
        self.store.begin_exclusive()  # validation and append see the same log

    def commit(self) -> None:
        self.store.commit()

    def rollback(self) -> None:
        self.store.rollback()


class _Savepoint(_Transaction):
    """An import within a transaction its caller holds (and commits): a savepoint, kept or undone."""

    def begin(self) -> None:
        if not self.store.db.conn.in_transaction:
            raise RuntimeError("a nested import needs the caller's transaction")
        self.store.db.conn.execute("SAVEPOINT forewarn_request")

    def commit(self) -> None:
        self.store.db.conn.execute("RELEASE forewarn_request")

    def rollback(self) -> None:
        self.store.db.conn.execute("ROLLBACK TO forewarn_request")
        self.store.db.conn.execute("RELEASE forewarn_request")


def _run(
    store: EventStore,
    names: Sequence[str],
    rule_ids: Collection[str] | None,
    progress: Progress | None,
    chunks: Iterator[tuple[int, Chunk | str, int]],
    total: int,
    changed: Callable[[], list[InputError]] = list,
    transaction: _Transaction | None = None,
    presume_new: bool = False,
) -> tuple[int, int, list[InputError]]:
    tx = transaction or _Transaction(store)
    tx.begin()
    try:
        state = _Import(store, names, rule_ids, presume_new)
    except BaseException:
        tx.rollback()
        raise
    unreadable: set[int] = set()
    stopped: set[int] = set()  # files whose reading ended at an over-long line
    try:
        if total // EST_BYTES_PER_EVENT >= max(BULK_MIN_ROWS, state.base):
            state.go_bulk()
        store.db.conn.execute("SAVEPOINT forewarn_import")
        line_base = 0
        current = -1
        for file_index, chunk, size in chunks:
            if file_index != current:
                current, line_base = file_index, 0
            if isinstance(chunk, str):
                if file_index not in unreadable:
                    unreadable.add(file_index)
                    state.parse_errors.append(InputError(names[file_index], 0, None, None, None, chunk))
            elif file_index not in stopped:
                taking = time.process_time() if _trace.on else 0.0
                state.take(file_index, line_base, chunk)
                if _trace.on:
                    _trace.checking += time.process_time() - taking
                line_base += chunk[6]
                if chunk[8]:
                    stopped.add(file_index)
            if progress is not None:
                progress(size)
        _trace(f"read (waited {_trace.waited:.2f} s)")
        _trace.note(f"of which: chain {_trace.chaining:.2f} s cpu, insert {_trace.inserting:.2f} s cpu,"
                    f" checks as chunks came {_trace.checking - _trace.chaining - _trace.inserting:.2f} s cpu;"
                    " the rest validation (here) and waiting")
        if state.parse_errors:
            tx.rollback()
            return 0, 0, [*changed(), *state.parse_errors]  # a file still being written: say so first
        order = state.evaluation_order()
        errors = [*state.clash_errors, *state.check_references(order), *state.check_rules()]
        _trace("checks")
        if errors:
            tx.rollback()
            return 0, 0, [*changed(), *errors]
        if state.staging is not None:
            state.place_staged_rows()
            _trace("staged rows placed")
        store.db.conn.execute("RELEASE forewarn_import")
        appended = state.fresh
        if not appended:
            tx.rollback()  # nothing to append: leave the log exactly as it was
            moved = changed()
            return (0, 0, moved) if moved else (0, state.valid, [])
        if state.bulk:
            state.create_indexes()
            _trace("indexes")
        moved = changed()  # last, just before the commit: what was read is what the files hold
        if moved:
            tx.rollback()
            return 0, 0, moved
    except BaseException:
        tx.rollback()
        raise
    finally:
        state.close()
    tx.commit()
    _trace("commit")
    return appended, state.valid - appended, []
