"""Support tickets for sent communications: a table in the log's database, or an external ticket system.

Without a webhook, the built-in store is the ticket system: its row and the `ticket.opened` event
are written with the communication, in one transaction. With `--ticket-webhook`, the external
system is: a ticket owed is queued (table `ticket_queue`) with the communication, POSTed, and
`ticket.opened` is recorded only once the system answered 2xx, with the id it returned (then the
built-in table mirrors it); a failed POST is retried by later passes with backoff."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from forewarn.engine.delivery import Breaker, DeliveryError
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

    def record(self, ticket: Ticket) -> None:
        """Mirror a ticket another system opened (its own id), in the caller's transaction if one is open."""
        self._write(
            lambda: self.conn.execute(
                f"INSERT OR IGNORE INTO tickets ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                tuple(asdict(ticket).values()),
            )
        )

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


_HEADER_NAME = re.compile(r"^([A-Za-z0-9-]+):\s*(\S.*)$")
_ID_CHARS = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")


def auth_header(text: str) -> tuple[str, str]:
    """`--ticket-auth-header`: "Bearer TOKEN" (the Authorization header's value) or "Name: value"
    (another header, e.g. "X-Api-Key: ..."); ValueError, never showing the value, when malformed."""
    if "\r" in text or "\n" in text or not text.strip():
        raise ValueError("--ticket-auth-header: expected one line, e.g. 'Bearer TOKEN' or 'X-Api-Key: KEY'")
    named = _HEADER_NAME.match(text.strip())
    if named and " " not in named.group(1):
        return named.group(1), named.group(2)
    return "Authorization", text.strip()


class TicketWebhook:
    """External ticketing: each ticket POSTed as JSON to a URL (httpx), retried within the call on 5xx,
    408/425/429 and network errors (tenacity, exponential backoff with jitter).

    The receiver should be idempotent on `ticket` (also sent as the Idempotency-Key header): a
    retry after a lost response repeats the POST. It answers 2xx with the ticket's id: a JSON body
    `{"id": ...}`, else a `Location` header (its last path segment); with neither, the id proposed
    in the payload (`ticket`) is the one it accepted. Credentials (in the URL's user-info, the
    authorization header) are never printed."""

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
        authorization: str | None = None,
    ) -> None:
        self.shown = redact_url(url)  # the URL as printed: credentials in it are never shown
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"ticket webhook {self.shown!r}: expected an http:// or https:// URL")
        self.headers = dict(headers or {})
        if authorization is not None:
            name, value = auth_header(authorization)
            self.headers[name] = value
        self.secrets = url_secrets(url) + [v for v in self.headers.values() if v]
        import httpx  # here: the engine's other users (plan, audit) never load it

        if any(ord(c) < 32 or ord(c) == 127 for c in url):  # urlsplit would drop CR/LF silently
            raise ValueError(f"ticket webhook {self.shown!r}: not a valid URL (a control character)")
        try:
            parts = urlsplit(url)
            httpx.URL(url)
        except (ValueError, httpx.InvalidURL) as exc:
            raise ValueError(redact(f"ticket webhook {self.shown!r}: not a valid URL ({exc})", self.secrets)) from None
        userinfo, at, host = parts.netloc.rpartition("@")
        auth: tuple[str, str] | None = None
        if at:  # user:password@host is HTTP Basic authentication, not part of the address
            user, _, password = userinfo.partition(":")
            auth = (unquote(user), unquote(password))
            url = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
        self.url = url
        self.timeout = timeout
        self.attempts, self.base_delay, self.max_delay = attempts, base_delay, max_delay
        self.sleep = sleep
        self.breaker: Breaker | None = None  # set by the engine: counts each attempt, gives up when open
        self._client = httpx.Client(
            auth=auth, timeout=httpx.Timeout(timeout), follow_redirects=False, headers={"User-Agent": "forewarn"}
        )

    def close(self) -> None:
        self._client.close()

    def post(self, draft: Draft, ticket: str, at: datetime) -> str:
        """POST the ticket TICKET opened by DRAFT at AT: the id the system gave it; TicketError when it cannot."""
        payload = {**ticket_for(draft, at).to_json(), "ticket": ticket}
        return self.post_ticket(payload)

    def post_ticket(self, payload: dict[str, str]) -> str:
        """POST one ticket payload, with retries: the id the system gave it; TicketError when it cannot."""
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

        breaker = self.breaker
        if breaker is not None and breaker.open:
            raise TicketError(f"ticket webhook {self.shown}: not tried ({breaker.last_error})", transient=True)
        body = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")

        def attempt() -> str:
            if breaker is None:
                return self._send(body, payload["ticket"])
            return breaker.guard(lambda: self._send(body, payload["ticket"]))

        def worth_retrying(exc: BaseException) -> bool:
            return isinstance(exc, TicketError) and exc.transient and not (breaker is not None and breaker.open)

        retrying = Retrying(
            stop=stop_after_attempt(max(1, self.attempts)),
            wait=wait_exponential(multiplier=self.base_delay, max=self.max_delay) + wait_random(0, self.base_delay),
            retry=retry_if_exception(worth_retrying),
            sleep=self.sleep,
            reraise=True,
        )
        return str(retrying(attempt))

    def _send(self, body: bytes, ticket: str) -> str:
        import httpx

        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Accept": "application/json",
            "Idempotency-Key": ticket,
            **self.headers,
        }
        try:
            with self._client.stream("POST", self.url, content=body, headers=headers) as response:
                content = b""  # at most _MAX_RESPONSE bytes of the answer are read: bounded memory
                for chunk in response.iter_bytes():
                    content += chunk
                    if len(content) >= _MAX_RESPONSE:
                        break
        except httpx.TimeoutException:
            error = f"ticket webhook {self.shown}: timed out after {self.timeout:g} s"
            raise TicketError(error, transient=True) from None
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
            raise TicketError(
                redact(f"ticket webhook {self.shown}: {type(exc).__name__}: {exc}", self.secrets), transient=True
            ) from None
        if not 200 <= response.status_code < 300:
            raise _http_error(self.shown, response, content[:500], self.secrets)
        return _returned_id(content, response.headers.get("Location"), ticket, self.shown)


def _returned_id(content: bytes, location: str | None, proposed: str, shown: str) -> str:
    """The ticket id in a 2xx answer: JSON `{"id": ...}`, else the Location header's last segment, else
    the id proposed in the request."""
    found: object = None
    try:
        data = json.loads(content) if content else None
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("id"), (str, int)) and not isinstance(data.get("id"), bool):
        found = data["id"]
    elif location:
        found = urlsplit(location).path.rstrip("/").rpartition("/")[2] or None
    text = proposed if found is None else str(found).strip()
    if not _ID_CHARS.match(text) or not text.strip():
        error = f"ticket webhook {shown}: accepted, but its ticket id {text[:40]!r} is unusable"
        raise TicketError(error, transient=False)
    return text


def _http_error(shown: str, response: Any, content: bytes, secrets: list[str]) -> TicketError:
    """5xx, 408, 425, 429: transient; other 4xx (and 3xx): permanent."""
    code = response.status_code
    transient = code >= 500 or code in _TRANSIENT_HTTP
    detail = content.decode("utf-8", "replace").strip()
    message = f"ticket webhook {shown}: HTTP {code} {response.reason_phrase}" + (f": {detail}" if detail else "")
    return TicketError(redact(message, secrets), transient=transient, code=code)
