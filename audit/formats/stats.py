"""Judged cases of an audit, aggregated by rule, month, customer and subject for every format."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import numpy as np

from forewarn.audit.findings import AuditResult, Finding, utc
from forewarn.audit.formats.charts import percent
from forewarn.calendar import calendar_for
from forewarn.evaluate.checks import CheckPlan, humanize
from forewarn.evaluate.model import Outcome
from forewarn.policy.model import Rule

STATUSES = ("met", "violated", "waived", "pending")
SEVERITIES = ("critical", "high", "medium", "low")

FindingKey = tuple[str, str, str, datetime]  # rule, subject, customer, due
FindingsBy = dict[FindingKey, list[Finding]]
BySubject = dict[tuple[str, str], list[Finding]]  # (rule, subject)
Plain = defaultdict[tuple[tuple[str, ...], tuple[int, int], str, str | None], int]  # met checks in bulk
Counts = defaultdict[tuple[str, str, tuple[int, int], str, str | None, str], int]
"""Case counts by (kind, rule, month, customer, about, status): a defaultdict, whose C-level default
is measurably cheaper than Counter's __missing__ for hundreds of thousands of distinct keys."""


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
    outcome: Outcome | None = None


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
    timed: list[Case]  # judged obligations with a business-day deadline (for lead times)

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


def _in_period(t: datetime, result: AuditResult) -> bool:
    since, until = result.since, result.until
    return (since is None or t >= since) and (until is None or t < until)


def _group_status(findings: Iterable[Finding]) -> str:
    return "waived" if all(f.status == "waived" for f in findings) else "violated"


def _obligation_cases(result: AuditResult, by_key: FindingsBy) -> Iterator[Case]:
    """One case per obligation; a violated one takes its finding (one each, in order)."""
    for o in result.outcomes:
        ob = o.obligation
        found: tuple[Finding, ...] = ()
        status: str = o.status
        if o.status == "violated":
            waiting = by_key.get((ob.rule, ob.subject, ob.customer, ob.not_after))
            found = (waiting.pop(0),) if waiting else ()
            status = _group_status(found) if found else "violated"
        yield Case(
            ob.rule,
            "obligation",
            ob.subject,
            ob.customer,
            ob.not_after,
            status,
            ob.subject,
            found,
            o,
        )


def _check_cases(result: AuditResult, by_subject: BySubject) -> Iterator[Case]:
    """One case per communication (or reply) and per rule whose checks apply to it."""
    ev = result.evaluation
    index = ev.index
    plan = CheckPlan(result.policy, ev.histories)
    reply_rules = [r for r in result.policy.rules if any(c.replies for c in r.spec.checks)]
    for sent in index.sent:
        comm = sent.comm
        customer = index.covered_at(comm.customer, sent.pos, result.policy.covers)
        if customer is None:
            continue
        subject = sent.subject
        about = subject[1] if subject else None
        rids, later = plan(comm.kind, subject, sent.pos, customer)
        for rid in rids:
            ticket_minutes = later.get(rid)
            found = tuple(by_subject.pop((rid, comm.communication), ()))
            due = comm.at + timedelta(minutes=ticket_minutes or 0)
            if found:
                yield Case(
                    rid,
                    "check",
                    comm.communication,
                    comm.customer,
                    found[0].due,
                    _group_status(found),
                    about,
                    found,
                )
                continue
            no_ticket = comm.communication not in index.tickets
            pending = ticket_minutes is not None and due > result.as_of and no_ticket
            yield Case(
                rid,
                "check",
                comm.communication,
                comm.customer,
                due,
                "pending" if pending else "met",
                about,
            )
    for pos, reply in index.replies:
        origin = index.sent_by_id.get(reply.in_reply_to)
        customer = index.covered_at(reply.customer, pos, result.policy.covers)
        if origin is None or customer is None:
            continue
        about = origin.subject[1] if origin.subject else None
        for rule in reply_rules:
            if not any(c.replies and rule.check_condition(c).holds_for_customer(customer) for c in rule.spec.checks):
                continue
            found = tuple(by_subject.pop((rule.id, reply.reply), ()))
            status = _group_status(found) if found else "met"
            yield Case(rule.id, "check", reply.reply, reply.customer, reply.at, status, about, found)


def _leftover_cases(result: AuditResult, findings: Iterable[Finding]) -> Iterator[Case]:
    """Findings no obligation or check case claimed: overrun alarms (and anything unforeseen)."""
    groups: dict[tuple[str, str, str, datetime], list[Finding]] = defaultdict(list)
    for f in findings:
        groups[(f.rule, f.subject, f.customer, f.due)].append(f)
    for (rule_id, subject, customer, due), found in groups.items():
        rule = result.policy.by_id.get(rule_id)
        kind = "alarm" if rule is not None and rule.spec.alarm is not None else "check"
        about = subject if kind == "alarm" else None
        yield Case(rule_id, kind, subject, customer, due, _group_status(found), about, tuple(found))


def iter_cases(result: AuditResult) -> Iterator[Case]:
    """Every case of the review period, one by one: obligations, communication checks, alarms.

    Every finding belongs to exactly one case; a case with findings is violated,
    or waived when all of its findings are. (`build` counts the same cases in bulk.)
    """
    by_key, overruns = _classify(result)
    yield from _obligation_cases(result, by_key)
    by_subject = _by_subject(by_key)
    for case in _check_cases(result, by_subject):
        if _in_period(case.due, result) or case.findings:
            yield case
    leftover = [f for found in by_subject.values() for f in found]
    yield from _leftover_cases(result, overruns + leftover)


Month = tuple[int, int]
CountKey = tuple[str, str, Month, str, str | None, str]  # kind, rule, month, customer, about, status


def month_name(month: Month) -> str:
    return f"{month[0]:04d}-{month[1]:02d}"


def _covered_from(result: AuditResult) -> dict[str, tuple[int, object]]:
    """Customers with one unchanged version the policy covers: the position it starts at, and it."""
    out = {}
    covers = result.policy.covers
    for cid, timeline in result.evaluation.index.customers.items():
        if len(timeline.versions) == 1 and covers(timeline.versions[0]):
            out[cid] = (timeline.positions[0], timeline.versions[0])
    return out


def _count_comm(
    result: AuditResult,
    sent: Any,
    applicable: CheckPlan,
    skip: set[tuple[str, str]],
    counts: Counts,
) -> None:
    """The checks of one communication, rule by rule (the general path)."""
    comm = sent.comm
    subject = sent.subject
    customer = result.evaluation.index.covered_at(comm.customer, sent.pos, result.policy.covers)
    if customer is None:
        return
    rids, later = applicable(comm.kind, subject, sent.pos, customer)
    if not rids:
        return
    about = subject[1] if subject else None
    for rid in rids:
        minutes = later.get(rid)
        if (rid, comm.communication) in skip:
            continue
        due = comm.at + timedelta(minutes=minutes) if minutes else comm.at
        if not _in_period(due, result):
            continue
        no_ticket = comm.communication not in result.evaluation.index.tickets
        pending = minutes is not None and due > result.as_of and no_ticket
        status = "pending" if pending else "met"
        counts[("check", rid, (due.year, due.month), comm.customer, about, status)] += 1


def _count_checks(result: AuditResult, skip: set[tuple[str, str]], counts: Counts, plain: Plain) -> None:
    """Count the met and pending communication and reply checks (those with findings are in `skip`).

    In bulk: a communication of a customer in scope whose checks all fall due
    in its own month, inside the period and before the audit instant adds 1 to
    its (kind, subject, customer, month); the others go rule by rule.
    """
    applicable = CheckPlan(result.policy, result.evaluation.histories)
    starts = _covered_from(result)
    histories = result.evaluation.histories
    skip_ids = {subject for _rid, subject in skip}
    low = result.since or datetime.min.replace(tzinfo=UTC)
    safe_until = min(result.until or result.as_of, result.as_of) - timedelta(minutes=applicable.slack)
    bulk: defaultdict[tuple[str, tuple[str, str] | None, str, int, int], int] = defaultdict(int)
    for sent in result.evaluation.index.sent:
        comm = sent.comm
        at = comm.at
        customer = comm.customer
        first = starts.get(customer)
        subject = sent.subject
        history = histories.get(subject) if subject else None
        if (
            first is not None
            and sent.pos >= first[0]
            and (history is None or len(history.label_positions) <= 1)
            and low <= at < safe_until
            and at.day < 28
            and comm.communication not in skip_ids
        ):
            bulk[(comm.kind, subject, customer, at.year, at.month)] += 1
        else:
            _count_comm(result, sent, applicable, skip, counts)
    for (kind, subject, customer, year, month), n in bulk.items():
        pos, version = starts[customer]
        rids, _later = applicable(kind, subject, pos, version)  # labels unchanged: any position of theirs
        if rids:
            plain[(rids, (year, month), customer, subject[1] if subject else None)] += n
    _count_replies(result, skip, counts)


def _count_replies(result: AuditResult, skip: set[tuple[str, str]], counts: Counts) -> None:
    index = result.evaluation.index
    reply_rules = [r.id for r in result.policy.rules if any(c.replies for c in r.spec.checks)]
    for pos, reply in index.replies:
        origin = index.sent_by_id.get(reply.in_reply_to)
        customer = index.covered_at(reply.customer, pos, result.policy.covers)
        if origin is None or customer is None:
            continue
        if not _in_period(reply.at, result):
            continue
        about = origin.subject[1] if origin.subject else None
        for rid in reply_rules:
            rule = result.policy.by_id[rid]
            if not any(c.replies and rule.check_condition(c).holds_for_customer(customer) for c in rule.spec.checks):
                continue
            if (rid, reply.reply) not in skip:
                month = (reply.at.year, reply.at.month)
                counts[("check", rid, month, reply.customer, about, "met")] += 1


def _flagged_checks(result: AuditResult, by_subject: BySubject) -> Iterator[Case]:
    """Check cases with findings (communication or reply subjects); claimed groups are removed."""
    index = result.evaluation.index
    replies = {r.reply: r for _pos, r in index.replies}
    for (rid, subject), found in list(by_subject.items()):
        sent = index.sent_by_id.get(subject)
        if sent is None and subject in replies:
            sent = index.sent_by_id.get(replies[subject].in_reply_to)
        elif sent is None:
            continue
        del by_subject[(rid, subject)]
        about = sent.subject[1] if sent is not None and sent.subject else None
        f = found[0]
        yield Case(rid, "check", subject, f.customer, f.due, _group_status(found), about, tuple(found))


def _classify(result: AuditResult) -> tuple[FindingsBy, list[Finding]]:
    """Findings by obligation key, and the alarm (overrun) findings apart."""
    alarms = {r.id: r.spec.alarm.problem for r in result.policy.rules if r.spec.alarm is not None}
    by_key: FindingsBy = defaultdict(list)
    overruns: list[Finding] = []
    for f in result.findings:
        if alarms.get(f.rule) == f.problem:
            overruns.append(f)
        else:
            by_key[(f.rule, f.subject, f.customer, f.due)].append(f)
    return by_key, overruns


def _by_subject(by_key: FindingsBy) -> BySubject:
    out: BySubject = defaultdict(list)
    for found in by_key.values():
        for f in found:
            out[(f.rule, f.subject)].append(f)
    return out


def _key(case: Case) -> CountKey:
    return (case.kind, case.rule, (case.due.year, case.due.month), case.customer, case.about, case.status)


def _counted_cases(result: AuditResult) -> tuple[Counts, Plain, list[Case], list[Case]]:
    """Case counts by key, the cases with findings, and the judged business-day obligations.

    Obligations are counted under about=None with their subject as a key of its
    own (("subject", id), status): few distinct keys, however many customers.
    """
    counts: Counts = defaultdict(int)
    flagged: list[Case] = []
    timed: list[Case] = []
    by_key, overruns = _classify(result)
    for o in result.outcomes:
        ob = o.obligation
        status: str = o.status
        if status == "violated":
            waiting = by_key.get((ob.rule, ob.subject, ob.customer, ob.not_after))
            found = (waiting.pop(0),) if waiting else ()
            status = _group_status(found) if found else "violated"
            flagged.append(
                Case(ob.rule, "obligation", ob.subject, ob.customer, ob.not_after, status, ob.subject, found, o)
            )
        month = (ob.not_after.year, ob.not_after.month)
        counts[("obligation", ob.rule, month, ob.customer, None, status)] += 1
        counts[("subject", "", month, "", ob.subject, status)] += 1
        if status != "pending" and ob.offset[0] == "business_days":
            timed.append(Case(ob.rule, "obligation", ob.subject, ob.customer, ob.not_after, status, ob.subject, (), o))
    by_subject = _by_subject(by_key)
    checks = list(_flagged_checks(result, by_subject))
    plain: Plain = defaultdict(int)
    _count_checks(result, {(c.rule, c.subject) for c in checks}, counts, plain)
    rest = overruns + [f for found in by_subject.values() for f in found]
    for case in [*checks, *_leftover_cases(result, rest)]:
        flagged.append(case)
        counts[_key(case)] += 1
    return counts, plain, flagged, timed


def _rollup(counts: Counts, plain: Plain) -> tuple[Counter[str], list[defaultdict[tuple[Any, str], int]]]:
    """Cases by kind, and by (rule | month | customer | subject, status)."""
    kinds: Counter[str] = Counter()
    dims: list[defaultdict[tuple[Any, str], int]] = [defaultdict(int) for _ in range(4)]
    by_rule, by_month, by_customer, by_about = dims
    for (kind, rule, month, customer, about, status), n in counts.items():
        if kind == "subject":  # an obligation's subject, counted apart
            by_about[(about, status)] += n
            continue
        kinds[kind] += n
        by_rule[(rule, status)] += n
        by_month[(month, status)] += n
        by_customer[(customer, status)] += n
        if about is not None:
            by_about[(about, status)] += n
    for (rids, month, customer, about), n in plain.items():
        for rid in rids:
            by_rule[(rid, "met")] += n
        n *= len(rids)
        kinds["check"] += n
        by_month[(month, "met")] += n
        by_customer[(customer, "met")] += n
        if about is not None:
            by_about[(about, "met")] += n
    return kinds, dims


def _groups(counts: Mapping[tuple[Any, str], int], order: Iterable[Any] = ()) -> dict[Any, Group]:
    out: dict[Any, Group] = {k: Group(k) for k in order}
    for (key, status), n in counts.items():
        group = out.get(key)
        if group is None:
            group = out[key] = Group(month_name(key) if isinstance(key, tuple) else key)
        group.tally.add(status, n)
    return out


def _add_findings(cases: list[Case], dims: list[dict[Any, Group]], total: Group) -> None:
    for case in cases:
        month = (case.due.year, case.due.month)
        targets = [total, dims[0][case.rule], dims[1][month], dims[2][case.customer]]
        if case.about is not None:
            targets.append(dims[3][case.about])
        severities = [f.severity for f in case.findings if f.status == "violation"]
        for g in targets:
            g.findings += len(case.findings)
            g.violations.update(severities)


def build(result: AuditResult) -> Report:
    """Aggregate the audit's cases once (in bulk: met checks are counted, not listed).

    The report is kept on the result: the stderr summary and the format share one aggregation.
    """
    cached = result.__dict__.get("_stats")
    if isinstance(cached, Report):
        return cached
    own = getattr(result, "stats_report", None)  # a relational result counts its cases itself
    report = own() if own is not None else _build(result)
    object.__setattr__(result, "_stats", report)  # a frozen dataclass: a cache, not state
    return report


def _build(result: AuditResult) -> Report:
    counts, plain, flagged, timed = _counted_cases(result)
    kinds, dims = _rollup(counts, plain)
    rules, months, customers, subjects = (
        _groups(dims[0], result.policy.ids),
        _groups(dims[1]),
        _groups(dims[2]),
        _groups(dims[3]),
    )
    total = Group("all")
    for (_rule, status), n in dims[0].items():
        total.tally.add(status, n)
    _add_findings(flagged, [rules, months, customers, subjects], total)
    by_id = result.policy.by_id
    return Report(
        result=result,
        total=total,
        rules=[(by_id[k], g) for k, g in rules.items() if k in by_id],
        months=[months[k] for k in sorted(months)],
        customers=[customers[k] for k in sorted(customers)],
        subjects=[subjects[k] for k in sorted(subjects)],
        kinds=kinds,
        flagged=flagged,
        timed=timed,
    )


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
    own_kinds = getattr(result, "subject_kinds", None)  # a relational result looks them up itself
    if own_kinds is not None:
        return own_kinds()
    histories = result.evaluation.histories
    sent = result.evaluation.index.sent_by_id
    own: dict[str, str] = {}
    for rule in result.policy.rules:
        spec = rule.spec.obligation or rule.spec.alarm
        if spec is not None:
            own[rule.id] = spec.subject

    def kind(f: Finding) -> str:
        mine = own.get(f.rule)
        if mine is not None and (mine, f.subject) in histories:
            return mine
        return "communication" if f.subject in sent else "reply"

    return kind


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


def business_times(
    pairs: list[tuple[datetime, datetime]], tz: str, country: str | None, subdivision: str | None
) -> np.ndarray:
    """`business_time(a, b, ...)` for many (a, b) pairs of one calendar, in bulk (uncapped)."""
    if not pairs:
        return np.zeros(0)
    zone = ZoneInfo(tz)
    cal = calendar_for(country, subdivision)
    local = [(a.astimezone(zone), b.astimezone(zone)) for a, b in pairs]
    sign = np.array([1.0 if a <= b else -1.0 for a, b in pairs])
    early = [min(a, b) for a, b in local]
    late = [max(a, b) for a, b in local]
    oa = np.array([t.toordinal() for t in early])
    ob = np.array([t.toordinal() for t in late])
    fa = np.array([(t.hour * 3600 + t.minute * 60 + t.second) / 86400.0 for t in early])
    fb = np.array([(t.hour * 3600 + t.minute * 60 + t.second) / 86400.0 for t in late])
    lo = int(oa.min())
    flags = np.array([cal.is_business_day(date.fromordinal(o)) for o in range(lo, int(ob.max()) + 1)], dtype=float)
    cum = np.concatenate(([0.0], np.cumsum(flags)))  # cum[i]: business days among the first i days
    ia, ib = oa - lo, ob - lo
    same = ia == ib
    between = cum[ib] - cum[np.minimum(ia + 1, ib)]
    spread = (1.0 - fa) * flags[ia] + between + fb * flags[ib]
    return sign * np.where(same, (fb - fa) * flags[ia], spread)


def lead_times(report: Report, cap: float = 11.0) -> dict[str, tuple[int, list[float | None]]]:
    """Per business-day rule: (required N, each judged obligation's lead, at most cap x N; None: none sent)."""
    out: dict[str, tuple[int, list[float | None]]] = {}
    todo: dict[tuple[str, str | None, str | None], list[tuple[list[float | None], int, float, datetime, datetime]]] = {}
    for case in report.timed:
        assert case.outcome is not None
        ob = case.outcome.obligation
        n = -ob.offset[1]
        leads = out.setdefault(ob.rule, (n, []))[1]
        sent = case.outcome.sent
        leads.append(None)
        if sent is not None and case.outcome.problem != "missing":
            where = (ob.timezone, ob.country, ob.subdivision)
            todo.setdefault(where, []).append((leads, len(leads) - 1, cap * n, sent, ob.anchor_at))
    for where, items in todo.items():
        values = business_times([(sent, anchor) for *_rest, sent, anchor in items], *where)
        for (leads, i, most, _s, _a), value in zip(items, values.tolist(), strict=True):
            leads[i] = min(value, most)
    return out
