"""Validating a byte range of a JSONL file into columns: what a log needs of each event, no model kept.

A range is validated line by line by the models (`forewarn.events.models`), exactly as `parse_lines` does;
what comes back is, per event, its columns (`at` in epoch microseconds, type, id, canonical JSON) and the
light data the log checks need (the entities it defines, the ids it references that no earlier event of the
range defines, the rules waivers name), as buffers and plain lists that marshal compactly: a forked worker
sends them to the process that builds the log's tables.
A range holding a line that is not a valid event (or that cannot be read) comes back marked as such,
without detail: its file is then parsed again by `parse_files`, which says exactly what is wrong where.
"""

from __future__ import annotations

import io
import itertools
import marshal
from array import array
from collections.abc import Iterable
from typing import NamedTuple

from pydantic import ValidationError

from forewarn.events.models import EVENT_CLASSES, MetaKeys
from forewarn.events.parse import (
    common_event,
    fast_canonical_bytes,
    gc_paused,
    validate_line,
)
from forewarn.instants import epoch_us

__all__ = ["Columns", "validate_chunk", "validate_range", "validate_range_marshalled"]


class Columns(NamedTuple):
    """The events of a range, in file order (`ok` False: the range has an invalid line; the rest is empty)."""

    ok: bool
    count: int
    at_us: bytes
    """`at` of each event, epoch microseconds, as signed 64-bit integers in machine order (an Arrow buffer)."""
    ordered: bool
    """Whether `at` never goes back within the range."""
    types: list[str]
    ids: list[str]
    payloads: bytes
    """The canonical JSON of every event, UTF-8, one after the other (an Arrow string array's data)."""
    offsets: bytes
    """Where each payload starts in `payloads`, and where the last ends: count + 1 signed 32-bit integers."""
    defines: dict[str, set[str]]
    """entity kind -> the ids of the entities the range defines."""
    references: dict[tuple[str, ...], list[str]]
    """entity kinds -> ids referenced but not defined by an earlier event of the range (nor of any of the kinds):
    these must be defined before the range."""
    rules: set[str]
    """The rules waivers name."""


_FAILED = Columns(False, 0, b"", True, [], [], b"", b"", {}, {}, set())


Plan = tuple[str | None, tuple[tuple[str, str], ...], tuple[tuple[str, tuple[str, ...]], ...], bool, bool]


def _plans() -> dict[type, Plan]:
    """Per event class: (entity kind it defines, (field, kind) of its references to one kind, (field, kinds) of
    those to several, whether it has a `customers` list, whether it is a waiver)."""
    return {
        cls: (
            cls.ENTITY,
            tuple((name, kinds[0]) for name, kinds in cls.REFS if len(kinds) == 1),
            tuple((name, kinds) for name, kinds in cls.REFS if len(kinds) > 1),
            cls.HAS_CUSTOMERS,
            kind == "waiver.granted",
        )
        for kind, cls in EVENT_CLASSES.items()
    }


_PLANS = _plans()
_KINDS = sorted({k for cls in EVENT_CLASSES.values() for _, kinds in cls.REFS for k in kinds}
                | {cls.ENTITY for cls in EVENT_CLASSES.values() if cls.ENTITY} | {"customer"})
_CUSTOMER = ("customer",)


def validate_chunk(lines: Iterable[bytes], at_file_start: bool) -> Columns:
    """The columns of the events of `lines` (blank lines skipped); `at_file_start`: the first line is a
    file's first (where a byte order mark is skipped)."""
    at_us = array("q")
    types: list[str] = []
    ids: list[str] = []
    payloads: list[bytes] = []
    local: dict[str, set[str]] = {kind: set() for kind in _KINDS}  # defined by the range's events so far
    missing: dict[tuple[str, ...], list[str]] = {(kind,): [] for kind in _KINDS}
    rules: set[str] = set()
    ordered = True
    last = -(1 << 63)
    plans = _PLANS
    memo: dict[object, int] = {}
    counted = MetaKeys()
    with gc_paused():
        for number, line in enumerate(lines, 1):
            try:
                event = common_event(line, number, at_file_start, counted)
                if event is None:
                    raise _Unusual
                payload = fast_canonical_bytes(event)
            except (ValidationError, TypeError, ValueError, _Unusual):  # errors, blank or unusual lines
                result = validate_line(line, "", number, at_file_start and number == 1)
                if result is None:
                    continue  # blank
                if type(result) is not tuple:
                    return _FAILED
                event, text = result
                assert text is not None
                payload = text.encode()
            data = event.__dict__
            at = data["at"]
            us = memo.get(at)
            if us is None:
                us = memo[at] = epoch_us(at)
            if us < last:
                ordered = False
            last = us
            at_us.append(us)
            types.append(data["type"])
            ids.append(data["id"])
            payloads.append(payload)
            entity, single, several, has_customers, waiver = plans[type(event)]
            # = references(), against the entities defined by the range's earlier events
            for name, kind in single:
                value = data[name]
                if value is not None and value not in local[kind]:
                    missing[(kind,)].append(value)
            for name, kinds in several:
                value = data[name]
                if value is not None and not any(value in local[k] for k in kinds):
                    missing.setdefault(kinds, []).append(value)
            if has_customers and data["customers"] != "all":
                customers = local["customer"]
                missing[_CUSTOMER].extend(c for c in data["customers"] if c not in customers)
            if entity is not None:
                local[entity].add(data[entity])
            if waiver:
                rules.add(data["rule"])
    offsets = array("i", [0])
    offsets.extend(itertools.accumulate(map(len, payloads)))  # a range is a few MiB: far below 2 GiB
    defines = {kind: found for kind, found in local.items() if found}
    references = {kinds: found for kinds, found in missing.items() if found}
    return Columns(True, len(ids), at_us.tobytes(), ordered, types, ids, b"".join(payloads), offsets.tobytes(),
                   defines, references, rules)


class _Unusual(Exception):
    """A line `validate_chunk` leaves to `validate_line` (too long, a BOM to skip, a key maybe repeated)."""


def validate_range(path: str, start: int, end: int) -> Columns:
    """`validate_chunk` of the lines in bytes [start, end) of the file at `path` (a range ends at a line end)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            data = handle.read(end - start)
    except OSError:
        return _FAILED
    return validate_chunk(io.BytesIO(data), start == 0)  # lines end at b"\n" only, as a file's do


def validate_range_marshalled(args: tuple[str, int, int]) -> bytes:
    """Worker: `validate_range`, marshalled (compact, and much faster to load than to unpickle)."""
    return marshal.dumps(tuple(validate_range(*args)))
