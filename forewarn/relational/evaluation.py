"""The relational evaluation: a log's typed tables + the policy's compiled queries -> outcomes (in DuckDB)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from forewarn.events import Event
from forewarn.instants import epoch_us
from forewarn.lifecycle.model import Violation
from forewarn.policy.model import Policy
from forewarn.relational import checks, lifecycle, obligations, tables, violations
from forewarn.relational.tables import run


@dataclass
class Relational:
    """One evaluation's DuckDB tables (ev, comms, customer_versions, triggers, obligations, outcomes)."""

    con: duckdb.DuckDBPyConnection
    policy: Policy
    as_of: datetime
    life: lifecycle.Lifecycles
    owned: bool = True  # the connection was made for this evaluation (else its caller keeps it open)
    fired: frozenset[str] = frozenset()  # the obligation rules `triggers` holds triggers of
    alarms: frozenset[str] = frozenset()  # the alarm rules `triggers` holds timers of
    unmet: frozenset[str] = frozenset({"violated", "pending"})  # the statuses but met that `outcomes` holds
    _present: tuple[list[str], bool] | None = None

    def close(self) -> None:
        """Free the tables (and the spill directory) of a connection made for this evaluation; a caller's
        connection stays open (its tables are replaced by its next evaluation)."""
        if self.owned:
            tables.close(self.con)

    def present(self) -> tuple[list[str], bool]:
        """What the checks can apply to: the kinds of the communications in scope and whether a reply was
        received (with `scoped_comms`, made once per evaluation)."""
        if self._present is None:
            checks.scoped(self.con, self.policy)
            self._present = checks.present(self.con)
        return self._present

    def violations(self, checks: bool = True) -> list[Violation]:
        """Obligation violations, then alarms, then (if `checks`) the per-communication checks' violations."""
        counting = any(self.policy.by_id[r].spec.obligation.count > 1 for r in self.fired)  # type: ignore[union-attr]
        out = violations.obligation_violations(self.con, counting) if "violated" in self.unmet else []
        out += violations.alarm_violations(self.con, self.policy, self.alarms)
        if checks:
            out += violations.check_violations(self.con, self.policy, epoch_us(self.as_of), self.present())
        return out


def evaluate_raw(
    raw: pa.Table | pa.RecordBatchReader,
    policy: Policy,
    as_of: datetime,
    failures: list[BaseException] | None = None,
    pos_at: Callable[[datetime], int] | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> Relational:
    """Evaluate canonical payloads given as Arrow (pos, seq, at_us, type, payload), in evaluation order;
    `failures`: where the stream notes a failure to read it (the first is raised once it is loaded);
    `pos_at`: for part of a log, the whole log's positions (lifecycle.fold_all); `con`: a connection of
    tables.connect() to evaluate in (its tables replaced), kept open by a caller that evaluates again and
    again (the engine), rather than a new one."""
    owned = con is None  # a caller's connection stays open for it, whatever happens here
    con = tables.connect() if con is None else con
    try:
        # The buffer fits the log's size, known before it is read from a SQLite log, after otherwise; a
        # caller's connection keeps its own limit (the engine's, between passes).
        size = raw.events if isinstance(raw, tables.StoreColumns) else None
        if owned and size is not None:
            tables.fit_memory(con, size)
        events = tables.load_payloads(con, raw, as_of)
        if failures:
            raise failures[0]
        if owned and size is None:
            tables.fit_memory(con, events)
        life = lifecycle.fold_all(con, policy, as_of, pos_at)
        triggered = lifecycle.register(con, life)
        fired = frozenset(rule for rule, alarm in triggered if not alarm)
        lifecycle.register_subjects(con, life)
        derived = obligations.build_obligations(con, policy, fired)
        unmet = obligations.match(con, policy, epoch_us(as_of), derived)
    except BaseException:
        if owned:
            tables.close(con)
        raise
    alarms = frozenset(rule for rule, alarm in triggered if alarm)
    return Relational(con, policy, as_of, life, owned, fired, alarms, unmet)


def evaluate_store(path: str | Path, policy: Policy, as_of: datetime, seq: int | None = None) -> Relational:
    """Evaluate the SQLite event log at `path` (its events up to recording sequence `seq`)."""
    failures: list[BaseException] = []
    closers: list[Callable[[], None]] = []
    try:
        return evaluate_raw(tables.read_store_payloads(path, as_of, seq, failures, closers), policy, as_of, failures)
    finally:
        for close in closers:  # the log's connection, as soon as its events are loaded
            close()


def evaluate_events(
    events: Sequence[Event], policy: Policy, as_of: datetime, con: duckdb.DuckDBPyConnection | None = None
) -> Relational:
    """Evaluate validated events given in evaluation order (the JSONL path); `con`: as evaluate_raw's."""
    return evaluate_raw(tables.payloads_stream(events), policy, as_of, con=con)


OutcomeKey = tuple[str, str, str, str, int, int, int, str, str | None, tuple[str, ...]]


def outcome_keys(rel: Relational) -> list[OutcomeKey]:
    """Every obligation's outcome as (rule, subject kind, subject, customer, opened, not_before, not_after (us),
    status, problem, communications), void ones as status 'void' (for comparisons)."""
    rows = run(
        rel.con,
        """
        WITH named AS (
            SELECT r.oid, list(c.communication ORDER BY u.n) AS comms
            FROM outcomes r, unnest(r.comm_pos) WITH ORDINALITY AS u(p, n) JOIN comms c ON c.pos = u.p
            GROUP BY r.oid
        )
        SELECT o.rule, o.subject_kind, o.subject, o.customer, o.opened_us, o.nb_us, o.na_us,
               CASE WHEN o.void IS NOT NULL THEN 'void' ELSE r.status END, r.problem, coalesce(n.comms, [])
        FROM obligations o LEFT JOIN outcomes r USING (oid) LEFT JOIN named n USING (oid)
        ORDER BY o.oid
        """
    ).fetchall()
    return [(*row[:9], tuple(row[9])) for row in rows]
