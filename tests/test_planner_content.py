"""What the engine's messages state is what the policy's checks require of them (the notice-content rule)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from forewarn.engine.replay import MemoryDelivery
from forewarn.engine.runner import Engine
from forewarn.events import CommunicationSent, check_log, parse_lines
from forewarn.log.source import read_store
from forewarn.log.store import EventStore
from forewarn.policy.loader import default_rules_dir, load_policy
from forewarn.policy.model import Policy

A = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
EVENTS = [
    {"id": "c1", "type": "customer.upserted", "at": "2026-01-01T00:00:00Z", "customer": "acme", "name": "Acme",
     "plan": "enterprise", "timezone": "UTC", "contacts": ["ops@acme.example"]},
    {"id": "m1", "type": "maintenance.scheduled", "at": "2026-03-02T10:00:00Z", "maintenance": "mx-1",
     "title": "Database upgrade", "start": "2026-03-12T08:00:00Z", "end": "2026-03-12T10:00:00Z",
     "customers": ["acme"], "impact": "degraded", "impact_summary": "Slow searches"},
]


def _stated(policy: Policy) -> dict[str, object]:
    """The `states` of the advance notice the engine sends for EVENTS under `policy`."""
    store = EventStore.memory()
    try:
        parsed, errors = parse_lines([json.dumps(e) for e in EVENTS], "log.jsonl")
        assert not errors
        fresh, errors = check_log(parsed, store.known_entities(), rule_ids=policy.ids)
        assert not errors
        store.append(fresh)
        Engine(store, policy, MemoryDelivery()).run_once(A)
        sent = [e for e in read_store(store) if isinstance(e, CommunicationSent)]
    finally:
        store.close()
    assert [c.kind for c in sent] == ["advance_notice"]
    states = sent[0].states
    return states.model_dump(exclude_none=True) if states is not None else {}


def test_the_advance_notice_states_what_notice_content_requires(tmp_path: Path) -> None:
    assert set(_stated(load_policy())) == {"window_start", "window_end", "impact"}
    rules = tmp_path / "rules"
    shutil.copytree(default_rules_dir(), rules, ignore=shutil.ignore_patterns("fixtures"))
    path = rules / "notice-content.yaml"
    text = path.read_text()
    assert "    require: [states-window, states-impact]\n" in text
    narrower = text.replace("    require: [states-window, states-impact]\n", "    require: [states-window]\n")
    path.write_text("".join(line for line in narrower.splitlines(True) if "impact-missing:" not in line))
    assert set(_stated(load_policy(rules))) == {"window_start", "window_end"}
    path.write_text(text.replace("  - kinds: [advance_notice, emergency]\n", "  - kinds: [emergency]\n"))
    assert _stated(load_policy(rules)) == {}
