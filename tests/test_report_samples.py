"""Every format from the project's shipped quarter sample (forewarn/samples/quarter.jsonl)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from functools import cache

import pytest
from test_report_sarif import _errors
from test_report_support import ROOT, audit_file

from forewarn.audit.findings import AuditResult
from forewarn.audit.formats import FORMATTERS, csv_format, html, junit, sarif, stats

SAMPLE = ROOT / "forewarn" / "samples" / "quarter.jsonl"
pytestmark = pytest.mark.skipif(not SAMPLE.exists(), reason="no shipped quarter sample in this tree")


@cache
def sample() -> AuditResult:
    return audit_file(SAMPLE, datetime(2026, 4, 15, tzinfo=UTC), None, None)


@pytest.mark.parametrize("fmt", sorted(FORMATTERS))
def test_each_format_renders_the_sample(fmt: str) -> None:
    assert FORMATTERS[fmt](sample()).strip()


def test_the_sample_in_sarif_is_valid_and_complete() -> None:
    log = json.loads(sarif.render(sample()))
    assert _errors(log) == [] and len(log["runs"][0]["results"]) == len(sample().findings)


def test_the_sample_in_junit_counts_every_case() -> None:
    root = ET.fromstring(junit.render(sample()).encode())
    cases = list(stats.iter_cases(sample()))
    assert int(root.get("tests", "0")) == len(cases) == len(list(root.iter("testcase")))
    assert int(root.get("failures", "0")) == sum(c.status == "violated" for c in cases)


def test_the_sample_in_csv_and_html_lists_every_finding() -> None:
    assert csv_format.render(sample()).count("\r\n") == len(sample().findings) + 1
    text = html.render(sample())
    data = text.split('<script type="application/json" id="report-data">', 1)[1].split("</script>", 1)[0]
    assert len(json.loads(data)["findings"]) == len(sample().findings) > 0
