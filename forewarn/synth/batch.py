"""The engine's sends for a whole period in one evaluation (for large synthetic logs; replay is for small ones).

One relational evaluation of the lifecycle as of the period's end (forewarn.relational, the engine's and the
audit's) gives every obligation, its window and from when it is void; the engine's planner
(forewarn.engine.planner) drafts what the engine would send, reading the period's facts (`Period`, the
planner's Facts). The promised update's further communications are matched against the earlier sends by the
evaluation's own matching (forewarn.relational.obligations.match_group).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from forewarn.engine.cache import Customers
from forewarn.engine.draft import Draft
from forewarn.engine.planner import UPDATE_LEAD, Due, cancellation_drafts, drafts_at, sends_late
from forewarn.engine.render import subject_line
from forewarn.engine.runner import recorded_events
from forewarn.events import CommunicationSent, CustomerUpserted, Event
from forewarn.instants import epoch_us
from forewarn.lifecycle.fold import SubjectHistory
from forewarn.lifecycle.model import Obligation, Outcome, Sent
from forewarn.policy.model import Policy
from forewarn.relational.engine import ANNOUNCING
from forewarn.relational.evaluation import Relational, evaluate_events
from forewarn.relational.obligations import Member, fits, match_group
from forewarn.relational.outcomes import outcomes, void_since


class Period:
    """The facts plans and drafts read (engine.planner.Facts) of a whole period's evaluation: every subject's
    history as of the period's end (read at each draft's position), the customers' versions and the
    communications of the log, by position; and every obligation's outcome, with the instant it became void
    (before which the engine saw it open)."""

    def __init__(self, events: Sequence[Event], rel: Relational) -> None:
        self.as_of = rel.as_of
        self.policy = rel.policy
        self.histories: dict[tuple[str, str], SubjectHistory] = dict(rel.life.histories)
        found = outcomes(rel)
        since = void_since(rel)
        self.outcomes: list[Outcome] = list(found.values())  # in derivation order
        self.void_from: list[datetime | None] = [since.get(oid) for oid in found]
        self.ats = [e.at for e in events]
        self.customers = Customers()
        self._sent: dict[tuple[str, str, str, str], list[Sent]] = defaultdict(list)
        for pos, event in enumerate(events):
            if isinstance(event, CustomerUpserted):
                self.customers.add(pos, event)
            elif isinstance(event, CommunicationSent):
                sent = Sent.of(pos, event)
                if sent.subject is not None:
                    self._sent[(*sent.subject, event.customer, event.kind)].append(sent)

    @property
    def last_pos(self) -> int:
        return len(self.ats) - 1

    def history(self, kind: str, subject: str) -> SubjectHistory | None:
        return self.histories.get((kind, subject))

    def customer_at(self, customer: str, pos: int) -> CustomerUpserted | None:
        return self.customers.at(customer, pos)

    def sent_about(self, kind: str, subject: str, customer: str, comm_kind: str) -> Sequence[Sent]:
        return self._sent.get((kind, subject, customer, comm_kind), ())

    def pos_at(self, t: datetime) -> int:
        """The position of the last event at or before `t`."""
        return bisect_right(self.ats, t) - 1


def evaluate_period(lifecycle: Sequence[Event], policy: Policy, until: datetime) -> Period:
    """The period's facts: the events (in evaluation order) up to `until`, evaluated as of then."""
    events = [e for e in lifecycle if e.at <= until]
    rel = evaluate_events(events, policy, until)
    try:
        return Period(events, rel)
    finally:
        rel.close()


def sends(period: Period) -> list[tuple[datetime, Draft]]:
    """Every communication the engine would send, had it run at every instant of the period.

    The engine serves an obligation at the moment it becomes sendable, if its
    deadline has not passed and nothing voided it yet (a window superseded later
    got its notice all the same). One needing more communications (the promised
    update) gets the next shortly before its deadline, while matching says it is
    not yet met, as the engine's planner does.
    """
    obligations = [o.obligation for o in period.outcomes]
    void_from = period.void_from
    firsts: dict[datetime, list[Due]] = defaultdict(list)  # pass 0 at each instant
    further: list[tuple[datetime, int]] = []
    for i, outcome in enumerate(period.outcomes):
        ob = outcome.obligation
        first = max(ob.opened, ob.not_before)
        if _live(ob, void_from[i], first) or _late(period, ob, void_from[i], first):
            firsts[first].append(Due(outcome, first, 0))
            later = max(first, ob.not_after - UPDATE_LEAD)
            if ob.count > 1 and _live(ob, void_from[i], later):
                further.append((later, i))
    # The engine's passes: (instant, pass at that instant); a pass that sent is followed by another.
    by_pass: dict[tuple[datetime, int], list[Due]] = {(when, 0): list(dues) for when, dues in firsts.items()}
    drafted: dict[tuple[datetime, int], list[Draft]] = defaultdict(list)
    passes_of: dict[tuple[str, str, str], set[tuple[datetime, int]]] = defaultdict(set)

    def redraft(key: tuple[datetime, int]) -> None:
        drafted[key] = [d for _key, d in _drafts(period, {key: by_pass[key]})]
        for d in drafted[key]:
            passes_of[(d.subject_kind, d.subject, d.customer)].add(key)

    for key in by_pass:
        redraft(key)
    groups: dict[tuple[str, str, str, str], list[int]] = defaultdict(list)
    for i, ob in enumerate(obligations):
        groups[(ob.rule, ob.subject_kind, ob.subject, ob.customer)].append(i)
    at_instant: dict[datetime, list[int]] = defaultdict(list)
    for later, i in further:
        at_instant[later].append(i)
    for later in sorted(at_instant):
        active = {
            i: 1 if max(obligations[i].opened, obligations[i].not_before) == later else 0 for i in at_instant[later]
        }  # first pass: after the one that sent the first
        for n in range(max(obligations[i].count for i in active) + 2):
            dues = []
            for i, first_pass in sorted(active.items()):
                if first_pass > n:
                    continue
                ob = obligations[i]
                group = [
                    j
                    for j in groups[(ob.rule, ob.subject_kind, ob.subject, ob.customer)]
                    if obligations[j].opened <= later and _live_at(void_from[j], later)
                ]
                scs = (ob.subject_kind, ob.subject, ob.customer)
                planned = [
                    (key[0], d)
                    for key in sorted(k for k in passes_of[scs] if k < (later, n))
                    for d in drafted[key]
                    if (d.subject_kind, d.subject, d.customer) == scs
                ]
                so_far = _unmet(period, obligations, i, group, planned, later)
                if so_far is None:
                    del active[i]
                else:
                    dues.append(Due(period.outcomes[i], later, so_far))
            if dues:
                by_pass.setdefault((later, n), []).extend(dues)
                redraft((later, n))
            elif all(first_pass <= n for first_pass in active.values()):
                break
    out = [(key[0], d) for key in sorted(drafted) for d in drafted[key]]
    return sorted(out + _cancellations(period, out), key=lambda item: item[0])


def _live_at(void_from: datetime | None, t: datetime) -> bool:
    return void_from is None or t < void_from


def _late(period: Period, ob: Obligation, void_from: datetime | None, t: datetime) -> bool:
    """Whether the engine, at `t`, sends for an obligation whose deadline had already passed (it opened
    after it): late, as the planner does (engine.planner.sends_late)."""
    return ob.not_after < t and _live_at(void_from, t) and sends_late(period, ob, t)


def _live(ob: Obligation, void_from: datetime | None, t: datetime) -> bool:
    """Whether the engine, at `t`, still sees the obligation open: deadline ahead (or now), not yet void."""
    return t <= ob.not_after and _live_at(void_from, t)


def _member(i: int, ob: Obligation) -> Member:
    return (i, ob.count, epoch_us(ob.opened), epoch_us(ob.not_before), epoch_us(ob.not_after))


def _unmet(
    period: Period,
    obligations: Sequence[Obligation],
    i: int,
    group: list[int],
    planned: list[tuple[datetime, Draft]],
    now: datetime,
) -> int | None:
    """How many fitting communications obligation `i` has at `now` if matching says it is still unmet
    given the `planned` sends (in recording order, about its subject to its customer), else None."""
    ob = obligations[i]
    candidates = [(n, epoch_us(when)) for n, (when, d) in enumerate(planned) if d.kind in ob.kinds]
    members = sorted(
        (_member(j, obligations[j]) for j in group), key=lambda m: (m[4], m[2], m[0])
    )  # deadline order (match_group's)
    codes = period.policy.by_id[ob.rule].spec.problems
    for oid, status, _problem, _taken in match_group(members, candidates, codes, epoch_us(now)):
        if oid == i and status == "met":
            return None
    mine = _member(i, ob)
    return sum(1 for _n, at in candidates if fits(mine, at))


def _drafts(period: Period, by_pass: dict[tuple[datetime, int], list[Due]]) -> list[tuple[tuple[datetime, int], Draft]]:
    """The drafts of each pass's due obligations, stating the subjects as they stood then."""
    out: list[tuple[tuple[datetime, int], Draft]] = []
    for when, n in sorted(by_pass):
        dues = sorted(by_pass[(when, n)], key=_plan_order)
        out.extend(((when, n), d) for d in drafts_at(period, dues, period.pos_at(when), when))
    return out


def _plan_order(d: Due) -> tuple[datetime, datetime, str, str, str]:
    """The order of the planner's due list (drafts group obligations in this order)."""
    ob = d.obligation
    return (d.send_from, ob.not_after, ob.rule, ob.subject, ob.customer)


def _cancellations(period: Period, planned: list[tuple[datetime, Draft]]) -> list[tuple[datetime, Draft]]:
    """The engine's withdrawal of a cancelled maintenance, to each enterprise customer told of it before."""
    out: list[tuple[datetime, Draft]] = []
    covers = period.policy.covers
    for (kind, subject), h in sorted(period.histories.items()):
        if kind != "maintenance" or h.cancelled_at is None:
            continue
        told = {
            d.customer
            for when, d in planned
            if (d.subject_kind, d.subject) == (kind, subject) and d.kind in ANNOUNCING and when < h.cancelled_at
        }
        pos = period.pos_at(h.cancelled_at)
        pairs = [
            (subject, c) for c in sorted(told) if (attrs := period.customer_at(c, pos)) is not None and covers(attrs)
        ]
        out.extend((h.cancelled_at, d) for d in cancellation_drafts(period, pairs))
    return out


def engine_events(lifecycle: Sequence[Event], policy: Policy, until: datetime) -> list[dict[str, object]]:
    """communication.sent and ticket.opened events for every send, in time order."""
    out: list[dict[str, object]] = []
    for when, draft in sends(evaluate_period(lifecycle, policy, until)):
        # as the engine records them; the ticket a minute later
        out.extend(
            recorded_events(draft, f"t-{draft.communication}", when, subject_line(draft), when + timedelta(minutes=1))
        )
    return out
