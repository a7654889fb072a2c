"""The audit on the relational evaluation: findings, summary, pending obligations and the case tally.

Findings are the only Python objects per item (forewarn.audit.findings.to_finding applies the waivers);
counts are GROUP BYs over the evaluation's tables. The result has the shape of an AuditResult for the
formats that read only findings, summary and pending obligations (json, csv).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from forewarn.audit.findings import AuditResult, Finding, Summary, to_finding
from forewarn.audit.formats.stats import Group, Report, Tally
from forewarn.events import EVENT_ADAPTER, Event, WaiverGranted
from forewarn.instants import epoch_us, utc
from forewarn.policy.model import Policy
from forewarn.relational.checks import applies_sql, scoped
from forewarn.relational.conditions import condition_sql
from forewarn.relational.evaluation import Relational, evaluate_events, evaluate_store
from forewarn.relational.obligations import scope_sql
from forewarn.relational.violations import _at

CaseCounts = Counter[tuple[str, str, str]]
"""Judged cases by (kind: obligation | check | alarm, rule, status)."""


RELATIONAL_FORMATS = frozenset({"json", "csv", "table", "markdown", "sarif"})
"""Formats rendered from the relational evaluation (the others still read the object evaluation)."""


def relational_for(fmt: str) -> bool:
    """Whether an audit in format `fmt` runs on the relational evaluation: only with
    FOREWARN_EVALUATION=relational while it does not yet serve every format and the engine (a log whose
    first page is damaged is not yet always refused on it: see tests/test_failures.py)."""
    return fmt in RELATIONAL_FORMATS and os.environ.get("FOREWARN_EVALUATION") == "relational"


@dataclass(frozen=True)
class RelationalAuditResult(AuditResult):
    """An AuditResult whose outcomes stay in DuckDB: `outcomes`, `pending` and `evaluation` are empty."""

    pending_rows: tuple[dict[str, object], ...] = ()
    cases: CaseCounts | None = None
    finding_kinds: tuple[tuple[tuple[str, str], str], ...] = ()  # (rule, subject) -> subject kind

    def stats_report(self) -> Report:
        return stats_report(self)

    def subject_kinds(self) -> Callable[[Finding], str]:
        """What a finding's subject is: maintenance, incident, release, communication or reply."""
        kinds = dict(self.finding_kinds)
        return lambda f: kinds[(f.rule, f.subject)]

    @property
    def total(self) -> Tally:
        """Every judged case by status (what stats.build(...).total.tally counts)."""
        tally = Tally()
        for (_kind, _rule, status), n in (self.cases or {}).items():
            tally.add(status, n)
        return tally

    def pending_json(self) -> list[dict[str, object]]:
        return [dict(row) for row in self.pending_rows]


def _period_sql(since: datetime | None, until: datetime | None, column: str, params: dict[str, object]) -> str:
    parts = ["TRUE"]
    if since is not None:
        params["since_us"] = epoch_us(since)
        parts.append(f"{column} >= $since_us")
    if until is not None:
        params["until_us"] = epoch_us(until)
        parts.append(f"{column} < $until_us")
    return " AND ".join(parts)


def _waivers(rel: Relational) -> list[WaiverGranted]:
    rows = rel.con.execute("SELECT payload FROM ev WHERE type = 'waiver.granted' ORDER BY pos").fetchall()
    waivers = [EVENT_ADAPTER.validate_json(p) for (p,) in rows]
    return sorted(waivers, key=lambda w: (w.at, w.waiver))  # type: ignore[union-attr, return-value]


def _in_period(t: datetime, since: datetime | None, until: datetime | None) -> bool:
    return (since is None or t >= since) and (until is None or t < until)


def audit_relational(
    rel: Relational, since: datetime | None = None, until: datetime | None = None
) -> RelationalAuditResult:
    """Judge the evaluated log; the period [since, until) selects findings and obligations by due time."""
    policy, as_of = rel.policy, rel.as_of
    waivers = _waivers(rel)
    findings = sorted(
        (to_finding(v, policy, waivers) for v in rel.violations() if _in_period(v.due, since, until)),
        key=Finding.sort_key,
    )
    params: dict[str, object] = {}
    period = _period_sql(since, until, "o.na_us", params)
    counts = dict(
        rel.con.execute(
            f"SELECT r.status, count(*) FROM obligations o JOIN outcomes r USING (oid) WHERE {period} GROUP BY ALL",
            params,
        ).fetchall()
    )
    waived_keys = {(f.rule, f.subject, f.customer, utc(f.due)) for f in findings if f.status == "waived"}
    violated_rows = rel.con.execute(
        f"SELECT o.rule, o.subject, o.customer, o.na_us FROM obligations o JOIN outcomes r USING (oid)"
        f" WHERE r.status = 'violated' AND {period}",
        params,
    ).fetchall()
    waived = sum(
        (rule, subject, customer, utc(_at(na))) in waived_keys for rule, subject, customer, na in violated_rows
    )
    pending = _pending(rel, period, params)
    summary = Summary(
        obligations=sum(counts.values()),
        met=counts.get("met", 0),
        violated=len(violated_rows) - waived,
        waived=waived,
        pending=len(pending),
        findings=len(findings),
    )
    cases = _cases(rel, findings, violated_rows, waived_keys, (period, params), since, until)
    return RelationalAuditResult(
        as_of,
        since,
        until,
        policy,
        summary,
        findings,
        [],
        [],
        None,  # type: ignore[arg-type]
        pending_rows=tuple(pending),
        cases=cases,
        finding_kinds=tuple(_finding_kinds(rel, findings).items()),
    )


def _finding_kinds(rel: Relational, findings: list[Finding]) -> dict[tuple[str, str], str]:
    """What each finding's subject is: the rule's subject kind if it is one, else a communication or a reply."""
    own = {r.id: spec.subject for r in rel.policy.rules if (spec := r.spec.obligation or r.spec.alarm)}
    ids = sorted({f.subject for f in findings})
    subjects = set(
        rel.con.execute(
            "SELECT subject_kind, subject FROM subjects WHERE list_contains($ids, subject)", {"ids": ids}
        ).fetchall()
    )
    comms = {
        c
        for (c,) in rel.con.execute(
            "SELECT DISTINCT communication FROM comms WHERE list_contains($ids, communication)", {"ids": ids}
        ).fetchall()
    }
    out = {}
    for f in findings:
        mine = own.get(f.rule)
        if mine is not None and (mine, f.subject) in subjects:
            out[(f.rule, f.subject)] = mine
        else:
            out[(f.rule, f.subject)] = "communication" if f.subject in comms else "reply"
    return out


def _pending(rel: Relational, period: str, params: dict[str, object]) -> list[dict[str, object]]:
    """Pending obligations in the shape of cli.md, by deadline, rule, subject, customer."""
    senders = rel.policy._senders  # the `sender` requirement's addresses, if the policy has one
    rows = rel.con.execute(
        f"""
        SELECT o.rule, o.subject, o.customer, o.kinds[1], s.release_related, cv.contacts,
               greatest(o.nb_us, o.opened_us), o.na_us
        FROM obligations o JOIN outcomes r USING (oid)
        JOIN subjects s USING (subject_kind, subject)
        JOIN customer_versions cv ON cv.id = o.attrs_id
        WHERE r.status = 'pending' AND {period}
        ORDER BY o.na_us, o.rule, o.subject, o.customer
        """,
        params,
    ).fetchall()
    return [
        {
            "rule": rule,
            "subject": subject,
            "customer": customer,
            "kind": kind,
            "from": senders.get("releases" if release_related else "support"),
            "to": list(contacts or []),
            "not_before": utc(_at(nb)),
            "not_after": utc(_at(na)),
        }
        for rule, subject, customer, kind, release_related, contacts, nb, na in rows
    ]


def _status(found: list[Finding]) -> str:
    return "waived" if all(f.status == "waived" for f in found) else "violated"


def _cases(
    rel: Relational,
    findings: list[Finding],
    violated_rows: list[tuple[str, str, str, int]],
    waived_keys: set[tuple[str, str, str, str | None]],
    period: tuple[str, dict[str, object]],
    since: datetime | None,
    until: datetime | None,
) -> CaseCounts:
    """Every judged case of the period (forewarn.audit.formats.stats: obligations, checks per communication
    and rule, reply checks, alarms), counted in bulk by kind, rule and status."""
    policy, con = rel.policy, rel.con
    cases: CaseCounts = Counter()
    where, params = period
    for rule, status, n in con.execute(
        f"SELECT o.rule, r.status, count(*) FROM obligations o JOIN outcomes r USING (oid) WHERE {where} GROUP BY ALL",
        params,
    ).fetchall():
        cases[("obligation", rule, status)] += n
    for rule, subject, customer, na in violated_rows:
        if (rule, subject, customer, utc(_at(na))) in waived_keys:
            cases[("obligation", rule, "violated")] -= 1
            cases[("obligation", rule, "waived")] += 1
    alarms = {r.id: r.spec.alarm.problem for r in policy.rules if r.spec.alarm is not None}
    # Each violated obligation claims one finding of its (rule, subject, customer, due); the others are
    # check cases, one per (rule, communication or reply), or alarm (and leftover) cases.
    unclaimed: dict[tuple[str, str, str, datetime], list[Finding]] = {}
    leftover: list[Finding] = []
    for f in findings:
        if alarms.get(f.rule) == f.problem:
            leftover.append(f)
        else:
            unclaimed.setdefault((f.rule, f.subject, f.customer, f.due), []).append(f)
    for rule, subject, customer, na in violated_rows:
        waiting = unclaimed.get((rule, subject, customer, _at(na)))
        if waiting:
            waiting.pop(0)
    groups: dict[tuple[str, str], list[Finding]] = {}
    for found in unclaimed.values():
        for f in found:
            groups.setdefault((f.rule, f.subject), []).append(f)
    known = _communications_or_replies(rel, {subject for _rule, subject in groups})
    for (rule, subject), found in list(groups.items()):
        if subject in known:
            cases[("check", rule, _status(found))] += 1
        else:
            leftover.extend(found)
            del groups[(rule, subject)]
    by_key: dict[tuple[str, str, str, datetime], list[Finding]] = {}
    for f in leftover:
        by_key.setdefault((f.rule, f.subject, f.customer, f.due), []).append(f)
    for (rule_id, _subject, _customer, _due), found in by_key.items():
        rule = policy.by_id.get(rule_id)
        kind = "alarm" if rule is not None and rule.spec.alarm is not None else "check"
        cases[(kind, rule_id, _status(found))] += 1
    for rule_id, met, pending in _check_counts(rel, set(groups), since, until):
        cases[("check", rule_id, "met")] += met
        cases[("check", rule_id, "pending")] += pending
    return cases


def _communications_or_replies(rel: Relational, ids: set[str]) -> set[str]:
    """Those of `ids` that are a communication's or a reply's id."""
    if not ids:
        return set()
    rows = rel.con.execute(
        "SELECT communication FROM comms WHERE list_contains($ids, communication)"
        " UNION SELECT reply FROM replies WHERE list_contains($ids, reply)",
        {"ids": sorted(ids)},
    ).fetchall()
    return {i for (i,) in rows}


def _check_counts(
    rel: Relational, skip: set[tuple[str, str]], since: datetime | None, until: datetime | None
) -> list[tuple[str, int, int]]:
    """(rule, met, pending) communication and reply check cases of the period without findings, per rule."""
    policy, con = rel.policy, rel.con
    flagged = pa.table(
        {"rule": pa.array([r for r, _s in skip], pa.string()), "subject": pa.array([s for _r, s in skip], pa.string())}
    )
    con.register("flagged", flagged)
    scoped(con, policy)
    out: list[tuple[str, int, int]] = []
    for rule in policy.rules:
        met = pending = 0
        comm_checks = [c for c in rule.spec.checks if not c.replies]
        if comm_checks:
            minutes = 0
            parts = []
            params: dict[str, object] = {}
            for n, check in enumerate(comm_checks):
                for req, args in check.requirements():
                    if req == "ticket-opened":
                        minutes = int(rule.resolve_int(args["within_minutes"]) or 0)  # type: ignore[arg-type]
                text = (
                    applies_sql(rule, check, params, n)
                    .replace("$all_kinds", f"$all_kinds{n}")
                    .replace("$kinds", f"$kinds{n}")
                )
                params[f"all_kinds{n}"] = check.kinds == "all"
                params[f"kinds{n}"] = [] if check.kinds in ("all", None) else list(check.kinds)  # type: ignore[arg-type]
                parts.append(text)
            params["minutes"] = minutes
            params["as_of_us"] = epoch_us(rel.as_of)
            period = _period_sql(since, until, "a.at_us + $minutes::BIGINT * 60000000", params)
            params["rule_id"] = rule.id
            ticketed = any(req == "ticket-opened" for c in comm_checks for req, _ in c.requirements())
            params["ticketed"] = ticketed
            met_n, pending_n = con.execute(
                f"""
                WITH a AS (SELECT DISTINCT pos, communication, at_us FROM ({" UNION ALL ".join(parts)})),
                judged AS (
                    SELECT $ticketed AND $minutes > 0 AND a.at_us + $minutes::BIGINT * 60000000 > $as_of_us
                           AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.communication = a.communication)
                           AS is_pending
                    FROM a ANTI JOIN flagged f ON f.rule = $rule_id AND f.subject = a.communication
                    WHERE {period}
                )
                SELECT count(*) FILTER (WHERE NOT is_pending), count(*) FILTER (WHERE is_pending) FROM judged
                """,
                params,
            ).fetchall()[0]
            met += met_n
            pending += pending_n
        if any(c.replies for c in rule.spec.checks):
            params = {}
            scope = scope_sql(policy.scope_condition, params)
            terms = " OR ".join(
                f"({condition_sql(rule.check_condition(c), params, f'r{n}', 'customer')})"
                for n, c in enumerate(rule.spec.checks)
                if c.replies
            )
            period = _period_sql(since, until, "r.at_us", params)
            params["rule_id"] = rule.id
            met += con.execute(
                f"""
                SELECT count(*) FROM replies r
                JOIN customer_versions cv
                  ON cv.customer = r.customer AND cv.pos <= r.pos AND (cv.pos_to IS NULL OR r.pos < cv.pos_to)
                WHERE {scope} AND ({terms}) AND {period}
                  AND EXISTS (SELECT 1 FROM comms c WHERE c.communication = r.in_reply_to)
                  AND NOT EXISTS (SELECT 1 FROM flagged f WHERE f.rule = $rule_id AND f.subject = r.reply)
                """,
                params,
            ).fetchall()[0][0]
        if met or pending or rule.spec.checks:
            out.append((rule.id, met, pending))
    con.unregister("flagged")
    return out


def audit_store(
    path: str | Path,
    policy: Policy,
    as_of: datetime,
    since: datetime | None,
    until: datetime | None,
    seq: int | None = None,
) -> RelationalAuditResult:
    """The audit of the SQLite event log at `path` (its events up to recording sequence `seq`)."""
    return _audited(evaluate_store(path, policy, as_of, seq), since, until)


def audit_events(
    events: list[Event], policy: Policy, as_of: datetime, since: datetime | None, until: datetime | None
) -> RelationalAuditResult:
    """The audit of validated events in evaluation order (later ones than `as_of` are ignored)."""
    return _audited(evaluate_events(events, policy, as_of), since, until)


def _audited(rel: Relational, since: datetime | None, until: datetime | None) -> RelationalAuditResult:
    try:
        return audit_relational(rel, since, until)
    finally:
        rel.close()


def stats_report(result: RelationalAuditResult) -> Report:
    """The aggregation table and markdown show (forewarn.audit.formats.stats.Report), from the case counts:
    the totals, per rule and per kind. Per month, customer and subject, the flagged cases and lead times
    (the HTML report's) are left empty: that report still reads the object evaluation."""
    total = Group("all")
    groups: dict[str, Group] = {rule_id: Group(rule_id) for rule_id in result.policy.ids}
    kinds: Counter[str] = Counter()
    for (kind, rule_id, status), n in (result.cases or {}).items():
        if not n:
            continue
        groups.setdefault(rule_id, Group(rule_id)).tally.add(status, n)
        total.tally.add(status, n)
        kinds[kind] += n
    for f in result.findings:  # every finding belongs to exactly one case (stats._add_findings)
        for g in (total, groups[f.rule]):
            g.findings += 1
            if f.status == "violation":
                g.violations[f.severity] += 1
    by_id = result.policy.by_id
    return Report(
        result=result,
        total=total,
        rules=[(by_id[k], g) for k, g in groups.items() if k in by_id],
        months=[],
        customers=[],
        subjects=[],
        kinds=kinds,
        flagged=[],
        timed=[],
    )
