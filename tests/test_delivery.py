"""Delivery: outbox files, SMTP against a real loopback server (aiosmtpd), error mapping, retries."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from icalendar import Calendar

from forewarn.engine.delivery import (
    DeliveryError,
    OutboxDirectory,
    SmtpDelivery,
    backoff_delays,
    eml_name,
    envelope,
    parse_smtp_target,
    with_retries,
)
from forewarn.engine.draft import Draft, Invitation
from forewarn.engine.render import POLICY, render

SENT_AT = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)
START = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
END = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)


def make_message(n: int = 0, **changes: object) -> EmailMessage:
    draft = Draft(
        communication=f"fw-{n}",
        message_id=f"<fw-{n}@example.com>",
        kind="advance_notice",
        subject_kind="maintenance",
        subject="mx-1",
        subject_title=f"Database upgrade {n}",
        customer="northwind",
        customer_name="Northwind",
        timezone="Europe/Paris",
        sender="enterprise-support@example.com",
        to=("ops@northwind.example", "cto@northwind.example"),
        support_contact="enterprise-support@example.com",
        states={"window_start": START, "window_end": END, "impact": "Search may be slow"},
        invitation=Invitation(uid="mx-1@forewarn", sequence=1, method="REQUEST", start=START,
                              end=END, summary="Database upgrade"),
        policy_digest="sha256:feedface",
    )
    return render(dataclasses.replace(draft, **changes), SENT_AT)  # type: ignore[arg-type]


# ---------------------------------------------------------------- loopback SMTP server


class LoopbackController(Controller):
    """aiosmtpd's Controller on 127.0.0.1, on a free port chosen by the OS (port=0)."""

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        kwargs.setdefault("server_hostname", "localhost")
        super().__init__(handler, hostname="127.0.0.1", port=kwargs.pop("port", 0), **kwargs)

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class Collector:
    """Accepts everything; answers DATA from `data_replies` first (e.g. a 451), then 250."""

    def __init__(self, data_replies: list[str] | None = None, rcpt_reply: str | None = None,
                 data_delay: float = 0.0, refuse_only: str | None = None) -> None:
        self.refuse_only = refuse_only
        self.messages: list[tuple[str, list[str], bytes, str]] = []  # from, to, data, peer
        self.data_replies = list(data_replies or [])
        self.rcpt_reply = rcpt_reply
        self.data_delay = data_delay
        self.data_calls = 0
        self.tls_sessions = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if self.rcpt_reply and (self.refuse_only is None or address == self.refuse_only):
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_calls += 1
        if self.data_delay:
            await asyncio.sleep(self.data_delay)  # cancelled when the server stops
        if self.data_replies:
            return self.data_replies.pop(0)
        self.tls_sessions += session.ssl is not None
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content,
                              str(session.peer)))
        return "250 Message accepted"


def advertise_pipelining(handler: Any) -> None:
    """Make aiosmtpd announce PIPELINING (RFC 2920) in its EHLO reply, as most MTAs do.

    aiosmtpd reads commands one line at a time from its stream, so pipelined commands are
    answered in order; it only does not announce the extension itself.
    """

    async def handle_EHLO(server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    handler.handle_EHLO = handle_EHLO


class Servers:
    """Loopback SMTP servers for one test; those still running are stopped at teardown.

    With `pipelining`, every server announces PIPELINING, so the client pipelines its commands.
    """

    def __init__(self, pipelining: bool = False) -> None:
        self.running: list[Controller] = []
        self.pipelining = pipelining

    def __call__(self, handler: Any, **kwargs: Any) -> Controller:
        if self.pipelining:
            advertise_pipelining(handler)
        controller = LoopbackController(handler, **kwargs)
        controller.start()
        self.running.append(controller)
        return controller

    def stop(self, controller: Controller) -> None:
        self.running.remove(controller)
        controller.stop()


@pytest.fixture(params=[False, True], ids=["lockstep", "pipelining"])
def serve(request: pytest.FixtureRequest) -> Iterator[Servers]:
    """Servers for one test, which runs twice: without and with PIPELINING announced."""
    servers = Servers(pipelining=request.param)
    yield servers
    for controller in list(servers.running):
        servers.stop(controller)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smtp(controller: Controller, **kwargs: Any) -> SmtpDelivery:
    kwargs.setdefault("timeout", 5.0)
    return SmtpDelivery("127.0.0.1", controller.port, local_hostname="localhost", **kwargs)


class FakeSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


# ---------------------------------------------------------------- SMTP delivery


def test_messages_arrive_intact_over_one_connection(serve: Servers) -> None:
    handler = Collector()
    server = serve(handler)
    with smtp(server) as delivery:
        for n in range(3):
            delivery.deliver(make_message(n))
    assert len(handler.messages) == 3
    assert len({peer for *_, peer in handler.messages}) == 1  # one connection, reused
    mail_from, rcpt_tos, data, _ = handler.messages[0]
    assert mail_from == "enterprise-support@example.com"
    assert rcpt_tos == ["ops@northwind.example", "cto@northwind.example"]
    msg = email.message_from_bytes(data, policy=POLICY)
    assert msg["From"] == "enterprise-support@example.com"
    assert msg["To"] == "ops@northwind.example, cto@northwind.example"
    assert msg["Subject"] == "[Scheduled maintenance] Database upgrade 0: Tue 10 Mar 09:00-11:00 CET (UTC+01:00)"
    assert msg["Message-ID"] == "<fw-0@example.com>"
    body = msg.get_body(("plain",))
    assert body is not None and "Search may be slow" in body.get_content()
    html = msg.get_body(("html",))
    assert html is not None and "Search may be slow" in html.get_content()
    (ics,) = [p for p in msg.walk() if p.get_content_type() == "text/calendar"]
    assert ics.get_param("method") == "REQUEST"
    (event,) = Calendar.from_ical(ics.get_content()).walk("VEVENT")
    assert str(event["UID"]) == "mx-1@forewarn"
    assert event.decoded("DTSTART") == START


def test_commands_are_pipelined_when_the_server_offers_it(serve: Servers) -> None:
    handler = Collector()
    with smtp(serve(handler)) as delivery:
        delivery.deliver(make_message())
        assert delivery.pipelining is serve.pipelining
    assert len(handler.messages) == 1


def test_sent_bytes_equal_the_rendered_bytes(serve: Servers) -> None:
    handler = Collector()
    msg = make_message()
    with smtp(serve(handler)) as delivery:
        delivery.deliver(msg)
    assert handler.messages[0][2] == msg.as_bytes()


def test_451_is_transient_and_retried_on_the_same_connection(serve: Servers) -> None:
    handler = Collector(data_replies=["451 4.3.0 Try again later"])
    sleep = FakeSleep()
    with smtp(serve(handler)) as delivery:
        with_retries(lambda: delivery.deliver(make_message()), sleep=sleep)
        delivery.deliver(make_message(1))
    assert handler.data_calls == 3
    assert len(handler.messages) == 2
    assert len(sleep.calls) == 1
    assert len({peer for *_, peer in handler.messages}) == 1  # RSET, not reconnect


def test_550_is_permanent_and_not_retried(serve: Servers) -> None:
    handler = Collector(data_replies=["550 5.7.1 Rejected by policy"])
    sleep = FakeSleep()
    with smtp(serve(handler)) as delivery:
        with pytest.raises(DeliveryError) as info:
            with_retries(lambda: delivery.deliver(make_message()), sleep=sleep)
        assert info.value.transient is False
        assert info.value.code == 550
        assert "Rejected by policy" in str(info.value)
        assert sleep.calls == []
        delivery.deliver(make_message(1))  # the connection is still usable
    assert handler.data_calls == 2
    assert len(handler.messages) == 1


def test_refused_recipients_are_permanent(serve: Servers) -> None:
    handler = Collector(rcpt_reply="550 5.1.1 No such user")
    with smtp(serve(handler)) as delivery, pytest.raises(DeliveryError) as info:
        delivery.deliver(make_message())
    assert info.value.transient is False
    assert "No such user" in str(info.value)


def test_refused_recipients_with_4xx_are_transient(serve: Servers) -> None:
    handler = Collector(rcpt_reply="452 4.2.2 Mailbox full")
    with smtp(serve(handler)) as delivery, pytest.raises(DeliveryError) as info:
        delivery.deliver(make_message())
    assert info.value.transient is True


def test_partly_refused_recipients_still_deliver_and_are_reported(serve: Servers) -> None:
    handler = Collector(rcpt_reply="550 5.1.1 No such user", refuse_only="cto@northwind.example")
    with smtp(serve(handler)) as delivery:
        delivery.deliver(make_message())
        assert list(delivery.last_refused) == ["cto@northwind.example"]
    assert handler.messages[0][1] == ["ops@northwind.example"]


def test_server_down_is_transient() -> None:
    delivery = SmtpDelivery("127.0.0.1", free_port(), timeout=2.0, local_hostname="localhost")
    with pytest.raises(DeliveryError) as info:
        delivery.deliver(make_message())
    assert info.value.transient is True
    assert "connect" in str(info.value)
    assert not delivery.connected


def test_server_down_exhausts_retries() -> None:
    delivery = SmtpDelivery("127.0.0.1", free_port(), timeout=2.0, local_hostname="localhost")
    sleep = FakeSleep()
    with pytest.raises(DeliveryError):
        with_retries(lambda: delivery.deliver(make_message()), attempts=3, sleep=sleep)
    assert len(sleep.calls) == 2


def test_timeout_is_transient_and_drops_the_connection(serve: Servers) -> None:
    handler = Collector(data_delay=30.0)
    with smtp(serve(handler), timeout=0.3) as delivery:
        with pytest.raises(DeliveryError) as info:
            delivery.deliver(make_message())
        assert info.value.transient is True
        assert "timed out" in str(info.value)
        assert not delivery.connected


def test_reconnects_after_the_server_restarts(serve: Servers) -> None:
    handler = Collector()
    first = serve(handler)
    delivery = smtp(first, probe_after=0.0)
    delivery.deliver(make_message(0))
    serve.stop(first)
    serve(handler, port=first.port)
    delivery.deliver(make_message(1))  # NOOP probe notices the dead connection
    delivery.close()
    assert len(handler.messages) == 2
    assert handler.messages[0][3] != handler.messages[1][3]


def test_dead_connection_without_probe_fails_once_then_reconnects(serve: Servers) -> None:
    handler = Collector()
    first = serve(handler)
    delivery = smtp(first, probe_after=3600.0)
    delivery.deliver(make_message(0))
    serve.stop(first)
    serve(handler, port=first.port)
    sleep = FakeSleep()
    with_retries(lambda: delivery.deliver(make_message(1)), sleep=sleep)
    delivery.close()
    assert len(sleep.calls) == 1
    assert len(handler.messages) == 2


def test_close_is_idempotent(serve: Servers) -> None:
    delivery = smtp(serve(Collector()))
    delivery.deliver(make_message())
    delivery.close()
    delivery.close()
    assert not delivery.connected


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                   auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"engine", b"s3cret")
    return AuthResult(success=ok, handled=False)


_NO_TLS_AUTH = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@_NO_TLS_AUTH
def test_auth_login_is_passed_through(serve: Servers) -> None:
    handler = Collector()
    server = serve(handler, authenticator=_authenticator, auth_required=True,
                   auth_require_tls=False)
    with smtp(server, username="engine", password="s3cret") as delivery:
        delivery.deliver(make_message())
    assert len(handler.messages) == 1


@_NO_TLS_AUTH
def test_wrong_password_is_permanent(serve: Servers) -> None:
    server = serve(Collector(), authenticator=_authenticator, auth_required=True,
                   auth_require_tls=False)
    delivery = smtp(server, username="engine", password="wrong")
    with pytest.raises(DeliveryError) as info:
        delivery.deliver(make_message())
    assert info.value.transient is False
    assert info.value.code == 535


@_NO_TLS_AUTH
def test_missing_auth_is_permanent(serve: Servers) -> None:
    server = serve(Collector(), authenticator=_authenticator, auth_required=True,
                   auth_require_tls=False)
    with smtp(server) as delivery, pytest.raises(DeliveryError) as info:
        delivery.deliver(make_message())
    assert info.value.transient is False


# ---------------------------------------------------------------- TLS (self-signed, via openssl)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for 127.0.0.1 (the `cryptography` package is not
    installed, so the openssl command line makes it)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not available to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def _contexts(certificate: tuple[Path, Path]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = certificate
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    return server_ctx, client_ctx


def test_starttls_and_auth(serve: Servers, certificate: tuple[Path, Path]) -> None:
    server_ctx, client_ctx = _contexts(certificate)
    handler = Collector()
    server = serve(handler, tls_context=server_ctx, require_starttls=True,
                   authenticator=_authenticator, auth_required=True)
    with smtp(server, starttls=True, ssl_context=client_ctx, username="engine",
              password="s3cret") as delivery:
        delivery.deliver(make_message())
        delivery.deliver(make_message(1))
    assert len(handler.messages) == 2
    assert handler.tls_sessions == 2


def test_server_requiring_starttls_refuses_plain_clients(serve: Servers,
                                                         certificate: tuple[Path, Path]) -> None:
    server_ctx, _ = _contexts(certificate)
    server = serve(Collector(), tls_context=server_ctx, require_starttls=True)
    with smtp(server) as delivery, pytest.raises(DeliveryError) as info:
        delivery.deliver(make_message())
    assert info.value.transient is False
    assert info.value.code == 530


def test_untrusted_certificate_is_permanent(serve: Servers, certificate: tuple[Path, Path]) -> None:
    server_ctx, _ = _contexts(certificate)
    server = serve(Collector(), tls_context=server_ctx, require_starttls=True)
    with smtp(server, starttls=True) as delivery, pytest.raises(DeliveryError) as info:
        delivery.deliver(make_message())  # the default context does not trust it
    assert info.value.transient is False
    assert "certificate" in str(info.value)


def test_implicit_tls(serve: Servers, certificate: tuple[Path, Path]) -> None:
    server_ctx, client_ctx = _contexts(certificate)
    handler = Collector()
    server = serve(handler, ssl_context=server_ctx)
    with smtp(server, ssl=True, ssl_context=client_ctx) as delivery:
        delivery.deliver(make_message())
    assert len(handler.messages) == 1


# ---------------------------------------------------------------- envelope and options


def test_envelope_takes_to_cc_and_bcc_and_strips_bcc_from_the_wire(serve: Servers) -> None:
    msg = make_message()
    msg["Cc"] = "cdm@example.com"
    msg["Bcc"] = "archive@example.com"
    assert envelope(msg) == (
        "enterprise-support@example.com",
        ["ops@northwind.example", "cto@northwind.example", "cdm@example.com", "archive@example.com"],
    )
    handler = Collector()
    with smtp(serve(handler)) as delivery:
        delivery.deliver(msg)
    _, rcpt, data, _ = handler.messages[0]
    assert "archive@example.com" in rcpt
    assert b"archive@example.com" not in data
    assert msg["Bcc"] == "archive@example.com"  # the caller's message is untouched


def test_envelope_of_addresses_with_display_names_and_folding() -> None:
    msg = EmailMessage()
    msg["From"] = '"Support, Enterprise" <enterprise-support@example.com>'
    msg["To"] = "Ops Team <ops@northwind.example>, cto@northwind.example"
    msg.set_raw("Cc", "a@x.example,\n b@x.example")
    assert envelope(msg) == (
        "enterprise-support@example.com",
        ["ops@northwind.example", "cto@northwind.example", "a@x.example", "b@x.example"],
    )


def test_message_without_recipients_is_permanent() -> None:
    msg = make_message()
    del msg["To"]
    with pytest.raises(DeliveryError) as info:
        envelope(msg)
    assert info.value.transient is False


@pytest.mark.parametrize(
    "kwargs",
    [{"starttls": True, "ssl": True}, {"username": "engine"}],
)
def test_bad_option_combinations(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SmtpDelivery("127.0.0.1", 25, **kwargs)


def test_password_without_username_is_ignored() -> None:
    assert SmtpDelivery("127.0.0.1", 25, password="x").username is None


# ---------------------------------------------------------------- parse_smtp_target


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("localhost:2525", ("localhost", 2525)),
        ("mail.example.com:587", ("mail.example.com", 587)),
        ("127.0.0.1:25", ("127.0.0.1", 25)),
        ("[::1]:2525", ("::1", 2525)),
        ("[2001:db8::1]:465", ("2001:db8::1", 465)),
        (" localhost:25 ", ("localhost", 25)),
    ],
)
def test_parse_smtp_target(text: str, target: tuple[str, int]) -> None:
    assert parse_smtp_target(text) == target


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("localhost", "expected HOST:PORT"),
        (":25", "expected HOST:PORT"),
        ("localhost:", "port must be a number"),
        ("localhost:smtp", "port must be a number"),
        ("localhost:0", "port must be a number"),
        ("localhost:70000", "port must be a number"),
        ("::1:25", "brackets"),
        ("[::1]", "expected HOST:PORT"),
        ("[]:25", "expected HOST:PORT"),
        ("user@host:25", "no URL or user"),
        ("smtp://host:25", "no URL or user"),
        ("my host:25", "no URL or user"),
    ],
)
def test_parse_smtp_target_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_smtp_target(text)


# ---------------------------------------------------------------- outbox directory


def test_outbox_writes_one_file_per_message_id(tmp_path: Path) -> None:
    outbox = OutboxDirectory(tmp_path / "out")
    msg = make_message()
    outbox.deliver(msg)
    files = list((tmp_path / "out").iterdir())
    assert [f.name for f in files] == ["fw-0@example.com.eml"]
    assert files[0].read_bytes() == msg.as_bytes()
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=POLICY)
    assert parsed["Message-ID"] == "<fw-0@example.com>"


def test_outbox_is_idempotent_per_message_id(tmp_path: Path) -> None:
    outbox = OutboxDirectory(tmp_path)
    outbox.deliver(make_message(0, subject_title="first"))
    outbox.deliver(make_message(0, subject_title="second"))
    outbox.deliver(make_message(1))
    names = sorted(f.name for f in tmp_path.iterdir())
    assert names == ["fw-0@example.com.eml", "fw-1@example.com.eml"]
    assert b"second" in (tmp_path / "fw-0@example.com.eml").read_bytes()


def test_outbox_file_names_are_sanitised(tmp_path: Path) -> None:
    outbox = OutboxDirectory(tmp_path / "out")
    msg = make_message(message_id="<../../etc/passwd@example.com>")
    outbox.deliver(msg)
    (written,) = (tmp_path / "out").iterdir()
    assert written.parent == tmp_path / "out"
    assert written.name.startswith("_.._etc_passwd@example.com-")
    assert outbox.path_for(msg) == written


def test_eml_names_do_not_collide_after_sanitising() -> None:
    assert eml_name("<a/b@x>") != eml_name("<a_b@x>")
    assert eml_name("<a_b@x>") == "a_b@x.eml"
    assert len(eml_name("<" + "x" * 500 + "@y>")) < 200


def test_outbox_message_without_message_id_is_permanent(tmp_path: Path) -> None:
    msg = make_message()
    del msg["Message-ID"]
    with pytest.raises(DeliveryError) as info:
        OutboxDirectory(tmp_path).deliver(msg)
    assert info.value.transient is False


def test_outbox_write_failure_is_transient_and_leaves_no_temp_file(tmp_path: Path,
                                                                   monkeypatch: Any) -> None:
    outbox = OutboxDirectory(tmp_path)

    def fail(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("forewarn.engine.delivery.os.replace", fail)
    with pytest.raises(DeliveryError) as info:
        outbox.deliver(make_message())
    assert info.value.transient is True
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- retries


class Flaky:
    def __init__(self, errors: list[Exception]) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def transient() -> DeliveryError:
    return DeliveryError("busy", transient=True, code=451)


def test_retries_transient_errors_then_succeeds() -> None:
    fn, sleep = Flaky([transient(), transient()]), FakeSleep()
    retried: list[int] = []
    result = with_retries(fn, sleep=sleep, rand=lambda: 0.5,
                          on_retry=lambda n, exc, delay: retried.append(n))
    assert result == "done"
    assert fn.calls == 3
    assert sleep.calls == [0.375, 0.75]
    assert retried == [1, 2]


def test_gives_up_after_the_last_attempt() -> None:
    fn, sleep = Flaky([transient() for _ in range(5)]), FakeSleep()
    with pytest.raises(DeliveryError, match="busy"):
        with_retries(fn, attempts=3, sleep=sleep)
    assert fn.calls == 3
    assert len(sleep.calls) == 2


def test_permanent_and_other_errors_are_not_retried() -> None:
    for error in (DeliveryError("no", transient=False), KeyError("bug")):
        fn, sleep = Flaky([error]), FakeSleep()
        with pytest.raises(type(error)):
            with_retries(fn, sleep=sleep)
        assert fn.calls == 1
        assert sleep.calls == []


def test_backoff_is_exponential_capped_and_jittered() -> None:
    assert backoff_delays(6, 0.5, 4, rand=lambda: 1.0) == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert backoff_delays(6, 0.5, 4, rand=lambda: 0.0) == [0.25, 0.5, 1.0, 2.0, 2.0]
    assert backoff_delays(1, 0.5, 4) == []


def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError):
        with_retries(lambda: None, attempts=0)
