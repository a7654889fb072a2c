"""The auditor end to end: the shared example, exit codes, output files, waivers, as-of, edge cases."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from forewarn.audit.findings import audit
from forewarn.cli import main
from forewarn.log.source import load_files
from forewarn.policy.loader import load_policy

SHARED = Path(__file__).resolve().parents[2] / "shared" / "examples"
BASIC = Path(__file__).resolve().parents[1] / "forewarn" / "samples" / "basic.jsonl"
POLICY = load_policy()


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def write_log(path: Path, events: list[dict]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_shared_example_gives_exactly_the_expected_findings() -> None:
    source = SHARED / "basic.jsonl" if (SHARED / "basic.jsonl").exists() else BASIC  # else the bundled copy
    expected = json.loads(source.with_name("basic.expected.json").read_text())
    code, out, _ = run("audit", "--events", str(source), "--as-of", expected["as_of"], "--format", "json")
    report = json.loads(out)
    got = [{k: f[k] for k in ("rule", "status", "problem", "subject", "customer")} for f in report["findings"]]
    assert got == expected["findings"]
    assert code == expected["exit_status"]
    assert report["findings"][0]["due"] == "2026-10-19T22:00:00Z"
    assert report["findings"][0]["message"] == (
        "advance notice to contoso for mx-1 sent 1h30m after its deadline "
        "(1 business day before Tue 2026-10-20 17:00 CDT)"
    )
    assert report["policy"]["digest"].startswith("sha256:")
    assert report["versions"]["holidays"]


def test_json_is_byte_identical_across_runs_and_from_db_or_file(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    assert run("import", str(BASIC), "--db", str(db))[0] == 0
    a = run("audit", "--events", str(BASIC), "--as-of", "2026-10-22T00:00:00Z", "--format", "json")[1]
    b = run("audit", "--events", str(BASIC), "--as-of", "2026-10-22T00:00:00Z", "--format", "json")[1]
    c = run("audit", "--db", str(db), "--as-of", "2026-10-22T00:00:00Z", "--format", "json")[1]
    assert a == b == c


def test_exit_codes_and_fail_on(tmp_path: Path) -> None:
    assert run("audit", "--events", str(BASIC), "--as-of", "2026-10-22T00:00:00Z")[0] == 1
    # the worst violation is high: --fail-on critical passes
    assert run("audit", "--events", str(BASIC), "--as-of", "2026-10-22T00:00:00Z", "--fail-on", "critical")[0] == 0
    # before anything was due there is nothing to report
    assert run("audit", "--events", str(BASIC), "--as-of", "2026-10-12T14:30:00Z")[0] == 0
    assert run("audit", "--events", str(tmp_path / "nope.jsonl"))[0] == 2
    assert run("audit", "--events", str(BASIC), "--as-of", "yesterday")[0] == 2
    code, _, err = run("audit", "--events", str(BASIC), "--as-of", "2026-10-22T00:00:00")
    assert code == 2 and "no UTC offset" in err


def test_output_file_only_when_the_audit_ran(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    code, stdout, stderr = run(
        "audit", "--events", str(BASIC), "--as-of", "2026-10-22T00:00:00Z", "--format", "json", "-o", str(out)
    )
    assert code == 1 and stdout == "" and "findings" in stderr
    assert json.loads(out.read_text())["summary"]["findings"] == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n')
    failed = tmp_path / "failed.json"
    code, _, stderr = run("audit", "--events", str(bad), "--format", "json", "-o", str(failed))
    assert code == 2 and not failed.exists() and "bad.jsonl:1:" in stderr


def test_events_option_refuses_a_database_and_db_refuses_jsonl(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    run("import", str(BASIC), "--db", str(db))
    code, _, err = run("audit", "--events", str(db))
    assert code == 2 and f"use --db {db}" in err
    code, _, err = run("audit", "--db", str(BASIC))
    assert code == 2 and f"use --events {BASIC}" in err


def _base_log() -> list[dict]:
    return [json.loads(line) for line in BASIC.read_text().splitlines()]


def test_waivers_waive_and_say_when_retroactive(tmp_path: Path) -> None:
    events = _base_log()
    # granted before the notice was due: a waiver in advance, not retroactive
    events.append(
        {
            "id": "w1",
            "type": "waiver.granted",
            "at": "2026-10-19T10:00:00Z",
            "waiver": "wv-1",
            "rule": "advance-notice",
            "subject": "mx-1",
            "customer": "contoso",
            "reason": "window agreed with the customer by phone",
            "approved_by": "cdm@example.com",
        }
    )
    # granted after the fact (for every customer of that communication)
    events.append(
        {
            "id": "w2",
            "type": "waiver.granted",
            "at": "2026-10-21T09:00:00Z",
            "waiver": "wv-2",
            "rule": "sender-address",
            "subject": "c-6",
            "reason": "mail relay misconfigured",
            "approved_by": "ops lead",
        }
    )
    log = write_log(tmp_path / "w.jsonl", events)
    code, out, _ = run("audit", "--events", str(log), "--as-of", "2026-10-22T00:00:00Z", "--format", "json")
    report = json.loads(out)
    assert code == 0  # waived findings never count as violations
    by_rule = {f["rule"]: f for f in report["findings"]}
    assert by_rule["advance-notice"]["status"] == "waived" and by_rule["advance-notice"]["waiver"] == "wv-1"
    assert by_rule["advance-notice"]["retroactive"] is False
    assert by_rule["sender-address"]["status"] == "waived" and by_rule["sender-address"]["retroactive"] is True
    assert "w2" in by_rule["sender-address"]["evidence"]
    assert report["summary"]["waived"] == 1 and report["summary"]["violated"] == 0


def test_waiver_for_an_unknown_rule_is_an_input_error(tmp_path: Path) -> None:
    events = _base_log()
    events.append(
        {
            "id": "w1",
            "type": "waiver.granted",
            "at": "2026-10-21T09:00:00Z",
            "waiver": "wv-1",
            "rule": "advance-notise",
            "subject": "mx-1",
            "reason": "r",
            "approved_by": "a",
        }
    )
    code, _, err = run("audit", "--events", str(write_log(tmp_path / "w.jsonl", events)))
    assert code == 2 and "advance-notice" in err


def test_as_of_pending_then_violated() -> None:
    events = load_files([BASIC], POLICY.ids)
    # Oct 19 12:00Z: contoso's notice is due 22:00Z and not yet sent: pending, no finding
    early = audit(events, POLICY, at("2026-10-19T12:00:00Z"))
    assert not [f for f in early.findings if f.rule == "advance-notice"]
    assert any(p["customer"] == "contoso" for p in early.pending_json() if p["rule"] == "advance-notice")
    # Oct 19 23:00Z: past the deadline, still nothing sent: missing
    mid = audit(events, POLICY, at("2026-10-19T23:00:00Z"))
    assert [(f.problem, f.customer) for f in mid.findings if f.rule == "advance-notice"] == [("missing", "contoso")]
    # later facts turn it late
    late = audit(events, POLICY, at("2026-10-22T00:00:00Z"))
    assert [(f.problem, f.customer) for f in late.findings if f.rule == "advance-notice"] == [("late", "contoso")]


def test_out_of_order_file_audits_like_the_sorted_one(tmp_path: Path) -> None:
    events = _base_log()
    shuffled = write_log(tmp_path / "shuffled.jsonl", list(reversed(events[3:])) + events[:3])
    a = run("audit", "--events", str(BASIC), "--as-of", "2026-10-22T00:00:00Z", "--format", "json")[1]
    b = run("audit", "--events", str(shuffled), "--as-of", "2026-10-22T00:00:00Z", "--format", "json")[1]
    assert json.loads(a)["findings"] == json.loads(b)["findings"]


def test_period_restricts_findings_by_due_time() -> None:
    _, out, _ = run(
        "audit",
        "--events",
        str(BASIC),
        "--as-of",
        "2026-10-22T00:00:00Z",
        "--format",
        "json",
        "--since",
        "2026-10-20T00:00:00Z",
        "--until",
        "2026-10-21",
    )
    report = json.loads(out)
    assert [f["rule"] for f in report["findings"]] == ["sender-address"]
    assert report["since"] == "2026-10-20T00:00:00Z" and report["until"] == "2026-10-21T00:00:00Z"
    assert run("audit", "--events", str(BASIC), "--since", "2026-10-21", "--until", "2026-10-20")[0] == 2


CUSTOMERS = [
    {
        "id": "c1",
        "type": "customer.upserted",
        "at": "2026-01-01T00:00:00Z",
        "customer": "ny",
        "name": "NY",
        "plan": "enterprise",
        "timezone": "America/New_York",
        "country": "US",
        "contacts": ["a@ny.example"],
    },
    {
        "id": "c2",
        "type": "customer.upserted",
        "at": "2026-01-01T00:00:00Z",
        "customer": "tlv",
        "name": "TLV",
        "plan": "enterprise",
        "timezone": "Asia/Jerusalem",
        "country": "IL",
        "contacts": ["a@tlv.example"],
    },
]


def _notice(cid: str, customer: str, sent: str, start: str, end: str) -> dict:
    return {
        "id": f"e-{cid}",
        "type": "communication.sent",
        "at": sent,
        "communication": cid,
        "customer": customer,
        "to": [f"a@{customer}.example"],
        "from": "enterprise-support@example.com",
        "kind": "advance_notice",
        "maintenance": "mx-9",
        "subject": "s",
        "states": {"window_start": start, "window_end": end, "impact": "slow"},
    }


@pytest.mark.parametrize(
    ("customer", "sent", "problem"),
    [
        # Mon 2026-03-09 02:00 EDT (DST began Sun): due Fri 2026-03-06 02:00 EST = 07:00Z
        ("ny", "2026-03-06T07:00:00Z", None),
        ("ny", "2026-03-06T07:01:00Z", "late"),
        # Israel: Fri-Sat weekend. Mon 02:00 IST window -> due Sun 2026-03-08 02:00 IST = 00:00Z
        ("tlv", "2026-03-08T00:00:00Z", None),
        ("tlv", "2026-03-08T00:30:00Z", "late"),
    ],
)
def test_deadline_in_the_customers_own_calendar(tmp_path: Path, customer: str, sent: str, problem: str | None) -> None:
    start, end = (
        ("2026-03-09T06:00:00Z", "2026-03-09T07:00:00Z")
        if customer == "ny"
        else ("2026-03-09T00:00:00Z", "2026-03-09T01:00:00Z")
    )
    events = [
        *CUSTOMERS,
        {
            "id": "m",
            "type": "maintenance.scheduled",
            "at": "2026-03-01T00:00:00Z",
            "maintenance": "mx-9",
            "title": "t",
            "start": start,
            "end": end,
            "customers": [customer],
            "impact": "degraded",
            "impact_summary": "slow",
        },
        _notice("c-9", customer, sent, start, end),
    ]
    policy_events = load_files([write_log(tmp_path / "l.jsonl", events)], POLICY.ids)
    result = audit(policy_events, POLICY, at("2026-03-20T00:00:00Z"))
    got = [f.problem for f in result.findings if f.rule == "advance-notice"]
    assert got == ([problem] if problem else [])


def test_plan_change_over_time_uses_the_plan_at_the_trigger(tmp_path: Path) -> None:
    """A customer downgraded before a reschedule gets no obligation for the new window."""
    events = [
        *CUSTOMERS,
        {
            "id": "m",
            "type": "maintenance.scheduled",
            "at": "2026-03-01T00:00:00Z",
            "maintenance": "mx-9",
            "title": "t",
            "start": "2026-03-20T06:00:00Z",
            "end": "2026-03-20T07:00:00Z",
            "customers": "all",
            "impact": "degraded",
            "impact_summary": "slow",
        },
        {**CUSTOMERS[0], "id": "c1b", "at": "2026-03-02T00:00:00Z", "plan": "business"},
        {
            "id": "r",
            "type": "maintenance.rescheduled",
            "at": "2026-03-03T00:00:00Z",
            "maintenance": "mx-9",
            "start": "2026-03-27T06:00:00Z",
            "end": "2026-03-27T07:00:00Z",
        },
    ]
    result = audit(
        load_files([write_log(tmp_path / "l.jsonl", events)], POLICY.ids), POLICY, at("2026-04-01T00:00:00Z")
    )
    missing = sorted((f.customer, f.due.date().isoformat()) for f in result.findings if f.rule == "advance-notice")
    # version 1 was superseded before its deadline (void); version 2 binds only tlv;
    # the window is on Friday, a weekend day in Israel: due Thu 2026-03-26 00:00 local
    assert missing == [("tlv", "2026-03-25")]  # Fri is a weekend day in IL: Thu 00:00 IST


def test_audit_at_now_is_the_default() -> None:
    code, out, _ = run("audit", "--events", str(BASIC), "--format", "json")
    assert code == 1
    assert json.loads(out)["as_of"] <= datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
