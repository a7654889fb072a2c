"""`-o` replaces only a regular file (devices and FIFOs are written to, never replaced), and an import refuses a
file that changed while it was read (nothing appended)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from forewarn.cli import main
from forewarn.log import bulk

SAMPLES = Path(__file__).resolve().parents[1] / "forewarn" / "samples"
BASIC = SAMPLES / "basic.jsonl"
QUARTER = SAMPLES / "quarter.jsonl"
AUDIT = ["audit", "--events", str(BASIC), "--as-of", "2026-12-31", "--format", "json"]


@contextlib.contextmanager
def bounded(seconds: int = 60) -> Iterator[None]:
    """Fail instead of hanging: a FIFO that is opened again after its writer left blocks for ever."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_output_to_a_device_leaves_the_device(tmp_path: Path) -> None:
    """`-o /dev/null` as root: a private node of the same device (1, 3), so that a regression cannot
    replace the system's /dev/null."""
    device = tmp_path / "null"
    try:
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, AttributeError):
        pytest.skip("creating a device node needs root")
    before = device.stat()
    code, out, _ = run(*AUDIT, "-o", str(device))
    assert code == 1 and out == ""
    after = device.stat()
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)


def test_output_to_a_fifo_writes_into_it(tmp_path: Path) -> None:
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def drain() -> None:
        with open(fifo, "rb") as fh:
            received.append(fh.read())

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    with bounded():
        code, _, _ = run(*AUDIT, "-o", str(fifo))
    assert code == 1 and stat.S_ISFIFO(fifo.stat().st_mode)  # (else the reader waits for ever: a daemon thread)
    reader.join(timeout=60)
    assert json.loads(received[0])["summary"]["findings"] > 0


def test_output_replaces_a_regular_file_whole_and_follows_a_link(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "latest.json"
    link.symlink_to(target.name)
    code, _, _ = run(*AUDIT, "-o", str(link))
    assert code == 1 and link.is_symlink() and json.loads(target.read_text())["findings"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", "report.json"]  # no temporary left


def test_output_to_a_folder_is_refused(tmp_path: Path) -> None:
    code, out, err = run(*AUDIT, "-o", str(tmp_path))
    assert code == 2 and out == "" and "is a folder" in err


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


@pytest.mark.parametrize("how", ["appended", "replaced"])
def test_an_input_that_changes_while_it_is_imported_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """The file changes after it was read and before the commit (a hook in the import's checks)."""
    lines = QUARTER.read_text().splitlines(keepends=True)
    source = tmp_path / "events.jsonl"
    source.write_text("".join(lines[:200]))
    db = tmp_path / "log.db"
    checks = bulk._Import.check_rules

    def change_then_check(self: bulk._Import) -> list[object]:
        if how == "appended":
            with open(source, "a") as fh:
                fh.write("".join(lines[200:]))
        else:  # the same bytes, another file (a writer that renames its result into place)
            other = tmp_path / "other.jsonl"
            other.write_bytes(source.read_bytes())
            os.replace(other, source)
        return checks(self)  # type: ignore[return-value]

    monkeypatch.setattr(bulk._Import, "check_rules", change_then_check)
    code, _, err = run("import", str(source), "--db", str(db))
    assert code == 2, err
    assert "events.jsonl: the file changed while it was read" in err and "nothing was changed" in err
    assert _count(db) == 0
    monkeypatch.setattr(bulk._Import, "check_rules", checks)
    code, _, err = run("import", str(source), "--db", str(db))  # complete now: imported
    assert code == 0 and _count(db) == (len(lines) if how == "appended" else 200)


def test_a_piped_import_is_not_refused_as_changed(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["import", "-", "--db", str(tmp_path / "log.db")], input=BASIC.read_bytes())
    assert result.exit_code == 0 and _count(tmp_path / "log.db") == 18
