"""Re-evaluation after appends (the engine's cache: open subjects judged again relationally) against
its model: a fresh evaluation of the same log as of the same instant, after every step.

Generated lifecycles are small and seldom leave an obligation pending until its deadline: the
sample quarter, recorded in drawn pieces, does (and tests/test_engine_perf.py steps it through
every deadline and timer)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import event, given, note
from hypothesis import strategies as st
from strategies import Lifecycle, instant, lifecycles, scaled, time_ordered

from forewarn.engine.cache import EngineView, EvaluationCache
from forewarn.engine.planner import PlanBasis, cancellation_drafts, drafts_for
from forewarn.events import parse_lines
from forewarn.lifecycle.fold import LIFECYCLE_TYPES
from forewarn.lifecycle.rules import alarm_dues, timers_of
from forewarn.log.store import EventStore
from forewarn.policy.loader import load_policy
from forewarn.synth.batch import engine_events
from forewarn.synth.mutate import ALL_MUTATIONS, seed_violations

POLICY = load_policy()


def a_log(life: Lifecycle, data: st.DataObject) -> list[dict[str, object]]:
    """The lifecycle with the engine's communications, some dropped or changed (findings of many rules)."""
    log = time_ordered([*life.events, *engine_events(life.parsed(), POLICY, life.as_of)])
    names = data.draw(st.lists(st.sampled_from(sorted(ALL_MUTATIONS)), max_size=4, unique=True), label="mutations")
    if names:
        log, _ = seed_violations(log, data.draw(st.integers(0, 2**16), label="seed"), names=names)
    # and some never sent: obligations stay pending until their deadline passes
    unsent = data.draw(st.sampled_from([0, 2, 1]), label="every n-th communication never sent (0: none)")
    if unsent:
        comms = [e["communication"] for e in log if e["type"] == "communication.sent"][::unsent]
        log = [e for e in log if e.get("communication") not in comms or e["type"] == "reply.received"]
    return log


def assert_same(view: EngineView, basis: PlanBasis, store: EventStore) -> None:
    """Everything a plan or a draft reads is a fresh evaluation's of the log as it stands."""
    fresh_view, expected = EvaluationCache(store, POLICY).get(view.as_of)
    assert view.last_pos == fresh_view.last_pos
    assert basis.entries == expected.entries
    assert list(basis.by_subject) == list(expected.by_subject)
    plan = basis.at(view.as_of)
    assert plan == expected.at(view.as_of)
    # (a basis kept by the cache was made as of an earlier instant: its snapshot says so)
    assert basis.snapshot(1, view.as_of)._replace(as_of_us=0) == expected.snapshot(1, view.as_of)._replace(as_of_us=0)
    assert drafts_for(view, plan.due) == drafts_for(fresh_view, plan.due)
    assert cancellation_drafts(view, plan.cancellations) == cancellation_drafts(fresh_view, plan.cancellations)
    for key in basis.by_subject:
        assert view.history(*key) == fresh_view.history(*key)  # alarm timers (overrun moments) included


def changes_after(basis: PlanBasis, view: EngineView, t: datetime) -> list[datetime]:
    """Instants after `t` at which, with nothing appended, the plan changes (or is about to):
    pending deadlines and alarm timers, each also one microsecond before."""
    minutes = [timer.minutes for timer in timers_of(POLICY)]
    points = {d.obligation.not_after for d in basis.entries if d.outcome.status == "pending"}
    points |= {due for key in basis.by_subject for due in alarm_dues(view.history(*key), minutes)}  # type: ignore[arg-type]
    tick = timedelta(microseconds=1)
    return sorted(p for p in points | {p - tick for p in points} if p > t)


@scaled(ci=6, thorough=2_000)
@given(lifecycles(True, max_maintenances=3, max_incidents=2) | lifecycles(max_maintenances=3), st.data())
def test_the_engine_evaluation_after_every_append_is_a_fresh_one(life: Lifecycle, data: st.DataObject) -> None:
    """Events arrive a few at a time (some late, with an earlier `at`) while the clock moves, mostly
    forward; after each step the engine's evaluation (kept, re-evaluated in part, or made afresh)
    and its plan are those of a fresh evaluation of the log as it stands."""
    arrive_and_compare([json.dumps(e) for e in a_log(life, data)], life.as_of, data, (1, 1, 2, 3, 0))


QUARTER = Path(__file__).resolve().parents[1] / "forewarn" / "samples" / "quarter.jsonl"


@pytest.mark.slow
@scaled(ci=2, thorough=100)
@given(st.data())
def test_the_same_through_a_realistic_quarter(data: st.DataObject) -> None:
    """The same for the sample quarter (many subjects and customers, obligations pending until their
    deadlines, overrun timers), arriving in larger pieces."""
    lines = QUARTER.read_text().splitlines()
    end = max(instant(json.loads(line)["at"]) for line in lines) + timedelta(days=30)
    arrive_and_compare(lines, end, data, (5, 13, 40, 0), whole_first=False)


def arrive_and_compare(
    lines: list[str], end: datetime, data: st.DataObject, pieces: tuple[int, ...], whole_first: bool = True
) -> None:
    """Record the log's events in drawn pieces (the first choice, to which Hypothesis shrinks: all that
    is left, unless not `whole_first`), move the clock, and after every step compare the engine's
    evaluation and plan with a fresh evaluation (assert_same)."""
    parsed, errors = parse_lines(lines, "log.jsonl")
    assert not errors, errors
    parsed.sort(key=lambda s: s.event.at)
    first: dict[tuple[str, str], str] = {}  # a subject's first event: a valid log records nothing of it before
    for s in parsed:
        if s.event.type in LIFECYCLE_TYPES:
            kind = s.event.type.split(".", 1)[0]
            first.setdefault((kind, getattr(s.event, kind)), s.event.id)
    defining_ids = set(first.values())
    store = EventStore.memory()
    cache = EvaluationCache(store, POLICY)
    pending = list(parsed)
    held: list = []
    now = parsed[0].event.at - timedelta(days=1)
    previous: tuple[PlanBasis, EngineView] | None = None
    while pending or held:
        k = data.draw(st.sampled_from([len(pending), *pieces] if whole_first else pieces), label="events arriving")
        arriving, pending = pending[:k], pending[k:]
        late = [s for s in held if not pending or not data.draw(st.booleans(), label="a held event waits")]
        held = [s for s in held if s not in late]
        if (
            arriving
            and arriving[-1].event.id not in defining_ids
            and data.draw(st.integers(0, 9), label="hold one back") == 9
        ):
            held.append(arriving.pop())  # recorded later than events after it
        if arriving or late:
            store.append([*late, *arriving])
        last = max((s.event.at for s in arriving), default=now)
        steps = ["forward", "at the last event", "to a deadline or timer", "back", "far ahead"]
        step = data.draw(st.sampled_from(steps), label="clock")
        changes = changes_after(*previous, max(now, last)) if previous is not None else []
        if step == "to a deadline or timer" and changes:
            now = data.draw(st.sampled_from(changes[:4]), label="to")
        elif step in ("forward", "to a deadline or timer"):
            now = max(now, last) + timedelta(minutes=data.draw(st.integers(0, 3 * 24 * 60), label="minutes"))
        elif step == "at the last event":
            now = max(now, last)
        elif step == "back":
            now = now - timedelta(hours=data.draw(st.integers(1, 48), label="hours back"))
        else:
            now = end
        before = (cache.hits, cache.misses)
        view, basis = cache.get(now)
        previous = (basis, view)
        note(f"step: {len(arriving)} arriving, {len(late)} late, clock {step} to {now:%Y-%m-%d %H:%M}")
        assert_same(view, basis, store)
        event("kept" if cache.hits > before[0] else "judged again")
    store.close()


def test_a_notice_recorded_after_the_cancellation_is_still_withdrawn() -> None:
    """A plan built on the one before keeps each cancelled maintenance's told customers only while
    nothing about it changed: a notice recorded later adds its customer."""
    events = [
        {"id": "c1", "type": "customer.upserted", "at": "2026-03-01T00:00:00Z", "customer": "acme", "name": "Acme",
         "plan": "enterprise", "timezone": "UTC", "contacts": ["ops@acme.example"]},
        {"id": "c2", "type": "customer.upserted", "at": "2026-03-01T00:00:00Z", "customer": "bolt", "name": "Bolt",
         "plan": "enterprise", "timezone": "UTC", "contacts": ["ops@bolt.example"]},
        {"id": "m1", "type": "maintenance.scheduled", "at": "2026-03-02T09:00:00Z", "maintenance": "mx-1",
         "title": "Upgrade", "start": "2026-03-12T08:00:00Z", "end": "2026-03-12T10:00:00Z", "customers": "all",
         "impact": "interruption", "impact_summary": "Logins unavailable"},
        {"id": "n1", "type": "communication.sent", "at": "2026-03-02T09:05:00Z", "communication": "n1",
         "customer": "acme", "to": ["ops@acme.example"], "from": "enterprise-support@example.com",
         "kind": "advance_notice", "maintenance": "mx-1", "subject": "Upgrade"},
        {"id": "x1", "type": "maintenance.cancelled", "at": "2026-03-03T09:00:00Z", "maintenance": "mx-1"},
    ]
    late = {**events[3], "id": "n2", "communication": "n2", "customer": "bolt", "to": ["ops@bolt.example"],
            "at": "2026-03-03T09:30:00Z"}  # sent before the cancellation was known, recorded after it
    store = EventStore.memory()
    cache = EvaluationCache(store, POLICY)
    parsed, errors = parse_lines([json.dumps(e) for e in events], "log.jsonl")
    assert not errors
    store.append(parsed)
    t0 = datetime.fromisoformat("2026-03-03T09:10:00+00:00")
    assert cache.get(t0)[1].cancellations == [("mx-1", "acme")]
    parsed, errors = parse_lines([json.dumps(late)], "late.jsonl")
    assert not errors
    store.append(parsed)
    t1 = t0 + timedelta(hours=1)
    view, basis = cache.get(t1)
    assert basis.cancellations == [("mx-1", "acme"), ("mx-1", "bolt")]
    assert_same(view, basis, store)
