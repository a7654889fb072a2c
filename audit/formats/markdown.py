"""`--format markdown`: the table view as GitHub-flavoured Markdown, for a review ticket or wiki."""

from __future__ import annotations

from collections.abc import Iterable

from forewarn import __version__
from forewarn.audit.findings import AuditResult, Finding, utc
from forewarn.audit.formats.stats import Report, build, findings_by_rule, rate_text, timing
from forewarn.audit.formats.table import MAX_ROWS_PER_RULE, sorted_severities
from forewarn.calendar import holidays_version


def cell(value: object) -> str:
    """A table cell: pipes escaped, line breaks flattened, Markdown specials neutralised."""
    text = "" if value is None else str(value)
    for char in ("\\", "|", "*", "_", "`", "<", ">", "[", "]"):
        text = text.replace(char, "\\" + char)
    return " ".join(text.split())


def row(values: Iterable[object]) -> str:
    return "| " + " | ".join(cell(v) for v in values) + " |"


def table(head: list[str], rows: Iterable[Iterable[object]], right: Iterable[int] = ()) -> list[str]:
    aligned = set(right)
    rule = ["---:" if i in aligned else "---" for i in range(len(head))]
    return [row(head), "| " + " | ".join(rule) + " |", *(row(r) for r in rows)]


def _verdict(report: Report) -> list[str]:
    t = report.total.tally
    severities = ", ".join(f"**{n} {s}**" for s, n in sorted_severities(report)) or "none"
    return [
        f"**Compliance {rate_text(t.rate)}**: {t.met} of {t.judged} judged cases met "
        f"({report.kinds.get('obligation', 0)} notification obligations, "
        f"{report.kinds.get('check', 0)} communication checks, "
        f"{report.kinds.get('alarm', 0)} overrun alarms).",
        "",
        f"Violations by severity: {severities}. Waived: {t.waived}. Pending (deadline ahead): {t.pending}.",
    ]


def _summary(report: Report) -> list[str]:
    head = ["rule", "severity", "obligations", "met", "violated", "waived", "pending", "compliance"]
    rows = [
        [
            rule.id,
            rule.severity,
            g.tally.cases,
            g.tally.met,
            g.tally.violated,
            g.tally.waived,
            g.tally.pending,
            rate_text(g.tally.rate),
        ]
        for rule, g in report.rules
    ]
    t = report.total.tally
    rows.append(["**all rules**", "", t.cases, t.met, t.violated, t.waived, t.pending, rate_text(t.rate)])
    lines = table(head, rows, right=range(2, 8))
    lines[-1] = lines[-1].replace("\\*\\*all rules\\*\\*", "**all rules**")
    return lines


def _finding(f: Finding) -> list[object]:
    status = f"waived ({f.waiver})" if f.waiver else f.status
    return [
        status,
        f.subject,
        f.customer,
        f.problem,
        utc(f.due),
        utc(f.sent) or "",
        timing(f),
        f.message,
    ]


def _findings(result: AuditResult) -> list[str]:
    out: list[str] = []
    head = ["status", "subject", "customer", "problem", "due", "sent", "lateness", "message"]
    for rule_id, findings in findings_by_rule(result).items():
        rule = result.policy.by_id.get(rule_id)
        out += [
            "",
            f"### {rule_id} ({rule.severity if rule else '?'}): {len(findings)} findings",
            "",
        ]
        out += table(head, (_finding(f) for f in findings[:MAX_ROWS_PER_RULE]))
        if len(findings) > MAX_ROWS_PER_RULE:
            out += [
                "",
                f"… and {len(findings) - MAX_ROWS_PER_RULE} more: see the CSV or HTML report.",
            ]
    return out


def _waivers(result: AuditResult) -> list[str]:
    seen: dict[str, Finding] = {}
    for f in result.findings:
        if f.waiver and f.waiver not in seen:
            seen[f.waiver] = f
    if not seen:
        return []
    rows = [[w, f.rule, f.subject, f.waiver_reason, f.waiver_approved_by] for w, f in seen.items()]
    return [
        "",
        "## Waivers",
        "",
        *table(["waiver", "rule", "subject", "justification", "approved by"], rows),
    ]


def _policy(result: AuditResult) -> list[str]:
    rows = [
        [
            r.id,
            r.severity,
            ", ".join(f"{k}={v}" for k, v in r.params().items()),
            r.spec.metadata.clause,
        ]
        for r in result.policy.rules
    ]
    return [
        "",
        "## Policy in force",
        "",
        f"Digest `{result.policy.digest}`; forewarn {__version__}; holidays {holidays_version()}.",
        "",
        *table(["rule", "severity", "parameters", "clause"], rows),
    ]


def render(result: AuditResult) -> str:
    report = build(result)
    lines = [
        "# Customer notification compliance review",
        "",
        f"Period: {report.period}. As of {utc(result.as_of)}.",
        "",
        *([f"Log: seq {result.log.seq}, head `{result.log.head_text}`.", ""] if result.log is not None else []),
        *_verdict(report),
        "",
        "## Compliance by rule",
        "",
        *_summary(report),
        "",
        "## Findings",
    ]
    lines += _findings(result) if result.findings else ["", "No findings."]
    lines += _comparison(result) + _waivers(result) + _policy(result)
    return "\n".join(lines) + "\n"


def _comparison(result: AuditResult) -> list[str]:
    """The findings the policy change adds and removes (audit --compare-rules)."""
    c = result.comparison
    if c is None:
        return []
    from forewarn.audit.compare import COLUMNS, table_rows

    rows = table_rows(c)
    return ["", "## Policy change", "", c.summary(), *(["", *table(COLUMNS, rows)] if rows else [])]
