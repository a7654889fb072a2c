"""`audit --events`: JSONL files straight into the evaluation's typed tables, validated on every CPU.

The files are cut into byte ranges that forked workers validate with the event models
(`forewarn.events.batch`), each sending back only columns: `at`, type, id, canonical JSON and the light
data of the log checks. This process takes the ranges in file order, runs the log checks of `check_log`
on them as they come (ids, references in evaluation order, waivers' rules), extends the log's hash chain
(its fingerprint) and streams the canonical payloads into DuckDB, which types them into `ev`
(`tables.TYPED_EVENTS`) as it does for the SQLite log: no event model is kept, and only the ranges in
flight are held in memory.

That takes a log in evaluation order (`at` never goes back: file order is evaluation order) in which
every line is a valid event, no id repeats and every check passes: the logs written by the engine and by
`forewarn synth`. Anything else (an invalid line, a repeated id even with identical content, a dangling
reference, an unknown rule, `at` going back, standard input or a pipe) is handed back (`audit_files`
returns None) to the path that parses into models (`forewarn.log.source.load_files_checking`), which
reports exactly what is wrong where, or sorts and deduplicates: the outcome is the same either way.
"""

from __future__ import annotations

import hashlib
import itertools
import marshal
import os
import stat
import struct
from array import array
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from forewarn import parallel
from forewarn.events.batch import Columns, validate_range_marshalled
from forewarn.events.parse import MAX_LINE_BYTES, gc_paused
from forewarn.inputs import SQLITE_HEADER, is_stdin
from forewarn.log.chain import Chain, Fingerprint
from forewarn.policy.model import Policy
from forewarn.relational.audit import RelationalAuditResult, audit_relational
from forewarn.relational.evaluation import Relational, evaluate_raw
from forewarn.relational.tables import PAYLOAD_SCHEMA

__all__ = ["CHUNK_BYTES", "PARALLEL_MIN_BYTES", "NotHere", "audit_files", "load_files", "ranges"]

CHUNK_BYTES = 4 << 20
"""Bytes of input per unit of work (about 10,000 events)."""
PARALLEL_MIN_BYTES = 8 << 20
"""Below this much input, validate in this process (starting workers would cost more than it saves)."""


class NotHere(Exception):
    """Why the files are left to the path that parses them into models (see the module's docstring)."""


Range = tuple[str, int, int]
"""(path, start, end): bytes [start, end) of a file, ending at a line end or the file's end."""


def ranges(paths: Sequence[str | Path], chunk: int | None = None) -> list[Range]:
    """The byte ranges of the files, in order; NotHere for standard input, anything but a regular file, a
    SQLite database, a file that cannot be read or a line too long to be an event."""
    chunk = chunk or CHUNK_BYTES
    out: list[Range] = []
    for path in paths:
        name = str(path)
        if is_stdin(name):
            raise NotHere("standard input")
        try:
            if not stat.S_ISREG(os.stat(name).st_mode):  # before opening: a FIFO opened here loses what it holds
                raise NotHere(f"{name} is not a regular file")
            with open(name, "rb") as handle:
                st = os.fstat(handle.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise NotHere(f"{name} is not a regular file")
                if handle.read(len(SQLITE_HEADER)).startswith(SQLITE_HEADER):
                    raise NotHere(f"{name} is a SQLite database")
                size, start = st.st_size, 0
                while start < size:
                    end = min(start + chunk, size)
                    if end < size:  # on to the end of the line there
                        handle.seek(end)
                        rest = handle.readline(MAX_LINE_BYTES + 1)
                        if not rest.endswith(b"\n") and end + len(rest) < size:
                            raise NotHere(f"{name} has a line too long")
                        end += len(rest)
                    out.append((name, start, end))
                    start = end
        except OSError as exc:
            raise NotHere(f"{name}: {exc.strerror or exc}") from None
    return out


class _Checks:
    """`check_log`'s checks of new events against each other, for events taken in evaluation order, range by
    range; `failed` says which one did not pass (then `check_log` itself is to say what is wrong)."""

    def __init__(self, rule_ids: Collection[str] | None) -> None:
        self.seen: set[str] = set()
        self.defined: defaultdict[str, set[str]] = defaultdict(set)
        self.last = -(1 << 63)
        self.rule_ids = None if rule_ids is None else frozenset(rule_ids)

    def failed(self, columns: Columns) -> str | None:
        if not columns.ok:
            return "a line is not a valid event"
        if not columns.count:
            return None
        ats = array("q", columns.at_us)
        if not columns.ordered or ats[0] < self.last:
            return "`at` goes back: evaluation order is not file order"
        self.last = ats[-1]
        seen = self.seen
        before = len(seen)
        seen.update(columns.ids)
        if len(seen) != before + columns.count:
            return "an id repeats"
        defined = self.defined
        # as check_log: each reference against the entities defined before its event (the range's own
        # earlier events are taken into account by the range: what it lists must be defined before it)
        for kinds, ids in columns.references.items():
            if len(kinds) == 1:
                if not defined[kinds[0]].issuperset(ids):
                    return "a reference names no entity defined before it"
            elif any(not any(ref in defined[kind] for kind in kinds) for ref in ids):
                return "a reference names no entity defined before it"
        if self.rule_ids is not None and not self.rule_ids.issuperset(columns.rules):
            return "a waiver names an unknown rule"
        for kind, ids in columns.defines.items():
            defined[kind].update(ids)
        return None


def _extend(chain: Chain, payloads: bytes, offsets: array[int]) -> None:
    """`chain.extend` of the payloads held one after the other in `payloads` (forewarn.log.chain.link, inline)."""
    seq, head = chain.seq, chain.head
    sha, pack = hashlib.sha256, struct.Struct(">Q").pack
    for start, end in itertools.pairwise(offsets):
        seq += 1
        head = sha(head + pack(seq) + payloads[start:end]).digest()
    chain.seq, chain.head = seq, head


def _batches(
    results: Iterable[bytes], checks: _Checks, chain: Chain, failures: list[BaseException]
) -> Iterator[pa.RecordBatch]:
    """The (pos, seq, at_us, type, payload) batches of the ranges' events; it ends at the first range that fails
    the checks, with the reason in `failures` (DuckDB, scanning the stream, ends the scan where it ends)."""
    pos = 0
    try:
        for data in results:
            columns = Columns(*marshal.loads(data))
            reason = checks.failed(columns)
            if reason is not None:
                failures.append(NotHere(reason))
                return
            n = columns.count
            _extend(chain, columns.payloads, array("i", columns.offsets))
            positions = pa.array(range(pos, pos + n), pa.int64())
            at_us = pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(columns.at_us)])
            payloads = pa.Array.from_buffers(
                pa.string(), n, [None, pa.py_buffer(columns.offsets), pa.py_buffer(columns.payloads)]
            )
            yield pa.RecordBatch.from_arrays(
                [positions, positions, at_us, pa.array(columns.types, pa.string()), payloads], schema=PAYLOAD_SCHEMA
            )
            pos += n
    except Exception as exc:  # noted: DuckDB may end the scan at it rather than raise it
        failures.append(exc)
        raise


def load_files(
    paths: Sequence[str | Path],
    policy: Policy,
    as_of: datetime,
    rule_ids: Collection[str] | None = None,
    workers: int | None = None,
) -> tuple[Relational, Fingerprint]:
    """The evaluation (`forewarn.relational.evaluation.Relational`) of the JSONL files and the log's fingerprint;
    NotHere when they are left to the model path. `workers`: processes validating beside this one, which
    takes their results (0: this process validates; default: 0 for a small input, else one per CPU idle now)."""
    units = ranges(paths)
    if workers is None:
        size = sum(end - start for _, start, end in units)
        workers = int(parallel.idle_cpus() + 0.5) if size >= PARALLEL_MIN_BYTES and parallel.available() else 0
    checks = _Checks(rule_ids)
    chain = Chain()
    failures: list[BaseException] = []
    # the workers fork before DuckDB starts its threads
    with gc_paused(), parallel.mapped(validate_range_marshalled, units, workers) as results:
        stream = pa.RecordBatchReader.from_batches(PAYLOAD_SCHEMA, _batches(results, checks, chain, failures))
        relational = evaluate_raw(stream, policy, as_of, failures)
    return relational, chain.fingerprint()


def audit_files(
    paths: Sequence[str | Path],
    policy: Policy,
    as_of: datetime,
    since: datetime | None,
    until: datetime | None,
) -> tuple[RelationalAuditResult, Fingerprint] | None:
    """The audit of the JSONL files (waivers checked against the policy's rules) and the log's fingerprint, or
    None when they are left to the model path (see the module's docstring)."""
    try:
        relational, fingerprint = load_files(paths, policy, as_of, policy.ids)
    except NotHere:
        return None
    try:
        return audit_relational(relational, since, until), fingerprint
    finally:
        relational.close()
