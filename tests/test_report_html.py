"""`--format html`: one self-contained, autoescaped page with the verdict, charts, findings, policy."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from itertools import pairwise
from pathlib import Path

import pytest
from test_report_support import HOSTILE, hostile_events, quarter_result, result_of

from forewarn.audit.formats import html, stats


class Page(HTMLParser):
    """The tags, ids, script bodies and text of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: dict[str, str] = {}
        self.text: list[str] = []
        self._script: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._script = dict(attrs).get("id") or f"script-{len(self.scripts)}"
            self.scripts[self._script] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self.scripts[self._script] += data
        else:
            self.text.append(data)

    def ids(self) -> set[str]:
        return {a["id"] for _t, a in self.tags if a.get("id")}

    def count(self, tag: str, cls: str | None = None) -> int:
        return sum(1 for t, a in self.tags if t == tag and (cls is None or cls in (a.get("class") or "").split()))


def _page(text: str) -> Page:
    return Page(text)


def test_the_page_is_self_contained() -> None:
    text = html.render(quarter_result())
    page = _page(text)
    for tag, attrs in page.tags:
        for name in ("src", "href", "xlink:href", "action"):
            value = attrs.get(name) or ""
            assert not re.match(r"^(https?:)?//", value), (tag, name, value)
        assert tag not in ("link", "iframe", "img", "object", "embed")
    assert "@import" not in text and "url(" not in text


def test_it_opens_with_the_verdict_and_states_the_period() -> None:
    result = quarter_result()
    text = html.render(result)
    page = _page(text)
    body = " ".join(" ".join(page.text).split())
    report = stats.build(result)
    assert "Customer notifications due 1 July to 30 September 2026" in body
    assert "Judged as of 8 October 2026, 00:00 UTC" in body
    assert "Review period" not in body and "everything due up to" not in body and "start of the log" not in body
    rate = stats.rate_text(report.total.tally.rate)
    assert body.index(rate) < body.index("Compliance by rule")
    violations = sum(report.total.violations.values())
    assert f"{violations} violations" in body
    for sev, n in report.total.violations.items():
        assert f"{n} {sev}" in body


def test_it_has_the_charts() -> None:
    page = _page(html.render(quarter_result()))
    assert page.count("svg", "chart") >= 4  # by rule, by month, two lead-time histograms
    assert page.count("svg", "timeline") >= 10
    assert page.count("rect", "bar") >= 12
    assert page.count("line", "threshold") == 2  # the one-business-day line of each histogram
    assert page.count("rect", "deadline") >= 1 and page.count("path") >= 1


def test_findings_are_embedded_as_data_for_the_script() -> None:
    result = quarter_result()
    page = _page(html.render(result))
    data = json.loads(page.scripts["report-data"])
    assert len(data["findings"]) == len(result.findings)
    fields = data["fields"]
    first = dict(zip(fields, data["findings"][0], strict=True))
    assert first["explain"] and first["evidence"]
    named = {e for row in data["findings"] for e in row[fields.index("evidence")]}
    assert named == set(data["events"])  # every event the evidence names, and no other
    waived = [dict(zip(fields, r, strict=True)) for r in data["findings"] if r[1] == "waived"]
    assert waived and all(w["waiver"] in data["waivers"] for w in waived)


def test_deadline_arithmetic_is_in_the_customers_local_time() -> None:
    data = json.loads(_page(html.render(quarter_result())).scripts["report-data"])
    fields = data["fields"]
    rows = [dict(zip(fields, r, strict=True)) for r in data["findings"]]
    advance = [r for r in rows if r["rule"] == "advance-notice" and r["customer"] == "contoso"]
    assert advance and "1 business day before" in advance[0]["explain"]
    assert "CDT" in advance[0]["explain"] or "CST" in advance[0]["explain"]
    assert "America/Chicago" in advance[0]["explain"]


def test_drill_downs_and_policy() -> None:
    result = quarter_result()
    page = _page(html.render(result))
    ids = page.ids()
    assert {"verdict", "charts", "rules", "findings", "customers", "maintenances", "policy"} <= ids
    customers = {a["data-customer"] for _t, a in page.tags if a.get("data-customer")}
    assert {"contoso", "northwind", "litware"} <= customers
    subjects = {a["data-subject"] for _t, a in page.tags if a.get("data-subject")}
    assert "mx-12" in subjects
    body = " ".join(page.text)
    assert result.policy.digest in body and "holidays" in body
    for rule in result.policy.rules:
        assert rule.id in body


def test_markup_in_the_log_is_escaped(tmp_path: Path) -> None:
    text = html.render(result_of(hostile_events(), tmp_path))
    assert "<img src=x" not in text and "<script>alert" not in text and "<!--" not in text
    assert "<b>Contoso</b>" not in text and "&lt;b&gt;Contoso&lt;/b&gt;" in text
    page = _page(text)
    data = json.loads(page.scripts["report-data"])  # "</script>" in an id did not end the block
    assert HOSTILE in {r[5] for r in data["findings"]}
    assert len(page.scripts) == 2


def test_an_empty_period_renders(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    result = result_of(hostile_events(), tmp_path, since=datetime(2030, 1, 1, tzinfo=UTC))
    text = html.render(result)
    assert "No violations" in text and json.loads(_page(text).scripts["report-data"])["findings"] == []


def test_a_rate_short_of_100_never_shows_as_100() -> None:
    from forewarn.audit.formats.charts import percent

    assert percent(100.0 * 9999 / 10000) == "99.9%"
    assert percent(100.0 * 1999 / 2000) == "99.9%"
    assert percent(100.0) == "100.0%"
    assert percent(100.0 * 40 / 41) == "97.6%" and percent(100.0 * 2 / 3) == "66.7%"  # otherwise as rounded
    assert percent(100.0 / 5000) == "0.1%" and percent(0.0) == "0.0%"
    assert stats.rate_text(100.0 * 99_999 / 100_000) == "99.9%"


def test_high_severity_violations_make_the_verdict_red_whatever_the_rate() -> None:
    from forewarn.audit.formats import charts

    result = quarter_result()
    context = html.context(result)
    assert context["serious"] > 0 and context["verdict_colour"] == charts.RED
    assert charts.rate_colour(context["t"].rate) != charts.RED  # the rate alone would say amber
    body = " ".join(" ".join(_page(html.render(result)).text).split())
    assert f"{context['serious']} high-severity violations" in body
    assert "not compliant: high-severity violations" in body


@pytest.mark.parametrize("months", [3, 13, 25])
def test_month_labels_never_overlap(months: int) -> None:
    import re

    from forewarn.audit.formats import charts

    bars = [charts.Bar(f"20{26 + i // 12}-{i % 12 + 1:02d}", 99.5, 199, 200, "1 violated") for i in range(months)]
    svg = charts.month_columns("by month", bars)
    xs = [float(x) for x in re.findall(r'<text class="month" x="([0-9.]+)"', svg)]
    assert xs and xs[0] < 200  # the first month is labelled
    assert all(b - a >= charts.LABEL_PX for a, b in pairwise(xs))
    assert svg.count("</title></rect>") == months  # every month keeps its tooltip
    if months == 3:
        assert len(xs) == 3 and svg.count("1 violated") == 6  # labelled, noted and in the tooltip
