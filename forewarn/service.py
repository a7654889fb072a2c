"""`forewarn serve`'s process: what the HTTP API (forewarn.api) asks of the log, and the engine's process
(forewarn.engine_process) started and watched.

Writes to the log go through one connection on one thread (the writer), so the API's appends are
serialised among themselves; the engine has its own connection in its own process, and SQLite's write lock
(BEGIN IMMEDIATE, WAL) serialises the two. The posts waiting when the writer is free are committed together
(group commit): each in a savepoint of the one transaction, all of a request or nothing of it, and each
answered only once that transaction is committed. A successful append wakes the engine at once (besides its
watch of PRAGMA data_version).
"""

from __future__ import annotations

import concurrent.futures
import hmac
import io
import itertools
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from forewarn.events.errors import describe_json_error
from forewarn.events.parse import gc_paused
from forewarn.policy.model import Policy

log = logging.getLogger("forewarn.serve")
T = TypeVar("T")

ROLES = ("writer", "reader")
MIN_PASS_INTERVAL = 0.25
"""Seconds between the starts of two engine passes at least: under a stream of posts, a pass per post
would take the CPU from the posts; an incident posted waits at most this for its pass."""
PLAN_WAIT = 2.0
"""Seconds GET /v1/plan waits for the engine's plan of now before evaluating the log itself."""
BUSY_TIMEOUT_MS = 60_000
"""How long a connection waits for the other writer (engine or API) before giving up."""
GROUP_MAX = 32
"""Posts committed in one transaction, at most."""


class TokenError(ValueError):
    """Bad API token settings (the message never contains a token)."""


def parse_tokens(text: str | None) -> list[tuple[str, str]]:
    """`ROLE:TOKEN` pairs separated by commas -> [(role, token)]."""
    tokens: list[tuple[str, str]] = []
    for n, part in enumerate((text or "").split(","), 1):
        part = part.strip()
        if not part:
            continue
        role, sep, token = part.partition(":")
        role = role.strip()
        if not sep or not token.strip():
            raise TokenError(f"API token #{n}: expected ROLE:TOKEN")
        if role not in ROLES:
            raise TokenError(f"API token #{n}: role {role[:20]!r} is not one of {', '.join(ROLES)}")
        tokens.append((role, token.strip()))
    return tokens


class Tokens:
    """Bearer tokens and their roles; compared in constant time."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self._pairs = [(role, token.encode()) for role, token in pairs]

    def __bool__(self) -> bool:
        return bool(self._pairs)

    def role_of(self, token: str) -> str | None:
        given = token.encode()
        found = None
        for role, known in self._pairs:  # every token compared: the time does not say which one matched
            if hmac.compare_digest(known, given):
                found = role
        return found


@dataclass
class Problem(Exception):
    """A refusal: an RFC 9457 problem (forewarn.api turns it into application/problem+json)."""

    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def input_errors(errors: Sequence[Any], array: bool) -> list[dict[str, Any]]:
    """Import's InputErrors as the API's `errors`: index in a JSON array, or line in an NDJSON body."""
    out = []
    for e in errors:
        out.append(
            {
                "index": e.line - 1 if array and e.line > 0 else None,
                "line": e.line if not array and e.line > 0 else None,
                "id": e.event_id,
                "field": e.field,
                "message": e.message,
            }
        )
    return out


class Metrics:
    """The Prometheus metrics of one service (a registry of its own)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.appended = Counter("forewarn_events_appended", "Events appended through the API", registry=r)
        self.duplicates = Counter("forewarn_events_duplicate", "Events posted again (already in the log)", registry=r)
        self.rejected = Counter("forewarn_event_requests_rejected", "POST /v1/events refused", registry=r)
        self.sent = Counter("forewarn_messages_sent", "Messages delivered and recorded", registry=r)
        self.failed = Counter("forewarn_messages_failed", "Message deliveries that failed", registry=r)
        self.passes = Counter("forewarn_engine_passes", "Engine passes", registry=r)
        self.due = Gauge("forewarn_obligations_due", "Obligations due at the last pass", registry=r)
        self.upcoming = Gauge("forewarn_obligations_upcoming", "Obligations upcoming at the last pass", registry=r)
        self.alerts = Gauge("forewarn_alerts", "Alerts (for people) at the last pass", registry=r)
        self.evaluation = Histogram(
            "forewarn_evaluation_seconds",
            "Time to evaluate the log and plan, per engine pass",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )


@dataclass
class Settings:
    db: str
    rules_dir: str | None
    policy: Policy
    plan_key: str | None
    tokens: Tokens
    insecure: bool
    max_body: int
    poll: float
    make_delivery: Callable[[], Any]  # called in the engine's process: picklable (a partial of a class)
    make_webhook: Callable[[], Any]  # likewise (no_webhook for none)
    destination: str = "the mail server"  # as alerts name it
    pass_deadline: float | None = 300.0
    give_up_after: int = 3
    templates_dir: str | None = None
    log_format: str = "plain"  # the engine process's log lines


def no_webhook() -> None:
    """Settings.make_webhook without a ticket webhook."""
    return None


class Service:
    """The log, the engine process and the state the API reports (readiness, metrics)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.policy = settings.policy
        self.metrics = Metrics()
        self.stop = threading.Event()
        self.engine: Any = None
        self.engine_error: str | None = None
        self.last_pass: float | None = None  # time.monotonic() at the end of the last pass
        self.on_engine_failure: Callable[[], None] = lambda: None
        self._posts: queue.SimpleQueue[_Post | _Job | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write, name="forewarn-writer", daemon=True)
        self._writer_started = threading.Lock()
        self._planner = concurrent.futures.ThreadPoolExecutor(1, "forewarn-planner")
        self._local = threading.local()

    # -- the engine ------------------------------------------------------------------------

    def start_engine(self) -> None:
        """The engine in a process of its own (forewarn.engine_process), supervised from here."""
        from forewarn.engine import runner
        from forewarn.engine_process import EngineProcess, EngineSpec

        s = self.settings
        spec = EngineSpec(
            db=s.db, policy=self.policy, plan_key=s.plan_key, make_delivery=s.make_delivery,
            make_webhook=s.make_webhook, destination=s.destination, poll=s.poll, pass_deadline=s.pass_deadline,
            give_up_after=s.give_up_after, min_interval=MIN_PASS_INTERVAL, templates_dir=s.templates_dir,
            log_format=s.log_format, watch=runner.WATCH,
        )
        self.engine = EngineProcess(spec, self._report, self._engine_failed, self._engine_restarting, self.stop)
        self.engine.start()

    def _engine_failed(self, reason: str) -> None:
        self.engine_error = reason
        self.on_engine_failure()

    def _engine_restarting(self) -> None:
        self.last_pass = None  # ready again after the new process's first pass

    def _report(self, figures: dict[str, Any]) -> None:
        """After each pass of the engine process: metrics and readiness (the process logs the pass)."""
        m = self.metrics
        self.last_pass = time.monotonic()
        m.passes.inc()
        m.sent.inc(figures["sent"])
        m.failed.inc(figures["failed"])
        if "due" in figures:
            m.due.set(figures["due"])
            m.upcoming.set(figures["upcoming"])
            m.alerts.set(figures["alerts"])
        m.evaluation.observe(figures["evaluation_seconds"])

    def wake(self) -> None:
        if self.engine is not None:
            self.engine.wake()

    def shutdown(self) -> None:
        self.stop.set()
        if self.engine is not None:
            self.engine.stop()
        if self._writer.is_alive():
            self._posts.put(None)
            self._writer.join()
        self._planner.shutdown(wait=True)

    def readiness(self) -> str | None:
        """None when ready; else why not."""
        try:
            conn = self.reader()
            conn.execute("SELECT max(seq) FROM events").fetchone()
        except sqlite3.Error as exc:
            return f"the log cannot be read: {exc}"
        if self.policy is None:
            return "no policy loaded"
        if self.engine_error is not None:
            return f"the engine stopped: {self.engine_error}"
        if self.engine is not None and not self.engine.alive():
            return "the engine process is not running (it is being started again)"
        if self.last_pass is None:
            return "the engine has not completed a pass yet"
        age = time.monotonic() - self.last_pass
        limit = 2 * self.settings.poll + 60
        if age > limit:
            return f"the engine's last pass ended {age:.0f} s ago (more than {limit:.0f} s)"
        return None

    # -- reading ---------------------------------------------------------------------------

    def reader(self) -> sqlite3.Connection:
        """A read-only connection of this thread."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            uri = Path(self.settings.db).absolute().as_uri() + "?mode=ro"
            conn = self._local.conn = sqlite3.connect(uri, uri=True, check_same_thread=True)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return conn

    def events_after(self, after: int, limit: int) -> bytes:
        rows = self.reader().execute(
            "SELECT seq, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
        ).fetchall()
        last = rows[-1][0] if rows else after
        return b'{"events":[' + b",".join(p.encode() for _, p in rows) + b'],"seq":' + str(last).encode() + b"}"

    def one_at_a_time(self, fn: Callable[[], T]) -> T:
        """fn() on the planner thread: evaluations of the whole log (audit, propose, a past plan) run one at
        a time, so concurrent requests cannot hold several copies of a large log in memory."""
        return self._planner.submit(fn).result()

    def events_until(self, t: datetime) -> list[Any]:
        return self.events_until_fingerprinted(t)[0]

    def events_until_fingerprinted(self, t: datetime) -> tuple[list[Any], Any]:
        """The events up to t, and the fingerprint of the log read (forewarn.log.chain): reports state it."""
        from forewarn.log.source import read_store_fingerprinted

        store = _open(self.settings.db)
        try:
            return read_store_fingerprinted(store, t)
        finally:
            store.close()

    def plan_json(self, t: datetime, wait: float = PLAN_WAIT) -> str:
        """`plan --format json` as of t: the engine's published plan when current for t. For an instant the
        engine's next pass will cover (it may be taking an append right now), that pass is waited for, up
        to `wait` seconds; otherwise (another instant, no engine) the log is evaluated for this request
        alone, as `forewarn plan --as-of` does (no second copy of the engine's evaluation kept)."""
        from forewarn.engine.published import view
        from forewarn.engine.views import plan_json
        from forewarn.program import published_plan

        key = self.settings.plan_key
        if key is not None:
            deadline = time.monotonic() + wait
            while True:
                found = published_plan(self.settings.db, key, t)
                if found is not None:
                    snapshot, alerts = found
                    return plan_json(view(snapshot, t, alerts, published=True))
                if self.engine is None or self.engine_error or time.monotonic() >= deadline:
                    break
                if abs((t - datetime.now(UTC)).total_seconds()) > wait:
                    break  # not an instant the engine plans for
                self.wake()
                time.sleep(0.02)
        return self._planner.submit(self._evaluate_plan, t).result()

    def _evaluate_plan(self, t: datetime) -> str:
        from forewarn.engine.cache import EvaluationCache
        from forewarn.engine.published import view
        from forewarn.engine.views import plan_json
        from forewarn.program import delivery_alerts_json

        store = _open(self.settings.db)
        try:
            cache = EvaluationCache(store, self.policy)
            cache.get(t)
            alerts = delivery_alerts_json(store.db.conn, t)
            return plan_json(view(cache.snapshot(), t, alerts))
        finally:
            store.close()

    # -- writing ---------------------------------------------------------------------------

    def append(self, body: bytes, ndjson: bool) -> concurrent.futures.Future[dict[str, int]]:
        """Validate and append a request's events on the writer thread: all or none (Problem 422)."""
        future: concurrent.futures.Future[dict[str, int]] = concurrent.futures.Future()
        self._start_writer()
        self._posts.put(_Post(body, ndjson, future))
        return future

    def retry_failed(self, ids: Sequence[str]) -> concurrent.futures.Future[list[str]]:
        """Make failed deliveries due again (all, or those IDS name), on the writer thread, as `run --retry-failed`."""
        future: concurrent.futures.Future[list[str]] = concurrent.futures.Future()
        self._start_writer()
        self._posts.put(_Job(lambda store: self._retry_failed(store, tuple(ids)), future))
        return future

    def _retry_failed(self, store: Any, ids: tuple[str, ...]) -> list[str]:
        from forewarn.engine import outbox

        by = "POST /v1/outbox/retry-failed" + "".join(f" {i}" for i in ids)
        store.begin_exclusive()
        try:
            outbox.ensure_schema(store.db.conn)
            reset, unknown = outbox.retry_failed(store.db.conn, ids, by)
            if unknown:
                raise Problem(422, f"no failed delivery {', '.join(unknown)} in the outbox; nothing was reset")
        except BaseException:
            store.rollback()
            raise
        store.commit()
        log.info("failed deliveries due again", extra={"fields": {"event": "retry_failed", "reset": len(reset)}})
        if reset:
            self.wake()
        return reset

    def _start_writer(self) -> None:
        with self._writer_started:
            if not self._writer.is_alive():
                self._writer.start()

    @staticmethod
    def _do(store: Any, job: _Job) -> None:
        if job.future.set_running_or_notify_cancel():
            try:
                job.future.set_result(job.run(store))
            except BaseException as exc:
                job.future.set_exception(exc)

    def _write(self) -> None:
        """The writer thread: the posts waiting, validated one by one, then appended in one transaction."""
        try:
            store = _open(self.settings.db)
        except BaseException as exc:
            log.exception("the log cannot be opened for writing", extra={"fields": {"event": "writer_failed"}})
            while (post := self._posts.get()) is not None:  # every post is answered (500), none waits forever
                post.future.set_exception(exc)
            return
        try:
            while True:
                post = self._posts.get()
                if post is None:
                    return
                if isinstance(post, _Job):
                    self._do(store, post)
                    continue
                group = [post]
                end = False
                job = None
                while len(group) < GROUP_MAX:
                    try:
                        post = self._posts.get_nowait()
                    except queue.Empty:
                        break
                    if post is None:
                        end = True
                        break
                    if isinstance(post, _Job):  # done after the group, in the order it came
                        job = post
                        break
                    group.append(post)
                try:
                    # The cyclic GC paused for the whole group (its objects are acyclic, and gone when it ends):
                    # resumed while they are alive, it would go through every one of them once per post.
                    with gc_paused():
                        self._append_group(store, group)
                except BaseException as exc:  # the writer goes on; no post of the group waits forever
                    log.exception("internal error", extra={"fields": {"event": "internal_error"}})
                    for post in group:
                        if not post.future.done():
                            post.future.set_exception(exc)
                if job is not None:
                    self._do(store, job)
                if end:
                    return
        finally:
            store.close()

    def _append_group(self, store: Any, group: list[_Post]) -> None:
        from forewarn.log.bulk import import_validated, validate_lines

        started = time.perf_counter()
        ready: list[tuple[_Post, Any]] = []
        for post in group:  # validated before the write lock is taken
            if not post.future.set_running_or_notify_cancel():
                continue
            try:
                if post.ndjson:  # as `import` reads a file
                    ready.append((post, validate_lines(io.BytesIO(post.body).readlines(), "<request>")))
                else:
                    ready.append((post, validate_array_body(post.body)))
            except BaseException as exc:
                post.future.set_exception(exc)
            post.body = b""
        if not ready:
            return
        answers: list[tuple[_Post, dict[str, int] | BaseException]] = []
        rule_ids = self.policy.ids  # a list made on each call: once for the group
        try:
            store.begin_exclusive()
            try:
                for post, validated in ready:
                    appended, duplicates, errors = import_validated(
                        store, validated, "<request>", rule_ids, nested=True
                    )
                    if errors:  # its savepoint is rolled back: the others of the group go on
                        shown = input_errors(errors, array=not post.ndjson)
                        answers.append((post, Problem(422, f"{len(errors)} input error(s); nothing was appended",
                                                      shown)))
                    else:
                        seq = store.last_seq()
                        answers.append((post, {"appended": appended, "duplicates": duplicates, "seq": seq}))
                store.commit()  # only now is any of them answered: an acknowledged event is in the log
            except BaseException:
                store.rollback()  # an unexpected failure (the commit's too): nothing of the group is appended
                raise
        except BaseException as exc:
            for post, _ in ready:
                post.future.set_exception(exc)
            return
        ms = round(1000 * (time.perf_counter() - started), 2)
        woken = False
        for post, answer in answers:
            if isinstance(answer, BaseException):
                self.metrics.rejected.inc()
                post.future.set_exception(answer)
                continue
            appended, duplicates, seq = answer["appended"], answer["duplicates"], answer["seq"]
            self.metrics.appended.inc(appended)
            self.metrics.duplicates.inc(duplicates)
            if appended and not woken:
                self.wake()
                woken = True
            log.info(
                "events appended" if appended else "events already in the log",
                extra={"fields": {"event": "append", "appended": appended, "duplicates": duplicates, "seq": seq,
                                  "ms": ms, "group": len(ready)}},
            )
            post.future.set_result(answer)


@dataclass
class _Post:
    """A POST /v1/events waiting for the writer."""

    body: bytes
    ndjson: bool
    future: concurrent.futures.Future[dict[str, int]]


@dataclass
class _Job:
    """Other work for the writer thread, which holds the API's one writer connection: done on its own,
    between groups of posts."""

    run: Callable[[Any], Any]  # given the writer's store
    future: concurrent.futures.Future[Any]




def validate_array_body(body: bytes) -> Any:
    """The validation of a JSON array body: its items' lines (`item_lines`) as `import` validates lines, the
    array validated in one call where that gives the same (`validate_array`); Problem 422 if the body is not
    a JSON array."""
    from forewarn.log.bulk import validate_array, validate_lines

    items = array_items(body)
    validated = validate_array(body, items)
    if validated is None:
        validated = validate_lines(item_lines(body, items), "<request>")
    return validated


def array_items(body: bytes) -> list[Any]:
    """The items of a JSON array body (as orjson parses it); Problem 422 if it is not JSON or not an array."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        message = describe_json_error(body, str(exc))
        raise Problem(422, f"the body is not JSON: {message}", [_whole(message)]) from None
    if not isinstance(data, list):
        message = "must be a JSON array of events (or NDJSON with Content-Type: application/x-ndjson)"
        raise Problem(422, f"the body {message}", [_whole(message)])
    return data


def item_lines(body: bytes, items: list[Any]) -> list[bytes]:
    """The items of the JSON array `body` (`array_items`), one JSON text each (line n = index n-1)."""
    lines = [orjson.dumps(item) for item in items]
    if _may_repeat_keys(body, lines):
        # the parse above kept the last of repeated keys: these items again with every key they gave, so that
        # the validation refuses them as `import` refuses such a line
        from forewarn.events.parse import _Pairs, duplicate_keys

        if duplicate_keys(body):
            tree = json.loads(body, object_pairs_hook=_Pairs)
            lines = [_pairs_json(item).encode() for item in tree]
    return lines


def _may_repeat_keys(body: bytes, lines: list[bytes]) -> bool:
    """False when the array `body` surely repeats no key in any object: outside a string, `":` ends a key
    (unless whitespace or an escape stands between), and the items as parsed hold as many as `body`."""
    if any(mark in body for mark in (b"\\", b'" ', b'"\n', b'"\t', b'"\r')):
        return True
    return body.count(b'":') != sum(map(bytes.count, lines, itertools.repeat(b'":')))


def _pairs_json(item: object) -> str:
    """`item` (from json.loads with _Pairs) as JSON text, repeated keys written out."""
    from forewarn.events.parse import _Pairs

    if isinstance(item, _Pairs):
        return "{" + ",".join(f"{json.dumps(k)}:{_pairs_json(v)}" for k, v in item) + "}"
    if isinstance(item, list):
        return "[" + ",".join(_pairs_json(v) for v in item) + "]"
    return json.dumps(item)


def _whole(message: str) -> dict[str, Any]:
    return {"index": None, "line": None, "id": None, "field": None, "message": message}


def _open(path: str) -> Any:
    from forewarn.log.store import open_store

    store = open_store(path)
    store.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # WAL with synchronous=NORMAL: a commit survives a crash of this process (kill -9 included).
    store.db.execute("PRAGMA synchronous = NORMAL")
    return store


def report_pass(result: Any) -> None:
    """The log lines of one engine pass (run and serve): its summary, tickets not opened, its alerts."""
    plan = result.plan
    fields: dict[str, Any] = {
        "event": "pass",
        "sent": len(result.sent),
        "failed": len(result.failed),
        "held_elsewhere": result.skipped,
        "deferred": result.deferred,
        "evaluation_ms": round(1000 * result.evaluation_seconds, 2),
    }
    if plan is not None:
        fields.update(due=len(plan.due), upcoming=len(plan.upcoming), alerts=len(plan.alerts))
    log_engine = logging.getLogger("forewarn.engine")
    log_engine.info(
        f"sent {len(result.sent)}, failed {len(result.failed)}, held by another process {result.skipped}"
        + (f", left for the next pass {result.deferred}" if result.deferred else ""),
        extra={"fields": fields},
    )
    for communication, error in result.ticket_errors:
        log_engine.error(
            f"the ticket for {communication} is not opened (retried by later passes): {error}",
            extra={"fields": {"event": "ticket_failed", "communication": communication, "error": error}},
        )
    for alert in result.alerts:
        report_alert(alert)


def report_alert(alert: Any) -> None:
    """The log line of an alert raised by a pass (or standing: a refused delivery waiting for a person)."""
    logging.getLogger("forewarn.engine").warning(alert.message, extra={"fields": {"event": "alert", **alert.to_json()}})
