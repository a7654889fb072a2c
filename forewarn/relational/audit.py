"""The audit on the relational evaluation: findings, summary, pending obligations and the cases' counts.

Findings are the only Python objects per item (forewarn.audit.findings.to_finding applies the waivers);
counts are GROUP BYs over the evaluation's tables (forewarn.relational.report). The result serves every
format; the cases one by one (JUnit) and what the HTML report names are computed when `detail` names those.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from forewarn.audit.findings import AuditResult, Finding, Summary, to_finding
from forewarn.audit.formats.stats import Case, Group, Report, Tally, month_name
from forewarn.events import Event, WaiverGranted
from forewarn.instants import utc
from forewarn.policy.model import Policy
from forewarn.relational.evaluation import Relational, evaluate_events, evaluate_store
from forewarn.relational.report import Counted, EventSource, _period_sql, count, list_events, store_events
from forewarn.relational.tables import run
from forewarn.relational.violations import _at

DETAILED_FORMATS = frozenset({"html", "junit"})
"""Formats that need more than the counts (`detail`): every case one by one (junit); the leads, the
maintenances' timelines and the events the findings name (html)."""


@dataclass(frozen=True)
class RelationalAuditResult(AuditResult):
    """An AuditResult whose outcomes stay in DuckDB: its cases are counted there (`counted`)."""

    pending_rows: tuple[dict[str, object], ...] = ()
    counted: Counted | None = None
    finding_kinds: tuple[tuple[tuple[str, str], str], ...] = ()  # (rule, subject) -> subject kind

    def stats_report(self) -> Report:
        return stats_report(self)

    def case_list(self) -> list[Case]:
        """Every case of the period, one by one (an audit with `detail`)."""
        if self.counted is None or self.counted.listed is None:
            raise ValueError("the cases are listed by an audit whose detail includes junit")
        return self.counted.listed

    def subject_kinds(self) -> Callable[[Finding], str]:
        """What a finding's subject is: maintenance, incident, release, communication or reply."""
        kinds = dict(self.finding_kinds)
        return lambda f: kinds[(f.rule, f.subject)]

    @property
    def total(self) -> Tally:
        """Every judged case by status."""
        tally = Tally()
        for (_kind, _rule, status), n in (self.counted.cases if self.counted else {}).items():
            tally.add(status, n)
        return tally

    def pending_json(self) -> list[dict[str, object]]:
        return [dict(row) for row in self.pending_rows]


def _waivers(rel: Relational) -> list[WaiverGranted]:
    return sorted(rel.life.waivers, key=lambda w: (w.at, w.waiver))


def _in_period(t: datetime, since: datetime | None, until: datetime | None) -> bool:
    return (since is None or t >= since) and (until is None or t < until)


def audit_relational(
    rel: Relational,
    since: datetime | None = None,
    until: datetime | None = None,
    detail: Collection[str] = (),
    events: EventSource | None = None,
    counts: bool = True,
) -> RelationalAuditResult:
    """Judge the evaluated log; the period [since, until) selects findings and obligations by due time.
    `detail`: the formats (of DETAILED_FORMATS) to prepare for: junit lists every case, html reads what it
    names (`events`: the log's events by id, for the evidence); none by default, as the counts' formats
    need nothing more (listing every case of a year's log costs more than judging it). Without `counts`, the
    findings, summary and pending obligations only: no format's report can be made of the result (stats_report)."""
    policy, as_of = rel.policy, rel.as_of
    found = [v for v in rel.violations() if _in_period(v.due, since, until)]
    waivers = _waivers(rel) if found else []
    findings = sorted((to_finding(v, policy, waivers) for v in found), key=Finding.sort_key)
    params: dict[str, object] = {}
    period = _period_sql(since, until, "o.na_us", params)
    by_status = dict(
        run(
            rel.con,
            f"SELECT r.status, count(*) FROM obligations o JOIN outcomes r USING (oid) WHERE {period} GROUP BY ALL",
            params,
        ).fetchall()
    )
    waived_keys = {(f.rule, f.subject, f.customer, utc(f.due)) for f in findings if f.status == "waived"}
    waived = 0
    if waived_keys and "violated" in rel.unmet:  # which violated obligations the waived findings are of
        violated_rows = run(
            rel.con,
            f"SELECT o.rule, o.subject, o.customer, o.na_us FROM obligations o JOIN outcomes r USING (oid)"
            f" WHERE r.status = 'violated' AND {period}",
            params,
        ).fetchall()
        waived = sum(
            (rule, subject, customer, utc(_at(na))) in waived_keys for rule, subject, customer, na in violated_rows
        )
    pending = _pending(rel, period, params) if "pending" in rel.unmet else []
    summary = Summary(
        obligations=sum(by_status.values()),
        met=by_status.get("met", 0),
        violated=by_status.get("violated", 0) - waived,
        waived=waived,
        pending=len(pending),
        findings=len(findings),
    )
    counted = count(rel, findings, (period, params), since, until, detail, events) if counts else None
    return RelationalAuditResult(
        as_of,
        since,
        until,
        policy,
        summary,
        findings,
        pending_rows=tuple(pending),
        counted=counted,
        finding_kinds=tuple(_finding_kinds(rel, findings).items()) if findings else (),
    )


def _finding_kinds(rel: Relational, findings: list[Finding]) -> dict[tuple[str, str], str]:
    """What each finding's subject is: the rule's subject kind if it is one, else a communication or a reply."""
    own = {r.id: spec.subject for r in rel.policy.rules if (spec := r.spec.obligation or r.spec.alarm)}
    ids = sorted({f.subject for f in findings})
    subjects = rel.life.histories  # every subject evaluated, by (kind, id)
    comms = {
        c
        for (c,) in run(
            rel.con,
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
    rows = run(
        rel.con,
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


def audit_store(
    path: str | Path,
    policy: Policy,
    as_of: datetime,
    since: datetime | None,
    until: datetime | None,
    seq: int | None = None,
    detail: Collection[str] = DETAILED_FORMATS,
    counts: bool = True,
) -> RelationalAuditResult:
    """The audit of the SQLite event log at `path` (its events up to recording sequence `seq`); `detail` and
    `counts` as audit_relational's."""
    rel = evaluate_store(path, policy, as_of, seq)
    return _audited(rel, since, until, detail, store_events(str(path), seq), counts)


def audit_events(
    events: Sequence[Event],
    policy: Policy,
    as_of: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
    detail: Collection[str] = DETAILED_FORMATS,
    counts: bool = True,
    con: duckdb.DuckDBPyConnection | None = None,
) -> RelationalAuditResult:
    """The audit of validated events in evaluation order (later ones than `as_of` are ignored); `detail` and
    `counts` as audit_relational's. `con`: a connection to evaluate in (forewarn.relational.tables.workspace), kept
    open for the caller's next audit, rather than one made and closed for this one."""
    rel = evaluate_events(events, policy, as_of, con)
    return _audited(rel, since, until, detail, list_events(events), counts)


def _audited(
    rel: Relational,
    since: datetime | None,
    until: datetime | None,
    detail: Collection[str],
    events: EventSource,
    counts: bool,
) -> RelationalAuditResult:
    try:
        return audit_relational(rel, since, until, detail, events, counts)
    finally:
        rel.close()


def stats_report(result: RelationalAuditResult) -> Report:
    """The aggregation every format shows (forewarn.audit.formats.stats.Report), from the counted cases."""
    counted = result.counted
    if counted is None:
        raise ValueError("a report is made of an audit that counts the cases (audit_relational's `counts`)")
    dims = counted.dims
    rules = _groups(dims[0], result.policy.ids)
    months, customers, subjects = _groups(dims[1]), _groups(dims[2]), _groups(dims[3])
    total = Group("all")
    for (_rule, status), n in dims[0].items():
        total.tally.add(status, n)
    kinds: Counter[str] = Counter()
    for (kind, _rule, _status), n in counted.cases.items():
        kinds[kind] += n
    for case in counted.flagged:  # every finding belongs to exactly one case
        targets = [total, rules[case.rule], months[(case.due.year, case.due.month)], customers[case.customer]]
        if case.about is not None:
            targets.append(subjects[case.about])
        severities = [f.severity for f in case.findings if f.status == "violation"]
        for g in targets:
            g.findings += len(case.findings)
            g.violations.update(severities)
    by_id = result.policy.by_id
    return Report(
        result=result,
        total=total,
        rules=[(by_id[k], g) for k, g in rules.items() if k in by_id],
        months=[months[k] for k in sorted(months)],
        customers=[customers[k] for k in sorted(customers)],
        subjects=[subjects[k] for k in sorted(subjects)],
        kinds=+kinds,
        flagged=counted.flagged,
        timed=counted.timed or [],
        details=counted.details,
    )


def _groups(counts: Counter[tuple[Any, str]], order: Iterable[Any] = ()) -> dict[Any, Group]:
    out: dict[Any, Group] = {k: Group(k) for k in order}
    for (key, status), n in counts.items():
        if not n:
            continue
        group = out.get(key)
        if group is None:
            group = out[key] = Group(month_name(key) if isinstance(key, tuple) else key)
        group.tally.add(status, n)
    return out
