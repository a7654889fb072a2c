"""Late, not never (policy.md, "The engine and deadlines already passed"): a missed obligation is sent as
soon as the engine can, marked late in the decision log, with an alert; a rule's `late: alert` only alerts."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner
from test_engine_faults import NOW, make_log

from forewarn.audit.findings import audit
from forewarn.cli import main
from forewarn.engine.replay import MemoryDelivery
from forewarn.engine.runner import Engine
from forewarn.log.source import read_store
from forewarn.log.store import EventStore
from forewarn.policy.loader import load_policy
from forewarn.policy.model import Policy

RULES = Path(__file__).resolve().parent.parent / "rules"
BACK = NOW + timedelta(hours=2)  # the incident notice was due within the hour: the engine was down


def incident_notices(db: Path) -> list:
    store = EventStore(db)
    sent = [e for e in read_store(store) if e.type == "communication.sent" and e.kind == "incident"]
    store.close()
    return sent


def policy_with(tmp_path: Path, rule: str, line: str) -> tuple[Path, Policy]:
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules, ignore=shutil.ignore_patterns("__pycache__"))
    path = rules / f"{rule}.yaml"
    path.write_text(path.read_text(encoding="utf-8") + f"{line}\n", encoding="utf-8")
    return rules, load_policy(rules)


def test_a_missed_notice_is_sent_late_marked_and_alerted(tmp_path: Path) -> None:
    db = make_log(tmp_path, 2)
    engine = Engine(EventStore(db), load_policy(), MemoryDelivery())
    plan = engine.plan(BACK)
    assert sorted(d.obligation.rule for d in plan.due if d.late) == ["incident-notice"] * 2  # due, late
    missed = [a for a in plan.alerts if a.problem == "missed"]
    assert len(missed) == 2 and all("sends it late" in a.message for a in missed)
    result = engine.run_once(BACK)
    notices = incident_notices(db)
    assert len(notices) == 2 and {c.communication for c in notices} <= set(result.sent)
    for c in notices:
        (late,) = c.meta["forewarn"]["late"]
        assert late.startswith("incident-notice/incident:inc-1/")
    assert sorted(a.problem for a in result.alerts) == ["sent-late", "sent-late"]
    store = EventStore(db)
    findings = audit(read_store(store), load_policy(), BACK + timedelta(hours=1)).findings
    store.close()
    assert sorted((f.rule, f.problem) for f in findings) == [("incident-notice", "late")] * 2  # late, not missing
    assert not [a for a in engine.plan(BACK + timedelta(minutes=1)).alerts if a.problem == "missed"]
    assert engine.run_once(BACK + timedelta(minutes=1)).sent == []  # once


def test_late_alert_only_alerts(tmp_path: Path) -> None:
    db = make_log(tmp_path, 1)
    rules, policy = policy_with(tmp_path, "incident-notice", "late: alert")
    assert policy.by_id["incident-notice"].late == "alert"
    engine = Engine(EventStore(db), policy, MemoryDelivery())
    result = engine.run_once(BACK)
    assert incident_notices(db) == [] and not [a for a in result.alerts if a.problem == "sent-late"]
    missed = [a for a in engine.plan(BACK).alerts if a.problem == "missed"]
    assert len(missed) == 1 and "contact the customer" in missed[0].message
    code = CliRunner().invoke(main, ["run", "--once", "--now", BACK.isoformat(), "--db", str(db),
                                     "--rules", str(rules), "--outbox", str(tmp_path / "out")])
    assert code.exit_code == 0 and incident_notices(db) == []
    planned = CliRunner().invoke(main, ["plan", "--db", str(db), "--rules", str(rules), "--as-of", BACK.isoformat(),
                                        "--format", "json"])
    assert [a["problem"] for a in json.loads(planned.stdout)["alerts"]] == ["missed"]


def test_late_must_be_send_or_alert(tmp_path: Path) -> None:
    rules, _ = policy_with(tmp_path, "ticket-opened", "late: send")
    (rules / "incident-notice.yaml").write_text(
        (rules / "incident-notice.yaml").read_text(encoding="utf-8") + "late: never\n", encoding="utf-8"
    )
    result = CliRunner().invoke(main, ["rules", "lint", str(rules)])
    assert result.exit_code == 2
    assert "incident-notice.yaml" in result.stdout and "late" in result.stdout
    assert "ticket-opened" not in result.stdout
