"""`forewarn import`: all or nothing, idempotent, every error reported, the database untouched on failure."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from forewarn.cli import main
from forewarn.log.store import EventStore

BASIC = Path(__file__).resolve().parents[1] / "forewarn" / "samples" / "basic.jsonl"


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def snapshot(db: Path) -> str:
    """A digest of every row of the log (what 'unchanged' means)."""
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT seq, id, type, at, payload FROM events ORDER BY seq").fetchall()
    conn.close()
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def lines() -> list[str]:
    return BASIC.read_text().splitlines()


def test_import_appends_then_reimport_is_a_no_op(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    code, _, err = run("import", str(BASIC), "--db", str(db))
    assert code == 0 and "appended 18 event(s)" in err
    before = snapshot(db)
    code, _, err = run("import", str(BASIC), "--db", str(db))
    assert code == 0 and "nothing to append: all 18 event(s) already in" in err
    assert snapshot(db) == before


def test_db_from_environment(tmp_path: Path) -> None:
    db = tmp_path / "env.db"
    code, _, _ = run("import", str(BASIC), env={"FOREWARN_DB": str(db)})
    assert code == 0 and EventStore(db).count() == 18


def test_rejected_import_changes_nothing_and_reports_every_error(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(lines()[:4]) + "\n")
    assert run("import", str(good), "--db", str(db))[0] == 0
    before = snapshot(db)
    rest = [json.loads(x) for x in lines()[4:]]
    rest[0]["kind"] = "advanced_notice"  # line 1: unknown enum value
    rest[2]["at"] = "2026-10-19T23:30:00"  # line 3: no offset
    rest[5]["maintenance"] = "mx-404"  # line 6: dangling reference
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(e) + "\n" for e in rest))
    also_good = tmp_path / "also-good.jsonl"
    also_good.write_text("")
    code, _, err = run("import", str(also_good), str(bad), "--db", str(db))
    assert code == 2
    assert "bad.jsonl:1: communication.sent 'e5': field 'kind':" in err
    assert "bad.jsonl:3: communication.sent 'e7': field 'at': must be an RFC 3339 timestamp with offset" in err
    assert "nothing was changed" in err
    assert snapshot(db) == before


def test_reference_errors_are_found_after_a_clean_parse(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    events = [json.loads(x) for x in lines()]
    events[8]["maintenance"] = "mx-404"
    bad = tmp_path / "dangling.jsonl"
    bad.write_text("".join(json.dumps(e) + "\n" for e in events))
    code, _, err = run("import", str(bad), "--db", str(db))
    assert code == 2 and "dangling.jsonl:9:" in err and "mx-404" in err
    assert EventStore(db).count() == 0


def test_same_id_different_content_against_the_log(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    assert run("import", str(BASIC), "--db", str(db))[0] == 0
    before = snapshot(db)
    changed = [json.loads(lines()[0])]
    changed[0]["name"] = "Northwind Traders"
    f = tmp_path / "changed.jsonl"
    f.write_text(json.dumps(changed[0]) + "\n")
    code, _, err = run("import", str(f), "--db", str(db))
    assert code == 2 and "changed.jsonl:1:" in err and "'e1'" in err
    assert snapshot(db) == before


def test_split_import_equals_one_import(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("\n".join(lines()[:9]) + "\n")
    b.write_text("\n".join(lines()[9:]) + "\n")
    one, two = tmp_path / "one.db", tmp_path / "two.db"
    assert run("import", str(BASIC), "--db", str(one))[0] == 0
    assert run("import", str(a), "--db", str(two))[0] == 0
    assert run("import", str(b), "--db", str(two))[0] == 0
    assert snapshot(one) == snapshot(two)


def test_the_log_is_append_only(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    run("import", str(BASIC), "--db", str(db))
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM events")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE events SET type = 'x'")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_not_a_database(tmp_path: Path) -> None:
    db = tmp_path / "garbage.db"
    db.write_bytes(b"this is not sqlite" * 100)
    code, _, err = run("import", str(BASIC), "--db", str(db))
    assert code == 2 and "not a forewarn event log" in err


def test_missing_file(tmp_path: Path) -> None:
    code, _, err = run("import", str(tmp_path / "nope.jsonl"), "--db", str(tmp_path / "x.db"))
    assert code == 2 and "no such file" in err


def test_timestamps_outside_the_calendars_range_are_input_errors(tmp_path: Path) -> None:
    """Found by fuzzing: year 0001 passed validation and crashed the business calendar."""
    bad = tmp_path / "edge.jsonl"
    first = json.loads(lines()[0])
    bad.write_text(json.dumps({**first, "at": "0001-01-01T00:00:00Z"}) + "\n")
    code, _, err = run("audit", "--events", str(bad))
    assert code == 2 and "edge.jsonl:1: customer.upserted 'e1': field 'at': must be between 1900 and 2199" in err
