"""Every rule's fixtures: `ruleid-*` logs must trigger exactly the expected findings, `ok-*` none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forewarn.audit.findings import audit
from forewarn.log.source import load_files
from forewarn.policy.loader import default_rules_dir, load_policy

FIXTURES = default_rules_dir() / "fixtures"
CASES = sorted(FIXTURES.glob("*/*.jsonl"))
POLICY = load_policy()


def _expected(case: Path) -> dict:
    return json.loads(case.with_name(case.name.replace(".jsonl", ".expected.json")).read_text())


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.stem}" for c in CASES])
def test_fixture(case: Path) -> None:
    rule = case.parent.name
    expected = _expected(case)
    events = load_files([case], POLICY.ids)
    from forewarn.cli import parse_instant

    result = audit(events, POLICY, parse_instant(expected["as_of"], "as_of"))
    got = sorted((f.rule, f.problem, f.subject, f.customer) for f in result.findings if f.rule == rule)
    want = sorted((f["rule"], f["problem"], f["subject"], f["customer"]) for f in expected["findings"])
    assert got == want
    named = {(f["rule"], f["problem"], f["subject"], f["customer"]): f["communication"]
             for f in expected["findings"] if "communication" in f}  # the communication, where the fixture names it
    assert {(f.rule, f.problem, f.subject, f.customer): f.communication
            for f in result.findings if (f.rule, f.problem, f.subject, f.customer) in named} == named
    if case.stem.startswith("ok-"):
        assert want == [], "an ok- fixture expects no finding of its rule"
    else:
        assert case.stem.startswith("ruleid-") and want, "a ruleid- fixture expects findings"


def test_every_rule_has_fixtures_for_each_problem_and_an_ok_case() -> None:
    for rule in POLICY.rules:
        cases = sorted((FIXTURES / rule.id).glob("*.jsonl"))
        assert any(c.stem.startswith("ok-") for c in cases), f"{rule.id}: no ok- fixture"
        triggered = {f["problem"] for c in cases if c.stem.startswith("ruleid-") for f in _expected(c)["findings"]}
        assert triggered == set(rule.spec.problems), f"{rule.id}: fixtures cover {triggered}"
