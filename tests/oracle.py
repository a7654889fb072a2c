"""The per-object evaluation's audit, as an oracle for tests only (forewarn audits on forewarn.relational).

The property tests judge hundreds of generated logs of a few events each: on the object evaluation a
judgement takes milliseconds, on DuckDB a fixed cost of query planning per log. Until the object
evaluation is deleted, they judge with it; tests/test_relational.py checks that the two agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from forewarn.audit.findings import AuditResult, Finding, Summary, to_finding
from forewarn.evaluate.evaluation import Evaluation, evaluate
from forewarn.evaluate.model import Outcome
from forewarn.events import Event
from forewarn.instants import utc
from forewarn.policy.model import Policy


@dataclass(frozen=True)
class ObjectAudit(AuditResult):
    """An AuditResult with the object evaluation's outcomes kept."""

    pending: list[Outcome] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)  # every non-void obligation of the period
    evaluation: Evaluation | None = None

    def pending_json(self) -> list[dict[str, object]]:
        assert self.evaluation is not None
        return [
            {
                "rule": ob.rule,
                "subject": ob.subject,
                "customer": ob.customer,
                "kind": ob.kinds[0],
                "from": self.evaluation.sender(ob),
                "to": self.evaluation.contacts(ob),
                "not_before": utc(max(ob.not_before, ob.opened)),
                "not_after": utc(ob.not_after),
            }
            for ob in (o.obligation for o in self.pending)
        ]


def _in_period(t: datetime, since: datetime | None, until: datetime | None) -> bool:
    return (since is None or t >= since) and (until is None or t < until)


def object_audit(
    events: Sequence[Event],
    policy: Policy,
    as_of: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
) -> ObjectAudit:
    """Judge the log (events in evaluation order) on the object evaluation, as forewarn once did."""
    evaluation = evaluate([e for e in events if e.at <= as_of], policy, as_of)
    waivers = sorted((w for _pos, w in evaluation.index.waivers), key=lambda w: (w.at, w.waiver))
    findings = sorted(
        (to_finding(v, policy, waivers) for v in evaluation.violations if _in_period(v.due, since, until)),
        key=Finding.sort_key,
    )
    outcomes = [
        o for o in evaluation.outcomes if o.status != "void" and _in_period(o.obligation.not_after, since, until)
    ]
    waived_keys = {(f.rule, f.subject, f.customer, utc(f.due)) for f in findings if f.status == "waived"}
    violated = waived = 0
    for o in outcomes:
        if o.status == "violated":
            ob = o.obligation
            if (ob.rule, ob.subject, ob.customer, utc(ob.not_after)) in waived_keys:
                waived += 1
            else:
                violated += 1
    pending = sorted(
        (o for o in outcomes if o.status == "pending"),
        key=lambda o: (o.obligation.not_after, o.obligation.rule, o.obligation.subject, o.obligation.customer),
    )
    summary = Summary(
        obligations=len(outcomes),
        met=sum(o.status == "met" for o in outcomes),
        violated=violated,
        waived=waived,
        pending=len(pending),
        findings=len(findings),
    )
    return ObjectAudit(as_of, since, until, policy, summary, findings, pending=pending, outcomes=outcomes,
                       evaluation=evaluation)
