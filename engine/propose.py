"""`plan --propose`: for a window being considered, when each affected customer's notice must go out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from forewarn.events import EVENT_ADAPTER, Event
from forewarn.lifecycle.model import Obligation
from forewarn.policy.model import Policy
from forewarn.relational.engine import obligations_of
from forewarn.relational.evaluation import evaluate_events
from forewarn.relational.violations import obligation_deadline_text

PROPOSAL_ID = "proposed-window"


class ProposalError(ValueError):
    """The --propose text is not a usable window."""


@dataclass(frozen=True)
class Proposal:
    start: datetime
    end: datetime
    customers: list[str] | str
    impact: str
    emergency: bool = False


@dataclass(frozen=True)
class ProposalAnswer:
    as_of: datetime
    proposal: Proposal
    obligations: list[Obligation]  # what the window would oblige, per customer

    def too_late(self, ob: Obligation) -> bool:
        return ob.not_after < self.as_of


def parse_proposal(text: str, as_of: datetime) -> Proposal:
    """`start=T,end=T,customers=a|b|all,impact=none|degraded|interruption[,emergency=true]`."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise ProposalError(f"{part!r} is not key=value")
        fields[key.strip()] = value.strip()
    unknown = set(fields) - {"start", "end", "customers", "impact", "emergency"}
    if unknown:
        raise ProposalError(f"unknown key(s) {', '.join(sorted(unknown))}; use start, end, customers, impact")
    customers = fields.get("customers", "all")
    return proposal_from(
        {
            "start": fields.get("start"),
            "end": fields.get("end"),
            "customers": "all" if customers == "all" else customers.split("|"),
            "impact": fields.get("impact", "interruption"),
            "emergency": fields.get("emergency", "false") == "true",
        },
        as_of,
    )


def proposal_from(fields: dict[str, object], as_of: datetime) -> Proposal:
    """A proposal from its fields (start, end, customers: a list or "all", impact, emergency), validated as a
    `maintenance.scheduled` event is (the HTTP API's body; --propose's text once split)."""
    raw = {
        "id": PROPOSAL_ID,
        "type": "maintenance.scheduled",
        "at": as_of.isoformat(),
        "maintenance": PROPOSAL_ID,
        "title": "proposed window",
        "start": fields.get("start"),
        "end": fields.get("end"),
        "customers": fields.get("customers", "all"),
        "impact": fields.get("impact", "interruption"),
        "impact_summary": "proposed",
        "emergency": bool(fields.get("emergency", False)),
        "reason": "proposed",
    }
    try:
        event = EVENT_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "window"
        raise ProposalError(f"{where}: {first['msg']}") from None
    return Proposal(event.start, event.end, event.customers, event.impact, event.emergency)  # type: ignore[union-attr]


def propose_window(events: Sequence[Event], policy: Policy, proposal: Proposal, as_of: datetime) -> ProposalAnswer:
    """Evaluate the log plus the proposed window, as of now; keep the window's obligations."""
    customers = proposal.customers if isinstance(proposal.customers, str) else list(proposal.customers)
    known = {e.customer for e in events if e.type == "customer.upserted"}  # type: ignore[union-attr]
    missing = [c for c in ([] if customers == "all" else customers) if c not in known]
    if missing:
        raise ProposalError(f"unknown customer(s): {', '.join(missing)}")
    scheduled = EVENT_ADAPTER.validate_python(
        {
            "id": PROPOSAL_ID,
            "type": "maintenance.scheduled",
            "at": as_of.isoformat(),
            "maintenance": PROPOSAL_ID,
            "title": "proposed window",
            "start": proposal.start.isoformat(),
            "end": proposal.end.isoformat(),
            "customers": customers,
            "impact": proposal.impact,
            "impact_summary": "proposed",
            "emergency": proposal.emergency,
            "reason": "proposed",
        }
    )
    rel = evaluate_events([*events, scheduled], policy, as_of)
    try:
        found = obligations_of(rel, "maintenance", PROPOSAL_ID)
    finally:
        rel.close()
    obligations = sorted(found, key=lambda ob: (ob.not_after, ob.rule, ob.customer))
    return ProposalAnswer(as_of, proposal, obligations)


def describe(ob: Obligation) -> str:
    return obligation_deadline_text(ob)
