"""The typed columns of the log (schema 3): the fields the relational evaluation reads, beside the payload.

Each event's row holds, besides its canonical payload, the fields the evaluation reads (see
`forewarn.relational.tables`) as columns of their own, so that an audit reads them with a columnar scan
instead of parsing every payload again. A column holds what the canonical payload says: NULL where the
payload has no such field (defaults are left out of the canonical payload, so a customer's `timezone` is
NULL when it is UTC); instants are epoch microseconds; lists and label sets are their canonical JSON text.
They are derived from the validated event when it is recorded (and from the payload by the schema 3 upgrade);
the hash chain covers the payload, and `forewarn verify` checks that the columns agree with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from forewarn.events import EVENT_CLASSES
from forewarn.instants import epoch_us

__all__ = ["COLUMNS_OF", "EXTRACTORS", "NAMESPACE", "TYPED", "TYPED_NAMES", "Extract", "typed_source"]

TYPED: tuple[tuple[str, str, str], ...] = (
    # (column, SQLite type, where it comes from in the event)
    ("subject_kind", "TEXT", "which of maintenance, incident or release names the `subject` column"),
    ("communication", "TEXT", "communication"),
    ("kind", "TEXT", "kind"),
    ("from_addr", "TEXT", "from"),
    ("to_list", "TEXT", "to, as a JSON array"),
    ("ticket", "TEXT", "ticket"),
    ("reply", "TEXT", "reply"),
    ("in_reply_to", "TEXT", "in_reply_to"),
    ("plan", "TEXT", "plan"),
    ("timezone", "TEXT", "timezone (NULL: UTC, the default)"),
    ("country", "TEXT", "country"),
    ("subdivision", "TEXT", "subdivision"),
    ("contacts", "TEXT", "contacts, as a JSON array"),
    ("labels", "TEXT", "labels, as a JSON object (sorted keys)"),
    ("waiver", "TEXT", "waiver"),
    ("rule", "TEXT", "rule"),
    ("waived_subject", "TEXT", "a waiver's subject"),
    ("stated_window_start", "INTEGER", "states.window_start, epoch microseconds"),
    ("stated_window_end", "INTEGER", "states.window_end, epoch microseconds"),
    ("stated_impact", "TEXT", "states.impact"),
    ("stated_reason", "TEXT", "states.reason"),
    ("stated_end", "INTEGER", "states.end, epoch microseconds"),
    ("stated_next_update_by", "INTEGER", "states.next_update_by, epoch microseconds"),
)
"""The typed columns, in the order an event class's extractor (`EXTRACTORS`) returns them."""

TYPED_NAMES = tuple(name for name, _, _ in TYPED)

_SORTED = orjson.OPT_SORT_KEYS
_SUBJECTS = ("maintenance", "incident", "release")


def _us(t: Any) -> int | None:
    return None if t is None else epoch_us(t)


def _list(values: Any) -> str | None:
    return None if values is None else orjson.dumps(list(values)).decode()


def _labels(labels: Any) -> str | None:
    return None if labels is None else orjson.dumps(labels, option=_SORTED).decode()


_STATED = tuple(name for name in TYPED_NAMES if name.startswith("stated_"))
_NO_STATES: tuple[None, ...] = (None,) * len(_STATED)


def _states(states: Any) -> tuple[Any, ...]:
    """The stated_* columns (in `TYPED` order) of a communication's `states`."""
    if states is None:
        return _NO_STATES
    return (_us(states.window_start), _us(states.window_end), states.impact, states.reason, _us(states.end),
            _us(states.next_update_by))


Extract = Callable[[dict[str, Any]], tuple[Any, ...]]


def _expressions(cls: type) -> list[tuple[str, str | None]]:
    """(column, Python expression of the event's fields `d` giving its value, or None: always NULL)."""
    fields = set(cls.model_fields)  # type: ignore[attr-defined]
    out: list[tuple[str, str | None]] = []
    for name in TYPED_NAMES:
        expr: str | None = None
        if name == "subject_kind":  # the first one set, as the `subject` column (forewarn.log.store.row_values)
            kinds = [k for k in _SUBJECTS if k in fields]
            if kinds:
                expr = "(" + " else ".join(f"{k!r} if d[{k!r}]" for k in kinds) + " else None)"
        elif name == "from_addr":
            expr = "d['from_']" if "from_" in fields else None
        elif name in ("to_list", "contacts"):
            field = "to" if name == "to_list" else "contacts"
            expr = f"_list(d[{field!r}])" if field in fields else None
        elif name == "labels":  # mostly absent: no call then
            expr = "(None if d['labels'] is None else _labels(d['labels']))" if "labels" in fields else None
        elif name == "timezone":
            expr = "(None if d['timezone'] == 'UTC' else d['timezone'])" if name in fields else None
        elif name == "waived_subject":
            expr = "d['subject']" if cls.__name__ == "WaiverGranted" else None
        elif name in _STATED:
            expr = "_states(d['states'])" if "states" in fields else None
        elif name in fields:
            expr = f"d[{name!r}]"
        out.append((name, expr))
    return out


def typed_source(cls: type) -> str:
    """The typed values of an event of `cls` as Python source: the items of a tuple display, in `TYPED` order,
    of the event's fields `d` (its `__dict__`) and the helpers of `NAMESPACE` (the names in it are ours:
    model fields and columns). Fields the class does not have are NULL without a look-up."""
    expressions = _expressions(cls)
    _FILLED[cls] = tuple(name for name, expr in expressions if expr is not None)
    parts = []
    for name, expr in expressions:
        if name in _STATED:
            if name == _STATED[0]:
                parts.append(f"*{expr}" if expr else ", ".join(["None"] * len(_STATED)))
            continue
        parts.append(expr or "None")
    return ", ".join(parts)


NAMESPACE: dict[str, Any] = {"_list": _list, "_labels": _labels, "_states": _states}
"""The helpers `typed_source` uses."""


def _extractor(cls: type) -> Extract:
    """The function from an event of `cls`'s fields (`__dict__`) to its typed values, as one expression
    compiled from `typed_source`: one call per event, no per-column dispatch."""
    return eval(f"lambda d: ({typed_source(cls)},)", dict(NAMESPACE))  # type: ignore[no-any-return]


_FILLED: dict[type, tuple[str, ...]] = {}

EXTRACTORS: dict[type, Extract] = {cls: _extractor(cls) for cls in EVENT_CLASSES.values()}
"""Event class -> its typed values from its fields (`event.__dict__`)."""

COLUMNS_OF: dict[str, tuple[str, ...]] = {kind: _FILLED[cls] for kind, cls in EVENT_CLASSES.items()}
"""Event type -> the typed columns its events may fill (the others are always NULL for it)."""
