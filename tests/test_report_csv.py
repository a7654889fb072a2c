"""`--format csv`: one row per finding, the finding's JSON fields as columns."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from test_report_support import HOSTILE, hostile_events, quarter_result, result_of

from forewarn.audit.formats import csv_format


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_one_row_per_finding_with_the_json_fields() -> None:
    result = quarter_result()
    rows = _rows(csv_format.render(result))
    assert len(rows) == len(result.findings)
    for row, finding in zip(rows, result.findings, strict=True):
        data = finding.to_json()
        for column in ("rule", "status", "severity", "problem", "subject", "customer", "message"):
            assert row[column] == data[column]
        assert row["due"] == data["due"] and row["sent"] == (data["sent"] or "")
        assert row["evidence"].split() == data["evidence"]
        assert row["retroactive"] == ("true" if finding.retroactive else "false")


def test_header_names_the_columns_and_every_row_the_period() -> None:
    rows = _rows(csv_format.render(quarter_result()))
    assert list(rows[0])[:13] == list(csv_format.FINDING_COLUMNS)
    assert {(r["period_since"], r["period_until"], r["as_of"]) for r in rows} == {
        ("2026-07-01T00:00:00Z", "2026-10-01T00:00:00Z", "2026-10-08T00:00:00Z")
    }


def test_waived_rows_carry_the_justification() -> None:
    waived = [r for r in _rows(csv_format.render(quarter_result())) if r["status"] == "waived"]
    assert waived and all(r["waiver"] and r["waiver_reason"] and r["waiver_approved_by"] for r in waived)


def test_quotes_markup_and_defuses_formulas(tmp_path: Path) -> None:
    rows = _rows(csv_format.render(result_of(hostile_events(), tmp_path)))
    assert HOSTILE in {r["customer"] for r in rows}
    assert csv_format._defuse("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert csv_format._defuse("mx-1") == "mx-1"
