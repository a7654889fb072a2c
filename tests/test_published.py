"""The published plan: `forewarn plan` from the database equals a fresh evaluation, and is only used while current."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

import forewarn
from forewarn.cli import main
from forewarn.engine import published
from forewarn.engine.replay import MemoryDelivery
from forewarn.engine.runner import Engine
from forewarn.log.source import import_files
from forewarn.log.store import EventStore
from forewarn.policy.files import default_rules_dir
from forewarn.policy.loader import load_policy

SAMPLE = Path(forewarn.__file__).parent / "samples" / "quarter-lifecycle.jsonl"
POLICY = load_policy()
FROM_PUBLISHED = "from the plan published in the log"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def make_db(tmp_path: Path, *files: Path) -> Path:
    db = tmp_path / "log.db"
    store = EventStore(db)
    import_files(store, list(files or [SAMPLE]), POLICY.ids)
    store.close()
    return db


def utc(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def plan_db(db: Path, as_of: str, *more: str) -> tuple[str, bool]:
    code, out, err = run("plan", "--db", str(db), "--as-of", as_of, "--format", "json", *more)
    assert code == 0, err
    return out, FROM_PUBLISHED in err


def plan_events(as_of: str, *files: Path) -> str:
    args = [a for f in (files or (SAMPLE,)) for a in ("--events", str(f))]
    code, out, err = run("plan", *args, "--as-of", as_of, "--format", "json")
    assert code == 0, err
    return out


def instants() -> list[str]:
    """As-of instants across the sample quarter, and at and around its plans' deadlines (horizon boundaries)."""
    times = [datetime(2026, 1, 5, tzinfo=UTC) + timedelta(days=9 * i, hours=5 * i) for i in range(10)]
    plan = json.loads(plan_events(utc(times[3])))
    for o in (plan["due"] + plan["upcoming"])[:3]:
        deadline = datetime.fromisoformat(o["not_after"].replace("Z", "+00:00"))
        times += [deadline - timedelta(seconds=1), deadline, deadline + timedelta(seconds=1)]
    return [utc(t) for t in sorted(set(times))]


def test_plans_from_the_database_equal_fresh_evaluations_at_every_instant(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    hits = 0
    for as_of in instants():
        fresh = plan_events(as_of)
        first, _ = plan_db(db, as_of)
        again, from_published = plan_db(db, as_of)
        assert first == fresh == again, as_of
        assert from_published, f"the plan as of {as_of} was evaluated and published: the next one must use it"
        assert fresh == orjson.dumps(json.loads(fresh), option=orjson.OPT_INDENT_2).decode() + "\n"
        hits += 1
    assert hits > 10


def test_a_later_instant_before_the_horizon_uses_the_published_plan(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    plan_db(db, "2026-01-20T09:00:00Z")
    later, from_published = plan_db(db, "2026-01-20T09:00:01Z")
    assert from_published
    assert later == plan_events("2026-01-20T09:00:01Z")


def test_an_earlier_instant_is_evaluated(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    plan_db(db, "2026-02-10T09:00:00Z")
    earlier, from_published = plan_db(db, "2026-02-01T09:00:00Z")
    assert not from_published
    assert earlier == plan_events("2026-02-01T09:00:00Z")


def test_an_append_invalidates_it(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    as_of = "2026-02-10T09:00:00Z"
    plan_db(db, as_of)
    extra = tmp_path / "extra.jsonl"
    first = json.loads(SAMPLE.read_text().splitlines()[0])
    assert first["type"] == "customer.upserted"
    moved = {**first, "id": "moved", "at": "2026-02-01T00:00:00Z", "timezone": "Asia/Tokyo"}
    extra.write_text(json.dumps(moved) + "\n")
    code, _out, err = run("import", str(extra), "--db", str(db))
    assert code == 0, err
    after, from_published = plan_db(db, as_of)
    assert not from_published
    assert after == plan_events(as_of, SAMPLE, extra)
    assert plan_db(db, as_of) == (after, True)


def test_other_rules_do_not_use_it(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    as_of = "2026-02-10T09:00:00Z"
    plan_db(db, as_of)
    rules = tmp_path / "rules"
    shutil.copytree(default_rules_dir(), rules)
    notice = rules / "advance-notice.yaml"
    notice.write_text(notice.read_text() + "\n# edited\n")
    _out, from_published = plan_db(db, as_of, "--rules", str(rules))
    assert not from_published
    assert plan_db(db, as_of, "--rules", str(rules))[1]


def test_the_engine_publishes_what_it_evaluates(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    store = EventStore(db)
    engine = Engine(store, POLICY, MemoryDelivery(), publish_key=published.plan_key(default_rules_dir()))
    at = datetime(2026, 2, 10, 9, tzinfo=UTC)
    assert engine.run_once(at).sent  # sends and records: the plan it published is out of date
    assert not plan_db(db, utc(at))[1]
    engine.plan(at + timedelta(minutes=1))  # the next pass evaluates the new log, and publishes it
    store.close()
    out, from_published = plan_db(db, utc(at + timedelta(minutes=1)))
    assert from_published
    assert json.loads(out)["as_of"] == utc(at + timedelta(minutes=1))


def publishing_engine(tmp_path: Path) -> tuple[Path, EventStore, Engine, datetime]:
    """A log of the sample quarter and an engine that publishes its plans, its clock stopped on a busy day."""
    db = make_db(tmp_path)
    store = EventStore(db)
    at = datetime(2026, 2, 10, 9, tzinfo=UTC)
    key = published.plan_key(default_rules_dir())
    return db, store, Engine(store, POLICY, MemoryDelivery(), clock=lambda: at, publish_key=key), at


def run_forever_here(
    engine: Engine, stop: threading.Event, report: Callable[[object], None], poll: float = 30.0
) -> None:
    """`engine.run_forever` in this thread, stopped after 30 s at the latest, its signal handlers undone."""
    guard = threading.Timer(30, stop.set)
    guard.start()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        engine.run_forever(poll=poll, stop=stop, report=report)
    finally:
        guard.cancel()
        guard.join()
        for sig, handler in handlers.items():  # run_forever installs its own
            signal.signal(sig, handler)


def test_the_running_engine_publishes_the_log_it_has_just_appended_to(tmp_path: Path) -> None:
    db, store, engine, at = publishing_engine(tmp_path)
    stop = threading.Event()
    passes = []

    def report(result: object) -> None:
        passes.append(result)
        stop.set()

    run_forever_here(engine, stop, report)
    store.close()
    assert passes[0].sent  # type: ignore[attr-defined]
    out, from_published = plan_db(db, utc(at))  # the pass sent and recorded: published after that
    assert from_published
    assert out == plan_events(utc(at), *export(db, tmp_path))


def test_an_append_by_another_process_wakes_the_sleeping_engine(tmp_path: Path) -> None:
    """A critical incident declared while `run` sleeps (poll: an hour) is notified and published at once."""
    from forewarn.events import parse_lines

    db, store, engine, at = publishing_engine(tmp_path)
    stop = threading.Event()
    passes: list = []
    declared = {"id": "woken-1", "type": "incident.declared", "at": utc(at), "incident": "inc-woken",
                "title": "Outage", "severity": "critical", "customers": "all", "summary": "Nothing loads"}

    def report(result: object) -> None:
        passes.append((time.monotonic(), result))
        if len(passes) == 1:  # after the pass read the log, before the engine sleeps (found in review)
            other = EventStore(db)  # another connection, as another process has
            parsed, errors = parse_lines([json.dumps(declared)], "<test>")
            assert not errors
            other.append(parsed)
            other.close()
        else:
            stop.set()

    run_forever_here(engine, stop, report, poll=3600)  # without the watch, it would sleep an hour
    store.close()
    assert len(passes) == 2, "the engine slept through the append"
    (first_at, _first), (second_at, second) = passes
    assert second_at - first_at < 10
    conn = sqlite3.connect(db)
    about = [json.loads(p).get("incident") for (p,) in conn.execute(
        "SELECT payload FROM events WHERE type = 'communication.sent' AND seq > (SELECT seq FROM events WHERE id = ?)",
        (declared["id"],),
    )]
    conn.close()
    assert len(second.sent) == len(about) > 0 and set(about) == {"inc-woken"}
    out, from_published = plan_db(db, utc(at))
    assert from_published
    assert out == plan_events(utc(at), *export(db, tmp_path))


def export(db: Path, tmp_path: Path) -> list[Path]:
    """The log's events as a JSONL file (for a fresh evaluation of it)."""
    out = tmp_path / "exported.jsonl"
    conn = sqlite3.connect(db)
    out.write_text("".join(payload + "\n" for (payload,) in conn.execute("SELECT payload FROM events ORDER BY seq")))
    conn.close()
    return [out]


def test_an_engine_without_a_key_publishes_nothing(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    store = EventStore(db)
    Engine(store, POLICY, MemoryDelivery()).plan(datetime(2026, 2, 10, 9, tzinfo=UTC))
    tables = {name for (name,) in store.db.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    store.close()
    assert published.TABLE not in tables


def test_a_database_that_cannot_take_it_is_left_alone(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    store = EventStore(db)
    engine = Engine(store, POLICY, MemoryDelivery())
    engine.plan(datetime(2026, 2, 10, 9, tzinfo=UTC))
    assert engine.cache is not None
    snapshot = engine.cache.snapshot()
    store.close()
    conn = sqlite3.connect(db.absolute().as_uri() + "?mode=ro", uri=True)
    assert published.publish(conn, "key", snapshot) is False
    conn.close()


def test_the_stored_form_round_trips() -> None:
    snapshot = published.Snapshot(
        seq=7, as_of_us=1, horizon_us=2, pending=[True, False], send_from_us=[3, 4], not_after_us=[5, 6],
        local=["Mon", "Tue"], texts=['    {\n      "rule": "a"\n    }', "    {}"],
        overruns=[[9, {"rule": "x"}]], missed=[{"rule": "y"}], cancellations=[{"subject": "s", "customer": "c"}],
    )
    assert published.Snapshot.from_row(7, 1, 2, snapshot.body()) == snapshot


@pytest.mark.parametrize("changed", ["format", "forewarn", "code", "calendar"])
def test_the_key_covers_versions_code_and_calendar_data(monkeypatch: pytest.MonkeyPatch, changed: str) -> None:
    before = published.plan_key(default_rules_dir())
    if changed == "code":
        monkeypatch.setattr(published, "code_fingerprint", lambda: "edited")
    elif changed == "format":
        monkeypatch.setattr(published, "FORMAT", published.FORMAT + 1)
    elif changed == "forewarn":
        real = published._dist_version
        monkeypatch.setattr(published, "_dist_version", lambda name: "9.9" if name == "forewarn" else real(name))
    else:
        monkeypatch.setattr(published, "calendar_data_version", lambda: "holidays 0.0")
    assert published.plan_key(default_rules_dir()) != before


def test_the_calendar_data_version_names_the_installed_holidays() -> None:
    import holidays

    assert f"holidays {holidays.__version__};" in published.calendar_data_version()


def test_the_code_fingerprint_sees_every_module() -> None:
    assert published.code_fingerprint() == published.code_fingerprint()
    modules = list(Path(forewarn.__file__).parent.rglob("*.py")) + list(Path(published.__file__).parent.rglob("*.py"))
    assert len(modules) > 40


def snapshot_at(seq: int, as_of_us: int) -> published.Snapshot:
    return published.Snapshot(seq, as_of_us, as_of_us + 10, [], [], [], [], [], [], [], [])


def stored_row(conn: sqlite3.Connection) -> tuple[int, int]:
    return conn.execute(f"SELECT seq, as_of_us FROM {published.TABLE}").fetchone()


def test_a_plan_of_less_of_the_log_or_of_an_earlier_instant_does_not_replace_it(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.db")
    assert published.publish(conn, "k", snapshot_at(5, 100))
    assert not published.publish(conn, "k", snapshot_at(5, 50))  # a query about the past
    assert not published.publish(conn, "k", snapshot_at(4, 200))  # made before the last append
    assert stored_row(conn) == (5, 100)
    assert published.publish(conn, "k", snapshot_at(5, 150))
    assert published.publish(conn, "k", snapshot_at(6, 10))
    assert published.publish(conn, "other rules", snapshot_at(1, 1))
    assert stored_row(conn) == (1, 1)


def test_publishing_never_waits_for_another_writer(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("BEGIN IMMEDIATE")
    conn = sqlite3.connect(db, timeout=30)
    started = time.monotonic()
    assert not published.publish(conn, "k", snapshot_at(1, 1))
    assert time.monotonic() - started < 5  # not the connection's 30 s
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000  # restored
    writer.execute("ROLLBACK")


def test_a_damaged_published_plan_is_ignored(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    as_of = "2026-02-10T09:00:00Z"
    expected, _ = plan_db(db, as_of)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(f"UPDATE {published.TABLE} SET body = ?", (b"not a plan",))
    conn.close()
    assert plan_db(db, as_of) == (expected, False)


def test_db_and_events_together_are_refused(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    code, _out, err = run("plan", "--db", str(db), "--events", str(SAMPLE), "--as-of", "2026-02-10T09:00:00Z")
    assert code == 2
    assert "either --db or --events" in err
