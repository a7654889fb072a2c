"""`forewarn explain`: the obligation's moments, window, deadline arithmetic, candidates, waivers, outcome."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from forewarn.cli import main
from forewarn.policy.loader import default_rules_dir

FIXTURES = default_rules_dir() / "fixtures"
EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples" / "rules"


def _run(*args: str) -> tuple[int, str]:
    run = CliRunner().invoke(main, ["explain", *args])
    return run.exit_code, run.output


def _log(tmp_path: Path, events: list[dict]) -> str:
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return str(path)


def _customer(cid: str, tz: str, country: str | None) -> dict:
    event = {"id": f"c-{cid}", "type": "customer.upserted", "at": "2026-01-01T00:00:00Z", "customer": cid,
             "name": cid, "plan": "enterprise", "timezone": tz, "contacts": [f"ops@{cid}.example"]}
    if country:
        event["country"] = country
    return event


def _sent(n: int, at: str, kind: str = "advance_notice", customer: str = "acme") -> dict:
    return {"id": f"s-{n}", "type": "communication.sent", "at": at, "communication": f"c-{n}", "customer": customer,
            "to": ["ops@x.example"], "from": "enterprise-support@example.com", "kind": kind, "subject": "s",
            "maintenance": "mx-1"}


def test_holidays_skipped_are_named_and_the_late_notice_is_the_candidate_counted() -> None:
    log = str(FIXTURES / "advance-notice" / "ruleid-easter-holidays.jsonl")
    code, out = _run("--events", log, "--rule", "advance-notice", "--subject", "mx-1", "--as-of", "2026-04-20")
    assert code == 0, out
    assert "== acme: VIOLATED (late)" in out
    assert "opened by: maintenance.scheduled e4 at Mon 2026-03-30 12:00 CEST" in out
    assert ("1 business day before Tue 2026-04-07 10:00 CEST = Thu 2026-04-02 10:00 CEST (Fri 2026-04-03 Good "
            "Friday, Sat 2026-04-04, Sun 2026-04-05, Mon 2026-04-06 Easter Monday not business days)") in out
    assert "+ c-5 advance_notice sent Fri 2026-04-03 10:00 CEST: counted as late: 1d after the window" in out


def test_the_clock_change_is_explained_and_every_candidate_has_its_reason(tmp_path: Path) -> None:
    events = [
        _customer("acme", "America/New_York", "US"),
        {"id": "m", "type": "maintenance.scheduled", "at": "2026-03-02T00:00:00Z", "maintenance": "mx-1",
         "title": "t", "start": "2026-03-09T06:00:00Z", "end": "2026-03-09T07:00:00Z", "customers": ["acme"],
         "impact": "interruption", "impact_summary": "down"},
        _sent(1, "2026-03-02T12:00:00Z", "start_reminder"),
        _sent(2, "2026-03-03T12:00:00Z"),
        _sent(3, "2026-03-04T12:00:00Z"),
        {"id": "w", "type": "waiver.granted", "at": "2026-03-05T00:00:00Z", "waiver": "w-1", "rule": "start-reminder",
         "subject": "mx-1", "reason": "the reminder went out early on purpose", "approved_by": "cto"},
    ]
    log = _log(tmp_path, events)
    code, out = _run("--events", log, "--rule", "advance-notice", "--subject", "mx-1", "--as-of", "2026-03-20")
    assert code == 0, out
    assert "== acme: MET" in out
    assert "1 business day before Mon 2026-03-09 02:00 EDT = Fri 2026-03-06 02:00 EST (Sat 2026-03-07" in out
    assert "the clocks changed between the deadline (EST) and the anchor (EDT) by 1h" in out
    assert "- c-1 start_reminder sent" in out and "a start_reminder does not fulfil it (needs advance_notice)" in out
    assert "+ c-2 advance_notice sent Tue 2026-03-03 07:00 EST: counted: sent within the window" in out
    assert "- c-3 advance_notice sent" in out and "not needed: the obligation was met by earlier" in out
    code, out = _run("--events", log, "--rule", "start-reminder", "--subject", "mx-1", "--as-of", "2026-03-20")
    assert "== acme: WAIVED (early)" in out, out
    assert "waiver:    w-1 (the reminder went out early on purpose; approved by cto): covers this obligation" in out
    assert "counted as early" in out


def test_a_notice_before_a_reschedule_does_not_count_for_the_new_window(tmp_path: Path) -> None:
    events = [
        _customer("acme", "UTC", None),
        {"id": "m", "type": "maintenance.scheduled", "at": "2026-03-02T00:00:00Z", "maintenance": "mx-1",
         "title": "t", "start": "2026-03-09T06:00:00Z", "end": "2026-03-09T07:00:00Z", "customers": ["acme"],
         "impact": "degraded", "impact_summary": "slow"},
        _sent(1, "2026-03-03T12:00:00Z"),
        {"id": "r", "type": "maintenance.rescheduled", "at": "2026-03-04T00:00:00Z", "maintenance": "mx-1",
         "start": "2026-03-16T06:00:00Z", "end": "2026-03-16T07:00:00Z"},
    ]
    code, out = _run("--events", _log(tmp_path, events), "--rule", "advance-notice", "--subject", "mx-1",
                     "--customer", "acme", "--as-of", "2026-03-20")
    assert code == 0, out
    assert "== acme: VOID" in out and "void:      window superseded at 2026-03-04T00:00:00+00:00" in out
    assert "== acme: VIOLATED (missing)" in out
    assert "sent before the obligation opened (Wed 2026-03-04 00:00 UTC)" in out
    assert "1 business day before Mon 2026-03-16 06:00 UTC = Fri 2026-03-13 06:00 UTC (Sat 2026-03-14, Sun " \
           "2026-03-15 not business days); counted in the calendar of Mon-Fri, UTC" in out


def test_json_and_why_nothing_is_owed() -> None:
    log = str(EXAMPLES / "fixtures" / "api-early-reminder" / "ok-not-the-api.jsonl")
    code, out = _run("--rules", str(EXAMPLES), "--events", log, "--rule", "api-early-reminder", "--subject", "mx-1",
                     "--as-of", "2026-03-20", "--format", "json")
    assert code == 0, out
    found = json.loads(out)
    assert found["obligations"] == [] and found["findings"] == []
    assert found["notes"] == ["maintenance.scheduled at 2026-03-02T10:00:00Z: the rule's condition does not hold "
                              "(labels.service is web, needs = api)"]
    code, out = _run("--rules", str(EXAMPLES), "--events", log, "--rule", "api-early-remindr", "--subject", "mx-1")
    assert code == 2 and "did you mean 'api-early-reminder'?" in out


def test_the_html_report_shows_each_findings_explain_command() -> None:
    log = str(FIXTURES / "advance-notice" / "ruleid-easter-holidays.jsonl")
    run = CliRunner().invoke(main, ["audit", "--events", log, "--as-of", "2026-04-20", "--format", "html"])
    assert run.exit_code == 1
    assert ("forewarn explain --rule advance-notice --subject mx-1 --customer acme --as-of 2026-04-20T00:00:00Z"
            in run.output)


def test_per_communication_rules_say_what_applies() -> None:
    log = str(FIXTURES / "ticket-opened" / "ruleid-late.jsonl")

    def notes(rule: str, as_of: str = "2026-04-01") -> list[str]:
        code, out = _run("--events", log, "--rule", rule, "--subject", "c-x", "--as-of", as_of, "--format", "json")
        assert code == 0, out
        return json.loads(out)["notes"]

    assert notes("sender-address") == ["c-x passed the checks of sender-address that apply to it"]
    assert notes("notice-content") == ["no check of notice-content applies to c-x (a other)"]
    assert notes("ticket-opened", "2026-03-02T10:06:00Z") == [
        "c-x: the checks of ticket-opened apply; its verdict is due 10 min after it was sent, after the as-of: pending"
    ]
    _code, out = _run("--events", log, "--rule", "ticket-opened", "--subject", "c-x", "--as-of", "2026-04-01")
    assert "violation late acme due 2026-03-02T10:15:00Z: the ticket for other c-x to acme was opened 1m after" in out
