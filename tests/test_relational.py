"""The relational evaluation (forewarn.relational): scopes, the rules' queries as `rules show --sql` prints them,
spill files, white space, labels and customer terms in force."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from forewarn.cli import main
from forewarn.events import EVENT_ADAPTER
from forewarn.log.source import load_files
from forewarn.policy.loader import load_policy
from forewarn.policy.model import Policy
from forewarn.relational.evaluation import OutcomeKey, evaluate_events, outcome_keys
from forewarn.synth.generate import synthesize
from forewarn.synth.scenario import Shape

ROOT = Path(__file__).resolve().parents[1]
POLICY = load_policy()

def _scoped(policy: Policy, scope: dict[str, object]) -> Policy:
    """`policy` with another scope (what a rules/_scope.yaml says)."""
    return dataclasses.replace(policy, scope=scope)


def _as_of(path: Path) -> datetime:
    return datetime.fromisoformat(json.loads(path.read_text())["as_of"].replace("Z", "+00:00"))


VARIED = {"cust-0001": {"plan": "business"}, "cust-0002": {"labels": {"tier": "gold"}}}
"""Customers of the synthetic quarter (all enterprise, no labels) given other attributes: scopes select them."""


def _events(seed: int) -> tuple[list, datetime]:
    synthetic = synthesize(POLICY, seed, Shape(), violations=2, waiver_share=0.3)
    raw = [{**e, **VARIED.get(str(e.get("customer")), {})} if e["type"] == "customer.upserted" else e
           for e in synthetic.events]
    return sorted((EVENT_ADAPTER.validate_python(e) for e in raw), key=lambda e: e.at), synthetic.as_of


def _judged(events: list, as_of: datetime, policy: Policy) -> tuple[list[OutcomeKey], list[tuple]]:
    """Every obligation's outcome, and every violation as (rule, problem, subject, customer, communication, due)."""
    rel = evaluate_events(events, policy, as_of)
    try:
        found = [(v.rule, v.problem, v.subject, v.customer, v.communication, v.due) for v in rel.violations()]
        return outcome_keys(rel), found
    finally:
        rel.close()


@pytest.mark.parametrize(
    "scope",
    [
        {"customer.plan": ["business", "enterprise"]},
        {"customer.plan": "enterprise", "customer.country": ["US", "DE"]},
        {"customer.labels.tier": {"exists": False}},
    ],
    ids=["two-plans", "plan-and-countries", "no-tier-label"],
)
def test_a_scope_other_than_the_default_selects_its_customers(scope: dict[str, object]) -> None:
    """A customer the scope covers throughout is judged as under the default scope if that covers it throughout
    too (its obligations and findings depend on no other customer), and judged if only this scope covers it;
    one it never covers is not judged at all."""
    events, as_of = _events(3)
    policy = _scoped(POLICY, scope)
    versions: dict[str, list] = {}
    for e in events:
        if e.type == "customer.upserted":
            versions.setdefault(e.customer, []).append(e)
    both = {c for c, vs in versions.items() if all(policy.covers(v) and POLICY.covers(v) for v in vs)}
    wider = {c for c, vs in versions.items() if all(policy.covers(v) and not POLICY.covers(v) for v in vs)}
    never = {c for c, vs in versions.items() if not any(policy.covers(v) for v in vs)}
    assert both and (wider or never)  # the scope differs from the default's on these customers
    outcomes, violations = _judged(events, as_of, policy)
    default_outcomes, default_violations = _judged(events, as_of, POLICY)
    assert [k for k in outcomes if k[3] in both] == [k for k in default_outcomes if k[3] in both]
    assert [v for v in violations if v[3] in both] == [v for v in default_violations if v[3] in both]
    assert wider <= {k[3] for k in outcomes}
    assert not {k[3] for k in outcomes} & never and not {v[3] for v in violations} & never


def test_rules_show_sql_prints_the_queries_with_the_rules_values_bound_not_pasted() -> None:
    from click.testing import CliRunner

    from forewarn.cli import main

    for rule in POLICY.rules:
        result = CliRunner().invoke(main, ["rules", "show", rule.id, "--sql"])
        assert result.exit_code == 0, result.output
        body = [line for line in result.output.splitlines() if not line.startswith("-- ")]
        text = "\n".join(body)
        assert "SELECT" in text
        assert rule.id not in text  # the rule's id, kinds and parameter values are bound as $parameters
        for value in rule.params().values():
            assert str(value) not in text or isinstance(value, int)
        if rule.spec.obligation is not None:
            assert "-- obligations" in result.output and "$nb_days" in text
    sender = CliRunner().invoke(main, ["rules", "show", "sender-address", "--sql"]).output
    assert sender.startswith("-- check: sender\n-- parameters: ")
    assert '"support": "enterprise-support@example.com"' in sender.splitlines()[1]


def test_an_audit_leaves_no_spill_files_behind(tmp_path: Path) -> None:
    """DuckDB spills beyond its memory cap to a directory of ours, removed at exit (not ./.tmp)."""
    import os
    import subprocess
    import sys

    spill_root = tmp_path / "tmp"
    spill_root.mkdir()
    env = {**os.environ, "TMPDIR": str(spill_root), "FOREWARN_DUCKDB_MEMORY": "32MB"}
    sample = ROOT / "forewarn" / "samples" / "quarter.jsonl"
    args = [
        "-m",
        "forewarn.cli",
        "audit",
        "--events",
        str(sample),
        "--as-of",
        "2026-04-15T00:00:00Z",
        "--format",
        "json",
    ]
    done = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["summary"]["findings"] == 15
    assert not (tmp_path / ".tmp").exists()
    assert list(spill_root.iterdir()) == []


def _limit_mib(con: object) -> float:
    [(text,)] = con.execute("SELECT current_setting('memory_limit')").fetchall()  # type: ignore[attr-defined]
    number, unit = text.split()
    return float(number) * {"MiB": 1, "GiB": 1024}[unit]


@pytest.mark.parametrize(
    ("events", "mib"), [(781_538, 183.1), (3_260_829, 298.0), (8_084_734, 740.0), (80_000_000, 768.0)]
)
def test_a_large_logs_evaluation_gets_more_buffer_up_to_a_bound(
    events: int, mib: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reference log's evaluation keeps the default buffer; larger ones get MEMORY_PER_EVENT per event, up to
    MEMORY_MOST; a limit set in FOREWARN_DUCKDB_MEMORY stands whatever the size."""
    from forewarn.relational import tables

    monkeypatch.delenv("FOREWARN_DUCKDB_MEMORY", raising=False)
    con = tables.connect()
    try:
        tables.fit_memory(con, events)
        assert _limit_mib(con) == pytest.approx(mib, abs=1.0)
        monkeypatch.setenv("FOREWARN_DUCKDB_MEMORY", "64MB")
        tables.fit_memory(con, events * 10)
        assert _limit_mib(con) == pytest.approx(mib, abs=1.0)
    finally:
        tables.close(con)


@pytest.mark.parametrize("blank", ["\u2003", "\u00a0\n", "\x1c", " \u3000 "])
def test_a_stated_impact_of_unicode_white_space_is_missing(tmp_path: Path, blank: str) -> None:
    """"Stated" means non-empty after Python's str.strip (every white space str.isspace admits)."""
    fixture = ROOT / "rules" / "fixtures" / "notice-content" / "ok-complete-notices.jsonl"
    as_of = _as_of(fixture.with_name("ok-complete-notices.expected.json"))
    log = tmp_path / "blank.jsonl"
    log.write_text(fixture.read_text().replace('"impact": "Search may be slow"', json.dumps({"impact": blank})[1:-1]))
    _outcomes, complete = _judged(load_files([fixture], POLICY.ids), as_of, POLICY)
    _outcomes, blanked = _judged(load_files([log], POLICY.ids), as_of, POLICY)
    assert "impact-missing" not in {v[1] for v in complete}
    assert "impact-missing" in {v[1] for v in blanked}


def _event_log(tmp_path: Path, events: list[dict]) -> Path:
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def _rules_with(tmp_path: Path, name: str, old: str, new: str) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    path = rules / f"{name}.yaml"
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    return rules


def _customer(cid: str, **labels: str) -> dict:
    return {"id": f"c-{cid}", "type": "customer.upserted", "at": "2026-01-01T00:00:00Z", "customer": cid,
            "name": cid, "plan": "enterprise", "contacts": [f"ops@{cid}.example"], "labels": labels}


def _notice(n: int, cid: str, at: str, sender: str = "enterprise-support@example.com") -> dict:
    return {"id": f"n-{n}", "type": "communication.sent", "at": at, "communication": f"n-{n}", "customer": cid,
            "to": [f"ops@{cid}.example"], "from": sender, "kind": "advance_notice", "subject": "s",
            "maintenance": "mx-1"}


def _audit_reports(rules: Path, log: Path, found: list) -> None:
    """`forewarn audit` (the rules directory, the JSONL) reports the evaluation's violations as its findings."""
    args = ["audit", "--events", str(log), "--rules", str(rules), "--as-of", "2026-03-20", "--format", "json"]
    audited = CliRunner().invoke(main, args)
    assert audited.exit_code == 1, audited.output
    findings = json.loads(audited.stdout)["findings"]
    assert sorted((f["rule"], f["problem"], f["subject"], f["customer"]) for f in findings) == sorted(
        (v.rule, v.problem, v.subject, v.customer) for v in found
    )


def test_a_checks_subject_labels_are_those_in_force_when_sent(tmp_path: Path) -> None:
    rules = _rules_with(tmp_path, "notice-content", "      notifiable: true\n",
                        "      notifiable: true\n      labels.service: api\n")
    scheduled = {"id": "s-mx-1", "type": "maintenance.scheduled", "at": "2026-03-02T10:00:00Z",
                 "maintenance": "mx-1", "title": "mx-1", "start": "2026-03-10T08:00:00Z",
                 "end": "2026-03-10T10:00:00Z", "customers": ["acme"], "impact": "degraded",
                 "impact_summary": "slow", "labels": {"service": "api"}}
    events = [_customer("acme"), scheduled, _notice(1, "acme", "2026-03-02T11:00:00Z"),
              {"id": "r-1", "type": "maintenance.rescheduled", "at": "2026-03-03T00:00:00Z", "maintenance": "mx-1",
               "start": "2026-03-10T08:00:00Z", "end": "2026-03-10T10:00:00Z", "labels": {"service": "web"}},
              _notice(2, "acme", "2026-03-03T11:00:00Z"),
              {"id": "r-2", "type": "maintenance.rescheduled", "at": "2026-03-04T00:00:00Z", "maintenance": "mx-1",
               "start": "2026-03-10T08:00:00Z", "end": "2026-03-10T10:00:00Z"},
              _notice(3, "acme", "2026-03-04T11:00:00Z")]
    log = _event_log(tmp_path, events)
    found = evaluate_events(load_files([log]), load_policy(rules), datetime(2026, 3, 20, tzinfo=UTC)).violations()
    assert sorted({v.subject for v in found if v.rule == "notice-content"}) == ["n-1"]
    _audit_reports(rules, log, found)


def test_a_checks_customer_terms_select_its_findings_and_cases(tmp_path: Path) -> None:
    rules = _rules_with(tmp_path, "sender-address", "  - kinds: all\n",
                        "  - kinds: all\n    where:\n      customer.labels.tier: premium\n")
    scheduled = {"id": "s-mx-1", "type": "maintenance.scheduled", "at": "2026-03-02T10:00:00Z",
                 "maintenance": "mx-1", "title": "mx-1", "start": "2026-03-10T08:00:00Z",
                 "end": "2026-03-10T10:00:00Z", "customers": ["acme", "globex"], "impact": "degraded",
                 "impact_summary": "slow"}
    events = [_customer("acme", tier="premium"), _customer("globex", tier="standard"), scheduled,
              _notice(1, "acme", "2026-03-03T07:00:00Z", "someone@example.com"),
              _notice(2, "globex", "2026-03-03T07:00:00Z", "someone@example.com")]
    log = _event_log(tmp_path, events)
    found = evaluate_events(load_files([log]), load_policy(rules), datetime(2026, 3, 20, tzinfo=UTC)).violations()
    assert [v.customer for v in found if v.rule == "sender-address"] == ["acme"]
    _audit_reports(rules, log, found)


def test_every_white_space_code_point_is_below_the_bound_the_blank_pattern_scans() -> None:
    import sys

    from forewarn.relational.checks import SPACES_BELOW

    assert [c for c in range(SPACES_BELOW, sys.maxunicode + 1) if chr(c).isspace()] == []
    assert chr(SPACES_BELOW - 1).isspace()  # the bound is tight: U+3000 is one
