"""Tickets: the built-in store (idempotent, transaction-friendly) and the webhook against a loopback server."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from forewarn.engine.draft import Draft
from forewarn.engine.render import subject_line
from forewarn.engine.tickets import TicketError, TicketStore, TicketWebhook, ticket_for, ticket_id

AT = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)


def make_draft(communication: str = "fw-1", **changes: Any) -> Draft:
    fields: dict[str, Any] = {
        "communication": communication,
        "message_id": f"<{communication}@example.com>",
        "kind": "advance_notice",
        "subject_kind": "maintenance",
        "subject": "mx-1",
        "subject_title": "Database upgrade",
        "customer": "northwind",
        "customer_name": "Northwind",
        "timezone": "Europe/Paris",
        "sender": "enterprise-support@example.com",
        "to": ("ops@northwind.example",),
        "support_contact": "enterprise-support@example.com",
        "states": {"window_start": datetime(2026, 3, 10, 8, tzinfo=UTC),
                   "window_end": datetime(2026, 3, 10, 10, tzinfo=UTC)},
    }
    fields.update(changes)
    return Draft(**fields)


class FakeSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


# ---------------------------------------------------------------- TicketStore


def test_open_returns_a_stable_id_and_records_the_ticket() -> None:
    store = TicketStore(sqlite3.connect(":memory:"))
    draft = make_draft()
    first = store.open(draft, AT)
    assert first == ticket_id("fw-1")
    assert store.open(draft, AT + timedelta(minutes=5)) == first
    ticket = store.get("fw-1")
    assert ticket is not None
    assert ticket.ticket == first
    assert ticket.communication == "fw-1"
    assert ticket.customer == "northwind"
    assert ticket.subject == subject_line(draft)
    assert ticket.kind == "advance_notice"
    assert (ticket.subject_kind, ticket.subject_id) == ("maintenance", "mx-1")
    assert ticket.message_id == "<fw-1@example.com>"
    assert ticket.created_at == "2026-03-02T09:15:00Z"  # the first open's time is kept
    assert len(store.all()) == 1


def test_each_communication_gets_its_own_ticket() -> None:
    store = TicketStore(sqlite3.connect(":memory:"))
    ids = {store.open(make_draft(f"fw-{n}"), AT) for n in range(5)}
    assert len(ids) == 5
    assert [t.communication for t in store.all()] == sorted(
        (f"fw-{n}" for n in range(5)), key=ticket_id)


def test_works_with_a_sqlite_utils_database(tmp_path: Path) -> None:
    db = sqlite_utils.Database(tmp_path / "log.db")
    ticket = TicketStore(db).open(make_draft(), AT)
    assert "tickets" in db.table_names()
    assert [row["ticket"] for row in db["tickets"].rows] == [ticket]


def test_commits_by_itself_outside_a_transaction(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    TicketStore(sqlite3.connect(path)).open(make_draft(), AT)
    other = sqlite3.connect(path)
    assert other.execute("SELECT count(*) FROM tickets").fetchone() == (1,)


def test_joins_the_callers_transaction(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "log.db")
    store = TicketStore(conn)
    conn.execute("BEGIN IMMEDIATE")
    store.open(make_draft(), AT)
    assert conn.in_transaction  # not committed behind the caller's back
    conn.rollback()
    assert store.get("fw-1") is None
    conn.execute("BEGIN IMMEDIATE")
    store.open(make_draft(), AT)
    conn.commit()
    assert store.get("fw-1") is not None


def test_schema_creation_is_idempotent() -> None:
    conn = sqlite3.connect(":memory:")
    TicketStore(conn).open(make_draft(), AT)
    assert TicketStore(conn).get("fw-1") is not None


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="no UTC offset"):
        TicketStore(sqlite3.connect(":memory:")).open(make_draft(), datetime(2026, 3, 2))


def test_rejects_other_database_objects() -> None:
    with pytest.raises(TypeError):
        TicketStore(object())


def test_ticket_for_uses_utc() -> None:
    at = datetime(2026, 3, 2, 10, 15, tzinfo=UTC).astimezone()
    assert ticket_for(make_draft(), at).created_at == "2026-03-02T10:15:00Z"


# ---------------------------------------------------------------- webhook against a loopback server


class Recorder(BaseHTTPRequestHandler):
    """Answers POSTs with server.replies in turn (then 200); records bodies and headers."""

    server: WebhookServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.requests.append((dict(self.headers), json.loads(body)))
        status, extra = self.server.replies.pop(0) if self.server.replies else (200, {})
        if status == 0:  # hang until released (the client times out first)
            self.server.release.wait(10)
            return
        self.send_response(status)
        headers = dict(extra)
        body = headers.pop("_body", None)  # a scripted answer body instead of the default
        for name, value in headers.items():
            self.send_header(name, value)
        payload = body.encode() if body is not None else b'{"ok": true}' if status < 300 else b'{"error": "nope"}'
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class WebhookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, replies: list[tuple[int, dict[str, str]]]) -> None:
        super().__init__(("127.0.0.1", 0), Recorder)
        self.replies = list(replies)
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/tickets"


@pytest.fixture
def webhook_server() -> Iterator[Any]:
    """webhook_server(replies) -> a running server; stopped at teardown."""
    running: list[tuple[WebhookServer, threading.Thread]] = []

    def start(replies: list[tuple[int, dict[str, str]]]) -> WebhookServer:
        server = WebhookServer(replies)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        running.append((server, thread))
        return server

    yield start
    for server, thread in running:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def test_webhook_retries_server_errors_then_succeeds(webhook_server: Any) -> None:
    server = webhook_server([(500, {}), (503, {})])
    sleep = FakeSleep()
    hook = TicketWebhook(server.url, sleep=sleep, timeout=5)
    draft = make_draft()
    hook.post(draft, "tk-123", AT)
    assert len(server.requests) == 3
    assert len(sleep.calls) == 2
    headers, payload = server.requests[-1]
    assert payload == {
        "ticket": "tk-123",
        "communication": "fw-1",
        "customer": "northwind",
        "subject": subject_line(draft),
        "kind": "advance_notice",
        "subject_kind": "maintenance",
        "subject_id": "mx-1",
        "message_id": "<fw-1@example.com>",
        "created_at": "2026-03-02T09:15:00Z",
    }
    assert headers["Content-Type"].startswith("application/json")
    assert headers["Idempotency-Key"] == "tk-123"
    assert all(p == payload for _, p in server.requests)  # retries repeat the same ticket


def test_webhook_4xx_is_permanent(webhook_server: Any) -> None:
    server = webhook_server([(400, {})] * 5)
    sleep = FakeSleep()
    with pytest.raises(TicketError) as info:
        TicketWebhook(server.url, sleep=sleep, timeout=5).post(make_draft(), "tk-1", AT)
    assert info.value.transient is False
    assert info.value.code == 400
    assert "HTTP 400" in str(info.value) and "nope" in str(info.value)
    assert len(server.requests) == 1
    assert sleep.calls == []


def test_webhook_429_is_retried(webhook_server: Any) -> None:
    server = webhook_server([(429, {"Retry-After": "1"})])
    sleep = FakeSleep()
    TicketWebhook(server.url, sleep=sleep, timeout=5).post(make_draft(), "tk-1", AT)
    assert len(server.requests) == 2


def test_webhook_does_not_follow_redirects(webhook_server: Any) -> None:
    server = webhook_server([(302, {"Location": "/elsewhere"})])
    with pytest.raises(TicketError) as info:
        TicketWebhook(server.url, sleep=FakeSleep(), timeout=5).post(make_draft(), "tk-1", AT)
    assert info.value.transient is False
    assert len(server.requests) == 1


def test_webhook_gives_up_after_its_attempts(webhook_server: Any) -> None:
    server = webhook_server([(502, {})] * 10)
    sleep = FakeSleep()
    with pytest.raises(TicketError) as info:
        TicketWebhook(server.url, sleep=sleep, attempts=3, timeout=5).post(make_draft(), "tk-1", AT)
    assert info.value.transient is True
    assert len(server.requests) == 3
    assert len(sleep.calls) == 2


def test_webhook_connection_refused_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleep = FakeSleep()
    hook = TicketWebhook(f"http://127.0.0.1:{port}/t", sleep=sleep, attempts=2, timeout=2)
    with pytest.raises(TicketError) as info:
        hook.post(make_draft(), "tk-1", AT)
    assert info.value.transient is True
    assert len(sleep.calls) == 1


def test_webhook_timeout_is_transient(webhook_server: Any) -> None:
    server = webhook_server([(0, {})])
    hook = TicketWebhook(server.url, sleep=FakeSleep(), attempts=1, timeout=0.3)
    with pytest.raises(TicketError) as info:
        hook.post(make_draft(), "tk-1", AT)
    assert info.value.transient is True


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://x/y", "127.0.0.1:8080/t"])
def test_webhook_needs_an_http_url(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        TicketWebhook(url)


@pytest.mark.parametrize("url", ["http://u:s3cr3t@x/\r\nHost: evil", "http://u:s3cr3t@[::1/t"])
def test_a_malformed_webhook_url_is_refused_without_its_credentials(url: str) -> None:
    with pytest.raises(ValueError, match="not a valid URL") as info:
        TicketWebhook(url)
    assert "s3cr3t" not in str(info.value)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ((201, {"_body": '{"id": "SUP-17"}'}), "SUP-17"),
        ((201, {"_body": '{"id": 4711}'}), "4711"),
        ((201, {"Location": "https://tickets.example/api/tickets/SUP-18", "_body": ""}), "SUP-18"),
        ((200, {}), "tk-1"),  # no id in the answer: the one proposed (payload `ticket`, Idempotency-Key)
    ],
    ids=["json-id", "json-number", "location", "proposed"],
)
def test_webhook_returns_the_id_the_system_gave(webhook_server: Any, answer: Any, expected: str) -> None:
    server = webhook_server([answer])
    assert TicketWebhook(server.url, sleep=FakeSleep(), timeout=5).post(make_draft(), "tk-1", AT) == expected


def test_webhook_refuses_an_unusable_ticket_id(webhook_server: Any) -> None:
    server = webhook_server([(201, {"_body": '{"id": "bad\\u0000id"}'})])
    with pytest.raises(TicketError, match="unusable"):
        TicketWebhook(server.url, sleep=FakeSleep(), timeout=5).post(make_draft(), "tk-1", AT)


def test_webhook_sends_the_authorization_header_and_never_shows_it(webhook_server: Any) -> None:
    server = webhook_server([(401, {"_body": "bad token Bearer s3cr3t-t0ken"})])
    hook = TicketWebhook(server.url, sleep=FakeSleep(), timeout=5, authorization="Bearer s3cr3t-t0ken")
    with pytest.raises(TicketError) as info:
        hook.post(make_draft(), "tk-1", AT)
    assert server.requests[0][0]["Authorization"] == "Bearer s3cr3t-t0ken"
    assert "s3cr3t-t0ken" not in str(info.value) and "***" in str(info.value)
    named = webhook_server([])
    TicketWebhook(named.url, timeout=5, authorization="X-Api-Key: k3y").post(make_draft(), "tk-1", AT)
    assert named.requests[0][0]["X-Api-Key"] == "k3y"


@pytest.mark.parametrize("value", ["Bearer x\r\nX-Evil: 1", "  ", "Bearer s3cr3t\n"])
def test_an_authorization_header_on_several_lines_is_refused_without_showing_it(value: str) -> None:
    with pytest.raises(ValueError) as info:
        TicketWebhook("http://127.0.0.1:9/t", authorization=value)
    assert "s3cr3t" not in str(info.value) and "Evil" not in str(info.value)
