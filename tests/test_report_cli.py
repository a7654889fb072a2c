"""`forewarn audit --format ...`: every format from the command line, the period in every header, -o."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_report_support import quarter_path

from forewarn.audit.formats import FORMATTERS
from forewarn.cli import FORMATS, main

PERIOD = ["--as-of", "2026-10-08T00:00:00Z", "--since", "2026-08-01", "--until", "2026-09-01"]
SINCE, UNTIL = "2026-08-01T00:00:00Z", "2026-09-01T00:00:00Z"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_every_format_is_offered_and_registered() -> None:
    assert set(FORMATS) == set(FORMATTERS) == {"table", "json", "markdown", "html", "sarif", "junit", "csv"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_states_the_review_period(fmt: str) -> None:
    code, out, err = run("audit", "--events", str(quarter_path()), *PERIOD, "--format", fmt)
    assert code == 1, err  # the quarter has violations
    head = out[:3000] if fmt not in ("sarif", "csv") else out
    assert SINCE in head and UNTIL in head, fmt
    assert "compliance" in err  # the summary goes to stderr, not into the report


def test_the_period_restricts_the_findings() -> None:
    _code, out, _err = run("audit", "--events", str(quarter_path()), *PERIOD, "--format", "json")
    due = [f["due"] for f in json.loads(out)["findings"]]
    assert due and all(SINCE <= d < UNTIL for d in due)
    _code, csv_out, _err = run("audit", "--events", str(quarter_path()), *PERIOD, "--format", "csv")
    assert len(csv_out.strip().splitlines()) == len(due) + 1


def test_output_file_is_written_only_when_the_audit_ran(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    code, out, _err = run("audit", "--events", str(quarter_path()), *PERIOD, "--format", "html", "-o", str(target))
    assert code == 1 and out == "" and target.read_text(encoding="utf-8").startswith("<!doctype html>")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "e1", "type": "nonsense"}\n', encoding="utf-8")
    missing = tmp_path / "never.sarif"
    code, _out, err = run("audit", "--events", str(bad), "--format", "sarif", "-o", str(missing))
    assert code == 2 and not missing.exists() and err


def test_fail_on_high_ignores_medium_violations(tmp_path: Path) -> None:
    log = tmp_path / "medium.jsonl"
    lines = [json.loads(x) for x in quarter_path().read_text(encoding="utf-8").splitlines()]
    keep = [e for e in lines if e["type"] in ("customer.upserted", "communication.sent")]
    for e in keep:
        if e["type"] == "communication.sent":
            e.pop("maintenance", None), e.pop("incident", None), e.pop("release", None)
            e["kind"] = "other"
    log.write_text("".join(json.dumps(e) + "\n" for e in keep), encoding="utf-8")
    code, out, err = run(
        "audit", "--events", str(log), "--as-of", "2026-10-08", "--format", "junit", "--fail-on", "high"
    )
    assert code == 0, err  # ticket and sender findings are medium
    assert "<failure" not in out  # reported below the bar: skipped with a message, not failing CI
    assert 'message="violation below --fail-on high: [medium]' in out
    code, out, err = run("audit", "--events", str(log), "--as-of", "2026-10-08", "--format", "junit")
    assert code == 1 and "<failure" in out and "below --fail-on" not in out


def test_the_installed_command_ends_without_teardown_and_loses_no_output(tmp_path: Path) -> None:
    """`forewarn audit` exits at once after its report (forewarn.cli.entry): stdout complete when piped,
    the exit status kept, the -o file whole, the summary on stderr."""
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "forewarn"
    args = [str(exe), "audit", "--events", str(quarter_path()), "--as-of", "2026-10-08T00:00:00Z"]
    piped = subprocess.run([*args, "--format", "json"], capture_output=True, text=True, timeout=120)
    assert piped.returncode == 1, piped.stderr  # the quarter has violations
    report = json.loads(piped.stdout)
    assert report["summary"]["findings"] == len(report["findings"]) > 0
    assert "findings" in piped.stderr and "Traceback" not in piped.stderr
    out = tmp_path / "report.json"
    to_file = subprocess.run([*args, "--format", "json", "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert to_file.returncode == 1 and to_file.stdout == ""
    assert json.loads(out.read_text()) == report
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    bad = subprocess.run([*args[:3], str(tmp_path / "missing.jsonl")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "missing.jsonl" in bad.stderr
