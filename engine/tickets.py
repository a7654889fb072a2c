"""Support tickets for sent communications: a table in the log's database, and an optional webhook."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from forewarn.engine.delivery import Breaker, DeliveryError, with_retries
from forewarn.engine.draft import Draft
from forewarn.engine.redact import redact, redact_url, url_secrets
from forewarn.engine.render import subject_line

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    ticket TEXT PRIMARY KEY,
    communication TEXT NOT NULL UNIQUE,
    customer TEXT NOT NULL,
    subject TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    created_at TEXT NOT NULL
)
"""
_COLUMNS = (
    "ticket, communication, customer, subject, kind, subject_kind, subject_id, message_id, created_at"
)
_TRANSIENT_HTTP = frozenset({408, 425, 429})
_MAX_RESPONSE = 64 * 1024


@dataclass(frozen=True)
class Ticket:
    """One support ticket: opened by one communication (subject = the e-mail's Subject line)."""

    ticket: str
    communication: str
    customer: str
    subject: str
    kind: str
    subject_kind: str  # maintenance | incident | release
    subject_id: str  # the maintenance / incident / release id
    message_id: str
    created_at: str  # RFC 3339, UTC ("Z")

    def to_json(self) -> dict[str, str]:
        """The webhook payload."""
        return asdict(self)


def ticket_id(communication: str) -> str:
    """The ticket id for a communication: deterministic, so replays agree."""
    return "tk-" + hashlib.sha256(communication.encode("utf-8")).hexdigest()[:16]


def utc_text(at: datetime) -> str:
    """RFC 3339 in UTC with "Z"; naive times are refused."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{at.isoformat()} has no UTC offset")
    text = at.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def ticket_for(draft: Draft, at: datetime) -> Ticket:
    """The ticket that DRAFT opens when sent at AT."""
    return Ticket(
        ticket=ticket_id(draft.communication),
        communication=draft.communication,
        customer=draft.customer,
        subject=subject_line(draft),
        kind=draft.kind,
        subject_kind=draft.subject_kind,
        subject_id=draft.subject,
        message_id=draft.message_id,
        created_at=utc_text(at),
    )


def _connection(db: Any) -> sqlite3.Connection:
    """The sqlite3 connection of DB (a connection, or a sqlite_utils.Database)."""
    conn = getattr(db, "conn", db)
    if not isinstance(conn, sqlite3.Connection):
        raise TypeError(f"expected a sqlite3.Connection or sqlite_utils.Database, got {type(db)!r}")
    return conn


class TicketStore:
    """The built-in ticket system: table `tickets` in the log's SQLite database.

    open() joins the caller's transaction when one is open (so the ticket and
    the log events commit together); otherwise it commits by itself."""

    def __init__(self, db: Any) -> None:
        self.conn = _connection(db)
        self._write(lambda: self.conn.execute(_SCHEMA))

    def _write(self, fn: Callable[[], object]) -> None:
        owned = not self.conn.in_transaction
        fn()
        if owned and self.conn.in_transaction:
            self.conn.commit()

    def open(self, draft: Draft, at: datetime) -> str:
        """The ticket id for DRAFT's communication; created at AT the first time only."""
        ticket = ticket_for(draft, at)
        self._write(
            lambda: self.conn.execute(
                f"INSERT OR IGNORE INTO tickets ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                tuple(asdict(ticket).values()),
            )
        )
        existing = self.get(draft.communication)
        if existing is None:  # pragma: no cover - the id is taken by another communication
            raise RuntimeError(f"ticket id {ticket.ticket} already belongs to another communication")
        return existing.ticket

    def open_many(self, drafts: Sequence[Draft], at: datetime) -> list[str]:
        """open() for many drafts at once: the ticket id of each, in order."""
        created = utc_text(at)
        rows = [
            (
                ticket_id(d.communication),
                d.communication,
                d.customer,
                subject_line(d),
                d.kind,
                d.subject_kind,
                d.subject,
                d.message_id,
                created,
            )
            for d in drafts
        ]
        self._write(
            lambda: self.conn.executemany(
                f"INSERT OR IGNORE INTO tickets ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )
        )
        found: dict[str, str] = {}
        for i in range(0, len(rows), 500):
            part = [r[1] for r in rows[i : i + 500]]
            marks = ",".join("?" * len(part))
            found.update(
                self.conn.execute(
                    f"SELECT communication, ticket FROM tickets WHERE communication IN ({marks})", part
                ).fetchall()
            )
        missing = [r[0] for r in rows if r[1] not in found]
        if missing:  # pragma: no cover - the id is taken by another communication
            raise RuntimeError(f"ticket id {missing[0]} already belongs to another communication")
        return [found[r[1]] for r in rows]

    def get(self, communication: str) -> Ticket | None:
        """The ticket opened by COMMUNICATION, if any."""
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM tickets WHERE communication = ?", (communication,)
        ).fetchone()
        return Ticket(*row) if row else None

    def all(self) -> list[Ticket]:
        """Every ticket, oldest first."""
        rows = self.conn.execute(f"SELECT {_COLUMNS} FROM tickets ORDER BY created_at, ticket")
        return [Ticket(*row) for row in rows]


class TicketError(DeliveryError):
    """The external ticket system did not take the ticket."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would turn the POST into a GET and lose the body."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class TicketWebhook:
    """External ticketing: each ticket POSTed as JSON to a URL, retried on 5xx / network errors.

    The receiver should be idempotent on `ticket` (also sent as the
    Idempotency-Key header): a retry after a lost response repeats the POST."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        attempts: int = 3,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        sleep: Callable[[float], object] = time.sleep,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.shown = redact_url(url)  # the URL as printed: credentials in it are never shown
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"ticket webhook {self.shown!r}: expected an http:// or https:// URL")
        self.headers = dict(headers or {})
        self.secrets = url_secrets(url) + [v for v in self.headers.values() if v]
        parts = urlsplit(url)
        userinfo, at, host = parts.netloc.rpartition("@")
        if at:  # user:password@host is HTTP Basic authentication, not part of the address
            user, _, password = userinfo.partition(":")
            token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode("ascii")
            self.headers.setdefault("Authorization", f"Basic {token}")
            self.secrets.append(token)
            url = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
        self.url = url
        self.timeout = timeout
        self.attempts, self.base_delay, self.max_delay = attempts, base_delay, max_delay
        self.sleep = sleep
        self.breaker: Breaker | None = None  # set by the engine: counts each attempt, gives up when open
        self._opener = urllib.request.build_opener(_NoRedirect)

    def post(self, draft: Draft, ticket: str, at: datetime) -> None:
        """POST the ticket TICKET opened by DRAFT at AT; TicketError when it cannot."""
        payload = {**ticket_for(draft, at).to_json(), "ticket": ticket}
        self.post_ticket(payload)

    def post_ticket(self, payload: dict[str, str]) -> None:
        """POST one ticket payload, with retries; TicketError when it cannot."""
        body = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")
        breaker = self.breaker
        if breaker is not None and breaker.open:
            raise TicketError(f"ticket webhook {self.shown}: not tried ({breaker.last_error})", transient=True)

        def attempt() -> None:
            if breaker is None:
                return self._send(body, payload["ticket"])
            return breaker.guard(lambda: self._send(body, payload["ticket"]))

        with_retries(
            attempt,
            attempts=self.attempts,
            base_delay=self.base_delay,
            max_delay=self.max_delay,
            sleep=self.sleep,
            give_up=None if breaker is None else (lambda _exc: breaker.open),
        )

    def _send(self, body: bytes, ticket: str) -> None:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Accept": "application/json",
            "Idempotency-Key": ticket,
            "User-Agent": "forewarn-ticket-webhook",
            **self.headers,
        }
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read(_MAX_RESPONSE)
        except urllib.error.HTTPError as exc:
            error = _http_error(self.shown, exc)
            raise TicketError(redact(str(error), self.secrets), transient=error.transient, code=error.code) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TicketError(redact(f"ticket webhook {self.shown}: {reason}", self.secrets), transient=True) from None


def _http_error(url: str, exc: urllib.error.HTTPError) -> TicketError:
    """5xx, 408, 425, 429: transient; other 4xx (and 3xx): permanent."""
    code = exc.code
    transient = code >= 500 or code in _TRANSIENT_HTTP
    detail = exc.read(500).decode("utf-8", "replace").strip() if exc.fp else ""
    message = f"ticket webhook {url}: HTTP {code} {exc.reason}" + (f": {detail}" if detail else "")
    return TicketError(message, transient=transient, code=code)
