"""Work done in a forked child gives what the same work here gives (forewarn.parallel.forked): an `audit --events`'
log checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

import forewarn
from forewarn import parallel
from forewarn.cli import main
from forewarn.log import source
from forewarn.policy.loader import load_policy

QUARTER = Path(forewarn.__file__).parent / "samples" / "quarter.jsonl"
POLICY = load_policy()


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
