"""The per-object evaluation's obligations: lifecycle moments in, obligations with deadlines out (tests/oracle.py)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

from forewarn.calendar import business_days_before
from forewarn.evaluate.index import LogIndex
from forewarn.events import CustomerUpserted
from forewarn.lifecycle.fold import SubjectHistory, fold_subject
from forewarn.lifecycle.model import Moment, Obligation
from forewarn.lifecycle.rete import Session
from forewarn.lifecycle.rules import ALARM_SUFFIX, compile_rules, fact_of, timers_of
from forewarn.policy.model import Policy, Rule
from forewarn.policy.schema import Anchor


@dataclass
class Derivation:
    """Everything the lifecycle stage derived from the log."""

    histories: dict[tuple[str, str], SubjectHistory] = field(default_factory=dict)
    obligations: list[Obligation] = field(default_factory=list)
    alarms: list[tuple[Rule, Moment]] = field(default_factory=list)
    spans: dict[tuple[str, str], tuple[int, int, int, int]] = field(default_factory=dict)
    """Per subject (the keys of `histories`, in the same order): its obligations are
    `obligations[o0:o1]` and its alarms `alarms[a0:a1]`, as (o0, o1, a0, a1)."""


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
                session.assert_fact(sid, fact_of(moment, str(n)))
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
