"""Input errors of the event log, and pydantic's validation errors in plain words."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from forewarn.events.models import (
    CUSTOM_ERROR,
    EMAIL_PATTERN,
    EVENT_CLASSES,
    EVENT_TYPES,
    ID_PATTERN,
    NONBLANK_PATTERN,
    did_you_mean,
    id_problem,
    shorten,
)

__all__ = ["InputError", "describe_json_error", "errors_from_validation", "event_identity"]

MAX_SHOWN_ID = 80
MAX_ERRORS_PER_LINE = 20
"""More errors than this on one line are summarised ("... and N more")."""


@dataclass(frozen=True, order=True)
class InputError:
    """One problem with the input, located as precisely as known."""

    file: str
    line: int
    event_type: str | None
    event_id: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        """`events.jsonl:17: maintenance.scheduled 'mx-42': field 'end': must be ...`."""
        parts = [f"{self.file}:{self.line}" if self.line > 0 else self.file]
        who = " ".join(
            p for p in (self.event_type, None if self.event_id is None else f"'{self.event_id}'")
            if p
        )
        if who:
            parts.append(who)
        if self.field:
            parts.append(f"field '{self.field}'")
        parts.append(self.message)
        return ": ".join(parts)

    def sort_key(self) -> tuple[str, int, str, str, str, str]:
        """A total order even where some parts are unknown (None)."""
        return (self.file, self.line, self.event_type or "", self.event_id or "",
                self.field or "", self.message)


# --------------------------------------------------------------------------- identity


def event_identity(raw: object) -> tuple[str | None, str | None]:
    """(event type, event id) of a raw JSON value, where they are known and sensible."""
    if not isinstance(raw, dict):
        return None, None
    kind = raw.get("type")
    ident = raw.get("id")
    kind = kind if isinstance(kind, str) and kind in EVENT_CLASSES else None
    if not isinstance(ident, str) or id_problem(ident[:200]) is not None:  # not shown: empty, blank, control characters
        return kind, None
    if len(ident) > MAX_SHOWN_ID:
        ident = ident[: MAX_SHOWN_ID - 3] + "..."
    return kind, ident


# --------------------------------------------------------------------------- JSON errors

_AT_POSITION = re.compile(r"^(?:Invalid JSON: )?(?P<what>.*?) at line \d+ column (?P<col>\d+)$")
_JSON_NAMES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
               int: "a number", float: "a number", type(None): "null"}


def describe_json_error(line: bytes, parser_message: str = "") -> str:
    """Why a line is not a JSON value, in the words of the standard library."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not valid UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1})"
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not valid JSON: {exc.msg} (column {exc.colno})"
    except RecursionError:
        return "not valid JSON: nested too deeply"
    except ValueError:  # valid JSON to the standard library, but a number too long for int(): the parser's words
        pass
    match = _AT_POSITION.match(parser_message)
    if match is None:
        return f"not valid JSON: {parser_message or 'unreadable'}"
    what = match.group("what")
    if what == "recursion limit exceeded":
        what = "nested too deeply"
    return f"not valid JSON: {what} (column {match.group('col')})"


def not_an_object(raw: object) -> str:
    """Message for a line holding a JSON value that is not an object."""
    return f"must be a JSON object, not {_JSON_NAMES.get(type(raw), 'something else')}"


# --------------------------------------------------------------------------- pydantic errors


def errors_from_validation(
    details: Sequence[ErrorDetails], file: str, line: int, raw: object
) -> list[InputError]:
    """Translate the pydantic errors of one line into InputErrors."""
    event_type, event_id = event_identity(raw)
    model = EVENT_CLASSES.get(event_type) if event_type else None
    found: list[InputError] = []
    for err in _without_echoes(details):
        for field, message in _translate(err, model, raw):
            found.append(InputError(file, line, event_type, event_id, field, message))
    found = list(dict.fromkeys(found))
    if len(found) > MAX_ERRORS_PER_LINE:
        rest = len(found) - MAX_ERRORS_PER_LINE + 1
        found = found[: MAX_ERRORS_PER_LINE - 1]
        found.append(InputError(file, line, event_type, event_id, None,
                                f"... and {rest} more errors on this line"))
    return found


def _without_echoes(details: Sequence[ErrorDetails]) -> Iterable[ErrorDetails]:
    """Drop a list's "too short" when it only echoes errors of its own items."""
    parents = {tuple(d["loc"][:i]) for d in details for i in range(len(d["loc"]))}
    for err in details:
        if err["type"] == "too_short" and tuple(err["loc"]) in parents:
            continue
        yield err


def _translate(
    err: ErrorDetails, model: type[BaseModel] | None, raw: object
) -> list[tuple[str | None, str]]:
    """(field, message) pairs for one pydantic error."""
    loc = tuple(err["loc"])
    if model is not None and loc and loc[0] == _tag_of(model):
        loc = loc[1:]
    kind = err["type"]
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    if kind == CUSTOM_ERROR:
        first = (ctx.get("field") or _path(loc) or None, ctx["message"])
        return [first, *[(f, m) for f, m in ctx.get("more", ())]]
    if kind in ("union_tag_not_found", "union_tag_invalid"):
        return [("type", _type_message(raw))]
    if kind in ("dict_type", "model_type", "model_attributes_type") and not loc:
        return [(None, not_an_object(raw))]
    if kind == "json_invalid":
        return [(None, f"not valid JSON: {ctx.get('error', '')}")]
    return [(_path(loc) or None, _message(kind, ctx, err, model, loc))]


def _tag_of(model: type[BaseModel]) -> str:
    return model.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr,no-any-return]


def _path(loc: tuple[int | str, ...]) -> str:
    """`states.window_start`, `contacts[1]`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return shorten(out)


def _type_message(raw: object) -> str:
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind is None:
        return "required"
    if not isinstance(kind, str):
        return "must be a string"
    hint = did_you_mean(kind, EVENT_TYPES)
    listed = f" (one of: {', '.join(EVENT_TYPES)})"
    return f"unknown event type '{shorten(kind)}'" + (hint or listed)


_SIMPLE = {
    "missing": "required",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "datetime_type": "must be an RFC 3339 timestamp with offset",
    "timezone_aware": "must be an RFC 3339 timestamp with offset",
}


def _message(
    kind: str, ctx: dict[str, Any], err: ErrorDetails, model: type[BaseModel] | None,
    loc: tuple[int | str, ...],
) -> str:
    """Plain words for a standard pydantic error type."""
    if kind in _SIMPLE:
        return _SIMPLE[kind]
    if kind == "extra_forbidden":
        name = str(loc[-1])[:200]
        return "unknown field" + did_you_mean(name, _field_names(model, loc[:-1]))
    if kind == "literal_error":
        return _one_of(re.findall(r"'([^']*)'", ctx.get("expected", "")), err.get("input"))
    if kind == "string_pattern_mismatch":
        return _pattern_message(ctx.get("pattern", ""), err.get("input"))
    if kind in ("string_too_short", "too_short"):
        return "must not be empty" if ctx.get("min_length") == 1 else (
            f"must have at least {ctx.get('min_length')} " + _unit(kind))
    if kind in ("string_too_long", "too_long"):
        return f"must have at most {ctx.get('max_length')} " + _unit(kind)
    return _plain(err["msg"])


def _one_of(allowed: list[str], value: object) -> str:
    """`must be one of: a, b, c` (with a did-you-mean for a near miss)."""
    hint = did_you_mean(value, allowed) if isinstance(value, str) else ""
    return "must be one of: " + ", ".join(allowed) + hint


def _unit(kind: str) -> str:
    return "characters" if kind.startswith("string") else "items"


def _pattern_message(pattern: str, value: object) -> str:
    if pattern == EMAIL_PATTERN:
        shown = shorten(value) if isinstance(value, str) else value
        return f"must be an e-mail address (got {shown!r})"
    if pattern == NONBLANK_PATTERN:
        return "must not be empty"
    if pattern == ID_PATTERN and isinstance(value, str):
        return id_problem(value) or "has an invalid format"
    return "has an invalid format"


def _plain(msg: str) -> str:
    """pydantic's own wording, made to read like ours (no URLs, lower case)."""
    msg = msg.split("\n", 1)[0].replace("Input should be", "must be")
    return msg[:1].lower() + msg[1:]


def _field_names(model: type[BaseModel] | None, loc: tuple[int | str, ...]) -> list[str]:
    """JSON names of the fields of the (nested) model at `loc`."""
    current = model
    for part in loc:
        if current is None or isinstance(part, int):
            return []
        info = next((f for n, f in current.model_fields.items()
                     if part in (n, f.alias)), None)
        current = _model_in(info.annotation) if info else None
    if current is None:
        return []
    return [f.alias or n for n, f in current.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model class inside an annotation such as `States | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
