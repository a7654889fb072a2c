"""Commands that read the log open it read-only and only if it is a forewarn log: a 0-byte file or another
program's database is refused (exit 2) and left exactly as it was; a log that cannot be written (a read-only
mount) is audited and planned all the same, while `import` and `run` say that it is read-only."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from forewarn.cli import main

SAMPLES = Path(__file__).resolve().parents[1] / "forewarn" / "samples"
BASIC = SAMPLES / "basic.jsonl"
AS_OF = ["--as-of", "2026-12-31T00:00:00Z"]
PROGRAM = [sys.executable, "-c", "from forewarn.program import main; main()"]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def state(path: Path) -> tuple[bytes, int, list[str]]:
    """The file's bytes, its modification time and the files beside it (no -wal, -shm, journal appeared)."""
    return path.read_bytes(), path.stat().st_mtime_ns, sorted(os.listdir(path.parent))


def foreign_database(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.execute("INSERT INTO invoices (total) VALUES (12.5)")
    conn.commit()
    conn.close()


def tables(path: Path) -> list[str]:
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    names = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    conn.close()
    return names


@pytest.mark.parametrize("command", [["audit"], ["plan"], ["plan", "--format", "json"]])
def test_an_empty_file_is_not_a_log_and_stays_empty(tmp_path: Path, command: list[str]) -> None:
    db = tmp_path / "empty.db"
    db.touch()
    before = state(db)
    code, out, err = run(*command, "--db", str(db), *AS_OF)
    assert code == 2 and out == ""
    assert f"{db}: not a forewarn event log" in err and "forewarn import --db" in err
    assert state(db) == before


@pytest.mark.parametrize("command", [["audit"], ["plan"], ["import", str(BASIC)], ["run", "--once"]])
def test_another_programs_database_is_refused_and_untouched(tmp_path: Path, command: list[str]) -> None:
    db = tmp_path / "billing.db"
    foreign_database(db)
    before = state(db)
    code, out, err = run(*command, "--db", str(db), *(AS_OF if command[0] in ("audit", "plan") else []))
    assert code == 2 and out == ""
    assert "not a forewarn event log" in err
    assert state(db) == before and tables(db) == ["invoices"]


def test_the_quick_plan_leaves_a_foreign_database_alone(tmp_path: Path) -> None:
    """`forewarn plan` (program.main's fast path, then the CLI) on another program's database."""
    db = tmp_path / "billing.db"
    foreign_database(db)
    before = state(db)
    result = subprocess.run([*PROGRAM, "plan", "--db", str(db)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "not a forewarn event log" in result.stderr
    assert state(db) == before and tables(db) == ["invoices"]


def test_auditing_writes_nothing_to_the_log(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    assert run("import", str(BASIC), "--db", str(db))[0] == 0
    before = state(db)
    code, _, err = run("audit", "--db", str(db), *AS_OF)
    assert code == 1 and "findings" in err
    assert state(db) == before


def _can_mount_read_only(tmp_path: Path) -> bool:
    if not shutil.which("unshare") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    script = f"mount --bind '{tmp_path}' '{tmp_path}' && mount -o remount,bind,ro '{tmp_path}'"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, timeout=30)
    return probe.returncode == 0


def _on_read_only_mount(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`forewarn ARGS` with `folder` mounted read-only (in a private mount namespace: nothing else sees it)."""
    command = " ".join(f"'{a}'" for a in [*PROGRAM, *args])
    script = f"mount --bind '{folder}' '{folder}' && mount -o remount,bind,ro '{folder}' && exec {command}"
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)


def test_a_log_on_a_read_only_mount_is_audited_and_planned_but_not_changed(tmp_path: Path) -> None:
    if not _can_mount_read_only(tmp_path):
        pytest.skip("needs root and unshare to mount a folder read-only")
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "log.db"
    assert run("import", str(BASIC), "--db", str(db))[0] == 0  # closed cleanly: no -wal, no -shm left
    writable = tmp_path / "copy.db"
    shutil.copy(db, writable)
    before = state(db)
    expected = run("audit", "--db", str(writable), *AS_OF, "--format", "json")
    audited = _on_read_only_mount(folder, "audit", "--db", str(db), *AS_OF, "--format", "json")
    assert (audited.returncode, audited.stdout) == expected[:2], audited.stderr
    planned = _on_read_only_mount(folder, "plan", "--db", str(db), *AS_OF, "--format", "json")
    assert planned.returncode == 0 and '"due"' in planned.stdout, planned.stderr
    for command in (["import", str(SAMPLES / "quarter.jsonl")], ["run", "--once", "--outbox", str(tmp_path / "ob")]):
        refused = _on_read_only_mount(folder, *command, "--db", str(db))
        assert refused.returncode == 2, (command, refused.stderr)
        assert "read-only" in refused.stderr and "not a forewarn event log" not in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    assert state(db) == before
