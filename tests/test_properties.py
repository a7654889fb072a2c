"""Property-based policy tests: the engine and the auditor agree; mutations, order, as-of and waivers behave.

The auditor is forewarn's (forewarn.relational.audit), every log judged in one workspace (a DuckDB database made
once, its tables replaced by each evaluation) and without the report's case counts, which no property reads.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import event, given, note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from strategies import (
    CALENDARS,
    STEP,
    Lifecycle,
    ModelParams,
    instant,
    lifecycles,
    parse,
    scaled,
    time_ordered,
    to_jsonl,
    ts,
)

from forewarn.audit.findings import Finding
from forewarn.calendar import business_days_before
from forewarn.engine.replay import MemoryDelivery, replay
from forewarn.engine.runner import Engine
from forewarn.events import CommunicationSent, Event, canonical_json, check_log, evaluation_order, parse_lines
from forewarn.lifecycle.fold import SubjectHistory
from forewarn.log.source import import_files, load_files, read_store
from forewarn.log.store import EventStore
from forewarn.policy.loader import default_rules_dir, load_policy
from forewarn.policy.model import Policy
from forewarn.relational.audit import RelationalAuditResult, audit_relational
from forewarn.relational.evaluation import evaluate_events, outcome_keys
from forewarn.relational.tables import workspace
from forewarn.synth.batch import engine_events
from forewarn.synth.mutate import ALL_MUTATIONS, Expected, seed_violations

POLICY = load_policy()
WORKSPACE = workspace()


# --------------------------------------------------------------------------- the auditor


@dataclass(frozen=True)
class Obligation:
    """One obligation the evaluation derived, with its outcome ('void' for a void one)."""

    rule: str
    subject: str
    customer: str
    opened: datetime
    due: datetime
    status: str
    superseded: bool  # its maintenance version was superseded (rescheduled or cancelled) later

    def key(self) -> tuple[str, str, str, datetime, datetime]:
        return (self.rule, self.subject, self.customer, self.opened, self.due)


@dataclass(frozen=True)
class AuditResult(RelationalAuditResult):
    """An audit with what the properties look at beyond the findings: the evaluation's obligations (when asked
    for, or when there are findings to explain) and the subjects' histories."""

    obligations: tuple[Obligation, ...] = ()
    histories: dict[tuple[str, str], SubjectHistory] = dataclasses.field(default_factory=dict)

    @property
    def pending(self) -> list[Obligation]:
        return [o for o in self.obligations if o.status == "pending"]


OBLIGATIONS = """
SELECT o.rule, o.subject, o.customer, o.opened_us, o.na_us,
       CASE WHEN o.void IS NOT NULL THEN 'void' ELSE r.status END, o.superseded_us IS NOT NULL
FROM obligations o LEFT JOIN outcomes r USING (oid)
ORDER BY o.oid
"""


def _instant(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def audit(events: Sequence[Event], policy: Policy, as_of: datetime, outcomes: bool = False) -> AuditResult:
    """forewarn's audit of the log (events in evaluation order) as of `as_of`; `outcomes`: with every obligation."""
    rel = evaluate_events(events, policy, as_of, WORKSPACE)
    result = audit_relational(rel, detail=(), counts=False)
    rows = rel.con.execute(OBLIGATIONS).fetchall() if outcomes or result.findings else []
    obligations = tuple(
        Obligation(rule, subject, customer, _instant(opened), _instant(due), status, superseded)
        for rule, subject, customer, opened, due, status, superseded in rows
    )
    fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    return AuditResult(**fields, obligations=obligations, histories=dict(rel.life.histories))


# --------------------------------------------------------------------------- helpers


def as_dicts(events: Sequence[Event]) -> list[dict[str, object]]:
    """Events (in evaluation order) as JSON objects, the way the log stores them."""
    return [json.loads(canonical_json(e)) for e in events]


def engine_log(
    life: Lifecycle, down: tuple[datetime, datetime] | None = None
) -> tuple[list[Event], MemoryDelivery]:
    """The real engine, stepped through the lifecycle on an in-memory log (engine/replay.py): the log it leaves;
    with `down` (from, back at), the engine was down in between."""
    parsed, errors = parse_lines(life.jsonl().splitlines(), "lifecycle.jsonl")
    assert not errors, errors
    fresh, errors = check_log(parsed, rule_ids=POLICY.ids)
    assert not errors, errors
    store = EventStore.memory()
    try:
        store.append(evaluation_order(fresh))
        delivery = MemoryDelivery()
        engine = Engine(store, POLICY, delivery)
        if down is None:
            replay(engine, life.start, life.as_of)
        else:
            replay(engine, life.start, down[0])
            replay(engine, down[1], life.as_of)
        return read_store(store), delivery
    finally:
        store.close()


def batch_log(life: Lifecycle) -> list[dict[str, object]]:
    """The lifecycle and the engine's sends for the whole period computed in one evaluation."""
    return time_ordered([*life.events, *engine_events(life.parsed(), POLICY, life.as_of)])


def show(title: str, events: Sequence[dict[str, object]] | Sequence[Event]) -> None:
    """Print the log as importable JSONL if the example fails."""
    rows = [e if isinstance(e, dict) else json.loads(canonical_json(e)) for e in events]
    note(f"{title}:\n{to_jsonl(rows)}")


def key(f: Finding) -> tuple[str, str, str, str, str]:
    return (f.rule, f.problem, f.subject, f.customer, f.status)


def findings_text(result: AuditResult) -> str:
    return "\n".join(json.dumps(f.to_json()) for f in result.findings) or "(none)"


def unavoidable(result: AuditResult, f: Finding) -> bool:
    """A finding no sender could have prevented: an overrun, or a deadline before the obligation opened."""
    if f.rule == "extension-notice" and f.problem == "overrun":
        return True
    return any(
        o.status == "violated"
        and (o.rule, o.subject, o.customer, o.due) == (f.rule, f.subject, f.customer, f.due)
        and o.opened > o.due
        for o in result.obligations
    )


def engine_findings(result: AuditResult) -> list[Finding]:
    """The findings of an engine-made log that a prompt sender would have prevented (there must be none)."""
    return [f for f in result.findings if not unavoidable(result, f)]


# --------------------------------------------------------------------------- 1. engine => clean audit


def replies_to(events: Sequence[Event], data: st.DataObject) -> list[dict[str, object]]:
    """Customer replies (an hour later, to the sender and a colleague) to some of the communications."""
    comms = [e for e in events if isinstance(e, CommunicationSent)]
    picks = data.draw(st.sets(st.integers(0, len(comms) - 1), max_size=3) if comms else st.just(set()), label="to")
    chosen = [comms[i] for i in sorted(picks)]
    return [
        {
            "id": f"evt-re-{c.communication}",
            "type": "reply.received",
            "at": ts(c.at + timedelta(hours=1)),
            "reply": f"re-{c.communication}",
            "customer": c.customer,
            "in_reply_to": c.communication,
            "from": c.to[0],
            "to": [c.from_.upper(), f"cc@{c.customer}.example"],
        }
        for c in chosen
    ]


@scaled(ci=15, thorough=10_000)  # a relational evaluation per pass: fewer examples in CI
@given(lifecycles(feasible=True), st.data())
def test_engine_stepped_through_a_feasible_lifecycle_audits_clean(life: Lifecycle, data: st.DataObject) -> None:
    """The real engine (plan, render, outbox, tickets, record) on a replayed clock leaves nothing to find,
    whatever the customers reply."""
    events, delivery = engine_log(life)
    events = parse([*as_dicts(events), *replies_to(events, data)])
    show("engine-made log, with replies", events)
    result = audit(events, POLICY, life.as_of)
    note(f"findings:\n{findings_text(result)}")
    assert result.findings == []
    assert result.pending_json() == []
    sent = [e for e in events if e.type == "communication.sent"]
    assert len(delivery.messages) == len(sent)
    assert len({e.communication for e in sent}) == len(sent)  # type: ignore[union-attr]
    event(f"communications: {min(len(sent), 10)}{'+' if len(sent) >= 10 else ''}")


@scaled(ci=15, thorough=10_000)
@given(lifecycles())
def test_engine_leaves_only_findings_no_sender_could_prevent(life: Lifecycle) -> None:
    """Any lifecycle (short notice, reschedules past the deadline, overruns): every finding was unavoidable."""
    events, _ = engine_log(life)
    show("engine-made log", events)
    result = audit(events, POLICY, life.as_of)
    note(f"findings:\n{findings_text(result)}")
    assert engine_findings(result) == []
    event(f"unavoidable findings: {bool(result.findings)}")


@scaled(ci=10, thorough=10_000)
@given(lifecycles())
def test_batch_sends_are_the_replayed_engines_sends(life: Lifecycle) -> None:
    """synth.batch (one evaluation, used by the properties below for speed) sends what the stepped engine
    sends: the same communication ids, kinds, customers, times and statements."""
    replayed, _ = engine_log(life)
    show("engine-made log", replayed)
    engine = {
        (e.communication, e.kind, e.customer, ts(e.at)): json.dumps(json.loads(canonical_json(e))["states"])
        for e in replayed
        if isinstance(e, CommunicationSent)
    }
    batch = {
        (r["communication"], r["kind"], r["customer"], r["at"]): json.dumps(r["states"], sort_keys=True)
        for r in engine_events(life.parsed(), POLICY, life.as_of)
        if r["type"] == "communication.sent"
    }
    assert sorted(engine.keys() - batch.keys()) == []
    assert sorted(batch.keys() - engine.keys()) == []
    assert engine == batch


def engine_log_down(life: Lifecycle, down_from: datetime, back_at: datetime) -> list[Event]:
    """The real engine stepped through the lifecycle, but down from `down_from` until `back_at`."""
    return engine_log(life, (down_from, back_at))[0]


def told_otherwise(result: AuditResult, f: Finding) -> bool:
    """A missed notice nobody should get late (policy.md, "The engine and deadlines already passed"): its
    maintenance was cancelled or its window rescheduled (the customer is told of that instead), or the
    maintenance is over (completed) and it is not the closing notice; or its rule knows no `late` (a promised
    update sent after its time is still missing)."""
    if "late" not in POLICY.by_id[f.rule].spec.problems:
        return True
    history = result.histories.get(("maintenance", f.subject))
    if history is None:
        return False
    if history.cancelled_at is not None or (history.completed_at is not None and f.rule != "closing-notice"):
        return True
    key = (f.rule, f.subject, f.customer, f.due)
    return any(o.status != "void" and o.superseded and (o.rule, o.subject, o.customer, o.due) == key
               for o in result.obligations)


@scaled(ci=15, thorough=10_000)
@given(lifecycles(feasible=True), st.data())
def test_an_engine_that_was_down_sends_late_never_leaves_missing(life: Lifecycle, data: st.DataObject) -> None:
    """Down for a while, the engine sends what it missed once back: the audit reports those `late`, never
    `missing`, but for what nobody should get late (cancelled, rescheduled, over)."""
    span = int((life.as_of - life.start) / STEP)
    down = data.draw(st.integers(0, span), label="down from (steps after the start)")
    back = data.draw(st.integers(down, span), label="back at (steps after the start)")
    events = engine_log_down(life, life.start + down * STEP, life.start + back * STEP)
    show("engine-made log", events)
    result = audit(events, POLICY, life.as_of)
    note(f"findings:\n{findings_text(result)}")
    missing = [f for f in result.findings if f.problem == "missing" and not told_otherwise(result, f)]
    assert missing == []
    assert all(f.problem in ("late", "missing", "overrun", "premature") for f in result.findings)
    event(f"late findings: {bool([f for f in result.findings if f.problem == 'late'])}")


# --------------------------------------------------------------------------- 2. every violation is found


def clean_engine_log(life: Lifecycle) -> list[dict[str, object]]:
    """The engine's log for a feasible lifecycle (synth.batch: the engine's sends), checked clean."""
    log = batch_log(life)
    result = audit(parse(log), POLICY, life.as_of)
    show("engine-made log", log)
    assert result.findings == [], findings_text(result)
    return log


def mutate_once(log: list[dict[str, object]], data: st.DataObject) -> tuple[list[dict[str, object]], list[Expected]]:
    """One applicable mutation of ALL_MUTATIONS (drawn), the mutated log and the findings it must cause."""
    names = data.draw(st.permutations(sorted(ALL_MUTATIONS)), label="mutations to try, in order")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    for name in names:
        mutated, expected = seed_violations(log, seed, names=[name])
        if expected:
            event(f"mutation {name}")
            note(f"mutation {name} expects {[e.key() for e in expected]}")
            return mutated, expected
    event("no mutation applies")
    return log, []


@scaled(ci=25, thorough=10_000)  # two relational audits per example: fewer examples in CI than thorough's
@given(lifecycles(feasible=True, min_maintenances=1, waivers=False), st.data())
def test_every_seeded_violation_is_found_by_the_right_rule_and_nothing_else(
    life: Lifecycle, data: st.DataObject
) -> None:
    """Drop, move or restate one communication (or its ticket) of an engine-made log: exactly the expected finding."""
    mutated, expected = mutate_once(clean_engine_log(life), data)
    show("mutated log", mutated)
    result = audit(parse(mutated), POLICY, life.as_of)
    note(f"findings:\n{findings_text(result)}")
    assert sorted(key(f) for f in result.findings) == sorted(e.key() for e in expected)


# --------------------------------------------------------------------------- 3. order, files, re-import


def with_violations(life: Lifecycle, data: st.DataObject, at_least: int = 0) -> list[dict[str, object]]:
    """An engine-made log with some communications and tickets dropped or changed: findings of many rules."""
    log = batch_log(life)
    names = data.draw(
        st.lists(st.sampled_from(sorted(ALL_MUTATIONS)), min_size=at_least, max_size=max(4, at_least), unique=True),
        label="mutations",
    )
    replies = data.draw(st.sampled_from([0.0, 0.3]), label="share of communications replied to")
    if names or replies:
        seed = data.draw(st.integers(0, 2**16), label="seed")
        log, _ = seed_violations(log, seed, names=names or ["reply-without-origin"], reply_share=replies)
    return log


def tie_preserving_shuffle(rows: Sequence[dict[str, object]], data: st.DataObject) -> list[dict[str, object]]:
    """The rows in a random order, except that rows with the same `at` keep their relative order."""
    order = data.draw(st.permutations(range(len(rows))), label="line order")
    by_at: dict[object, list[dict[str, object]]] = {}
    for row in rows:
        by_at.setdefault(row["at"], []).append(row)
    taken: Counter[object] = Counter()
    out = []
    for i in order:
        at = rows[i]["at"]
        out.append(by_at[at][taken[at]])
        taken[at] += 1
    return out


def split(rows: Sequence[dict[str, object]], data: st.DataObject, label: str) -> list[list[dict[str, object]]]:
    """Contiguous, non-empty chunks of the rows."""
    if len(rows) < 2:
        return [list(rows)]
    cuts = sorted(data.draw(st.sets(st.integers(1, len(rows) - 1), max_size=3), label=label))
    bounds = [0, *cuts, len(rows)]
    return [list(rows[a:b]) for a, b in itertools.pairwise(bounds)]


def write(directory: Path, chunks: Sequence[Sequence[dict[str, object]]], stem: str) -> list[Path]:
    paths = []
    for n, chunk in enumerate(chunks):
        path = directory / f"{stem}-{n}.jsonl"
        path.write_text(to_jsonl(chunk), encoding="utf-8")
        paths.append(path)
    return paths


def verdict(events: Sequence[Event], as_of: datetime) -> dict[str, object]:
    return audit(events, POLICY, as_of).to_json()


@scaled(ci=12, thorough=10_000)  # four relational audits per example
@given(lifecycles(), st.data())
def test_verdicts_do_not_depend_on_line_order_files_or_reimport(life: Lifecycle, data: st.DataObject) -> None:
    """Shuffled lines (ties kept in order), several files, one or several imports, imported twice: one verdict."""
    log = with_violations(life, data)
    show("log", log)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (base,) = write(directory, [log], "ordered")
        expected = verdict(load_files([base], POLICY.ids), life.as_of)
        shuffled = tie_preserving_shuffle(log, data)
        show("shuffled", shuffled)
        files = write(directory, split(shuffled, data, "files"), "shuffled")
        assert verdict(load_files(files, POLICY.ids), life.as_of) == expected  # --events a.jsonl b.jsonl
        store = EventStore(directory / "one-import.db")
        try:
            first = import_files(store, files, POLICY.ids)
            again = import_files(store, files, POLICY.ids)  # importing twice changes nothing
            assert (again.appended, again.unchanged) == (0, first.appended + first.unchanged)
            assert verdict(read_store(store), life.as_of) == expected
        finally:
            store.close()
        store = EventStore(directory / "imports.db")
        try:  # the log as it grows: time-ordered chunks, each imported on its own, every one twice
            for path in write(directory, split(log, data, "imports"), "chunk"):
                import_files(store, [path], POLICY.ids)
                assert import_files(store, [path], POLICY.ids).appended == 0
            assert verdict(read_store(store), life.as_of) == expected
        finally:
            store.close()


# --------------------------------------------------------------------------- 4. as-of monotonicity


def instants(log: Sequence[dict[str, object]], life: Lifecycle, data: st.DataObject) -> tuple[datetime, datetime]:
    """Two as-of instants t1 <= t2: event times, obligations' openings and deadlines, and a second around them."""
    final = evaluate_events(parse(log), POLICY, life.as_of, WORKSPACE)
    times = sorted(
        {instant(e["at"]) for e in log}
        | {life.as_of}
        | {_instant(us) for o in outcome_keys(final) for us in (o[4], o[6])}  # opened, not after
        | {v.due for v in final.violations()}
    )
    subjects = [instant(e["at"]) for e in log if e["type"] != "customer.upserted"]
    times = [t for t in times if t >= min(subjects, default=life.start)]  # not the quiet month before
    pick = st.one_of(
        st.sampled_from(times),
        st.sampled_from(times).map(lambda t: t + timedelta(minutes=1)),
        st.sampled_from(times).map(lambda t: t - timedelta(seconds=1)),
    )
    t1, t2 = sorted([data.draw(pick, label="t1"), data.draw(pick, label="t2")])
    return t1, t2


@scaled(ci=20, thorough=10_000)  # three relational evaluations per example
@given(lifecycles(min_maintenances=1), st.data())
def test_what_is_found_as_of_t_stays_found_and_nothing_pending_is_forgotten(
    life: Lifecycle, data: st.DataObject
) -> None:
    """A finding as of t1 is reported as of t2 >= t1 (missing may turn late or early, violation may turn waived);
    an obligation pending as of t1 is met, violated, void or still pending as of t2."""
    log = with_violations(life, data, at_least=1)
    show("log", log)
    events = parse(log)
    t1, t2 = instants(log, life, data)
    note(f"as of {ts(t1)} and {ts(t2)}")
    early, late = audit(events, POLICY, t1, outcomes=True), audit(events, POLICY, t2, outcomes=True)
    note(f"findings as of t1:\n{findings_text(early)}\nfindings as of t2:\n{findings_text(late)}")
    later: dict[tuple[object, ...], list[Finding]] = {}
    for f in late.findings:
        later.setdefault((f.rule, f.subject, f.customer, f.due), []).append(f)
    for f in early.findings:
        same = later.get((f.rule, f.subject, f.customer, f.due), [])
        assert any(g.problem == f.problem or f.problem == "missing" for g in same), f.to_json()
        assert any(g.status == f.status or g.status == "waived" for g in same), f.to_json()
    outcomes = {o.key(): o.status for o in late.obligations}
    for o in early.pending:
        assert o.key() in outcomes, o
        if o.due > t2:
            assert outcomes[o.key()] in ("pending", "met", "void")
    event(f"findings as of t1: {bool(early.findings)}, pending: {bool(early.pending)}")


# --------------------------------------------------------------------------- 5. waivers only waive


def defined_at(log: Sequence[dict[str, object]], subject: str) -> datetime:
    """When the entity a finding is about (maintenance, incident, release, communication, reply) was defined."""
    for e in log:
        if any(e.get(k) == subject for k in ("maintenance", "incident", "release", "communication", "reply")) and (
            str(e["type"]).endswith((".scheduled", ".declared", ".sent", ".received"))
        ):
            return instant(e["at"])
    raise AssertionError(f"no definition of {subject}")


@scaled(ci=25, thorough=10_000)  # two relational audits per example
@given(lifecycles(min_maintenances=1, waivers=False), st.data())
def test_a_waiver_only_waives(life: Lifecycle, data: st.DataObject) -> None:
    """Granting a waiver turns exactly the findings it covers to waived (with its id, retroactive when granted
    after the due time, its event as evidence) and changes nothing else: not the obligations, not the pending."""
    log = with_violations(life, data, at_least=2)
    before = audit(parse(log), POLICY, life.as_of)
    if not before.findings:
        event("no finding to waive")
        return
    f = data.draw(st.sampled_from(before.findings), label="finding to waive")
    defined = defined_at(log, f.subject)
    at = data.draw(
        st.sampled_from(sorted({defined, max(defined, f.due - timedelta(hours=1)), max(defined, f.due), life.as_of})),
        label="granted at",
    )
    waiver: dict[str, object] = {
        "id": "w-evt",
        "type": "waiver.granted",
        "at": ts(at),
        "waiver": "w-1",
        "rule": f.rule,
        "subject": f.subject,
        "reason": "customer agreed by phone",
        "approved_by": "cdm@example.com",
    }
    if data.draw(st.booleans(), label="for one customer"):
        waiver["customer"] = f.customer
    note(f"waiver: {json.dumps(waiver)}")
    show("log", log)
    after = audit(parse([*log, waiver]), POLICY, life.as_of)

    def covered(g: Finding) -> bool:
        return (g.rule, g.subject) == (f.rule, f.subject) and waiver.get("customer", g.customer) == g.customer

    expected = [
        dataclasses.replace(
            g, status="waived", waiver="w-1", retroactive=at > g.due, evidence=(*g.evidence, "w-evt")
        ).to_json()
        if covered(g)
        else g.to_json()
        for g in before.findings
    ]
    assert [g.to_json() for g in after.findings] == expected
    assert after.pending_json() == before.pending_json()
    s, t = before.summary, after.summary
    assert (t.obligations, t.met, t.pending, t.findings) == (s.obligations, s.met, s.pending, s.findings)
    assert t.violated + t.waived == s.violated + s.waived and t.waived >= s.waived
    event(f"waived findings: {sum(covered(g) for g in before.findings)}")


# ------------------------------------------------------------------ 6. the engine against a model, step by step


@dataclass
class Version:
    opened: datetime
    seq: int
    start: datetime
    superseded_at: datetime | None = None


@dataclass
class Maint:
    """What the model knows of one maintenance."""

    id: str
    at: datetime
    seq: int
    customers: list[str] | str
    impact: str
    emergency: bool
    versions: list[Version]
    end: datetime  # the end in force
    started: bool = False
    cancelled_at: datetime | None = None
    completed: bool = False
    closed: tuple[datetime, int] | None = None
    extensions: list[tuple[datetime, int, datetime | None]] = dataclasses.field(default_factory=list)  # (X, seq, U)

    @property
    def notifiable(self) -> bool:
        return self.impact != "none" or self.emergency


@dataclass
class Owed:
    """A communication the engine must have sent by now: kind, to whom, about what, and when exactly."""

    subject: str
    customer: str
    kind: str
    at: datetime


MACHINE_START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class EngineAgainstModel(RuleBasedStateMachine):
    """Lifecycle events and clock steps in random order against the real engine; after every clock step the
    log holds what a tiny model of the policy says is owed by then, nothing it does not allow, no duplicate.
    The model's numbers are the policy's (`params`, read from its rule files)."""

    policy = POLICY
    params = ModelParams.of(POLICY)

    def __init__(self) -> None:
        super().__init__()
        self.store = EventStore.memory()
        self.delivery = MemoryDelivery()
        self.engine = Engine(self.store, self.policy, self.delivery)
        self.now = MACHINE_START
        self.seq = 0  # events recorded (evaluation order = recording order: time never goes back)
        self.handled = 0  # events recorded before the last clock step
        self.ticked = MACHINE_START  # when the last clock step ended
        self.judged: datetime | None = None  # the clock step whose log the auditor judged last
        self.lines: list[dict[str, object]] = []
        self.calendars: dict[str, tuple[str, str | None, str | None]] = {}
        self.plans: dict[str, list[tuple[int, bool]]] = {}  # customer -> (seq, enterprise)
        self.maints: dict[str, Maint] = {}
        self.incidents: dict[str, tuple[datetime, int, list[str] | str, bool]] = {}  # (D, seq, customers, critical)
        self.releases: dict[str, tuple[datetime, int, list[str] | str, datetime]] = {}  # (R, seq, customers, at)
        self.replies = 0

    # -- recording ------------------------------------------------------------------

    def record(self, type_: str, **fields: object) -> int:
        self.seq += 1
        row = {"id": f"e{self.seq:02d}", "type": type_, "at": ts(self.now), **fields}
        self.lines.append(row)
        parsed, errors = parse_lines([json.dumps(row)], "machine.jsonl")
        assert not errors, errors
        fresh, errors = check_log(parsed, self.store.known_entities(), rule_ids=self.policy.ids)
        assert not errors, errors
        self.store.append(fresh)
        return self.seq

    def enterprise(self, customer: str, seq: int) -> bool:
        return next((e for s, e in reversed(self.plans[customer]) if s <= seq), False)

    def affected(self, customers: list[str] | str, defined: int, seq: int) -> list[str]:
        base = [c for c in self.plans if self.enterprise(c, defined)] if customers == "all" else customers
        return [c for c in base if self.enterprise(c, seq)]

    def pick(self, data: st.DataObject, ok: Callable[[Maint], bool]) -> Maint:
        return data.draw(st.sampled_from([m for _, m in sorted(self.maints.items()) if ok(m)]), label="maintenance")

    def some(self, ok: Callable[[Maint], bool]) -> bool:
        return any(ok(m) for m in self.maints.values())

    def customers_of(self, data: st.DataObject) -> list[str] | str:
        if data.draw(st.booleans(), label="all customers"):
            return "all"
        return sorted(data.draw(st.sets(st.sampled_from(sorted(self.plans)), min_size=1), label="customers"))

    # -- lifecycle ------------------------------------------------------------------

    @initialize(cal=st.sampled_from(CALENDARS), enterprise=st.booleans() | st.just(True))
    def first_customer(self, cal: tuple[str, str | None, str | None], enterprise: bool) -> None:
        self.add_customer(cal, enterprise)

    @precondition(lambda self: len(self.plans) < 3)
    @rule(cal=st.sampled_from(CALENDARS), enterprise=st.booleans() | st.just(True))
    def add_customer(self, cal: tuple[str, str | None, str | None], enterprise: bool) -> None:
        cid = f"cust-{len(self.plans) + 1}"
        self.calendars[cid] = cal
        self.plans[cid] = [(self.seq + 1, enterprise)]
        self.upsert(cid, enterprise)

    def upsert(self, cid: str, enterprise: bool) -> None:
        tz, country, sub = self.calendars[cid]
        fields: dict[str, object] = {"customer": cid, "name": cid, "plan": "enterprise" if enterprise else "business"}
        fields["timezone"] = tz
        if country:
            fields["country"] = country
        if sub:
            fields["subdivision"] = sub
        self.record("customer.upserted", **fields, contacts=[f"ops@{cid}.example"])

    @precondition(lambda self: bool(self.plans))
    @rule(data=st.data())
    def change_plan(self, data: st.DataObject) -> None:
        self.wait(data)
        cid = data.draw(st.sampled_from(sorted(self.plans)), label="customer")
        enterprise = not self.plans[cid][-1][1]
        self.plans[cid].append((self.seq + 1, enterprise))
        self.upsert(cid, enterprise)

    @precondition(lambda self: bool(self.plans) and len(self.maints) < 3)
    @rule(
        data=st.data(),
        impact=st.sampled_from(["interruption", "degraded", "none"]),
        emergency=st.booleans(),
        lead=st.integers(-6, 24) | st.integers(0, 14 * 288),
        duration=st.integers(1, 48),
    )
    def schedule(self, data: st.DataObject, impact: str, emergency: bool, lead: int, duration: int) -> None:
        self.wait(data)
        mid = f"mx-{len(self.maints) + 1}"
        start = self.now + lead * STEP
        customers = self.customers_of(data)
        fields: dict[str, object] = {"maintenance": mid, "title": mid, "start": ts(start)}
        fields.update(end=ts(start + duration * STEP), customers=customers, impact=impact)
        if impact != "none":
            fields["impact_summary"] = "Logins unavailable"
        if emergency:
            fields.update(emergency=True, reason="critical vulnerability")
        seq = self.record("maintenance.scheduled", **fields)
        version = Version(self.now, seq, start)
        end = start + duration * STEP
        self.maints[mid] = Maint(mid, self.now, seq, customers, impact, emergency, [version], end)

    def reschedulable(self, m: Maint) -> bool:
        return not m.started and m.cancelled_at is None

    @precondition(lambda self: self.some(self.reschedulable))
    @rule(data=st.data(), lead=st.integers(-6, 24) | st.integers(0, 14 * 288), duration=st.integers(1, 48))
    def reschedule(self, data: st.DataObject, lead: int, duration: int) -> None:
        self.wait(data)
        m = self.pick(data, self.reschedulable)
        start = self.now + lead * STEP
        m.versions[-1].superseded_at = self.now
        m.end = start + duration * STEP
        seq = self.record("maintenance.rescheduled", maintenance=m.id, start=ts(start), end=ts(m.end))
        m.versions.append(Version(self.now, seq, start))

    @precondition(lambda self: self.some(lambda m: m.cancelled_at is None and not m.completed))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        self.wait(data)
        m = self.pick(data, lambda m: m.cancelled_at is None and not m.completed)
        self.record("maintenance.cancelled", maintenance=m.id)
        m.cancelled_at = self.now
        if m.versions[-1].superseded_at is None:
            m.versions[-1].superseded_at = self.now

    @precondition(lambda self: self.some(lambda m: not m.started and m.cancelled_at is None))
    @rule(data=st.data())
    def start(self, data: st.DataObject) -> None:
        self.wait(data)
        m = self.pick(data, lambda m: not m.started and m.cancelled_at is None)
        self.record("maintenance.started", maintenance=m.id)
        m.started = True

    def extendable(self, m: Maint) -> bool:
        return m.started and not m.completed and m.cancelled_at is None

    @precondition(lambda self: self.some(self.extendable))
    @rule(
        data=st.data(),
        end=st.none() | st.integers(1, 36),
        update=st.none() | st.integers(1, 36),
        later=st.booleans() | st.just(True),
    )
    def extend(self, data: st.DataObject, end: int | None, update: int | None, later: bool) -> None:
        self.wait(data)
        m = self.pick(data, self.extendable)
        fields: dict[str, object] = {"maintenance": m.id, "reason": "slower than planned"}
        if end is not None or update is None:  # usually later than the end in force, possibly not (BUG-3)
            m.end = (max(self.now, m.end) if later else self.now) + (end or 1) * STEP
            fields["end"] = ts(m.end)
        if update is not None:
            fields["next_update_by"] = ts(self.now + update * STEP)
        seq = self.record("maintenance.extended", **fields)
        m.extensions.append((self.now, seq, self.now + update * STEP if update is not None else None))

    @precondition(lambda self: self.some(lambda m: m.started and not m.completed and m.cancelled_at is None))
    @rule(data=st.data(), healthy=st.booleans())
    def complete(self, data: st.DataObject, healthy: bool) -> None:
        self.wait(data)
        m = self.pick(data, lambda m: m.started and not m.completed and m.cancelled_at is None)
        seq = self.record("maintenance.completed", maintenance=m.id, healthy=healthy)
        m.completed = True
        if healthy:
            m.closed = (self.now, seq)

    @precondition(lambda self: self.some(lambda m: m.completed and m.closed is None))
    @rule(data=st.data())
    def healthy(self, data: st.DataObject) -> None:
        self.wait(data)
        m = self.pick(data, lambda m: m.completed and m.closed is None)
        m.closed = (self.now, self.record("maintenance.healthy", maintenance=m.id))

    @precondition(lambda self: bool(self.plans) and not self.incidents)
    @rule(data=st.data(), severity=st.sampled_from(["critical", "major", "minor"]))
    def declare_incident(self, data: st.DataObject, severity: str) -> None:
        self.wait(data)
        customers = self.customers_of(data)
        seq = self.record(
            "incident.declared",
            incident="inc-1",
            title="Outage",
            severity=severity,
            customers=customers,
            summary="down",
        )
        self.incidents["inc-1"] = (self.now, seq, customers, severity == "critical")

    @precondition(lambda self: bool(self.plans) and not self.releases)
    @rule(data=st.data(), lead=st.integers(0, 14 * 288))
    def schedule_release(self, data: st.DataObject, lead: int) -> None:
        self.wait(data)
        customers = self.customers_of(data)
        release_at = self.now + lead * STEP
        seq = self.record(
            "release.scheduled", release="rel-1", title="Release", release_at=ts(release_at), customers=customers
        )
        self.releases["rel-1"] = (self.now, seq, customers, release_at)

    @precondition(lambda self: bool(self.delivery.messages))
    @rule(data=st.data())
    def reply(self, data: st.DataObject) -> None:
        """A customer answers a communication, keeping its sender in copy (reply-all)."""
        self.wait(data)
        comms = [e for e in read_store(self.store) if isinstance(e, CommunicationSent)]
        c = data.draw(st.sampled_from(comms), label="replied to")
        self.replies += 1
        self.record(
            "reply.received",
            reply=f"re-{self.replies}",
            customer=c.customer,
            in_reply_to=c.communication,
            to=[c.from_, f"cc@{c.customer}.example"],
            **{"from": c.to[0]},
        )

    def teardown(self) -> None:
        sent = len(self.delivery.messages)
        event(f"engine sent {min(sent, 10)}{'+' if sent >= 10 else ''}")
        self.store.close()

    # -- the clock ---------------------------------------------------------------------

    def wait(self, data: st.DataObject) -> None:
        """Time passes before a lifecycle event too (the engine running), even in runs that never `tick`."""
        steps = data.draw(st.sampled_from([0, 0, 1, 3, 12, 48, 288, 576]), label="wait first (5-minute steps)")
        if steps:
            self.tick(steps)

    @rule(steps=st.integers(1, 12) | st.integers(12, 288) | st.integers(288, 5 * 288))
    def tick(self, steps: int) -> None:
        """The engine runs (engine/replay.py) from now until now + steps x 5 minutes, then a pass at the end."""
        end = self.now + steps * STEP
        replay(self.engine, self.now, end)
        while self.engine.run_once(end).sent:
            pass
        self.now = end
        self.handled = self.seq
        self.ticked = end

    # -- the model ---------------------------------------------------------------------

    def deadline(self, t: datetime, customer: str, seq: int) -> datetime:
        tz, country, sub = self.calendars[customer]
        return business_days_before(t, self.params.advance_days, tz, country, sub)

    def owed(self) -> list[Owed]:
        """Every communication due by now (sendable at or before now, before its deadline, not void then)."""
        out: list[Owed] = []
        p = self.params

        def need(
            subject: str,
            customer: str,
            kind: str,
            seq: int,
            at: datetime,
            deadline: datetime,
            void_at: datetime | None = None,
        ) -> None:
            if seq <= self.handled and at <= self.now and at <= deadline and (void_at is None or at < void_at):
                out.append(Owed(subject, customer, kind, at))

        for m in self.maints.values():
            for v in m.versions:
                for c in self.affected(m.customers, m.seq, v.seq):
                    if not m.emergency and m.impact != "none":
                        need(
                            m.id,
                            c,
                            "advance_notice",
                            v.seq,
                            v.opened,
                            self.deadline(v.start, c, v.seq),
                            v.superseded_at,
                        )
                    if not m.emergency and m.impact == "interruption":
                        reminder = max(v.opened, v.start - p.reminder)
                        need(m.id, c, "start_reminder", v.seq, reminder, v.start + p.reminder, v.superseded_at)
            if m.emergency:
                for c in self.affected(m.customers, m.seq, m.seq):
                    need(m.id, c, "emergency", m.seq, m.at, m.at + p.emergency, m.cancelled_at)
            if m.notifiable and m.closed is not None:
                for c in self.affected(m.customers, m.seq, m.closed[1]):
                    need(m.id, c, "closing", m.closed[1], m.closed[0], m.closed[0] + p.closing)
            for x, seq, _update in m.extensions:
                for c in self.affected(m.customers, m.seq, seq) if m.notifiable else []:
                    need(m.id, c, "extension", seq, x, x + p.extension, m.cancelled_at)
        for iid, (declared, seq, customers, critical) in self.incidents.items():
            for c in self.affected(customers, seq, seq) if critical else []:
                need(iid, c, "incident", seq, declared, declared + p.incident)
        for rid, (announced, seq, customers, release_at) in self.releases.items():
            for c in self.affected(customers, seq, seq):
                tz, country, sub = self.calendars[c]
                deadline = business_days_before(release_at, self.params.release_days, tz, country, sub)
                need(rid, c, "release", seq, announced, deadline)
        return out

    def allowed(self) -> Counter[tuple[str, str, str]]:
        """How many communications of each (subject, customer, kind) the policy can call for."""
        most: Counter[tuple[str, str, str]] = Counter()
        for m in self.maints.values():
            told: set[str] = set()
            for v in m.versions:
                for c in self.affected(m.customers, m.seq, v.seq):
                    told.add(c)
                    most[(m.id, c, "advance_notice")] += not m.emergency and m.impact != "none"
                    most[(m.id, c, "start_reminder")] += not m.emergency and m.impact == "interruption"
                    most[(m.id, c, "emergency")] = int(m.emergency)
            for _x, seq, update in m.extensions:
                for c in self.affected(m.customers, m.seq, seq):
                    told.add(c)
                    most[(m.id, c, "extension")] += int(m.notifiable) + 2 * (update is not None)
            if m.closed is not None:
                for c in self.affected(m.customers, m.seq, m.closed[1]):
                    most[(m.id, c, "closing")] = int(m.notifiable)
            if m.cancelled_at is not None:
                for c in told:
                    most[(m.id, c, "other")] = 1  # the engine withdraws the invitation (a courtesy)
        for iid, (_d, seq, customers, critical) in self.incidents.items():
            for c in self.affected(customers, seq, seq):
                most[(iid, c, "incident")] = int(critical)
        for rid, (_r, seq, customers, _at) in self.releases.items():
            for c in self.affected(customers, seq, seq):
                most[(rid, c, "release")] = 1
        return most

    @invariant()
    def engine_and_model_agree(self) -> None:
        events = read_store(self.store)
        unseen = {str(row["id"]) for row in self.lines[self.handled :]}
        comms = [e for e in events if isinstance(e, CommunicationSent)]
        try:
            assert len({c.communication for c in comms}) == len(comms) == len(self.delivery.messages), "duplicate"
            sent = Counter((c.subject_ref()[1], c.customer, c.kind) for c in comms)  # type: ignore[index]
            at = {(c.subject_ref()[1], c.customer, c.kind, c.at) for c in comms}  # type: ignore[index]
            assert [o for o in self.owed() if (o.subject, o.customer, o.kind, o.at) not in at] == [], "owed, not sent"
            assert sent - self.allowed() == Counter(), "sent, not allowed"
            for c in comms:
                if c.kind == "closing":
                    closed = self.maints[str(c.maintenance)].closed
                    assert closed is not None and closed[0] <= c.at, f"premature closing {c.communication}"
            # judged as of the last clock step, on what the engine has seen: not events recorded since (the log
            # the engine has seen changes only with the clock: judged once per step)
            if self.judged != self.ticked:
                handled = [e for e in events if e.id not in unseen]
                result = audit(handled, self.policy, self.ticked)
                assert engine_findings(result) == [], "the auditor finds what the engine should have prevented"
                self.judged = self.ticked
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\nas of {ts(self.now)}; lifecycle:\n{to_jsonl(self.lines)}engine-made log:\n"
                + to_jsonl(as_dicts(events))
            ) from None


TestEngineAgainstModel = EngineAgainstModel.TestCase
TestEngineAgainstModel.settings = scaled(ci=4, thorough=10_000, stateful_step_count=30)  # an audit per clock step


def edited_policy() -> Policy:
    """The shipped policy with two parameters edited in a copy of its rule files: advance notice at 2 business
    days, the start reminder within 5 minutes of the start."""
    root = Path(tempfile.mkdtemp(prefix="forewarn-edited-rules-")) / "rules"
    shutil.copytree(default_rules_dir(), root, ignore=shutil.ignore_patterns("fixtures"))
    for name, old, new in (
        ("advance-notice.yaml", "    value: 1\n", "    value: 2\n"),
        ("start-reminder.yaml", "    value: 15\n", "    value: 5\n"),
    ):
        path = root / name
        text = path.read_text()
        assert old in text, name
        path.write_text(text.replace(old, new, 1))
    return load_policy(root)


EDITED = edited_policy()


class EngineAgainstEditedPolicy(EngineAgainstModel):
    """The same machine and model under the edited policy: the model follows the rule files."""

    policy = EDITED
    params = ModelParams.of(EDITED)


def test_the_model_reads_its_numbers_from_the_rule_files() -> None:
    shipped, edited = ModelParams.of(POLICY), EngineAgainstEditedPolicy.params
    assert (shipped.advance_days, shipped.reminder) == (1, timedelta(minutes=15))
    assert (edited.advance_days, edited.reminder) == (2, timedelta(minutes=5))
    assert dataclasses.replace(edited, advance_days=1, reminder=timedelta(minutes=15)) == shipped


TestEngineAgainstEditedPolicy = EngineAgainstEditedPolicy.TestCase
TestEngineAgainstEditedPolicy.settings = scaled(ci=3, thorough=10_000, stateful_step_count=30)
