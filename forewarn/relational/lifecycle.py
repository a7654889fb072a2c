"""Each subject's lifecycle on durable_rules (forewarn.lifecycle), as rows: the `triggers` table.

Only the lifecycle events (a handful per maintenance / incident / release) become Python objects here;
the fold and the rules' triggers are forewarn.lifecycle's (fold.fold_subject, rules.compile_rules). Each
fired (rule, moment) becomes one row with what the obligation queries need: the moment, its anchors
resolved per the rule, and the instants that void it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa
from pydantic import ValidationError

from forewarn.events import EVENT_ADAPTER, Event, WaiverGranted
from forewarn.instants import epoch_us
from forewarn.lifecycle.fold import LIFECYCLE_TYPES, SubjectHistory, fold_subject
from forewarn.lifecycle.model import Moment
from forewarn.lifecycle.rete import Session
from forewarn.lifecycle.rules import ALARM_SUFFIX, compile_rules, fact_of, timers_of
from forewarn.log.source import DamagedLog
from forewarn.policy.model import Policy, Rule
from forewarn.policy.schema import AnchorName
from forewarn.relational.tables import run

ANCHORS: tuple[str, ...] = AnchorName.__args__  # type: ignore[attr-defined]

LIFECYCLE = tuple(sorted(LIFECYCLE_TYPES))  # a tuple prints as an SQL list
READ = tuple(sorted(LIFECYCLE_TYPES | {"waiver.granted"}))  # the events fold_all reads


@dataclass
class Lifecycles:
    """Every subject's history (by (kind, id), in order of first event) and the fired triggers."""

    histories: dict[tuple[str, str], SubjectHistory]
    order: dict[tuple[str, str], int]  # subject -> its rank (order of its first event)
    fired: list[tuple[Rule, Moment, int]]  # (rule, moment, moment number in its subject); alarms included
    waivers: list[WaiverGranted] = field(default_factory=list)  # in evaluation order


def _us(t: object) -> int | None:
    return epoch_us(t) if isinstance(t, datetime) else None


def fold_all(
    con: duckdb.DuckDBPyConnection,
    policy: Policy,
    as_of: datetime,
    pos_at: Callable[[datetime], int] | None = None,
) -> Lifecycles:
    """Fold every subject's lifecycle events (read from `ev`, with the waivers) and run the triggers on
    durable_rules. `pos_at`: the position of the last event at or before an instant (an alarm timer's), when
    `ev` holds only part of the log (the engine's open subjects: forewarn.relational.engine); by default `ev`'s
    own."""
    rows = run(
        con,
        f"SELECT pos, payload FROM ev WHERE type IN {READ} ORDER BY pos",  # a fixed list of ours
    ).fetchall()
    by_subject: dict[tuple[str, str], list[tuple[int, Event]]] = {}
    waivers: list[WaiverGranted] = []
    validate = EVENT_ADAPTER.validate_json
    for pos, payload in rows:
        try:
            event = validate(payload)
        except ValidationError as exc:  # the log holds only validated events: it was altered or damaged
            first = exc.errors(include_url=False)[0]
            raise DamagedLog(f"a stored event is not a valid event ({first['msg']})") from None
        if isinstance(event, WaiverGranted):
            waivers.append(event)
            continue
        kind = event.type.split(".", 1)[0]
        by_subject.setdefault((kind, getattr(event, kind)), []).append((pos, event))

    if pos_at is None:
        ats: list[np.ndarray] = []  # read when a timer first asks (most logs have no running maintenance)

        def pos_at(t: datetime) -> int:
            if not ats:
                ats.append(run(con, "SELECT at_us FROM ev ORDER BY pos").fetchnumpy()["at_us"])
            return int(np.searchsorted(ats[0], epoch_us(t), side="right")) - 1

    timers = timers_of(policy)
    fired_names: list[tuple[str, str]] = []
    out = Lifecycles({}, {}, [], waivers)
    with Session(compile_rules(policy, fired_names)) as session:
        for rank, ((kind, subject), events) in enumerate(by_subject.items()):
            history = fold_subject(kind, subject, events, timers, as_of, pos_at)
            if history is None:
                continue
            out.histories[(kind, subject)] = history
            out.order[(kind, subject)] = rank
            sid = f"{kind}:{subject}"
            fired_names.clear()
            for n, moment in enumerate(history.moments):
                session.assert_fact(sid, fact_of(moment, str(n)))
            session.end_subject(sid)
            for name, fact_id in fired_names:
                alarm = name.endswith(ALARM_SUFFIX)
                rule = policy.by_id[name[: -len(ALARM_SUFFIX)] if alarm else name]
                n = int(fact_id)
                moment = history.moments[n]
                # the rule's subject and moment terms, on the moment (forewarn.policy.conditions);
                # its customer terms are SQL, on the customer versions (forewarn.relational.conditions)
                condition = rule.alarm_condition if alarm else rule.obligation_condition
                if condition.holds_for_subject(moment.attrs):
                    out.fired.append((rule, moment, n))
    return out


TRIGGER_SCHEMA = pa.schema(
    [
        ("tid", pa.int64()),  # the trigger's number, in derivation order
        ("rule", pa.string()),
        ("alarm", pa.bool_()),  # an alarm's timer moment (else an obligation's trigger)
        ("subject_kind", pa.string()),
        ("subject", pa.string()),
        ("subject_rank", pa.int64()),
        ("moment_no", pa.int64()),
        ("fire_no", pa.int64()),  # order among the rules fired by one moment
        ("pos", pa.int64()),
        ("opened_us", pa.int64()),
        ("event_id", pa.string()),
        ("defined_event", pa.string()),
        ("defined_pos", pa.int64()),
        ("all_customers", pa.bool_()),
        # the moment's instants an obligation window can be anchored at (schema.AnchorName)
        *((f"{name}_at_us", pa.int64()) for name in ANCHORS),
        ("superseded_us", pa.int64()),
        ("version_start_us", pa.int64()),
        ("cancelled_us", pa.int64()),
        ("closed_us", pa.int64()),
    ]
)

CUSTOMER_LIST_SCHEMA = pa.schema(
    [("subject_kind", pa.string()), ("subject", pa.string()), ("ord", pa.int64()), ("customer", pa.string())]
)


def trigger_rows(life: Lifecycles) -> Iterator[dict[str, object]]:
    """One row per (rule, moment) fired: an obligation's trigger or an alarm's timer."""
    fire_no: dict[tuple[str, str, int], int] = {}
    for tid, (rule, moment, n) in enumerate(life.fired):
        alarm = moment.type == "maintenance.overrun"
        if (rule.spec.alarm if alarm else rule.spec.obligation) is None:
            continue
        key = (moment.subject_kind, moment.subject, n)
        fire_no[key] = fire_no.get(key, -1) + 1
        history = life.histories[(moment.subject_kind, moment.subject)]
        version_no = moment.attrs.get("version")
        version = history.versions[int(version_no) - 1] if isinstance(version_no, int) else None
        yield {
            "tid": tid,
            "rule": rule.id,
            "alarm": alarm,
            "subject_kind": moment.subject_kind,
            "subject": moment.subject,
            "subject_rank": life.order[(moment.subject_kind, moment.subject)],
            "moment_no": n,
            "fire_no": fire_no[key],
            "pos": moment.pos,
            "opened_us": epoch_us(moment.at),
            "event_id": moment.event_id,
            "defined_event": history.defined_event,
            "defined_pos": history.defined_pos,
            "all_customers": history.customers == "all",
            **{f"{name}_at_us": _us(moment.attrs.get(name)) for name in ANCHORS},
            "superseded_us": _us(version.superseded_at) if version is not None else None,
            "version_start_us": _us(version.start) if version is not None else None,
            "cancelled_us": _us(history.cancelled_at),
            "closed_us": _us(history.closed_at),
        }


def customer_list_rows(life: Lifecycles) -> Iterator[dict[str, object]]:
    """Each subject's own list of affected customers, in its order, without repeats."""
    for (kind, subject), history in life.histories.items():
        if history.customers != "all":
            for ord_, customer in enumerate(dict.fromkeys(history.customers)):
                yield {"subject_kind": kind, "subject": subject, "ord": ord_, "customer": customer}


def register(con: duckdb.DuckDBPyConnection, life: Lifecycles) -> set[tuple[str, bool]]:
    """The `triggers` and `subject_customers` tables (Arrow tables the connection reads in place, replacing the
    previous evaluation's: a few rows per subject, not worth copying); the (rule, alarm) pairs `triggers` holds
    (a rule with none has no obligation or alarm to query)."""
    rows = list(trigger_rows(life))
    con.register("triggers", pa.Table.from_pylist(rows, schema=TRIGGER_SCHEMA))
    con.register("subject_customers", pa.Table.from_pylist(list(customer_list_rows(life)), schema=CUSTOMER_LIST_SCHEMA))
    return {(row["rule"], row["alarm"]) for row in rows}  # type: ignore[misc]


SUBJECT_SCHEMA = pa.schema(
    [
        ("subject_kind", pa.string()),
        ("subject", pa.string()),
        ("subject_rank", pa.int64()),
        ("defined_event", pa.string()),
        ("defined_pos", pa.int64()),
        ("all_customers", pa.bool_()),
        ("impact", pa.string()),
        ("emergency", pa.bool_()),
        ("release", pa.bool_()),
        ("notifiable", pa.bool_()),
        ("severity", pa.string()),
        ("release_related", pa.bool_()),
        ("closed_pos", pa.int64()),
    ]
)
VERSION_SCHEMA = pa.schema(
    [
        ("subject_kind", pa.string()),
        ("subject", pa.string()),
        ("number", pa.int64()),
        ("pos", pa.int64()),
        ("start_us", pa.int64()),
        ("end_us", pa.int64()),
        ("event_id", pa.string()),
    ]
)
END_SCHEMA = pa.schema(
    [("subject_kind", pa.string()), ("subject", pa.string()), ("pos", pa.int64()), ("end_us", pa.int64())]
)
LABELS_SCHEMA = pa.schema(
    [("subject_kind", pa.string()), ("subject", pa.string()), ("pos", pa.int64()), ("labels", pa.string())]
)
"""A subject's labels from `pos` on (its first row at -1: SubjectHistory.attrs_at's labels), as JSON."""
EXTENSION_SCHEMA = pa.schema(
    [("subject_kind", pa.string()), ("subject", pa.string()), ("pos", pa.int64()), ("gave_end", pa.bool_())]
)


def _subject_tables(life: Lifecycles) -> dict[str, pa.Table]:
    """Each subject's attributes and its maintenance's versions, ends in force and extensions, as tables."""
    subjects, versions, ends, extensions, labels = [], [], [], [], []
    for (kind, subject), h in life.histories.items():
        attrs = h.attrs
        if len(h.label_positions) <= 1:
            in_force = [(-1, attrs.get("labels") or {})]
        else:
            versions_in_force = zip(h.label_positions, h.label_versions, strict=True)
            in_force = [(-1 if i == 0 else p, v) for i, (p, v) in enumerate(versions_in_force)]
        for pos, value in in_force:
            labels.append({"subject_kind": kind, "subject": subject, "pos": pos, "labels": json.dumps(value)})
        subjects.append(
            {
                "subject_kind": kind,
                "subject": subject,
                "subject_rank": life.order[(kind, subject)],
                "defined_event": h.defined_event,
                "defined_pos": h.defined_pos,
                "all_customers": h.customers == "all",
                "impact": attrs.get("impact"),
                "emergency": attrs.get("emergency"),
                "release": attrs.get("release"),
                "notifiable": attrs.get("notifiable"),
                "severity": attrs.get("severity"),
                "release_related": h.release_related,
                "closed_pos": h.closed_pos,
            }
        )
        for v in h.versions:
            versions.append(
                {
                    "subject_kind": kind,
                    "subject": subject,
                    "number": v.number,
                    "pos": v.pos,
                    "start_us": epoch_us(v.start),
                    "end_us": epoch_us(v.end),
                    "event_id": v.event_id,
                }
            )
        for pos, (end, _given) in zip(h.end_positions, h.ends, strict=True):
            ends.append({"subject_kind": kind, "subject": subject, "pos": pos, "end_us": epoch_us(end)})
        for pos, gave in zip(h.extension_positions, h.extension_gave_end, strict=True):
            extensions.append({"subject_kind": kind, "subject": subject, "pos": pos, "gave_end": gave})
    return {
        "subjects": pa.Table.from_pylist(subjects, schema=SUBJECT_SCHEMA),
        "versions": pa.Table.from_pylist(versions, schema=VERSION_SCHEMA),
        "ends_in_force": pa.Table.from_pylist(ends, schema=END_SCHEMA),
        "extensions": pa.Table.from_pylist(extensions, schema=EXTENSION_SCHEMA),
        "subject_labels": pa.Table.from_pylist(labels, schema=LABELS_SCHEMA),
    }


def register_subjects(con: duckdb.DuckDBPyConnection, life: Lifecycles) -> None:
    """The `subjects`, `versions`, `ends_in_force`, `extensions` (maintenances' only for the last three) and
    `subject_labels` (labels as JSON text) tables, read in place as `register`'s."""
    for name, table in _subject_tables(life).items():
        con.register(name, table)  # our fixed names
