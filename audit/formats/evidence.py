"""A finding's evidence for readers: its events in brief, its deadline in the customer's time."""

from __future__ import annotations

import shlex
from datetime import datetime
from functools import lru_cache

import orjson

from forewarn.audit.findings import Finding, utc
from forewarn.audit.formats.stats import Case
from forewarn.calendar import explain_deadline, format_local
from forewarn.relational.violations import deadline_text

SKIP_FIELDS = frozenset({"id", "type", "at", "meta"})
MAX_SUMMARY = 260


def entry(event: object) -> list[str]:
    """An event in brief for the report: [type, at, summary]."""
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
    ob = case.outcome
    if ob.days:
        rule = _business(ob.anchor_at, ob.days, ob.timezone, ob.country, ob.subdivision)
    else:
        deadline = deadline_text(0, ob.minutes, ob.anchor_at, ob.timezone)
        rule = f"{deadline} = {_local(ob.not_after, ob.timezone)}"
    opened = max(ob.not_before, ob.opened)
    until = _local(ob.not_after, ob.timezone)
    window = f"counts if sent from {_local(opened, ob.timezone)} to {until}"
    sent = f"; sent {_local(ob.sent, ob.timezone)}" if ob.sent else "; nothing sent"
    where = ob.country + (f"-{ob.subdivision}" if ob.subdivision else "") if ob.country else "Mon-Fri"
    return f"deadline: {rule}; {window}{sent} (customer calendar: {ob.timezone}, {where})"


def command(f: Finding, as_of: datetime, rules_dir: str | None = None) -> str:
    """The `forewarn explain` command line that explains a finding (shown by the reports)."""
    parts = ["forewarn", "explain", "--rule", f.rule, "--subject", f.subject, "--customer", f.customer]
    parts += ["--as-of", utc(as_of) or ""]
    if rules_dir:
        parts += ["--rules", rules_dir]
    return shlex.join(parts)
