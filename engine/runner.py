"""`forewarn run`: evaluate, plan, claim, render, deliver, open the ticket, record; once or forever."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage

from forewarn import __version__
from forewarn.engine import outbox
from forewarn.engine.alerts import delivery_alerts
from forewarn.engine.cache import EvaluationCache
from forewarn.engine.delivery import Delivery, DeliveryError, with_retries
from forewarn.engine.draft import Draft
from forewarn.engine.planner import (
    Plan,
    PlanBasis,
    cancellation_drafts,
    drafts_for,
    obligation_key,
)
from forewarn.engine.render import render
from forewarn.engine.tickets import TicketStore, TicketWebhook
from forewarn.evaluate.evaluation import Evaluation, evaluate
from forewarn.events import parse_lines
from forewarn.log.source import read_store
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
    failed: list[tuple[str, str]] = field(default_factory=list)  # (message id, error)
    skipped: int = 0  # due drafts another process holds
    ticket_errors: list[tuple[str, str]] = field(default_factory=list)  # (ticket, webhook error)
    plan: Plan | None = None
    evaluation_seconds: float = 0.0  # evaluating the log (and planning) for this pass


def recorded_events(
    draft: Draft, ticket: str, at: datetime, subject_line: str, ticket_at: datetime | None = None
) -> list[dict[str, object]]:
    """The communication.sent and ticket.opened events that record a delivered draft."""
    states = {k: (_utc(v) if isinstance(v, datetime) else v) for k, v in draft.states.items()}
    comm: dict[str, object] = {
        "id": f"evt-{draft.communication}",
        "type": "communication.sent",
        "at": _utc(at),
        "communication": draft.communication,
        "customer": draft.customer,
        "to": list(draft.to),
        "from": draft.sender,
        "kind": draft.kind,
        draft.subject_kind: draft.subject,
        "subject": subject_line,
        "message_id": draft.message_id,
        "states": states,
        "meta": {"forewarn": {"engine": __version__, "policy": draft.policy_digest, "because": list(draft.reasons)}},
    }
    opened = {
        "id": f"evt-{ticket}",
        "type": "ticket.opened",
        "at": _utc(ticket_at or at),
        "ticket": ticket,
        "communication": draft.communication,
    }
    return [comm, opened]


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
    ) -> None:
        """`publish_key`: engine.published.plan_key of the rules `policy` was loaded from; with it,
        every fresh evaluation's plan is published in the log's database for `forewarn plan`."""
        self.store = store
        self.policy = policy
        self.delivery = delivery
        self.webhook = webhook
        self.clock = clock
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.conn = store.db.conn
        # WAL with synchronous=NORMAL: a commit survives a crash of this process (SIGKILL
        # included), only an OS crash may lose the last ones; FULL costs an fsync per send.
        self.conn.execute("PRAGMA synchronous=NORMAL")
        outbox.ensure_schema(self.conn)
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

    def evaluation(self, now: datetime) -> tuple[Evaluation, PlanBasis]:
        """The evaluation as of `now` and its plan basis: reused from an earlier pass while
        no event was appended and nothing can have changed but the clock (see engine.cache)."""
        if self.cache is None:
            evaluation = evaluate(read_store(self.store, now), self.policy, now, checks=False)
            return evaluation, PlanBasis(evaluation)
        return self.cache.get(now)

    def plan(self, now: datetime) -> Plan:
        """What is due and upcoming as of `now`, with delivery alerts (no side effects)."""
        plan = self.evaluation(now)[1].at(now)
        plan.alerts.extend(delivery_alerts(outbox.failing(self.conn), now))
        return plan

    def run_once(self, now: datetime | None = None) -> PassResult:
        """One pass: everything due at `now` (default: the clock) is sent and recorded."""
        at = now or self.clock()
        started = time.perf_counter()
        evaluation, basis = self.evaluation(at)
        plan = basis.at(at)
        evaluated = time.perf_counter() - started
        drafts = drafts_for(evaluation, plan.due)
        due_by = {obligation_key(d.obligation): d.obligation.not_after for d in plan.due}
        deadlines = {d.message_id: min(due_by[k] for k in d.reasons) for d in drafts}
        drafts += cancellation_drafts(evaluation, plan.cancellations)
        self.store.begin_exclusive()
        try:
            claimed = outbox.claim(self.conn, drafts, deadlines)
        except BaseException:
            self.store.rollback()
            raise
        self.store.commit()
        result = PassResult(plan=plan, skipped=len(drafts) - len(claimed), evaluation_seconds=evaluated)
        self._log_plan(plan, claimed)
        # Each message is rendered while the server answers for the one before
        # (SMTP), so rendering overlaps the server's work; sending stays one at a time.
        rendered: dict[int, EmailMessage | Exception] = {}

        def prepare(i: int) -> None:
            if i < len(claimed) and i not in rendered and claimed[i].state != outbox.DELIVERED:
                rendered[i] = self._render(claimed[i].draft, now or self.clock())

        delivered: list[tuple[Draft, str]] = []
        for i, entry in enumerate(claimed):
            sent = self._deliver(entry, rendered.pop(i, None), lambda i=i: prepare(i + 1), now, result)
            if sent is not None:
                delivered.append(sent)
            if len(delivered) >= RECORD_BATCH:
                self._record(delivered, at, result)
                delivered = []
        if delivered:
            self._record(delivered, at, result)
        return result

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
    ) -> tuple[Draft, str] | None:
        """Render (unless done ahead) and deliver one claimed entry; (draft, Subject) once the
        server accepted it. `next_one` prepares the next entry, while the server answers if it can."""
        draft = entry.draft
        if message is None:
            message = self._render(draft, now or self.clock())
        if isinstance(message, ValueError):  # RenderError: this draft cannot be sent; the others still are
            error = f"cannot render: {message}"
            self._commit(lambda: outbox.mark(self.conn, draft.message_id, outbox.FAILED, error))
            result.failed.append((draft.message_id, error))
            log.error("cannot render", extra={"fields": {"event": "failed", "message_id": draft.message_id,
                                                           "error": error}})
            return None
        if isinstance(message, Exception):
            raise message
        if entry.state != outbox.DELIVERED:
            msg = message
            if getattr(self.delivery, "overlaps", False):
                send = lambda: self.delivery.deliver(msg, while_waiting=(next_one,))  # type: ignore[call-arg]  # noqa: E731
            else:
                send = lambda: self.delivery.deliver(msg)  # noqa: E731
            def retrying(attempt: int, exc: DeliveryError, delay: float) -> None:
                log.warning(
                    "delivery failed, retrying",
                    extra={"fields": {"event": "retry", "message_id": draft.message_id, "attempt": attempt,
                                      "delay_s": round(delay, 3), "error": str(exc)}},
                )

            try:
                with_retries(send, attempts=self.attempts, base_delay=self.retry_delay, on_retry=retrying)
            except DeliveryError as exc:
                state = outbox.INTENT if exc.transient else outbox.FAILED
                error = str(exc)
                self._commit(lambda: outbox.mark(self.conn, draft.message_id, state, error))
                result.failed.append((draft.message_id, error))
                log.error(
                    "delivery failed",
                    extra={"fields": {"event": "failed", "message_id": draft.message_id, "transient": exc.transient,
                                      "error": error}},
                )
                return None
            # Known delivered from here on: a crash before it is recorded records it
            # on restart without sending it again.
            self._commit(lambda: outbox.mark(self.conn, draft.message_id, outbox.DELIVERED))
            log.info(
                "sent",
                extra={"fields": {"event": "sent", "communication": draft.communication, "kind": draft.kind,
                                  "subject": draft.subject, "customer": draft.customer,
                                  "message_id": draft.message_id}},
            )
        return draft, str(message["Subject"])

    def _record(self, delivered: list[tuple[Draft, str]], at: datetime, result: PassResult) -> None:
        """Append the communications and their tickets to the log and close their outbox entries, atomically."""
        self.store.begin_exclusive()
        try:
            tickets = self.tickets.open_many([draft for draft, _subject in delivered], at)
            lines = []
            for (draft, subject_line), ticket in zip(delivered, tickets, strict=True):
                lines.extend(json.dumps(e) for e in recorded_events(draft, ticket, at, subject_line))
            events, errors = parse_lines(lines, "<engine>")
            if errors:
                raise RuntimeError("; ".join(str(e) for e in errors))
            known = self.store.known_events(e.event.id for e in events)
            self.store.append_in_transaction([e for e in events if e.event.id not in known])
            outbox.mark_many(self.conn, [draft.message_id for draft, _subject in delivered], outbox.RECORDED)
        except BaseException:
            self.store.rollback()
            raise
        self.store.commit()
        for (draft, _subject), ticket in zip(delivered, tickets, strict=True):
            result.sent.append(draft.communication)
            if self.webhook is not None:
                try:  # the mail went out and is recorded; the external ticket is best effort, retried
                    self.webhook.post(draft, ticket, at)
                except DeliveryError as exc:
                    result.ticket_errors.append((ticket, str(exc)))

    def _log_plan(self, plan: Plan, claimed: list[outbox.Entry]) -> None:
        """A line per decision (a message claimed to be sent, and why) and per alert when it appears."""
        for entry in claimed:
            draft = entry.draft
            log.info(
                "decided to send",
                extra={"fields": {"event": "decision", "communication": draft.communication, "kind": draft.kind,
                                  "subject": draft.subject, "customer": draft.customer, "because": list(draft.reasons),
                                  "state": entry.state}},
            )
        current = set()
        for alert in plan.alerts:
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
            if result.failed:
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
