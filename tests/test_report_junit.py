"""`--format junit`: a test case per obligation and per check, read by a standard JUnit parser."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from junitparser import Error, Failure, JUnitXml, Skipped
from test_report_support import QUARTER_START, audit_file, hostile_events, quarter_path, result_of

from forewarn.audit.formats import junit, stats


def _parse(text: str, tmp_path: Path) -> JUnitXml:
    path = tmp_path / "audit.xml"
    path.write_text(text, encoding="utf-8")
    return JUnitXml.fromfile(str(path))


def _outcomes(xml: JUnitXml) -> Counter:
    out: Counter = Counter()
    for suite in xml:
        for case in suite:
            kinds = {type(r) for r in case.result}
            out[
                "failed"
                if Failure in kinds
                else "skipped"
                if Skipped in kinds
                else "error"
                if Error in kinds
                else "passed"
            ] += 1
    return out


def test_junitparser_reads_one_case_per_obligation_and_check(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    result = audit_file(quarter_path(), datetime(2026, 8, 15, 12, tzinfo=UTC), QUARTER_START, None)
    cases = list(stats.iter_cases(result))
    xml = _parse(junit.render(result), tmp_path)
    status = Counter(c.status for c in cases)
    assert xml.tests == len(cases)
    assert _outcomes(xml) == Counter(
        {
            "passed": status["met"],
            "failed": status["violated"],
            "skipped": status["waived"] + status["pending"],
        }
    )
    assert status["pending"] > 0 and status["waived"] > 0
    assert [s.name for s in xml] == [r.id for r in result.policy.rules if any(c.rule == r.id for c in cases)]


def test_failures_carry_the_message_and_skips_the_justification(tmp_path: Path) -> None:
    from test_report_support import quarter_result

    result = quarter_result()
    xml = _parse(junit.render(result), tmp_path)
    messages = {f.message for f in result.findings if f.status == "violation"}
    failures, skips = set(), []
    for suite in xml:
        for case in suite:
            for r in case.result:
                if isinstance(r, Failure):
                    failures.add(r.message)
                    assert r.text and "evidence:" in r.text
                elif isinstance(r, Skipped):
                    skips.append(r.message)
    assert failures <= messages and len(failures) > 10
    waivers = {f.waiver_reason for f in result.findings if f.status == "waived"}
    assert any(w in s for s in skips for w in waivers)


def test_well_formed_with_markup_in_ids(tmp_path: Path) -> None:
    root = ET.fromstring(junit.render(result_of(hostile_events(), tmp_path)).encode())
    assert root.tag == "testsuites" and root.get("errors") == "0"
    names = [c.get("name") for c in root.iter("testcase")]
    assert any("</script>" in n for n in names)


def test_the_suites_name_the_period(tmp_path: Path) -> None:
    from test_report_support import quarter_result

    root = ET.fromstring(junit.render(quarter_result()).encode())
    assert "2026-07-01T00:00:00Z to 2026-10-01T00:00:00Z" in root.get("name", "")
    props = {p.get("name"): p.get("value") for p in root.find("testsuite").iter("property")}
    assert props["period"].startswith("due from 2026-07-01")
