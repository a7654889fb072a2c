"""The engine against scripted faults: an SMTP sink that refuses recipients, drops or hangs, a slow or
hung ticket webhook, two engines whose passes outlast the lease. Long versions are marked `slow`
(deselected by default: `pytest -m slow` runs them)."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_delivery import LoopbackController, advertise_pipelining
from test_engine import make_db
from test_engine_faults import lifecycle
from test_tickets import WebhookServer

from forewarn.audit.findings import audit
from forewarn.cli import main
from forewarn.engine import outbox
from forewarn.engine.delivery import SmtpDelivery
from forewarn.engine.replay import MemoryDelivery
from forewarn.engine.runner import Engine
from forewarn.engine.tickets import TicketWebhook
from forewarn.log.source import import_files, read_store
from forewarn.log.store import EventStore
from forewarn.policy.loader import load_policy

POLICY = load_policy()
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
T = "2026-03-02T10:00:00Z"
OPS, CTO = "ops@cust-0.example", "cto@cust-0.example"


def make_log(tmp_path: Path, customers: int, contacts: int = 1) -> Path:
    """`customers` customers, each owed an advance notice and an incident notice at NOW; with
    `contacts` = 2 each has an ops@ and a cto@ address."""
    events = lifecycle(customers)
    for e in events:
        if e["type"] == "customer.upserted" and contacts == 2:
            e["contacts"] = [e["contacts"][0], e["contacts"][0].replace("ops@", "cto@")]
    return make_db(tmp_path, events)


def sent_events(db: Path) -> list[Any]:
    store = EventStore(db)
    comms = [e for e in read_store(store) if e.type == "communication.sent"]
    store.close()
    return comms


class Sink:
    """An SMTP sink with scripted faults.

    `rcpt`: reply per address at RCPT (kept until changed); `data`: one fault per DATA command, in
    turn ("drop": the connection closes before the message is stored, "store-drop": stored, then
    the connection closes before the reply, "hang": no reply for a long time, "slow:SECONDS": stored
    after that long, or a reply such as "451 ..."); `delay`: seconds each DATA takes."""

    def __init__(self) -> None:
        self.accepted: list[tuple[str, list[str]]] = []  # (Message-ID, envelope recipients)
        self.rcpt: dict[str, str] = {}
        self.data: list[str] = []
        self.delay = 0.0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        reply = self.rcpt.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        fault = self.data.pop(0) if self.data else None
        if self.delay:
            await asyncio.sleep(self.delay)
        if fault == "hang":
            await asyncio.sleep(30)  # cancelled when the server stops
        if fault is not None and fault.startswith("slow:"):
            await asyncio.sleep(float(fault[5:]))
            fault = None
        if fault == "drop":
            server.transport.close()
            return "250 OK"  # never reaches the client
        if fault is not None and fault != "store-drop":
            return fault
        message_id = str(message_from_bytes(envelope.content)["Message-ID"])
        with self.lock:
            self.accepted.append((message_id, list(envelope.rcpt_tos)))
        if fault == "store-drop":
            server.transport.close()
        return "250 OK"

    def ids(self) -> list[str]:
        with self.lock:
            return [m for m, _ in self.accepted]


@pytest.fixture(params=[False, True], ids=["lockstep", "pipelining"])
def sink(request: pytest.FixtureRequest) -> Iterator[tuple[Sink, int]]:
    """A running sink (and its port), without and with PIPELINING announced."""
    handler = Sink()
    if request.param:
        advertise_pipelining(handler)
    controller = LoopbackController(handler)
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()


def engine_for(db: Path, port: int, **kwargs: Any) -> Engine:
    kwargs.setdefault("attempts", 1)
    kwargs.setdefault("retry_delay", 0.01)
    timeout = kwargs.pop("timeout", 5.0)
    delivery = SmtpDelivery("127.0.0.1", port, timeout=timeout, local_hostname="localhost")
    return Engine(EventStore(db), POLICY, delivery, **kwargs)


def run_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


# ---------------------------------------------------------------- recipients refused at RCPT


@pytest.mark.parametrize("reply", ["451 4.2.1 mailbox busy", "550 5.1.1 no such user"])
def test_a_refused_recipient_is_not_recorded_as_sent(tmp_path: Path, sink: tuple[Sink, int], reply: str) -> None:
    handler, port = sink
    db = make_log(tmp_path, 1, contacts=2)
    handler.rcpt[CTO] = reply
    engine = engine_for(db, port)
    result = engine.run_once(NOW)
    assert len(result.sent) == 2
    assert [rcpts for _, rcpts in handler.accepted] == [[OPS], [OPS]]
    comms = sent_events(db)
    assert [list(c.to) for c in comms] == [[OPS], [OPS]]  # only what the server accepted
    for c in comms:
        (refused,) = c.meta["forewarn"]["refused"]
        assert refused == {"to": CTO, "reply": reply, "permanent": reply.startswith("5")}
    assert len(result.failed) == 2 and all(CTO in error for _, error in result.failed)
    # the obligation is met by what was accepted: the audit finds nothing
    store = EventStore(db)
    assert audit(read_store(store), POLICY, NOW + timedelta(hours=2)).findings == []
    store.close()
    alerts = [a for a in engine.plan(NOW + timedelta(minutes=30)).alerts if a.rule == "delivery"]
    if reply.startswith("5"):
        assert [a.problem for a in alerts] == ["refused", "refused"]
        assert all(CTO in a.message and "forewarn run --once --retry-failed fw-" in a.message for a in alerts)
    else:  # the incident notice's follow-up is due within the day: alert while it is retried
        assert {a.problem for a in alerts} == {"failing"}


def test_a_temporary_refusal_is_resent_later_to_that_recipient_only(tmp_path: Path, sink: tuple[Sink, int]) -> None:
    handler, port = sink
    db = make_log(tmp_path, 1, contacts=2)
    handler.rcpt[CTO] = "451 4.2.1 mailbox busy"
    engine = engine_for(db, port)
    first = engine.run_once(NOW)
    assert len(first.sent) == 2
    assert len(engine.run_once(NOW + timedelta(minutes=1)).failed) == 2  # still busy: still owed
    del handler.rcpt[CTO]
    second = engine.run_once(NOW + timedelta(minutes=2))
    assert len(second.sent) == 2 and second.failed == []
    originals = [m for m, _ in handler.accepted[:2]]
    assert handler.accepted[2:] == [(m, [CTO]) for m in originals]  # same Message-ID, the refused one only
    comms = sent_events(db)
    follow = [c for c in comms if c.kind == "other"]
    assert sorted(c.message_id for c in follow) == sorted(originals)
    assert all(list(c.to) == [CTO] for c in follow)
    assert {c.meta["forewarn"]["follow_up_of"] for c in follow} == set(first.sent)
    assert engine.run_once(NOW + timedelta(minutes=3)).sent == []  # nothing twice
    store = EventStore(db)
    assert audit(read_store(store), POLICY, NOW + timedelta(hours=2)).findings == []
    store.close()


def test_run_once_exits_1_and_plan_alerts_on_a_permanent_refusal(tmp_path: Path, sink: tuple[Sink, int]) -> None:
    handler, port = sink
    db = make_log(tmp_path, 1, contacts=2)
    handler.rcpt[CTO] = "550 5.1.1 no such user"
    code, _, err = run_cli("run", "--once", "--now", T, "--db", str(db), "--smtp", f"127.0.0.1:{port}")
    assert code == 1, err
    assert "sent 2, failed 2" in err and CTO in err
    code, out, _ = run_cli("plan", "--db", str(db), "--as-of", T, "--format", "json")
    assert code == 0
    refused = [a for a in json.loads(out)["alerts"] if a["problem"] == "refused"]
    assert len(refused) == 2 and all("--retry-failed" in a["message"] for a in refused)


# ---------------------------------------------------------------- resending what was refused


def test_retry_failed_resends_a_refused_message_and_says_so(tmp_path: Path, sink: tuple[Sink, int]) -> None:
    handler, port = sink
    db = make_log(tmp_path, 1)
    handler.data = ["550 5.7.1 rejected by policy"] * 2
    smtp = ["--db", str(db), "--smtp", f"127.0.0.1:{port}"]
    code, _, err = run_cli("run", "--once", "--now", T, *smtp)
    assert code == 1 and "failed 2" in err
    assert run_cli("run", "--once", "--now", T, *smtp)[0] == 1  # failed for good: not resent by itself
    assert handler.accepted == [] and sent_events(db) == []
    code, _, err = run_cli("run", "--once", "--now", T, "--retry-failed", "nope", *smtp)
    assert code == 2 and "nope" in err
    store = EventStore(db)
    communication = outbox.failing(store.db.conn)[0][5]
    store.close()
    code, _, err = run_cli("run", "--once", "--now", T, "--retry-failed", communication, *smtp)
    assert code == 1 and "sent 1" in err  # the other one is still refused
    code, _, err = run_cli("run", "--once", "--now", T, "--retry-failed", *smtp)
    assert code == 0 and "sent 1" in err, err
    comms = sent_events(db)
    assert len(comms) == 2 == len(handler.accepted)
    for c in comms:
        decision = c.meta["forewarn"]["retry_failed"]
        assert "550 5.7.1 rejected by policy" in decision["previous_error"]
        assert decision["by"].startswith("forewarn run --retry-failed")


def test_retry_failed_resends_to_a_refused_recipient_only(tmp_path: Path, sink: tuple[Sink, int]) -> None:
    handler, port = sink
    db = make_log(tmp_path, 1, contacts=2)
    handler.rcpt[CTO] = "550 5.1.1 no such user"
    engine = engine_for(db, port)
    engine.run_once(NOW)
    del handler.rcpt[CTO]  # the mailbox was created
    assert engine.run_once(NOW + timedelta(minutes=1)).sent == []
    assert len(engine.retry_failed()) == 2
    result = engine.run_once(NOW + timedelta(minutes=2))
    assert len(result.sent) == 2
    assert [rcpts for _, rcpts in handler.accepted[2:]] == [[CTO], [CTO]]
    assert not [a for a in engine.plan(NOW + timedelta(minutes=3)).alerts if a.rule == "delivery"]


def append(db: Path, *events: dict[str, object]) -> None:
    src = db.parent / "more.jsonl"
    src.write_text("".join(json.dumps(e) + "\n" for e in events))
    store = EventStore(db)
    import_files(store, [src], POLICY.ids)
    store.close()


def test_retry_failed_sends_to_the_corrected_address(tmp_path: Path, sink: tuple[Sink, int]) -> None:
    handler, port = sink
    db = make_log(tmp_path, 1)
    handler.rcpt[OPS] = "550 5.1.1 no such user"  # every recipient refused: nothing delivered
    engine = engine_for(db, port)
    assert len(engine.run_once(NOW).failed) == 2 and sent_events(db) == []
    fixed = "noc@cust-0.example"
    append(db, {"id": "c0-fixed", "type": "customer.upserted", "at": "2026-03-02T10:05:00Z", "customer": "cust-0",
                "name": "Customer 0", "plan": "enterprise", "timezone": "Europe/Berlin", "country": "DE",
                "contacts": [fixed]})
    engine = engine_for(db, port)
    assert len(engine.retry_failed()) == 2
    result = engine.run_once(NOW + timedelta(minutes=10))
    assert len(result.sent) == 2 and result.failed == []
    assert [rcpts for _, rcpts in handler.accepted] == [[fixed], [fixed]]
    assert [list(c.to) for c in sent_events(db)] == [[fixed], [fixed]]


def test_a_follow_up_about_a_cancelled_maintenance_is_not_sent(tmp_path: Path, sink: tuple[Sink, int]) -> None:
    handler, port = sink
    db = make_log(tmp_path, 1, contacts=2)
    handler.rcpt[CTO] = "451 4.2.1 mailbox busy"
    engine_for(db, port).run_once(NOW)
    append(db, {"id": "m-cancel", "type": "maintenance.cancelled", "at": "2026-03-02T10:05:00Z",
                "maintenance": "mx-1"})
    del handler.rcpt[CTO]
    engine = engine_for(db, port)
    result = engine.run_once(NOW + timedelta(minutes=10))
    kinds = [c.kind for c in sent_events(db)[2:]]
    assert sorted(kinds) == ["other", "other"]  # the incident's follow-up and the withdrawn invitation
    follow = [c for c in sent_events(db)[2:] if "follow_up_of" in c.meta["forewarn"]]
    assert len(follow) == 1 and follow[0].incident == "inc-1"
    (refusal,) = [error for _, error in result.failed]
    assert "mx-1 was cancelled" in refusal


# ---------------------------------------------------------------- SMTP faults mid-transaction


def test_a_421_in_the_middle_of_the_recipients_records_nothing_then_sends_once(
    tmp_path: Path, sink: tuple[Sink, int]
) -> None:
    handler, port = sink
    db = make_log(tmp_path, 1, contacts=2)
    handler.rcpt[CTO] = "421 4.3.2 shutting down"
    engine = engine_for(db, port, give_up_after=0)
    result = engine.run_once(NOW)
    assert result.sent == [] and len(result.failed) == 2 and sent_events(db) == []
    del handler.rcpt[CTO]
    assert len(engine.run_once(NOW + timedelta(minutes=1)).sent) == 2
    assert [sorted(r) for _, r in handler.accepted] == [sorted([OPS, CTO])] * 2
    assert [sorted(c.to) for c in sent_events(db)] == [sorted([OPS, CTO])] * 2


def test_a_connection_dropped_during_data_is_resent(tmp_path: Path, sink: tuple[Sink, int]) -> None:
    handler, port = sink
    db = make_log(tmp_path, 2)
    handler.data = ["drop"]
    engine = engine_for(db, port, give_up_after=0)
    first = engine.run_once(NOW)
    assert len(first.sent) == 3 and len(first.failed) == 1
    assert len(engine.run_once(NOW + timedelta(minutes=1)).sent) == 1
    assert len(handler.ids()) == len(set(handler.ids())) == 4  # not stored the first time: no duplicate
    assert sorted(c.message_id for c in sent_events(db)) == sorted(handler.ids())


def test_a_message_stored_then_dropped_is_resent_once_with_the_same_message_id(
    tmp_path: Path, sink: tuple[Sink, int]
) -> None:
    handler, port = sink
    db = make_log(tmp_path, 2)
    handler.data = ["store-drop"]
    engine = engine_for(db, port, give_up_after=0)
    assert len(engine.run_once(NOW).sent) == 3
    assert len(engine.run_once(NOW + timedelta(minutes=1)).sent) == 1
    ids = handler.ids()
    assert len(ids) == 5 and len(set(ids)) == 4  # the unknown outcome costs one duplicate, same Message-ID
    recorded = [c.message_id for c in sent_events(db)]
    assert sorted(recorded) == sorted(set(ids))  # recorded once


# ---------------------------------------------------------------- hung servers, deadlines, giving up


@pytest.fixture
def hung_port() -> Iterator[int]:
    """A port whose server accepts connections (the kernel does) and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield s.getsockname()[1]


def test_a_hung_mail_server_is_given_up_for_the_pass(tmp_path: Path, hung_port: int) -> None:
    db = make_log(tmp_path, 5)
    engine = engine_for(db, hung_port, timeout=0.3, attempts=3, give_up_after=3)
    started = time.monotonic()
    result = engine.run_once(NOW)
    elapsed = time.monotonic() - started
    assert elapsed < 5  # three timed-out attempts, not ten messages times three
    assert result.sent == [] and len(result.failed) == 1 and result.deferred == 9
    (alert,) = result.alerts
    assert alert.problem == "unreachable" and "3 time(s) in a row" in alert.message
    assert sent_events(db) == []


def test_a_pass_stops_at_its_deadline_and_the_next_goes_on(tmp_path: Path, sink: tuple[Sink, int]) -> None:
    handler, port = sink
    db = make_log(tmp_path, 6)
    handler.delay = 0.15
    engine = engine_for(db, port, pass_deadline=0.5)
    first = engine.run_once(NOW)
    assert 0 < len(first.sent) < 12 and first.deferred == 12 - len(first.sent)
    assert [a.problem for a in first.alerts] == ["deadline"]
    handler.delay = 0.0
    engine.pass_deadline = 30.0  # the next pass (its evaluation of what the first recorded included) has time
    second = engine.run_once(NOW + timedelta(seconds=1))
    assert len(first.sent) + len(second.sent) == 12 and second.deferred == 0
    assert len(handler.ids()) == len(set(handler.ids())) == 12


def test_a_hung_ticket_webhook_is_given_up_and_mail_still_goes_out(
    tmp_path: Path, sink: tuple[Sink, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    handler, port = sink
    db = make_log(tmp_path, 4)
    server = WebhookServer([(0, {})] * 20)  # every POST hangs
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        hook = TicketWebhook(server.url, timeout=0.3, attempts=2, base_delay=0.01)
        engine = engine_for(db, port, webhook=hook, give_up_after=3)
        started = time.monotonic()
        result = engine.run_once(NOW)
        assert time.monotonic() - started < 5
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
    assert len(result.sent) == 8 and len(handler.ids()) == 8
    assert len(server.requests) == 3  # then given up for the pass
    assert len(result.ticket_errors) == 2  # the two tried; the other six were not
    (alert,) = result.alerts
    assert alert.problem == "unreachable" and "8 ticket(s) wait" in alert.message
    store = EventStore(db)
    assert [e for e in read_store(store) if e.type == "ticket.opened"] == []  # none accepted: none recorded
    store.close()


# ---------------------------------------------------------------- two engines, a pass longer than the lease


def _two_engines(db: Path, port: int, lease: float, start_second_after: float, **kwargs: Any) -> list[Any]:
    results: list[Any] = []

    def one(name: str, delay: float) -> None:
        time.sleep(delay)
        engine = engine_for(db, port, lease=lease, owner=f"{outbox.owner_id()}#{name}", **kwargs)
        results.append(engine.run_once(NOW))

    threads = [threading.Thread(target=one, args=(n, d)) for n, d in (("a", 0.0), ("b", start_second_after))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_two_engines_with_a_pass_longer_than_the_lease_send_each_message_once(
    tmp_path: Path, sink: tuple[Sink, int]
) -> None:
    handler, port = sink
    db = make_log(tmp_path, 15)
    handler.delay = 0.08  # 30 messages: the first pass takes about 2.5 s, five leases
    a, b = _two_engines(db, port, lease=0.5, start_second_after=0.8)
    ids = handler.ids()
    assert len(ids) == len(set(ids)) == 30
    assert len(a.sent) + len(b.sent) == 30 and a.sent and b.sent  # the second one helped, never doubled
    recorded = [c.message_id for c in sent_events(db)]
    assert sorted(recorded) == sorted(ids)


def test_a_message_in_flight_longer_than_the_lease_stays_with_its_engine(
    tmp_path: Path, sink: tuple[Sink, int]
) -> None:
    handler, port = sink
    db = make_log(tmp_path, 1)
    handler.data = ["slow:1.5"]  # the first message takes three leases: renewed while in flight
    a, b = _two_engines(db, port, lease=0.5, start_second_after=0.8)
    ids = handler.ids()
    assert len(ids) == len(set(ids)) == 2 == len(a.sent) + len(b.sent)


def test_two_engines_with_a_slow_ticket_webhook_post_each_ticket_once(
    tmp_path: Path, sink: tuple[Sink, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    handler, port = sink
    db = make_log(tmp_path, 10)
    server = SlowWebhook(0.1)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        a, b = _two_engines(
            db, port, lease=0.5, start_second_after=0.8, webhook=TicketWebhook(server.url, timeout=5)
        )
    finally:
        server.shutdown()
        server.server_close()
    ids = handler.ids()
    assert len(ids) == len(set(ids)) == 20 == len(a.sent) + len(b.sent)
    tickets = [payload["ticket"] for _, payload in server.requests]
    assert len(tickets) == len(set(tickets)) == 20


class SlowWebhook(WebhookServer):
    """A ticket system that takes `delay` seconds per POST (then 200)."""

    def __init__(self, delay: float) -> None:
        super().__init__([])
        self.delay = delay

    def finish_request(self, request: Any, client_address: Any) -> None:
        time.sleep(self.delay)
        super().finish_request(request, client_address)


# ---------------------------------------------------------------- tickets opened only when accepted


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """webhook(replies) -> a running ticket system answering `replies` in turn, then 200; stopped at teardown."""
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    running: list[WebhookServer] = []

    def start(replies: list[tuple[int, dict[str, str]]]) -> WebhookServer:
        server = WebhookServer(replies)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        running.append(server)
        return server

    yield start
    for server in running:
        server.release.set()
        server.shutdown()
        server.server_close()


def tickets_opened(db: Path) -> dict[str, str]:
    store = EventStore(db)
    opened = {e.communication: e.ticket for e in read_store(store) if e.type == "ticket.opened"}
    store.close()
    return opened


def test_a_ticket_is_recorded_with_the_id_the_ticket_system_returned(tmp_path: Path, webhook: Any) -> None:
    db = make_log(tmp_path, 1)
    server = webhook([(201, {"_body": '{"id": "SUP-17"}'}), (201, {"Location": "/api/tickets/SUP-18", "_body": ""})])
    engine = Engine(EventStore(db), POLICY, MemoryDelivery(), TicketWebhook(server.url, timeout=5))
    result = engine.run_once(NOW)
    assert len(result.sent) == 2 and result.ticket_errors == []
    assert sorted(tickets_opened(db).values()) == ["SUP-17", "SUP-18"]
    assert sorted(t.ticket for t in engine.tickets.all()) == ["SUP-17", "SUP-18"]  # the built-in table mirrors them
    assert len(server.requests) == 2 and engine.run_once(NOW + timedelta(minutes=1)).sent == []
    assert len(server.requests) == 2  # each ticket posted once


def test_with_the_ticket_system_down_nothing_is_recorded_as_opened_and_run_exits_1(
    tmp_path: Path, webhook: Any
) -> None:
    db = make_log(tmp_path, 2)
    server = webhook([(503, {})] * 40)
    code, _, err = run_cli("run", "--once", "--now", T, "--db", str(db), "--outbox", str(tmp_path / "out"),
                           "--ticket-webhook", server.url, "--timeout", "2")
    assert code == 1 and "sent 4" in err and "not opened" in err and "4 ticket(s) wait" in err
    assert len(sent_events(db)) == 4 and tickets_opened(db) == {}
    store = EventStore(db)
    findings = audit(read_store(store), POLICY, NOW + timedelta(minutes=30)).findings
    store.close()
    assert sorted((f.rule, f.problem) for f in findings) == [("ticket-opened", "missing")] * 4
    code, out, _ = run_cli("plan", "--db", str(db), "--as-of", T, "--format", "json")
    alerts = [a for a in json.loads(out)["alerts"] if a["problem"] == "ticket-failing"]
    assert len(alerts) == 1 and "503" in alerts[0]["message"]  # the one tried (3 times); then given up this pass
    # the system is back: a later pass opens them once their backoff has passed, and the alerts are gone
    server.replies.clear()
    engine = Engine(EventStore(db), POLICY, MemoryDelivery(), TicketWebhook(server.url, timeout=5))
    assert engine.run_once(NOW + timedelta(minutes=5)).ticket_errors == []
    assert len(tickets_opened(db)) == 3  # the ones not tried yet; the failed one waits for its backoff
    engine.conn.execute("UPDATE ticket_queue SET next_try = 0")  # the backoff has passed
    engine.conn.commit()
    result = engine.run_once(NOW + timedelta(minutes=5))
    assert result.sent == [] and result.ticket_errors == [] and len(tickets_opened(db)) == 4
    assert not [a for a in engine.plan(NOW + timedelta(minutes=6)).alerts if a.rule == "ticket-opened"]
    store = EventStore(db)
    assert audit(read_store(store), POLICY, NOW + timedelta(minutes=30)).findings == []
    store.close()


def test_a_failed_ticket_waits_for_its_backoff(tmp_path: Path, webhook: Any) -> None:
    db = make_log(tmp_path, 1)
    server = webhook([(500, {})] * 10)
    hook = TicketWebhook(server.url, timeout=5, attempts=1)
    engine = Engine(EventStore(db), POLICY, MemoryDelivery(), hook, ticket_backoff=3600)
    assert len(engine.run_once(NOW).ticket_errors) == 2
    assert len(server.requests) == 2
    assert engine.run_once(NOW + timedelta(minutes=1)).ticket_errors == []
    assert len(server.requests) == 2  # not before its backoff
    assert len([a for a in engine.plan(NOW).alerts if a.problem == "ticket-failing"]) == 2


def test_the_ticket_authorization_header_is_sent_and_never_printed(tmp_path: Path, webhook: Any) -> None:
    db = make_log(tmp_path, 1)
    server = webhook([(401, {"_body": "token Bearer s3cr3t-t0ken refused"})] * 10)
    result = CliRunner(env={"FOREWARN_TICKET_AUTH": "Bearer s3cr3t-t0ken"}).invoke(
        main, ["run", "--once", "--now", T, "--db", str(db), "--outbox", str(tmp_path / "out"),
               "--ticket-webhook", server.url]
    )
    assert result.exit_code == 1
    assert server.requests[0][0]["Authorization"] == "Bearer s3cr3t-t0ken"
    assert "s3cr3t" not in result.stderr + result.stdout and "401" in result.stderr
    code, out, err = run_cli("plan", "--db", str(db), "--as-of", T, "--format", "json")
    assert "s3cr3t" not in out + err
    code, _, err = run_cli("run", "--once", "--now", T, "--db", str(db), "--ticket-webhook", server.url,
                           "--ticket-auth-header", "Bearer s3cr3t\r\nX-Evil: 1")
    assert code == 2 and "s3cr3t" not in err


# ---------------------------------------------------------------- credentials


def test_webhook_credentials_are_never_printed(tmp_path: Path) -> None:
    db = make_log(tmp_path, 1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        down = s.getsockname()[1]
    url = f"http://robot:s3cr3t-pw@127.0.0.1:{down}/tickets?token=t0k3n"
    code, out, err = run_cli(
        "run", "--once", "--now", T, "--db", str(db), "--outbox", str(tmp_path / "out"), "--ticket-webhook", url
    )
    assert "ticket webhook" in err and "***" in err
    for secret in ("s3cr3t-pw", "t0k3n", "robot:"):
        assert secret not in err + out
    code, out, err = run_cli("run", "--once", "--db", str(db), "--ticket-webhook", "ftp://robot:s3cr3t-pw@x/")
    assert code == 2 and "s3cr3t-pw" not in err and "***" in err


# ---------------------------------------------------------------- long versions (pytest -m slow)


def _engine_process(db: Path, port: int, lease: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "forewarn.cli", "run", "--once", "--now", T, "--db", str(db),
         "--smtp", f"127.0.0.1:{port}", "--lease", str(lease)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_two_engine_processes_with_a_slow_server_never_double_send(tmp_path: Path, sink: tuple[Sink, int]) -> None:
    handler, port = sink
    db = make_log(tmp_path, 150)
    handler.delay = 0.03  # 300 messages: a pass of about ten seconds, five times the lease
    first = _engine_process(db, port, lease=2.0)
    time.sleep(3.0)
    second = _engine_process(db, port, lease=2.0)
    for p in (first, second):
        assert p.wait(timeout=300) == 0, p.stderr.read().decode() if p.stderr else ""
    ids = handler.ids()
    assert len(ids) == len(set(ids)) == 300
    assert sorted(c.message_id for c in sent_events(db)) == sorted(ids)


@pytest.mark.slow
def test_a_hung_server_with_300_due_messages_costs_a_pass_seconds(tmp_path: Path, hung_port: int) -> None:
    db = make_log(tmp_path, 150)
    started = time.monotonic()
    code, _, err = run_cli("run", "--once", "--now", T, "--db", str(db), "--smtp", f"127.0.0.1:{hung_port}",
                           "--timeout", "1")
    assert code == 1 and "left for the next pass 299" in err
    assert time.monotonic() - started < 30


def test_the_api_resends_what_was_refused_as_run_does(tmp_path: Path, sink: tuple[Sink, int]) -> None:
    """POST /v1/outbox/retry-failed: writers only; an unknown id resets nothing; the decision is noted."""
    from serving import READER, WRITER, InProcess

    handler, port = sink
    db = make_log(tmp_path, 1)
    handler.data = ["550 5.7.1 rejected by policy"] * 2
    code, _, err = run_cli("run", "--once", "--now", T, "--db", str(db), "--smtp", f"127.0.0.1:{port}")
    assert code == 1 and "failed 2" in err

    def failed() -> list[tuple[str, str | None]]:
        conn = sqlite3.connect(db)
        try:
            return conn.execute("SELECT message_id, note FROM outbox WHERE state = 'failed' ORDER BY 1").fetchall()
        finally:
            conn.close()

    before = failed()
    assert len(before) == 2
    running = InProcess(db, smtp_port=port, engine=False)
    try:
        with running.client(READER) as c:
            assert c.post("/v1/outbox/retry-failed", json={}).status_code == 403
        with running.client(WRITER) as c:
            r = c.post("/v1/outbox/retry-failed", json={"ids": ["nope"]})
            assert r.status_code == 422 and "nope" in r.json()["detail"]
            assert failed() == before  # nothing reset
            r = c.post("/v1/outbox/retry-failed", json={"ids": [before[0][0]]})
            assert r.status_code == 200 and r.json() == {"reset": [before[0][0]]}
            assert [k for k, _ in failed()] == [before[1][0]]
            r = c.post("/v1/outbox/retry-failed")
            assert r.status_code == 200 and r.json() == {"reset": [before[1][0]]}
    finally:
        running.stop()
    conn = sqlite3.connect(db)
    notes = [json.loads(n) for (n,) in conn.execute("SELECT note FROM outbox WHERE state = 'intent'")]
    conn.close()
    assert len(notes) == 2 and all(n["retry_failed"]["by"].startswith("POST /v1/outbox/retry-failed") for n in notes)
