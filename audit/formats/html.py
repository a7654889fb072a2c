"""`--format html`: one self-contained page (Jinja2, autoescaped): verdict, charts, findings."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from itertools import pairwise
from typing import Any

import numpy as np
import orjson
from jinja2 import Environment, FunctionLoader, select_autoescape
from markupsafe import Markup

from forewarn import __version__
from forewarn.audit.findings import AuditResult, Finding, utc
from forewarn.audit.formats import charts
from forewarn.audit.formats.evidence import command as explain_command
from forewarn.audit.formats.evidence import explain
from forewarn.audit.formats.stats import (
    MAX_TABLE_ROWS,
    MAX_TIMELINES,
    Case,
    Details,
    Group,
    Report,
    build,
    customer_key,
    lead_times,
    rate_text,
    timeline_key,
    timing,
)
from forewarn.calendar import holidays_version

LEAD_EDGES = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)  # multiples of the required N business days
FINDING_FIELDS = (
    "rule", "status", "severity", "problem", "subject", "customer", "communication", "due", "sent",
    "timing", "message", "evidence", "waiver", "retroactive", "explain", "about", "command",
)  # fmt: skip


def _template_source(name: str) -> str:
    return resources.files("forewarn.templates").joinpath(name).read_text(encoding="utf-8")


@cache
def environment() -> Environment:
    env = Environment(
        loader=FunctionLoader(_template_source),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["rate"] = rate_text
    env.filters["when"] = when
    env.filters["colour"] = charts.rate_colour
    return env


def when(t: datetime | None, last: bool = False) -> str:
    """A period bound for people: a date if midnight UTC (for an exclusive end, the day before)."""
    if t is None:
        return ""
    if (t.hour, t.minute, t.second) == (0, 0, 0):
        return (t - timedelta(days=1) if last else t).strftime("%Y-%m-%d")
    return t.strftime("%Y-%m-%d %H:%M UTC")


def _midnight(t: datetime) -> bool:
    return (t.hour, t.minute, t.second, t.microsecond) == (0, 0, 0, 0)


def day(t: datetime, last: bool = False) -> str:
    """A date for people, "1 January 2026"; for an exclusive end at midnight (`last`) the day before;
    with the time when it is not midnight UTC."""
    if _midnight(t):
        d = t - timedelta(days=1) if last else t
        return f"{d.day} {d:%B %Y}"
    return f"{t.day} {t:%B %Y, %H:%M} UTC"


def period_words(result: AuditResult) -> tuple[str, str]:
    """The review period as a heading and a sentence for people (the formats' period_text is for machines)."""
    since, until, as_of = result.since, result.until, result.as_of
    if since is not None and until is not None:
        last = until - timedelta(days=1)
        if _midnight(since) and _midnight(until) and since.year == last.year:
            start = f"{since.day} {since:%B}" if since.month != last.month or since.day != last.day else ""
            span = f"{start} to {day(until, True)}" if start else day(until, True)
        else:
            span = f"{day(since)} to {day(until, True)}"
        heading = f"Customer notifications due {span}"
    elif since is not None:
        heading = f"Customer notifications due since {day(since)}"
    elif until is not None:
        heading = f"Customer notifications due up to {day(until, True)}"
    else:
        heading = "Customer notifications: everything due so far"
    judged = f"{day(as_of)}, 00:00 UTC" if _midnight(as_of) else day(as_of)
    sentence = (
        f"Judged as of {judged}: what was recorded later is not counted, and what falls due later is pending. "
        "Each notice counts in the period its deadline falls in."
    )
    return heading, sentence


# -- charts -------------------------------------------------------------------------------


def _bar(label: str, g: Group) -> charts.Bar:
    t = g.tally
    return charts.Bar(label, t.rate, t.met, t.judged, f"{t.violated} violated" if t.violated else "")


def _lead_bins(n: int, leads: np.ndarray) -> tuple[list[charts.Bin], int]:
    """The histogram of `leads` (NaN: none sent) by LEAD_EDGES x n."""
    edges = [e * n for e in LEAD_EDGES]
    labels = ["after start"] + [f"{_num(a)}–{_num(b)}" for a, b in pairwise(edges)]
    labels += [f"{_num(edges[-1])}+", "none sent"]
    none = np.isnan(leads)
    after = leads[~none]
    ahead = after[after >= 0]
    bins = np.minimum(np.searchsorted(np.array(edges), ahead, side="right"), len(edges))
    counts = [*np.bincount(bins, minlength=len(edges) + 1).tolist(), int(none.sum())]
    counts[0] += int((after < 0).sum())
    line_after = edges.index(float(n))  # bins before it are short of the notice
    return [
        charts.Bin(label, c, i <= line_after or i == len(labels) - 1)
        for i, (label, c) in enumerate(zip(labels, counts, strict=True))
    ], line_after


def _num(x: float) -> str:
    return f"{x:g}"


def _charts(report: Report) -> dict[str, Any]:
    by_rule = [_bar(rule.id, g) for rule, g in report.rules if g.tally.cases]
    by_month = [_bar(g.key, g) for g in report.months]
    leads = []
    for rule_id, (n, values) in lead_times(report).items():
        bins, line_after = _lead_bins(n, values)
        svg = charts.lead_histogram(
            f"Lead time of {rule_id} notices",
            bins,
            line_after,
            f"{n} business day{'s' if n != 1 else ''} required",
        )
        short = int(np.count_nonzero(np.isnan(values) | (values < n)))
        leads.append({"rule": rule_id, "svg": Markup(svg), "n": n, "total": len(values), "short": short})
    return {
        "by_rule": Markup(charts.rate_bars("Compliance by rule", by_rule)),
        "by_month": Markup(charts.month_columns("Compliance by month (by due date)", by_month)),
        "leads": leads,
    }


# -- timelines ----------------------------------------------------------------------------


def _bad_communications(cases: Iterable[Case]) -> set[str]:
    return {f.communication for c in cases for f in c.findings if f.communication and f.status == "violation"}


def _spans(h: Any) -> list[charts.Span]:
    spans = []
    for i, v in enumerate(h.versions):
        current = i == len(h.versions) - 1 and h.cancelled_at is None
        label = f"version {v.number}: {utc(v.start)} to {utc(v.end)} (set {utc(v.opened)})"
        spans.append(charts.Span(v.start, v.end, label, "window" if current else "superseded"))
    previous = None
    for end, by_extension in h.ends:
        if by_extension and previous is not None and end > previous:
            spans.append(charts.Span(previous, end, f"extended to {utc(end)}", "extension"))
        previous = end
    return spans


LIFECYCLE_LABELS = {
    "maintenance.scheduled": "scheduled", "maintenance.rescheduled": "rescheduled",
    "maintenance.extended": "extended", "maintenance.closed": "closed (completed and healthy)",
    "maintenance.overrun": "overran its end",
}  # fmt: skip


def _thinned(comms: list[Any], bad: set[str]) -> list[Any]:
    """Every communication with a finding; the others at most charts.MAX_GOOD_MARKS per kind, evenly."""
    keep = [c for c in comms if c.communication in bad]
    by_kind: dict[str, list[Any]] = defaultdict(list)
    for c in comms:
        if c.communication not in bad:
            by_kind[c.kind].append(c)
    for good in by_kind.values():
        step = max(1, -(-len(good) // charts.MAX_GOOD_MARKS))
        keep.extend(sorted(good, key=lambda c: c.at)[::step])
    return keep


def _marks(h: Any, comms: list[Any], cases: list[Case]) -> list[charts.Mark]:
    bad = _bad_communications(cases)
    marks = [
        charts.Mark(
            m.at,
            "lifecycle",
            f"{LIFECYCLE_LABELS.get(m.type, m.type)} at {utc(m.at)}",
            bad=m.type == "maintenance.overrun",
        )
        for m in h.moments
        if m.type in LIFECYCLE_LABELS
    ]
    if h.cancelled_at is not None:
        marks.append(charts.Mark(h.cancelled_at, "lifecycle", f"cancelled at {utc(h.cancelled_at)}"))
    for comm in _thinned(comms, bad):
        kind = comm.kind.replace("_", " ")
        what = f"{comm.communication}: {kind} to {comm.customer}, sent {utc(comm.at)}"
        marks.append(charts.Mark(comm.at, comm.kind, what, bad=comm.communication in bad))
    for c in cases:
        if c.outcome is not None and c.status in ("violated", "waived") and c.outcome.sent is None:
            kind = c.outcome.kind
            marks.append(
                charts.Mark(
                    c.due,
                    kind,
                    f"missing: {kind.replace('_', ' ')} to {c.customer}, due {utc(c.due)}",
                    missing=True,
                )
            )
    return marks


def _bands(details: Details, mid: str) -> list[charts.Band]:
    """When each kind of notice about a maintenance was due, earliest to latest customer deadline."""
    out = []
    for kind, lo, hi in details.bands.get(mid, ()):
        when = utc(lo) if lo == hi else f"{utc(lo)} to {utc(hi)}"
        out.append(charts.Band(kind, lo, hi, f"{kind.replace('_', ' ')} due by {when}"))
    return out


def _maintenances(report: Report, details: Details, flagged: dict[str, list[Case]]) -> list[dict[str, Any]]:
    groups = {g.key: g for g in report.subjects}
    rows = []
    for mid, h in details.maintenances:
        g = groups[mid]
        rows.append({"id": mid, "h": h, "g": g, "start": h.versions[-1].start, "bad": g.tally.violated})
    rows.sort(key=lambda r: timeline_key(r["id"], r["h"], r["g"]))
    comms = details.comms
    for i, row in enumerate(rows):
        h, g = row["h"], row["g"]
        row.update(
            title=h.attrs.get("title") or row["id"],
            impact=h.attrs.get("impact"),
            emergency=h.attrs.get("emergency"),
            rate=g.tally.rate,
            tally=g.tally,
            findings=g.findings,
            end=h.versions[-1].end,
            closed=h.closed_at,
            cancelled=h.cancelled_at,
        )
        if i < MAX_TIMELINES:
            marks = _marks(h, comms.get(row["id"], []), flagged.get(row["id"], []))
            title = f"Timeline of {row['id']}"
            svg = charts.timeline(title, _spans(h), marks, h.versions[-1].start, _bands(details, row["id"]))
            row["svg"] = Markup(svg)
    return rows


# -- findings data ------------------------------------------------------------------------


def _finding_row(
    f: Finding, case: Case, text: str, as_of: datetime | None = None, rules: str | None = None
) -> list[Any]:
    return [
        f.rule,
        f.status,
        f.severity,
        f.problem,
        f.subject,
        f.customer,
        f.communication,
        utc(f.due),
        utc(f.sent),
        timing(f),
        f.message,
        list(f.evidence),
        f.waiver,
        1 if f.retroactive else 0,
        text,
        case.about,
        explain_command(f, as_of, rules) if as_of is not None else "",
    ]


def _data(report: Report, details: Details) -> dict[str, Any]:
    """Everything the page's script renders: findings as rows of FINDING_FIELDS, events, waivers."""
    tz = details.timezones
    rows, waivers = [], {}
    for case in report.flagged:
        text = explain(case, tz.get(case.customer, "UTC"))
        for f in case.findings:
            rows.append(_finding_row(f, case, text, report.result.as_of, report.result.policy.source or None))
            if f.waiver:
                waivers[f.waiver] = [f.waiver_reason, f.waiver_approved_by]
    rows.sort(key=lambda r: (r[7], r[0], r[4], r[5], r[3]))
    return {
        "fields": FINDING_FIELDS,
        "findings": rows,
        "events": details.events,
        "waivers": waivers,
    }


def _script_json(data: dict[str, Any]) -> Markup:
    """JSON safe inside <script type="application/json">: every '<' escaped as \\u003c."""
    return Markup(orjson.dumps(data).decode("utf-8").replace("<", "\\u003c"))


# -- page ---------------------------------------------------------------------------------


def _customers(report: Report, details: Details) -> list[dict[str, Any]]:
    rows = []
    for g in sorted(report.customers, key=customer_key):
        name, tz, country = details.customers.get(g.key, (g.key, "", ""))
        rows.append({"id": g.key, "g": g, "name": name, "tz": tz, "country": country})
    return rows


def _policy(report: Report) -> list[dict[str, Any]]:
    return [{"rule": r, "params": r.params(), "g": g} for r, g in report.rules]


def context(result: AuditResult) -> dict[str, Any]:
    report = build(result)
    details = report.details
    assert details is not None, "the HTML report's details are computed with the audit (html in its formats)"
    flagged: dict[str, list[Case]] = defaultdict(list)
    for case in report.flagged:
        if case.about is not None:
            flagged[case.about].append(case)
    customers = _customers(report, details)
    maintenances = _maintenances(report, details, flagged)
    worst = sorted(((g.tally.violated, r.id) for r, g in report.rules if g.tally.violated), reverse=True)
    heading, sentence = period_words(result)
    serious = sum(report.total.violations.get(s, 0) for s in ("critical", "high"))
    return {
        "heading": heading,
        "sentence": sentence,
        "serious": serious,
        "verdict_colour": charts.RED if serious else charts.rate_colour(report.total.tally.rate),
        "r": result,
        "report": report,
        "t": report.total.tally,
        "period": report.period,
        "as_of": utc(result.as_of),
        "since": utc(result.since),
        "until": utc(result.until),
        "severities": [
            (s, report.total.violations.get(s, 0))
            for s in ("critical", "high", "medium", "low")
            if s != "critical" or report.total.violations.get(s)
        ],
        "worst": worst[:3],
        "charts": _charts(report),
        "customers": customers[:MAX_TABLE_ROWS],
        "customers_more": max(0, len(customers) - MAX_TABLE_ROWS),
        "maintenances": maintenances[:MAX_TABLE_ROWS],
        "maintenances_more": max(0, len(maintenances) - MAX_TABLE_ROWS),
        "timelines": [m for m in maintenances if "svg" in m],
        "policy": _policy(report),
        "digest": result.policy.digest,
        "log": result.log,
        "versions": {"forewarn": __version__, "holidays": holidays_version()},
        "data": _script_json(_data(report, details)),
        "rules": result.policy.ids,
        "comparison": result.comparison,
        "comparison_rows": _comparison_rows(result),
    }


def _comparison_rows(result: AuditResult) -> list[list[str]]:
    from forewarn.audit.compare import table_rows

    return table_rows(result.comparison) if result.comparison is not None else []


def render(result: AuditResult) -> str:
    return environment().get_template("report.html.j2").render(context(result))
