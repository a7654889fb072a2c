"""`forewarn audit --compare-rules OLD_DIR`: the findings a policy edit adds and removes, in every format."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from forewarn.cli import main
from forewarn.policy.loader import default_rules_dir

RULES = default_rules_dir()
LOG = RULES / "fixtures" / "advance-notice" / "ok-exactly-at-deadline.jsonl"  # a notice exactly 1 business day ahead


@pytest.fixture(scope="module")
def two_days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped policy with advance notice at 2 business days (and the start reminder dropped)."""
    rules = tmp_path_factory.mktemp("policy") / "rules"
    shutil.copytree(RULES, rules, ignore=shutil.ignore_patterns("fixtures"))
    path = rules / "advance-notice.yaml"
    path.write_text(path.read_text().replace("    value: 1\n", "    value: 2\n", 1))
    return rules


def _audit(new: Path, old: Path, fmt: str) -> tuple[int, str, str]:
    run = CliRunner().invoke(
        main, ["audit", "--rules", str(new), "--compare-rules", str(old), "--events", str(LOG),
               "--as-of", "2026-03-12", "--format", fmt]
    )
    return run.exit_code, run.stdout, run.stderr


def test_json_has_the_added_and_removed_findings(two_days: Path) -> None:
    code, out, err = _audit(two_days, RULES, "json")
    assert code == 1, err
    comparison = json.loads(out)["comparison"]
    assert [(f["rule"], f["problem"], f["due"]) for f in comparison["added"]] == [
        ("advance-notice", "late", "2026-03-06T08:00:00Z")
    ]
    assert comparison["removed"] == []
    assert "1 finding(s) added, 0 removed" in err
    code, out, _err = _audit(RULES, two_days, "json")  # the edit reverted: the finding goes
    comparison = json.loads(out)["comparison"]
    assert comparison["added"] == [] and [f["problem"] for f in comparison["removed"]] == ["late"]


def test_the_same_policy_changes_nothing() -> None:
    _code, out, _err = _audit(RULES, RULES, "json")
    assert json.loads(out)["comparison"]["added"] == json.loads(out)["comparison"]["removed"] == []
    plain = CliRunner().invoke(main, ["audit", "--events", str(LOG), "--as-of", "2026-03-12",
                                                     "--format", "json"])
    assert "comparison" not in json.loads(plain.stdout)


@pytest.mark.parametrize("fmt", ["table", "markdown", "html", "junit"])
def test_every_text_format_has_a_section_of_its_own(two_days: Path, fmt: str) -> None:
    _code, out, _err = _audit(two_days, RULES, fmt)
    section = out[out.index("1 finding(s) added, 0 removed") :]
    assert "advance-notice" in section and "2026-03-06T08:00:00Z" in section and "sent 3d after its deadline" in section


def test_sarif_marks_baseline_states(two_days: Path) -> None:
    _code, out, _err = _audit(RULES, two_days, "sarif")
    run = json.loads(out)["runs"][0]
    states = sorted((r["ruleId"], r["properties"]["problem"], r["baselineState"]) for r in run["results"])
    assert ("advance-notice", "late", "absent") in states
    assert all(s in ("unchanged", "absent") for _r, _p, s in states)
    assert run["properties"]["comparison"]["removed"][0]["rule"] == "advance-notice"


def test_csv_has_a_change_column_and_the_removed_rows(two_days: Path) -> None:
    _code, out, _err = _audit(RULES, two_days, "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {(r["rule"], r["change"]) for r in rows} >= {("advance-notice", "removed")}
    assert {r["change"] for r in rows} <= {"removed", "unchanged", "added"}


def test_a_bad_old_policy_is_exit_2(tmp_path: Path) -> None:
    code, _out, err = _audit(RULES, tmp_path, "json")
    assert code == 2 and "no *.yaml rule files" in err


def test_junit_totals_count_the_policy_change_suite(two_days: Path) -> None:
    import xml.etree.ElementTree as ET

    _code, out, _err = _audit(two_days, RULES, "junit")
    root = ET.fromstring(out)
    suites = root.findall("testsuite")
    assert suites[-1].get("name") == "policy-change"
    assert int(root.get("tests")) == sum(int(s.get("tests")) for s in suites)
    assert int(root.get("failures")) == sum(int(s.get("failures")) for s in suites)
