"""The engine under faults: SIGKILL at many points, two processes at once, a mail server that refuses."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from forewarn.audit.findings import audit
from forewarn.engine.delivery import SmtpDelivery
from forewarn.engine.runner import Engine
from forewarn.log.source import import_files, read_store
from forewarn.log.store import EventStore
from forewarn.policy.loader import load_policy

POLICY = load_policy()
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
T = "2026-03-02T10:00:00Z"


def lifecycle(customers: int) -> list[dict]:
    """`customers` enterprise customers; at T a maintenance and a critical incident for all: 2 sends each."""
    events: list[dict] = [
        {
            "id": f"c{i}",
            "type": "customer.upserted",
            "at": "2026-01-01T00:00:00Z",
            "customer": f"cust-{i}",
            "name": f"Customer {i}",
            "plan": "enterprise",
            "timezone": "Europe/Berlin",
            "country": "DE",
            "contacts": [f"ops@cust-{i}.example"],
        }
        for i in range(customers)
    ]
    events.append(
        {
            "id": "m",
            "type": "maintenance.scheduled",
            "at": T,
            "maintenance": "mx-1",
            "title": "Upgrade",
            "start": "2026-03-12T08:00:00Z",
            "end": "2026-03-12T10:00:00Z",
            "customers": "all",
            "impact": "degraded",
            "impact_summary": "Search may be slow",
        }
    )
    events.append(
        {
            "id": "i",
            "type": "incident.declared",
            "at": T,
            "incident": "inc-1",
            "title": "Login outage",
            "severity": "critical",
            "customers": "all",
            "summary": "Users cannot log in",
        }
    )
    return events


def make_log(tmp_path: Path, customers: int) -> Path:
    src = tmp_path / "life.jsonl"
    src.write_text("".join(json.dumps(e) + "\n" for e in lifecycle(customers)))
    db = tmp_path / "log.db"
    store = EventStore(db)
    import_files(store, [src], POLICY.ids)
    store.close()
    return db


class Collector:
    """An SMTP handler that keeps every Message-ID it accepts and can misbehave on cue."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.lock = threading.Lock()
        self.on_message: callable | None = None  # type: ignore[valid-type]
        self.reply = "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        if not self.reply.startswith("250"):
            return self.reply
        from email import message_from_bytes

        message_id = message_from_bytes(envelope.content)["Message-ID"]
        with self.lock:
            self.ids.append(message_id)
            hook = self.on_message
        if hook is not None:
            hook(len(self.ids))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp():
    handler = Collector()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def engine_process(db: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "forewarn.cli",
            "run",
            "--once",
            "--now",
            T,
            "--db",
            str(db),
            "--smtp",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=tempfile.TemporaryFile(),  # a line per decision and send: more than a pipe holds unread
    )


def recorded(db: Path) -> list[str]:
    store = EventStore(db)
    ids = [e.message_id for e in read_store(store) if e.type == "communication.sent"]
    store.close()
    return ids


def test_sigkill_at_many_points_loses_nothing_and_duplicates_keep_their_message_id(tmp_path: Path, smtp) -> None:
    handler, port = smtp
    customers = 400
    db = make_log(tmp_path, customers)
    rng = random.Random(7)
    kills = 0
    for attempt in range(20):
        proc = engine_process(db, port)
        start = len(handler.ids)
        mode = attempt % 3 if attempt < 9 else None
        if mode == 0:  # while the server accepts the k-th message of this run (sent, not yet recorded)

            def hook(n: int, proc: subprocess.Popen = proc, start: int = start, k: int = rng.randint(1, 60)) -> None:
                if n - start == k:
                    os.kill(proc.pid, signal.SIGKILL)

            handler.on_message = hook
        elif mode == 1:  # a moment after sending began: marking, recording, rendering, the next send

            def hook(
                n: int, proc: subprocess.Popen = proc, start: int = start, delay: float = rng.uniform(0, 0.3)
            ) -> None:
                if n - start == 1:
                    threading.Timer(delay, lambda: proc.poll() is None and proc.kill()).start()

            handler.on_message = hook
        elif mode == 2:  # during start-up, evaluation or the claim of the outbox
            threading.Timer(rng.uniform(0.2, 1.5), lambda p=proc: p.poll() is None and p.kill()).start()
        code = proc.wait(timeout=120)
        handler.on_message = None
        if code == -signal.SIGKILL:
            kills += 1
            continue
        assert code == 0, proc.stderr.read().decode() if proc.stderr else code
        if mode is None:
            break
    assert kills >= 6
    in_log = recorded(db)
    assert len(in_log) == len(set(in_log)) == 2 * customers
    received = handler.ids
    assert set(received) == set(in_log)  # every due notification arrived
    assert len(received) - len(set(received)) <= kills  # at most one duplicate per kill, same Message-ID
    store = EventStore(db)
    result = audit(read_store(store), POLICY, NOW + timedelta(hours=2))
    store.close()
    assert result.findings == []


def test_two_processes_never_send_the_same_obligation_twice(tmp_path: Path, smtp) -> None:
    handler, port = smtp
    db = make_log(tmp_path, 120)
    procs = [engine_process(db, port) for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read().decode() if p.stderr else ""
    assert len(handler.ids) == len(set(handler.ids)) == 240
    assert sorted(recorded(db)) == sorted(handler.ids)


def test_a_refusing_server_records_nothing_and_alerts(tmp_path: Path, smtp) -> None:
    handler, port = smtp
    db = make_log(tmp_path, 3)
    store = EventStore(db)
    handler.reply = "451 4.3.0 try again later"
    engine = Engine(store, POLICY, SmtpDelivery("127.0.0.1", port), attempts=2, retry_delay=0.01, give_up_after=0)
    result = engine.run_once(NOW)
    assert len(result.failed) == 6 and result.sent == []
    assert recorded(db) == []  # nothing recorded as sent that the server did not accept
    late = NOW + timedelta(minutes=30)
    alerts = [a for a in engine.plan(late).alerts if a.rule == "delivery"]
    # the incident notices are due within the hour: alert; the advance notices have days left: not yet
    assert [a.problem for a in alerts] == ["failing"] * 3
    assert all("2026-03-02T11:00:00Z" in a.message for a in alerts)

    handler.reply = "550 5.1.1 mailbox unknown"
    result = engine.run_once(NOW + timedelta(minutes=1))
    assert len(result.failed) == 6 and recorded(db) == []
    refused = [a for a in engine.plan(late).alerts if a.rule == "delivery"]
    assert [a.problem for a in refused] == ["refused"] * 6  # a permanent refusal always needs a person
    store.close()

    from click.testing import CliRunner

    from forewarn.cli import main

    shown = []  # `forewarn plan` shows them too: evaluated (and published), then from the published plan
    for _ in range(2):
        planned = CliRunner().invoke(main, ["plan", "--db", str(db), "--as-of", late.isoformat(), "--format", "json"])
        assert planned.exit_code == 0, planned.output
        shown.append(("from the plan published" in planned.stderr, json.loads(planned.stdout)["alerts"]))
    assert [published for published, _ in shown] == [False, True]
    for _, alerts in shown:
        assert [a for a in alerts if a["rule"] == "delivery"] == [a.to_json() for a in refused]


def test_server_back_after_transient_failures_sends_everything_once(tmp_path: Path, smtp) -> None:
    handler, port = smtp
    db = make_log(tmp_path, 4)
    store = EventStore(db)
    engine = Engine(store, POLICY, SmtpDelivery("127.0.0.1", port), attempts=1, retry_delay=0.01, give_up_after=0)
    handler.reply = "421 4.3.2 shutting down"
    assert len(engine.run_once(NOW).failed) == 8
    handler.reply = "250 OK"
    result = engine.run_once(NOW + timedelta(minutes=5))
    assert len(result.sent) == 8 and len(set(handler.ids)) == 8 == len(handler.ids)
    assert engine.run_once(NOW + timedelta(minutes=6)).sent == []  # nothing twice


def test_smtp_down_is_a_transient_failure(tmp_path: Path) -> None:
    db = make_log(tmp_path, 1)
    store = EventStore(db)
    engine = Engine(
        store, POLICY, SmtpDelivery("127.0.0.1", 9, timeout=1.0), attempts=2, retry_delay=0.01, give_up_after=0
    )
    started = time.monotonic()
    result = engine.run_once(NOW)
    assert len(result.failed) == 2 and recorded(db) == []
    assert time.monotonic() - started < 30
