"""`--format table`: the terminal view (rich): verdict, summary per rule, then findings by rule."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from forewarn.audit.findings import AuditResult, Finding, utc
from forewarn.audit.formats.stats import Report, build, findings_by_rule, rate_text, timing

MAX_ROWS_PER_RULE = 200
SUMMARY_COLUMNS = (
    "rule",
    "severity",
    "obligations",
    "met",
    "violated",
    "waived",
    "pending",
    "compliance",
)
FINDING_COLUMNS = ("status", "subject", "customer", "problem", "due", "sent", "lateness", "message")
STYLE = {"high": "bold red", "critical": "bold red", "medium": "yellow", "low": "cyan"}


def header(report: Report) -> str:
    r = report.result
    return f"forewarn audit as of {utc(r.as_of)}: {report.period}"


def verdict(report: Report) -> str:
    """One line: the compliance rate and the violations by severity."""
    t = report.total.tally
    by_sev = ", ".join(f"{n} {s}" for s, n in sorted_severities(report))
    violations = sum(report.total.violations.values())
    return (
        f"compliance {rate_text(t.rate)} ({t.met} of {t.judged} judged cases met); "
        f"{violations} violations" + (f" ({by_sev})" if by_sev else "") + f"; {t.waived} waived; {t.pending} pending"
    )


def sorted_severities(report: Report) -> list[tuple[str, int]]:
    order = ("critical", "high", "medium", "low")
    return [(s, report.total.violations[s]) for s in order if report.total.violations.get(s)]


def _summary_table(report: Report) -> Table:
    table = Table(title="Compliance by rule", title_justify="left")
    for col in SUMMARY_COLUMNS:
        table.add_column(col, justify="left" if col in ("rule", "severity") else "right")
    for rule, g in report.rules:
        t = g.tally
        table.add_row(
            Text(rule.id),
            Text(rule.severity, style=STYLE.get(rule.severity, "")),
            str(t.cases),
            str(t.met),
            str(t.violated),
            str(t.waived),
            str(t.pending),
            rate_text(t.rate),
        )
    t = report.total.tally
    table.add_section()
    table.add_row(
        "all rules",
        "",
        str(t.cases),
        str(t.met),
        str(t.violated),
        str(t.waived),
        str(t.pending),
        rate_text(t.rate),
        style="bold",
    )
    return table


def _finding_row(f: Finding) -> list[str]:
    return [
        f.status + (f" ({f.waiver})" if f.waiver else ""),
        f.subject,
        f.customer,
        f.problem,
        utc(f.due) or "",
        utc(f.sent) or "",
        timing(f),
        f.message,
    ]


def _findings_table(rule_id: str, severity: str, findings: list[Finding]) -> Table:
    noun = "finding" if len(findings) == 1 else "findings"
    title = Text(f"{rule_id} ({severity}): {len(findings)} {noun}")
    table = Table(title=title, title_justify="left")
    for col in FINDING_COLUMNS:
        table.add_column(col, overflow="fold")
    for f in findings[:MAX_ROWS_PER_RULE]:
        table.add_row(*map(Text, _finding_row(f)), style="dim" if f.status == "waived" else "")
    if len(findings) > MAX_ROWS_PER_RULE:
        more = len(findings) - MAX_ROWS_PER_RULE
        table.add_row("…", f"{more} more", "", "", "", "", "", "see --format csv or html for all")
    return table


def render(result: AuditResult, width: int = 160, color: bool = False) -> str:
    report = build(result)
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=color, color_system="standard" if color else None)
    console.print(Text(header(report), style="bold"))
    console.print(Text(verdict(report)))
    console.print(_summary_table(report))
    for rule_id, findings in findings_by_rule(result).items():
        rule = result.policy.by_id.get(rule_id)
        console.print(_findings_table(rule_id, rule.severity if rule else "?", findings))
    if not result.findings:
        console.print("No findings.")
    if result.comparison is not None:
        console.print(_comparison_table(result.comparison))
    return buffer.getvalue()


def _comparison_table(c: Any) -> Table:
    """The findings the policy change adds and removes (audit --compare-rules)."""
    from forewarn.audit.compare import COLUMNS, table_rows

    table = Table(*COLUMNS, title=f"Policy change: {c.summary()}", title_justify="left", expand=False)
    for row in table_rows(c):
        table.add_row(*row)
    return table
