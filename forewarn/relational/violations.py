"""Python objects only for what is reported: the violations of obligations, alarms and checks.

Each is a forewarn.lifecycle.model.Violation with the message placeholders and evidence of policy.md,
built from the few rows the queries return (met obligations and passing checks never leave DuckDB).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta

import duckdb

from forewarn.calendar import format_local
from forewarn.lifecycle.model import Obligation, Violation
from forewarn.policy.model import Policy
from forewarn.relational import checks
from forewarn.relational.obligations import alarm_query
from forewarn.relational.tables import run

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def instant(us: int | None) -> datetime | None:
    return None if us is None else _EPOCH + timedelta(microseconds=us)


def _at(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _fmt(us: int | None) -> str:
    return _at(us).strftime("%Y-%m-%dT%H:%M:%SZ") if us is not None else "nothing"


def deadline_text(days: int, minutes: int, anchor: datetime, tz: str) -> str:
    """How a deadline was computed, in the customer's local time: `days` business days before `anchor`, or
    `minutes` after it (before it if negative)."""
    local = format_local(anchor, tz)
    if days:
        return f"{days} business day{'s' if days != 1 else ''} before {local}"
    if minutes > 0:
        return f"{minutes} min after {local}"
    if minutes < 0:
        return f"{-minutes} min before {local}"
    return f"by {local}"


def obligation_deadline_text(ob: Obligation) -> str:
    """deadline_text of an obligation (its deadline's offset from its anchor)."""
    unit, amount = ob.offset
    days = -amount if unit == "business_days" else 0
    return deadline_text(days, 0 if days else amount, ob.anchor_at, ob.timezone)


def humanize(delta: timedelta) -> str:
    """A duration as a reviewer reads it: 8h12m, 2d3h, 45m, 30s."""
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    minutes, _ = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
    return f"{minutes}m"


VIOLATED_OBLIGATIONS = """
SELECT o.oid, o.rule, o.subject, o.customer, o.kinds[1] AS kind, o.need, o.timezone,
       o.na_days, o.na_minutes, o.na_base_us, o.nb_us, o.na_us, o.opened_us,
       o.defined_event, o.event_id, o.attrs_id, r.problem, c.communication, c.at_us AS sent_us, c.id AS comm_event,
       {count_found} AS count_found
FROM outcomes r JOIN obligations o USING (oid)
LEFT JOIN comms c ON c.pos = r.comm_pos[1]
WHERE r.status = 'violated'
ORDER BY o.subject_rank, o.oid
"""
COUNT_FOUND = """CASE WHEN o.need > 1 THEN (
           SELECT count(*) FROM comms w
           WHERE w.subject_kind = o.subject_kind AND w.subject = o.subject AND w.customer = o.customer
             AND list_contains(o.kinds, w.kind) AND w.at_us >= o.opened_us AND w.at_us >= o.nb_us
             AND w.at_us <= o.na_us) END"""
"""How many fitting communications an obligation counting several (`need` > 1) found in its window."""


def obligation_violations(con: duckdb.DuckDBPyConnection, counting: bool = True) -> list[Violation]:
    """The violated obligations' violations; `counting`: some obligation counts several communications (else
    none has a count found to report)."""
    out = []
    cur = run(con, VIOLATED_OBLIGATIONS.format(count_found=COUNT_FOUND if counting else "NULL::BIGINT"))
    names = [d[0] for d in cur.description]
    for values in cur.fetchall():
        r = dict(zip(names, values, strict=True))
        tz = r["timezone"]
        fields = {
            "subject": r["subject"],
            "customer": r["customer"],
            "kind": r["kind"].replace("_", " "),
            "deadline": deadline_text(r["na_days"], r["na_minutes"], _at(r["na_base_us"]), tz),
            "due": format_local(_at(r["na_us"]), tz),
            "communication": r["communication"] or "",
        }
        if r["sent_us"] is not None:
            fields["sent"] = format_local(_at(r["sent_us"]), tz)
            if r["problem"] == "late":
                fields["lateness"] = humanize(_at(r["sent_us"]) - _at(r["na_us"]))
            elif r["problem"] == "early":
                fields["earliness"] = humanize(_at(r["nb_us"]) - _at(r["sent_us"]))
        if r["need"] > 1:
            fields["count_found"] = str(min(r["count_found"], r["need"] - 1))
        shared = tuple(dict.fromkeys((r["defined_event"], r["event_id"])))
        evidence = (*shared, r["attrs_id"]) if r["attrs_id"] not in shared else shared
        if r["comm_event"] is not None:
            evidence = tuple(dict.fromkeys((*evidence, r["comm_event"])))
        out.append(
            Violation(
                rule=r["rule"],
                problem=r["problem"] or "missing",
                subject=r["subject"],
                customer=r["customer"],
                communication=r["communication"],
                due=_at(r["na_us"]),
                sent=instant(r["sent_us"]),
                fields=fields,
                evidence=evidence,
            )
        )
    return out


def alarm_violations(con: duckdb.DuckDBPyConnection, policy: Policy, fired: Collection[str]) -> list[Violation]:
    """An alarm (a maintenance overrun) as one violation per affected customer, subject by subject. `fired`: the
    alarm rules `triggers` holds timers of (the others have none to report)."""
    rows: list[tuple] = []
    for rule in policy.rules:
        if rule.spec.alarm is None or rule.id not in fired:
            continue
        for values in run(con, *alarm_query(rule, policy.scope_condition)).fetchall():
            rows.append((rule, *values))
    rows.sort(key=lambda r: r[1])  # trigger order: subject by subject, as the lifecycle fired them
    out = []
    for rule, _tid, subject, customer, tz, due_us, end_us, defined_event, event_id in rows:
        out.append(
            Violation(
                rule=rule.id,
                problem=rule.spec.alarm.problem,  # type: ignore[union-attr]
                subject=subject,
                customer=customer,
                communication=None,
                due=_at(due_us),
                sent=None,
                fields={
                    "subject": subject,
                    "customer": customer,
                    "end_in_force": format_local(_at(end_us), tz) if end_us is not None else "?",
                    "due": format_local(_at(due_us), tz),
                },
                evidence=tuple(dict.fromkeys((defined_event, event_id))),
            )
        )
    return out


COMM_OF = "SELECT pos, id, communication, customer, kind, subject, at_us, from_addr FROM comms WHERE pos IN ({marks})"


def check_violations(
    con: duckdb.DuckDBPyConnection, policy: Policy, as_of_us: int, present: tuple[list[str], bool] | None = None
) -> list[Violation]:
    """The failing communications' and replies' violations; `present` as checks.failing's."""
    rows = checks.failing(con, policy, as_of_us, present)
    comm_rows = [r for r in rows if r["requirement"] != "reply-includes-origin"]
    comms: dict[int, tuple] = {}
    if comm_rows:
        positions = sorted({int(r["pos"]) for r in comm_rows})  # type: ignore[arg-type]
        for values in run(
            con,
            "SELECT c.pos, c.id, c.communication, c.customer, c.kind, c.subject, c.at_us, c.from_addr, s.defined_event"
            " FROM comms c LEFT JOIN subjects s ON s.subject_kind = c.subject_kind AND s.subject = c.subject"
            " WHERE c.pos IN (SELECT unnest($p::BIGINT[]))",
            {"p": positions},
        ).fetchall():
            comms[values[0]] = values
    minutes = {
        r.id: int(r.resolve_int(args["within_minutes"]) or 0)
        for r in policy.rules
        for c in r.spec.checks
        for req, args in c.requirements()
        if req == "ticket-opened"
    }
    out = []
    for r in rows:
        req = r["requirement"]
        if req == "reply-includes-origin":
            out.append(
                Violation(
                    rule=r["rule"],  # type: ignore[arg-type]
                    problem="origin-missing",
                    subject=r["reply"],  # type: ignore[arg-type]
                    customer=r["customer"],  # type: ignore[arg-type]
                    communication=r["origin"],  # type: ignore[arg-type]
                    due=_at(r["due_us"]),  # type: ignore[arg-type]
                    sent=None,
                    fields={
                        "subject": r["reply"],
                        "customer": r["customer"],
                        "communication": r["origin"],
                        "expected": r["expected_text"],
                    },  # type: ignore[dict-item]
                    evidence=(r["extra_event"], r["reply_event"]),  # type: ignore[arg-type]
                )
            )
            continue
        _pos, event_id, communication, customer, kind, subject, at_us, from_addr, defined_event = comms[r["pos"]]
        fields = {
            "communication": communication,
            "customer": customer,
            "kind": kind.replace("_", " "),
            "subject": subject if subject is not None else communication,
        }
        base = [defined_event] if defined_event is not None else []
        if req == "states-window":
            evidence = tuple(dict.fromkeys([*base, event_id, *([r["extra_event"]] if r["extra_event"] else [])]))
            if r["problem"] == "window-mismatch":
                fields["stated"] = f"{_fmt(r['stated_a'])} to {_fmt(r['stated_b'])}"
                fields["expected"] = f"{_fmt(r['expected_a'])} to {_fmt(r['expected_b'])}"
        elif req == "states-end-in-force":
            evidence = tuple(dict.fromkeys([*base, event_id]))
            fields["stated"] = _fmt(r["stated_a"])
            fields["expected"] = _fmt(r["expected_a"])
        elif req == "sent-after-closed":
            evidence = tuple(dict.fromkeys([*base, event_id]))
            fields["sent"] = _fmt(at_us)
        elif req == "sender":
            evidence = (event_id,)
            fields["stated"] = from_addr
            fields["expected"] = r["expected_text"]
        elif req == "ticket-opened":
            m = minutes[r["rule"]]
            fields_deadline = f"{m} min after it was sent"
            if r["problem"] == "late":
                fields["lateness"] = humanize(_at(r["ticket_us"]) - _at(r["due_us"]))
                evidence = (event_id, r["extra_event"])
            else:
                evidence = (event_id,)
            fields["deadline"] = fields_deadline
        else:
            evidence = tuple(dict.fromkeys([*base, event_id]))
        out.append(
            Violation(
                rule=r["rule"],  # type: ignore[arg-type]
                problem=r["problem"],  # type: ignore[arg-type]
                # a premature closing is the closing-notice rule's finding about the maintenance (policy.md)
                subject=subject if req == "sent-after-closed" else communication,
                customer=customer,
                communication=communication,
                due=_at(r["due_us"]),  # type: ignore[arg-type]
                sent=_at(at_us),
                fields=fields,
                evidence=evidence,  # type: ignore[arg-type]
            )
        )
    return out
