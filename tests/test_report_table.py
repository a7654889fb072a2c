"""`--format table` and `--format markdown`: the verdict, per-rule summary and findings by rule."""

from __future__ import annotations

from pathlib import Path

from test_report_support import HOSTILE, hostile_events, quarter_result, result_of

from forewarn.audit.formats import markdown, stats, table


def test_table_opens_with_the_period_and_the_verdict() -> None:
    text = table.render(quarter_result())
    first, second = text.splitlines()[:2]
    assert "2026-07-01T00:00:00Z to 2026-10-01T00:00:00Z" in first
    report = stats.build(quarter_result())
    assert second.startswith(f"compliance {stats.rate_text(report.total.tally.rate)}")


def test_table_has_a_row_per_rule_and_a_section_per_rule_with_findings() -> None:
    result = quarter_result()
    text = table.render(result)
    for rule in result.policy.rules:
        assert f"│ {rule.id} " in text
    for rule_id, findings in stats.findings_by_rule(result).items():
        noun = "finding" if len(findings) == 1 else "findings"
        assert f"{rule_id} ({result.policy.by_id[rule_id].severity}): {len(findings)} {noun}" in text
    assert "late" in text and "waived (W-" in text


def test_table_prints_markup_in_data_literally(tmp_path: Path) -> None:
    text = table.render(result_of(hostile_events(), tmp_path), width=400)
    assert HOSTILE in text  # rich would otherwise eat "[bold]" as a style


def test_markdown_has_the_verdict_summary_findings_and_policy() -> None:
    result = quarter_result()
    text = markdown.render(result)
    assert text.startswith("# Customer notification compliance review\n")
    assert "Period: due from 2026-07-01T00:00:00Z to 2026-10-01T00:00:00Z (exclusive)." in text
    for heading in ("## Compliance by rule", "## Findings", "## Waivers", "## Policy in force"):
        assert heading in text
    assert f"`{result.policy.digest}`" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    widths = {line.count(" | ") for line in rows if "---" not in line}
    assert widths <= {7, 4, 3}  # 8-, 5- and 4-column tables, no broken rows


def test_markdown_escapes_cells(tmp_path: Path) -> None:
    text = markdown.render(result_of(hostile_events(), tmp_path))
    assert "<script>" not in text and "</script>" not in text
    assert 'con"toso\\<script\\>' not in text  # the id's markup is escaped...
    assert "\\</script\\>" in text  # ...as literal characters


def test_markdown_lists_every_finding_below_the_cap() -> None:
    result = quarter_result()
    capped = markdown.render(result)
    assert capped.count("\n| violation |") + capped.count("\n| waived (") == len(result.findings)
