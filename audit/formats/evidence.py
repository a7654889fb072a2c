"""A finding's evidence for readers: its events in brief, its deadline in the customer's time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from functools import lru_cache

import orjson

from forewarn.audit.findings import Finding, utc
from forewarn.audit.formats.stats import Case
from forewarn.calendar import explain_deadline, format_local
from forewarn.evaluate.evaluation import deadline_text
from forewarn.evaluate.index import LogIndex

SKIP_FIELDS = frozenset({"id", "type", "at", "meta"})
MAX_SUMMARY = 260


def _containers(index: LogIndex) -> Iterator[Iterable[object]]:
    """The whole log, container by container (the index keeps no id -> event map)."""
    for timeline in index.customers.values():
        yield timeline.versions
    for events in index.subjects.values():
        yield [e for _pos, e in events]
    yield [s.comm for s in index.sent]
    for tickets in index.tickets.values():
        yield [t for _pos, t in tickets]
    yield [r for _pos, r in index.replies]
    yield [w for _pos, w in index.waivers]


def _near(index: LogIndex, f: Finding, subjects: dict[str, list[object]]) -> Iterator[object]:
    """The events a finding's evidence can name: its subject's lifecycle, its communications and
    their tickets, its customer's versions."""
    yield from subjects.get(f.subject, ())
    timeline = index.customers.get(f.customer)
    if timeline is not None:
        yield from timeline.versions
    for cid in {f.subject, f.communication}:
        sent = index.sent_by_id.get(cid) if cid else None
        if sent is not None:
            yield sent.comm
            yield from subjects.get(sent.subject[1], ()) if sent.subject else ()
            yield from (t for _pos, t in index.tickets.get(cid, ()))  # type: ignore[arg-type]


def event_book(index: LogIndex, findings: Iterable[Finding]) -> dict[str, list[str]]:
    """id -> [type, at, summary] for every event the findings' evidence names.

    Looked up near each finding (its subject, communication, customer), then,
    for anything still missing, in the whole log.
    """
    subjects = {sid: [e for _pos, e in events] for (_kind, sid), events in index.subjects.items()}
    extra = [*(r for _pos, r in index.replies), *(w for _pos, w in index.waivers)]
    out: dict[str, list[str]] = {}
    todo: set[str] = set()
    for f in findings:
        wanted = {e for e in f.evidence if e not in out}
        if not wanted:
            continue
        for event in _near(index, f, subjects):
            if event.id in wanted:  # type: ignore[attr-defined]
                out[event.id] = _entry(event)  # type: ignore[attr-defined]
        todo.update(e for e in wanted if e not in out)
    for event in extra:
        if event.id in todo:  # type: ignore[attr-defined]
            out[event.id] = _entry(event)  # type: ignore[attr-defined]
    todo.difference_update(out)
    for events in _containers(index) if todo else ():
        for event in events:
            if event.id in todo:  # type: ignore[attr-defined]
                out[event.id] = _entry(event)  # type: ignore[attr-defined]
    return out


def _entry(event: object) -> list[str]:
    return [event.type, utc(event.at) or "", summarize(event)]  # type: ignore[attr-defined]


def _value(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ", ".join(map(_value, value))
    return orjson.dumps(value).decode("utf-8")


def summarize(event: object) -> str:
    """The event's own fields, compact: 'maintenance: mx-1; start: 2026-...Z; impact: interruption'."""
    data = event.model_dump(  # type: ignore[attr-defined]
        mode="json", by_alias=True, exclude_none=True, exclude=SKIP_FIELDS, warnings=False
    )
    text = "; ".join(f"{k}: {_value(v)}" for k, v in data.items())
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1] + "…"


@lru_cache(maxsize=65536)
def _local(t: datetime, tz: str) -> str:
    return format_local(t, tz)


@lru_cache(maxsize=65536)
def _business(anchor: datetime, n: int, tz: str, country: str | None, sub: str | None) -> str:
    return explain_deadline(anchor, n, tz, country, sub)


def explain(case: Case, tz: str) -> str:
    """How the deadline was computed and when things happened, in the customer's local time."""
    if case.outcome is None:
        f = case.findings[0]
        sent = f"; sent {_local(f.sent, tz)}" if f.sent else ""
        return f"due {_local(f.due, tz)}{sent} (customer time, {tz})"
    o = case.outcome
    ob = o.obligation
    unit, amount = ob.offset
    if unit == "business_days" and amount:
        rule = _business(ob.anchor_at, -amount, ob.timezone, ob.country, ob.subdivision)
    else:
        rule = f"{deadline_text(ob)} = {_local(ob.not_after, ob.timezone)}"
    opened = max(ob.not_before, ob.opened)
    until = _local(ob.not_after, ob.timezone)
    window = f"counts if sent from {_local(opened, ob.timezone)} to {until}"
    sent = f"; sent {_local(o.sent, ob.timezone)}" if o.sent else "; nothing sent"
    where = ob.country + (f"-{ob.subdivision}" if ob.subdivision else "") if ob.country else "Mon-Fri"
    return f"deadline: {rule}; {window}{sent} (customer calendar: {ob.timezone}, {where})"
