"""The engine's commands: plan JSON per cli.md, run --once into the outbox, cancellations, clean shutdown."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path

from click.testing import CliRunner

from forewarn.audit.findings import audit
from forewarn.cli import main
from forewarn.engine.replay import MemoryDelivery
from forewarn.engine.runner import Engine
from forewarn.log.source import import_files, read_store
from forewarn.log.store import EventStore
from forewarn.policy.loader import load_policy

POLICY = load_policy()
A = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
EVENTS = [
    {
        "id": "c1",
        "type": "customer.upserted",
        "at": "2026-01-01T00:00:00Z",
        "customer": "acme",
        "name": "Acme",
        "plan": "enterprise",
        "timezone": "Europe/Berlin",
        "country": "DE",
        "contacts": ["ops@acme.example"],
    },
    {
        "id": "c2",
        "type": "customer.upserted",
        "at": "2026-01-01T00:00:00Z",
        "customer": "initech",
        "name": "Initech",
        "plan": "basic",
        "timezone": "UTC",
        "contacts": ["it@initech.example"],
    },
    {
        "id": "m1",
        "type": "maintenance.scheduled",
        "at": "2026-03-02T10:00:00Z",
        "maintenance": "mx-1",
        "title": "Database upgrade",
        "start": "2026-03-12T08:00:00Z",
        "end": "2026-03-12T10:00:00Z",
        "customers": "all",
        "impact": "interruption",
        "impact_summary": "Logins unavailable",
    },
    {"id": "m2", "type": "maintenance.cancelled", "at": "2026-03-04T09:00:00Z", "maintenance": "mx-1"},
]


def make_db(tmp_path: Path, events: list[dict] = EVENTS) -> Path:
    src = tmp_path / "life.jsonl"
    src.write_text("".join(json.dumps(e) + "\n" for e in events))
    db = tmp_path / "log.db"
    store = EventStore(db)
    import_files(store, [src], POLICY.ids)
    store.close()
    return db


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_plan_json_has_the_shape_of_cli_md(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    code, out, _ = run("plan", "--db", str(db), "--as-of", "2026-03-02T10:00:00Z", "--format", "json")
    plan = json.loads(out)
    assert code == 0 and plan["as_of"] == "2026-03-02T10:00:00Z"
    assert [(o["rule"], o["customer"]) for o in plan["due"]] == [("advance-notice", "acme")]
    due = plan["due"][0]
    assert set(due) == {"rule", "subject", "customer", "kind", "from", "to", "not_before", "not_after"}
    assert due["from"] == "enterprise-support@example.com" and due["to"] == ["ops@acme.example"]
    assert due["not_after"] == "2026-03-11T08:00:00Z"  # 1 business day before Thu 09:00 CET
    assert {o["rule"] for o in plan["upcoming"]} == {"start-reminder"}  # basic-plan initech owed nothing


def test_run_once_into_the_outbox_then_nothing_twice(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    outbox = tmp_path / "outbox"
    code, _, err = run("run", "--once", "--now", "2026-03-02T10:00:00Z", "--db", str(db), "--outbox", str(outbox))
    assert code == 0 and "sent 1," in err
    files = sorted(outbox.glob("*.eml"))
    assert len(files) == 1
    msg = message_from_bytes(files[0].read_bytes())
    assert msg["From"] == "enterprise-support@example.com" and msg["To"] == "ops@acme.example"
    store = EventStore(db)
    sent = [e for e in read_store(store) if e.type == "communication.sent"]
    tickets = [e for e in read_store(store) if e.type == "ticket.opened"]
    store.close()
    assert [s.message_id for s in sent] == [msg["Message-ID"]]
    assert sent[0].states is not None and sent[0].states.impact == "Logins unavailable"
    assert sent[0].meta["forewarn"]["policy"] == POLICY.digest  # the decision log: why it was sent
    assert sent[0].meta["forewarn"]["because"][0].startswith("advance-notice/maintenance:mx-1/acme/")
    assert [t.communication for t in tickets] == [sent[0].communication]
    code, _, err = run("run", "--once", "--now", "2026-03-02T10:05:00Z", "--db", str(db), "--outbox", str(outbox))
    assert code == 0 and "sent 0," in err and len(list(outbox.glob("*.eml"))) == 1


def test_a_cancelled_maintenance_withdraws_its_invitation(tmp_path: Path) -> None:
    store = EventStore(make_db(tmp_path))
    delivery = MemoryDelivery()
    engine = Engine(store, POLICY, delivery)
    assert len(engine.run_once(A).sent) == 1
    assert engine.run_once(A + timedelta(days=2, hours=1)).sent != []  # after the cancellation
    assert engine.run_once(A + timedelta(days=2, hours=2)).sent == []
    first, cancel = delivery.messages
    assert "METHOD:REQUEST" in first.as_string() and "METHOD:CANCEL" in cancel.as_string()
    assert "UID:mx-1@forewarn" in cancel.as_string().replace("\r\n ", "")
    result = audit(read_store(store), POLICY, A + timedelta(days=20))
    assert result.findings == []  # the start reminder and closing of a cancelled maintenance are void


def test_plan_propose_says_when_it_is_too_late(tmp_path: Path) -> None:
    db = make_db(tmp_path, EVENTS[:2])
    # Good Friday 2026-04-03, 16:00Z: a window on Easter Monday morning is too late for Germany
    code, out, _ = run(
        "plan",
        "--db",
        str(db),
        "--as-of",
        "2026-04-03T16:00:00Z",
        "--format",
        "json",
        "--propose",
        "start=2026-04-06T07:00:00Z,end=2026-04-06T09:00:00Z,customers=all,impact=interruption",
    )
    answer = json.loads(out)
    notice = next(n for n in answer["notices"] if n["rule"] == "advance-notice")
    assert code == 0 and notice["customer"] == "acme" and notice["too_late"] is True
    assert notice["not_after"] == "2026-04-01T22:00:00Z"  # Thu 2026-04-02 00:00 CEST
    code, _, err = run("plan", "--db", str(db), "--propose", "start=2026-04-06T07:00:00Z,end=x")
    assert code == 2 and "--propose" in err


def test_run_forever_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    db = make_db(tmp_path, EVENTS[:2])
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "forewarn.cli",
            "run",
            "--db",
            str(db),
            "--outbox",
            str(tmp_path / "out"),
            "--poll",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and b"sent 0" not in (proc.stderr.peek() if proc.stderr else b""):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
