"""The log's hash chain, `forewarn verify`, the fingerprint in reports, and schema upgrades."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import sqlite3
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from forewarn.cli import main
from forewarn.log import bulk, schema, source
from forewarn.log.source import import_files
from forewarn.log.store import EventStore

ROOT = Path(__file__).resolve().parents[1]
QUARTER = ROOT / "forewarn" / "samples" / "quarter.jsonl"
LIFECYCLE = ROOT / "forewarn" / "samples" / "quarter-lifecycle.jsonl"
SCHEMA1 = ROOT / "tests" / "data" / "log-schema1.db"
"""forewarn/samples/quarter.jsonl imported by forewarn before the hash chain (schema 1)."""
AS_OF = "2026-07-01T00:00:00Z"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def expected_chain(db: Path) -> list[tuple[int, bytes]]:
    """(seq, hash) of every event by the documented definition, computed here independently."""
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT seq, payload FROM events ORDER BY seq").fetchall()
    conn.close()
    head, out = bytes(32), []
    for seq, payload in rows:
        head = hashlib.sha256(head + struct.pack(">Q", seq) + payload.encode("utf-8")).digest()
        out.append((seq, head))
    return out


def stored_chain(db: Path) -> list[tuple[int, bytes]]:
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT seq, hash FROM events ORDER BY seq").fetchall()
    kinds = {kind for (kind,) in conn.execute("SELECT DISTINCT typeof(hash) FROM events")}
    conn.close()
    assert kinds <= {"blob"}  # 32 bytes, however they were bound
    return rows


def imported(tmp_path: Path, name: str = "log.db", src: Path = QUARTER) -> Path:
    db = tmp_path / name
    code, _, err = run("import", str(src), "--db", str(db))
    assert code == 0, err
    return db


def tamper(db: Path, *statements: str) -> None:
    """Run SQL on the log with the append-only triggers out of the way, then put them back as they were."""
    conn = sqlite3.connect(db)
    for name in schema.TRIGGERS:
        conn.execute(f"DROP TRIGGER {name}")
    for sql in statements:
        conn.execute(sql)
    schema.create_guards(conn)
    conn.commit()
    conn.close()


def verify(db: Path, *extra: str) -> tuple[int, str, str]:
    return run("verify", "--db", str(db), *extra)


# --------------------------------------------------------------------------- the chain


def test_every_appended_event_is_chained_by_the_documented_definition(tmp_path: Path) -> None:
    db = imported(tmp_path)
    chain = stored_chain(db)
    assert len(chain) == 385 and chain == expected_chain(db)
    code, out, _ = verify(db)
    assert code == 0 and out.startswith("intact: 385 events, seq 385, head sha256:" + chain[-1][1].hex())


@pytest.mark.parametrize("bulk_rows", [1, 10**9])
def test_the_chain_does_not_depend_on_how_events_were_appended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bulk_rows: int
) -> None:
    """Shuffled input in several imports (rows staged and re-placed, bulk mode or not) and engine records."""
    monkeypatch.setattr(bulk, "CHUNK_BYTES", 3_000)
    monkeypatch.setattr(bulk, "BULK_MIN_ROWS", bulk_rows)
    lines = sorted(QUARTER.read_text().splitlines(keepends=True), key=lambda x: json.loads(x)["at"])
    parts = [rotated(lines[:100]), rotated(lines[100:300]), rotated(lines[300:])]
    db = tmp_path / "steps.db"
    for i, part in enumerate(parts):
        src = tmp_path / f"part{i}.jsonl"
        src.write_text("".join(part))
        store = EventStore(db)
        import_files(store, [src], workers=1)
        store.close()
    assert stored_chain(db) == expected_chain(db)
    outbox = tmp_path / "outbox"
    life = imported(tmp_path, "life.db", LIFECYCLE)
    code, _, err = run("run", "--once", "--now", "2026-02-20T00:00:00Z", "--db", str(life), "--outbox", str(outbox))
    assert code in (0, 1) and "failed 0" in err, err  # 1: what was due weeks ago went out late, as the alerts say
    chain = stored_chain(life)
    assert len(chain) > 78 and chain == expected_chain(life)  # the engine recorded communications, chained
    assert verify(life)[0] == 0


def rotated(lines: list[str]) -> list[str]:
    """The later half first (at a change of `at`): the import stages rows and re-places the first ones."""
    ats = [json.loads(x)["at"] for x in lines]
    cut = next(i for i in range(len(lines) // 2, len(lines)) if ats[i] != ats[i - 1])
    return lines[cut:] + lines[:cut]


# --------------------------------------------------------------------------- verify: each kind of tampering


def test_an_edited_payload_is_named(tmp_path: Path) -> None:
    db = imported(tmp_path)
    tamper(db, "UPDATE events SET payload = replace(payload, '\"at\"', '\"at\" ') WHERE seq = 40")
    ident = sqlite3.connect(db).execute("SELECT id FROM events WHERE seq = 40").fetchone()[0]
    code, out, _ = verify(db)
    assert code == 1
    assert out.splitlines() == [
        f"broken: seq 40 (id {ident}): payload changed: the payload does not match its hash"
        " (the chain goes on from the hash)"
    ]


def test_a_deleted_event_is_named(tmp_path: Path) -> None:
    db = imported(tmp_path)
    next_id = sqlite3.connect(db).execute("SELECT id FROM events WHERE seq = 101").fetchone()[0]
    tamper(db, "DELETE FROM events WHERE seq = 100")
    code, out, _ = verify(db)
    assert code == 1
    assert out.splitlines() == [
        f"broken: seq 100: deleted: seq 100 missing: 1 event(s) deleted before seq 101 (id {next_id})"
    ]


@pytest.mark.parametrize("with_hashes", [True, False])
def test_swapped_events_are_named(tmp_path: Path, with_hashes: bool) -> None:
    db = imported(tmp_path)
    ids = dict(sqlite3.connect(db).execute("SELECT seq, id FROM events WHERE seq IN (50, 60)").fetchall())
    if with_hashes:  # whole rows change places
        statements = [
            "UPDATE events SET seq = -1 WHERE seq = 50",
            "UPDATE events SET seq = 50 WHERE seq = 60",
            "UPDATE events SET seq = 60 WHERE seq = -1",
        ]
        now_at_50, now_at_60 = ids[60], ids[50]
    else:  # the contents change places, the hashes stay
        columns = ["id", "type", "at", "at_us", "subject", "customer", "entity_kind", "entity_id", "payload"]
        sets = ", ".join(f"{c} = (SELECT {c} FROM old WHERE old.seq = 110 - events.seq)" for c in columns)
        statements = [
            "CREATE TEMP TABLE old AS SELECT * FROM events WHERE seq IN (50, 60)",
            "UPDATE events SET id = id || '~' WHERE seq IN (50, 60)",  # ids are unique: out of the way first
            f"UPDATE events SET {sets} WHERE seq IN (50, 60)",
        ]
        now_at_50, now_at_60 = ids[60], ids[50]
    tamper(db, *statements)
    code, out, _ = verify(db)
    assert code == 1
    assert out.splitlines() == [
        f"broken: seq 50 (id {now_at_50}): reordered: the event recorded at seq 50 is now at seq 60 (id {now_at_60})"
    ]


def test_a_missing_or_altered_trigger_is_named(tmp_path: Path) -> None:
    db = imported(tmp_path)
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER events_no_delete")
    conn.commit()
    code, out, _ = verify(db)
    assert code == 1
    assert out.splitlines() == [
        "broken: trigger missing: the append-only trigger events_no_delete is gone: events can change"
    ]
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("CREATE TRIGGER events_no_update BEFORE UPDATE OF hash ON events BEGIN SELECT 1; END")
    conn.execute("CREATE TRIGGER sneaky AFTER INSERT ON events BEGIN SELECT 1; END")
    conn.commit()
    conn.close()
    code, out, _ = verify(db)
    assert code == 1
    assert [line.split(":")[1].strip() for line in out.splitlines()] == [
        "trigger altered", "trigger missing", "unexpected trigger"
    ]


def test_an_unchained_append_and_a_truncated_log(tmp_path: Path) -> None:
    db = imported(tmp_path)
    fingerprint = verify(db)[1].split(", seq ")[1].split(";")[0]  # "385, head sha256:..."
    expect = fingerprint.replace(", head ", ":")
    assert verify(db, "--expect", expect)[0] == 0
    tamper(db, "DELETE FROM events WHERE seq = 385")
    code, out, _ = verify(db)
    assert code == 0  # a shorter log is a valid chain: only its fingerprint tells
    code, out, _ = verify(db, "--expect", expect)
    assert code == 1 and "not the expected log: the log ends at seq 384, the expected one at seq 385" in out
    code, out, _ = verify(db, "--expect", "300:sha256:" + "0" * 64)
    assert code == 1 and out.startswith("broken: seq 300 (id ") and "not the expected log" in out
    conn = sqlite3.connect(db)
    conn.execute(
        "INSERT INTO events (id, type, at, at_us, payload) SELECT id || '-copy', type, at, at_us, payload"
        " FROM events WHERE seq = 1"
    )
    conn.commit()
    conn.close()
    code, out, _ = verify(db)
    assert code == 1 and "seq 385 (id " in out and "hash missing" in out
    assert run("verify", "--db", str(db), "--expect", "x")[0] == 2


def test_verify_exit_2_for_what_is_not_a_log(tmp_path: Path) -> None:
    text = tmp_path / "notes.db"
    text.write_text("hello\n" * 100)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    for path in (text, other):
        code, _, err = verify(path)
        assert code == 2 and "not a forewarn event log" in err
    code, _, err = verify(tmp_path / "missing.db")
    assert code == 2 and "no event log" in err


# --------------------------------------------------------------------------- the fingerprint in reports


def test_every_report_states_the_log_fingerprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = imported(tmp_path)
    seq, head = stored_chain(db)[-1]
    head_text = "sha256:" + head.hex()
    reports = {}
    for fmt in ("json", "table", "markdown", "html", "sarif", "junit", "csv"):
        code, out, _ = run("audit", "--db", str(db), "--as-of", AS_OF, "--format", fmt)
        assert code == 1  # the sample has violations
        reports[fmt] = out
        assert head_text in out, fmt
    assert json.loads(reports["json"])["log"] == {"seq": seq, "head": head_text}
    assert json.loads(reports["sarif"])["runs"][0]["properties"]["log"] == {"seq": seq, "head": head_text}
    assert f'<property name="log-head" value="{head_text}"/>' in reports["junit"]
    rows = list(csv.DictReader(io.StringIO(reports["csv"])))
    assert rows and all(r["log_seq"] == str(seq) and r["log_head"] == head_text for r in rows)
    # an in-memory log (--events) has the fingerprint that importing it into an empty log gives: whether its
    # checks run here or in a forked process, and with identical repeats dropped
    for checks_apart in (10**9, 1):
        monkeypatch.setattr(source, "CHECKS_APART_MIN", checks_apart)
        for files in ([QUARTER], [QUARTER, QUARTER]):
            code, out, _ = run("audit", *[f"--events={f}" for f in files], "--as-of", AS_OF, "--format", "json")
            assert json.loads(out)["log"] == {"seq": seq, "head": head_text}
    # and the report of the --db log is tied to it: an append changes it
    extra = tmp_path / "extra.jsonl"
    first = json.loads(QUARTER.read_text().splitlines()[0])
    extra.write_text(json.dumps(dict(first, id="late-upsert", at="2026-06-30T00:00:00Z")) + "\n")
    assert run("import", str(extra), "--db", str(db))[0] == 0
    code, out, _ = run("audit", "--db", str(db), "--as-of", AS_OF, "--format", "json")
    assert json.loads(out)["log"]["seq"] == seq + 1 and json.loads(out)["log"]["head"] != head_text


# --------------------------------------------------------------------------- schema upgrades


def old_log(tmp_path: Path) -> Path:
    db = tmp_path / "old.db"
    shutil.copyfile(SCHEMA1, db)
    return db


def dump(db: Path) -> tuple[list[object], list[object], list[object]]:
    conn = sqlite3.connect(db)
    try:
        return (
            conn.execute("SELECT * FROM events ORDER BY seq").fetchall(),
            sorted(conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall()),
            conn.execute("SELECT * FROM meta").fetchall(),
        )
    finally:
        conn.close()


def test_read_only_commands_refuse_an_old_log_and_say_how_to_upgrade_it(tmp_path: Path) -> None:
    db = old_log(tmp_path)
    before = dump(db)
    assert before[2] == [("schema_version", "1")]
    for command in (["audit"], ["plan"], ["verify"]):
        code, _, err = run(*command, "--db", str(db), *(["--as-of", AS_OF] if command != ["verify"] else []))
        assert code == 2, command
        reads = f"this forewarn reads schema {schema.CURRENT}"
        assert f"this log is schema 1, {reads}: run `forewarn upgrade --db {db}`" in err
    assert dump(db) == before


def test_upgrade_then_the_log_verifies_and_audits_as_a_fresh_import(tmp_path: Path) -> None:
    db = old_log(tmp_path)
    code, _, err = run("upgrade", "--db", str(db))
    assert code == 0 and "upgraded" in err and f"from schema 1 to {schema.CURRENT}" in err
    assert dump(db)[2] == [("schema_version", str(schema.CURRENT))]
    assert stored_chain(db) == expected_chain(db)
    assert verify(db)[0] == 0
    fresh = imported(tmp_path, "fresh.db")
    assert verify(db)[1] == verify(fresh)[1]  # the same events in the same order: the same fingerprint
    for fmt in ("json", "csv"):
        old_report = run("audit", "--db", str(db), "--as-of", AS_OF, "--format", fmt)
        fresh_report = run("audit", "--db", str(fresh), "--as-of", AS_OF, "--format", fmt)
        assert old_report == fresh_report
    code, _, err = run("upgrade", "--db", str(db))
    assert code == 0 and f"is schema {schema.CURRENT} already" in err


def test_import_and_run_upgrade_an_old_log_first(tmp_path: Path) -> None:
    db = old_log(tmp_path)
    code, _, err = run("import", str(QUARTER), "--db", str(db))
    assert code == 0 and "nothing to append" in err
    assert dump(db)[2] == [("schema_version", str(schema.CURRENT))] and verify(db)[0] == 0
    db = old_log(tmp_path)
    code, _, err = run("run", "--once", "--now", "2026-07-01T00:00:00Z", "--db", str(db), "--outbox",
                       str(tmp_path / "outbox"))
    assert code in (0, 1) and "failed 0" in err, err  # 1: what was missed goes out late, as the alerts say
    assert dump(db)[2] == [("schema_version", str(schema.CURRENT))] and verify(db)[0] == 0


def test_a_failed_upgrade_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = old_log(tmp_path)
    before = dump(db)
    real = schema.MIGRATIONS[0]

    def breaks_halfway(conn: sqlite3.Connection) -> None:
        real(conn)  # the column added and every hash written: then it fails
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(schema, "MIGRATIONS", [breaks_halfway])
    code, _, err = run("upgrade", "--db", str(db))
    assert code == 2 and err == (
        f"forewarn: error: {db}: the upgrade from schema 1 to {schema.CURRENT} failed (disk I/O error);"
        " nothing was changed\n"
    )
    assert dump(db) == before  # rows, schema (triggers and all) and version as they were
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM events")
    conn.close()


def test_migrations_run_in_order_in_one_transaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new schema is one more function in MIGRATIONS: an old log gets every step it lacks, in order."""
    db = old_log(tmp_path)
    ran: list[int] = []

    def next_step(conn: sqlite3.Connection) -> None:
        assert conn.in_transaction
        assert "hash" in {r[1] for r in conn.execute("PRAGMA table_info(events)")}  # v2 ran first
        assert not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'trigger'").fetchall()  # guards down
        conn.execute("ALTER TABLE events ADD COLUMN extra TEXT")
        assert "communication" in {r[1] for r in conn.execute("PRAGMA table_info(events)")}  # and v3
        ran.append(schema.CURRENT)

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, next_step])
    monkeypatch.setattr(schema, "CURRENT", schema.CURRENT + 1)
    assert schema.upgrade(sqlite3.connect(db), str(db)) == (1, schema.CURRENT)
    assert ran == [schema.CURRENT]
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT value FROM meta").fetchone() == (str(schema.CURRENT),)
    assert sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")) == sorted(
        schema.TRIGGERS
    )
    conn.close()


def test_the_quick_plan_does_not_show_an_old_logs_published_plan(tmp_path: Path) -> None:
    from forewarn.program import quick_plan

    db = imported(tmp_path)
    assert run("plan", "--db", str(db), "--as-of", AS_OF)[0] == 0  # evaluates and publishes the plan
    args = ["--db", str(db), "--as-of", AS_OF, "--format", "json"]
    assert quick_plan(args)  # shown from the published plan
    conn = sqlite3.connect(db)
    conn.execute("UPDATE meta SET value = '1'")
    conn.commit()
    conn.close()
    assert not quick_plan(args)  # left to the CLI, which says how to upgrade (exit 2)
    code, _, err = run("plan", *args)
    assert code == 2 and "this log is schema 1" in err


def test_a_newer_log_is_refused(tmp_path: Path) -> None:
    db = imported(tmp_path)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE meta SET value = '99'")
    conn.commit()
    conn.close()
    for args in (["import", str(QUARTER)], ["audit"], ["verify"], ["upgrade"]):
        code, _, err = run(*args, "--db", str(db))
        assert code == 2 and "this log is schema 99, written by a newer forewarn" in err, args
