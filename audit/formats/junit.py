"""`--format junit`: a test case per obligation and per communication check; violations fail."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from xml.sax.saxutils import escape, quoteattr

from forewarn import __version__
from forewarn.audit.findings import AuditResult, Finding, utc
from forewarn.audit.formats.stats import Case, iter_cases, period_text
from forewarn.calendar import holidays_version
from forewarn.policy.schema import SEVERITY_ORDER


def _attrs(**values: object) -> str:
    return "".join(f" {k}={quoteattr(str(v))}" for k, v in values.items())


def case_name(case: Case) -> str:
    """A stable, readable test name: what, for whom, when due."""
    if case.kind == "obligation" and case.outcome is not None:
        kind = case.outcome.kind.replace("_", " ")
        return f"{case.subject} {kind} to {case.customer}, due {utc(case.due)}"
    if case.kind == "alarm":
        return f"{case.subject} overrun, {case.customer}, due {utc(case.due)}"
    return f"{case.subject} to {case.customer}" + (f" about {case.about}" if case.about else "")


def _details(findings: Iterable[Finding]) -> str:
    lines = []
    for f in findings:
        lines.append(f"[{f.severity}] {f.problem}: {f.message}")
        lines.append(f"  due {utc(f.due)}; sent {utc(f.sent) or '-'}; communication {f.communication or '-'}")
        lines.append(f"  evidence: {' '.join(f.evidence)}")
    return "\n".join(lines)


def _waiver_text(f: Finding) -> str:
    by = f" (approved by {f.waiver_approved_by})" if f.waiver_approved_by else ""
    late = ", granted after the due time" if f.retroactive else ""
    return f"waived by {f.waiver}{late}: {f.waiver_reason or ''}{by}"


def below(case: Case, fail_on: str) -> bool:
    """A violated case whose violations are all below --fail-on: reported, not a failure."""
    threshold = SEVERITY_ORDER[fail_on]
    violations = [f for f in case.findings if f.status == "violation"]
    return bool(violations) and all(SEVERITY_ORDER.get(f.severity, 0) < threshold for f in violations)


def _failed(case: Case, fail_on: str) -> bool:
    return case.status == "violated" and not below(case, fail_on)


def _skipped(case: Case, fail_on: str) -> bool:
    return case.status in ("waived", "pending") or (case.status == "violated" and below(case, fail_on))


def _body(case: Case, fail_on: str = "low") -> str:
    if case.status == "violated" and below(case, fail_on):
        first = next(f for f in case.findings if f.status == "violation")
        message = f"violation below --fail-on {fail_on}: [{first.severity}] {first.message}"
        return f"<skipped{_attrs(message=message)}>{escape(_details(case.findings))}</skipped>"
    if case.status == "violated":
        first = next((f for f in case.findings if f.status == "violation"), None)
        message, problem = (first.message, first.problem) if first else ("violated", "violated")
        text = escape(_details(case.findings))
        return f"<failure{_attrs(message=message, type=problem)}>{text}</failure>"
    if case.status == "waived":
        return f"<skipped{_attrs(message=_waiver_text(case.findings[0]))}/>"
    if case.status == "pending":
        return f"<skipped{_attrs(message=f'pending: due {utc(case.due)}, after the audit instant')}/>"
    return ""


def _testcase(case: Case, fail_on: str) -> str:
    head = f"<testcase{_attrs(classname=f'forewarn.{case.rule}', name=case_name(case), time='0')}"
    body = _body(case, fail_on)
    return f"    {head}>{body}</testcase>" if body else f"    {head}/>"


def _suite(result: AuditResult, rule_id: str, cases: list[Case], fail_on: str) -> Iterator[str]:
    rule = result.policy.by_id.get(rule_id)
    failures = sum(_failed(c, fail_on) for c in cases)
    skipped = sum(_skipped(c, fail_on) for c in cases)
    attrs = _attrs(
        name=rule_id,
        tests=len(cases),
        failures=failures,
        errors=0,
        skipped=skipped,
        time="0",
        timestamp=(utc(result.as_of) or "").rstrip("Z"),
    )
    yield f"  <testsuite{attrs}>"
    yield "    <properties>"
    props = {
        "severity": rule.severity if rule else "?",
        "title": rule.spec.title if rule else "",
        "period": period_text(result),
        "policy-digest": result.policy.digest,
        "fail-on": fail_on,
    }
    if result.log is not None:
        props |= {"log-seq": str(result.log.seq), "log-head": result.log.head_text}
    for name, value in props.items():
        yield f"      <property{_attrs(name=name, value=value)}/>"
    yield "    </properties>"
    yield from (_testcase(c, fail_on) for c in cases)
    yield "  </testsuite>"


def _comparison_suite(result: AuditResult) -> Iterator[str]:
    """The policy change (audit --compare-rules): each added finding a failure, each removed one a pass."""
    c = result.comparison
    rows = c.rows()
    attrs = _attrs(name="policy-change", tests=len(rows), failures=len(c.added), errors=0, skipped=0, time="0")
    yield f"  <testsuite{attrs}>"
    yield "    <properties>"
    for name, value in (("old-policy", c.old_source), ("old-digest", c.old_digest), ("summary", c.summary())):
        yield f"      <property{_attrs(name=name, value=value)}/>"
    yield "    </properties>"
    for change, f in rows:
        name = f"{change}: {f.rule} {f.problem} {f.subject} {f.customer} due {utc(f.due)}"
        head = f"    <testcase{_attrs(name=name, classname='policy-change.' + f.rule, time='0')}"
        if change == "added":
            failure = f"<failure{_attrs(message=f.message, type=f.problem)}>{escape(f.message)}</failure>"
            yield f"{head}>{failure}</testcase>"
        else:
            yield f"{head}><system-out>{escape('removed by the change: ' + f.message)}</system-out></testcase>"
    yield "  </testsuite>"


def render(result: AuditResult, fail_on: str = "low") -> str:
    """Violations at or above `fail_on` are failures; those below it are skipped with a message saying so
    (and their evidence), as waived and pending cases are: reported, visible, not failing the build."""
    by_rule: dict[str, list[Case]] = defaultdict(list)
    for case in iter_cases(result):
        by_rule[case.rule].append(case)
    order = [r.id for r in result.policy.rules if r.id in by_rule]
    order += [r for r in by_rule if r not in order]
    cases = [c for r in order for c in by_rule[r]]
    versions = f"forewarn {__version__}, holidays {holidays_version()}"
    name = f"forewarn audit ({period_text(result)}; {versions})"
    changes = result.comparison.rows() if result.comparison is not None else []
    attrs = _attrs(
        name=name,
        tests=len(cases) + len(changes),
        failures=sum(_failed(c, fail_on) for c in cases) + sum(change == "added" for change, _f in changes),
        errors=0,
        skipped=sum(_skipped(c, fail_on) for c in cases),
        time="0",
    )
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', f"<testsuites{attrs}>"]
    for rule_id in order:
        lines.extend(_suite(result, rule_id, by_rule[rule_id], fail_on))
    if result.comparison is not None:
        lines.extend(_comparison_suite(result))
    lines.append("</testsuites>")
    return "\n".join(lines) + "\n"
