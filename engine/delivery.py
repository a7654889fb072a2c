"""Deliver rendered messages: an outbox directory of .eml files, or SMTP with retries."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import os
import random
import re
import smtplib
import socket
import ssl as tls
import tempfile
import time
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from typing import Protocol, TypeVar

from forewarn.engine import pipelining
from forewarn.engine.render import wire_bytes

log = logging.getLogger(__name__)
T = TypeVar("T")

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._@+=-]")
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")
_MAX_NAME = 150  # characters of the Message-ID kept in a file name (+ hash + ".eml")


class DeliveryError(Exception):
    """A message was not delivered. transient: worth retrying (4xx, connection, timeout)."""

    def __init__(self, message: str, *, transient: bool, code: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.code = code


Refused = dict[str, tuple[int, bytes]]
"""Recipients a server refused while it accepted the message for others: {address: (code, reply)}."""


class Delivery(Protocol):
    """Where rendered messages go."""

    def deliver(self, msg: EmailMessage) -> Refused | None:
        """Hand MSG over, or raise DeliveryError; the recipients refused while others accepted it."""

    def close(self) -> None:
        """Release connections / handles (idempotent)."""


def _is_transient_code(code: int | None) -> bool:
    """SMTP reply codes: 4xx = transient, 5xx = permanent; unknown = transient."""
    return code is None or not 500 <= code <= 599


def _message_id(msg: EmailMessage) -> str:
    value = msg.get("Message-ID")
    if not value or not str(value).strip():
        raise DeliveryError("message has no Message-ID", transient=False)
    return str(value).strip()


# ---------------------------------------------------------------- outbox


def eml_name(message_id: str) -> str:
    """A safe file name for MESSAGE_ID: <id>.eml, with a hash suffix if anything was changed."""
    core = message_id.strip().strip("<>")
    safe = _UNSAFE_NAME.sub("_", core).lstrip(".")[:_MAX_NAME]
    if safe != core or not safe:
        safe = f"{safe}-{hashlib.sha256(core.encode()).hexdigest()[:12]}"
    return f"{safe}.eml"


class OutboxDirectory:
    """Delivery into a directory: one <Message-ID>.eml per message, written atomically.

    Delivering the same Message-ID again replaces the same file (idempotent)."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync

    def path_for(self, msg: EmailMessage) -> Path:
        """Where MSG is (or would be) written."""
        return self.path / eml_name(_message_id(msg))

    def deliver(self, msg: EmailMessage, *, recipients: Sequence[str] | None = None) -> None:
        """Write MSG (RECIPIENTS, a resend's envelope, do not change the file)."""
        target = self.path_for(msg)
        data = wire_bytes(msg)
        try:
            self._write_atomically(target, data)
        except OSError as exc:
            raise DeliveryError(f"cannot write {target}: {exc}", transient=True) from exc

    def _write_atomically(self, target: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-", suffix=".eml")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if self.fsync:
            _fsync_directory(self.path)

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> OutboxDirectory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fsync_directory(path: Path) -> None:
    """Make a rename in PATH durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------- SMTP


def parse_smtp_target(text: str) -> tuple[str, int]:
    """HOST:PORT (or [IPv6]:PORT) as (host, port); ValueError with an example otherwise."""
    hint = "expected HOST:PORT, e.g. localhost:2525, mail.example.com:587 or [::1]:2525"
    value = text.strip()
    if any(ch.isspace() or ch in "/@" for ch in value):
        raise ValueError(f"SMTP target {text!r}: {hint} (a host name or address, no URL or user)")
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
        if not sep or not host or "]" in host:
            raise ValueError(f"SMTP target {text!r}: {hint}")
    else:
        host, sep, port = value.rpartition(":")
        if not sep or not host:
            raise ValueError(f"SMTP target {text!r}: {hint}")
        if ":" in host:
            raise ValueError(f"SMTP target {text!r}: put an IPv6 address in brackets, [::1]:2525")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"SMTP target {text!r}: port must be a number from 1 to 65535")
    return host, int(port)


def _addresses(values: list[str]) -> list[str]:
    """The addr-specs in header VALUES; plain "a@x, b@y" lists (what render() writes) fast."""
    out: list[str] = []
    for value in values:
        plain = [item.strip() for item in value.split(",")]
        if all(_PLAIN_ADDRESS.fullmatch(item) for item in plain):
            out.extend(plain)
        else:
            out.extend(addr for _, addr in getaddresses([value]) if addr)
    return out


def envelope(msg: EmailMessage) -> tuple[str, list[str]]:
    """The SMTP envelope: MAIL FROM = the From address, RCPT TO = To + Cc + Bcc (deduplicated)."""
    # Raw header values: much cheaper than the header registry's parse, and
    # only the addr-specs are needed here.
    values: dict[str, list[str]] = {"from": [], "to": [], "cc": [], "bcc": []}
    for name, value in msg.raw_items():
        found = values.get(name.lower())
        if found is not None:
            found.append(str(value))
    senders = _addresses(values["from"])
    if len(senders) != 1:
        raise DeliveryError("message needs exactly one From address", transient=False)
    recipients = list(dict.fromkeys(_addresses(values["to"] + values["cc"] + values["bcc"])))
    if not recipients:
        raise DeliveryError("message has no recipients (To/Cc)", transient=False)
    return senders[0], recipients


def _smtp_error(exc: Exception, what: str) -> DeliveryError:
    """An smtplib / socket exception as a DeliveryError (transient unless a 5xx reply)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        transient = any(_is_transient_code(code) for code in codes)
        detail = "; ".join(
            f"{rcpt}: {code} {_text(resp)}" for rcpt, (code, resp) in exc.recipients.items()
        )
        return DeliveryError(
            f"{what}: recipients refused ({detail})",
            transient=transient,
            code=min(codes) if codes else None,
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        return DeliveryError(
            f"{what}: {code} {_text(exc.smtp_error)}", transient=_is_transient_code(code), code=code
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return DeliveryError(f"{what}: {exc}", transient=False)
    if isinstance(exc, tls.SSLCertVerificationError):
        return DeliveryError(f"{what}: TLS certificate rejected: {exc}", transient=False)
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return DeliveryError(f"{what}: timed out", transient=True)
    return DeliveryError(f"{what}: {type(exc).__name__}: {exc}", transient=True)


def _text(resp: bytes | str) -> str:
    return resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)


class _Overlapping:
    """An smtplib connection that does queued work while it waits for the server's replies.

    `idle` holds callables; each reply read first runs (and drops) the next
    one, so the caller's CPU work (rendering the next message, say) overlaps
    the server's processing of the command just sent. The callables must not
    raise (they run inside smtplib's conversation)."""

    idle: list[Callable[[], object]]

    def getreply(self) -> tuple[int, bytes]:
        idle = getattr(self, "idle", None)
        if idle:
            idle.pop(0)()
        return super().getreply()  # type: ignore[misc]


class _SMTP(_Overlapping, smtplib.SMTP):
    pass


class _SMTP_SSL(_Overlapping, smtplib.SMTP_SSL):
    pass


class SmtpDelivery:
    """Delivery over SMTP: one connection kept open across messages, reopened after a failure.

    After an SMTP-level refusal smtplib has already sent RSET, so the
    connection is kept; after a disconnect, timeout or socket error it is
    dropped and the next deliver() reconnects. A connection idle for more
    than `probe_after` seconds is checked with NOOP first, so a server-side
    idle timeout costs a reconnect instead of a failed message. Not thread-safe.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        starttls: bool = False,
        ssl: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        local_hostname: str | None = None,
        ssl_context: tls.SSLContext | None = None,
        probe_after: float = 5.0,
    ) -> None:
        if starttls and ssl:
            raise ValueError("choose one of starttls (upgrade on port 587/25) and ssl (port 465)")
        if username is not None and password is None:
            raise ValueError(f"SMTP user {username!r} given without a password")
        self.host, self.port = host, port
        self.starttls, self.ssl = starttls, ssl
        self.username, self.password = username, password
        self.timeout = timeout
        self.local_hostname = local_hostname
        self.ssl_context = ssl_context
        self.probe_after = probe_after
        self.last_refused: dict[str, tuple[int, bytes]] = {}
        self._conn: smtplib.SMTP | None = None
        self._last_used = 0.0

    @property
    def connected(self) -> bool:
        return self._conn is not None

    @property
    def pipelining(self) -> bool:
        """Whether the open connection pipelines its commands (the server announced PIPELINING)."""
        return self._conn is not None and pipelining.pipelined(self._conn)

    def _context(self) -> tls.SSLContext:
        if self.ssl_context is None:
            self.ssl_context = tls.create_default_context()
        return self.ssl_context

    def _open(self) -> smtplib.SMTP:
        """A new, greeted (and secured / authenticated) connection."""
        where = f"SMTP {self.host}:{self.port}"
        conn: smtplib.SMTP | None = None
        try:
            if self.ssl:
                conn = _SMTP_SSL(
                    self.host,
                    self.port,
                    local_hostname=self.local_hostname,
                    timeout=self.timeout,
                    context=self._context(),
                )
            else:
                conn = _SMTP(
                    self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
                )
            conn.ehlo_or_helo_if_needed()
            if self.starttls:
                conn.starttls(context=self._context())
                conn.ehlo()
            if self.username is not None and self.password is not None:
                conn.login(self.username, self.password)
        except (smtplib.SMTPException, OSError) as exc:
            if conn is not None:
                _close_quietly(conn)
            raise _smtp_error(exc, f"{where}: connect") from exc
        return conn

    def _connection(self) -> smtplib.SMTP:
        """The open connection (probed with NOOP when idle), or a new one."""
        conn = self._conn
        if conn is not None and time.monotonic() - self._last_used > self.probe_after:
            try:
                code, _ = conn.noop()
            except (smtplib.SMTPException, OSError):
                code = -1
            if code != 250:
                self._drop()
                conn = None
        if conn is None:
            conn = self._conn = self._open()
        return conn

    overlaps = True
    """deliver() takes `while_waiting`: work done while the server answers."""

    def deliver(
        self,
        msg: EmailMessage,
        *,
        while_waiting: Sequence[Callable[[], object]] = (),
        recipients: Sequence[str] | None = None,
    ) -> Refused:
        """Send MSG (to RECIPIENTS instead of its To/Cc/Bcc when given: a resend to some of them);
        the recipients refused while the server accepted the message for the others.

        The callables in WHILE_WAITING (which must not raise) are work done while the
        server answers: when pipelining, all of them once the message is written (none if DATA is
        refused); in lockstep, one per reply awaited, before reading it (those not run are dropped)."""
        sender, addressed = envelope(msg)
        if recipients is None:
            recipients = addressed
        recipients = list(recipients)
        if not recipients:
            raise DeliveryError("no recipients to send to", transient=False)
        data = _wire_bytes(msg)
        conn = self._connection()
        options = _options(conn, sender, recipients)
        # Pipelined, the work waits until the message is written (the server then has all it needs);
        # in lockstep it runs while the first reply is awaited.
        ahead = pipelining.pipelined(conn)
        conn.idle = [] if ahead else list(while_waiting)  # type: ignore[attr-defined]
        try:
            refused = pipelining.sendmail(
                conn, sender, recipients, data, options, while_waiting=while_waiting if ahead else ()
            )
        except (smtplib.SMTPException, OSError) as exc:
            if isinstance(exc, OSError) or getattr(conn, "sock", None) is None:
                self._drop()  # disconnected, timed out, or closed by smtplib after a 421
            where = f"SMTP {self.host}:{self.port}: send {msg.get('Message-ID', '(no Message-ID)')}"
            raise _smtp_error(exc, where) from exc
        finally:
            conn.idle = []  # type: ignore[attr-defined]
            self._last_used = time.monotonic()
        self.last_refused = dict(refused)
        if refused:
            log.info("%s: accepted for some recipients only; refused: %s", msg.get("Message-ID"), ", ".join(refused))
        return dict(refused)

    def _drop(self) -> None:
        if self._conn is not None:
            _close_quietly(self._conn)
        self._conn = None

    def close(self) -> None:
        """QUIT politely and close (idempotent)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            _close_quietly(conn)

    def __enter__(self) -> SmtpDelivery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_quietly(conn: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        conn.close()


def _options(conn: smtplib.SMTP, sender: str, recipients: list[str]) -> list[str]:
    """MAIL FROM options: SMTPUTF8 for non-ASCII addresses (if the server offers it)."""
    if sender.isascii() and all(r.isascii() for r in recipients):
        return []
    if not conn.has_extn("smtputf8"):
        raise DeliveryError("non-ASCII address but the server lacks SMTPUTF8", transient=False)
    return ["SMTPUTF8"]


def _wire_bytes(msg: EmailMessage) -> bytes:
    """MSG as sent: CRLF line ends, Bcc removed (as smtplib.send_message does)."""
    if "Bcc" in msg or "Resent-Bcc" in msg:
        msg = copy.copy(msg)
        del msg["Bcc"]
        del msg["Resent-Bcc"]
    return wire_bytes(msg)


# ---------------------------------------------------------------- retries


def backoff_delays(
    attempts: int, base_delay: float, max_delay: float, rand: Callable[[], float] = random.random
) -> list[float]:
    """The waits between ATTEMPTS tries: exponential, capped, with "equal jitter" (half fixed)."""
    delays = []
    for i in range(attempts - 1):
        ceiling = min(max_delay, base_delay * 2**i)
        delays.append(ceiling / 2 + rand() * ceiling / 2)
    return delays


def with_retries(
    fn: Callable[[], T],
    *,
    attempts: int = 5,
    base_delay: float = 0.5,
    max_delay: float = 30,
    sleep: Callable[[float], object] = time.sleep,
    rand: Callable[[], float] = random.random,
    on_retry: Callable[[int, DeliveryError, float], object] | None = None,
    give_up: Callable[[DeliveryError], bool] | None = None,
) -> T:
    """FN() retried on transient DeliveryError with exponential backoff and jitter (our own, not tenacity's:
    a dozen lines the SMTP path and its tests pin down; the ticket webhook uses tenacity).

    Permanent errors (and any other exception) propagate at once; after the
    last attempt, or once GIVE_UP(error) says so, the last transient error propagates."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    delays = backoff_delays(attempts, base_delay, max_delay, rand)
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except DeliveryError as exc:
            if not exc.transient or attempt == attempts or (give_up is not None and give_up(exc)):
                raise
            delay = delays[attempt - 1]
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            sleep(delay)
    raise AssertionError("unreachable")


class Breaker:
    """Consecutive transient failures of one destination (the mail server, the ticket webhook): once
    `limit` are reached the engine stops trying it for the rest of the pass (0: never)."""

    def __init__(self, destination: str, limit: int) -> None:
        self.destination = destination
        self.limit = limit
        self.failures = 0
        self.last_error = ""

    def failed(self, error: DeliveryError) -> None:
        if error.transient:
            self.failures += 1
            self.last_error = str(error)

    def succeeded(self) -> None:
        self.failures = 0

    @property
    def open(self) -> bool:
        return self.limit > 0 and self.failures >= self.limit

    def guard(self, fn: Callable[[], T]) -> T:
        """FN(), its outcome counted."""
        try:
            value = fn()
        except DeliveryError as exc:
            self.failed(exc)
            raise
        self.succeeded()
        return value
