"""A finding's evidence for readers: its events in brief, its deadline in the customer's time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from functools import lru_cache

from forewarn.audit.findings import utc
from forewarn.audit.formats.stats import Case
from forewarn.calendar import explain_deadline, format_local
from forewarn.evaluate.evaluation import deadline_text
from forewarn.evaluate.index import LogIndex

SKIP_FIELDS = frozenset({"id", "type", "at", "meta"})
MAX_SUMMARY = 260


def _all_events(index: LogIndex) -> Iterator[object]:
    for timeline in index.customers.values():
        yield from timeline.versions
    for events in index.subjects.values():
        yield from (e for _pos, e in events)
    yield from (s.comm for s in index.sent)
    for tickets in index.tickets.values():
        yield from (t for _pos, t in tickets)
    yield from (r for _pos, r in index.replies)
    yield from (w for _pos, w in index.waivers)


def event_book(index: LogIndex, wanted: Iterable[str]) -> dict[str, list[str]]:
    """id -> [type, at, summary] for the wanted event ids found in the log."""
    todo = set(wanted)
    out: dict[str, list[str]] = {}
    for event in _all_events(index):
        eid = getattr(event, "id", None)
        if eid in todo:
            out[eid] = [event.type, utc(event.at) or "", summarize(event)]  # type: ignore[attr-defined]
            todo.discard(eid)
            if not todo:
                break
    return out


def _value(value: object) -> str:
    if isinstance(value, datetime):
        return utc(value) or ""
    if isinstance(value, list | tuple):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items() if v is not None) + "}"
    return str(value)


def summarize(event: object) -> str:
    """The event's own fields, compact: 'maintenance: mx-1; start: ...; impact: interruption'."""
    data = event.model_dump(by_alias=True, exclude_none=True, exclude=SKIP_FIELDS)  # type: ignore[attr-defined]
    text = "; ".join(f"{k}: {_value(v)}" for k, v in data.items())
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1] + "…"


@lru_cache(maxsize=65536)
def _business(anchor: datetime, n: int, tz: str, country: str | None, sub: str | None) -> str:
    return explain_deadline(anchor, n, tz, country, sub)


def explain(case: Case, tz: str) -> str:
    """How the deadline was computed and when things happened, in the customer's local time."""
    if case.outcome is None:
        f = case.findings[0]
        sent = f"; sent {format_local(f.sent, tz)}" if f.sent else ""
        return f"due {format_local(f.due, tz)}{sent} (customer time, {tz})"
    o = case.outcome
    ob = o.obligation
    unit, amount = ob.offset
    if unit == "business_days" and amount:
        rule = _business(ob.anchor_at, -amount, ob.timezone, ob.country, ob.subdivision)
    else:
        rule = f"{deadline_text(ob)} = {format_local(ob.not_after, ob.timezone)}"
    opened = max(ob.not_before, ob.opened)
    until = format_local(ob.not_after, ob.timezone)
    window = f"counts if sent from {format_local(opened, ob.timezone)} to {until}"
    sent = f"; sent {format_local(o.sent, ob.timezone)}" if o.sent else "; nothing sent"
    where = ob.country + (f"-{ob.subdivision}" if ob.subdivision else "") if ob.country else "Mon-Fri"
    return f"deadline: {rule}; {window}{sent} (customer calendar: {ob.timezone}, {where})"
