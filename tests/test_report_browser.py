"""The HTML report in a real headless Chromium: no console errors, charts drawn, filters work, screenshot."""

from __future__ import annotations

import html as htmllib
import json
import os
import re
import shutil
import subprocess
import tempfile
from functools import cache
from itertools import pairwise
from pathlib import Path

import pytest
from test_report_support import quarter_result

from forewarn.audit.formats import html

SCREENSHOT = Path(os.environ.get("FOREWARN_SCREENSHOT_DIR", tempfile.gettempdir())) / "forewarn-report-quarter.png"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--mute-audio",
]  # fmt: skip

# Installed before the report's own script: records errors and console.error calls.
RECORDER = """<script>window.__errors = [];
window.addEventListener("error", function (e) { window.__errors.push(String(e.message)); });
var __ce = console.error; console.error = function () {
  window.__errors.push(Array.prototype.join.call(arguments, " ")); __ce.apply(console, arguments); };
</script>"""

# Run after load: uses the page as a reviewer would and writes what it saw into the DOM.
PROBE = """<script>window.addEventListener("load", function () {
  var out = {};
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("#findings-body tr.row")); }
  function col(i) { return rows().map(function (tr) { return tr.children[i].textContent; }); }
  function pick(id, value) {
    var s = document.getElementById(id); s.value = value; s.dispatchEvent(new Event("change")); }
  try {
    out.total = window.forewarnReport.shown();
    out.firstPage = rows().length;
    out.charts = Array.prototype.map.call(document.querySelectorAll("svg.chart, svg.timeline"), function (s) {
      var r = s.getBoundingClientRect(); return [r.width, r.height]; });
    out.bars = Array.prototype.filter.call(document.querySelectorAll("svg.chart rect.bar"), function (b) {
      return b.getBBox().width > 0 && b.getBBox().height > 0; }).length;
    pick("f-customer", "contoso");
    out.contoso = { shown: window.forewarnReport.shown(), customers: col(4) };
    pick("f-severity", "high");
    out.contosoHigh = { shown: window.forewarnReport.shown(), severities: col(1), customers: col(4) };
    pick("f-customer", ""); pick("f-severity", "");
    pick("f-rule", "ticket-opened");
    out.ticket = { shown: window.forewarnReport.shown(), rules: col(2) };
    pick("f-rule", "");
    document.querySelector("[data-subject='mx-12']").click();
    out.mx12 = { shown: window.forewarnReport.shown(), subjects: col(3) };
    rows()[0].click();
    var detail = document.querySelector("#findings-body tr.detail");
    out.detail = detail ? detail.textContent : null;
    document.getElementById("f-clear").click();
    document.getElementById("p-next").click();
    out.page2 = { info: document.getElementById("p-info").textContent, rows: rows().length };
  } catch (e) { out.exception = String(e && e.stack || e); }
  out.errors = window.__errors;
  var pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});</script>"""


@cache
def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(args: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    browser = chromium()
    if browser is None:
        pytest.skip("no Chromium here: install it (Debian: apt-get install chromium) to check the HTML report")
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp)
    command = [browser, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@cache
def _report() -> str:
    return html.render(quarter_result())


def _probe(tmp_path: Path) -> dict:
    text = _report().replace("<head>", "<head>" + RECORDER, 1).replace("</body>", PROBE + "</body>", 1)
    page = tmp_path / "probe.html"
    page.write_text(text, encoding="utf-8")
    done = _run(["--virtual-time-budget=5000", "--dump-dom", page.as_uri()], tmp_path)
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, f"no probe result; chromium said: {done.stderr[-2000:]}"
    return json.loads(htmllib.unescape(found.group(1)))


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _probe(tmp_path_factory.mktemp("browser"))


def test_no_console_errors(seen: dict) -> None:
    assert "exception" not in seen, seen.get("exception")
    assert seen["errors"] == []


def test_charts_render(seen: dict) -> None:
    assert len(seen["charts"]) >= 14
    assert all(w > 200 and h > 50 for w, h in seen["charts"])
    assert seen["bars"] >= 20


def test_findings_are_paginated(seen: dict) -> None:
    result = quarter_result()
    assert seen["total"] == len(result.findings)
    assert seen["firstPage"] == min(50, len(result.findings))
    assert seen["page2"] == {"info": "page 2 of 2", "rows": len(result.findings) - 50}


def test_filters_by_customer_severity_and_rule(seen: dict) -> None:
    findings = quarter_result().findings
    contoso = [f for f in findings if f.customer == "contoso"]
    assert seen["contoso"]["shown"] == len(contoso) and set(seen["contoso"]["customers"]) == {"contoso"}
    high = [f for f in contoso if f.severity == "high"]
    assert seen["contosoHigh"]["shown"] == len(high) and set(seen["contosoHigh"]["severities"]) <= {"high"}
    tickets = [f for f in findings if f.rule == "ticket-opened"]
    assert seen["ticket"]["shown"] == len(tickets) and set(seen["ticket"]["rules"]) == {"ticket-opened"}


def test_maintenance_drill_down_and_evidence(seen: dict) -> None:
    assert seen["mx12"]["shown"] > 0
    assert seen["detail"] and "Deadline" in seen["detail"] and "Evidence" in seen["detail"]


def test_screenshot(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(_report(), encoding="utf-8")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    done = _run(["--window-size=1280,1400", f"--screenshot={SCREENSHOT}", page.as_uri()], tmp_path)
    assert SCREENSHOT.exists(), done.stderr[-2000:]
    data = SCREENSHOT.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000


# -- a 13-month log: month labels, the view in the URL, the keyboard ------------------------------

YEAR_PROBE = """<script>window.addEventListener("load", function () {
  var out = {};
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("#findings-body tr.row")); }
  try {
    var months = document.querySelectorAll("#charts svg.chart text.month");
    out.months = Array.prototype.map.call(months, function (t) {
      var r = t.getBoundingClientRect(); return [r.left, r.right, t.textContent]; });
    out.bars = document.querySelectorAll("#charts figure:nth-child(2) rect.bar").length;
    out.hashAtLoad = location.hash;
    out.ruleAtLoad = document.getElementById("f-rule").value;
    out.shownAtLoad = window.forewarnReport.shown();
    out.openAtLoad = document.querySelectorAll("#findings-body tr.detail").length;
    var first = rows()[0];
    out.firstKey = first.getAttribute("data-key");
    out.firstRule = first.children[2].textContent;
    out.tabIndex = first.tabIndex;
    first.focus();
    first.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    out.afterEnter = { details: document.querySelectorAll("#findings-body tr.detail").length,
                       focused: document.activeElement.getAttribute("data-key"),
                       expanded: document.activeElement.getAttribute("aria-expanded") };
    out.hashAfterEnter = location.hash;
    document.activeElement.dispatchEvent(new KeyboardEvent("keydown", { key: " ", bubbles: true }));
    out.afterSpace = document.querySelectorAll("#findings-body tr.detail").length;
    var s = document.getElementById("f-severity"); s.value = "high"; s.dispatchEvent(new Event("change"));
    out.hashAfterFilter = location.hash;
  } catch (e) { out.exception = String(e && e.stack || e); }
  out.errors = window.__errors;
  var pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});</script>"""

YEAR_SCREENSHOT = SCREENSHOT.with_name("forewarn-report-13-months.png")


@cache
def _year_report() -> str:
    from dataclasses import replace

    from forewarn.audit.findings import audit
    from forewarn.log.source import load_files
    from forewarn.policy.loader import load_policy
    from forewarn.synth.generate import QUARTER, synthesize, write_jsonl

    policy = load_policy()
    shape = replace(QUARTER, customers=10, maintenances=40, days=396)  # January 2026 to January 2027
    made = synthesize(policy, 3, shape, 1, 0.2, False)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "year.jsonl"
        write_jsonl(path, made.events)
        events = load_files([path], policy.ids)
    return html.render(audit(events, policy, made.as_of))


def _year_probe(tmp_path: Path, fragment: str = "") -> dict:
    text = _year_report().replace("<head>", "<head>" + RECORDER, 1).replace("</body>", YEAR_PROBE + "</body>", 1)
    tmp_path.mkdir(parents=True, exist_ok=True)
    page = tmp_path / "year.html"
    page.write_text(text, encoding="utf-8")
    done = _run(["--virtual-time-budget=5000", "--dump-dom", page.as_uri() + fragment], tmp_path)
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, f"no probe result; chromium said: {done.stderr[-2000:]}"
    seen = json.loads(htmllib.unescape(found.group(1)))
    assert "exception" not in seen, seen["exception"]
    assert seen["errors"] == []
    return seen


def test_a_13_month_log_labels_months_without_overlap_and_opens_rows_with_the_keyboard(tmp_path: Path) -> None:
    seen = _year_probe(tmp_path)
    assert seen["bars"] >= 13
    labels = seen["months"]
    assert len(labels) >= 5 and labels[0][2] <= labels[-1][2]
    assert all(a[1] <= b[0] for a, b in pairwise(labels)), labels  # no two boxes overlap
    assert seen["tabIndex"] == 0
    assert seen["afterEnter"] == {"details": 1, "focused": seen["firstKey"], "expanded": "true"}
    assert seen["afterSpace"] == 0
    assert "open=" in seen["hashAfterEnter"] and seen["hashAfterEnter"].startswith("#findings?")
    assert "severity=high" in seen["hashAfterFilter"]


def test_the_view_in_the_url_is_restored(tmp_path: Path) -> None:
    from urllib.parse import urlencode

    first = _year_probe(tmp_path / "a")
    fragment = "#findings?" + urlencode([("rule", first["firstRule"]), ("open", first["firstKey"])])
    again = _year_probe(tmp_path / "b", fragment)
    assert again["ruleAtLoad"] == first["firstRule"]
    assert again["openAtLoad"] == 1 and again["firstKey"] == first["firstKey"]
    assert 0 < again["shownAtLoad"] <= first["shownAtLoad"]


def test_screenshot_of_a_13_month_report(tmp_path: Path) -> None:
    page = tmp_path / "year.html"
    page.write_text(_year_report(), encoding="utf-8")
    YEAR_SCREENSHOT.unlink(missing_ok=True)
    done = _run(["--window-size=1280,1600", f"--screenshot={YEAR_SCREENSHOT}", page.as_uri()], tmp_path)
    assert YEAR_SCREENSHOT.exists(), done.stderr[-2000:]
    assert YEAR_SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
