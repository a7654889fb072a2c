"""The command line for a person: colour and width, quiet mode, several outputs from one evaluation,
--fail-on in SARIF and JUnit, help texts with examples, shell completion, and a runtime without test-only packages."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from forewarn import terminal
from forewarn.audit.formats import FORMATS
from forewarn.cli import main
from forewarn.demo import sample_path

ROOT = Path(__file__).resolve().parent.parent
QUARTER = str(sample_path("quarter.jsonl"))
AUDIT = ["audit", "--events", QUARTER, "--as-of", "2026-04-15"]


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(autouse=True)
def _reset_terminal() -> None:
    yield
    terminal.configure(None, False)


def test_colour_only_when_asked_or_on_a_terminal_and_never_with_no_color() -> None:
    _, plain, _ = run(*AUDIT)
    assert "\x1b[" not in plain  # not a terminal
    _, coloured, _ = run("--color", *AUDIT)
    assert "\x1b[1;31m" in coloured or "\x1b[31m" in coloured  # high severities and violations in red
    _, off, _ = run("--no-color", *AUDIT)
    assert "\x1b[" not in off
    terminal.configure(None, False)
    assert not terminal.color_enabled(_Tty())  # a terminal, but ...
    os.environ["NO_COLOR"] = "1"
    try:
        assert not terminal.color_enabled(_Tty())
    finally:
        del os.environ["NO_COLOR"]
    assert terminal.color_enabled(_Tty(True))


class _Tty:
    def __init__(self, tty: bool = False) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_tables_fit_the_terminal_width() -> None:
    for columns in (100, 200):
        _, out, _ = run(*AUDIT, env={"COLUMNS": str(columns)})
        widths = {len(line) for line in out.splitlines() if line.startswith(("┏", "│", "└"))}
        assert max(widths) <= columns and max(widths) > columns - 40, (columns, widths)
        assert max(len(line.rstrip()) for line in out.splitlines()) <= columns


def test_quiet_silences_the_summary_but_not_errors() -> None:
    code, _, err = run(*AUDIT)
    assert code == 1 and "compliance" in err
    code, _, err = run("--quiet", *AUDIT)
    assert code == 1 and err == ""
    code, _, err = run("-q", "audit", "--events", "missing.jsonl")
    assert code == 2 and "error" in err


def test_the_progress_display_waits_a_second_and_is_never_shown_when_quiet() -> None:
    terminal.configure(None, True)
    assert not terminal.Progress.wanted()
    terminal.configure(None, False)
    with terminal.Progress("x", delay=3600) as progress:  # quick work: the display never starts
        progress.advance(5)
    assert progress._bar is None and progress.done == 5


def test_several_reports_from_one_evaluation(tmp_path: Path) -> None:
    paths = {fmt: tmp_path / f"r.{f.extension}" for fmt, f in FORMATS.items()}
    args = [a for fmt, p in paths.items() for a in (f"--output-{fmt}", str(p))]
    code, out, _ = run(*AUDIT, "--format", "json", *args)
    assert code == 1
    for fmt, path in paths.items():
        run(*AUDIT, "--format", fmt, "-o", str(tmp_path / "single"))
        assert path.read_text(encoding="utf-8") == (tmp_path / "single").read_text(encoding="utf-8"), fmt
    assert json.loads(out) == json.loads(paths["json"].read_text(encoding="utf-8"))


def test_one_file_for_two_reports_is_refused_and_nothing_written(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    code, _, err = run(*AUDIT, "-o", str(target), "--output-json", str(target))
    assert code == 2 and "two reports" in err and not target.exists()


def test_sarif_levels_and_junit_failures_follow_fail_on(tmp_path: Path) -> None:
    sarif, junit = tmp_path / "r.sarif", tmp_path / "r.xml"
    run(*AUDIT, "--fail-on", "high", "--output-sarif", str(sarif), "--output-junit", str(junit))
    results = json.loads(sarif.read_text(encoding="utf-8"))["runs"][0]["results"]
    by_sev = {(r["properties"]["severity"], r["level"]) for r in results}
    assert ("high", "error") in by_sev and ("medium", "note") in by_sev
    assert not any(sev == "medium" and level != "note" for sev, level in by_sev)
    root = ET.parse(junit).getroot()
    failures = [tc for tc in root.iter("testcase") if tc.find("failure") is not None]
    skipped = [tc.find("skipped") for tc in root.iter("testcase")]
    below = [s for s in skipped if s is not None and "below --fail-on high: [medium]" in s.get("message", "")]
    assert failures and below
    assert all("[high]" in tc.find("failure").text or "[critical]" in tc.find("failure").text for tc in failures)
    assert int(root.get("failures")) == len(failures)
    run(*AUDIT, "--output-sarif", str(sarif))  # the default bar: low, so medium is a warning again
    levels = {(r["properties"]["severity"], r["level"]) for r in json.loads(sarif.read_text())["runs"][0]["results"]}
    assert ("medium", "warning") in levels


def _commands(group: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    import click

    assert isinstance(group, click.Group)
    out = [path]
    for name, cmd in group.commands.items():
        out += _commands(cmd, (*path, name)) if isinstance(cmd, click.Group) else [(*path, name)]
    return out


@pytest.mark.parametrize("command", _commands(main), ids=lambda c: " ".join(c) or "forewarn")
def test_every_help_has_an_example_and_names_no_internal_module(command: tuple[str, ...]) -> None:
    code, out, _ = run(*command, "--help")
    assert code == 0
    assert "Examples:" in out and "forewarn " in out.split("Examples:")[1]
    forbidden = ("engine.", "forewarn.", "audit.", ".py", "policy.md", "cli.md", "events.md")
    assert not [w for w in forbidden if w in out.replace("forewarn.db", "")], out
    if command and command[0] in ("audit", "plan", "run"):
        assert "2026-04-15T09:00:00Z" in out  # the time format


def test_shell_completion_script_and_completions() -> None:
    exe = Path(sys.executable).parent / "forewarn"
    script = subprocess.run(
        [str(exe)], env={**os.environ, "_FOREWARN_COMPLETE": "bash_source"}, capture_output=True, text=True
    )
    assert script.returncode == 0 and "_forewarn_completion" in script.stdout
    env = {**os.environ, "_FOREWARN_COMPLETE": "bash_complete", "COMP_WORDS": "forewarn au", "COMP_CWORD": "1"}
    words = subprocess.run([str(exe)], env=env, capture_output=True, text=True).stdout
    assert "plain,audit" in words


def test_no_runtime_module_imports_a_test_only_package() -> None:
    test_only = {"hypothesis", "pytest", "aiosmtpd", "jsonschema", "junitparser"}
    offenders = []
    for folder in ("forewarn", "engine", "audit", "templates", "rules"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                offenders += [f"{path}: {n}" for n in names if n.split(".")[0] in test_only]
    assert offenders == []
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    runtime = pyproject.split("dependencies = [")[1].split("]")[0]
    assert "hypothesis" not in runtime


def test_synth_runs_without_the_test_only_packages(tmp_path: Path) -> None:
    """`forewarn synth` in a process where importing hypothesis (or pytest) fails."""
    code = (
        "import sys; sys.modules.update(hypothesis=None, pytest=None); "
        "sys.argv = ['forewarn', 'synth', '-o', sys.argv[1]]; "
        "from forewarn.program import main; main()"
    )
    out = tmp_path / "q.jsonl"
    done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.stat().st_size > 10_000
