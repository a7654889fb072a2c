"""The per-object evaluation: log + policy + as-of -> outcomes and violations, in Python objects.

Only tests/oracle.py judges with it (the property tests' many tiny logs); forewarn evaluates relationally
(forewarn.relational)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from forewarn.calendar import format_local
from forewarn.evaluate.checks import CheckContext, run_checks
from forewarn.evaluate.index import LogIndex, build_index
from forewarn.evaluate.matching import CommKey, communications_by_key, count_in_window, match
from forewarn.evaluate.obligations import Derivation, affected_versions, derive, void_reason
from forewarn.events import Event
from forewarn.events.parse import gc_paused
from forewarn.lifecycle.fold import SubjectHistory
from forewarn.lifecycle.model import Moment, Obligation, Outcome, Sent, Violation
from forewarn.policy.model import Policy, Rule
from forewarn.record import record
from forewarn.relational.violations import humanize, obligation_deadline_text


@record
class Verdict:
    """One subject's share of an evaluation."""

    outcomes: list[Outcome]  # its obligations' outcomes, in derivation order
    violations: list[Violation]  # its violated obligations, in outcome order
    alarms: list[Violation]  # its alarms (an overrun, per affected customer)
    pending_until: datetime | None  # the earliest deadline of its pending obligations: then one is violated


@dataclass(frozen=True)
class Evaluation:
    """Everything the policy says about a log as of an instant."""

    as_of: datetime
    policy: Policy
    index: LogIndex
    histories: dict[tuple[str, str], SubjectHistory]
    outcomes: list[Outcome]  # every obligation with its status
    violations: list[Violation]  # obligation, alarm and (unless evaluated without) check violations, unsorted
    comms: dict[CommKey, list[Sent]]  # communications about a subject, by what they are about (matching)
    verdicts: dict[tuple[str, str], Verdict]  # per subject, in the order of `histories`

    def sender(self, ob: Obligation) -> str | None:
        history = self.histories.get((ob.subject_kind, ob.subject))
        return self.policy.sender(history.release_related if history else False)

    def contacts(self, ob: Obligation) -> list[str]:
        attrs = self.index.customer_at(ob.customer, ob.moment.pos)
        return list(attrs.contacts) if attrs is not None else []


def evaluate(events: Sequence[Event], policy: Policy, as_of: datetime, checks: bool = True) -> Evaluation:
    """Judge `events` (in evaluation order) against `policy` as of `as_of`.

    Facts after `as_of` are ignored; obligations whose deadline is later and
    are not yet met are pending. `checks=False` skips the per-communication
    checks (content, sender, ticket, routing): what the engine plans from is
    obligations and their outcomes, and the checks are a large part of the work;
    `violations` then holds obligation and alarm violations only.
    """
    with gc_paused():  # hundreds of thousands of acyclic objects: the cyclic GC only costs time here
        return _evaluate(events, policy, as_of, checks)


def _evaluate(events: Sequence[Event], policy: Policy, as_of: datetime, checks: bool = True) -> Evaluation:
    index = build_index(e for e in events if e.at <= as_of)
    derivation = derive(index, policy, as_of)
    checked = run_checks(policy, CheckContext(index, derivation.histories, as_of)) if checks else None
    comms = communications_by_key(index)
    verdicts = judge(derivation, index, policy, comms, as_of)
    return assemble(as_of, policy, index, derivation.histories, comms, verdicts, checked)


def judge(
    derivation: Derivation, index: LogIndex, policy: Policy, comms: dict[CommKey, list[Sent]], as_of: datetime
) -> dict[tuple[str, str], Verdict]:
    """Each derived subject's verdict: its obligations matched against the communications
    (or void), its violated obligations and its alarms."""
    obligations = derivation.obligations
    void: dict[int, str] = {}
    for i, ob in enumerate(obligations):
        reason = void_reason(ob, policy.by_id[ob.rule], derivation.histories[(ob.subject_kind, ob.subject)])
        if reason is not None:
            void[i] = reason
    allowed = {r.id: frozenset(r.spec.problems) for r in policy.rules}
    outcomes = match(obligations, void, allowed, comms, as_of)  # one outcome per obligation, in order
    verdicts: dict[tuple[str, str], Verdict] = {}
    for key, (o0, o1, a0, a1) in derivation.spans.items():
        mine = outcomes[o0:o1]
        violated = [_obligation_violation(o, comms) for o in mine if o.status == "violated"]
        alarms = [
            v for rule, m in derivation.alarms[a0:a1] for v in _alarm_violations(rule, m, derivation, index, policy)
        ]
        until = min((o.obligation.not_after for o in mine if o.status == "pending"), default=None)
        verdicts[key] = Verdict(mine, violated, alarms, until)
    return verdicts


def assemble(
    as_of: datetime,
    policy: Policy,
    index: LogIndex,
    histories: dict[tuple[str, str], SubjectHistory],
    comms: dict[CommKey, list[Sent]],
    verdicts: dict[tuple[str, str], Verdict],
    checked: list[Violation] | None,
) -> Evaluation:
    """The evaluation from its subjects' verdicts (in their order: obligation violations first, then alarms,
    then the per-communication checks' if run)."""
    outcomes = [o for v in verdicts.values() for o in v.outcomes]
    violations = [x for v in verdicts.values() for x in v.violations]
    violations += [x for v in verdicts.values() for x in v.alarms]
    if checked is not None:
        violations += checked
    return Evaluation(as_of, policy, index, histories, outcomes, violations, comms, verdicts)


def _alarm_violations(
    rule: Rule, moment: Moment, derivation: Derivation, index: LogIndex, policy: Policy
) -> list[Violation]:
    """An alarm (a maintenance overrun) as one violation per affected customer."""
    history = derivation.histories[("maintenance", moment.subject)]
    end = moment.instant("end_in_force")
    out = []
    for customer, attrs in affected_versions(history, moment.pos, index, policy, rule):
        tz = attrs.timezone
        out.append(
            Violation(
                rule=rule.id,
                problem=rule.spec.alarm.problem,  # type: ignore[union-attr]
                subject=moment.subject,
                customer=customer,
                communication=None,
                due=moment.at,
                sent=None,
                fields={
                    "subject": moment.subject,
                    "customer": customer,
                    "end_in_force": format_local(end, tz) if end else "?",
                    "due": format_local(moment.at, tz),
                },
                evidence=tuple(dict.fromkeys((history.defined_event, moment.event_id))),
            )
        )
    return out


def _obligation_violation(outcome: Outcome, comms: dict) -> Violation:
    ob = outcome.obligation
    fields = {
        "subject": ob.subject,
        "customer": ob.customer,
        "kind": ob.kinds[0].replace("_", " "),
        "deadline": obligation_deadline_text(ob),
        "due": format_local(ob.not_after, ob.timezone),
        "communication": outcome.communication or "",
    }
    if outcome.sent is not None:
        fields["sent"] = format_local(outcome.sent, ob.timezone)
        if outcome.problem == "late":
            fields["lateness"] = humanize(outcome.sent - ob.not_after)
        elif outcome.problem == "early":
            fields["earliness"] = humanize(ob.not_before - outcome.sent)
    if ob.count > 1:
        fields["count_found"] = str(min(count_in_window(ob, comms), ob.count - 1))
    return Violation(
        rule=ob.rule,
        problem=outcome.problem or "missing",
        subject=ob.subject,
        customer=ob.customer,
        communication=outcome.communication,
        due=ob.not_after,
        sent=outcome.sent,
        fields=fields,
        evidence=tuple(dict.fromkeys((*ob.evidence, *outcome.matched_events))),
    )
