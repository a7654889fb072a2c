"""A realistic quarter, made by the engine with violations seeded: the audit finds exactly those, no more."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from forewarn.audit.findings import audit
from forewarn.engine.replay import MemoryDelivery, replay
from forewarn.engine.runner import Engine
from forewarn.events import EVENT_ADAPTER
from forewarn.log.source import import_files, load_files, read_store
from forewarn.log.store import EventStore
from forewarn.policy.loader import load_policy
from forewarn.synth.generate import synthesize
from forewarn.synth.mutate import MUTATIONS
from forewarn.synth.scenario import Shape, scenario

SAMPLES = Path(__file__).resolve().parents[1] / "forewarn" / "samples"
POLICY = load_policy()


def _as_of(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_the_shipped_quarter_audits_to_exactly_its_seeded_findings() -> None:
    expected = json.loads((SAMPLES / "quarter.expected.json").read_text())
    events = load_files([SAMPLES / "quarter.jsonl"], POLICY.ids)
    kinds = {e.type for e in events}
    assert {
        "maintenance.rescheduled",
        "maintenance.cancelled",
        "maintenance.extended",
        "incident.declared",
        "release.scheduled",
        "waiver.granted",
        "reply.received",
        "maintenance.healthy",
    } <= kinds
    assert any(getattr(e, "emergency", False) for e in events)
    result = audit(events, POLICY, _as_of(expected["as_of"]))
    got = sorted((f.rule, f.problem, f.subject, f.customer, f.status) for f in result.findings)
    want = sorted((f["rule"], f["problem"], f["subject"], f["customer"], f["status"]) for f in expected["findings"])
    assert got == want
    assert {f["rule"] for f in expected["findings"]} >= {
        "advance-notice",
        "start-reminder",
        "closing-notice",
        "extension-notice",
        "emergency-notice",
        "incident-notice",
        "release-notice",
        "notice-content",
        "sender-address",
        "ticket-opened",
        "reply-routing",
    }
    assert any(f["status"] == "waived" for f in expected["findings"])


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_every_seeded_violation_is_found_by_the_right_rule(seed: int) -> None:
    synthetic = synthesize(POLICY, seed, Shape(), violations=1, waiver_share=0.3)
    result = audit([EVENT_ADAPTER.validate_python(e) for e in synthetic.events], POLICY, synthetic.as_of)
    got = sorted((f.rule, f.problem, f.subject, f.customer, f.status) for f in result.findings)
    assert got == sorted(e.key() for e in synthetic.expected)
    assert len({(e.rule, e.problem) for e in synthetic.expected}) >= len(MUTATIONS) - 3


@pytest.mark.parametrize("seed", [1, 2])
def test_closed_loop_the_engine_stepped_through_a_quarter_audits_clean(tmp_path: Path, seed: int) -> None:
    """Lifecycle events only; the real engine (render, outbox, tickets, record) sends everything."""
    shape = Shape()
    life = tmp_path / "life.jsonl"
    life.write_text("".join(json.dumps(e) + "\n" for e in scenario(seed, shape)))
    store = EventStore(tmp_path / "log.db")
    import_files(store, [life], POLICY.ids)
    delivery = MemoryDelivery()
    engine = Engine(store, POLICY, delivery)
    end = shape.start + timedelta(days=shape.days + 10)
    sent = replay(engine, shape.start - timedelta(days=31), end)
    assert sent == len(delivery.messages) > 50
    result = audit(read_store(store), POLICY, end)
    assert result.findings == []
    assert result.summary.met == result.summary.obligations > 0
    # every message went out with the Message-ID and sender recorded in the log
    recorded = {e.message_id: e for e in read_store(store) if e.type == "communication.sent"}
    assert {m["Message-ID"] for m in delivery.messages} == set(recorded)
