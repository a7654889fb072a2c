"""`--format table`: the terminal view (rich): verdict, summary per rule, then findings by rule."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.padding import Padding
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
FINDING_COLUMNS = ("status", "subject", "customer", "problem", "due (UTC)", "sent (UTC)", "lateness", "message")
ONE_LINE = ("subject", "customer", "problem", "due (UTC)", "sent (UTC)")
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
        table.add_column(col, justify="left" if col in ("rule", "severity") else "right", no_wrap=col == "rule")
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
            Text(rate_text(t.rate), style=_rate_style(t.rate)),
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


def _rate_style(rate: float | None) -> str:
    """As the HTML report colours rates: green from 99%, amber from 95%, red below."""
    return "" if rate is None else "green" if rate >= 99.0 else "yellow" if rate >= 95.0 else "red"


def _finding_row(f: Finding) -> list[Text]:
    status = Text(f.status + (f" ({f.waiver})" if f.waiver else ""), style="red" if f.status == "violation" else "")
    rest = [f.subject, f.customer, f.problem, _minute(f.due), _minute(f.sent), timing(f), f.message]
    return [status, *map(Text, rest)]


def _minute(t: datetime | None) -> str:
    """An instant to the minute, in UTC (the column headers say so): short enough to stay on one line."""
    return "" if t is None else t.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _findings_table(rule_id: str, severity: str, findings: list[Finding]) -> Table:
    noun = "finding" if len(findings) == 1 else "findings"
    title = Text(f"{rule_id} ({severity}): {len(findings)} {noun}", style=STYLE.get(severity, ""))
    table = Table(title=title, title_justify="left")
    for col in FINDING_COLUMNS:
        table.add_column(col, overflow="fold", no_wrap=col in ONE_LINE)
    for f in findings[:MAX_ROWS_PER_RULE]:
        table.add_row(*_finding_row(f), style="dim" if f.status == "waived" else "")
    if len(findings) > MAX_ROWS_PER_RULE:
        more = len(findings) - MAX_ROWS_PER_RULE
        table.add_row("…", f"{more} more", "", "", "", "", "", "see --format csv or html for all")
    return table


WIDE = 140  # narrower terminals list each finding on two lines: a table's message column would be a sliver


def _findings_list(rule_id: str, severity: str, findings: list[Finding]) -> list[Text | Padding]:
    """The findings of one rule for a narrow terminal: the facts on one line, the message indented below."""
    noun = "finding" if len(findings) == 1 else "findings"
    lines: list[Text | Padding] = [
        Text(f"{rule_id} ({severity}): {len(findings)} {noun}", style=STYLE.get(severity, "") or "bold")
    ]
    for f in findings[:MAX_ROWS_PER_RULE]:
        status = f.status + (f" ({f.waiver})" if f.waiver else "")
        head = Text("  ", overflow="fold")
        head.append(status, style="red" if f.status == "violation" else "dim")
        facts = f"  {f.subject}  {f.customer}  {f.problem}  due {_minute(f.due)}"
        facts += f"  sent {_minute(f.sent)}" if f.sent else ""
        facts += f"  {timing(f)}" if timing(f) else ""
        head.append(facts)
        lines.append(head)
        lines.append(Padding(Text(f.message, style="dim" if f.status == "waived" else ""), (0, 0, 0, 6), expand=False))
    if len(findings) > MAX_ROWS_PER_RULE:
        lines.append(Text(f"  … {len(findings) - MAX_ROWS_PER_RULE} more: see --format csv or html for all"))
    return lines


def render(result: AuditResult, width: int | None = None, color: bool = False) -> str:
    """The report as text tables as wide as the terminal (`width` columns if given); ANSI colours if `color`."""
    from forewarn import terminal

    width = width or terminal.width()
    report = build(result)
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        force_terminal=color,
        no_color=not color,
        color_system="standard" if color else None,
        highlight=False,
    )
    console.print(Text(header(report), style="bold"))
    if result.log is not None:
        console.print(Text(f"log: {result.log}"))
    console.print(Text(verdict(report), style=_rate_style(report.total.tally.rate)))
    console.print(_summary_table(report))
    for rule_id, findings in findings_by_rule(result).items():
        rule = result.policy.by_id.get(rule_id)
        severity = rule.severity if rule else "?"
        if width >= WIDE:
            console.print(_findings_table(rule_id, severity, findings))
        else:
            for line in _findings_list(rule_id, severity, findings):
                console.print(line)
    if not result.findings:
        console.print("No findings.")
    if result.comparison is not None:
        if width >= WIDE:
            console.print(_comparison_table(result.comparison))
        else:
            for line in _comparison_list(result.comparison):
                console.print(line)
    return "".join(line.rstrip(" ") + "\n" for line in buffer.getvalue().splitlines())  # rich pads lines to the width


def _comparison_list(c: Any) -> list[Text | Padding]:
    """The policy change for a narrow terminal: each finding's facts on one line, its message indented below."""
    from forewarn.audit.compare import table_rows

    lines: list[Text | Padding] = [Text(f"Policy change: {c.summary()}", style="bold")]
    for *facts, message in table_rows(c):
        lines.append(Text("  " + "  ".join(facts), overflow="fold"))
        lines.append(Padding(Text(message), (0, 0, 0, 6), expand=False))
    return lines


def _comparison_table(c: Any) -> Table:
    """The findings the policy change adds and removes (audit --compare-rules)."""
    from forewarn.audit.compare import COLUMNS, table_rows

    table = Table(*COLUMNS, title=f"Policy change: {c.summary()}", title_justify="left", expand=False)
    for row in table_rows(c):
        table.add_row(*row)
    return table
