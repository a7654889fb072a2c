"""Validating a byte range of a JSONL file into columns: what a log needs of each event, no model kept.

A range is validated line by line by the models (`forewarn.events.models`), exactly as `parse_lines` does;
what comes back is, per event, its columns (`at` in epoch microseconds, type, id, canonical JSON) and the
light data the log checks need (the entity it defines, the ids it references, a waiver's rule), as plain
lists that marshal compactly: a forked worker sends them to the process that builds the log's tables.
A range holding a line that is not a valid event (or that cannot be read) comes back marked as such,
without detail: its file is then parsed again by `parse_files`, which says exactly what is wrong where.
"""

from __future__ import annotations

import io
import marshal
from collections.abc import Iterable
from typing import NamedTuple

from pydantic import ValidationError

from forewarn.events.models import EVENT_ADAPTER, EVENT_CLASSES
from forewarn.events.parse import (
    BOM,
    MAX_LINE_BYTES,
    fast_canonical_json,
    gc_paused,
    maybe_duplicate_keys,
    validate_line,
)
from forewarn.instants import epoch_us

__all__ = ["Columns", "Link", "validate_chunk", "validate_range", "validate_range_marshalled"]

Link = tuple[str | None, str | None, tuple[tuple[tuple[str, ...], str], ...], str | None]
"""(entity kind it defines or None, that entity's id, ((entity kinds, id) of every reference, in `references()`
order), a waiver's rule or None)."""


class Columns(NamedTuple):
    """The events of a range, in file order (`ok` False: the range has an invalid line; the lists are empty)."""

    ok: bool
    at_us: list[int]
    types: list[str]
    ids: list[str]
    payloads: list[str]
    links: list[Link | None]
    """None for an event that defines nothing, references nothing and is no waiver."""


_FAILED = Columns(False, [], [], [], [], [])


def _plans() -> dict[type, tuple[str | None, tuple[tuple[str, tuple[str, ...]], ...], bool, bool]]:
    """Per event class: (entity kind it defines, REFS, has a `customers` list, is a waiver)."""
    return {
        cls: (cls.ENTITY, cls.REFS, cls.HAS_CUSTOMERS, kind == "waiver.granted")
        for kind, cls in EVENT_CLASSES.items()
    }


_PLANS = _plans()
_CUSTOMER = ("customer",)


def validate_chunk(lines: Iterable[bytes], at_file_start: bool) -> Columns:
    """The columns of the events of `lines` (blank lines skipped); `at_file_start`: the first line is a
    file's first (where a byte order mark is skipped)."""
    at_us: list[int] = []
    types: list[str] = []
    ids: list[str] = []
    payloads: list[str] = []
    links: list[Link | None] = []
    validate = EVENT_ADAPTER.validator.validate_json  # EVENT_ADAPTER.validate_json(line, by_name=False), direct
    plans = _PLANS
    memo: dict[object, int] = {}
    with gc_paused():
        for number, line in enumerate(lines, 1):
            try:
                if len(line) > MAX_LINE_BYTES or (number == 1 and at_file_start and line.startswith(BOM)):
                    raise _Unusual
                event = validate(line, by_name=False)
                if maybe_duplicate_keys(line, event):
                    raise _Unusual  # validate_line says whether a key repeats
                payload = fast_canonical_json(event)
            except (ValidationError, TypeError, ValueError, _Unusual):  # errors, blank or unusual lines
                result = validate_line(line, "", number, at_file_start and number == 1)
                if result is None:
                    continue  # blank
                if type(result) is not tuple:
                    return _FAILED
                event, payload = result
                assert payload is not None
            data = event.__dict__
            at = data["at"]
            us = memo.get(at)
            if us is None:
                us = memo[at] = epoch_us(at)
            at_us.append(us)
            types.append(data["type"])
            ids.append(data["id"])
            payloads.append(payload)
            entity, refs, has_customers, waiver = plans[type(event)]
            # = references(): the single-id fields in REFS order, then the customers listed
            found = tuple((kinds, data[name]) for name, kinds in refs if data[name] is not None)
            if has_customers and data["customers"] != "all":
                found += tuple((_CUSTOMER, c) for c in data["customers"])
            if entity is None and not found and not waiver:
                links.append(None)
            else:
                links.append((entity, None if entity is None else data[entity], found,
                              data["rule"] if waiver else None))
    return Columns(True, at_us, types, ids, payloads, links)


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
