"""`--format table`: the terminal view (rich): summary per rule, then findings by rule."""

from __future__ import annotations

import io
from collections import Counter

from rich.console import Console
from rich.table import Table

from forewarn.audit.findings import AuditResult, utc
from forewarn.evaluate.checks import humanize


def per_rule(result: AuditResult) -> list[tuple[str, str, int, int, int, int, int, str]]:
    """(rule, severity, obligations, met, violated, waived, pending, compliance %) per rule."""
    counts: dict[str, Counter[str]] = {r.id: Counter() for r in result.policy.rules}
    for o in result.outcomes:
        counts[o.obligation.rule][o.status] += 1
        counts[o.obligation.rule]["obligations"] += 1
    for f in result.findings:
        key = "finding_waived" if f.status == "waived" else "finding_violation"
        counts[f.rule][key] += 1
    rows = []
    for rule in result.policy.rules:
        c = counts[rule.id]
        violated = c["violated"] or 0
        waived = c["finding_waived"]
        violations = c["finding_violation"]
        judged = c["met"] + max(violated, violations)
        rate = f"{100.0 * c['met'] / judged:.1f}" if judged else "-"
        if not c["obligations"] and not (violations or waived):
            rate = "100.0" if rule.spec.checks else "-"
        rows.append((rule.id, rule.severity, c["obligations"], c["met"], violations, waived, c["pending"], rate))
    return rows


def render(result: AuditResult) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=160, force_terminal=False, color_system=None)
    period = ""
    if result.since or result.until:
        period = f", period {utc(result.since) or '…'} to {utc(result.until) or '…'}"
    summary = Table(title=f"forewarn audit as of {utc(result.as_of)}{period}")
    for col in ("rule", "severity", "obligations", "met", "violations", "waived", "pending", "compliance %"):
        summary.add_column(col, justify="left" if col in ("rule", "severity") else "right")
    for row in per_rule(result):
        summary.add_row(*(str(x) for x in row))
    console.print(summary)
    by_rule: dict[str, list] = {}
    for f in result.findings:
        by_rule.setdefault(f.rule, []).append(f)
    for rule_id, findings in by_rule.items():
        t = Table(title=f"{rule_id} ({len(findings)} findings)", title_justify="left")
        for col in ("status", "subject", "customer", "problem", "due", "sent", "lateness", "message"):
            t.add_column(col)
        for f in findings:
            late = humanize(f.sent - f.due) if f.sent and f.sent > f.due else ""
            t.add_row(f.status, f.subject, f.customer, f.problem, utc(f.due) or "", utc(f.sent) or "", late, f.message)
        console.print(t)
    if not result.findings:
        console.print("No findings.")
    return buffer.getvalue()
