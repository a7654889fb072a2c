"""Parse JSONL event logs into validated events, collecting every input error."""

from __future__ import annotations

import contextlib
import functools
import gc
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import field
from pathlib import Path
from typing import BinaryIO

import orjson
from pydantic import TypeAdapter, ValidationError

from forewarn.events.errors import (
    InputError,
    describe_json_error,
    errors_from_validation,
)
from forewarn.events.models import EVENT_ADAPTER, Event, MetaKeys, canonical_json, share_fields_sets
from forewarn.inputs import NotJsonl, open_input
from forewarn.record import record

__all__ = [
    "BOM",
    "MAX_LINE_BYTES",
    "TOO_LONG",
    "SourcedEvent",
    "bounded_lines",
    "fast_canonical_bytes",
    "fast_canonical_json",
    "fast_canonical_texts",
    "gc_paused",
    "key_count",
    "maybe_duplicate_keys",
    "parse_files",
    "parse_lines",
    "validate_line",
]

MAX_LINE_BYTES = 1 << 20
"""Longest accepted line (1 MiB); an event is a few hundred bytes."""
BOM = b"\xef\xbb\xbf"
"""A UTF-8 byte order mark, skipped at the start of a file."""
TOO_LONG = (f"line too long: more than {MAX_LINE_BYTES} bytes (at most {MAX_LINE_BYTES}); "
            "the rest of the file is not read")
"""The error of an over-long line. Reading stops there: a file without line ends (/dev/zero) has no next line."""


def bounded_lines(handle: BinaryIO) -> Iterator[bytes]:
    """The lines of a binary file, each read only up to `MAX_LINE_BYTES` + 1 bytes: a longer line comes
    cut there (and is refused as too long), so memory stays bounded whatever the input. The consumer stops
    at such a line (`parse_lines` does); reading on would give the rest of it as further lines."""
    return iter(functools.partial(handle.readline, MAX_LINE_BYTES + 1), b"")


@record
class SourcedEvent:
    """A validated event and where it came from."""

    event: Event
    file: str
    line: int
    stored: str | None = field(default=None, compare=False)
    """Its canonical JSON when computed at parse time (None: computed on demand, see `canonical`)."""

    @property
    def canonical(self) -> str:
        """Compact JSON, sorted keys, UTC timestamps: what the log stores and ids are compared by."""
        return self.stored if self.stored is not None else fast_canonical_json(self.event)

    @property
    def where(self) -> str:
        """`file:line`, for messages."""
        return f"{self.file}:{self.line}"


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while allocating many long-lived acyclic objects.

    Without this, parsing a large log triggers repeated full collections over
    everything already parsed, which then dominate the parse.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse_lines(
    lines: Iterable[bytes | str], file: str
) -> tuple[list[SourcedEvent], list[InputError]]:
    """Validate every line of one JSONL source; blank lines are skipped."""
    events: list[SourcedEvent] = []
    errors: list[InputError] = []
    validate = EVENT_ADAPTER.validate_json
    append = events.append
    counted = MetaKeys()
    with gc_paused():
        for number, line in enumerate(lines, 1):
            # The common case inline (a valid bytes line, not the first, of ordinary length and content);
            # every other line, and every line that fails, takes _parse_line's full path.
            if number > 1 and type(line) is bytes and len(line) <= MAX_LINE_BYTES and b"\\u" not in line:
                counted.keys = 0
                try:
                    event = validate(line, by_name=False, context=counted)
                except ValidationError:
                    pass
                else:
                    if not maybe_duplicate_keys(line, event, counted.keys):
                        share_fields_sets(event)
                        append(SourcedEvent(event, file, number))
                        continue
            result = _parse_line(line, file, number)
            if type(result) is SourcedEvent:
                append(result)
            elif result is not None:
                errors.extend(result)  # type: ignore[arg-type]
                if errors[-1].message == TOO_LONG:
                    break  # the rest of the file is not read
    return events, errors


def parse_files(paths: Sequence[str | Path]) -> tuple[list[SourcedEvent], list[InputError]]:
    """Validate every line of every file, in order; the display name is the path as given."""
    events: list[SourcedEvent] = []
    errors: list[InputError] = []
    for path in paths:
        name = str(path)
        try:
            with open_input(path) as handle:  # once: a pipe cannot be read again
                found, problems = parse_lines(bounded_lines(handle), name)
        except OSError as exc:
            errors.append(InputError(name, 0, None, None, None, f"cannot read: {exc.strerror}"))
            continue
        except NotJsonl as exc:
            errors.append(InputError(name, 0, None, None, None, str(exc)))
            continue
        events.extend(found)
        errors.extend(problems)
    return events, errors


def _parse_line(
    line: bytes | str, file: str, number: int
) -> SourcedEvent | list[InputError] | None:
    """One line: an event, its errors, or None when blank.

    The canonical JSON is not kept (it is only compared when an id repeats, and the log
    computes its own on import). Nothing that validated can fail to serialise: `meta` numbers
    are checked for JSON range, nesting stops at the parser's recursion limit (below orjson's),
    and lone surrogates are invalid JSON; it is computed here all the same for a line with a
    `\\u` escape, so that such a failure would be an input error here, not a crash later.
    """
    eager = b"\\u" in line if type(line) is bytes else True
    result = validate_line(line, file, number, canonical=eager)
    if type(result) is tuple:
        share_fields_sets(result[0])  # parsed events are kept (a log in memory): a third less memory
        return SourcedEvent(result[0], file, number, result[1])
    return result  # type: ignore[return-value]


def validate_line(
    line: bytes | str, file: str, number: int, first: bool | None = None, canonical: bool = True
) -> tuple[Event, str | None] | list[InputError] | None:
    """One line: (event, canonical JSON), its errors, or None when blank.

    `first` says whether this is the first line of its file (where a UTF-8 BOM is
    skipped); by default, when `number` is 1. Errors are located at `file`:`number`.
    With `canonical=False` the canonical JSON is not computed (None).
    """
    if isinstance(line, str):
        try:
            line = line.encode("utf-8")
        except UnicodeEncodeError:
            return [_error(file, number, "not valid UTF-8 (unpaired surrogate)")]
    if (number == 1 if first is None else first) and line.startswith(BOM):
        line = line[len(BOM):]
    if len(line) > MAX_LINE_BYTES:
        return [_error(file, number, TOO_LONG)]
    counted = MetaKeys()
    try:
        event = EVENT_ADAPTER.validate_json(line, by_name=False, context=counted)
    except ValidationError as exc:
        if not line.strip():
            return None
        return _explain(exc, line, file, number)
    if maybe_duplicate_keys(line, event, counted.keys):
        repeated = duplicate_keys(line)
        if repeated:
            return [InputError(file, number, event.type, event.id, path, DUPLICATE_KEY) for path in repeated]
    if not canonical:
        return event, None
    try:
        return event, fast_canonical_json(event)
    except (TypeError, ValueError) as exc:  # orjson: data JSON cannot hold, e.g. in `meta`
        return [InputError(file, number, event.type, event.id, None, f"cannot be stored: {exc}")]


_CANONICAL_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z
_CHECK_EVERY = 4096
_calls = 0
_fast = True


def fast_canonical_json(event: Event) -> str:
    """`canonical_json(event)`, without `model_dump`'s per-call overhead (a large share of each call).

    `model_dump(by_alias=True, exclude_defaults=True)` is this serializer call; every few thousand events
    (and the first) the result is compared with `canonical_json` itself, and should they ever differ
    (`canonical_json` changed), `canonical_json` is used from then on.
    """
    return fast_canonical_bytes(event).decode()


def fast_canonical_bytes(event: Event) -> bytes:
    """`fast_canonical_json(event)` as UTF-8 (as orjson makes it: no decoding)."""
    global _calls, _fast
    if _fast:
        data = event.__pydantic_serializer__.to_python(event, by_alias=True, exclude_defaults=True)
        text = orjson.dumps(data, option=_CANONICAL_OPTIONS)
        _calls += 1
        if _calls % _CHECK_EVERY != 1:
            return text
        slow = canonical_json(event).encode()
        if slow == text:
            return text
        _fast = False
        return slow
    return canonical_json(event).encode()


def fast_canonical_texts(events: Sequence[Event]) -> list[str]:
    """`fast_canonical_json` of each of `events` (the same comparisons with `canonical_json` included), the
    serializer called once for them all."""
    global _calls, _fast
    if not _fast:
        return [canonical_json(event) for event in events]
    dumped = _EVENTS_SERIALIZER.to_python(events, by_alias=True, exclude_defaults=True)
    texts = [orjson.dumps(data, option=_CANONICAL_OPTIONS).decode() for data in dumped]
    first = -_calls % _CHECK_EVERY  # the events fast_canonical_json would compare, one by one
    _calls += len(texts)
    for k in range(first, len(texts), _CHECK_EVERY):
        if canonical_json(events[k]) != texts[k]:
            _fast = False
            return [canonical_json(event) for event in events]
    return texts


_EVENTS_SERIALIZER = TypeAdapter(list[Event]).serializer


DUPLICATE_KEY = "duplicate key: a JSON object must not repeat a key (which value counts would be a guess)"


_VALIDATE_JSON = EVENT_ADAPTER.validator.validate_json  # EVENT_ADAPTER.validate_json(line, by_name=False), direct


def common_event(line: object, number: int, at_file_start: bool, counted: MetaKeys) -> Event | None:
    """The event of a common line (bytes, not too long, no BOM to skip, valid, no key that may repeat), or None:
    any other line is for `validate_line`, which says exactly what is wrong with it. `counted`: the
    validation's context, reused line after line."""
    if type(line) is not bytes or len(line) > MAX_LINE_BYTES or (
        number == 1 and at_file_start and line.startswith(BOM)
    ):
        return None
    counted.keys = 0
    try:
        event = _VALIDATE_JSON(line, by_name=False, context=counted)
    except (ValidationError, TypeError, ValueError):
        return None
    return None if maybe_duplicate_keys(line, event, counted.keys) else event


def maybe_duplicate_keys(line: bytes, event: Event, meta_keys: int) -> bool:
    """False when `line`, which validated as `event`, surely repeats no key in any object; True when it may.
    `meta_keys`: the keys of its `meta`, as its validation counted them (`MetaKeys`).

    The JSON parsers keep the last of repeated keys silently. The exact check (`duplicate_keys`) costs
    a second parse; this one costs a few byte scans: without an escaped quote, `":` occurs in the
    line only where a key ends, so with no whitespace after a quote either (no key `"k" :` escapes
    the count) the line has `count('":')` keys, which equals the keys the event holds exactly when
    none is repeated. An escaped quote can only add to the count (then the exact check runs); a raw tab
    or CR can only be whitespace (control characters are invalid in JSON strings), so one byte search
    each finds them.
    """
    return (b'" ' in line or b"\t" in line or b"\r" in line
            or line.count(b'":') != key_count(event, meta_keys))


def key_count(event: Event, meta_keys: int) -> int:
    """The keys of the JSON object `event` was validated from, nested objects included, when none repeats
    (fewer when one does: the parser kept one of them); `meta_keys`: those of its `meta` (`MetaKeys`)."""
    given = event.__pydantic_fields_set__
    count = len(given) + meta_keys
    if "states" in given and (states := event.__dict__["states"]) is not None:
        count += len(states.__pydantic_fields_set__)
    if "labels" in given and (labels := event.__dict__["labels"]) is not None:
        count += len(labels)
    return count


class _Pairs(list):  # type: ignore[type-arg]
    """A JSON object as its (key, value) pairs, in order, repeats kept."""


def duplicate_keys(line: bytes) -> list[str]:
    """The path (`at`, `meta.source.x`, `meta.list[2].k`) of every repeated key of the JSON `line`."""
    try:
        tree = json.loads(line, object_pairs_hook=_Pairs)
    except (ValueError, RecursionError):
        return []
    found: list[str] = []
    pending: list[tuple[object, str]] = [(tree, "")]
    while pending:
        item, path = pending.pop()
        if type(item) is _Pairs:
            seen: set[str] = set()
            for key, value in item:
                where = f"{path}.{key}" if path else key
                if key in seen and where not in found:
                    found.append(where)
                seen.add(key)
                pending.append((value, where))
        elif type(item) is list:
            pending.extend((value, f"{path}[{i}]") for i, value in enumerate(item))
    return sorted(found)


def _stdlib_json(line: bytes) -> object:
    """The JSON value by the more permissive standard library, or None."""
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def _error(file: str, number: int, message: str) -> InputError:
    return InputError(file, number, None, None, None, message)


def _explain(exc: ValidationError, line: bytes, file: str, number: int) -> list[InputError]:
    """InputErrors for a line that failed validation."""
    details = exc.errors(include_url=False)
    invalid = next((d for d in details if d["type"] == "json_invalid"), None)
    if invalid is not None:
        reason = str((invalid.get("ctx") or {}).get("error", ""))
        return [_error(file, number, describe_json_error(line, reason))]
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError:
        raw = _stdlib_json(line)
    return errors_from_validation(details, file, number, raw)
