"""The engine's fast paths give exactly what the slow ones give: wire bytes, cached plans."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from bench_smtp import synthetic_drafts

from forewarn.engine.draft import Invitation
from forewarn.engine.render import POLICY, render, wire_bytes

SENT_AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _drafts() -> list:
    drafts = synthetic_drafts(24)
    base = drafts[0]
    start = datetime(2026, 3, 10, 8, tzinfo=UTC)
    drafts += [
        dataclasses.replace(base, customer_name="Zürich Ünïcode Bank ☃", subject_title="Mise à jour — base"),
        dataclasses.replace(base, subject_title="A rather long maintenance title " * 8),
        dataclasses.replace(base, customer_name="=?utf-8?q?injected?= name\r\nBcc: x@evil.example"),
        dataclasses.replace(base, states={**base.states, "impact": "line one\nline two\r\n.\nFrom here"}),
        dataclasses.replace(base, to=("a@x.example", "b@y.example", "a@x.example")),
        dataclasses.replace(
            base,
            kind="other",
            states={},
            context={"note": "cancelled"},
            invitation=Invitation("mx-9@forewarn", 3, "CANCEL", start, start + timedelta(hours=1), "X"),
        ),
        dataclasses.replace(base, kind="closing", states={}, invitation=None, context={"note": "x" * 1200}),
    ]
    return drafts


@pytest.mark.parametrize("i", range(len(_drafts())))
def test_wire_bytes_are_the_generators_bytes(i: int) -> None:
    msg = render(_drafts()[i], SENT_AT)
    assert wire_bytes(msg) == msg.as_bytes(policy=POLICY)


def test_wire_bytes_fold_header_objects_as_the_generator_does() -> None:
    """Found in review: a header set with msg[...] = is a str subclass that folds itself (comments kept)."""
    msg = EmailMessage(policy=POLICY)
    msg.set_payload("hello\r\n")
    msg["Content-Type"] = "text/plain"
    msg["To"] = "j@x.example (John)"
    msg["Cc"] = "John Doe<j@x.example>"
    assert wire_bytes(msg) == msg.as_bytes(policy=POLICY)


def test_wire_bytes_fall_back_for_other_shapes() -> None:
    msg = EmailMessage()
    msg["From"] = "a@x.example"
    msg.set_content("héllo\n")  # no explicit shape of ours: 8bit, policy default
    assert wire_bytes(msg) == msg.as_bytes(policy=POLICY)
    msg = render(_drafts()[0], SENT_AT)
    msg.preamble = "This is a multi-part message."
    assert wire_bytes(msg) == msg.as_bytes(policy=POLICY)
    msg = EmailMessage()
    msg["From"] = "a@x.example"
    msg.make_mixed()
    msg.attach(EmailMessage())
    assert wire_bytes(msg) == msg.as_bytes(policy=POLICY)


def test_open_many_is_open_for_each() -> None:
    import sqlite3

    from forewarn.engine.tickets import TicketStore

    drafts = _drafts()[:6]
    one, many = TicketStore(sqlite3.connect(":memory:")), TicketStore(sqlite3.connect(":memory:"))
    assert many.open_many(drafts[:2], SENT_AT) == [one.open(d, SENT_AT) for d in drafts[:2]]
    later = SENT_AT + timedelta(hours=1)  # opened once: the first time stays
    assert many.open_many(drafts, later) == [one.open(d, later) for d in drafts]
    assert many.all() == one.all()


# ---------------------------------------------------------------- cached plans

SAMPLES = Path(__file__).resolve().parents[1] / "forewarn" / "samples"


def _instants(events: list, policy) -> list[datetime]:
    """Every instant at which an evaluation of EVENTS can change, and 1 us before each."""
    from forewarn.lifecycle.rules import alarm_dues, timers_of
    from forewarn.relational.evaluation import evaluate_events
    from forewarn.relational.obligations import from_epoch_us

    final = evaluate_events(events, policy, events[-1].at + timedelta(days=30))
    try:
        rows = final.con.execute("SELECT opened_us, nb_us, na_us FROM obligations").fetchall()
        histories = dict(final.life.histories)
    finally:
        final.close()
    minutes = {t.minutes for t in timers_of(policy)}
    points = {e.at for e in events}
    for opened, nb, na in rows:
        not_after = from_epoch_us(na)
        points |= {not_after, from_epoch_us(max(opened, nb)), not_after - timedelta(minutes=10)}
    for (kind, _s), h in histories.items():
        if kind == "maintenance":
            points |= set(alarm_dues(h, minutes))
    tick = timedelta(microseconds=1)
    return sorted(points | {p - tick for p in points} | {events[-1].at + timedelta(days=30)})


OVERRUN = [  # a maintenance that overruns (the alarm timer fires), is extended, overruns again, completes
    {"id": "c1", "type": "customer.upserted", "at": "2026-01-01T00:00:00Z", "customer": "acme", "name": "Acme",
     "plan": "enterprise", "timezone": "Europe/Berlin", "country": "DE", "contacts": ["ops@acme.example"]},
    {"id": "m1", "type": "maintenance.scheduled", "at": "2026-03-02T10:00:00Z", "maintenance": "mx-1",
     "title": "Upgrade", "start": "2026-03-12T08:00:00Z", "end": "2026-03-12T10:00:00Z", "customers": "all",
     "impact": "interruption", "impact_summary": "Logins unavailable"},
    {"id": "s1", "type": "maintenance.started", "at": "2026-03-12T08:00:00Z", "maintenance": "mx-1"},
    {"id": "x1", "type": "maintenance.extended", "at": "2026-03-12T10:40:00Z", "maintenance": "mx-1",
     "reason": "Slow migration", "end": "2026-03-12T11:00:00Z"},
    {"id": "c2", "type": "customer.upserted", "at": "2026-03-12T10:50:00Z", "customer": "acme", "name": "Acme AG",
     "plan": "enterprise", "timezone": "Europe/Berlin", "country": "DE", "contacts": ["noc@acme.example"]},
    {"id": "k1", "type": "maintenance.completed", "at": "2026-03-12T12:00:00Z", "maintenance": "mx-1",
     "healthy": True},
]


def _appended_log(tmp_path: Path, source: str) -> Iterator[tuple[Any, datetime]]:
    """A log filled as time passes (at every instant an evaluation can change, and just before each), every
    event type appended, some late (recorded a few instants after their `at`); yields (store, t)."""
    import json

    from forewarn.events import parse_lines
    from forewarn.log.store import EventStore
    from forewarn.policy.loader import load_policy

    policy = load_policy()
    if source == "quarter":
        lines = (SAMPLES / "quarter.jsonl").read_text().splitlines()
    else:
        lines = [json.dumps(e) for e in OVERRUN]
    parsed, errors = parse_lines(lines, source)
    assert not errors
    parsed.sort(key=lambda s: s.event.at)
    late_types = ("communication.sent", "ticket.opened", "reply.received", "waiver.granted", "customer.upserted")
    held = {id(s) for i, s in enumerate(parsed) if s.event.type in late_types and i % 7 == 3}
    store = EventStore(tmp_path / "log.db")
    pending = list(parsed)
    late: list = []
    for t in _instants([s.event for s in parsed], policy):
        now_due = [s for s in pending if s.event.at <= t]
        if now_due:
            pending = [s for s in pending if s.event.at > t]
            on_time = [s for s in now_due if id(s) not in held]
            if late or on_time:  # late facts: recorded a few instants after their `at`
                store.append([*late, *on_time])
            late = [s for s in now_due if id(s) in held]
        yield store, t
    store.close()


SOURCES = [pytest.param("quarter", marks=pytest.mark.slow), "overrun"]
"""The quarter: every event type, hundreds of deadlines (a few minutes, deselected by default)."""


@pytest.mark.parametrize("source", SOURCES)
def test_cached_plans_equal_fresh_ones_as_events_arrive_and_time_passes(tmp_path: Path, source: str) -> None:
    """The run loop's plans (open subjects judged again after appends, the basis reused while only the clock
    moves) are exactly the fresh ones: at every event, deadline, send time and alarm timer and just
    before each, while every event type is appended (some late, with an earlier `at`)."""
    from forewarn.engine.cache import EvaluationCache
    from forewarn.engine.planner import cancellation_drafts, drafts_for
    from forewarn.policy.loader import load_policy

    policy = load_policy()
    cache = None
    types: set[str] = set()
    alarms = 0
    for store, t in _appended_log(tmp_path, source):
        cache = cache or EvaluationCache(store, policy)
        view, basis = cache.get(t)
        fresh_view, fresh_basis = EvaluationCache(store, policy).get(t)
        got, expected = basis.at(t), fresh_basis.at(t)
        assert got == expected, t
        assert drafts_for(view, got.due) == drafts_for(fresh_view, expected.due), t
        assert cancellation_drafts(view, got.cancellations) == cancellation_drafts(
            fresh_view, expected.cancellations
        ), t
        types |= {row[0] for row in store.db.conn.execute("SELECT DISTINCT type FROM events")}
        alarms += any(d.obligation.moment.type == "maintenance.overrun" for d in got.due + got.upcoming)
        alarms += any(a.problem == "overrun" for a in got.alerts)
    assert cache is not None
    if source == "quarter":
        assert len(types) >= 14  # every kind of lifecycle, communication, ticket, reply, waiver, customer event
        assert cache.hits > 100 and cache.misses > 50  # both paths were exercised
    else:
        assert alarms and cache.hits and cache.misses


def test_engine_plans_reuse_the_evaluation_until_something_is_appended(tmp_path: Path) -> None:
    from forewarn.engine.replay import MemoryDelivery
    from forewarn.engine.runner import Engine
    from forewarn.log.source import import_files
    from forewarn.log.store import EventStore
    from forewarn.policy.loader import load_policy

    policy = load_policy()
    store = EventStore(tmp_path / "log.db")
    import_files(store, [SAMPLES / "quarter-lifecycle.jsonl"], policy.ids)
    cached = Engine(store, policy, MemoryDelivery())
    fresh = Engine(store, policy, MemoryDelivery(), cache=False)
    start = datetime(2026, 1, 5, 9, tzinfo=UTC)
    for k in range(0, 600, 7):  # every 679 minutes over 40 days (a fresh evaluation each)
        t = start + timedelta(minutes=97 * k)
        assert cached.plan(t) == fresh.plan(t), t
        if k % 140 == 0:
            sent = cached.run_once(t).sent
            assert cached.plan(t) == fresh.plan(t), t
            assert fresh.run_once(t).sent == []  # what one sent, the other sees at once
            if sent:
                assert cached.cache.misses >= 2
    assert cached.cache.hits > cached.cache.misses
    store.close()


def test_plan_json_is_indented_utf8_json_as_the_audit_writes_it() -> None:
    import json

    from forewarn.engine.views import _json

    values = [
        {},
        {"a": [], "b": {}, "c": None, "d": True, "e": 1.5, "f": -3, "g": "é\u2028\"\\\n", "h": ["x", None]},
        {"due": [{"rule": "r", "to": ["a@b.example", "c@d.example"], "from": None}], "alerts": []},
    ]
    for value in values:
        assert _json(value) == json.dumps(value, indent=2, ensure_ascii=False) + "\n"
