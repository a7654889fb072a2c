"""The engine's sends for a whole period in one evaluation (for large synthetic logs; replay is for small ones)."""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

from forewarn.engine.draft import Draft
from forewarn.engine.planner import UPDATE_LEAD, Due, ObjectFacts, cancellation_drafts, drafts_at, sends_late
from forewarn.engine.render import subject_line
from forewarn.engine.runner import recorded_events
from forewarn.evaluate.evaluation import Evaluation, evaluate
from forewarn.evaluate.index import Sent
from forewarn.evaluate.matching import CommKey, count_in_window, match
from forewarn.evaluate.model import Obligation
from forewarn.evaluate.obligations import void_reason
from forewarn.events import Event
from forewarn.policy.model import Policy, Rule
from forewarn.relational.engine import ANNOUNCING


def _void_from(evaluation: Evaluation, ob: Obligation) -> datetime | None:
    """The instant from which a void obligation is void: the first event that voided it.

    Before that instant the engine saw the obligation pending and served it.
    """
    rule = evaluation.policy.by_id[ob.rule]
    spec = rule.spec.obligation
    history = evaluation.histories.get((ob.subject_kind, ob.subject))
    if spec is None or history is None:
        return None
    version_no = ob.moment.attrs.get("version")
    version = history.versions[version_no - 1] if isinstance(version_no, int) else None
    instants = {
        "superseded-before-deadline": version.superseded_at if version else None,
        "superseded-before-start": version.superseded_at if version else None,
        "cancelled-before-deadline": history.cancelled_at,
        "closed-before-deadline": history.closed_at,
    }
    found = []
    for cond in spec.void_when:
        only = spec.model_copy(update={"void_when": [cond]})
        one = Rule(rule.spec.model_copy(update={"obligation": only}), rule.path)
        at = instants.get(cond)
        if at is not None and void_reason(ob, one, history) is not None:
            found.append(at)
    return min(found, default=None)


class _Comm(NamedTuple):
    """The fields of a planned communication that matching looks at."""

    at: datetime
    communication: str
    id: str


def sends(evaluation: Evaluation) -> list[tuple[datetime, Draft]]:
    """Every communication the engine would send, had it run at every instant of the period.

    The engine serves an obligation at the moment it becomes sendable, if its
    deadline has not passed and nothing voided it yet (a window superseded later
    got its notice all the same). One needing more communications (the promised
    update) gets the next shortly before its deadline, while matching says it is
    not yet met, as the engine's planner does.
    """
    firsts: dict[datetime, list[Due]] = defaultdict(list)  # pass 0 at each instant
    further: list[tuple[datetime, int]] = []
    void_from: dict[int, datetime | None] = {}
    for i, outcome in enumerate(evaluation.outcomes):
        ob = outcome.obligation
        void_from[i] = _void_from(evaluation, ob) if outcome.status == "void" else None
        first = max(ob.opened, ob.not_before)
        if _live(ob, void_from[i], first) or _late(evaluation, ob, void_from[i], first):
            firsts[first].append(Due(outcome, first, 0))
            later = max(first, ob.not_after - UPDATE_LEAD)
            if ob.count > 1 and _live(ob, void_from[i], later):
                further.append((later, i))
    # The engine's passes: (instant, pass at that instant); a pass that sent is followed by another.
    by_pass: dict[tuple[datetime, int], list[Due]] = {(when, 0): list(dues) for when, dues in firsts.items()}
    drafted: dict[tuple[datetime, int], list[Draft]] = defaultdict(list)
    passes_of: dict[tuple[str, str, str], set[tuple[datetime, int]]] = defaultdict(set)

    def redraft(key: tuple[datetime, int]) -> None:
        drafted[key] = [d for _key, d in _drafts(evaluation, {key: by_pass[key]})]
        for d in drafted[key]:
            passes_of[(d.subject_kind, d.subject, d.customer)].add(key)

    for key in by_pass:
        redraft(key)
    groups: dict[tuple[str, str, str, str], list[int]] = defaultdict(list)
    for i, outcome in enumerate(evaluation.outcomes):
        ob = outcome.obligation
        groups[(ob.rule, ob.subject_kind, ob.subject, ob.customer)].append(i)
    allowed = {r.id: frozenset(r.spec.problems) for r in evaluation.policy.rules}
    at_instant: dict[datetime, list[int]] = defaultdict(list)
    for later, i in further:
        at_instant[later].append(i)
    for later in sorted(at_instant):
        active = {
            i: 1 if max(o.opened, o.not_before) == later else 0
            for i in at_instant[later]
            for o in [evaluation.outcomes[i].obligation]
        }  # first pass: after the one that sent the first
        for n in range(max(evaluation.outcomes[i].obligation.count for i in active) + 2):
            dues = []
            for i, first_pass in sorted(active.items()):
                if first_pass > n:
                    continue
                ob = evaluation.outcomes[i].obligation
                group = [
                    j
                    for j in groups[(ob.rule, ob.subject_kind, ob.subject, ob.customer)]
                    if evaluation.outcomes[j].obligation.opened <= later and _live_at(void_from[j], later)
                ]
                scs = (ob.subject_kind, ob.subject, ob.customer)
                planned = [
                    (key[0], d)
                    for key in sorted(k for k in passes_of[scs] if k < (later, n))
                    for d in drafted[key]
                    if (d.subject_kind, d.subject, d.customer) == scs
                ]
                so_far = _unmet(evaluation, i, group, planned, later, allowed)
                if so_far is None:
                    del active[i]
                else:
                    dues.append(Due(evaluation.outcomes[i], later, so_far))
            if dues:
                by_pass.setdefault((later, n), []).extend(dues)
                redraft((later, n))
            elif all(first_pass <= n for first_pass in active.values()):
                break
    out = [(key[0], d) for key in sorted(drafted) for d in drafted[key]]
    return sorted(out + _cancellations(evaluation, out), key=lambda item: item[0])


def _live_at(void_from: datetime | None, t: datetime) -> bool:
    return void_from is None or t < void_from


def _late(evaluation: Evaluation, ob: Obligation, void_from: datetime | None, t: datetime) -> bool:
    """Whether the engine, at `t`, sends for an obligation whose deadline had already passed (it opened
    after it): late, as the planner does (engine.planner.sends_late)."""
    return ob.not_after < t and _live_at(void_from, t) and sends_late(ObjectFacts(evaluation), ob, t)


def _live(ob: Obligation, void_from: datetime | None, t: datetime) -> bool:
    """Whether the engine, at `t`, still sees the obligation open: deadline ahead (or now), not yet void."""
    return t <= ob.not_after and _live_at(void_from, t)


def _unmet(
    evaluation: Evaluation,
    i: int,
    group: list[int],
    planned: list[tuple[datetime, Draft]],
    now: datetime,
    allowed: dict[str, frozenset[str]],
) -> int | None:
    """How many fitting communications obligation `i` has at `now` if matching says it is still unmet
    given the `planned` sends (in recording order), else None."""
    comms: dict[CommKey, list[Sent]] = defaultdict(list)
    for n, (when, d) in enumerate(planned):
        comm = _Comm(when, d.communication, f"evt-{d.communication}")
        comms[(d.subject_kind, d.subject, d.customer, d.kind)].append(Sent(n, comm, (d.subject_kind, d.subject)))  # type: ignore[arg-type]
    outcomes = match([evaluation.outcomes[j].obligation for j in group], {}, allowed, comms, now)
    if outcomes[group.index(i)].status == "met":
        return None
    return count_in_window(evaluation.outcomes[i].obligation, comms)


def _drafts(
    evaluation: Evaluation, by_pass: dict[tuple[datetime, int], list[Due]]
) -> list[tuple[tuple[datetime, int], Draft]]:
    """The drafts of each pass's due obligations, stating the subjects as they stood then."""
    ats = evaluation.index.ats
    out: list[tuple[tuple[datetime, int], Draft]] = []
    for when, n in sorted(by_pass):
        pos = bisect_right(ats, when) - 1
        dues = sorted(by_pass[(when, n)], key=_plan_order)
        out.extend(((when, n), d) for d in drafts_at(ObjectFacts(evaluation), dues, pos, when))
    return out


def _plan_order(d: Due) -> tuple[datetime, datetime, str, str, str]:
    """The order of the planner's due list (drafts group obligations in this order)."""
    ob = d.obligation
    return (d.send_from, ob.not_after, ob.rule, ob.subject, ob.customer)


def _cancellations(evaluation: Evaluation, planned: list[tuple[datetime, Draft]]) -> list[tuple[datetime, Draft]]:
    """The engine's withdrawal of a cancelled maintenance, to each enterprise customer told of it before."""
    out: list[tuple[datetime, Draft]] = []
    for (kind, subject), h in sorted(evaluation.histories.items()):
        if kind != "maintenance" or h.cancelled_at is None:
            continue
        told = {
            d.customer
            for when, d in planned
            if (d.subject_kind, d.subject) == (kind, subject) and d.kind in ANNOUNCING and when < h.cancelled_at
        }
        pos = bisect_right(evaluation.index.ats, h.cancelled_at) - 1
        covers = evaluation.policy.covers
        pairs = [(subject, c) for c in sorted(told) if evaluation.index.covered_at(c, pos, covers) is not None]
        out.extend((h.cancelled_at, d) for d in cancellation_drafts(ObjectFacts(evaluation), pairs))
    return out


def engine_events(lifecycle: Sequence[Event], policy: Policy, until: datetime) -> list[dict[str, object]]:
    """communication.sent and ticket.opened events for every send, in time order."""
    evaluation = evaluate(lifecycle, policy, until)
    out: list[dict[str, object]] = []
    for when, draft in sends(evaluation):
        # as the engine records them; the ticket a minute later
        out.extend(
            recorded_events(draft, f"t-{draft.communication}", when, subject_line(draft), when + timedelta(minutes=1))
        )
    return out
