"""The engine's memory between passes: the log parsed once, its evaluation kept, or redone in part after appends.

`forewarn run` plans pass after pass. A fresh plan reads and validates the
whole log and evaluates it, which grows with the log; between two passes
usually nothing changed but the clock.

- Events are read once: each refresh reads only the rows recorded since
  (the log is append-only; its high-water recording sequence says whether
  anything was appended, by this process or another one).
- The evaluation made at T0 is reused for a later T as long as
  (a) no event was appended since, (b) the policy is the same, and
  (c) T is before the *horizon* of T0: the first instant after T0 at which
  something the evaluation compares with its as-of could flip, that is the
  next event's `at` (events after the as-of are ignored), any pending obligation's
  deadline (pending until then, violated after) and any alarm timer of a
  maintenance (end in force + the alarm's minutes). Evaluation as of T then
  differs from the one as of T0 in its `as_of` only (for everything the plan
  and the drafts use: `violations` are kept as of T0 and are not used here).
  `tests/test_engine_perf.py` checks this against fresh evaluations after
  appends of every event type and at every such boundary instant.
- The plan's now-independent part (PlanBasis) is kept with the evaluation, and
  published in the log's database when asked to (engine.published), so that
  `forewarn plan` in another process can answer from it.

Anything else (new events, T at or past the horizon) is judged again from the cached
evaluation by forewarn.evaluate.incremental: only the subjects the new events or the
passing time can change, the rest kept as they are (and their plan entries with them,
engine.planner.PlanBasis). An earlier T, or an event recorded since that sorts among
the ones already judged, evaluates afresh.
"""

from __future__ import annotations

import dataclasses
import gc
from bisect import bisect_left, bisect_right
from datetime import UTC, datetime

from forewarn.engine import published
from forewarn.engine.planner import PlanBasis
from forewarn.evaluate.evaluation import Evaluation, evaluate
from forewarn.evaluate.incremental import reevaluate
from forewarn.evaluate.obligations import alarm_dues, timers_of
from forewarn.events import Event
from forewarn.events.parse import gc_paused
from forewarn.instants import epoch_us
from forewarn.log.source import stored_events
from forewarn.log.store import EventStore
from forewarn.policy.model import Policy

_FOREVER = datetime.max.replace(tzinfo=UTC)
_INSERT_MAX = 64  # late events inserted one by one; more are merged by sorting


class EvaluationCache:
    """Evaluations (and plan bases) of one log under one policy, reused while valid."""

    def __init__(
        self, store: EventStore, policy: Policy, freeze_gc: bool = False, publish_key: str | None = None
    ) -> None:
        self.store = store
        self.policy = policy
        self.freeze_gc = freeze_gc  # for a process that lives for the engine (`forewarn run`): see get()
        self.publish_key = publish_key
        """With a key (engine.published.plan_key of the rules `policy` was loaded from), every fresh
        evaluation is published in the log's database for `forewarn plan`."""
        self.hits = 0
        self.misses = 0
        self._seq = 0  # high-water recording sequence read so far
        self._keys: list[tuple[int, int]] = []  # (at_us, seq) of each event, in evaluation order
        self._events: list[Event] = []
        self._unchanged = 0  # how many leading events of _events the cached evaluation's log still begins with
        self._cached: tuple[tuple[int, str], Evaluation, PlanBasis, datetime] | None = None
        self._snapshot: published.Snapshot | None = None  # of the cached evaluation, once made

    def events(self) -> list[Event]:
        """Every event in the log, in evaluation order (`at`, then recording order)."""
        if self._seq == 0:  # the whole log, in evaluation order by its (at_us, seq) index
            sql = "SELECT at_us, seq, payload FROM events ORDER BY at_us, seq"
            rows = self.store.db.conn.execute(sql).fetchall()
        else:  # what was recorded since, by the primary key (not a walk of that whole index), then ordered
            sql = "SELECT at_us, seq, payload FROM events WHERE seq > ? ORDER BY seq"
            rows = sorted(self.store.db.conn.execute(sql, (self._seq,)).fetchall())
        if rows:
            keys = [(at_us, seq) for at_us, seq, _ in rows]
            events = stored_events(payload for _, _, payload in rows)
            if not self._keys or keys[0] > self._keys[-1]:  # the usual case: appended at the end
                self._keys.extend(keys)
                self._events.extend(events)
            else:  # something recorded with an earlier `at`: into its place
                self._unchanged = min(self._unchanged, bisect_left(self._keys, keys[0]))
                if len(keys) <= _INSERT_MAX:  # a few: insert each (a memmove, not a sort of the whole log)
                    for key, event in zip(keys, events, strict=True):
                        i = bisect_right(self._keys, key)
                        self._keys.insert(i, key)
                        self._events.insert(i, event)
                else:
                    merged = sorted(zip(self._keys + keys, self._events + events, strict=True), key=lambda p: p[0])
                    self._keys = [k for k, _ in merged]
                    self._events = [e for _, e in merged]
            self._seq = max(self._seq, max(seq for _, seq in keys))
        return self._events

    def get(self, as_of: datetime) -> tuple[Evaluation, PlanBasis]:
        """The evaluation as of `as_of` and its plan basis (reused when still valid)."""
        events = self.events()
        key = (self._seq, self.policy.digest)
        cached = self._cached
        if cached is not None:
            cached_key, evaluation, basis, horizon = cached
            if cached_key == key and evaluation.as_of <= as_of < horizon:
                self.hits += 1
                if as_of != evaluation.as_of:
                    evaluation = dataclasses.replace(evaluation, as_of=as_of)
                return evaluation, basis
        self.misses += 1
        with gc_paused():
            if cached is not None:  # (the same policy: this cache's) judge again what can differ
                evaluation = reevaluate(cached[1], events, self._unchanged, as_of)
                basis = PlanBasis(evaluation, cached[2])
            else:
                evaluation = evaluate(events, self.policy, as_of, checks=False)  # plans need no checks
                basis = PlanBasis(evaluation)
            self._unchanged = len(events)
            self._cached = (key, evaluation, basis, self._horizon(evaluation))
            self._snapshot = None
            if self.publish_key is not None:
                published.publish(self.store.db.conn, self.publish_key, self.snapshot())
            if self.freeze_gc:
                # The log's events and the evaluation live until the next miss: out of the cyclic GC's way,
                # or every full collection walks them again, slowing and unsettling the plan after an
                # append. Frozen while the collector is still off: the first young collection after it is
                # back on would walk every container just built (the index's and the outcomes' lists and
                # dicts, millions for a year's log). Objects freed by reference count
                # are freed all the same; only cyclic garbage alive right now would stay, hence a process
                # of its own (`run`).
                gc.freeze()
        return evaluation, basis

    def snapshot(self) -> published.Snapshot:
        """The last evaluation's plan basis in JSON-ready form, valid up to its horizon (engine.published)."""
        if self._cached is None:
            raise RuntimeError("nothing evaluated yet: call get() first")
        if self._snapshot is None:  # made once per evaluation (publishing and the caller share it)
            (seq, _digest), _evaluation, basis, horizon = self._cached
            self._snapshot = basis.snapshot(seq, horizon)
        return self._snapshot

    def _horizon(self, evaluation: Evaluation) -> datetime:
        """The first instant after the evaluation's as-of at which a fresh evaluation could differ."""
        t0 = evaluation.as_of
        horizon = _FOREVER
        i = bisect_right(self._keys, (epoch_us(t0), float("inf")))
        if i < len(self._events):
            horizon = self._events[i].at  # the next event (ignored until the as-of reaches it)
        for verdict in evaluation.verdicts.values():  # a pending obligation turns violated at its deadline
            deadline = verdict.pending_until
            if deadline is not None and deadline < horizon:
                horizon = deadline
        minutes = {timer.minutes for timer in timers_of(self.policy)}
        for (kind, _subject), history in evaluation.histories.items():
            if kind == "maintenance":
                for due in alarm_dues(history, minutes):
                    if t0 < due < horizon:
                        horizon = due
        return horizon
