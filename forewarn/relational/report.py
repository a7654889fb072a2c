"""The audit's cases from the evaluation's tables: counted by rule, month, customer and subject in GROUP BYs,
listed one by one only where a format needs it (JUnit), and what the HTML report names.

Python objects are made only for the findings and their cases (a few per finding), the cases JUnit lists,
and the events the findings' evidence names (read back from the log by id, a few per finding). The shapes
are forewarn.audit.formats.stats'.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from forewarn.audit.findings import Finding
from forewarn.audit.formats.evidence import entry
from forewarn.audit.formats.stats import (
    MAX_TABLE_ROWS,
    MAX_TIMELINES,
    Case,
    Details,
    Group,
    Judged,
    Leads,
    Sent,
    customer_key,
    group_status,
    timeline_key,
)
from forewarn.events import Event
from forewarn.instants import epoch_us
from forewarn.policy.model import Policy, Rule
from forewarn.relational.checks import applicable, applies_sql
from forewarn.relational.conditions import condition_sql
from forewarn.relational.evaluation import Relational
from forewarn.relational.lifecycle import LIFECYCLE
from forewarn.relational.obligations import scope_sql
from forewarn.relational.tables import run
from forewarn.relational.violations import _at, instant

Month = tuple[int, int]
Dim = Counter[tuple[Any, str]]
"""Cases by (rule | month | customer | subject, status)."""
EventSource = Callable[[Collection[str]], dict[str, Event]]
"""The log's events of the given ids (those it holds)."""

YM = "year(make_timestamp({t})) * 100 + month(make_timestamp({t}))"
"""The UTC month of an instant (epoch microseconds) as yyyymm."""


def _month(ym: int) -> Month:
    return (ym // 100, ym % 100)


def _month_of(t: datetime) -> Month:
    return (t.year, t.month)


@dataclass
class Counted:
    """The audit's cases: by (kind, rule, status), by each dimension, those with findings; with `detail`, also
    every case one by one ("junit"), the business-day leads and what the HTML report names ("html")."""

    cases: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    dims: tuple[Dim, Dim, Dim, Dim] = field(default_factory=lambda: (Counter(), Counter(), Counter(), Counter()))
    flagged: list[Case] = field(default_factory=list)
    listed: list[Case] | None = None
    timed: list[Leads] | None = None
    details: Details | None = None

    def add(
        self, kind: str, rule: str, month: Month, customer: str, about: str | None, status: str, n: int = 1
    ) -> None:
        self.cases[(kind, rule, status)] += n
        by_rule, by_month, by_customer, by_about = self.dims
        by_rule[(rule, status)] += n
        by_month[(month, status)] += n
        by_customer[(customer, status)] += n
        if about is not None:
            by_about[(about, status)] += n


def _judged(row: tuple[Any, ...]) -> Judged:
    kind, days, minutes, anchor, tz, country, sub, opened, nb, na, problem, sent = row
    return Judged(
        kind, days, minutes, _at(anchor), tz, country, sub, _at(opened), _at(nb), _at(na), instant(sent), problem
    )


OBLIGATION_ROWS = """
SELECT o.oid, o.rule, o.subject, o.customer,
       o.kinds[1], o.na_days, o.na_minutes, o.na_base_us, o.timezone, o.country, o.subdivision,
       o.opened_us, o.nb_us, o.na_us, r.problem, c.at_us, r.status
FROM obligations o JOIN outcomes r USING (oid)
LEFT JOIN comms c ON c.pos = r.comm_pos[-1]  -- the late or early one, or the last fulfilling one
WHERE {where} {status}
ORDER BY o.oid
"""


def count(
    rel: Relational,
    findings: list[Finding],
    period: tuple[str, dict[str, object]],
    since: datetime | None,
    until: datetime | None,
    detail: Collection[str],
    events: EventSource | None,
) -> Counted:
    """Every case of the period (obligations, checks per communication or reply and rule, alarms), counted;
    each finding in exactly one case (a violated obligation claims one of its key, in order)."""
    policy, con = rel.policy, rel.con
    where, params = period
    out = Counted()
    alarms = {r.id: r.spec.alarm.problem for r in policy.rules if r.spec.alarm is not None}
    by_key: dict[tuple[str, str, str, datetime], list[Finding]] = {}
    overruns: list[Finding] = []
    for f in findings:
        if alarms.get(f.rule) == f.problem:
            overruns.append(f)
        else:
            by_key.setdefault((f.rule, f.subject, f.customer, f.due), []).append(f)

    # obligations: counted in SQL, or as JUnit lists them; the violated ones (as many as their findings) claim
    # their findings here
    listed = None
    if "junit" in detail:
        listed = run(con, OBLIGATION_ROWS.format(where=where, status=""), params).fetchall()
        for _oid, rule, subject, customer, *rest in listed:
            out.add("obligation", rule, _month_of(_at(rest[9])), customer, subject, rest[-1])  # due: not after
        violated_rows = [row for row in listed if row[-1] == "violated"]
    else:
        _count_obligations(rel, where, params, out)
        violated_rows = run(
            con, OBLIGATION_ROWS.format(where=where, status="AND r.status = 'violated'"), params
        ).fetchall()
    violated: dict[int, Case] = {}
    for oid, rule, subject, customer, *rest in violated_rows:
        ob = _judged(tuple(rest[:-1]))
        waiting = by_key.get((rule, subject, customer, ob.not_after))
        found = (waiting.pop(0),) if waiting else ()
        status = group_status(found) if found else "violated"
        case = Case(rule, "obligation", subject, customer, ob.not_after, status, subject, found, ob)
        violated[oid] = case
        out.flagged.append(case)
        if status != "violated":  # counted as violated above
            month = _month_of(ob.not_after)
            out.add("obligation", rule, month, customer, subject, "violated", -1)
            out.add("obligation", rule, month, customer, subject, status)

    # checks with findings: a communication's or a reply's, per rule
    by_subject: dict[tuple[str, str], list[Finding]] = {}
    for found in by_key.values():
        for f in found:
            by_subject.setdefault((f.rule, f.subject), []).append(f)
    about, first_pos = _abouts(rel, {s for _r, s in by_subject})
    checks: list[tuple[int, Case]] = []  # (position of its communication or reply, case)
    leftover = list(overruns)
    for (rid, subject), found in by_subject.items():
        if subject not in about:
            leftover.extend(found)
            continue
        f = found[0]
        case = Case(rid, "check", subject, f.customer, f.due, group_status(found), about[subject], tuple(found))
        checks.append((first_pos[subject], case))
    # alarms, and findings no obligation or check case claimed
    groups: dict[tuple[str, str, str, datetime], list[Finding]] = {}
    for f in leftover:
        groups.setdefault((f.rule, f.subject, f.customer, f.due), []).append(f)
    rest: list[Case] = []
    for (rule_id, subject, customer, due), found in groups.items():
        rule = policy.by_id.get(rule_id)
        kind = "alarm" if rule is not None and rule.spec.alarm is not None else "check"
        rest.append(
            Case(
                rule_id,
                kind,
                subject,
                customer,
                due,
                group_status(found),
                subject if kind == "alarm" else None,
                tuple(found),
            )
        )
    for case in [*(c for _p, c in checks), *rest]:
        out.flagged.append(case)
        out.add(case.kind, case.rule, _month_of(case.due), case.customer, case.about, case.status)

    # checks without findings: counted per rule in SQL (listed too for JUnit)
    flagged_pairs = {(c.rule, c.subject) for _p, c in checks}
    listed_checks = _checks(rel, flagged_pairs, since, until, out, "junit" in detail)
    if "junit" in detail:
        by_rule: dict[str, list[tuple[int, Case]]] = defaultdict(list)
        for pos, case in [*listed_checks, *checks]:
            by_rule[case.rule].append((pos, case))
        out.listed = [
            *_obligation_cases(listed or [], violated),
            *(case for rule in by_rule.values() for _p, case in sorted(rule, key=lambda pc: pc[0])),
            *rest,
        ]
    if "html" in detail:
        out.timed = _timed(rel, where, params)
        out.details = _details(rel, findings, out, where, params, events)
    return out


def _count_obligations(rel: Relational, where: str, params: dict[str, object], out: Counted) -> None:
    """Obligations of the period by (rule | month | customer | subject, status), in one grouping query."""
    ym = YM.format(t="o.na_us")
    rows = run(
        rel.con,
        f"""
        SELECT grouping(o.rule), grouping(ym), grouping(o.customer), o.rule, ym, o.customer, o.subject, r.status,
               count(*)
        FROM (SELECT *, {ym} AS ym FROM obligations o) o JOIN outcomes r USING (oid)
        WHERE {where}
        GROUP BY GROUPING SETS ((o.rule, r.status), (ym, r.status), (o.customer, r.status), (o.subject, r.status))
        """,
        params,
    ).fetchall()
    by_rule, by_month, by_customer, by_about = out.dims
    for g_rule, g_month, g_customer, rule, month, customer, subject, status, n in rows:
        if not g_rule:
            by_rule[(rule, status)] += n
            out.cases[("obligation", rule, status)] += n
        elif not g_month:
            by_month[(_month(month), status)] += n
        elif not g_customer:
            by_customer[(customer, status)] += n
        else:
            by_about[(subject, status)] += n


def _abouts(rel: Relational, ids: set[str]) -> tuple[dict[str, str | None], dict[str, int]]:
    """Of `ids`, those that are a communication's or a reply's: the subject it is about (a reply's: its
    original communication's), and where it first is in the log."""
    if not ids:
        return {}, {}
    rows = run(
        rel.con,
        """
        WITH wanted AS (SELECT unnest($ids::VARCHAR[]) AS id),
        cm AS (SELECT communication, arg_max(subject, pos) AS subject, min(pos) AS first FROM comms
               WHERE communication IN (SELECT id FROM wanted) GROUP BY communication),
        rp AS (SELECT reply, arg_max(in_reply_to, pos) AS in_reply_to, min(pos) AS first FROM replies
               WHERE reply IN (SELECT id FROM wanted) GROUP BY reply),
        origin AS (SELECT communication, arg_max(subject, pos) AS subject FROM comms
                   WHERE communication IN (SELECT in_reply_to FROM rp) GROUP BY communication)
        SELECT 0, communication, subject, first FROM cm
        UNION ALL
        SELECT 1, rp.reply, o.subject, rp.first FROM rp LEFT JOIN origin o ON o.communication = rp.in_reply_to
        """,
        {"ids": sorted(ids)},
    ).fetchall()
    about: dict[str, str | None] = {}
    first: dict[str, int] = {}
    for is_reply, i, subject, pos in sorted(rows):  # a communication's id before a reply's
        if i not in about:
            about[i] = subject
            first[i] = pos + (1 << 62 if is_reply else 0)  # JUnit lists a rule's reply cases after its others
    return about, first


def _checks(
    rel: Relational,
    skip: set[tuple[str, str]],
    since: datetime | None,
    until: datetime | None,
    out: Counted,
    detail: bool,
) -> list[tuple[int, Case]]:
    """Count the communication and reply check cases of the period without findings (`skip`: those with), per
    rule, by month, customer and subject; with `detail`, list them too (position, case)."""
    policy, con = rel.policy, rel.con
    flagged = pa.table(
        {"rule": pa.array([r for r, _s in skip], pa.string()), "subject": pa.array([s for _r, s in skip], pa.string())}
    )
    con.register("flagged", flagged)
    found = rel.present()
    listed: list[tuple[int, Case]] = []
    try:
        for rule in policy.rules:
            for judged, params in _check_queries(rel, rule, since, until, found):
                if not detail:
                    _count_judged(con, rule.id, judged, params, out)
                    continue
                rows = run(
                    con, f"SELECT pos, id, customer, subject, due_us, is_pending FROM ({judged}) ORDER BY pos", params
                ).fetchall()
                for pos, i, customer, subject, due, pending in rows:  # listed: counted as they are
                    status = "pending" if pending else "met"
                    listed.append((pos, Case(rule.id, "check", i, customer, _at(due), status, subject)))
                    out.add("check", rule.id, _month_of(_at(due)), customer, subject, status)
    finally:
        con.unregister("flagged")
    return listed


def _count_judged(con: Any, rule_id: str, judged: str, params: dict[str, object], out: Counted) -> None:
    rows = run(
        con,
        f"""
        SELECT grouping(ym), grouping(customer), grouping(subject), ym, customer, subject, is_pending, count(*)
        FROM (SELECT *, {YM.format(t="due_us")} AS ym FROM ({judged}))
        GROUP BY GROUPING SETS ((is_pending), (ym, is_pending), (customer, is_pending), (subject, is_pending))
        """,
        params,
    ).fetchall()
    by_rule, by_month, by_customer, by_about = out.dims
    for g_month, g_customer, g_subject, month, customer, subject, pending, n in rows:
        status = "pending" if pending else "met"
        if g_month and g_customer and g_subject:
            by_rule[(rule_id, status)] += n
            out.cases[("check", rule_id, status)] += n
        elif not g_month:
            by_month[(_month(month), status)] += n
        elif not g_customer:
            by_customer[(customer, status)] += n
        elif subject is not None:
            by_about[(subject, status)] += n


def _period_sql(since: datetime | None, until: datetime | None, column: str, params: dict[str, object]) -> str:
    parts = ["TRUE"]
    if since is not None:
        params["since_us"] = epoch_us(since)
        parts.append(f"{column} >= $since_us")
    if until is not None:
        params["until_us"] = epoch_us(until)
        parts.append(f"{column} < $until_us")
    return " AND ".join(parts)


PENDING_TICKET = """($minutes > 0 AND a.at_us + $minutes::BIGINT * 60000000 > $as_of_us
                   AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.communication = a.communication))"""
"""A communication whose ticket may still be opened in time (not yet, and its deadline is after as-of)."""


def _check_queries(
    rel: Relational,
    rule: Rule,
    since: datetime | None,
    until: datetime | None,
    present: tuple[list[str], bool] | None = None,
) -> Iterator[tuple[str, dict[str, object]]]:
    """A rule's check cases of the period without findings, as queries of (pos, id, customer, subject, due_us,
    is_pending): its communication checks', then its reply checks'. `present`: the kinds of the communications
    in scope and whether a reply was received (checks.present); a query whose checks apply to none is left out."""
    policy = rel.policy
    kinds, replied = present if present is not None else (None, True)
    comm_checks = [c for c in rule.spec.checks if not c.replies]
    if comm_checks and (kinds is None or any(applicable(c, kinds) for c in comm_checks)):
        minutes = 0
        parts = []
        params: dict[str, object] = {}
        for n, check in enumerate(comm_checks):
            for req, args in check.requirements():
                if req == "ticket-opened":
                    minutes = int(rule.resolve_int(args["within_minutes"]) or 0)  # type: ignore[arg-type]
            parts.append(applies_sql(rule, check, params, n))
        params["minutes"] = minutes
        period = _period_sql(since, until, "a.at_us + $minutes::BIGINT * 60000000", params)
        params["rule_id"] = rule.id
        ticketed = any(req == "ticket-opened" for c in comm_checks for req, _ in c.requirements())
        pending = PENDING_TICKET if ticketed else "FALSE"  # only a ticket still to open keeps a check pending
        if ticketed:
            params["as_of_us"] = epoch_us(rel.as_of)
        yield (
            f"""
            WITH a AS (SELECT DISTINCT pos, communication, customer, subject, at_us FROM ({" UNION ALL ".join(parts)}))
            SELECT a.pos, a.communication AS id, a.customer, a.subject,
                   a.at_us + $minutes::BIGINT * 60000000 AS due_us, {pending} AS is_pending
            FROM a ANTI JOIN flagged f ON f.rule = $rule_id AND f.subject = a.communication
            WHERE {period}
            """,
            params,
        )
    if replied and any(c.replies for c in rule.spec.checks):
        params = {}
        scope = scope_sql(policy.scope_condition, params)
        terms = " OR ".join(
            f"({condition_sql(rule.check_condition(c), params, f'r{n}', 'customer')})"
            for n, c in enumerate(rule.spec.checks)
            if c.replies
        )
        period = _period_sql(since, until, "r.at_us", params)
        params["rule_id"] = rule.id
        yield (
            f"""
            SELECT r.pos + (1::BIGINT << 62) AS pos, r.reply AS id, r.customer, o.subject, r.at_us AS due_us,
                   FALSE AS is_pending
            FROM replies r
            JOIN customer_versions cv
              ON cv.customer = r.customer AND cv.pos <= r.pos AND (cv.pos_to IS NULL OR r.pos < cv.pos_to)
            JOIN (SELECT communication, arg_max(subject, pos) AS subject FROM comms GROUP BY communication) o
              ON o.communication = r.in_reply_to
            WHERE {scope} AND ({terms}) AND {period}
              AND NOT EXISTS (SELECT 1 FROM flagged f WHERE f.rule = $rule_id AND f.subject = r.reply)
            """,
            params,
        )


def _obligation_cases(rows: list[tuple[Any, ...]], violated: dict[int, Case]) -> list[Case]:
    """Every obligation of the period (OBLIGATION_ROWS) as a case, in derivation order (the violated ones with
    their findings)."""
    out = []
    for oid, rule, subject, customer, *rest in rows:
        case = violated.get(oid)
        if case is None:
            ob = _judged(tuple(rest[:-1]))
            case = Case(rule, "obligation", subject, customer, ob.not_after, rest[-1], subject, (), ob)
        out.append(case)
    return out


def _business_rules(policy: Policy) -> dict[str, int]:
    """Rules whose deadline is N business days before its anchor: N."""
    out = {}
    for rule in policy.rules:
        spec = rule.spec.obligation
        if spec is not None:
            unit, amount = rule.anchor_offset(spec.window.not_after)
            if unit == "business_days":
                out[rule.id] = -amount
    return out


def _timed(rel: Relational, where: str, params: dict[str, object]) -> list[Leads]:
    """The judged obligations of business-day rules, as columns per rule and calendar: how far ahead of the
    anchor each was sent."""
    days = _business_rules(rel.policy)
    table = rel.con.sql(  # as a relation: Arrow from an executed statement would copy the rows once more
        f"""
        SELECT o.rule, o.timezone, o.country, o.subdivision,
               list(r.status = 'met' ORDER BY o.oid) AS met,
               list(c.at_us IS NOT NULL AND r.problem IS DISTINCT FROM 'missing' ORDER BY o.oid) AS sent,
               list(coalesce(c.at_us, 0) ORDER BY o.oid) AS sent_us, list(o.na_base_us ORDER BY o.oid) AS anchor_us
        FROM obligations o JOIN outcomes r USING (oid) LEFT JOIN comms c ON c.pos = r.comm_pos[-1]
        WHERE {where} AND r.status <> 'pending' AND o.rule IN (SELECT unnest($business_rules::VARCHAR[]))
        GROUP BY ALL ORDER BY min(o.oid)
        """,
        params={**params, "business_rules": sorted(days)},
    ).to_arrow_table()
    out = []
    for i in range(table.num_rows):
        rule, tz, country, subdivision = (table.column(k)[i].as_py() for k in range(4))
        column = {name: table.column(name)[i].values for name in ("met", "sent", "sent_us", "anchor_us")}
        out.append(
            Leads(
                rule,
                days[rule],
                tz,
                country,
                subdivision,
                column["met"].to_numpy(zero_copy_only=False),
                column["sent"].to_numpy(zero_copy_only=False),
                column["sent_us"].to_numpy(),
                column["anchor_us"].to_numpy(),
            )
        )
    return out


def _details(
    rel: Relational,
    findings: list[Finding],
    counted: Counted,
    where: str,
    params: dict[str, object],
    events: EventSource | None,
) -> Details:
    """The customers, maintenances and events the HTML report names."""
    con = rel.con
    by_customer = counted.dims[2]
    customers: dict[str, Group] = {}
    for (cid, status), n in by_customer.items():
        customers.setdefault(cid, Group(cid)).tally.add(status, n)
    shown = [g.key for g in sorted(customers.values(), key=customer_key)[:MAX_TABLE_ROWS]]
    wanted_tz = sorted({c.customer for c in counted.flagged} | set(shown))
    latest = run(
        con,
        """
        SELECT customer, arg_max(timezone, pos), arg_max(id, pos) FROM customer_versions
        WHERE customer IN (SELECT unnest($ids::VARCHAR[])) GROUP BY customer
        """,
        {"ids": wanted_tz},
    ).fetchall()
    timezones = {cid: tz for cid, tz, _id in latest}
    shown_ids = set(shown)
    version_of = {cid: i for cid, _tz, i in latest if cid in shown_ids}

    subjects = {key for key, _status in counted.dims[3]}
    violated_by: Counter[str] = Counter(
        {key: n for (key, status), n in counted.dims[3].items() if status == "violated"}
    )
    maintenances = [
        (mid, h)
        for (kind, mid), h in rel.life.histories.items()
        if kind == "maintenance" and mid in subjects and h.versions
    ]
    top = sorted(
        maintenances,
        key=lambda m: timeline_key(m[0], m[1], _violated_group(m[0], violated_by[m[0]])),
    )[:MAX_TIMELINES]
    top_ids = sorted(mid for mid, _h in top)
    comms: dict[str, list[Sent]] = defaultdict(list)
    for subject, communication, kind, customer, at in run(
        con,
        """
        SELECT subject, communication, kind, customer, at_us FROM comms
        WHERE subject_kind = 'maintenance' AND subject IN (SELECT unnest($ids::VARCHAR[])) ORDER BY pos
        """,
        {"ids": top_ids},
    ).fetchall():
        comms[subject].append(Sent(communication, kind, customer, _at(at)))
    bands: dict[str, list[tuple[str, datetime, datetime]]] = defaultdict(list)
    for subject, kind, lo, hi in run(
        con,
        f"""
        SELECT o.subject, o.kinds[1], min(o.na_us), max(o.na_us) FROM obligations o JOIN outcomes r USING (oid)
        WHERE o.subject_kind = 'maintenance' AND o.subject IN (SELECT unnest($top_ids::VARCHAR[])) AND {where}
        GROUP BY ALL ORDER BY min(o.oid)
        """,
        {**params, "top_ids": top_ids},
    ).fetchall():
        bands[subject].append((kind, _at(lo), _at(hi)))

    wanted = {e for f in findings for e in f.evidence} | set(version_of.values())
    found = _events(rel, wanted, events)
    names: dict[str, tuple[str, str, str | None]] = {}
    for cid, i in version_of.items():
        if i in found:
            v = found[i][1]
            names[cid] = (v.name, v.timezone, v.country)  # type: ignore[union-attr]
    return Details(timezones, names, maintenances, dict(comms), dict(bands), _event_book(rel, findings, found))


def _violated_group(key: str, violated: int) -> Group:
    g = Group(key)
    g.tally.violated = violated
    return g


def _events(rel: Relational, ids: set[str], events: EventSource | None) -> dict[str, tuple[int, Event]]:
    """The events of `ids` in the evaluated log, with their positions."""
    if not ids:
        return {}
    positions = dict(
        run(
            rel.con, "SELECT id, pos FROM ev WHERE id IN (SELECT unnest($ids::VARCHAR[]))", {"ids": sorted(ids)}
        ).fetchall()
    )
    got = events(list(positions)) if events is not None else {}
    return {i: (positions[i], e) for i, e in got.items() if i in positions}  # type: ignore[misc]


def _event_book(rel: Relational, findings: list[Finding], found: dict[str, Any]) -> dict[str, list[str]]:
    """id -> [type, at, summary] for every event the findings' evidence names.

    In the order a reader meets them: for each finding, its subject's lifecycle events, its customer's
    versions, then its communication, that communication's subject's lifecycle events and its tickets; then
    replies and waivers; then anything else, in the log's order."""
    lifecycle = set(LIFECYCLE)
    by_subject: dict[str, list[tuple[int, Event]]] = defaultdict(list)
    by_customer: dict[str, list[tuple[int, Event]]] = defaultdict(list)
    by_comm: dict[str, tuple[int, Event]] = {}
    tickets: dict[str, list[tuple[int, Event]]] = defaultdict(list)
    extra: list[tuple[int, Event]] = []
    for pos, e in sorted(found.values(), key=lambda pe: pe[0]):
        if e.type in lifecycle:
            by_subject[getattr(e, e.type.split(".", 1)[0])].append((pos, e))
        elif e.type == "customer.upserted":
            by_customer[e.customer].append((pos, e))  # type: ignore[union-attr]
        elif e.type == "communication.sent":
            by_comm[e.communication] = (pos, e)  # type: ignore[union-attr]
        elif e.type == "ticket.opened":
            tickets[e.communication].append((pos, e))  # type: ignore[union-attr]
        elif e.type in ("reply.received", "waiver.granted"):
            extra.append((pos, e))
    comm_ids = sorted({i for f in findings for i in (f.subject, f.communication) if i})
    comm_subject = dict(
        run(
            rel.con,
            "SELECT communication, arg_max(subject, pos) FROM comms WHERE communication IN"
            " (SELECT unnest($ids::VARCHAR[])) GROUP BY communication",
            {"ids": comm_ids},
        ).fetchall()
    )

    def near(f: Finding) -> Iterator[Event]:
        yield from (e for _p, e in by_subject.get(f.subject, ()))
        yield from (e for _p, e in by_customer.get(f.customer, ()))
        for cid in {f.subject, f.communication}:
            if cid and cid in comm_subject:
                if cid in by_comm:
                    yield by_comm[cid][1]
                about = comm_subject[cid]
                yield from (e for _p, e in by_subject.get(about, ())) if about else ()
                yield from (e for _p, e in tickets.get(cid, ()))

    out: dict[str, list[str]] = {}
    todo: set[str] = set()
    for f in findings:
        wanted = {e for e in f.evidence if e not in out}
        if not wanted:
            continue
        for event in near(f):
            if event.id in wanted:
                out[event.id] = entry(event)
        todo.update(e for e in wanted if e not in out)
    for _pos, event in extra:
        if event.id in todo:
            out[event.id] = entry(event)
    todo.difference_update(out)
    for _pos, event in sorted(found.values(), key=lambda pe: pe[0]):
        if event.id in todo:
            out[event.id] = entry(event)
    return out


def store_events(path: str, seq: int | None) -> EventSource:
    """The events of given ids from the SQLite log at `path` (up to recording sequence `seq`), by its id index."""

    def read(ids: Collection[str]) -> dict[str, Event]:
        from forewarn.events import EVENT_ADAPTER
        from forewarn.log.access import open_reader

        store = open_reader(path)
        try:
            payloads = store.stored_payloads(list(ids), (1 << 63) - 1 if seq is None else seq)
        finally:
            store.close()
        return {i: EVENT_ADAPTER.validate_json(p) for i, p in payloads.items()}  # type: ignore[misc]

    return read


def list_events(events: Iterable[Event]) -> EventSource:
    """The events of given ids among `events`."""

    def read(ids: Collection[str]) -> dict[str, Event]:
        wanted = set(ids)
        return {e.id: e for e in events if e.id in wanted}

    return read
