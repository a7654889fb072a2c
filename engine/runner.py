"""`forewarn run`: evaluate, plan, claim, render, deliver, open the ticket, record; once or forever."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.message import EmailMessage

from forewarn import __version__
from forewarn.engine import outbox, ticket_queue
from forewarn.engine.alerts import RETRY_COMMAND, Alert, delivery_alerts, ticket_alerts
from forewarn.engine.cache import EngineView, EvaluationCache
from forewarn.engine.delivery import Breaker, Delivery, DeliveryError, Refused, with_retries
from forewarn.engine.draft import Draft
from forewarn.engine.planner import (
    Plan,
    PlanBasis,
    cancellation_drafts,
    drafts_for,
    obligation_key,
)
from forewarn.engine.render import render
from forewarn.engine.tickets import Ticket, TicketStore, TicketWebhook, ticket_id, utc_text
from forewarn.events import parse_lines
from forewarn.log.store import EventStore
from forewarn.policy.model import Policy

log = logging.getLogger("forewarn.engine")
log.addHandler(logging.NullHandler())  # silent unless the program sets logging up (forewarn.logs: run, serve)

RECORD_BATCH = 50  # delivered messages recorded per transaction (each is marked delivered at once)
WATCH = 0.25
"""Seconds between two looks at the log while `run` sleeps: an append by another process (a
critical incident declared, say) is planned, sent if due, and published within this."""


def _utc(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if t.microsecond else t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class PassResult:
    """What one pass of the engine did."""

    sent: list[str] = field(default_factory=list)  # communication ids recorded
    failed: list[tuple[str, str]] = field(default_factory=list)  # (outbox key, error), recipients refused included
    skipped: int = 0  # due drafts another process holds
    ticket_errors: list[tuple[str, str]] = field(default_factory=list)  # (communication, webhook error)
    plan: Plan | None = None
    evaluation_seconds: float = 0.0  # evaluating the log (and planning) for this pass
    deferred: int = 0  # due messages not tried this pass: the pass deadline passed, or the mail server was given up
    alerts: list[Alert] = field(default_factory=list)  # raised by this pass, for a person

    @property
    def unfinished(self) -> bool:
        """Whether something due was not delivered and recorded by this pass (its ticket included)."""
        return bool(self.failed or self.deferred or self.alerts or self.ticket_errors)


@dataclass
class Delivered:
    """A message the server accepted (for some recipients at least), not yet recorded."""

    entry: outbox.Entry
    subject_line: str
    refused: Refused = field(default_factory=dict)

    @property
    def draft(self) -> Draft:
        return self.entry.draft


def follow_up(draft: Draft, recipients: Sequence[str]) -> Draft:
    """The resend of DRAFT's message (same Message-ID and content) to RECIPIENTS the server refused."""
    root = draft.follow_up_of or draft.communication
    seed = f"{draft.communication}|{','.join(sorted(recipients))}"
    return replace(
        draft,
        communication="fw-" + hashlib.sha256(seed.encode()).hexdigest()[:20],
        follow_up_of=root,
        resend_to=tuple(recipients),
    )


def _reply(code: int, text: bytes | str) -> str:
    return f"{code} {text.decode('utf-8', 'replace') if isinstance(text, bytes) else text}".strip()


def recorded_events(
    draft: Draft,
    ticket: str | None,
    at: datetime,
    subject_line: str,
    ticket_at: datetime | None = None,
    refused: Refused | None = None,
    note: dict[str, object] | None = None,
) -> list[dict[str, object]]:
    """The communication.sent and ticket.opened events that record a delivered draft.

    `to` names the recipients the server accepted, never one it refused (REFUSED); the decision
    log (`meta.forewarn`) says which were refused and why. A follow-up (the same message resent to
    recipients refused before) is recorded as kind `other`: the customer was told by the
    communication it follows, which alone counts for the obligation."""
    states = {k: (_utc(v) if isinstance(v, datetime) else v) for k, v in draft.states.items()}
    refused = refused or {}
    addressed = list(draft.resend_to or draft.to)
    decision: dict[str, object] = {"engine": __version__, "policy": draft.policy_digest, "because": list(draft.reasons)}
    if refused:
        decision["refused"] = [
            {"to": address, "reply": _reply(code, text), "permanent": not (400 <= code < 500)}
            for address, (code, text) in refused.items()
        ]
        decision["met_by"] = "the recipients the server accepted (to); refused ones are followed up apart"
    if draft.late:
        decision["late"] = list(draft.late)  # sent after these obligations' deadlines (policy: late, not never)
    if draft.follow_up_of is not None:
        decision["follow_up_of"] = draft.follow_up_of
        decision["kind_sent"] = draft.kind
    if note:
        decision.update(note)
    comm: dict[str, object] = {
        "id": f"evt-{draft.communication}",
        "type": "communication.sent",
        "at": _utc(at),
        "communication": draft.communication,
        "customer": draft.customer,
        "to": [a for a in addressed if a not in refused],
        "from": draft.sender,
        "kind": "other" if draft.follow_up_of is not None else draft.kind,
        draft.subject_kind: draft.subject,
        "subject": subject_line,
        "message_id": draft.message_id,
        "states": states,
        "meta": {"forewarn": decision},
    }
    if ticket is None:  # an external ticket system: recorded once it accepted the ticket
        return [comm]
    return [comm, ticket_event(f"evt-{ticket}", ticket, draft.communication, ticket_at or at)]


def ticket_event(event_id: str, ticket: str, communication: str, at: datetime) -> dict[str, object]:
    """The ticket.opened event: TICKET, opened for COMMUNICATION at AT."""
    return {"id": event_id, "type": "ticket.opened", "at": _utc(at), "ticket": ticket, "communication": communication}


class _Heartbeat:
    """Renews this process's leases on the entries it holds while a pass runs (its own connection,
    on its own thread): a message in flight on a slow server stays this process's."""

    def __init__(self, path: str, owner: str, lease: float) -> None:
        self.path, self.owner, self.lease = path, owner, lease
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="forewarn-lease", daemon=True)

    def _run(self) -> None:
        import sqlite3

        conn = sqlite3.connect(self.path, timeout=max(0.05, self.lease / 4), isolation_level=None)
        try:
            while not self.stop.wait(self.lease / 3):
                try:
                    outbox.renew(conn, self.owner, self.lease)
                except sqlite3.OperationalError:  # busy: the next beat comes well before the lease ends
                    continue
        finally:
            conn.close()

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


class Engine:
    """Sends what the policy says is due, exactly once per obligation, recording it in the log."""

    def __init__(
        self,
        store: EventStore,
        policy: Policy,
        delivery: Delivery,
        webhook: TicketWebhook | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        attempts: int = 3,
        retry_delay: float = 0.5,
        cache: bool = True,
        freeze_gc: bool = False,
        publish_key: str | None = None,
        *,
        lease: float | None = None,
        owner: str | None = None,
        pass_deadline: float | None = 300.0,
        give_up_after: int = 3,
        destination: str = "the mail server",
        ticket_backoff: float = 30.0,
    ) -> None:
        """`publish_key`: engine.published.plan_key of the rules `policy` was loaded from; with it,
        every fresh evaluation's plan is published in the log's database for `forewarn plan`.

        `lease`: seconds another process keeps off an entry this one holds (renewed while held);
        `pass_deadline`: seconds after which a pass stops starting deliveries (the rest waits for the
        next pass); `give_up_after`: consecutive transient failures after which a destination (the mail
        server, the webhook) is not tried again this pass (0: never given up); `ticket_backoff`: seconds
        before a failed ticket POST is tried again by a later pass (doubled per failure, at most an hour)."""
        self.store = store
        self.policy = policy
        self.delivery = delivery
        self.webhook = webhook
        self.clock = clock
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.lease = outbox.LEASE_SECONDS if lease is None else lease
        self.owner = owner or outbox.owner_id()
        self.pass_deadline = pass_deadline
        self.give_up_after = give_up_after
        self.destination = destination
        self.ticket_backoff = ticket_backoff
        self.conn = store.db.conn
        # WAL with synchronous=NORMAL: a commit survives a crash of this process (SIGKILL
        # included), only an OS crash may lose the last ones; FULL costs an fsync per send.
        self.conn.execute("PRAGMA synchronous=NORMAL")
        outbox.ensure_schema(self.conn)
        if webhook is not None:
            ticket_queue.ensure_queue(self.conn)
        self.conn.commit()
        self.tickets = TicketStore(store.db)
        self.cache = EvaluationCache(store, policy, freeze_gc, publish_key) if cache else None
        self.woken = threading.Event()
        self._alerted: set[str] = set()  # alerts logged already (each is logged when it appears)

    def wake(self) -> None:
        """Cut the current sleep of `run_forever` short (from any thread): something was appended."""
        self.woken.set()

    def store_times(self) -> list[datetime]:
        """The `at` of every event in the log (the instants a replay must visit)."""
        rows = self.conn.execute("SELECT DISTINCT at FROM events")
        return [datetime.fromisoformat(at.replace("Z", "+00:00")) for (at,) in rows]

    def evaluation(self, now: datetime) -> tuple[EngineView, PlanBasis]:
        """The facts as of `now` and the plan basis: reused from an earlier pass while
        no event was appended and nothing can have changed but the clock (see engine.cache)."""
        if self.cache is None:
            return EvaluationCache(self.store, self.policy).get(now)
        return self.cache.get(now)

    def plan(self, now: datetime) -> Plan:
        """What is due and upcoming as of `now`, with delivery alerts (no side effects)."""
        plan = self.evaluation(now)[1].at(now)
        plan.alerts.extend(delivery_alerts(outbox.failing(self.conn), now))
        plan.alerts.extend(ticket_alerts(ticket_queue.failing(self.conn)))
        return plan

    def standing_refusals(self, now: datetime) -> list[Alert]:
        """Deliveries refused for good that wait for a person (`retry_failed` once fixed)."""
        return [a for a in delivery_alerts(outbox.failing(self.conn), now) if a.problem == "refused"]

    def retry_failed(self, ids: Sequence[str] = (), by: str = RETRY_COMMAND) -> list[str]:
        """Make the failed outbox entries named by IDS (message ids, communication ids; none: all of
        them) due again, the decision noted for their record: the outbox keys reset. All or nothing:
        ValueError, and nothing changed, when an id names no failed entry."""
        reset: list[str] = []

        def make_due() -> None:
            keys, unknown = outbox.retry_failed(self.conn, ids, by)
            if unknown:
                raise ValueError(f"no failed delivery {', '.join(unknown)} in the outbox")
            reset.extend(keys)

        self._commit(make_due)
        return reset

    def run_once(self, now: datetime | None = None) -> PassResult:
        """One pass: everything due at `now` (default: the clock) is sent and recorded, and the
        follow-ups owed to recipients refused before are resent; within the pass deadline."""
        started = time.monotonic()
        at = now or self.clock()
        evaluating = time.perf_counter()
        evaluation, basis = self.evaluation(at)
        plan = basis.at(at)
        evaluated = time.perf_counter() - evaluating
        drafts = drafts_for(evaluation, plan.due)
        due_by = {obligation_key(d.obligation): d.obligation.not_after for d in plan.due}
        deadlines = {d.message_id: min(due_by[k] for k in d.reasons) for d in drafts}
        drafts += cancellation_drafts(evaluation, plan.cancellations)
        keys: list[str] = []

        def register() -> None:
            keys.extend(outbox.register(self.conn, drafts, deadlines))

        self._commit(register)
        fresh = {outbox.key_of(d): d for d in drafts}
        result = PassResult(plan=plan, evaluation_seconds=evaluated)
        self._log_alerts(plan.alerts)
        breaker = Breaker(self.destination, self.give_up_after)
        if self.webhook is not None:  # its own destination: given up apart from the mail server
            self.webhook.breaker = Breaker("the ticket webhook", self.give_up_after)
        out_of_time = lambda: (  # noqa: E731
            self.pass_deadline is not None and time.monotonic() - started > self.pass_deadline
        )
        # Each message is rendered while the server answers for the one before
        # (SMTP), so rendering overlaps the server's work; sending stays one at a time.
        rendered: dict[int, tuple[Draft, EmailMessage | Exception]] = {}

        def prepare(i: int) -> None:
            draft = fresh.get(keys[i]) if i < len(keys) else None
            if draft is not None and i not in rendered:
                rendered[i] = (draft, self._render(draft, now or self.clock()))

        delivered: list[Delivered] = []
        beat = _Heartbeat(self.store.path, self.owner, self.lease) if self.store.path != ":memory:" else None
        with beat or contextlib.nullcontext():
            for i, key in enumerate(keys):
                if out_of_time() or breaker.open:
                    result.deferred = len(keys) - i
                    break
                entry = self._take(key)
                if entry is None:
                    result.skipped += 1
                    continue
                self._log_decision(entry)
                ahead = rendered.pop(i, None)
                message = ahead[1] if ahead is not None and ahead[0] == entry.draft else None
                sent = self._deliver(
                    entry, message, lambda i=i: prepare(i + 1), now, result, evaluation, breaker, out_of_time
                )
                if sent is not None:
                    delivered.append(sent)
                if len(delivered) >= RECORD_BATCH:
                    self._record(delivered, at, result)
                    delivered = []
                    self._post_tickets(now, result, out_of_time)
            if delivered:
                self._record(delivered, at, result)
            self._post_tickets(now, result, out_of_time)
        hook = self.webhook.breaker if self.webhook is not None else None
        if hook is not None and hook.open:
            owed = ticket_queue.owed(self.conn)
            result.alerts.append(
                Alert(
                    "ticket-opened",
                    hook.destination,
                    "unreachable",
                    f"{hook.destination} failed {hook.failures} time(s) in a row ({hook.last_error}); "
                    f"not tried again this pass: {owed} ticket(s) wait for the next pass",
                )
            )
        if breaker.open:
            result.alerts.append(
                Alert(
                    "delivery",
                    self.destination,
                    "unreachable",
                    f"{self.destination} failed {breaker.failures} time(s) in a row ({breaker.last_error}); "
                    f"not tried again this pass: {result.deferred} message(s) wait for the next pass",
                )
            )
        elif result.deferred:
            result.alerts.append(
                Alert(
                    "delivery",
                    "pass",
                    "deadline",
                    f"the pass reached its deadline ({self.pass_deadline:g} s): "
                    f"{result.deferred} message(s) wait for the next pass",
                )
            )
        return result

    def _take(self, key: str) -> outbox.Entry | None:
        """Lease the entry KEY just before sending it (None: recorded, failed or held elsewhere meanwhile)."""
        taken: list[outbox.Entry | None] = [None]

        def take() -> None:
            taken[0] = outbox.take(self.conn, key, self.owner, self.lease)

        self._commit(take)
        return taken[0]

    @staticmethod
    def _render(draft: Draft, at: datetime) -> EmailMessage | Exception:
        try:
            return render(draft, at)
        except Exception as exc:
            return exc

    def _deliver(
        self,
        entry: outbox.Entry,
        message: EmailMessage | Exception | None,
        next_one: Callable[[], None],
        now: datetime | None,
        result: PassResult,
        evaluation: EngineView,
        breaker: Breaker,
        out_of_time: Callable[[], bool],
    ) -> Delivered | None:
        """Render (unless done ahead) and deliver one taken entry; what the server accepted.
        `next_one` prepares the next entry, while the server answers if it can."""
        draft = entry.draft
        if draft.follow_up_of is not None:
            history = evaluation.history(draft.subject_kind, draft.subject)
            if history is not None and history.cancelled_at is not None:
                error = f"{draft.subject} was cancelled before this resend to {', '.join(draft.resend_to)}: not sent"
                self._commit(lambda: outbox.mark(self.conn, entry.key, outbox.FAILED, error))
                result.failed.append((entry.key, error))
                log.error(error, extra={"fields": {"event": "failed", "message_id": entry.key, "error": error}})
                return None
        if message is None:
            message = self._render(draft, now or self.clock())
        if isinstance(message, ValueError):  # RenderError: this draft cannot be sent; the others still are
            error = f"cannot render: {message}"
            self._commit(lambda: outbox.mark(self.conn, entry.key, outbox.FAILED, error))
            result.failed.append((entry.key, error))
            log.error("cannot render", extra={"fields": {"event": "failed", "message_id": entry.key, "error": error}})
            return None
        if isinstance(message, Exception):
            raise message
        refused: Refused = {}
        if entry.state != outbox.DELIVERED:
            msg = message
            options: dict[str, object] = {}
            if draft.resend_to:
                options["recipients"] = draft.resend_to
            if getattr(self.delivery, "overlaps", False):
                options["while_waiting"] = (next_one,)
            send = lambda: breaker.guard(lambda: self.delivery.deliver(msg, **options))  # noqa: E731

            def retrying(attempt: int, exc: DeliveryError, delay: float) -> None:
                log.warning(
                    "delivery failed, retrying",
                    extra={"fields": {"event": "retry", "message_id": entry.key, "attempt": attempt,
                                      "delay_s": round(delay, 3), "error": str(exc)}},
                )

            try:
                refused = with_retries(
                    send,
                    attempts=self.attempts,
                    base_delay=self.retry_delay,
                    on_retry=retrying,
                    give_up=lambda _exc: breaker.open or out_of_time(),
                ) or {}
            except DeliveryError as exc:
                state = outbox.INTENT if exc.transient else outbox.FAILED
                error = str(exc)
                self._commit(lambda: outbox.mark(self.conn, entry.key, state, error))
                result.failed.append((entry.key, error))
                log.error(
                    "delivery failed",
                    extra={"fields": {"event": "failed", "message_id": entry.key, "transient": exc.transient,
                                      "error": error}},
                )
                return None
            # Known delivered from here on: a crash before it is recorded records it
            # on restart without sending it again (its refused recipients are then not followed up).
            self._commit(lambda: outbox.mark(self.conn, entry.key, outbox.DELIVERED))
            log.info(
                "sent",
                extra={"fields": {"event": "sent", "communication": draft.communication, "kind": draft.kind,
                                  "subject": draft.subject, "customer": draft.customer,
                                  "message_id": draft.message_id, **({"refused": sorted(refused)} if refused else {})}},
            )
        return Delivered(entry, str(message["Subject"]), dict(refused))

    def _record(self, delivered: list[Delivered], at: datetime, result: PassResult) -> None:
        """Append the communications and their tickets to the log, owe follow-ups to refused
        recipients and close the outbox entries, atomically."""
        follow_ups: list[tuple[Draft, str | None, str, bool]] = []  # (draft, deadline, error, permanent)
        for d in delivered:
            temporary = [a for a, (code, _) in d.refused.items() if 400 <= code < 500]
            permanent = [a for a in d.refused if a not in temporary]
            for group, permanent_group in ((temporary, False), (permanent, True)):
                if not group:
                    continue
                detail = "; ".join(f"{a}: {_reply(*d.refused[a])}" for a in group)
                error = f"recipients refused ({detail})"
                follow_ups.append((follow_up(d.draft, group), d.entry.not_after, error, permanent_group))
                result.failed.append((outbox.key_of(follow_ups[-1][0]), error))
        self.store.begin_exclusive()
        try:
            if self.webhook is None:  # the built-in store is the ticket system: opened with the record
                opened: list[str | None] = list(self.tickets.open_many([d.draft for d in delivered], at))
            else:  # owed to the external system, recorded once it accepts (_post_tickets)
                opened = [None] * len(delivered)
                for d in delivered:
                    ticket_queue.owe(self.conn, d.draft, at)
            lines = []
            for d, ticket in zip(delivered, opened, strict=True):
                events = recorded_events(d.draft, ticket, at, d.subject_line, refused=d.refused, note=d.entry.note)
                lines.extend(json.dumps(e) for e in events)
            events, errors = parse_lines(lines, "<engine>")
            if errors:
                raise RuntimeError("; ".join(str(e) for e in errors))
            known = self.store.known_events(e.event.id for e in events)
            self.store.append_in_transaction([e for e in events if e.event.id not in known])
            for draft, not_after, error, permanent in follow_ups:
                outbox.add_follow_up(self.conn, draft, not_after, error, permanent)
            outbox.mark_many(self.conn, [d.entry.key for d in delivered], outbox.RECORDED)
        except BaseException:
            self.store.rollback()
            raise
        self.store.commit()
        result.sent.extend(d.draft.communication for d in delivered)
        for draft, _not_after, error, permanent in follow_ups:
            log.warning(
                error,
                extra={"fields": {"event": "refused", "message_id": draft.message_id, "to": list(draft.resend_to),
                                  "follow_up": outbox.key_of(draft), "permanent": permanent}},
            )
        for d in delivered:
            if d.draft.late and d.draft.follow_up_of is None:
                draft = d.draft
                result.alerts.append(
                    Alert(
                        "late",
                        draft.subject,
                        "sent-late",
                        f"{draft.kind} to {draft.customer} about {draft.subject} went out after its deadline "
                        f"({', '.join(draft.late)}): the audit reports it late; tell the customer why, or record "
                        "a waiver with the reason",
                        customer=draft.customer,
                    )
                )

    def _post_tickets(self, now: datetime | None, result: PassResult, out_of_time: Callable[[], bool]) -> None:
        """Open the tickets owed to the external system (those whose backoff has passed): each recorded
        as ticket.opened, with the id the system returned, once it accepted it; failures wait for a
        later pass."""
        webhook = self.webhook
        if webhook is None:
            return
        for communication in ticket_queue.due(self.conn):
            if out_of_time() or (webhook.breaker is not None and webhook.breaker.open):
                break
            payload: dict[str, str] | None = None

            def take(communication: str = communication) -> None:
                nonlocal payload
                payload = ticket_queue.take(self.conn, communication, self.owner, self.lease)

            self._commit(take)
            if payload is None:
                continue
            proposed = ticket_id(communication)
            try:
                ticket = webhook.post_ticket({**payload, "ticket": proposed})
            except DeliveryError as exc:
                error = str(exc)
                self._commit(lambda c=communication, e=error: ticket_queue.failed(self.conn, c, e, self.ticket_backoff))
                result.ticket_errors.append((communication, error))
                continue
            self._ticket_opened(payload, ticket, now or self.clock())

    def _ticket_opened(self, payload: dict[str, str], ticket: str, at: datetime) -> None:
        """Record that the external system opened TICKET for the payload's communication at AT."""
        communication = payload["communication"]
        line = json.dumps(ticket_event(f"evt-ticket-{communication}", ticket, communication, at))
        self.store.begin_exclusive()
        try:
            events, errors = parse_lines([line], "<engine>")
            if errors:
                raise RuntimeError("; ".join(str(e) for e in errors))
            if not self.store.known_events(e.event.id for e in events):
                self.store.append_in_transaction(events)
            self.tickets.record(Ticket(**{**payload, "ticket": ticket, "created_at": utc_text(at)}))
            ticket_queue.opened(self.conn, communication, ticket)
        except BaseException:
            self.store.rollback()
            raise
        self.store.commit()

    @staticmethod
    def _log_decision(entry: outbox.Entry) -> None:
        """A line per message this process took to send (leased), and why it is sent."""
        draft = entry.draft
        fields: dict[str, object] = {
            "event": "decision", "communication": draft.communication, "kind": draft.kind, "subject": draft.subject,
            "customer": draft.customer, "because": list(draft.reasons), "state": entry.state,
        }
        if draft.follow_up_of:
            fields.update(follow_up_of=draft.follow_up_of, to=list(draft.resend_to))
        log.info("decided to send", extra={"fields": fields})

    def _log_alerts(self, alerts: Sequence[Alert]) -> None:
        """A line per alert of the plan when it appears (not again at each pass while it stands)."""
        current = set()
        for alert in alerts:
            data = alert.to_json()
            key = json.dumps(data, sort_keys=True, default=str)
            current.add(key)
            if key not in self._alerted:
                message = str(data.get("message") or data.get("problem"))
                log.warning(message, extra={"fields": {"event": "alert", **data}})
        self._alerted = current

    def _commit(self, fn: Callable[[], None]) -> None:
        self.store.begin_exclusive()
        try:
            fn()
        except BaseException:
            self.store.rollback()
            raise
        self.store.commit()

    def run_forever(
        self,
        poll: float = 30.0,
        stop: threading.Event | None = None,
        report: Callable[[PassResult], None] | None = None,
        handle_signals: bool = True,
        min_interval: float = 0.0,
    ) -> None:
        """Pass after pass, sleeping until the next due time, `poll` seconds, an append to the log by
        another process, or `wake()`, whichever comes first; stops when `stop` is set, and on
        SIGTERM/SIGINT if `handle_signals` (only possible in the main thread). With `min_interval`, passes
        start at most every `min_interval` seconds, or three times the last pass's duration if longer: under a
        stream of appends (the API's), one pass takes all those of the interval, and the engine keeps at most
        a third of the time for itself."""
        stop = stop or threading.Event()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
        next_start = 0.0
        while not stop.is_set():
            if min_interval > 0:
                stop.wait(max(0.0, next_start - time.monotonic()))
            started = time.monotonic()
            seen = self._data_version()  # before the pass reads the log: a commit from now on wakes the sleep
            result = self.run_once()
            next_start = started + max(min_interval, 3 * (time.monotonic() - started))
            if result.sent and self.cache is not None and self.cache.publish_key is not None:
                # Evaluate the log just appended to now rather than at the next pass (which then finds
                # it cached): the plan published for `forewarn plan` is current while the engine sleeps.
                self.evaluation(self.clock())
            if report:
                report(result)
            wake = result.plan.next_wake() if result.plan else None
            delay = poll
            if wake is not None:
                delay = max(0.0, min(poll, (wake - self.clock()).total_seconds()))
            if result.deferred and not any(a.problem == "unreachable" for a in result.alerts):
                delay = 0.0  # the pass stopped at its deadline: go on at once
            elif result.failed:
                delay = min(delay, 5.0)
            self._sleep(stop, delay, seen)

    def _data_version(self) -> int:
        """SQLite's `PRAGMA data_version`: it moves when another connection commits to the database
        (not on this one's own commits); a few microseconds to read, no lock taken."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def _sleep(self, stop: threading.Event, seconds: float, seen: int) -> None:
        """Wait `seconds`, or until stopped, woken, or another connection has committed since `seen`."""
        deadline = time.monotonic() + seconds
        while self._data_version() == seen:
            left = deadline - time.monotonic()
            if left <= 0 or stop.is_set():
                return
            if self.woken.wait(min(WATCH, left)):
                self.woken.clear()
                return
