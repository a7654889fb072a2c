"""`--format csv`: one row per finding, its JSON fields as columns, plus the review period."""

from __future__ import annotations

import csv
import io

from forewarn.audit.findings import AuditResult, Finding, utc

FINDING_COLUMNS = (
    "rule",
    "status",
    "severity",
    "problem",
    "subject",
    "customer",
    "communication",
    "due",
    "sent",
    "waiver",
    "retroactive",
    "message",
    "evidence",
)
EXTRA_COLUMNS = ("waiver_reason", "waiver_approved_by", "as_of", "period_since", "period_until", "log_seq", "log_head")
COLUMNS = FINDING_COLUMNS + EXTRA_COLUMNS


def _row(f: Finding, tail: tuple[str, ...]) -> list[str]:
    data = f.to_json()
    cells = ["" if data[c] is None else str(data[c]) for c in FINDING_COLUMNS[:-1]]
    cells[FINDING_COLUMNS.index("retroactive")] = "true" if f.retroactive else "false"
    return [*cells, " ".join(f.evidence), f.waiver_reason or "", f.waiver_approved_by or "", *tail]


def render(result: AuditResult) -> str:
    """RFC 4180 CSV (CRLF line ends); spreadsheet formula prefixes are neutralised."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    log = (str(result.log.seq), result.log.head_text) if result.log is not None else ("", "")
    tail = (utc(result.as_of) or "", utc(result.since) or "", utc(result.until) or "", *log)
    c = result.comparison
    if c is None:
        writer.writerow(COLUMNS)
        for f in result.findings:
            writer.writerow([_defuse(c) for c in _row(f, tail)])
        return buffer.getvalue()
    # --compare-rules: a `change` column (added / removed / unchanged), the removed findings as rows too
    writer.writerow((*COLUMNS, "change"))
    added = {id(f) for f in c.added}
    for f in result.findings:
        writer.writerow([_defuse(x) for x in (*_row(f, tail), "added" if id(f) in added else "unchanged")])
    for f in c.removed:
        writer.writerow([_defuse(x) for x in (*_row(f, tail), "removed")])
    return buffer.getvalue()


def _defuse(cell: str) -> str:
    """A cell a spreadsheet would run as a formula gets a leading apostrophe (CSV injection)."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@") else cell
