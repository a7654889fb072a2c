"""`--format sarif`: valid SARIF 2.1.0 (official schema), rules per policy rule, waivers suppressed."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from jsonschema import FormatChecker
from jsonschema.validators import validator_for
from test_report_support import hostile_events, quarter_result, result_of

from forewarn.audit.formats import sarif

SCHEMA = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"


@cache
def _validator():
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=FormatChecker())


def _errors(log: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator().iter_errors(log)]


def test_the_quarter_is_valid_sarif_2_1_0() -> None:
    log = json.loads(sarif.render(quarter_result()))
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-schema-2.1.0.json")
    assert _errors(log) == []


def test_markup_in_ids_stays_valid(tmp_path: Path) -> None:
    assert _errors(json.loads(sarif.render(result_of(hostile_events(), tmp_path)))) == []


def test_the_schema_rejects_a_broken_log() -> None:
    log = json.loads(sarif.render(quarter_result()))
    log["runs"][0]["results"][0]["level"] = "fatal"
    del log["runs"][0]["tool"]
    assert len(_errors(log)) >= 2


def test_one_rule_per_policy_rule_with_message_severity_and_clause() -> None:
    result = quarter_result()
    rules = json.loads(sarif.render(result))["runs"][0]["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == result.policy.ids
    for r, rule in zip(rules, result.policy.rules, strict=True):
        assert r["fullDescription"]["text"] == rule.why()
        assert rule.spec.metadata.clause in r["help"]["text"]
        assert r["properties"]["severity"] == rule.severity
        assert r["defaultConfiguration"]["level"] == sarif.LEVEL[rule.severity]


def test_one_result_per_finding_with_subject_and_customer_locations() -> None:
    result = quarter_result()
    results = json.loads(sarif.render(result))["runs"][0]["results"]
    assert len(results) == len(result.findings)
    for res, f in zip(results, result.findings, strict=True):
        assert res["ruleId"] == f.rule and res["message"]["text"] == f.message
        names = [loc["name"] for loc in res["locations"][0]["logicalLocations"]]
        assert names == [f.subject, f.customer]
    kinds = {res["locations"][0]["logicalLocations"][0]["kind"] for res in results}
    assert {"maintenance", "communication"} <= kinds


def test_waived_findings_are_suppressed_with_justification_and_approver() -> None:
    result = quarter_result()
    results = json.loads(sarif.render(result))["runs"][0]["results"]
    for res, f in zip(results, result.findings, strict=True):
        if f.status == "waived":
            (sup,) = res["suppressions"]
            assert sup["kind"] == "external" and sup["status"] == "accepted"
            assert sup["justification"] == f.waiver_reason
            assert sup["properties"]["approvedBy"] == f.waiver_approved_by
        else:
            assert "suppressions" not in res
    assert any(f.status == "waived" for f in result.findings)


def test_the_run_states_the_period_and_policy() -> None:
    run = json.loads(sarif.render(quarter_result()))["runs"][0]
    props = run["invocations"][0]["properties"]
    assert (props["since"], props["until"]) == ("2026-07-01T00:00:00Z", "2026-10-01T00:00:00Z")
    assert run["properties"]["policyDigest"].startswith("sha256:")
