"""The audit on the relational evaluation: findings, summary, pending obligations and the case tally.

Findings are the only Python objects per item (forewarn.audit.findings.to_finding applies the waivers);
counts are GROUP BYs over the evaluation's tables. The result has the shape of an AuditResult for the
formats that read only findings, summary and pending obligations (json, csv).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from forewarn.audit.findings import AuditResult, Finding, Summary, to_finding
from forewarn.audit.formats.stats import Tally
from forewarn.events import EVENT_ADAPTER, Event, WaiverGranted
from forewarn.instants import epoch_us, utc
from forewarn.policy.model import Policy
from forewarn.relational.checks import APPLIES, where_sql
from forewarn.relational.evaluation import Relational, evaluate_events, evaluate_store
from forewarn.relational.obligations import SCOPE_PLAN
from forewarn.relational.violations import _at

RELATIONAL_FORMATS = frozenset({"json", "csv"})
"""Formats rendered from the relational evaluation (the others still read the object evaluation)."""


def relational_for(fmt: str) -> bool:
    """Whether an audit in format `fmt` runs on the relational evaluation (FOREWARN_EVALUATION=objects: never,
    for comparisons while both evaluations exist)."""
    return fmt in RELATIONAL_FORMATS and os.environ.get("FOREWARN_EVALUATION") != "objects"


@dataclass(frozen=True)
class RelationalAuditResult(AuditResult):
    """An AuditResult whose outcomes stay in DuckDB: `outcomes`, `pending` and `evaluation` are empty."""

    pending_rows: tuple[dict[str, object], ...] = ()
    total: Tally | None = None

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
    total = _total(rel, findings, counts, waived, violated_rows, since, until)
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
        total=total,
    )


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


def _total(
    rel: Relational,
    findings: list[Finding],
    counts: dict[str, int],
    waived: int,
    violated_rows: list[tuple[str, str, str, int]],
    since: datetime | None,
    until: datetime | None,
) -> Tally:
    """Every judged case of the period by status (forewarn.audit.formats.stats: obligations, checks per
    communication and rule, reply checks, alarms), counted in bulk."""
    policy = rel.policy
    tally = Tally()
    tally.add("met", counts.get("met", 0))
    tally.add("pending", counts.get("pending", 0))
    tally.add("waived", waived)
    tally.add("violated", counts.get("violated", 0) - waived)
    alarms = {r.id: r.spec.alarm.problem for r in policy.rules if r.spec.alarm is not None}
    # Each violated obligation claims one finding of its (rule, subject, customer, due); the other
    # findings are check cases, one per (rule, communication or reply), or alarm cases.
    unclaimed: dict[tuple[str, str, str, datetime], list[Finding]] = {}
    alarm_groups: dict[tuple[str, str, str, datetime], list[Finding]] = {}
    for f in findings:
        if alarms.get(f.rule) == f.problem:
            alarm_groups.setdefault((f.rule, f.subject, f.customer, f.due), []).append(f)
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
    for found in [*groups.values(), *alarm_groups.values()]:
        tally.add(_status(found))
    skip = set(groups)
    met, pending = _check_counts(rel, skip, since, until)
    tally.add("met", met)
    tally.add("pending", pending)
    return tally


def _check_counts(
    rel: Relational, skip: set[tuple[str, str]], since: datetime | None, until: datetime | None
) -> tuple[int, int]:
    """(met, pending) communication and reply check cases of the period without findings."""
    policy, con = rel.policy, rel.con
    met = pending = 0
    for rule in policy.rules:
        comm_checks = [c for c in rule.spec.checks if not c.replies]
        if comm_checks:
            minutes = 0
            parts = []
            params: dict[str, object] = {"scope_plan": SCOPE_PLAN}
            for n, check in enumerate(comm_checks):
                for req, args in check.requirements():
                    if req == "ticket-opened":
                        minutes = int(rule.resolve_int(args["within_minutes"]) or 0)  # type: ignore[arg-type]
                about = (
                    f"s.subject_kind = $about{n} AND " + where_sql(check.where, params, f"c{n}")
                    if check.about is not None
                    else "TRUE"
                )
                if check.about is not None:
                    params[f"about{n}"] = check.about
                text = (
                    APPLIES.format(about=about).replace("$all_kinds", f"$all_kinds{n}").replace("$kinds", f"$kinds{n}")
                )
                params[f"all_kinds{n}"] = check.kinds == "all"
                params[f"kinds{n}"] = [] if check.kinds in ("all", None) else list(check.kinds)  # type: ignore[arg-type]
                parts.append(text)
            params["minutes"] = minutes
            params["as_of_us"] = epoch_us(rel.as_of)
            period = _period_sql(since, until, "a.at_us + $minutes::BIGINT * 60000000", params)
            rows = con.execute(
                f"""
                WITH a AS (SELECT DISTINCT pos, communication, at_us FROM ({" UNION ALL ".join(parts)}))
                SELECT a.communication,
                       $minutes > 0 AND a.at_us + $minutes::BIGINT * 60000000 > $as_of_us
                       AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.communication = a.communication)
                FROM a WHERE {period}
                """,
                params,
            ).fetchall()
            for communication, is_pending in rows:
                if (rule.id, communication) in skip:
                    continue
                if is_pending and any(req == "ticket-opened" for c in comm_checks for req, _ in c.requirements()):
                    pending += 1
                else:
                    met += 1
        if any(c.replies for c in rule.spec.checks):
            params = {"scope_plan": SCOPE_PLAN}
            period = _period_sql(since, until, "r.at_us", params)
            rows = con.execute(
                f"""
                SELECT r.reply FROM replies r
                JOIN customer_versions cv
                  ON cv.customer = r.customer AND cv.pos <= r.pos AND (cv.pos_to IS NULL OR r.pos < cv.pos_to)
                WHERE cv.plan = $scope_plan AND {period}
                  AND EXISTS (SELECT 1 FROM comms c WHERE c.communication = r.in_reply_to)
                """,
                params,
            ).fetchall()
            met += sum((rule.id, reply) not in skip for (reply,) in rows)
    return met, pending


def audit_store(
    path: str | Path, policy: Policy, as_of: datetime, since: datetime | None, until: datetime | None
) -> RelationalAuditResult:
    """The audit of the SQLite event log at `path`."""
    return audit_relational(evaluate_store(path, policy, as_of), since, until)


def audit_events(
    events: list[Event], policy: Policy, as_of: datetime, since: datetime | None, until: datetime | None
) -> RelationalAuditResult:
    """The audit of validated events in evaluation order (later ones than `as_of` are ignored)."""
    return audit_relational(evaluate_events(events, policy, as_of), since, until)
