"""The engine's sends for a whole period in one evaluation (for large synthetic logs; replay is for small ones)."""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from forewarn.engine.draft import Draft
from forewarn.engine.planner import UPDATE_LEAD, Due, drafts_at
from forewarn.engine.render import subject_line
from forewarn.evaluate.evaluation import Evaluation, evaluate
from forewarn.events import Event
from forewarn.policy.model import Policy


def _utc(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def sends(evaluation: Evaluation) -> list[tuple[datetime, Draft]]:
    """Every communication the engine would send, had it run at every instant of the period.

    Each obligation that stands (not void) is served at the moment it becomes
    sendable; one needing two communications gets the second shortly before its
    deadline, as the engine's planner does.
    """
    by_time: dict[datetime, list[Due]] = defaultdict(list)
    for outcome in evaluation.outcomes:
        if outcome.status == "void":
            continue
        ob = outcome.obligation
        first = max(ob.opened, ob.not_before)
        by_time[first].append(Due(outcome, first, 0))
        for k in range(1, ob.count):
            later = max(first, ob.not_after - UPDATE_LEAD)
            by_time[later].append(Due(outcome, later, k))
    ats = evaluation.index.ats
    out: list[tuple[datetime, Draft]] = []
    for when in sorted(by_time):
        pos = bisect_right(ats, when) - 1
        out.extend((when, d) for d in drafts_at(evaluation, by_time[when], pos, when))
    return out


def engine_events(lifecycle: Sequence[Event], policy: Policy, until: datetime) -> list[dict[str, object]]:
    """communication.sent and ticket.opened events for every send, in time order."""
    evaluation = evaluate(lifecycle, policy, until)
    out: list[dict[str, object]] = []
    for when, draft in sends(evaluation):
        ticket_at = when + timedelta(minutes=1)
        states = {k: (_utc(v) if isinstance(v, datetime) else v) for k, v in draft.states.items()}
        out.append(
            {
                "id": f"evt-{draft.communication}",
                "type": "communication.sent",
                "at": _utc(when),
                "communication": draft.communication,
                "customer": draft.customer,
                "to": list(draft.to),
                "from": draft.sender,
                "kind": draft.kind,
                draft.subject_kind: draft.subject,
                "subject": subject_line(draft),
                "message_id": draft.message_id,
                "states": states,
            }
        )
        out.append(
            {
                "id": f"evt-t-{draft.communication}",
                "type": "ticket.opened",
                "at": _utc(ticket_at),
                "ticket": f"t-{draft.communication}",
                "communication": draft.communication,
            }
        )
    return out
