"""policy.md's "Settled readings" and the subject of a premature closing (its Finding section), each on a log."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from forewarn.audit.findings import Finding, audit
from forewarn.log.source import load_files
from forewarn.policy.loader import load_policy

POLICY = load_policy()
AS_OF = datetime.fromisoformat("2026-03-20T00:00:00Z")
SUPPORT = "enterprise-support@example.com"
FIXTURES = Path(__file__).resolve().parents[1] / "rules" / "fixtures"


def customer(at: str = "2026-01-01T00:00:00Z", plan: str = "enterprise", eid: str = "e-acme") -> dict[str, object]:
    return {"id": eid, "type": "customer.upserted", "at": at, "customer": "acme", "name": "Acme", "plan": plan,
            "contacts": ["ops@acme.example"]}


def scheduled(**extra: object) -> dict[str, object]:
    return {"id": "e-mx", "type": "maintenance.scheduled", "at": "2026-03-02T10:00:00Z", "maintenance": "mx-1",
            "title": "Work", "start": "2026-03-10T08:00:00Z", "end": "2026-03-10T10:00:00Z", "customers": ["acme"],
            "impact": "degraded", "impact_summary": "slow", **extra}


def comm(cid: str, at: str, kind: str, **extra: object) -> dict[str, object]:
    return {"id": f"e-{cid}", "type": "communication.sent", "at": at, "communication": cid, "customer": "acme",
            "to": ["ops@acme.example"], "from": SUPPORT, "kind": kind, "maintenance": "mx-1", "subject": kind,
            **extra}


def event(eid: str, kind: str, at: str, **extra: object) -> dict[str, object]:
    return {"id": eid, "type": kind, "at": at, "maintenance": "mx-1", **extra}


def findings(tmp_path: Path, events: list[dict[str, object]], rule: str | None = None) -> list[Finding]:
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    result = audit(load_files([path], POLICY.ids), POLICY, AS_OF)
    return [f for f in result.findings if rule is None or f.rule == rule]


# ------------------------------------------------------------------ premature closing: its subject --


def premature_log() -> list[dict[str, object]]:
    text = (FIXTURES / "closing-notice" / "ruleid-premature.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def waiver(subject: str, at: str = "2026-03-11T00:00:00Z") -> dict[str, object]:
    return {"id": f"e-w-{subject}", "type": "waiver.granted", "at": at, "waiver": f"w-{subject}",
            "rule": "closing-notice", "subject": subject, "reason": "early all-clear agreed", "approved_by": "ops"}


def test_a_premature_closing_names_the_maintenance_and_the_mail(tmp_path: Path) -> None:
    (found,) = findings(tmp_path, premature_log(), "closing-notice")
    assert (found.problem, found.subject, found.communication, found.status) == (
        "premature", "mx-1", "c-premature", "violation")


def test_a_waiver_for_the_maintenance_covers_a_premature_closing(tmp_path: Path) -> None:
    (found,) = findings(tmp_path, [*premature_log(), waiver("mx-1")], "closing-notice")
    assert (found.problem, found.status, found.waiver, found.retroactive) == ("premature", "waived", "w-mx-1", True)
    # a waiver naming the closing mail is about a communication, not the maintenance: it covers nothing here
    (found,) = findings(tmp_path, [*premature_log(), waiver("c-premature")], "closing-notice")
    assert (found.problem, found.status) == ("premature", "violation")


# ---------------------------------------------------------------------------- settled readings --


def test_addresses_compare_case_insensitively(tmp_path: Path) -> None:
    events = [
        customer(),
        scheduled(),
        comm("c-1", "2026-03-02T10:05:00Z", "advance_notice", **{"from": "Enterprise-Support@EXAMPLE.com"}),
        {"id": "e-r", "type": "reply.received", "at": "2026-03-03T10:00:00Z", "reply": "r-1", "customer": "acme",
         "in_reply_to": "c-1", "from": "ops@acme.example", "to": ["ENTERPRISE-support@example.COM"]},
    ]
    assert findings(tmp_path, events, "sender-address") == []
    assert findings(tmp_path, events, "reply-routing") == []
    events[-1] = {**events[-1], "to": ["someone-else@example.com"]}  # the check does work
    assert [f.problem for f in findings(tmp_path, events, "reply-routing")] == ["origin-missing"]


def test_the_plan_at_the_trigger_decides_a_later_downgrade_does_not_void(tmp_path: Path) -> None:
    downgraded = customer("2026-03-05T00:00:00Z", "basic", "e-acme-2")  # after the trigger, before the deadline
    got = findings(tmp_path, [customer(), scheduled(), downgraded], "advance-notice")
    assert [(f.problem, f.subject, f.customer) for f in got] == [("missing", "mx-1", "acme")]
    # and the other way round: enterprise only after the trigger owes nothing
    upgraded = customer("2026-03-05T00:00:00Z", "enterprise", "e-acme-2")
    assert findings(tmp_path, [customer(plan="basic"), scheduled(), upgraded], "advance-notice") == []


def extended_log() -> list[dict[str, object]]:
    return [
        customer(),
        scheduled(),
        event("e-st", "maintenance.started", "2026-03-10T08:00:00Z"),
        event("e-x1", "maintenance.extended", "2026-03-10T09:50:00Z", reason="disk",
              next_update_by="2026-03-10T10:50:00Z"),
        comm("c-1", "2026-03-10T09:55:00Z", "extension",
             states={"reason": "disk", "next_update_by": "2026-03-10T10:50:00Z"}),
        event("e-x2", "maintenance.extended", "2026-03-10T10:00:00Z", reason="more disk", end="2026-03-10T12:00:00Z",
              next_update_by="2026-03-10T10:50:00Z"),
        comm("c-2", "2026-03-10T10:05:00Z", "extension",
             states={"reason": "more disk", "end": "2026-03-10T12:00:00Z", "next_update_by": "2026-03-10T10:50:00Z"}),
        comm("c-3", "2026-03-10T10:45:00Z", "extension",  # the update both extensions promised
             states={"reason": "still copying", "next_update_by": "2026-03-10T11:30:00Z"}),
        event("e-done", "maintenance.completed", "2026-03-10T11:20:00Z", healthy=True),
        comm("c-4", "2026-03-10T11:25:00Z", "closing"),
    ]


def test_one_communication_may_satisfy_the_promised_updates_of_several_extensions(tmp_path: Path) -> None:
    # x1 is answered by c-1 and x2 by c-2; c-3 is the promised update of both (each counts c-2/c-3 or c-1..c-3).
    assert findings(tmp_path, extended_log(), "update-cadence") == []
    without = [e for e in extended_log() if e.get("communication") != "c-3"]
    assert sorted(f.problem for f in findings(tmp_path, without, "update-cadence")) == ["missing"]  # x2: c-2 only


def test_a_communication_recorded_at_the_same_instant_but_earlier_counts(tmp_path: Path) -> None:
    events = extended_log()
    x1, c1 = events[3], events[4]
    events[3:5] = [{**c1, "at": x1["at"]}, x1]  # c-1 at the instant of x1, and recorded before it
    assert [e["id"] for e in events[3:5]] == ["e-c-1", "e-x1"]
    assert findings(tmp_path, events, "extension-notice") == []
    assert findings(tmp_path, events, "update-cadence") == []


def test_an_extension_notice_with_only_next_update_by_after_an_end_is_no_end_mismatch(tmp_path: Path) -> None:
    # c-3 follows x2, which gave an end, and states only next_update_by
    assert findings(tmp_path, extended_log(), "notice-content") == []
    stated_wrong = extended_log()
    stated_wrong[7] = {**stated_wrong[7], "states": {**stated_wrong[7]["states"], "end": "2026-03-10T13:00:00Z"}}
    assert [f.problem for f in findings(tmp_path, stated_wrong, "notice-content")] == ["end-mismatch"]
