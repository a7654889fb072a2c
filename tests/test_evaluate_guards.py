"""The evaluation guards durable_rules' defects: flat memory over thousands of subjects, loud errors."""

from __future__ import annotations

import resource
from datetime import UTC, datetime, timedelta

import pytest

from forewarn.events import EVENT_ADAPTER, Event
from forewarn.lifecycle.rete import ActionError
from forewarn.policy.loader import load_policy
from forewarn.relational import lifecycle
from forewarn.relational.evaluation import Relational, evaluate_events

POLICY = load_policy()
START = datetime(2026, 3, 2, tzinfo=UTC)


def _log(subjects: int) -> list[Event]:
    raw: list[dict] = [
        {"id": "c", "type": "customer.upserted", "at": "2026-01-01T00:00:00Z", "customer": "acme", "name": "Acme",
         "plan": "enterprise", "timezone": "Europe/Berlin", "country": "DE", "contacts": ["ops@acme.example"]},
    ]
    for i in range(subjects):
        at = START + timedelta(minutes=i)
        start = at + timedelta(days=10)
        raw.append({"id": f"m{i}", "type": "maintenance.scheduled", "at": at.isoformat(), "maintenance": f"mx-{i}",
                    "title": "t", "start": start.isoformat(), "end": (start + timedelta(hours=2)).isoformat(),
                    "customers": ["acme"], "impact": "interruption", "impact_summary": "slow"})
        raw.append({"id": f"e{i}", "type": "maintenance.extended", "at": (start + timedelta(hours=1)).isoformat(),
                    "maintenance": f"mx-{i}", "reason": "slow", "end": (start + timedelta(hours=3)).isoformat()})
        raw.append({"id": f"d{i}", "type": "maintenance.completed", "at": (start + timedelta(hours=2)).isoformat(),
                    "maintenance": f"mx-{i}", "healthy": True})
    events = [EVENT_ADAPTER.validate_python(e) for e in raw]
    return sorted(events, key=lambda e: e.at)


def _obligations(rel: Relational) -> int:
    try:
        return rel.con.execute("SELECT count(*) FROM obligations").fetchone()[0]
    finally:
        rel.close()


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def test_thousands_of_subjects_repeatedly_with_flat_memory() -> None:
    events = _log(2000)
    as_of = START + timedelta(days=20)
    # 3 window obligations (advance, reminder, closing) + 1 extension notice per subject
    first = _obligations(evaluate_events(events, POLICY, as_of))
    assert first == 2000 * 4
    baseline = _rss_mib()
    for _ in range(3):
        assert _obligations(evaluate_events(events, POLICY, as_of)) == first
    assert _rss_mib() - baseline < 40  # sessions and subject states are freed each time


def test_an_exception_inside_an_action_surfaces(monkeypatch: pytest.MonkeyPatch) -> None:
    real = lifecycle.compile_rules

    def exploding(policy: object, fired: list) -> list:  # same signature as compile_rules
        rules = real(policy, fired)

        def boom(_sid: str, _fact: object) -> None:
            raise RuntimeError("a bug in an action")

        return [type(r)(r.name, r.where, boom) for r in rules]

    monkeypatch.setattr(lifecycle, "compile_rules", exploding)
    with pytest.raises(ActionError) as info:
        evaluate_events(_log(2), POLICY, START + timedelta(days=20))
    assert isinstance(info.value.__cause__, RuntimeError)


def test_violations_without_checks_only_omit_check_violations() -> None:
    from pathlib import Path

    from forewarn.log.source import load_files

    quarter = Path(__file__).parents[1] / "forewarn" / "samples" / "quarter.jsonl"
    events = load_files([quarter], POLICY.ids)
    as_of = max(e.at for e in events) + timedelta(days=7)
    rel = evaluate_events(events, POLICY, as_of)
    try:
        full, planning = rel.violations(), rel.violations(checks=False)
    finally:
        rel.close()
    with_checks = {r.id for r in POLICY.rules if r.spec.checks}
    left_out = [v for v in full if v not in planning]
    assert all(v in full for v in planning)
    assert left_out and all(v.rule in with_checks for v in left_out)  # the quarter has check violations
