"""The engine's share of the relational evaluation: some subjects' events read from the log, their open
obligations as objects.

The engine plans from the obligations still open (pending, or missed and possibly still sent late) and
from a few facts about their subjects. A pass evaluates, with the one relational evaluation
(forewarn.relational.evaluation.evaluate_raw), only the subjects an append or the clock can change:
their events are selected from the log by subject (its indexed `subject` column, bound parameters),
with every customer version (what "all customers" and the scope read), numbered with their positions
in the whole log. What comes out as Python objects is only what is open: the Outcome (and Obligation)
of each pending or missed obligation, the communications counted in its window, the contacts in force
at its moment, and for a cancelled maintenance who was told of it and who of the cancellation.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from forewarn.instants import epoch_us
from forewarn.lifecycle.fold import SubjectHistory
from forewarn.lifecycle.model import Obligation, Outcome
from forewarn.log.source import DamagedLog
from forewarn.policy.model import Policy
from forewarn.relational import tables
from forewarn.relational.evaluation import Relational, evaluate_raw
from forewarn.relational.outcomes import OBLIGATION_COLUMNS, Obligations
from forewarn.relational.tables import run

Key = tuple[str, str]

ANNOUNCING = ("advance_notice", "emergency", "start_reminder", "extension")
"""The kinds that tell a customer of a maintenance (a cancelled one is then withdrawn from their calendar)."""

OPEN_OUTCOMES = f"""
SELECT {OBLIGATION_COLUMNS}, r.status, cv.contacts,
       (SELECT count(*) FROM comms w
        WHERE w.subject_kind = o.subject_kind AND w.subject = o.subject AND w.customer = o.customer
          AND list_contains(o.kinds, w.kind) AND w.at_us >= o.opened_us AND w.at_us >= o.nb_us
          AND w.at_us <= o.na_us) AS sent
FROM outcomes r JOIN obligations o USING (oid)
LEFT JOIN customer_versions cv ON cv.id = o.attrs_id
WHERE r.status = 'pending' OR (r.status = 'violated' AND r.problem = 'missing')
ORDER BY o.oid
"""
"""Every pending or missed obligation, in derivation order, with how many fitting communications went out in
its window (the promised update's count) and the customer's contacts at its moment."""

CANCELLED_COMMS = f"""
SELECT DISTINCT c.subject, c.customer, c.kind IN {ANNOUNCING} AS announcing
FROM comms c JOIN cancelled x ON c.subject_kind = 'maintenance' AND c.subject = x.subject
WHERE c.kind IN {ANNOUNCING} OR (c.kind = 'other' AND c.at_us >= x.cancelled_us)
"""
"""Per cancelled maintenance, who was sent an announcing communication about it, and who an `other` one since
its cancellation (told of that)."""


@dataclass
class OpenObligation:
    """A pending or missed obligation with what the planner needs of it besides its outcome."""

    outcome: Outcome
    sent: int  # fitting communications inside its window
    contacts: tuple[str, ...]  # the customer's contacts at its moment


@dataclass
class Evaluated:
    """What the engine keeps of one relational evaluation of some subjects."""

    as_of: datetime
    histories: dict[Key, SubjectHistory]  # every subject evaluated, in order of first lifecycle event
    open: dict[Key, list[OpenObligation]] = field(default_factory=dict)  # in derivation order
    told: dict[str, frozenset[str]] = field(default_factory=dict)  # cancelled maintenance -> customers told
    withdrawn: dict[str, frozenset[str]] = field(default_factory=dict)  # ... -> told of the cancellation


def extract(rel: Relational) -> Evaluated:
    """The open obligations and the cancellations' audiences of an evaluation (its tables are left as they are)."""
    life = rel.life
    out = Evaluated(rel.as_of, dict(life.histories))
    obligation = Obligations(rel)
    for row in run(rel.con, OPEN_OUTCOMES).fetchall():
        ob = obligation(row[:16])
        status, contacts, sent = row[16:]
        outcome = Outcome(ob, "pending") if status == "pending" else Outcome(ob, "violated", problem="missing")
        out.open.setdefault((ob.subject_kind, ob.subject), []).append(
            OpenObligation(outcome, sent, tuple(contacts or ()))
        )
    cancelled = {s: h.cancelled_at for (k, s), h in life.histories.items() if k == "maintenance" and h.cancelled_at}
    if cancelled:
        rel.con.register(
            "cancelled",
            pa.table(
                {
                    "subject": pa.array(list(cancelled), pa.string()),
                    "cancelled_us": pa.array([epoch_us(t) for t in cancelled.values()], pa.int64()),
                }
            ),
        )
        told: dict[str, set[str]] = defaultdict(set)
        withdrawn: dict[str, set[str]] = defaultdict(set)
        for subject, customer, announcing in run(rel.con, CANCELLED_COMMS).fetchall():
            (told if announcing else withdrawn)[subject].add(customer)
        rel.con.unregister("cancelled")
        out.told = {s: frozenset(told[s]) for s in cancelled}
        out.withdrawn = {s: frozenset(withdrawn[s]) for s in cancelled}
    return out


def obligations_of(rel: Relational, kind: str, subject: str) -> list[Obligation]:
    """One subject's obligations that stand (not void), in derivation order."""
    rows = run(
        rel.con,
        f"SELECT {OBLIGATION_COLUMNS} FROM obligations o WHERE o.subject_kind = $kind AND o.subject = $subject"
        " AND o.void IS NULL ORDER BY o.oid",
        {"kind": kind, "subject": subject},
    ).fetchall()
    return list(map(Obligations(rel), rows))


# -- reading the log ------------------------------------------------------------------------------------


class Positions:
    """Every event's place in evaluation order, (at_us, seq) sorted: what numbers events read apart. Held in
    arrays that grow by doubling: an append adds one key to the hundreds of thousands held."""

    def __init__(self) -> None:
        import numpy as np

        self._np = np
        self._at = np.empty(1024, dtype=np.int64)
        self._seq = np.empty(1024, dtype=np.int64)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def at(self) -> Any:
        return self._at[: self._n]

    @property
    def seq(self) -> Any:
        return self._seq[: self._n]

    def extend(self, at_us: Sequence[int], seq: Sequence[int]) -> None:
        """Add keys that sort after every key held (an append at the log's end)."""
        np = self._np
        at, sq = np.asarray(at_us, dtype=np.int64), np.asarray(seq, dtype=np.int64)
        end = self._n + len(at)
        if end > len(self._at):
            size = max(end, 2 * len(self._at))
            self._at = np.concatenate([self.at, np.empty(size - self._n, dtype=np.int64)])
            self._seq = np.concatenate([self.seq, np.empty(size - self._n, dtype=np.int64)])
        self._at[self._n : end] = at
        self._seq[self._n : end] = sq
        self._n = end

    def last(self) -> tuple[int, int] | None:
        return (int(self._at[self._n - 1]), int(self._seq[self._n - 1])) if self._n else None

    def pos(self, at_us: int, seq: int) -> int:
        """The position of the event (at_us, seq), which must be held."""
        return int(self.positions([at_us], [seq])[0])

    def positions(self, at_us: Sequence[int], seq: Sequence[int]) -> Any:
        """The positions of the events (at_us[i], seq[i]), which must be held, in bulk."""
        np = self._np
        at, held_seq = self.at, self.seq
        want = np.asarray(at_us, dtype=np.int64)
        lo = np.searchsorted(at, want, side="left")
        hi = np.searchsorted(at, want, side="right")
        for i in np.nonzero(hi - lo > 1)[0].tolist():  # events at the same instant: by recording order
            lo[i] += int(np.searchsorted(held_seq[lo[i] : hi[i]], seq[i], side="left"))
        return lo

    def pos_at(self, t: datetime) -> int:
        """The position of the last event at or before `t` (-1: none)."""
        return int(self._np.searchsorted(self.at, epoch_us(t), side="right")) - 1


Row = tuple[int, int, str, str]  # (seq, at_us, type, payload)

_CHUNK = 500  # subject ids bound per query (SQLite's limit on parameters is far above)


def subject_rows(conn: sqlite3.Connection, subjects: Iterable[str], as_of_us: int, seq: int) -> list[Row]:
    """The events about these subject ids (their lifecycle events and the communications about them) recorded
    up to `seq` and at or before `as_of_us` (the log's indexed `subject` column)."""
    ids = sorted(subjects)
    rows: list[Row] = []
    for i in range(0, len(ids), _CHUNK):
        part = ids[i : i + _CHUNK]
        marks = ",".join("?" * len(part))  # placeholders only; the ids are bound
        rows += conn.execute(
            f"SELECT seq, at_us, type, payload FROM events WHERE subject IN ({marks}) AND at_us <= ? AND seq <= ?",
            (*part, as_of_us, seq),
        ).fetchall()
    return rows


def customer_rows(conn: sqlite3.Connection, as_of_us: int, seq: int) -> list[Row]:
    """The customer versions recorded up to `seq` at or before `as_of_us`, in evaluation order."""
    sql = (
        "SELECT seq, at_us, type, payload FROM events WHERE type = 'customer.upserted' AND at_us <= ? AND seq <= ?"
        " ORDER BY at_us, seq"
    )
    return conn.execute(sql, (as_of_us, seq)).fetchall()


def log_stream(
    conn: sqlite3.Connection, seq: int, failures: list[BaseException], batch: int = tables.BATCH
) -> pa.RecordBatchReader:
    """The log's (pos, seq, at_us, type, payload) up to recording sequence `seq`, in evaluation order, read
    through `conn` batch by batch (DuckDB pulls them from its own threads: `conn` must allow that). The engine
    holds its log open: a second SQLite library in the same process (ADBC's, as
    forewarn.relational.tables.read_store_payloads reads) would not share its file locks, and closing it
    could checkpoint and remove the write-ahead log under the engine's connection. A failure to read (a
    damaged log), or fewer events than the sequence says, is added to `failures` (DuckDB reports a failed
    stream as its own error)."""

    def batches() -> Iterator[pa.RecordBatch]:
        start = 0
        try:
            cur = conn.execute(
                "SELECT seq, at_us, type, payload FROM events WHERE seq <= ? ORDER BY at_us, seq", (seq,)
            )
            while rows := cur.fetchmany(batch):
                seqs, ats, types, payloads = zip(*rows, strict=True)
                yield pa.RecordBatch.from_arrays(
                    [
                        pa.array(range(start, start + len(rows)), pa.int64()),
                        pa.array(seqs, pa.int64()),
                        pa.array(ats, pa.int64()),
                        pa.array(types, pa.string()),
                        pa.array(payloads, pa.string()),
                    ],
                    schema=tables.PAYLOAD_SCHEMA,
                )
                start += len(rows)
        except sqlite3.Error as exc:
            failures.append(exc)
            raise
        if start != seq:  # the log is append-only, its sequence dense from 1: a damaged log must not look shorter
            failures.append(DamagedLog(f"{seq} events are recorded, {start} could be read"))

    return pa.RecordBatchReader.from_batches(tables.PAYLOAD_SCHEMA, batches())


workspace = tables.workspace
"""A connection to evaluate a few subjects in, again and again (evaluate_subjects' `con`)."""


def _payload_table(ordered: Sequence[tuple[int, Row]]) -> pa.Table:
    return pa.table(
        {
            "pos": pa.array([p for p, _ in ordered], pa.int64()),
            "seq": pa.array([r[0] for _, r in ordered], pa.int64()),
            "at_us": pa.array([r[1] for _, r in ordered], pa.int64()),
            "type": pa.array([r[2] for _, r in ordered], pa.string()),
            "payload": pa.array([r[3] for _, r in ordered], pa.string()),
        },
        schema=tables.PAYLOAD_SCHEMA,
    )


def evaluate_rows(
    rows: Iterable[Row],
    positions: Positions,
    policy: Policy,
    as_of: datetime,
    con: duckdb.DuckDBPyConnection | None = None,
    numbered: Iterable[tuple[int, Row]] = (),
) -> Relational:
    """The relational evaluation of these events (numbered by `positions`, the whole log's; `numbered`: more,
    with their positions) as of `as_of` (in `con` if given: see workspace)."""
    rows = list(rows)
    places = positions.positions([r[1] for r in rows], [r[0] for r in rows]).tolist() if rows else []
    ordered = sorted([*zip(places, rows, strict=True), *numbered], key=lambda p: p[0])
    return evaluate_raw(_payload_table(ordered), policy, as_of, pos_at=positions.pos_at, con=con)


def evaluate_subjects(
    conn: sqlite3.Connection,
    subjects: Iterable[str],
    customers: Sequence[tuple[int, Row]],
    positions: Positions,
    policy: Policy,
    as_of: datetime,
    seq: int,
    con: duckdb.DuckDBPyConnection | None = None,
) -> Evaluated:
    """Evaluate the subjects with these ids (all their events in the log up to `seq`, at or before `as_of`),
    given every customer version (`customers`, with their positions), and extract what is open (in `con` if
    given, left open)."""
    rows = subject_rows(conn, subjects, epoch_us(as_of), seq)
    rel = evaluate_rows(rows, positions, policy, as_of, con, customers)
    try:
        return extract(rel)
    finally:
        if con is None:
            rel.close()


def lifecycle_of(
    conn: sqlite3.Connection,
    kind: str,
    subject: str,
    positions: Positions,
    policy: Policy,
    as_of: datetime,
    seq: int,
    con: duckdb.DuckDBPyConnection | None = None,
) -> SubjectHistory | None:
    """One subject's history as of `as_of`, folded from its events in the log (in `con` if given, left open)."""
    rel = evaluate_rows(subject_rows(conn, [subject], epoch_us(as_of), seq), positions, policy, as_of, con)
    try:
        return rel.life.histories.get((kind, subject))
    finally:
        if con is None:
            rel.close()
