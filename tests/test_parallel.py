"""Checks in a forked child give the same evaluation (the engine's) as checks in this process."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

import forewarn
from forewarn import parallel
from forewarn.cli import main
from forewarn.evaluate import evaluation
from forewarn.log import source
from forewarn.log.source import load_files
from forewarn.policy.loader import load_policy

QUARTER = Path(forewarn.__file__).parent / "samples" / "quarter.jsonl"
POLICY = load_policy()
AS_OF = datetime(2026, 7, 15, tzinfo=UTC)


def violations(monkeypatch: pytest.MonkeyPatch, apart: bool) -> list[object]:
    monkeypatch.setattr(evaluation, "CHECKS_APART_MIN", 0 if apart else 10**9)
    return list(evaluation.evaluate(load_files([QUARTER], POLICY.ids), POLICY, AS_OF).violations)


@pytest.mark.skipif(not parallel.available(), reason="needs fork and two CPUs")
def test_checks_in_a_child_give_the_same_violations(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = parallel.forked

    def spy(fn, *args):  # type: ignore[no-untyped-def]
        calls.append(os.getpid())
        return real(fn, *args)

    monkeypatch.setattr(evaluation, "forked", spy)
    apart = violations(monkeypatch, apart=True)
    assert calls, "the checks did not go to a child"
    here = violations(monkeypatch, apart=False)
    assert len(calls) == 1
    assert apart == here
    checked = evaluation.evaluate(load_files([QUARTER], POLICY.ids), POLICY, AS_OF)
    unchecked = evaluation.evaluate(load_files([QUARTER], POLICY.ids), POLICY, AS_OF, checks=False)
    assert len(checked.violations) > len(unchecked.violations)  # the quarter has check findings to compare


def _child_dies(parent: int) -> int:
    if os.getpid() != parent:
        os._exit(3)  # as if killed: the parent must do the work itself
    return 42


def _child_raises() -> int:
    raise ValueError("broken")


@pytest.mark.skipif(not parallel.available(), reason="needs fork and two CPUs")
def test_a_failed_child_leaves_the_work_to_the_parent() -> None:
    assert parallel.forked(_child_dies, os.getpid())() == 42
    with pytest.raises(ValueError, match="broken"):
        parallel.forked(_child_raises)()


def test_without_workers_it_runs_at_the_join(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOREWARN_WORKERS", "1")
    assert not parallel.available()
    assert parallel.forked(pow, 2, 10)() == 1024


BAD = Path(__file__).parent / "data" / "bad"


@pytest.mark.parametrize("apart", [True, False], ids=["child", "here"])
def test_log_checks_meanwhile_agree_with_load_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, apart: bool
) -> None:
    monkeypatch.setattr(source, "CHECKS_APART_MIN", 0 if apart else 10**9)
    events, confirm = source.load_files_checking([QUARTER], POLICY.ids)
    assert confirm() is None
    assert events == source.load_files([QUARTER], POLICY.ids)

    repeated = tmp_path / "again.jsonl"  # identical repeats are dropped, as load_files drops them
    repeated.write_bytes(QUARTER.read_bytes().splitlines(keepends=True)[5] * 3)
    events, confirm = source.load_files_checking([QUARTER, repeated], POLICY.ids)
    instead = confirm()
    assert instead is not None and len(instead) == len(events) - 3
    assert instead == source.load_files([QUARTER, repeated], POLICY.ids)

    dangling = BAD / "dangling-reference.jsonl"
    with pytest.raises(source.InputErrors) as expected:
        source.load_files([dangling], POLICY.ids)
    with pytest.raises(source.InputErrors) as found:  # at once when checked here, at confirm() from a child
        _events, confirm = source.load_files_checking([dangling], POLICY.ids)
        confirm()
    assert found.value.errors == expected.value.errors


def test_audit_of_a_bad_log_checked_in_a_child_exits_2_with_nothing_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source, "CHECKS_APART_MIN", 0)
    dangling = BAD / "dangling-reference.jsonl"
    result = CliRunner().invoke(main, ["audit", "--events", str(dangling), "--format", "json"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert (BAD / "dangling-reference.expected").read_text().splitlines()[0] in result.stderr
