"""`--format sarif`: SARIF 2.1.0: one rule per policy rule and one result per finding."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import orjson

from forewarn import __version__
from forewarn.audit.findings import AuditResult, Finding, utc
from forewarn.audit.formats.stats import period_text, subject_kinds
from forewarn.calendar import holidays_version
from forewarn.policy.model import Rule
from forewarn.policy.schema import SEVERITY_ORDER

SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note"}
SECURITY_SEVERITY = {"critical": "9.0", "high": "7.0", "medium": "5.0", "low": "2.0"}


def _name(rule: Rule) -> str:
    """PascalCase of the rule id (SARIF's reportingDescriptor.name)."""
    return "".join(part.capitalize() for part in re.split(r"[^a-z0-9]+", rule.id) if part)


def _rule(rule: Rule) -> dict[str, object]:
    meta = rule.spec.metadata
    also = f" (see also {meta.also})" if meta.also else ""
    help_text = f"{meta.section}: \u201c{meta.clause}\u201d{also}"
    params = rule.params()
    return {
        "id": rule.id,
        "name": _name(rule),
        "shortDescription": {"text": rule.spec.title},
        "fullDescription": {"text": rule.why()},
        "help": {
            "text": f"{help_text}\n\n{rule.why()}",
            "markdown": f"**{meta.section}**: *{meta.clause}*\n\n{rule.why()}",
        },
        "defaultConfiguration": {"level": LEVEL.get(rule.severity, "warning")},
        "messageStrings": {problem: {"text": text} for problem, text in rule.spec.problems.items()},
        "properties": {
            "severity": rule.severity,
            "section": meta.section,
            "clause": meta.clause,
            "parameters": params,
            "security-severity": SECURITY_SEVERITY.get(rule.severity, "5.0"),
            "tags": ["customer-notification", rule.severity],
        },
    }


def _fingerprint(f: Finding) -> str:
    parts = (f.rule, f.problem, f.subject, f.customer, utc(f.due) or "", f.communication or "")
    key = "\x1f".join(parts)
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _locations(f: Finding, rule: Rule | None, kind: str) -> list[dict[str, object]]:
    logical = [
        {"name": f.subject, "fullyQualifiedName": f"{kind}/{f.subject}", "kind": kind},
        {"name": f.customer, "fullyQualifiedName": f"customer/{f.customer}", "kind": "customer"},
    ]
    location: dict[str, object] = {
        "logicalLocations": logical,
        "message": {"text": f"{kind} {f.subject}, customer {f.customer}"},
    }
    if rule is not None:  # code-scanning consumers want a file: the rule that was broken
        location["physicalLocation"] = {
            "artifactLocation": {"uri": Path(rule.path).name, "uriBaseId": "POLICY"},
            "region": {"startLine": 1},
        }
    return [location]


def _suppression(f: Finding) -> dict[str, object]:
    return {
        "kind": "external",
        "status": "accepted",
        "justification": f.waiver_reason or f"waiver {f.waiver}",
        "properties": {
            "waiver": f.waiver,
            "approvedBy": f.waiver_approved_by,
            "retroactive": f.retroactive,
        },
    }


def level(f: Finding, fail_on: str) -> str:
    """The result's level: by severity at or above --fail-on; `note` below it (reported, not failing)."""
    if SEVERITY_ORDER.get(f.severity, 0) < SEVERITY_ORDER[fail_on]:
        return "note"
    return LEVEL.get(f.severity, "warning")


def _result(
    f: Finding, index: dict[str, int], rules: dict[str, Rule], kind: str, fail_on: str = "low"
) -> dict[str, object]:
    rule = rules.get(f.rule)
    out: dict[str, object] = {
        "ruleId": f.rule,
        "level": level(f, fail_on),
        "kind": "fail",
        "message": {"text": f.message},
        "locations": _locations(f, rule, kind),
        "partialFingerprints": {"forewarnFinding/v1": _fingerprint(f)},
        "properties": {
            "status": f.status,
            "severity": f.severity,
            "problem": f.problem,
            "subject": f.subject,
            "customer": f.customer,
            "communication": f.communication,
            "due": utc(f.due),
            "sent": utc(f.sent),
            "evidence": list(f.evidence),
        },
    }
    if f.rule in index:
        out["ruleIndex"] = index[f.rule]
    if f.waiver:
        out["suppressions"] = [_suppression(f)]
    return out


def _period_id(result: AuditResult) -> str:
    return f"{utc(result.since) or 'start'}..{utc(result.until) or utc(result.as_of)}"


def sarif_log(result: AuditResult, fail_on: str = "low") -> dict[str, object]:
    """The SARIF log as a dict (one run); findings below `fail_on` are at level `note`."""
    policy = result.policy
    index = {r.id: i for i, r in enumerate(policy.rules)}
    kinds = subject_kinds(result)
    period = period_text(result)
    run: dict[str, object] = {
        "tool": {
            "driver": {
                "name": "forewarn",
                "version": __version__,
                "semanticVersion": __version__,
                "fullName": "forewarn customer-notification policy auditor",
                "rules": [_rule(r) for r in policy.rules],
            }
        },
        "automationDetails": {
            "id": f"forewarn-audit/{_period_id(result)}",
            "description": {"text": f"Notification audit, {period}"},
        },
        "invocations": [
            {
                "executionSuccessful": True,
                "endTimeUtc": utc(result.as_of),
                "properties": {
                    "asOf": utc(result.as_of),
                    "since": utc(result.since),
                    "until": utc(result.until),
                    "period": period,
                    "failOn": fail_on,
                },
            }
        ],
        "originalUriBaseIds": {"POLICY": {"description": {"text": "the policy directory (--rules)"}}},
        "results": _results(result, index, kinds, fail_on),
        "columnKind": "unicodeCodePoints",
        "properties": {
            "policyDigest": policy.digest,
            "holidays": holidays_version(),
            "period": period,
            **({"log": result.log.to_json()} if result.log is not None else {}),
            **({"comparison": result.comparison.to_json()} if result.comparison is not None else {}),
        },
    }
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def _results(result: AuditResult, index: dict[str, int], kinds: Any, fail_on: str) -> list[dict[str, Any]]:
    """The findings; with --compare-rules, each with its SARIF baselineState against the old policy
    ("new" or "unchanged"), and the findings the change removed as "absent" results."""
    by_id = result.policy.by_id
    out = [_result(f, index, by_id, kinds(f), fail_on) for f in result.findings]
    c = result.comparison
    if c is None:
        return out
    added = {id(f) for f in c.added}
    for f, r in zip(result.findings, out, strict=True):
        r["baselineState"] = "new" if id(f) in added else "unchanged"
    for f in c.removed:
        gone = _result(f, index, by_id, kinds(f), fail_on)  # a rule the policy dropped has no ruleIndex
        gone["baselineState"] = "absent"
        out.append(gone)
    return out


def render(result: AuditResult, fail_on: str = "low") -> str:
    return orjson.dumps(sarif_log(result, fail_on), option=orjson.OPT_INDENT_2).decode("utf-8") + "\n"
