"""The policy compiled onto durable_rules: lifecycle moments in, obligations with deadlines out."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

from forewarn.calendar import business_days_before
from forewarn.evaluate.index import LogIndex
from forewarn.evaluate.lifecycle import SubjectHistory, Timer, fold_subject
from forewarn.evaluate.model import Moment, Obligation
from forewarn.evaluate.rete import Rule as ReteRule
from forewarn.evaluate.rete import Session
from forewarn.events import CustomerUpserted
from forewarn.policy.model import Policy, Rule
from forewarn.policy.schema import Anchor

ALARM_SUFFIX = ".alarm"
_FACT_FIELDS = frozenset({"timer"})


@dataclass
class Derivation:
    """Everything the lifecycle stage derived from the log."""

    histories: dict[tuple[str, str], SubjectHistory] = field(default_factory=dict)
    obligations: list[Obligation] = field(default_factory=list)
    alarms: list[tuple[Rule, Moment]] = field(default_factory=list)
    spans: dict[tuple[str, str], tuple[int, int, int, int]] = field(default_factory=dict)
    """Per subject (the keys of `histories`, in the same order): its obligations are
    `obligations[o0:o1]` and its alarms `alarms[a0:a1]`, as (o0, o1, a0, a1)."""


def compile_rules(policy: Policy, fired: list[tuple[str, str]]) -> list[ReteRule]:
    """durable_rules rules for the policy's obligation and alarm triggers.

    Each action records (rule name, fact id) in `fired`; the caller turns
    that into obligations once the subject's moments are all asserted. The
    rules route moments by type (and an alarm's timer); a rule's `where` is
    the condition table's to interpret (forewarn.policy.conditions), applied
    to what fired: one meaning of a condition everywhere.
    """

    def record(name: str):
        def action(_sid: str, fact: Mapping[str, object]) -> None:
            fired.append((name, str(fact["id"])))

        return action

    compiled: list[ReteRule] = []
    for rule in policy.rules:
        ob = rule.spec.obligation
        if ob is not None:
            where: dict[str, object] = {"type": list(ob.trigger)}
            compiled.append(ReteRule(rule.id, where, record(rule.id)))
        alarm = rule.spec.alarm
        if alarm is not None:
            where = {"type": list(alarm.trigger), "timer": rule.id}
            compiled.append(ReteRule(rule.id + ALARM_SUFFIX, where, record(rule.id + ALARM_SUFFIX)))
    return compiled


def timers_of(policy: Policy) -> list[Timer]:
    """The alarm timers the lifecycle must run (one per alarm rule)."""
    out = []
    for rule in policy.rules:
        if rule.spec.alarm is not None:
            unit, amount = rule.anchor_offset(rule.spec.alarm.after)
            out.append(Timer(rule.id, amount if unit == "minutes" else 0))
    return out


def alarm_dues(history: SubjectHistory, minutes: Collection[int]) -> Iterator[datetime]:
    """Every instant at which an alarm timer of a maintenance can fall due: each end it was given,
    plus each alarm's delay (`minutes`: of timers_of(policy))."""
    for end, _given in history.ends:
        for m in minutes:
            yield end + timedelta(minutes=m)


def _fact(moment: Moment, fact_id: str) -> dict[str, object]:
    """The moment as a flat durable_rules fact: only the fields the rules route by."""
    fact: dict[str, object] = {"id": fact_id, "type": moment.type}
    for key, value in moment.attrs.items():
        if key not in _FACT_FIELDS or value is None:
            continue
        fact[key] = value.isoformat() if isinstance(value, datetime) else value
    return fact


def derive(
    index: LogIndex, policy: Policy, as_of: datetime, subjects: Collection[tuple[str, str]] | None = None
) -> Derivation:
    """Fold every subject's lifecycle (or only those in `subjects`) and open the obligations its moments trigger.

    Subjects are independent of each other: one's history, obligations and alarms depend on its
    own events, the customers' attributes at its moments and the as-of, nothing else."""
    out = Derivation()
    fired: list[tuple[str, str]] = []
    timers = timers_of(policy)
    ats = index.ats

    def pos_at(t: datetime) -> int:
        return bisect_right(ats, t) - 1

    with Session(compile_rules(policy, fired)) as session:
        for (kind, subject), events in index.subjects.items():
            if subjects is not None and (kind, subject) not in subjects:
                continue
            history = fold_subject(kind, subject, events, timers, as_of, pos_at)
            if history is None:
                continue
            out.histories[(kind, subject)] = history
            sid = f"{kind}:{subject}"
            fired.clear()
            for n, moment in enumerate(history.moments):
                session.assert_fact(sid, _fact(moment, str(n)))
            session.end_subject(sid)
            o0, a0 = len(out.obligations), len(out.alarms)
            for name, fact_id in fired:
                moment = history.moments[int(fact_id)]
                if name.endswith(ALARM_SUFFIX):
                    rule = policy.by_id[name[: -len(ALARM_SUFFIX)]]
                    if rule.alarm_condition.holds_for_subject(moment.attrs):
                        out.alarms.append((rule, moment))
                else:
                    rule = policy.by_id[name]
                    if rule.obligation_condition.holds_for_subject(moment.attrs):
                        out.obligations.extend(expand(rule, moment, history, index, policy))
            out.spans[(kind, subject)] = (o0, len(out.obligations), a0, len(out.alarms))
    return out


def affected(history: SubjectHistory, pos: int, index: LogIndex, policy: Policy, rule: Rule | None = None) -> list[str]:
    """Affected customers in scope at `pos`: the subject's list (or "all" at its
    definition), restricted to customers the policy's scope covers at `pos`
    (and, given a rule, to those its obligation's or alarm's customer terms hold for)."""
    return [customer for customer, _attrs in affected_versions(history, pos, index, policy, rule)]


def affected_versions(
    history: SubjectHistory, pos: int, index: LogIndex, policy: Policy, rule: Rule | None = None
) -> list[tuple[str, CustomerUpserted]]:
    """`affected`, each customer with its attributes in force at `pos`."""
    covers = policy.covers
    if history.customers == "all":
        candidates = index.covered_customers_at(history.defined_pos, covers)
    else:
        candidates = list(dict.fromkeys(history.customers))
    found = [(c, attrs) for c in candidates if (attrs := index.covered_at(c, pos, covers)) is not None]
    if rule is not None:
        condition = rule.obligation_condition if rule.spec.obligation is not None else rule.alarm_condition
        if condition.on_customer:
            holds = condition.customer_predicate
            found = [(c, attrs) for c, attrs in found if holds(attrs)]
    return found


def expand(rule: Rule, moment: Moment, history: SubjectHistory, index: LogIndex, policy: Policy) -> list[Obligation]:
    """One obligation per affected customer in scope (and in the rule's customer terms), deadlines
    in their calendar."""
    ob = rule.spec.obligation
    assert ob is not None
    before = _anchor(rule, ob.window.not_before, moment)
    after = _anchor(rule, ob.window.not_after, moment)
    if before is None or after is None:
        return []
    kinds = tuple(ob.kinds)
    shared = tuple(dict.fromkeys((history.defined_event, moment.event_id)))
    offset = (after[1], after[2])
    window: dict[tuple[str, str | None, str | None], tuple[datetime, datetime]] = {}  # by calendar
    out: list[Obligation] = []
    for customer, attrs in affected_versions(history, moment.pos, index, policy, rule):
        calendar = (attrs.timezone, attrs.country, attrs.subdivision)
        bounds = window.get(calendar)
        if bounds is None:
            bounds = window[calendar] = (_instant(before, *calendar), _instant(after, *calendar))
        out.append(
            Obligation(
                rule.id,
                history.kind,
                history.id,
                customer,
                kinds,
                ob.count,
                moment.at,
                bounds[0],
                bounds[1],
                ob.window.not_after.at,
                after[0],
                offset,
                moment,
                (*shared, attrs.id) if attrs.id not in shared else shared,
                *calendar,
            )
        )
    return out


Resolved = tuple[datetime, str, int]  # anchor instant, offset unit, signed amount


def _anchor(rule: Rule, anchor: Anchor, moment: Moment) -> Resolved | None:
    """The anchor's instant in the moment and its offset (the same for every customer)."""
    base = moment.instant(anchor.at)
    if base is None:
        return None
    unit, amount = rule.anchor_offset(anchor)
    return base, unit, amount


def _instant(resolved: Resolved, tz: str, country: str | None, sub: str | None) -> datetime:
    """The anchor with its offset applied in one customer's calendar."""
    base, unit, amount = resolved
    if unit == "business_days" and amount:
        return _business_days_before(base, -amount, tz, country, sub)
    return base + timedelta(minutes=amount)


@lru_cache(maxsize=200_000)
def _business_days_before(t: datetime, n: int, tz: str, country: str | None, sub: str | None) -> datetime:
    return business_days_before(t, n, tz, country, sub)


def void_reason(ob: Obligation, rule: Rule, history: SubjectHistory) -> str | None:
    """Why the obligation no longer stands (per the rule's `void_when`), or None."""
    spec = rule.spec.obligation
    if spec is None:
        return None
    version_no = ob.moment.attrs.get("version")
    version = history.versions[int(version_no) - 1] if isinstance(version_no, int) else None
    superseded = version.superseded_at if version is not None else None
    for cond in spec.void_when:
        if cond == "superseded-before-deadline" and superseded is not None and superseded <= ob.not_after:
            return f"window superseded at {superseded.isoformat()} before its deadline"
        if (
            cond == "superseded-before-start"
            and superseded is not None
            and version is not None
            and superseded < version.start
        ):
            return f"window superseded at {superseded.isoformat()} before its start"
        if (
            cond == "cancelled-before-deadline"
            and history.cancelled_at is not None
            and history.cancelled_at < ob.not_after
        ):
            return f"maintenance cancelled at {history.cancelled_at.isoformat()}"
        if cond == "closed-before-deadline" and history.closed_at is not None and history.closed_at < ob.not_after:
            return f"maintenance closed at {history.closed_at.isoformat()} before the promised update"
    return None
