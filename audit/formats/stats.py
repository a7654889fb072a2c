"""Judged cases of an audit, aggregated by rule, month, customer and subject for every format.

The evaluation counts and lists them (forewarn.relational.report); this module holds their shapes and
what the formats derive from them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import numpy as np

from forewarn.audit.findings import AuditResult, Finding, utc
from forewarn.audit.formats.charts import percent
from forewarn.calendar import calendar_for
from forewarn.policy.model import Rule
from forewarn.relational.violations import humanize

STATUSES = ("met", "violated", "waived", "pending")
SEVERITIES = ("critical", "high", "medium", "low")


class Case(NamedTuple):
    """One judged unit: an obligation, a communication (or reply) under a check, or an alarm."""

    rule: str
    kind: str  # obligation | check | alarm
    subject: str  # as in findings: subject id, communication id or reply id
    customer: str
    due: datetime
    status: str  # met | violated | waived | pending
    about: str | None  # the maintenance / incident / release concerned, if any
    findings: tuple[Finding, ...] = ()
    outcome: Judged | None = None  # an obligation's


class Judged(NamedTuple):
    """What a report shows of an obligation: its kind, window, deadline arithmetic and what was sent."""

    kind: str  # the first kind that fulfils it
    days: int  # its deadline: N business days before the anchor (0: `minutes` from it)
    minutes: int
    anchor_at: datetime
    timezone: str  # the customer's calendar at the moment
    country: str | None
    subdivision: str | None
    opened: datetime
    not_before: datetime
    not_after: datetime
    sent: datetime | None  # the late or early communication, or the last fulfilling one
    problem: str | None


class Leads(NamedTuple):
    """The judged obligations of one business-day rule and one calendar, as columns (one item per obligation):
    how far ahead of the anchor each was sent (lead times)."""

    rule: str
    n: int  # the business days required
    timezone: str
    country: str | None
    subdivision: str | None
    met: np.ndarray  # bool: the obligation was met
    sent: np.ndarray  # bool: a communication was taken (and the problem is not "missing")
    sent_us: np.ndarray  # int64: when it was sent (epoch microseconds; 0 where none was)
    anchor_us: np.ndarray  # int64: the anchor the N business days count back from


class Sent(NamedTuple):
    """A communication on a maintenance's timeline."""

    communication: str
    kind: str
    customer: str
    at: datetime


@dataclass
class Details:
    """What the HTML report shows beyond the counts: the customers, maintenances and events it names."""

    timezones: dict[str, str]  # customer -> the time zone of its latest version (those with findings)
    customers: dict[str, tuple[str, str, str | None]]  # customer -> (name, time zone, country), those shown
    maintenances: list[tuple[str, Any]]  # (id, SubjectHistory) of the report's maintenances, by first event
    comms: dict[str, list[Sent]]  # maintenance -> its communications, those with a timeline
    bands: dict[str, list[tuple[str, datetime, datetime]]]  # maintenance -> (kind, first, last deadline)
    events: dict[str, list[str]]  # event id -> [type, at, summary], every event the findings' evidence names


MAX_TIMELINES = 30
MAX_TABLE_ROWS = 300


def timeline_key(mid: str, history: Any, group: Group) -> tuple[int, datetime, str]:
    """The maintenances' order in the report: most violated cases first, then by start."""
    return (-group.tally.violated, history.versions[-1].start, mid)


def customer_key(group: Group) -> tuple[int, str]:
    """The customers' order in the report: most violated cases first, then by id."""
    return (-group.tally.violated, group.key)


@dataclass
class Tally:
    """Case counts by status, with the compliance rate met / (met + violated)."""

    met: int = 0
    violated: int = 0
    waived: int = 0
    pending: int = 0

    def add(self, status: str, n: int = 1) -> None:
        setattr(self, status, getattr(self, status) + n)

    @property
    def cases(self) -> int:
        return self.met + self.violated + self.waived + self.pending

    @property
    def judged(self) -> int:
        return self.met + self.violated

    @property
    def rate(self) -> float | None:
        """Percentage of judged cases met (waived and pending ones are not judged); None if none."""
        return 100.0 * self.met / self.judged if self.judged else None


@dataclass
class Group:
    """A tally plus findings by severity, for one rule, month, customer or subject."""

    key: str
    tally: Tally = field(default_factory=Tally)
    violations: Counter[str] = field(default_factory=Counter)  # by severity
    findings: int = 0


@dataclass
class Report:
    """Everything the formats show, computed once from an AuditResult."""

    result: AuditResult
    total: Group
    rules: list[tuple[Rule, Group]]
    months: list[Group]
    customers: list[Group]
    subjects: list[Group]
    kinds: Counter[str]  # cases by kind (obligation / check / alarm)
    flagged: list[Case]  # cases with findings
    timed: list[Leads]  # judged obligations with a business-day deadline (for lead times)
    details: Details | None = None  # for the HTML report

    @property
    def period(self) -> str:
        return period_text(self.result)


def rate_text(rate: float | None) -> str:
    return "-" if rate is None else percent(rate)


def period_text(result: AuditResult) -> str:
    """The review period, as every format's header states it."""
    if result.since is None and result.until is None:
        return f"everything due up to {utc(result.as_of)}"
    since = utc(result.since) if result.since else "the start of the log"
    until = utc(result.until) if result.until else utc(result.as_of)
    return f"due from {since} to {until} (exclusive)"


def timing(f: Finding) -> str:
    """How far off the finding's communication was, in human units ('' when nothing was sent)."""
    if f.sent is None:
        return ""
    if f.sent > f.due:
        return f"{humanize(f.sent - f.due)} late"
    if f.problem == "early":
        return "early"
    return ""


def group_status(findings: Iterable[Finding]) -> str:
    """A case's status from its findings: waived if all of them are, else violated."""
    return "waived" if all(f.status == "waived" for f in findings) else "violated"


def iter_cases(result: AuditResult) -> Iterator[Case]:
    """Every case of the review period, one by one: obligations, communication checks, alarms.

    Every finding belongs to exactly one case; a case with findings is violated, or waived when all of
    its findings are. (`build` counts the same cases in bulk.)
    """
    yield from result.case_list()  # type: ignore[attr-defined]


Month = tuple[int, int]


def month_name(month: Month) -> str:
    return f"{month[0]:04d}-{month[1]:02d}"


def build(result: AuditResult) -> Report:
    """The audit's cases aggregated once (by the evaluation, in bulk: met checks are counted, not listed).

    The report is kept on the result: the stderr summary and the format share one aggregation.
    """
    cached = result.__dict__.get("_stats")
    if isinstance(cached, Report):
        return cached
    report: Report = result.stats_report()  # type: ignore[attr-defined]
    object.__setattr__(result, "_stats", report)  # a frozen dataclass: a cache, not state
    return report


def findings_by_rule(result: AuditResult) -> dict[str, list[Finding]]:
    """Findings grouped by rule, in policy order (then due time)."""
    out: dict[str, list[Finding]] = {r.id: [] for r in result.policy.rules}
    for f in result.findings:
        out.setdefault(f.rule, []).append(f)
    return {k: v for k, v in out.items() if v}


def severity_counts(result: AuditResult) -> dict[str, int]:
    """Violations (not waived findings) by severity, most severe first, zeros included."""
    counts = Counter(f.severity for f in result.findings if f.status == "violation")
    return {s: counts.get(s, 0) for s in SEVERITIES if s != "critical" or counts.get(s)}


def subject_kinds(result: AuditResult) -> Callable[[Finding], str]:
    """What a finding's subject is: maintenance, incident, release, communication or reply."""
    return result.subject_kinds()  # type: ignore[attr-defined, no-any-return]


def business_time(
    a: datetime,
    b: datetime,
    tz: str,
    country: str | None,
    subdivision: str | None,
    cap: float = 30.0,
    is_business: Callable[[date], bool] | None = None,
) -> float:
    """Business days of time from a to b (negative if b is earlier), capped at `cap`.

    Each business day of the customer's calendar counts as one day of time,
    other days as none (policy.md): a notice meets "N business days before t"
    when there are at least N business days of time between it and t.
    """
    if b < a:
        return -business_time(b, a, tz, country, subdivision, cap, is_business)
    check = is_business or calendar_for(country, subdivision).is_business_day
    zone = ZoneInfo(tz)
    la, lb = a.astimezone(zone), b.astimezone(zone)
    da, db = la.date(), lb.date()
    fa = (la.hour * 3600 + la.minute * 60 + la.second) / 86400.0
    fb = (lb.hour * 3600 + lb.minute * 60 + lb.second) / 86400.0
    if da == db:
        return fb - fa if check(da) else 0.0
    total = 1.0 - fa if check(da) else 0.0
    day = da + timedelta(days=1)
    while day < db and total < cap:
        total += check(day)
        day += timedelta(days=1)
    total += fb if check(db) else 0.0
    return min(total, cap)


EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
DAY = 86_400


def _offset(zone: ZoneInfo, second: int) -> int:
    offset = datetime.fromtimestamp(second, zone).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def local_seconds(us: np.ndarray, zone: ZoneInfo) -> np.ndarray:
    """Whole seconds of local time since the local epoch of instants given in epoch microseconds (`datetime`'s
    `astimezone` and hour, minute, second, in bulk). The offset is read once per UTC day, and instant by instant
    on a day whose offset differs at its two ends: a zone whose offset changed and changed back within one UTC
    day would be misread on that day (the HTML report's lead-time histogram is all that reads this)."""
    seconds = us // 1_000_000
    days, which = np.unique(seconds // DAY, return_inverse=True)
    offsets = np.empty(len(days), dtype=np.int64)
    changing = np.zeros(len(days), dtype=bool)
    for i, day in enumerate(days.tolist()):
        first, last = _offset(zone, day * DAY), _offset(zone, day * DAY + DAY - 1)
        offsets[i], changing[i] = first, first != last
    out = seconds + offsets[which]
    if changing.any():
        rows = np.nonzero(changing[which])[0]
        out[rows] = [s + _offset(zone, s) for s in seconds[rows].tolist()]
    return out


def business_times(
    a_us: np.ndarray, b_us: np.ndarray, tz: str, country: str | None, subdivision: str | None
) -> np.ndarray:
    """`business_time(a, b, ...)` for many (a, b) pairs of one calendar (epoch microseconds), in bulk (uncapped)."""
    if not len(a_us):
        return np.zeros(0)
    zone = ZoneInfo(tz)
    cal = calendar_for(country, subdivision)
    sign = np.where(a_us <= b_us, 1.0, -1.0)
    early = local_seconds(np.minimum(a_us, b_us), zone)
    late = local_seconds(np.maximum(a_us, b_us), zone)
    oa, ob = early // DAY + EPOCH_ORDINAL, late // DAY + EPOCH_ORDINAL
    fa, fb = (early % DAY) / float(DAY), (late % DAY) / float(DAY)
    lo = int(oa.min())
    flags = np.array([cal.is_business_day(date.fromordinal(o)) for o in range(lo, int(ob.max()) + 1)], dtype=float)
    cum = np.concatenate(([0.0], np.cumsum(flags)))  # cum[i]: business days among the first i days
    ia, ib = oa - lo, ob - lo
    same = ia == ib
    between = cum[ib] - cum[np.minimum(ia + 1, ib)]
    spread = (1.0 - fa) * flags[ia] + between + fb * flags[ib]
    return np.asarray(sign * np.where(same, (fb - fa) * flags[ia], spread))


def lead_times(report: Report, cap: float = 11.0) -> dict[str, tuple[int, np.ndarray]]:
    """Per business-day rule: (required N, each judged obligation's lead, at most cap x N; NaN: none sent), the
    obligations in the order of `report.timed`."""
    parts: dict[str, tuple[int, list[np.ndarray]]] = {}
    for leads in report.timed:
        values = np.full(len(leads.sent), np.nan)
        sent = leads.sent
        if sent.any():
            times = business_times(leads.sent_us[sent], leads.anchor_us[sent], *_calendar(leads))
            values[sent] = np.minimum(times, cap * leads.n)
        parts.setdefault(leads.rule, (leads.n, []))[1].append(values)
    return {rule: (n, np.concatenate(values)) for rule, (n, values) in parts.items()}


def _calendar(leads: Leads) -> tuple[str, str | None, str | None]:
    return leads.timezone, leads.country, leads.subdivision
