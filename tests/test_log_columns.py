"""The log's typed columns (schema 3): what they hold, the upgrade of a schema 2 log, and the audit reading them.

`tests/data/log-schema2.db` was written by forewarn at schema 2 (an import of a synthetic quarter, every event
type, labels); `log-schema2.audit.json` is that forewarn's `audit --format json --as-of 2026-04-15T00:00:00Z`.
"""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from forewarn.cli import main
from forewarn.log import schema
from forewarn.log.columns import TYPED_NAMES
from forewarn.log.source import read_store
from forewarn.log.store import open_store
from forewarn.relational import tables

DATA = Path(__file__).resolve().parent / "data"
SCHEMA2 = DATA / "log-schema2.db"
AS_OF = "2026-04-15T00:00:00Z"


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def old_log(tmp_path: Path) -> Path:
    db = tmp_path / "old.db"
    shutil.copy(SCHEMA2, db)
    return db


def rows(db: Path) -> tuple[list[tuple[object, ...]], list[str], list[tuple[object, ...]]]:
    conn = sqlite3.connect(db)
    try:
        return (
            conn.execute("SELECT * FROM events ORDER BY seq").fetchall(),
            [r[1] for r in conn.execute("PRAGMA table_info(events)")],
            conn.execute("SELECT * FROM meta").fetchall(),
        )
    finally:
        conn.close()


def test_a_schema_2_log_is_refused_by_reading_commands_with_how_to_upgrade_it(tmp_path: Path) -> None:
    db = old_log(tmp_path)
    before = rows(db)
    code, _, err = run("audit", "--db", str(db), "--as-of", AS_OF)
    assert code == 2 and f"this log is schema 2, this forewarn reads schema {schema.CURRENT}" in err
    assert f"run `forewarn upgrade --db {db}`" in err
    assert rows(db) == before


def test_the_upgrade_fills_the_columns_as_a_fresh_import_of_the_same_events_does(tmp_path: Path) -> None:
    db = old_log(tmp_path)
    code, _, err = run("upgrade", "--db", str(db))
    assert code == 0 and f"from schema 2 to {schema.CURRENT}" in err
    upgraded, columns, meta = rows(db)
    assert set(TYPED_NAMES) <= set(columns) and meta == [("schema_version", str(schema.CURRENT))]
    # the same events, as JSONL in recording order, imported into a new log: every row identical, hashes included
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text("".join(row[columns.index("payload")] + "\n" for row in upgraded))
    fresh = tmp_path / "fresh.db"
    assert run("import", str(jsonl), "--db", str(fresh))[0] == 0
    fresh_rows, fresh_columns, _ = rows(fresh)
    assert fresh_columns == columns and fresh_rows == upgraded
    assert run("verify", "--db", str(db))[0] == 0
    assert run("upgrade", "--db", str(db))[0] == 0 and rows(db)[0] == upgraded  # once: a second one is a no-op


def test_the_upgraded_log_audits_as_the_forewarn_that_wrote_it_did(tmp_path: Path) -> None:
    db = old_log(tmp_path)
    assert run("upgrade", "--db", str(db))[0] == 0
    expected = (DATA / "log-schema2.audit.json").read_text()
    code, out, _ = run("audit", "--db", str(db), "--as-of", AS_OF, "--format", "json")
    assert code == 1 and out == expected


def test_an_import_into_a_schema_2_log_upgrades_it_first(tmp_path: Path) -> None:
    db = old_log(tmp_path)
    line = ('{"id": "later-1", "type": "customer.upserted", "at": "2026-05-01T00:00:00Z", "customer": "umbrella",'
            ' "name": "Umbrella", "plan": "free", "contacts": ["it@umbrella.example"]}\n')
    (tmp_path / "more.jsonl").write_text(line)
    code, _, err = run("import", str(tmp_path / "more.jsonl"), "--db", str(db))
    assert code == 0, err
    upgraded, columns, meta = rows(db)
    assert meta == [("schema_version", str(schema.CURRENT))]
    last = dict(zip(columns, upgraded[-1], strict=True))
    assert (last["id"], last["plan"], last["contacts"], last["timezone"]) == (
        "later-1", "free", '["it@umbrella.example"]', None  # UTC: the default, left out of the payload
    )
    assert run("verify", "--db", str(db))[0] == 0


def test_a_failed_upgrade_to_schema_3_changes_nothing(tmp_path: Path) -> None:
    db = old_log(tmp_path)
    conn = sqlite3.connect(db)  # an altered log: a payload that is no event any more
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("UPDATE events SET payload = '{\"id\": \"x\"}' WHERE seq = 100")
    conn.execute(schema.TRIGGERS["events_no_update"])
    conn.commit()
    conn.close()
    before = rows(db)
    code, _, err = run("upgrade", "--db", str(db))
    assert code == 2 and "the event at seq 100 is not a valid event" in err and "nothing was changed" in err
    assert rows(db) == before


def test_the_typed_columns_are_append_only(tmp_path: Path) -> None:
    db = old_log(tmp_path)
    assert run("upgrade", "--db", str(db))[0] == 0
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE events SET kind = 'other' WHERE type = 'communication.sent'")
    conn.close()


def test_ev_from_the_typed_columns_is_ev_from_the_payloads(tmp_path: Path) -> None:
    """The two ways of making `ev` (the log's columns through ADBC; payloads typed by json_transform, as the
    JSONL path does) give the same table, row for row."""
    db = old_log(tmp_path)
    assert run("upgrade", "--db", str(db))[0] == 0
    as_of = datetime(2026, 4, 15, tzinfo=UTC)
    from_columns = tables.connect()
    closers: list = []
    tables.load_payloads(from_columns, tables.read_store_payloads(db, as_of, None, [], closers), as_of)
    for close in closers:
        close()
    store = open_store(db)
    try:
        events = read_store(store)
    finally:
        store.close()
    from_payloads = tables.connect()
    tables.load_payloads(from_payloads, tables.payloads_stream(events), as_of)
    try:
        for table in ("ev", "comms", "tickets", "replies", "customer_versions"):
            query = f"SELECT * FROM {table} ORDER BY pos"
            a, b = from_columns.execute(query).fetchall(), from_payloads.execute(query).fetchall()
            names = [d[0] for d in from_columns.description]
            assert names == [d[0] for d in from_payloads.execute(query).description]
            if table == "ev":
                seq = names.index("seq")  # the JSONL path numbers its events itself
                a = [r[:seq] + r[seq + 1:] for r in a]
                b = [r[:seq] + r[seq + 1:] for r in b]
            assert a == b and a, table
    finally:
        tables.close(from_columns)
        tables.close(from_payloads)


def test_verify_reports_a_column_that_no_longer_says_what_the_payload_does(tmp_path: Path) -> None:
    db = old_log(tmp_path)
    assert run("upgrade", "--db", str(db))[0] == 0
    assert run("verify", "--db", str(db))[0] == 0
    conn = sqlite3.connect(db)  # the chain is intact (it covers the payload); the audit reads the column
    conn.execute("DROP TRIGGER events_no_update")
    seq = conn.execute("SELECT min(seq) FROM events WHERE type = 'communication.sent'").fetchone()[0]
    conn.execute("UPDATE events SET kind = 'other' WHERE seq = ?", [seq])
    conn.execute(schema.TRIGGERS["events_no_update"])
    conn.commit()
    conn.close()
    code, out, _ = run("verify", "--db", str(db))
    assert code == 1 and f"seq {seq}" in out and "columns changed: column(s) kind do not hold" in out


def test_an_upgrade_of_a_log_another_process_writes_says_so(tmp_path: Path) -> None:
    db = old_log(tmp_path)
    before = rows(db)
    writer = sqlite3.connect(db)
    writer.execute("BEGIN IMMEDIATE")  # as an import or another upgrade holds it
    try:
        code, _, err = run("upgrade", "--db", str(db))
    finally:
        writer.rollback()
        writer.close()
    assert code == 2 and "the log is being written by another process" in err and "not a forewarn" not in err
    assert rows(db) == before
