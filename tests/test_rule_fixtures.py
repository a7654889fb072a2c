"""Every rule's fixtures, through `forewarn rules test`'s code path (forewarn.policy.tester), and the command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from forewarn.cli import main
from forewarn.policy.loader import default_rules_dir, load_policy
from forewarn.policy.tester import coverage_gaps, fixture_paths, report_lines, run_fixture

RULES = default_rules_dir()
CASES = fixture_paths(RULES)
POLICY = load_policy()


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.stem}" for c in CASES])
def test_fixture(case: Path) -> None:
    result = run_fixture(case, POLICY)
    assert result.passed, "\n".join(report_lines([result]))


def test_every_rule_has_fixtures_for_each_problem_and_an_ok_case() -> None:
    assert coverage_gaps(POLICY) == []


def _copy(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    return rules


def test_rules_test_passes_on_the_shipped_policy() -> None:
    run = CliRunner().invoke(main, ["rules", "test"])
    assert run.exit_code == 0, run.output
    assert f"{len(CASES)} of {len(CASES)} fixture(s) pass" in run.output
    assert "PASS  advance-notice/ruleid-late" in run.output
    as_json = CliRunner().invoke(main, ["rules", "test", "--format", "json"])
    report = json.loads(as_json.stdout)
    assert as_json.exit_code == 0 and report["failed"] == 0 and len(report["fixtures"]) == len(CASES)


def test_rules_test_shows_missing_and_extra_findings_and_exits_1(tmp_path: Path) -> None:
    rules = _copy(tmp_path)
    # The deadline moves a day earlier: a notice sent exactly at the old deadline becomes late.
    path = rules / "advance-notice.yaml"
    path.write_text(path.read_text().replace("    value: 1\n", "    value: 2\n", 1))
    # and one expectation names the wrong customer
    expected = rules / "fixtures" / "advance-notice" / "ruleid-missing.expected.json"
    text = expected.read_text()
    expected.write_text(text.replace('"customer": "acme"', '"customer": "nobody"', 1))
    run = CliRunner().invoke(main, ["rules", "test", str(rules)])
    assert run.exit_code == 1, run.output
    assert "FAIL  advance-notice/ok-exactly-at-deadline\n      extra:   advance-notice late subject=mx-1" in run.output
    assert "FAIL  advance-notice/ruleid-missing" in run.output
    assert "missing: advance-notice missing subject=mx-1 customer=nobody" in run.output
    assert "PASS  start-reminder/ruleid-late" in run.output


def test_rules_test_exits_2_on_a_bad_policy(tmp_path: Path) -> None:
    rules = _copy(tmp_path)
    path = rules / "start-reminder.yaml"
    path.write_text(path.read_text().replace("    impact: interruption", "    impcat: interruption"))
    run = CliRunner().invoke(main, ["rules", "test", str(rules)])
    assert run.exit_code == 2, run.output
    assert "start-reminder.yaml:" in run.output and "did you mean 'impact'?" in run.output


def test_a_fixture_of_no_rule_or_with_a_bad_log_fails(tmp_path: Path) -> None:
    rules = _copy(tmp_path)
    stray = rules / "fixtures" / "no-such-rule"
    stray.mkdir()
    (stray / "ok-x.jsonl").write_text("")
    bad = rules / "fixtures" / "advance-notice" / "ok-on-time.jsonl"
    bad.write_text(bad.read_text() + '{"id": "zz", "type": "nonsense", "at": "2026-03-01T00:00:00Z"}\n')
    run = CliRunner().invoke(main, ["rules", "test", str(rules)])
    assert run.exit_code == 1
    assert "no rule 'no-such-rule' in this policy" in run.output
    assert "ok-on-time.jsonl:" in run.output
