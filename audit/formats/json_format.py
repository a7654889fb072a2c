"""`--format json`: the machine-readable verdict of cli.md (byte-identical for the same inputs)."""

from __future__ import annotations

import json

from forewarn.audit.findings import AuditResult


def render(result: AuditResult) -> str:
    return json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n"
