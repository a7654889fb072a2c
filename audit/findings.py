"""Findings: violations with severity, message and evidence, waivers applied, for a review period."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from forewarn import __version__
from forewarn.calendar import holidays_version
from forewarn.events import Event, WaiverGranted
from forewarn.instants import utc
from forewarn.log.chain import Fingerprint
from forewarn.policy.model import Policy

if TYPE_CHECKING:
    from forewarn.lifecycle.model import Violation


@dataclass(frozen=True)
class Finding:
    """One finding, with exactly the fields of policy.md."""

    rule: str
    status: str  # violation | waived
    severity: str
    problem: str
    subject: str
    customer: str
    communication: str | None
    due: datetime
    sent: datetime | None
    waiver: str | None
    retroactive: bool
    message: str
    evidence: tuple[str, ...]
    waiver_reason: str | None = field(default=None, compare=False)
    waiver_approved_by: str | None = field(default=None, compare=False)

    def sort_key(self) -> tuple[str, str, str, str, str, str]:
        return (utc(self.due) or "", self.rule, self.subject, self.customer, self.problem, self.communication or "")

    def to_json(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "status": self.status,
            "severity": self.severity,
            "problem": self.problem,
            "subject": self.subject,
            "customer": self.customer,
            "communication": self.communication,
            "due": utc(self.due),
            "sent": utc(self.sent),
            "waiver": self.waiver,
            "retroactive": self.retroactive,
            "message": self.message,
            "evidence": list(self.evidence),
        }


@dataclass(frozen=True)
class Summary:
    obligations: int
    met: int
    violated: int
    waived: int
    pending: int
    findings: int

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class AuditResult:
    """The auditor's verdict on a log, as of an instant, for a review period."""

    as_of: datetime
    since: datetime | None
    until: datetime | None
    policy: Policy
    summary: Summary
    findings: list[Finding]
    log: Fingerprint | None = None  # of the log judged (its high-water sequence and chain head), when known
    comparison: Any = None  # audit.compare.Comparison, when judged against another policy too (--compare-rules)

    @property
    def violations(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "violation"]

    def pending_json(self) -> list[dict[str, object]]:
        """The pending obligations in the shape of cli.md (the evaluation's result knows them)."""
        return []

    def to_json(self) -> dict[str, object]:
        return {
            "as_of": utc(self.as_of),
            "since": utc(self.since),
            "until": utc(self.until),
            "policy": {"rules": self.policy.ids, "digest": self.policy.digest},
            "versions": {"forewarn": __version__, "holidays": holidays_version()},
            **({"log": self.log.to_json()} if self.log is not None else {}),
            "summary": self.summary.to_json(),
            "findings": [f.to_json() for f in self.findings],
            "pending": self.pending_json(),
            **({"comparison": self.comparison.to_json()} if self.comparison is not None else {}),
        }


def _message(template: str, fields: dict[str, str], params: dict[str, object]) -> str:
    class Blank(dict):  # a placeholder the situation cannot fill reads as "?"
        def __missing__(self, key: str) -> str:
            return "?"

    return template.format_map(Blank({**{k: str(v) for k, v in params.items()}, **fields}))


def _waiver_for(v: Violation, waivers: Sequence[WaiverGranted]) -> WaiverGranted | None:
    for w in waivers:
        if w.rule == v.rule and w.subject == v.subject and (w.customer is None or w.customer == v.customer):
            return w
    return None


def to_finding(v: Violation, policy: Policy, waivers: Sequence[WaiverGranted]) -> Finding:
    rule = policy.by_id[v.rule]
    waiver = _waiver_for(v, waivers)
    return Finding(
        rule=v.rule,
        status="waived" if waiver else "violation",
        severity=rule.severity,
        problem=v.problem,
        subject=v.subject,
        customer=v.customer,
        communication=v.communication,
        due=v.due,
        sent=v.sent,
        waiver=waiver.waiver if waiver else None,
        retroactive=bool(waiver and waiver.at > v.due),
        message=_message(rule.spec.problems[v.problem], v.fields, rule.params()),
        evidence=tuple(dict.fromkeys((*v.evidence, *((waiver.id,) if waiver else ())))),
        waiver_reason=waiver.reason if waiver else None,
        waiver_approved_by=waiver.approved_by if waiver else None,
    )


def audit(
    events: Sequence[Event],
    policy: Policy,
    as_of: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
) -> AuditResult:
    """Judge the log (validated events in evaluation order); the period [since, until) selects findings and
    obligations by due time. On the relational evaluation (forewarn.relational.audit), every case listed."""
    from forewarn.relational.audit import audit_events

    return audit_events(events, policy, as_of, since, until)
