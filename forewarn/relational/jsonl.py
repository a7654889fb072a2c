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

import marshal
import os
import stat
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


def ranges(paths: Sequence[str | Path], chunk: int = CHUNK_BYTES) -> list[Range]:
    """The byte ranges of the files, in order; NotHere for standard input, anything but a regular file, a
    SQLite database, a file that cannot be read or a line too long to be an event."""
    out: list[Range] = []
    for path in paths:
        name = str(path)
        if is_stdin(name):
            raise NotHere("standard input")
        try:
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
        ats = columns.at_us
        if not ats:
            return None
        if ats[0] < self.last or ats != sorted(ats):
            return "`at` goes back: evaluation order is not file order"
        self.last = ats[-1]
        seen = self.seen
        before = len(seen)
        seen.update(columns.ids)
        if len(seen) != before + len(columns.ids):
            return "an id repeats"
        defined = self.defined
        rule_ids = self.rule_ids
        for link in columns.links:
            if link is None:
                continue
            entity, ident, refs, rule = link
            for kinds, ref in refs:  # as check_log: against the entities defined before this event
                if ref not in defined[kinds[0]] and not any(ref in defined[kind] for kind in kinds[1:]):
                    return "a reference names no entity defined before it"
            if rule is not None and rule_ids is not None and rule not in rule_ids:
                return "a waiver names an unknown rule"
            if entity is not None:
                defined[entity].add(ident)  # type: ignore[arg-type]
        return None


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
            chain.extend(columns.payloads)
            positions = pa.array(range(pos, pos + len(columns.ids)), pa.int64())
            yield pa.RecordBatch.from_arrays(
                [positions, positions, pa.array(columns.at_us, pa.int64()), pa.array(columns.types, pa.string()),
                 pa.array(columns.payloads, pa.string())],
                schema=PAYLOAD_SCHEMA,
            )
            pos += len(columns.ids)
    except BaseException as exc:  # noted: DuckDB may end the scan at it rather than raise it
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
    NotHere when they are left to the model path. `workers`: processes validating (default: one per CPU for
    a large input, else 1: this process)."""
    units = ranges(paths)
    if workers is None:
        size = sum(end - start for _, start, end in units)
        workers = None if size >= PARALLEL_MIN_BYTES else 1
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
