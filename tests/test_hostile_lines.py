"""An over-long line is refused after reading at most `MAX_LINE_BYTES` + 1 bytes of it, on every path.

`import /dev/zero` used to read one endless line until killed (18.7 GB), and a 500 MB line took
1 GB: lines were read whole before their length was checked. Reading now stops at the limit; the
line is reported (file:line, exit 2) and the rest of its file is not read (it may have no end).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from forewarn.cli import main
from forewarn.events.parse import MAX_LINE_BYTES, parse_files
from forewarn.log.bulk import import_streaming
from forewarn.log.store import EventStore

SAMPLE = Path(__file__).resolve().parents[1] / "forewarn" / "samples" / "basic.jsonl"
GOOD = SAMPLE.read_bytes().splitlines(keepends=True)
TOO_LONG = (f"line too long: more than {MAX_LINE_BYTES} bytes (at most {MAX_LINE_BYTES}); "
            "the rest of the file is not read")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stderr


def over_long(newline: bool = True) -> bytes:
    """A line of valid JSON, a few bytes over the limit."""
    event = json.loads(GOOD[0])
    event["id"], event["meta"] = "long", {"pad": ""}
    text = json.dumps(event).encode()
    pad = MAX_LINE_BYTES + 10 - len(text)
    return text.replace(b'"pad": ""', b'"pad": "' + b"x" * pad + b'"') + (b"\n" if newline else b"")


def test_the_over_long_line_is_valid_json_just_over_the_limit() -> None:
    line = over_long()
    assert MAX_LINE_BYTES < len(line) < MAX_LINE_BYTES + 20 and json.loads(line)["id"] == "long"


def with_long_line(tmp_path: Path) -> Path:
    path = tmp_path / "long.jsonl"
    path.write_bytes(b"".join(GOOD[:3]) + over_long() + b"{not json\n" + b"".join(GOOD[3:]))
    return path


def test_parse_files_stops_at_an_over_long_line(tmp_path: Path) -> None:
    events, errors = parse_files([with_long_line(tmp_path)])
    assert [str(e) for e in errors] == [f"{tmp_path / 'long.jsonl'}:4: {TOO_LONG}"]
    assert len(events) == 3


def test_a_file_without_any_line_end(tmp_path: Path) -> None:
    path = tmp_path / "flat.jsonl"
    path.write_bytes(b"x" * (3 * MAX_LINE_BYTES))
    assert [str(e) for e in parse_files([path])[1]] == [f"{path}:1: {TOO_LONG}"]
    code, err = run("import", str(path), "--db", str(tmp_path / "log.db"))
    assert code == 2 and f"{path}:1: {TOO_LONG}" in err and "Traceback" not in err
    code, err = run("audit", "--events", str(path))
    assert code == 2 and f"{path}:1: {TOO_LONG}" in err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_import_and_audit_report_it_and_change_nothing(
    tmp_path: Path, workers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOREWARN_IMPORT_WORKERS", workers)
    path = with_long_line(tmp_path)
    db = tmp_path / "log.db"
    code, err = run("import", str(path), "--db", str(db))
    assert code == 2
    assert f"{path}:4: {TOO_LONG}" in err and "not json" not in err and "1 input error(s)" in err
    assert EventStore(db).count() == 0
    code, err = run("audit", "--events", str(path))
    assert code == 2 and f"{path}:4: {TOO_LONG}" in err and "1 input error(s)" in err


@pytest.mark.parametrize("chunk", [300, 1000, 5000, MAX_LINE_BYTES // 2, 4 * MAX_LINE_BYTES])
@pytest.mark.parametrize("newline", [True, False])
def test_byte_ranges_stop_at_an_over_long_line_wherever_it_falls(tmp_path: Path, chunk: int, newline: bool) -> None:
    # The bulk import cuts files into ranges at line ends: the search for a line end is bounded too.
    path = tmp_path / "long.jsonl"
    path.write_bytes(b"".join(GOOD[:5]) + over_long(newline) + (b"".join(GOOD[5:]) if newline else b""))
    store = EventStore(tmp_path / "log.db")
    appended, unchanged, errors = import_streaming(store, [path], workers=1, chunk_bytes=chunk)
    assert (appended, unchanged, [str(e) for e in errors]) == (0, 0, [f"{path}:6: {TOO_LONG}"])
    assert store.count() == 0


@pytest.mark.parametrize("reader", ["import", "parse"])
def test_a_pipe_is_read_bounded(tmp_path: Path, reader: str) -> None:
    # A pipe cannot be cut into byte ranges: the import reads it line by line (the stream path).
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def write() -> None:
        with contextlib.suppress(BrokenPipeError), open(fifo, "wb") as out:
            out.write(b"".join(GOOD[:2]))
            for _ in range(8):  # 8 MiB without a line end
                out.write(b" " * MAX_LINE_BYTES)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    if reader == "import":
        store = EventStore(tmp_path / "log.db")
        errors = import_streaming(store, [fifo], workers=1)[2]
        assert store.count() == 0
    else:
        errors = parse_files([fifo])[1]
    writer.join(timeout=30)  # the reader stopped early and closed the pipe: the writer's next write fails
    assert not writer.is_alive()
    assert [str(e) for e in errors] == [f"{fifo}:3: {TOO_LONG}"]


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
@pytest.mark.parametrize("args", [["import", "--db", "{db}", "/dev/zero"], ["audit", "--events", "/dev/zero"]])
def test_an_endless_line_is_refused_within_bounded_memory(tmp_path: Path, args: list[str]) -> None:
    # Run with 1 GiB of address space (the program needs about 170 MiB): reading the endless line
    # whole would fail with MemoryError (exit 3) instead of this input error.
    args = [a.format(db=tmp_path / "log.db") for a in args]
    code = "import sys; from forewarn.cli import main; sys.argv = ['forewarn', *sys.argv[1:]]; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, preexec_fn=_limit_memory
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"/dev/zero:1: {TOO_LONG}" in done.stderr
