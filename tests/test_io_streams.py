"""Inputs that can be read only once: `-`, /dev/stdin, pipes, FIFOs, process substitution. Each is read once,
from its first byte (the SQLite sniff hands its bytes on), for `import`, `audit --events` and `plan --events`,
including the parallel import and the audit's checks on the other CPU."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from forewarn.cli import main
from forewarn.log.bulk import import_streaming
from forewarn.log.store import EventStore

SAMPLES = Path(__file__).resolve().parents[1] / "forewarn" / "samples"
BASIC = SAMPLES / "basic.jsonl"  # 18 events, < 8 KiB: a sniff that buffers swallowed all of it
QUARTER = SAMPLES / "quarter.jsonl"  # > 8 KiB: a sniff that buffers cut its first line
AS_OF = ["--as-of", "2026-12-31T00:00:00Z"]
PROGRAM = [sys.executable, "-c", "from forewarn.program import main; main()"]


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


def forewarn(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The `forewarn` program in a child process (real file descriptors, as a shell gives them)."""
    return subprocess.run(
        [*PROGRAM, *args], input=None if stdin is None else stdin.decode(), capture_output=True, text=True,
        cwd=cwd, timeout=120,
    )


def reference(path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["audit", "--events", str(path), *AS_OF, "--format", "json", *args])
    return result.exit_code, result.stdout


@pytest.mark.parametrize("sample", [BASIC, QUARTER], ids=["small", "large"])
def test_audit_reads_stdin_dash_dev_stdin_and_a_pipe_whole(sample: Path) -> None:
    code, expected = reference(sample)
    assert json.loads(expected)["summary"]["obligations"] > 0
    data = sample.read_bytes()
    dash = CliRunner().invoke(main, ["audit", "--events", "-", *AS_OF, "--format", "json"], input=data)
    assert (dash.exit_code, dash.stdout) == (code, expected), dash.stderr
    if sample == QUARTER:  # /dev/stdin: a real file descriptor, as a shell gives it
        run = forewarn("audit", "--events", "/dev/stdin", *AS_OF, "--format", "json", stdin=data)
        assert (run.returncode, run.stdout) == (code, expected), run.stderr
    shell = shutil.which("bash")
    if shell:  # process substitution: /dev/fd/N, a pipe
        script = f'{" ".join(map(repr, PROGRAM))} audit --events <(cat "$1") {" ".join(AS_OF)} --format json'
        run = subprocess.run([shell, "-c", script, "sh", str(sample)], capture_output=True, text=True, timeout=120)
        assert (run.returncode, run.stdout) == (code, expected), run.stderr


def _fifo_from(tmp_path: Path, data: bytes, name: str = "events.fifo") -> Path:
    fifo = tmp_path / name
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as out:
            out.write(data)

    threading.Thread(target=feed, daemon=True).start()
    return fifo


def test_audit_and_plan_read_a_fifo(tmp_path: Path) -> None:
    code, expected = reference(QUARTER)
    fifo = _fifo_from(tmp_path, QUARTER.read_bytes())
    with bounded():
        result = CliRunner().invoke(main, ["audit", "--events", str(fifo), *AS_OF, "--format", "json"])
    assert (result.exit_code, result.stdout) == (code, expected), result.stderr
    plan = CliRunner().invoke(main, ["plan", "--events", str(QUARTER), *AS_OF, "--format", "json"])
    fifo2 = _fifo_from(tmp_path, QUARTER.read_bytes(), "again.fifo")
    with bounded():
        planned = CliRunner().invoke(main, ["plan", "--events", str(fifo2), *AS_OF, "--format", "json"])
    assert planned.exit_code == plan.exit_code == 0 and planned.stdout == plan.stdout
    piped = CliRunner().invoke(main, ["plan", "--events", "-", *AS_OF, "--format", "json"], input=QUARTER.read_bytes())
    assert piped.exit_code == 0 and piped.stdout == plan.stdout


def _events(db: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT id, payload FROM events ORDER BY seq").fetchall()
    conn.close()
    return rows


def test_import_from_stdin_and_dev_stdin(tmp_path: Path) -> None:
    expected = tmp_path / "expected.db"
    assert CliRunner().invoke(main, ["import", str(QUARTER), "--db", str(expected)]).exit_code == 0
    dash = tmp_path / "dash.db"
    result = CliRunner().invoke(main, ["import", "-", "--db", str(dash)], input=QUARTER.read_bytes())
    assert result.exit_code == 0, result.stderr
    assert _events(dash) == _events(expected)
    dev = tmp_path / "dev.db"
    run = forewarn("import", "/dev/stdin", "--db", str(dev), stdin=QUARTER.read_bytes())
    assert run.returncode == 0, run.stderr
    assert _events(dev) == _events(expected)


def test_errors_in_stdin_name_it_with_line_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    lines = BASIC.read_text().splitlines()
    lines[2] = "not json"
    data = ("\n".join(lines) + "\n").encode()
    for command in (["audit", "--events", "-"], ["plan", "--events", "-"], ["import", "-", "--db", "unused.db"]):
        result = CliRunner().invoke(main, command, input=data)
        assert result.exit_code == 2, (command, result.output)
        assert "-:3: not valid JSON" in result.stderr, command
        assert not Path("unused.db").exists() or not _events(Path("unused.db"))


def test_stdin_named_twice_is_refused() -> None:
    for command in (["audit", "--events", "-", "--events", "-"], ["import", "-", "-", "--db", "x.db"]):
        result = CliRunner().invoke(main, command, input=BASIC.read_bytes())
        assert result.exit_code == 2 and "can be read only once" in result.stderr, command


def test_a_sqlite_file_given_as_jsonl_is_still_refused(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    EventStore(db).close()
    result = CliRunner().invoke(main, ["audit", "--events", str(db)])
    assert result.exit_code == 2 and f"use --db {db}" in result.stderr
    piped = CliRunner().invoke(main, ["audit", "--events", "-"], input=db.read_bytes())
    assert piped.exit_code == 2 and "use --db -" in piped.stderr


def test_parallel_import_takes_a_fifo_between_regular_files(tmp_path: Path) -> None:
    """The bulk import cuts regular files into ranges for worker processes, and reads a stream once, here."""
    lines = QUARTER.read_bytes().splitlines(keepends=True)
    third = len(lines) // 3
    first, middle, last = tmp_path / "a.jsonl", lines[third : 2 * third], tmp_path / "c.jsonl"
    first.write_bytes(b"".join(lines[:third]))
    last.write_bytes(b"".join(lines[2 * third :]))
    fifo = _fifo_from(tmp_path, b"".join(middle))
    store = EventStore(tmp_path / "log.db")
    with bounded():
        appended, unchanged, errors = import_streaming(store, [first, fifo, last], workers=2, chunk_bytes=4096)
    store.close()
    assert errors == [] and (appended, unchanged) == (len(lines), 0)
    expected = tmp_path / "expected.db"
    CliRunner().invoke(main, ["import", str(QUARTER), "--db", str(expected)])
    assert sorted(_events(tmp_path / "log.db")) == sorted(_events(expected))
