"""No traceback, and never exit 1, for what is not a finding: bad values and a full disk, a read-only or
damaged log are clear errors (exit 2, the cause and the fix); anything unexpected is an internal error
(exit 3, one line, the traceback only with --debug)."""

from __future__ import annotations

import json
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from forewarn.cli import main

SAMPLES = Path(__file__).resolve().parents[1] / "forewarn" / "samples"
BASIC = SAMPLES / "basic.jsonl"
LIFECYCLE = SAMPLES / "quarter-lifecycle.jsonl"
PROGRAM = [sys.executable, "-c", "from forewarn.program import main; main()"]
HUGE = "9" * 5000


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def rows(db: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    found = conn.execute("SELECT seq, payload FROM events ORDER BY seq").fetchall()
    conn.close()
    return found


def first_event() -> dict[str, object]:
    event: dict[str, object] = json.loads(BASIC.read_text().splitlines()[0])
    return event


@pytest.mark.parametrize("field", ["id", "at", "meta", "contacts"])
def test_a_5000_digit_integer_is_an_input_error(tmp_path: Path, field: str) -> None:
    line = json.dumps({**first_event(), field: "PLACEHOLDER"}).replace('"PLACEHOLDER"', HUGE)
    if field == "meta":
        line = json.dumps({**first_event(), "meta": {"n": "PLACEHOLDER"}}).replace('"PLACEHOLDER"', HUGE)
    bad = tmp_path / "big.jsonl"
    bad.write_text(line + "\n")
    for command in (["import", str(bad), "--db", str(tmp_path / "log.db")], ["audit", "--events", str(bad)]):
        code, _, err = run(*command)
        assert code == 2, (command, err)
        assert "big.jsonl:1: not valid JSON: number out of range" in err


def _limited(max_bytes: int) -> None:
    """In the child: writing past `max_bytes` of any file fails (EFBIG) instead of killing it (SIGXFSZ)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))


def forewarn_limited(max_bytes: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PROGRAM, *args], capture_output=True, text=True, timeout=300, preexec_fn=lambda: _limited(max_bytes)
    )


def test_a_full_disk_during_import_is_reported_and_nothing_is_appended(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    assert run("import", str(BASIC), "--db", str(db))[0] == 0
    before = rows(db)
    result = forewarn_limited(4096, "import", str(LIFECYCLE), "--db", str(db))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "file-size limit" in result.stderr and str(db) in result.stderr
    assert rows(db) == before


def test_a_full_disk_during_run_is_reported(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    assert run("import", str(LIFECYCLE), "--db", str(db))[0] == 0
    # at this instant the engine sends 7 notices; 40,000 bytes hold the -shm index and a few WAL pages
    result = forewarn_limited(
        40_000, "run", "--once", "--db", str(db), "--now", "2026-01-15T00:00:00Z", "--outbox", str(tmp_path / "out")
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "file-size limit" in result.stderr or "no space left" in result.stderr


def _damaged_copies(tmp_path: Path) -> dict[str, Path]:
    """Copies of a real log, each damaged in one way."""
    log = tmp_path / "log.db"
    assert run("import", str(LIFECYCLE), "--db", str(log))[0] == 0
    data = log.read_bytes()
    page = 8192
    damaged: dict[str, bytes] = {
        "page": data[: 3 * page] + b"\xff" * 4000 + data[3 * page + 4000 :],  # a b-tree page overwritten
        "header": data[:100] + b"\xde\xad" * 50 + data[200:],  # the first page's b-tree header
    }
    at = data.index(b'"type":"maintenance.scheduled"')
    damaged["utf8"] = data[: at + 2] + b"\xff\xfe\xfd\xfc" + data[at + 6 :]  # a payload's text, not UTF-8
    damaged["payload"] = data[: at + 1] + b"xxxx" + data[at + 5 :]  # a payload that is no event
    paths = {}
    for name, content in damaged.items():
        paths[name] = tmp_path / f"{name}.db"
        paths[name].write_bytes(content)
    return paths


def test_a_damaged_log_is_reported_as_damaged(tmp_path: Path) -> None:
    commands = [
        ["audit", "--as-of", "2026-12-31"],
        ["plan", "--as-of", "2026-12-31"],
        ["run", "--once", "--now", "2026-09-01T00:00:00Z", "--outbox", str(tmp_path / "out")],
    ]
    sound = tmp_path / "log.db"
    for name, damaged in _damaged_copies(tmp_path).items():
        for command in commands:
            copy = tmp_path / "work.db"
            for sidecar in ("work.db-wal", "work.db-shm"):  # a log restored alone, not beside another's WAL
                (tmp_path / sidecar).unlink(missing_ok=True)
            shutil.copy(damaged, copy)
            code, out, err = run(*command, "--db", str(copy))
            if name == "page" and code != 2:
                # the damaged page (an index's) is one that command does not read: then it says what it says of
                # the sound log, word for word
                for sidecar in ("work.db-wal", "work.db-shm"):
                    (tmp_path / sidecar).unlink(missing_ok=True)
                shutil.copy(sound, copy)
                assert run(*command, "--db", str(copy))[:2] == (code, out), (name, command, err)
                continue
            assert code == 2, (name, command, err)
            assert "the log is damaged" in err and "restore it from a backup" in err, (name, command, err)


def test_an_audit_refusing_a_damaged_log_leaves_it_closed(tmp_path: Path) -> None:
    """The audit's connection to a log whose first pages cannot be read is closed when it refuses the log, not
    when the error is collected: left open, it keeps the log's -wal file, whose pages then stand for those of
    the next file put at that path (a damaged header read as sound, findings instead of exit 2)."""
    sound = _damaged_copies(tmp_path) and tmp_path / "log.db"
    data = bytearray(sound.read_bytes())
    with sqlite3.connect(sound) as conn:  # the index the audit's read of each event type goes through
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'idx_events_type_at_us'").fetchone()
    conn.close()
    page = 8192
    data[(root - 1) * page : (root - 1) * page + 4000] = b"\xff" * 4000
    copy = tmp_path / "work.db"
    copy.write_bytes(bytes(data))
    result = CliRunner().invoke(main, ["audit", "--as-of", "2026-12-31", "--db", str(copy)])  # kept: its traceback too
    assert result.exit_code == 2 and "the log is damaged" in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.glob("work.db*")) == ["work.db"]


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://tickets.example/x", "javascript:alert(1)", "", "http://"])
def test_ticket_webhook_must_be_http_with_a_host(tmp_path: Path, url: str) -> None:
    db = tmp_path / "log.db"
    assert run("import", str(BASIC), "--db", str(db))[0] == 0
    code, _, err = run("run", "--once", "--db", str(db), "--outbox", str(tmp_path / "out"), "--ticket-webhook", url)
    assert code == 2 and "--ticket-webhook" in err and "http" in err, err
    assert not (tmp_path / "out").exists()


def test_smtp_user_without_a_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FOREWARN_SMTP_PASSWORD", raising=False)
    db = tmp_path / "log.db"
    assert run("import", str(BASIC), "--db", str(db))[0] == 0
    code, _, err = run("run", "--once", "--db", str(db), "--smtp", "127.0.0.1:9", "--smtp-user", "ops")
    assert code == 2 and "FOREWARN_SMTP_PASSWORD" in err


def test_output_into_a_missing_folder_is_refused_before_the_audit(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "report.json"
    code, out, err = run("audit", "--events", str(BASIC), "--format", "json", "-o", str(target))
    assert code == 2 and out == ""
    assert "does not exist" in err and "obligations" not in err  # refused before the work
    assert not target.parent.exists()


def test_an_unexpected_exception_is_an_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import forewarn.audit.findings as findings
    import forewarn.relational.audit as relational_audit

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(findings, "audit", broken)
    monkeypatch.setattr(relational_audit, "audit_relational", broken)  # the relational evaluation's formats
    code, out, err = run("audit", "--events", str(BASIC))
    assert code == 3 and out == ""
    assert err.strip().splitlines() == [
        "forewarn: internal error: RuntimeError: boom second line (run `forewarn --debug ...` for the traceback)"
    ]
    code, _, err = run("--debug", "audit", "--events", str(BASIC))
    assert code == 3 and "Traceback (most recent call last)" in err and 'raise RuntimeError("boom' in err
    assert err.strip().splitlines()[-1] == "forewarn: internal error: RuntimeError: boom second line"


def test_the_quick_plan_leaves_debug_to_the_cli(tmp_path: Path) -> None:
    """`forewarn --debug plan`: the fast path of program.main (made to fail here) is not taken."""
    db = tmp_path / "log.db"
    assert run("import", str(BASIC), "--db", str(db))[0] == 0
    script = (
        "import sys\n"
        "from forewarn import program\n"
        "def refuse(args): raise AssertionError('the fast path was taken')\n"
        "program.quick_plan = refuse\n"
        "program.main()\n"
    )
    args = ["--debug", "plan", "--db", str(db), "--as-of", "2026-12-31", "--format", "json"]
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert '"due"' in result.stdout


def test_an_interrupted_command_does_not_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    import forewarn.audit.findings as findings
    import forewarn.relational.audit as relational_audit

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(findings, "audit", interrupted)
    monkeypatch.setattr(relational_audit, "audit_relational", interrupted)
    code, out, err = run("audit", "--events", str(BASIC))
    assert code == 130 and out == "" and err.strip() == "forewarn: interrupted"
