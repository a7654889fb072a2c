"""Report formats: one module per `--format`, each a function AuditResult -> text."""

from __future__ import annotations

from collections.abc import Callable

from forewarn.audit.findings import AuditResult
from forewarn.audit.formats import csv_format, html, json_format, junit, markdown, sarif, table

FORMATTERS: dict[str, Callable[[AuditResult], str]] = {
    "json": json_format.render,
    "table": table.render,
    "markdown": markdown.render,
    "html": html.render,
    "sarif": sarif.render,
    "junit": junit.render,
    "csv": csv_format.render,
}


def render(fmt: str, result: AuditResult) -> str:
    """The report in format `fmt` (one of FORMATTERS)."""
    return FORMATTERS[fmt](result)
