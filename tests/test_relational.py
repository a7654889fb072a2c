"""The relational evaluation (forewarn.relational) gives every obligation the outcome the per-object one gives."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from forewarn.cli import main
from forewarn.evaluate.evaluation import evaluate
from forewarn.events import EVENT_ADAPTER
from forewarn.instants import epoch_us
from forewarn.log.source import load_files
from forewarn.policy.loader import load_policy
from forewarn.policy.model import Policy
from forewarn.relational.evaluation import OutcomeKey, evaluate_events, outcome_keys
from forewarn.synth.generate import synthesize
from forewarn.synth.scenario import Shape

ROOT = Path(__file__).resolve().parents[1]
POLICY = load_policy()
EXAMPLES = ROOT / "docs" / "examples" / "rules"
EXAMPLE_POLICY = load_policy(EXAMPLES)  # labels and customer terms, a scope file
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
CASES = [(POLICY, log, expected) for log, expected in LOGS] + [
    (EXAMPLE_POLICY, log, log.with_name(log.name.replace(".jsonl", ".expected.json")))
    for log in sorted((EXAMPLES / "fixtures").glob("*/*.jsonl"))
]
CASE_IDS = [f"{p.parent.name}/{p.stem}" for _policy, p, _e in CASES]


def _scoped(policy: Policy, scope: dict[str, object]) -> Policy:
    """`policy` with another scope (what a rules/_scope.yaml says)."""
    return dataclasses.replace(policy, scope=scope)


def _as_of(path: Path) -> datetime:
    return datetime.fromisoformat(json.loads(path.read_text())["as_of"].replace("Z", "+00:00"))


def _old(events: list, as_of: datetime, policy: Policy) -> list[OutcomeKey]:
    out = []
    for o in evaluate([e for e in events if e.at <= as_of], policy, as_of, checks=False).outcomes:
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


def _same(events: list, as_of: datetime, policy: Policy = POLICY) -> None:
    old = _old(events, as_of, policy)
    new = outcome_keys(evaluate_events(events, policy, as_of))
    assert sorted(new, key=repr) == sorted(old, key=repr)
    assert new == old  # and in the same (derivation) order


@pytest.mark.parametrize("policy,log,expected", CASES, ids=CASE_IDS)
def test_outcomes_match_the_object_evaluation(policy: Policy, log: Path, expected: Path) -> None:
    _same(load_files([log], policy.ids), _as_of(expected), policy)


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


def _same_violations(events: list, as_of: datetime, policy: Policy = POLICY) -> None:
    old = evaluate([e for e in events if e.at <= as_of], policy, as_of).violations
    new = evaluate_events(events, policy, as_of).violations()
    assert _violation_keys(new) == _violation_keys(old)


@pytest.mark.parametrize("policy,log,expected", CASES, ids=CASE_IDS)
def test_violations_match_the_object_evaluation(policy: Policy, log: Path, expected: Path) -> None:
    _same_violations(load_files([log], policy.ids), _as_of(expected), policy)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_violations_match_on_synthetic_quarters_with_seeded_violations(seed: int) -> None:
    synthetic = synthesize(POLICY, seed, Shape(), violations=2, waiver_share=0.3)
    events = sorted((EVENT_ADAPTER.validate_python(e) for e in synthetic.events), key=lambda e: e.at)
    _same_violations(events, synthetic.as_of)


@pytest.mark.parametrize(
    "scope",
    [
        {"customer.plan": ["business", "enterprise"]},
        {"customer.plan": "enterprise", "customer.country": ["US", "DE"]},
        {"customer.labels.tier": {"exists": False}},
    ],
    ids=["two-plans", "plan-and-countries", "no-tier-label"],
)
def test_a_scope_other_than_the_default_selects_the_same_customers(scope: dict[str, object]) -> None:
    synthetic = synthesize(POLICY, 3, Shape(), violations=2, waiver_share=0.3)
    events = sorted((EVENT_ADAPTER.validate_python(e) for e in synthetic.events), key=lambda e: e.at)
    policy = _scoped(POLICY, scope)
    _same(events, synthetic.as_of, policy)
    _same_violations(events, synthetic.as_of, policy)


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


@pytest.mark.parametrize("blank", ["\u2003", "\u00a0\n", "\x1c", " \u3000 "])
def test_a_stated_impact_of_unicode_white_space_is_missing_on_both_evaluations(tmp_path: Path, blank: str) -> None:
    """"Stated" means non-empty after Python's str.strip (every white space str.isspace admits), on both."""
    fixture = ROOT / "rules" / "fixtures" / "notice-content" / "ok-complete-notices.jsonl"
    log = tmp_path / "blank.jsonl"
    log.write_text(fixture.read_text().replace('"impact": "Search may be slow"', json.dumps({"impact": blank})[1:-1]))
    events = load_files([log], POLICY.ids)
    as_of = _as_of(fixture.with_name("ok-complete-notices.expected.json"))
    new = evaluate_events(events, POLICY, as_of).violations()
    assert "impact-missing" in {v.problem for v in new}
    _same_violations(events, as_of)


def _event_log(tmp_path: Path, events: list[dict]) -> Path:
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def _rules_with(tmp_path: Path, name: str, old: str, new: str) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    path = rules / f"{name}.yaml"
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    return rules


def _customer(cid: str, **labels: str) -> dict:
    return {"id": f"c-{cid}", "type": "customer.upserted", "at": "2026-01-01T00:00:00Z", "customer": cid,
            "name": cid, "plan": "enterprise", "contacts": [f"ops@{cid}.example"], "labels": labels}


def _notice(n: int, cid: str, at: str, sender: str = "enterprise-support@example.com") -> dict:
    return {"id": f"n-{n}", "type": "communication.sent", "at": at, "communication": f"n-{n}", "customer": cid,
            "to": [f"ops@{cid}.example"], "from": sender, "kind": "advance_notice", "subject": "s",
            "maintenance": "mx-1"}


def _both_audits(rules: Path, log: Path) -> None:
    """The evaluations agree on violations and outcomes, and the audit reports the object evaluation's findings."""
    policy = load_policy(rules)
    as_of = datetime(2026, 3, 20, tzinfo=UTC)
    events = load_files([log], policy.ids)
    _same(events, as_of, policy)
    _same_violations(events, as_of, policy)
    oracle = evaluate(events, policy, as_of).violations
    args = ["audit", "--events", str(log), "--rules", str(rules), "--as-of", "2026-03-20", "--format", "json"]
    audited = CliRunner().invoke(main, args)
    assert audited.exit_code == 1, audited.output
    found = json.loads(audited.stdout)["findings"]
    assert sorted((f["rule"], f["problem"], f["subject"], f["customer"]) for f in found) == sorted(
        (v.rule, v.problem, v.subject, v.customer) for v in oracle
    )


def test_a_checks_subject_labels_are_those_in_force_when_sent(tmp_path: Path) -> None:
    rules = _rules_with(tmp_path, "notice-content", "      notifiable: true\n",
                        "      notifiable: true\n      labels.service: api\n")
    scheduled = {"id": "s-mx-1", "type": "maintenance.scheduled", "at": "2026-03-02T10:00:00Z",
                 "maintenance": "mx-1", "title": "mx-1", "start": "2026-03-10T08:00:00Z",
                 "end": "2026-03-10T10:00:00Z", "customers": ["acme"], "impact": "degraded",
                 "impact_summary": "slow", "labels": {"service": "api"}}
    events = [_customer("acme"), scheduled, _notice(1, "acme", "2026-03-02T11:00:00Z"),
              {"id": "r-1", "type": "maintenance.rescheduled", "at": "2026-03-03T00:00:00Z", "maintenance": "mx-1",
               "start": "2026-03-10T08:00:00Z", "end": "2026-03-10T10:00:00Z", "labels": {"service": "web"}},
              _notice(2, "acme", "2026-03-03T11:00:00Z"),
              {"id": "r-2", "type": "maintenance.rescheduled", "at": "2026-03-04T00:00:00Z", "maintenance": "mx-1",
               "start": "2026-03-10T08:00:00Z", "end": "2026-03-10T10:00:00Z"},
              _notice(3, "acme", "2026-03-04T11:00:00Z")]
    log = _event_log(tmp_path, events)
    found = evaluate_events(load_files([log]), load_policy(rules), datetime(2026, 3, 20, tzinfo=UTC)).violations()
    assert sorted({v.subject for v in found if v.rule == "notice-content"}) == ["n-1"]
    _both_audits(rules, log)


def test_a_checks_customer_terms_select_its_findings_and_cases(tmp_path: Path) -> None:
    rules = _rules_with(tmp_path, "sender-address", "  - kinds: all\n",
                        "  - kinds: all\n    where:\n      customer.labels.tier: premium\n")
    scheduled = {"id": "s-mx-1", "type": "maintenance.scheduled", "at": "2026-03-02T10:00:00Z",
                 "maintenance": "mx-1", "title": "mx-1", "start": "2026-03-10T08:00:00Z",
                 "end": "2026-03-10T10:00:00Z", "customers": ["acme", "globex"], "impact": "degraded",
                 "impact_summary": "slow"}
    events = [_customer("acme", tier="premium"), _customer("globex", tier="standard"), scheduled,
              _notice(1, "acme", "2026-03-03T07:00:00Z", "someone@example.com"),
              _notice(2, "globex", "2026-03-03T07:00:00Z", "someone@example.com")]
    log = _event_log(tmp_path, events)
    found = evaluate_events(load_files([log]), load_policy(rules), datetime(2026, 3, 20, tzinfo=UTC)).violations()
    assert [v.customer for v in found if v.rule == "sender-address"] == ["acme"]
    _both_audits(rules, log)


def test_every_white_space_code_point_is_below_the_bound_the_blank_pattern_scans() -> None:
    import sys

    from forewarn.relational.checks import SPACES_BELOW

    assert [c for c in range(SPACES_BELOW, sys.maxunicode + 1) if chr(c).isspace()] == []
    assert chr(SPACES_BELOW - 1).isspace()  # the bound is tight: U+3000 is one
