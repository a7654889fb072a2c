"""Re-evaluation after an append: only the subjects new events or the passing time can change are judged again.

An evaluation is the sum of its subjects' verdicts (forewarn.evaluate.evaluation.Verdict), and a
subject's verdict depends on nothing but its own lifecycle events, the communications about it,
the customers' attributes at its moments' positions, and the as-of. So when the log grows at its
end (the events judged before keep their positions) and the as-of moves forward from T0 to T1,
a subject's verdict can differ only if

- one of the new events (recorded since, or with an `at` in (T0, T1]) is a lifecycle event of
  it or a communication about it;
- one of its obligations was pending at T0 with a deadline by T1 (it is now violated); or
- one of its alarm timers is due by T1, after T0 or at or after the first new event (a timer
  fires at the position of the last event before it: a new event before it moves it).

A new customer version sits at a position after every moment judged before, so it changes no
earlier lookup. Every other subject keeps its verdict (the same object); the ones above are
judged again by the one evaluation path (derive + judge) with the rest. `tests/test_incremental.py`
checks the result against fresh evaluations, for generated lifecycles appended in random
pieces while the as-of moves.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from datetime import datetime

from forewarn.evaluate.evaluation import Evaluation, assemble, evaluate, judge
from forewarn.evaluate.index import LIFECYCLE_TYPES, Sent, extend_index
from forewarn.evaluate.lifecycle import SubjectHistory
from forewarn.evaluate.matching import more_communications
from forewarn.evaluate.obligations import alarm_dues, derive, timers_of
from forewarn.events import Event
from forewarn.events.parse import gc_paused

Key = tuple[str, str]


def reevaluate(previous: Evaluation, events: Sequence[Event], unchanged: int, as_of: datetime) -> Evaluation:
    """`evaluate(events, previous.policy, as_of, checks=False)`, built on `previous`.

    `events` is the whole log in evaluation order; its first `unchanged` events are known to be
    the ones `previous` saw, in the same order (an append-only log: whatever was recorded since
    sorts after them, or it does not and `unchanged` says where the first one went). When the
    events `previous` judged are not all among those, or `as_of` is before its as-of, the
    evaluation is made afresh."""
    policy = previous.policy
    judged = len(previous.index.ats)
    if as_of < previous.as_of or unchanged < judged:
        return evaluate(events, policy, as_of, checks=False)
    end = bisect_right(events, as_of, lo=judged, key=lambda e: e.at)  # evaluation order sorts by `at` first
    new = events[judged:end]
    with gc_paused():
        index = extend_index(previous.index, new)
        sent = index.sent[len(previous.index.sent) :]
        comms = more_communications(previous.comms, sent) if sent else previous.comms
        dirty = _dirty(previous, new, sent, as_of)
        derivation = derive(index, policy, as_of, dirty)
        verdicts = judge(derivation, index, policy, comms, as_of)
        histories: dict[Key, SubjectHistory] = {}
        for key in index.subjects:  # the order of a fresh evaluation: the subjects' first events
            if key in dirty:
                if key in derivation.histories:
                    histories[key] = derivation.histories[key]
            elif key in previous.histories:
                histories[key] = previous.histories[key]
                verdicts[key] = previous.verdicts[key]
        ordered = {key: verdicts[key] for key in histories}
        return assemble(as_of, policy, index, histories, comms, ordered, None)


def _dirty(previous: Evaluation, new: Sequence[Event], sent: Sequence[Sent], as_of: datetime) -> set[Key]:
    """The subjects whose verdict may differ from `previous`'s once `new` is judged as of `as_of`."""
    dirty: set[Key] = set()
    for event in new:
        if event.type in LIFECYCLE_TYPES:
            kind = event.type.split(".", 1)[0]
            dirty.add((kind, getattr(event, kind)))
    dirty.update(s.subject for s in sent if s.subject is not None)
    for key, verdict in previous.verdicts.items():  # a deadline passed: pending -> violated
        if verdict.pending_until is not None and verdict.pending_until <= as_of:
            dirty.add(key)
    minutes = {timer.minutes for timer in timers_of(previous.policy)}
    t0 = previous.as_of
    first_new = new[0].at if new else None
    for key, history in previous.histories.items():
        candidate = key[0] == "maintenance" and key not in dirty
        if candidate and any(_moves(due, t0, first_new, as_of) for due in alarm_dues(history, minutes)):
            dirty.add(key)
    return dirty


def _moves(due: datetime, t0: datetime, first_new: datetime | None, as_of: datetime) -> bool:
    """Whether a timer due at `due` fires now and did not before, or fires at a position a new event moves."""
    return due <= as_of and (due > t0 or (first_new is not None and due >= first_new))
