"""The relational evaluation (forewarn.relational) gives every obligation the outcome the per-object one gives."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from forewarn.evaluate.evaluation import evaluate
from forewarn.events import EVENT_ADAPTER
from forewarn.instants import epoch_us
from forewarn.log.source import load_files
from forewarn.policy.loader import load_policy
from forewarn.relational.evaluation import OutcomeKey, evaluate_events, outcome_keys
from forewarn.synth.generate import synthesize
from forewarn.synth.scenario import Shape

ROOT = Path(__file__).resolve().parents[1]
POLICY = load_policy()
LOGS = [
    (ROOT / "forewarn" / "samples" / "basic.jsonl", ROOT / "forewarn" / "samples" / "basic.expected.json"),
    (ROOT / "forewarn" / "samples" / "quarter.jsonl", ROOT / "forewarn" / "samples" / "quarter.expected.json"),
    (
        ROOT / "forewarn" / "samples" / "quarter-lifecycle.jsonl",
        ROOT / "forewarn" / "samples" / "quarter.expected.json",
    ),
    *(
        (log, log.with_name(log.name.replace(".jsonl", ".expected.json")))
        for log in sorted((ROOT / "rules" / "fixtures").glob("*/*.jsonl"))
    ),
]


def _as_of(path: Path) -> datetime:
    return datetime.fromisoformat(json.loads(path.read_text())["as_of"].replace("Z", "+00:00"))


def _old(events: list, as_of: datetime) -> list[OutcomeKey]:
    out = []
    for o in evaluate([e for e in events if e.at <= as_of], POLICY, as_of, checks=False).outcomes:
        ob = o.obligation
        out.append(
            (
                ob.rule,
                ob.subject_kind,
                ob.subject,
                ob.customer,
                epoch_us(ob.opened),
                epoch_us(ob.not_before),
                epoch_us(ob.not_after),
                o.status,
                o.problem,
                o.matched or ((o.communication,) if o.communication else ()),
            )
        )
    return out


def _same(events: list, as_of: datetime) -> None:
    old = _old(events, as_of)
    new = outcome_keys(evaluate_events(events, POLICY, as_of))
    assert sorted(new, key=repr) == sorted(old, key=repr)
    assert new == old  # and in the same (derivation) order


@pytest.mark.parametrize("log,expected", LOGS, ids=[f"{p.parent.name}/{p.stem}" for p, _ in LOGS])
def test_outcomes_match_the_object_evaluation(log: Path, expected: Path) -> None:
    _same(load_files([log], POLICY.ids), _as_of(expected))


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_outcomes_match_on_synthetic_quarters_with_seeded_violations(seed: int) -> None:
    synthetic = synthesize(POLICY, seed, Shape(), violations=2, waiver_share=0.3)
    events = sorted((EVENT_ADAPTER.validate_python(e) for e in synthetic.events), key=lambda e: e.at)
    _same(events, synthetic.as_of)


def _violation_keys(violations: list) -> list[tuple]:
    return [
        (v.rule, v.problem, v.subject, v.customer, v.communication, v.due, v.sent, v.fields, v.evidence)
        for v in violations
    ]


def _same_violations(events: list, as_of: datetime) -> None:
    old = evaluate([e for e in events if e.at <= as_of], POLICY, as_of).violations
    new = evaluate_events(events, POLICY, as_of).violations()
    assert _violation_keys(new) == _violation_keys(old)


@pytest.mark.parametrize("log,expected", LOGS, ids=[f"{p.parent.name}/{p.stem}" for p, _ in LOGS])
def test_violations_match_the_object_evaluation(log: Path, expected: Path) -> None:
    _same_violations(load_files([log], POLICY.ids), _as_of(expected))


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_violations_match_on_synthetic_quarters_with_seeded_violations(seed: int) -> None:
    synthetic = synthesize(POLICY, seed, Shape(), violations=2, waiver_share=0.3)
    events = sorted((EVENT_ADAPTER.validate_python(e) for e in synthetic.events), key=lambda e: e.at)
    _same_violations(events, synthetic.as_of)


def test_rules_show_sql_prints_the_queries_with_the_rules_values_bound_not_pasted() -> None:
    from click.testing import CliRunner

    from forewarn.cli import main

    for rule in POLICY.rules:
        result = CliRunner().invoke(main, ["rules", "show", rule.id, "--sql"])
        assert result.exit_code == 0, result.output
        body = [line for line in result.output.splitlines() if not line.startswith("-- ")]
        text = "\n".join(body)
        assert "SELECT" in text
        assert rule.id not in text  # the rule's id, kinds and parameter values are bound as $parameters
        for value in rule.params().values():
            assert str(value) not in text or isinstance(value, int)
        if rule.spec.obligation is not None:
            assert "-- obligations" in result.output and "$nb_days" in text
    sender = CliRunner().invoke(main, ["rules", "show", "sender-address", "--sql"]).output
    assert sender.startswith("-- check: sender\n-- parameters: ")
    assert '"support": "enterprise-support@example.com"' in sender.splitlines()[1]


def test_an_audit_leaves_no_spill_files_behind(tmp_path: Path) -> None:
    """DuckDB spills beyond its memory cap to a directory of ours, removed at exit (not ./.tmp)."""
    import os
    import subprocess
    import sys

    spill_root = tmp_path / "tmp"
    spill_root.mkdir()
    env = {**os.environ, "TMPDIR": str(spill_root), "FOREWARN_DUCKDB_MEMORY": "32MB"}
    sample = ROOT / "forewarn" / "samples" / "quarter.jsonl"
    args = [
        "-m",
        "forewarn.cli",
        "audit",
        "--events",
        str(sample),
        "--as-of",
        "2026-04-15T00:00:00Z",
        "--format",
        "json",
    ]
    done = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["summary"]["findings"] == 15
    assert not (tmp_path / ".tmp").exists()
    assert list(spill_root.iterdir()) == []
