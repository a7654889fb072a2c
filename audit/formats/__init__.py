"""Report formats: one module per `--format`, each a function AuditResult -> text.

FORMATS is the one list of formats: the command line's `--format` choices and its `--output-FORMAT`
options are made from it. A format's module is imported only when it is used (the command line
starts without loading Jinja2 or rich).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forewarn.audit.findings import AuditResult


@dataclass(frozen=True)
class Format:
    name: str
    module: str  # in forewarn.audit.formats
    extension: str
    purpose: str
    follows_fail_on: bool = False  # a finding below --fail-on is reported but not as a failure


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("table", "table", "txt", "the terminal: verdict, compliance per rule, findings by rule"),
        Format("json", "json_format", "json", "scripts: summary, findings, pending obligations"),
        Format("markdown", "markdown", "md", "a review ticket or wiki page"),
        Format("html", "html", "html", "the reviewer: one self-contained page with charts and filters"),
        Format("sarif", "sarif", "sarif", "code-scanning dashboards (SARIF 2.1.0)", follows_fail_on=True),
        Format("junit", "junit", "xml", "CI test reports (JUnit XML)", follows_fail_on=True),
        Format("csv", "csv_format", "csv", "spreadsheets: one row per finding"),
    )
}


def formatter(fmt: str) -> Callable[..., str]:
    return import_module(f"forewarn.audit.formats.{FORMATS[fmt].module}").render  # type: ignore[no-any-return]


class _Formatters(Mapping[str, Callable[..., str]]):
    """FORMATS' render functions by name, each module imported on first use."""

    def __getitem__(self, fmt: str) -> Callable[..., str]:
        return formatter(fmt)

    def __iter__(self) -> Iterator[str]:
        return iter(FORMATS)

    def __len__(self) -> int:
        return len(FORMATS)


FORMATTERS: Mapping[str, Callable[..., str]] = _Formatters()


def render(fmt: str, result: AuditResult, fail_on: str = "low") -> str:
    """The report in format `fmt` (one of FORMATS); formats that follow `fail_on` report findings below
    that severity without failing."""
    if FORMATS[fmt].follows_fail_on:
        return formatter(fmt)(result, fail_on=fail_on)
    return formatter(fmt)(result)
