"""`forewarn rules test`: each rule's fixtures judged by the policy, compared with their expected findings.

A policy directory keeps, beside its rule files, `fixtures/<rule id>/` with event logs:
`ruleid-*.jsonl` must trigger the rule, `ok-*.jsonl` must not, and each log's
`*.expected.json` (`{"as_of": T, "findings": [...]}`) lists the findings of that rule
expected as of T. Findings are compared by (rule, problem, subject, customer), the
identity of a finding; the rest of a finding (message, due, evidence) is the
report's, not the fixture's.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from forewarn.policy.files import default_rules_dir
from forewarn.policy.loader import load_policy
from forewarn.policy.model import Policy

FindingKey = tuple[str, str, str, str]  # rule, problem, subject, customer
KEY_FIELDS = ("rule", "problem", "subject", "customer")


@dataclass
class FixtureResult:
    """One fixture's verdict."""

    rule: str
    path: Path
    missing: list[FindingKey] = field(default_factory=list)  # expected, not found
    extra: list[FindingKey] = field(default_factory=list)  # found, not expected
    errors: list[str] = field(default_factory=list)  # the fixture itself is wrong (bad log, bad expectation)

    @property
    def name(self) -> str:
        return f"{self.rule}/{self.path.stem}"

    @property
    def passed(self) -> bool:
        return not (self.missing or self.extra or self.errors)

    def to_json(self) -> dict[str, object]:
        return {
            "fixture": self.name,
            "file": str(self.path),
            "passed": self.passed,
            "missing": [dict(zip(KEY_FIELDS, k, strict=True)) for k in self.missing],
            "extra": [dict(zip(KEY_FIELDS, k, strict=True)) for k in self.extra],
            "errors": self.errors,
        }


def fixture_paths(directory: Path) -> list[Path]:
    """Every fixture log of a policy directory, in a stable order."""
    return sorted((directory / "fixtures").glob("*/*.jsonl"))


def expected_path(case: Path) -> Path:
    return case.with_name(case.name.removesuffix(".jsonl") + ".expected.json")


def run_fixture(case: Path, policy: Policy) -> FixtureResult:
    """Judge one fixture log with `policy` and compare the rule's findings with the expected ones."""
    from forewarn.instants import parse_instant
    from forewarn.log.source import InputErrors, load_files
    from forewarn.relational.audit import audit_events

    rule = case.parent.name
    result = FixtureResult(rule, case)
    if policy.get(rule) is None:
        result.errors.append(f"{case.parent}: no rule {rule!r} in this policy")
        return result
    stem = case.stem
    if not stem.startswith(("ruleid-", "ok-")):
        result.errors.append(f"{case.name}: a fixture's name starts with ruleid- (must trigger) or ok- (must not)")
        return result
    expected_file = expected_path(case)
    try:
        expected = json.loads(expected_file.read_text(encoding="utf-8"))
        as_of = parse_instant(str(expected["as_of"]))
        want = [tuple(str(f[k]) for k in KEY_FIELDS) for f in expected["findings"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        result.errors.append(f"{expected_file}: {type(exc).__name__}: {exc}")
        return result
    if stem.startswith("ok-") and want:
        result.errors.append(f"{expected_file.name}: an ok- fixture expects no finding of its rule")
    if stem.startswith("ruleid-") and not want:
        result.errors.append(f"{expected_file.name}: a ruleid- fixture expects at least one finding of its rule")
    if any(k[0] != rule for k in want):
        result.errors.append(f"{expected_file.name}: expects findings of another rule than {rule!r}")
    try:
        events = load_files([case], policy.ids)
    except InputErrors as exc:
        result.errors.extend(str(e) for e in exc.errors)
        return result
    findings = [f for f in audit_events(events, policy, as_of, detail=()).findings if f.rule == rule]
    got = [(f.rule, f.problem, f.subject, f.customer) for f in findings]
    named = {  # the communication a finding names, where the fixture says which
        tuple(str(f[k]) for k in KEY_FIELDS): f["communication"] for f in expected["findings"] if "communication" in f
    }
    for f in findings:
        key = (f.rule, f.problem, f.subject, f.customer)
        if key in named and f.communication != named[key]:
            result.errors.append(f"{'/'.join(key)}: names communication {f.communication!r}, expected {named[key]!r}")
    want_count, got_count = Counter(want), Counter(got)
    result.missing = sorted((want_count - got_count).elements())  # type: ignore[arg-type]
    result.extra = sorted((got_count - want_count).elements())
    return result


def run_fixtures(directory: str | Path | None = None) -> tuple[Policy, list[FixtureResult]]:
    """The policy of `directory` (PolicyError if it is bad) and every fixture's result."""
    policy = load_policy(directory)
    return policy, run_fixtures_of(policy, directory)


def run_fixtures_of(policy: Policy, directory: str | Path | None = None) -> list[FixtureResult]:
    """Every fixture's result under `policy` (loaded from `directory`, default the project's rules/)."""
    root = Path(directory) if directory is not None else default_rules_dir()
    return [run_fixture(case, policy) for case in fixture_paths(root)]


def coverage_gaps(policy: Policy, directory: str | Path | None = None) -> list[str]:
    """Rules without an ok- fixture, or whose ruleid- fixtures do not produce each of their problems."""
    root = Path(directory) if directory is not None else default_rules_dir()
    gaps = []
    for rule in policy.rules:
        cases = sorted((root / "fixtures" / rule.id).glob("*.jsonl"))
        if not any(c.stem.startswith("ok-") for c in cases):
            gaps.append(f"{rule.id}: no ok- fixture")
        triggered: set[str] = set()
        for c in cases:
            if c.stem.startswith("ruleid-"):
                try:
                    triggered |= {f["problem"] for f in json.loads(expected_path(c).read_text())["findings"]}
                except (OSError, ValueError, KeyError, TypeError):
                    continue
        untested = sorted(set(rule.spec.problems) - triggered)
        if untested:
            gaps.append(f"{rule.id}: no ruleid- fixture reports {', '.join(untested)}")
    return gaps


def report_lines(results: list[FixtureResult]) -> list[str]:
    """Each fixture's result, with the findings missing and extra (or the fixture's errors) on failure."""
    lines = []
    for r in results:
        lines.append(f"{'PASS' if r.passed else 'FAIL'}  {r.name}")
        lines.extend(f"      error: {e}" for e in r.errors)
        lines.extend(f"      missing: {_show(k)}" for k in r.missing)
        lines.extend(f"      extra:   {_show(k)}" for k in r.extra)
    return lines


def _show(key: FindingKey) -> str:
    rule, problem, subject, customer = key
    return f"{rule} {problem} subject={subject} customer={customer}"
