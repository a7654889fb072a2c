"""The policy's triggers compiled onto durable_rules: which rules a lifecycle moment fires, and the alarm timers
the fold runs."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from datetime import datetime, timedelta

from forewarn.lifecycle.fold import SubjectHistory, Timer
from forewarn.lifecycle.model import Moment
from forewarn.lifecycle.rete import Rule as ReteRule
from forewarn.policy.model import Policy

ALARM_SUFFIX = ".alarm"
_FACT_FIELDS = frozenset({"timer"})


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


def fact_of(moment: Moment, fact_id: str) -> dict[str, object]:
    """The moment as a flat durable_rules fact: only the fields the rules route by."""
    fact: dict[str, object] = {"id": fact_id, "type": moment.type}
    for key, value in moment.attrs.items():
        if key not in _FACT_FIELDS or value is None:
            continue
        fact[key] = value.isoformat() if isinstance(value, datetime) else value
    return fact
