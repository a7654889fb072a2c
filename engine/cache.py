"""The engine's memory between passes: the open subjects only, judged again relationally when touched.

`forewarn run` plans pass after pass. The first pass evaluates the whole log with the relational
evaluation (forewarn.relational, the audit's), and keeps in Python only the *open* subjects: those
with a pending obligation, a missed one (in the plan as an alert, or sent late), an alarm timer still
to fire, a maintenance running past its end, or a cancelled maintenance whose customers are not yet
told of it. Every other subject lives in the log alone. Between passes the cache keeps the events'
positions (two integer arrays) and the customers' versions.

- The evaluation made at T0 is reused for a later T as long as (a) nothing was recorded since (the
  log's high-water recording sequence), and (b) T is before the *horizon* of T0: the first instant
  after T0 at which something the evaluation compares with its as-of could flip: the next event's
  `at` (events after the as-of are ignored), any pending obligation's deadline (pending until then,
  violated after) and any alarm timer of a maintenance (end in force + the alarm's minutes).
- Otherwise a pass reads what is new (events recorded since, or reached by the clock), and evaluates
  relationally, from the log, only the subjects those events are about, those with a deadline passed
  and those with an alarm timer due (forewarn.relational.engine.evaluate_subjects); a new customer
  version changes no earlier lookup (it sorts after every moment judged). An earlier T, or an event
  recorded since that sorts among the ones already judged, evaluates afresh.
- The plan's now-independent part (PlanBasis) is kept with the evaluation, and published in the log's
  database when asked to (engine.published), so that `forewarn plan` in another process can answer
  from it.

`tests/test_engine_perf.py` checks the plans and drafts against fresh evaluations after appends of
every event type and at every boundary instant.
"""

from __future__ import annotations

import contextlib
import gc
import sqlite3
import weakref
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb

from forewarn.engine import published
from forewarn.engine.planner import Due, PlanBasis, due_of, overrun_candidates
from forewarn.events import EVENT_ADAPTER, CommunicationSent, CustomerUpserted, Event
from forewarn.events.parse import gc_paused
from forewarn.instants import epoch_us
from forewarn.lifecycle.fold import LIFECYCLE_TYPES, SubjectHistory
from forewarn.lifecycle.model import Sent
from forewarn.lifecycle.rules import alarm_dues, timers_of
from forewarn.log.store import EventStore
from forewarn.policy.model import Policy
from forewarn.relational import engine as rel_engine
from forewarn.relational import tables
from forewarn.relational.engine import Evaluated, Positions, Row
from forewarn.relational.obligations import from_epoch_us

_FOREVER = datetime.max.replace(tzinfo=UTC)
_THREADED = 50_000  # from this many events on, the first evaluation runs on every core
Key = tuple[str, str]


@dataclass
class OpenSubject:
    """What the engine keeps of one open subject: its lifecycle and its plan entries."""

    history: SubjectHistory
    entries: list[Due]  # in derivation order
    pending_until: datetime | None  # the earliest deadline of its pending obligations
    told: frozenset[str] = frozenset()  # a cancelled maintenance: customers told of it
    withdrawn: frozenset[str] = frozenset()  # ... and those told of the cancellation


def _order(item: tuple[Key, OpenSubject]) -> tuple[int, str, str]:
    (kind, subject), state = item
    return (state.history.defined_pos, kind, subject)


@dataclass
class Customers:
    """Every customer's versions (position, attributes), in order; their payloads for the evaluations."""

    versions: dict[str, list[tuple[int, CustomerUpserted]]] = field(default_factory=dict)
    rows: list[tuple[int, Row]] = field(default_factory=list)

    def add(self, pos: int, event: CustomerUpserted) -> None:
        self.versions.setdefault(event.customer, []).append((pos, event))

    def at(self, customer: str, pos: int) -> CustomerUpserted | None:
        versions = self.versions.get(customer)
        if not versions:
            return None
        i = bisect_right(versions, pos, key=lambda v: v[0])
        return versions[i - 1][1] if i else None


class EngineView:
    """The facts plans and drafts read (engine.planner.Facts) as of an instant: the open subjects' lifecycles
    and customers' versions kept, the communications read from the log when a draft needs them."""

    def __init__(self, cache: EvaluationCache, as_of: datetime, last_pos: int) -> None:
        self._cache = cache
        self.as_of = as_of
        self.policy = cache.policy
        self._last_pos = last_pos
        self._seq = cache._seq
        self._sent: dict[tuple[str, str], list[Sent]] = {}

    @property
    def last_pos(self) -> int:
        return self._last_pos

    def at(self, as_of: datetime) -> EngineView:
        """The same facts as of a later instant before the horizon (nothing else differs)."""
        view = EngineView.__new__(EngineView)
        view.__dict__.update(self.__dict__)
        view.as_of = as_of
        return view

    def history(self, kind: str, subject: str) -> SubjectHistory | None:
        kept = self._cache._open.get((kind, subject))
        if kept is not None:
            return kept.history
        return self._cache._history((kind, subject), self.as_of, self._seq)

    def customer_at(self, customer: str, pos: int) -> CustomerUpserted | None:
        return self._cache._customers.at(customer, pos)

    def sent_about(self, kind: str, subject: str, customer: str, comm_kind: str) -> Sequence[Sent]:
        sent = self._sent.get((subject, customer))
        if sent is None:
            sent = self._sent[(subject, customer)] = self._cache._sent_about(subject, customer, self.as_of, self._seq)
        return [s for s in sent if s.subject == (kind, subject) and s.comm.kind == comm_kind]


class EvaluationCache:
    """The open subjects of one log under one policy, and the plan basis made of them, kept while valid."""

    def __init__(
        self, store: EventStore, policy: Policy, freeze_gc: bool = False, publish_key: str | None = None
    ) -> None:
        self.store = store
        self.policy = policy
        self.freeze_gc = freeze_gc  # for a process that lives for the engine (`forewarn run`): see get()
        self.publish_key = publish_key
        """With a key (engine.published.plan_key of the rules `policy` was loaded from), every fresh
        evaluation is published in the log's database for `forewarn plan`."""
        self.hits = 0
        self.misses = 0
        self._minutes = {timer.minutes for timer in timers_of(policy)}
        self._con: duckdb.DuckDBPyConnection | None = None  # where passes evaluate their subjects
        self._reset()

    def _reset(self) -> None:
        self._seq = 0  # high-water recording sequence judged
        self._as_of: datetime | None = None
        self._positions = Positions()  # of the events judged (at or before the as-of, up to the sequence)
        self._customers = Customers()
        self._open: dict[Key, OpenSubject] = {}
        self._cached: tuple[EngineView, PlanBasis, datetime] | None = None
        self._snapshot: published.Snapshot | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        return self.store.db.conn

    def get(self, as_of: datetime) -> tuple[EngineView, PlanBasis]:
        """The facts as of `as_of` and the plan basis (reused when still valid)."""
        (high,) = self.conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
        cached = self._cached
        if cached is not None and high == self._seq:
            view, basis, horizon = cached
            if view.as_of <= as_of < horizon:
                self.hits += 1
                return (view if as_of == view.as_of else view.at(as_of)), basis
        self.misses += 1
        with gc_paused():
            previous = cached[1] if cached is not None else None
            if self._as_of is None or as_of < self._as_of or not self._advance(as_of, high):
                self._fresh(as_of, high)
                previous = None
            self._seq = high
            self._as_of = as_of
            view = EngineView(self, as_of, len(self._positions) - 1)
            basis = self._basis(as_of, previous)
            self._cached = (view, basis, self._horizon(as_of))
            self._snapshot = None
            if self.publish_key is not None:
                published.publish(self.conn, self.publish_key, self.snapshot())
            if self.freeze_gc:
                # What is kept lives until the next miss: out of the cyclic GC's way (frozen while the
                # collector is still off). Objects freed by reference count are freed all the same; only
                # cyclic garbage alive right now would stay, hence a process of its own (`run`).
                gc.freeze()
        return view, basis

    def snapshot(self) -> published.Snapshot:
        """The last evaluation's plan basis in JSON-ready form, valid up to its horizon (engine.published)."""
        if self._cached is None:
            raise RuntimeError("nothing evaluated yet: call get() first")
        if self._snapshot is None:  # made once per evaluation (publishing and the caller share it)
            _view, basis, horizon = self._cached
            self._snapshot = basis.snapshot(self._seq, horizon)
        return self._snapshot

    # -- evaluating ----------------------------------------------------------------------------------

    def _fresh(self, as_of: datetime, high: int) -> None:
        """Evaluate the whole log (up to sequence `high`) as of `as_of`; keep what is open."""
        from forewarn.relational.evaluation import evaluate_raw

        self._reset()
        as_of_us = epoch_us(as_of)
        con = self._workspace()
        (count,) = self.conn.execute("SELECT count(*) FROM events WHERE seq <= ?", (high,)).fetchone()
        if count >= _THREADED:  # a large log: every core (a few subjects, later, take one)
            con.execute("RESET threads")
        failures: list[BaseException] = []
        try:
            if self.store.path == ":memory:":  # only this connection sees it: read here, then evaluated
                raw = rel_engine.log_stream(self.conn, high, failures).read_all()
                rel = evaluate_raw(raw, self.policy, as_of, failures, con=con)
            else:  # streamed from a connection of its own, of this process's SQLite (its locks shared)
                from forewarn.log.access import _uri, _writable_place

                path = self.store.path  # as forewarn.log.access.open_reader: immutable where it cannot be written
                where = path if _writable_place(path) else _uri(path, mode="ro", immutable="1")
                reader = sqlite3.connect(where, uri=where != path, check_same_thread=False)
                try:
                    rel = evaluate_raw(
                        rel_engine.log_stream(reader, high, failures), self.policy, as_of, failures, con=con
                    )
                finally:
                    reader.close()
        except duckdb.Error:
            if failures:  # reading the log failed: that, not DuckDB's report of it
                raise failures[0] from None
            raise
        finally:
            if count >= _THREADED:
                with contextlib.suppress(duckdb.Error):
                    con.execute("SET threads = 1")
        keys = rel.con.execute("SELECT at_us, seq FROM ev ORDER BY pos").fetchnumpy()
        self._positions.extend(keys["at_us"], keys["seq"])
        evaluated = rel_engine.extract(rel)
        # The whole log's tables: freed now, not replaced at the next pass (the names are the evaluation's own).
        for (table,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT internal").fetchall():
            con.execute(f'DROP TABLE IF EXISTS "{table}"')
        self._add_customers(rel_engine.customer_rows(self.conn, as_of_us, high))
        self._keep(evaluated, set(evaluated.histories))

    def _advance(self, as_of: datetime, high: int) -> bool:
        """Judge again what the events recorded since (up to `high`) or reached by the clock, and the clock
        itself, can change; False (nothing changed) when one of those events sorts among those judged."""
        assert self._as_of is not None
        t0, seq0 = self._as_of, self._seq
        rows = self.conn.execute(
            "SELECT seq, at_us, type, subject, payload FROM events WHERE seq > ? AND seq <= ? AND at_us <= ?"
            " UNION ALL SELECT seq, at_us, type, subject, payload FROM events"
            " WHERE at_us > ? AND at_us <= ? AND seq <= ?",
            (seq0, high, epoch_us(as_of), epoch_us(t0), epoch_us(as_of), seq0),
        ).fetchall()
        rows.sort(key=lambda r: (r[1], r[0]))
        last = self._positions.last()
        if rows and last is not None and (rows[0][1], rows[0][0]) < last:
            return False  # recorded with an earlier `at`: the positions after it move
        self._positions.extend([r[1] for r in rows], [r[0] for r in rows])
        self._add_customers(
            [(seq, at, kind, payload) for seq, at, kind, _s, payload in rows if kind == "customer.upserted"]
        )
        dirty: set[str] = {
            subject
            for _seq, _at, kind, subject, _p in rows
            if subject and (kind in LIFECYCLE_TYPES or kind == "communication.sent")
        }
        first_new = from_epoch_us(rows[0][1]) if rows else None
        for (kind, subject), state in self._open.items():
            if state.pending_until is not None and state.pending_until <= as_of:
                dirty.add(subject)  # a deadline passed: pending -> violated
            elif kind == "maintenance" and any(
                due <= as_of and (due > t0 or (first_new is not None and due >= first_new))
                for due in alarm_dues(state.history, self._minutes)
            ):
                dirty.add(subject)  # an alarm timer fires, or fires at a position a new event moves
        if dirty:
            evaluated = rel_engine.evaluate_subjects(
                self.conn, dirty, self._customers.rows, self._positions, self.policy, as_of, high, self._workspace()
            )
            judged = {key for key in self._open if key[1] in dirty} | set(evaluated.histories)
            self._keep(evaluated, judged)
        return True

    def _keep(self, evaluated: Evaluated, judged: set[Key]) -> None:
        """Replace the subjects `judged` by their evaluation, keeping those still open."""
        policy = self.policy
        opened = dict(self._open)
        for key in judged:
            opened.pop(key, None)
            history = evaluated.histories.get(key)
            if history is None:
                continue
            opens = evaluated.open.get(key, [])
            entries = [due_of(o.outcome, o.sent, o.contacts, history, policy) for o in opens]
            until = min((o.outcome.obligation.not_after for o in opens if o.outcome.status == "pending"), default=None)
            maintenance = key[0] == "maintenance"
            told = evaluated.told.get(key[1], frozenset()) if maintenance else frozenset()
            withdrawn = evaluated.withdrawn.get(key[1], frozenset()) if maintenance else frozenset()
            state = OpenSubject(history, entries, until, told, withdrawn)
            if self._is_open(state, evaluated.as_of):
                opened[key] = state
        self._open = dict(sorted(opened.items(), key=_order))

    def _is_open(self, state: OpenSubject, as_of: datetime) -> bool:
        """Whether a subject can appear in a plan now or later without an event about it."""
        h = state.history
        if state.entries or state.pending_until is not None or state.told - state.withdrawn:
            return True
        if h.kind != "maintenance":
            return False
        if not (h.cancelled_at or h.completed_at) and h.ends:
            return True  # running with an end: an overrun alarm, an alarm timer
        return any(due > as_of for due in alarm_dues(h, self._minutes))

    def _add_customers(self, rows: Sequence[Row]) -> None:
        places = self._positions.positions([r[1] for r in rows], [r[0] for r in rows]).tolist() if rows else []
        for pos, (seq, at_us, kind, payload) in zip(places, rows, strict=True):
            event = EVENT_ADAPTER.validate_json(payload)
            assert isinstance(event, CustomerUpserted)
            self._customers.add(pos, event)
            self._customers.rows.append((pos, (seq, at_us, kind, payload)))

    def _basis(self, as_of: datetime, previous: PlanBasis | None) -> PlanBasis:
        by_subject = {key: state.entries for key, state in self._open.items()}
        histories = {key: state.history for key, state in self._open.items()}
        last = len(self._positions) - 1
        covers = self.policy.covers
        pairs = []
        for (kind, subject), state in sorted(self._open.items()):
            if kind != "maintenance" or state.history.cancelled_at is None:
                continue
            for customer in sorted(state.told - state.withdrawn):
                attrs = self._customers.at(customer, last)
                if attrs is not None and covers(attrs):
                    pairs.append((subject, customer))
        return PlanBasis(as_of, by_subject, overrun_candidates(histories), pairs, previous)

    def _horizon(self, as_of: datetime) -> datetime:
        """The first instant after the as-of at which a fresh evaluation could differ."""
        horizon = _FOREVER
        (after,) = self.conn.execute(
            "SELECT min(at_us) FROM events WHERE at_us > ? AND seq <= ?", (epoch_us(as_of), self._seq)
        ).fetchone()
        if after is not None:
            horizon = from_epoch_us(after)  # the next event, ignored until reached
        for state in self._open.values():
            if state.pending_until is not None and state.pending_until < horizon:
                horizon = state.pending_until  # a pending obligation turns violated at its deadline
            if state.history.kind == "maintenance":
                for due in alarm_dues(state.history, self._minutes):
                    if as_of < due < horizon:
                        horizon = due
        return horizon

    # -- reading the log for a view ------------------------------------------------------------------

    def _workspace(self) -> duckdb.DuckDBPyConnection:
        """The connection passes evaluate in (a new one if an evaluation failed and closed it)."""
        if self._con is None:
            self._con = rel_engine.workspace()
            # jemalloc (DuckDB's allocator) returns the pages a whole-log evaluation freed from threads of its
            # own, within seconds; without them they stay resident until a later pass happens to flush them.
            self._con.execute("SET allocator_background_threads = true")
            weakref.finalize(self, tables.close, self._con)
        else:
            try:
                self._con.execute("SELECT 1").fetchall()
            except duckdb.Error:  # closed by a failed evaluation
                self._con = None
                return self._workspace()
        return self._con

    def close(self) -> None:
        """Free the evaluation's workspace (also done when the cache is collected)."""
        if self._con is not None:
            tables.close(self._con)
            self._con = None

    def _history(self, key: Key, as_of: datetime, seq: int) -> SubjectHistory | None:
        return rel_engine.lifecycle_of(self.conn, *key, self._positions, self.policy, as_of, seq, self._workspace())

    def _sent_about(self, subject: str, customer: str, as_of: datetime, seq: int) -> list[Sent]:
        rows = self.conn.execute(
            "SELECT seq, at_us, payload FROM events WHERE subject = ? AND customer = ? AND at_us <= ? AND seq <= ?"
            " AND type = 'communication.sent'",
            (subject, customer, epoch_us(as_of), seq),
        ).fetchall()
        out = []
        for seq_, at_us, payload in rows:
            comm = EVENT_ADAPTER.validate_json(payload)
            assert isinstance(comm, CommunicationSent)
            out.append(Sent.of(self._positions.pos(at_us, seq_), comm))
        return sorted(out, key=lambda s: s.pos)


def plan_basis_of_events(events: Sequence[Event], policy: Policy, as_of: datetime) -> PlanBasis:
    """The plan basis of validated events (in evaluation order) as of `as_of` (`forewarn plan --events`): the
    events recorded in a log in memory, evaluated as the engine evaluates its log."""
    from forewarn.events import SourcedEvent

    store = EventStore(":memory:")
    try:
        store.append([SourcedEvent(e, "<events>", i) for i, e in enumerate(events, 1)])
        return EvaluationCache(store, policy).get(as_of)[1]
    finally:
        store.close()
