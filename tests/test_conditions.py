"""Labels on events, the condition table (one interpreter of `where` and `scope`), the policy scope
in the rule files, and the examples of docs/examples/rules."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from forewarn.audit.findings import audit
from forewarn.cli import main
from forewarn.lifecycle.rules import compile_rules
from forewarn.log.source import InputErrors, import_files, load_files, read_store
from forewarn.log.store import EventStore
from forewarn.policy.conditions import ATTRIBUTES, compile_condition, problems
from forewarn.policy.loader import default_rules_dir, lint_directory, load_policy

RULES = default_rules_dir()
EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples" / "rules"
AS_OF = datetime(2026, 3, 20, tzinfo=UTC)


def _copy(tmp_path: Path, source: Path = RULES) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(source, target)
    return target


def _write(path: Path, events: list[dict]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def _customer(cid: str, plan: str = "enterprise", **labels: str) -> dict:
    event = {"id": f"c-{cid}", "type": "customer.upserted", "at": "2026-01-01T00:00:00Z", "customer": cid,
             "name": cid, "plan": plan, "contacts": [f"ops@{cid}.example"]}
    if labels:
        event["labels"] = labels
    return event


def _maintenance(mid: str, customers: list[str], **labels: str) -> dict:
    event = {"id": f"s-{mid}", "type": "maintenance.scheduled", "at": "2026-03-02T10:00:00Z", "maintenance": mid,
             "title": mid, "start": "2026-03-10T08:00:00Z", "end": "2026-03-10T10:00:00Z", "customers": customers,
             "impact": "degraded", "impact_summary": "slow"}
    if labels:
        event["labels"] = labels
    return event


# -- labels on events ------------------------------------------------------------------


BAD_LABELS = [
    ({"Tier": "premium"}, "label name 'Tier' must match [a-z0-9][a-z0-9._-]{0,62}"),
    ({"tier": ""}, "label 'tier': must be 1-200 characters"),
    ({"tier": "x" * 201}, "label 'tier': must be 1-200 characters"),
    ({"tier": 3}, "label 'tier': must be a string, got int"),
    ({f"k{i}": "v" for i in range(33)}, "at most 32 labels, got 33"),
    (["tier"], "must be an object of label names to strings"),
]


@pytest.mark.parametrize(("labels", "message"), BAD_LABELS)
def test_bad_labels_are_input_errors_with_file_line_and_field(tmp_path: Path, labels: object, message: str) -> None:
    bad = _customer("acme")
    bad["labels"] = labels
    path = _write(tmp_path / "log.jsonl", [_customer("globex"), bad])
    with pytest.raises(InputErrors) as caught:
        load_files([path])
    assert [str(e) for e in caught.value.errors] == [f"{path}:2: customer.upserted 'c-acme': field 'labels': {message}"]
    store = EventStore(tmp_path / "log.db")
    try:
        with pytest.raises(InputErrors) as again:  # the streaming import
            import_files(store, [path])
    finally:
        store.close()
    assert [str(e) for e in again.value.errors] == [str(e) for e in caught.value.errors]


def test_labels_are_accepted_on_the_five_event_types_and_by_the_streaming_import(tmp_path: Path) -> None:
    events = [
        _customer("acme", tier="premium"),
        _maintenance("mx-1", ["acme"], service="api", **{"team.name": "db-1"}),
        {"id": "r-1", "type": "maintenance.rescheduled", "at": "2026-03-03T00:00:00Z", "maintenance": "mx-1",
         "start": "2026-03-11T08:00:00Z", "end": "2026-03-11T10:00:00Z", "labels": {"service": "web"}},
        {"id": "i-1", "type": "incident.declared", "at": "2026-03-03T00:00:00Z", "incident": "in-1", "title": "t",
         "severity": "critical", "customers": "all", "summary": "s", "labels": {"service": "api"}},
        {"id": "rel-1", "type": "release.scheduled", "at": "2026-03-03T00:00:00Z", "release": "rel-1", "title": "t",
         "release_at": "2026-03-20T00:00:00Z", "customers": "all", "labels": {"train": "2026.3"}},
    ]
    path = _write(tmp_path / "log.jsonl", events)
    loaded = load_files([path])
    assert [getattr(e, "labels", None) for e in loaded] == [e.get("labels") for e in events]
    store = EventStore(tmp_path / "log.db")
    try:
        import_files(store, [path])
        stored = {e.id: getattr(e, "labels", None) for e in read_store(store)}
    finally:
        store.close()
    assert stored == {e["id"]: e.get("labels") for e in events}


# -- the condition table -----------------------------------------------------------------


def test_the_table_has_the_attributes_policy_md_names() -> None:
    names = {a.name for a in ATTRIBUTES}
    for name in ("customer.plan", "customer.country", "customer.subdivision", "customer.timezone",
                 "customer.labels.*", "impact", "emergency", "release", "severity", "labels.*"):
        assert name in names


def test_one_meaning_of_a_test() -> None:
    acme = type("Customer", (), {"plan": "enterprise", "labels": {"tier": "premium"}, "country": None})()
    cond = compile_condition({"customer.labels.tier": "premium", "impact": ["degraded", "interruption"],
                              "emergency": False, "labels.service": {"exists": True}})
    subject = {"impact": "degraded", "emergency": False, "labels": {"service": "api"}}
    assert cond.holds(subject, acme)
    assert not cond.holds({**subject, "emergency": 0}, acme)  # false is not 0
    assert not cond.holds({**subject, "labels": {}}, acme)
    assert not cond.holds({**subject, "impact": "none"}, acme)
    assert not compile_condition({"customer.country": {"exists": True}}).holds({}, acme)
    assert compile_condition({"customer.country": {"exists": False}}).holds({}, acme)
    assert not compile_condition({"customer.labels.tier": "standard"}).holds({}, acme)
    # the compiled customer predicate (what the scope runs) means what the terms mean
    for where in ({"customer.plan": "enterprise"}, {"customer.plan": ["free", "enterprise"]}, {"customer.plan": "free"},
                  {"customer.labels.tier": ["premium"]}, {"customer.labels.tier": "premium", "customer.plan": "free"},
                  {"customer.country": {"exists": False}}, {"customer.labels.x": {"exists": True}}, {}):
        c = compile_condition(where)
        assert c.customer_predicate(acme) == all(t.holds(acme) for t in c.on_customer), where


def test_misspelt_attributes_are_listed_with_did_you_mean(tmp_path: Path) -> None:
    rules = _copy(tmp_path)
    path = rules / "advance-notice.yaml"
    path.write_text(path.read_text().replace("    emergency: false\n", "    emergency: false\n"
                                             "    customer.labels.tier: premium\n    custmer.plan: enterprise\n"
                                             "    severity: critical\n", 1))
    errors = [str(e) for e in lint_directory(rules)[1]]
    assert len(errors) == 2, errors
    assert "advance-notice.yaml:26: unknown-key: no attribute 'custmer.plan' can be tested here; did you mean " \
           "'customer.plan'?; attributes: impact, emergency, release, notifiable, labels.NAME, end, " \
           "next_update_by, version, customer.plan, customer.country, customer.subdivision, customer.timezone, " \
           "customer.labels.NAME" in errors[0]
    assert "no attribute 'severity' can be tested here (an attribute of an incident, not of a maintenance)" in errors[1]
    assert problems({"customer.plan": "gold"}, "scope", None) == [
        ("customer.plan", "customer.plan: 'gold' is not one of free, basic, business, enterprise")
    ]
    assert problems({"labels.Service": "api"}, "obligation", "maintenance") == [
        ("labels.Service", "labels.Service: a label name matches [a-z0-9][a-z0-9._-]{0,62} (labels are lower case), "
                           "so this never matches")
    ]
    from forewarn.events.models import LABEL_KEY_PATTERN
    from forewarn.policy.conditions import LABEL_NAME_PATTERN

    assert LABEL_NAME_PATTERN == LABEL_KEY_PATTERN
    scope_problem = problems({"impact": "x"}, "scope", None)[0][1]
    assert scope_problem.startswith("no attribute 'impact' can be tested here (a customer attribute; a scope tests")


def test_the_rete_routes_moments_by_type_and_leaves_conditions_to_the_table() -> None:
    compiled = compile_rules(load_policy(), [])
    assert {key for rule in compiled for key in rule.where} <= {"type", "timer"}


def test_a_subject_label_selects_the_same_subjects_for_an_obligation_and_a_check(tmp_path: Path) -> None:
    rules = _copy(tmp_path)
    edits = (("advance-notice.yaml", "    emergency: false\n"), ("notice-content.yaml", "      notifiable: true\n"))
    for name, old in edits:
        path = rules / name
        indent = old[: len(old) - len(old.lstrip())]
        path.write_text(path.read_text().replace(old, old + f"{indent}labels.service: api\n", 1))
    events = [_customer("acme"), _maintenance("mx-api", ["acme"], service="api"), _maintenance("mx-web", ["acme"])]
    for mid in ("mx-api", "mx-web"):  # late and stating nothing: both rules have something to say
        events.append({"id": f"n-{mid}", "type": "communication.sent", "at": "2026-03-10T07:00:00Z",
                       "communication": f"n-{mid}", "customer": "acme", "to": ["ops@acme.example"],
                       "from": "enterprise-support@example.com", "kind": "advance_notice", "subject": "s",
                       "maintenance": mid})
    result = audit(load_files([_write(tmp_path / "log.jsonl", events)]), load_policy(rules), AS_OF)
    by_rule = {(f.rule, f.subject) for f in result.findings if f.rule in ("advance-notice", "notice-content")}
    assert by_rule == {("advance-notice", "mx-api"), ("notice-content", "n-mx-api")}


# -- the scope ---------------------------------------------------------------------------


def test_the_scope_is_read_from_the_rule_files(tmp_path: Path) -> None:
    events = [_customer("acme"), _customer("bizco", plan="business"), _maintenance("mx-1", ["acme", "bizco"])]
    log = load_files([_write(tmp_path / "log.jsonl", events)])
    shipped = load_policy()
    assert {f.customer for f in audit(log, shipped, AS_OF).findings} == {"acme"}
    rules = _copy(tmp_path)
    (rules / "_scope.yaml").write_text("description: Business and enterprise.\n"
                                       "customers:\n  customer.plan: [business, enterprise]\n")
    wider = load_policy(rules)
    assert wider.digest != shipped.digest
    assert {f.customer for f in audit(log, wider, AS_OF).findings} == {"acme", "bizco"}
    (rules / "_scope.yaml").unlink()  # no scope file: the default, enterprise
    assert load_policy(rules).digest == shipped.digest


def test_a_bad_scope_is_a_bad_policy(tmp_path: Path) -> None:
    rules = _copy(tmp_path)
    (rules / "_scope.yaml").write_text("description: x\ncustomers:\n  customer.plna: enterprise\n")
    run = CliRunner().invoke(main, ["rules", "lint", str(rules)])
    assert run.exit_code == 2
    assert "_scope.yaml:3: unknown-key: no attribute 'customer.plna' can be tested here; did you mean " \
           "'customer.plan'?" in run.output


# -- the examples ------------------------------------------------------------------------


def test_the_examples_pass_their_fixtures() -> None:
    run = CliRunner().invoke(main, ["rules", "test", str(EXAMPLES)])
    assert run.exit_code == 0, run.output
    assert "14 of 14 fixture(s) pass" in run.output
    assert "PASS  premium-advance-notice/ruleid-late" in run.output
    assert "PASS  api-early-reminder/ruleid-relabelled-onto-the-api-by-a-reschedule" in run.output


def test_a_customer_term_on_a_check_selects_its_findings_and_the_cases_the_reports_count(tmp_path: Path) -> None:
    from forewarn.audit.formats.stats import build, iter_cases

    rules = _copy(tmp_path)
    path = rules / "sender-address.yaml"
    path.write_text(path.read_text().replace("  - kinds: all\n", "  - kinds: all\n    where:\n"
                                             "      customer.labels.tier: premium\n", 1))
    events = [_customer("acme", tier="premium"), _customer("globex", tier="standard"),
              _maintenance("mx-1", ["acme", "globex"])]
    for cid in ("acme", "globex"):
        events.append({"id": f"n-{cid}", "type": "communication.sent", "at": "2026-03-03T07:00:00Z",
                       "communication": f"n-{cid}", "customer": cid, "to": [f"ops@{cid}.example"],
                       "from": "someone@example.com", "kind": "other", "subject": "s", "maintenance": "mx-1"})
    result = audit(load_files([_write(tmp_path / "log.jsonl", events)]), load_policy(rules), AS_OF)
    assert [(f.rule, f.customer) for f in result.findings if f.rule == "sender-address"] == [
        ("sender-address", "acme")
    ]
    cases = [c for c in iter_cases(result) if c.rule == "sender-address"]
    assert [(c.subject, c.status) for c in cases] == [("n-acme", "violated")]
    tally = dict((r.id, g.tally) for r, g in build(result).rules)["sender-address"]
    assert (tally.met, tally.violated) == (0, 1)


def test_a_check_sees_the_subjects_labels_in_force_when_the_communication_was_sent(tmp_path: Path) -> None:
    rules = _copy(tmp_path)
    path = rules / "notice-content.yaml"
    path.write_text(path.read_text().replace("      notifiable: true\n", "      notifiable: true\n"
                                             "      labels.service: api\n", 1))
    events = [_customer("acme"), _maintenance("mx-1", ["acme"], service="api")]

    def notice(n: int, at: str) -> dict:
        return {"id": f"n-{n}", "type": "communication.sent", "at": at, "communication": f"n-{n}",
                "customer": "acme", "to": ["ops@acme.example"], "from": "enterprise-support@example.com",
                "kind": "advance_notice", "subject": "s", "maintenance": "mx-1"}

    events += [
        notice(1, "2026-03-02T11:00:00Z"),
        {"id": "r-1", "type": "maintenance.rescheduled", "at": "2026-03-03T00:00:00Z", "maintenance": "mx-1",
         "start": "2026-03-10T08:00:00Z", "end": "2026-03-10T10:00:00Z", "labels": {"service": "web"}},
        notice(2, "2026-03-03T11:00:00Z"),
        {"id": "r-2", "type": "maintenance.rescheduled", "at": "2026-03-04T00:00:00Z", "maintenance": "mx-1",
         "start": "2026-03-10T08:00:00Z", "end": "2026-03-10T10:00:00Z"},  # no labels: they stay
        notice(3, "2026-03-04T11:00:00Z"),
    ]
    result = audit(load_files([_write(tmp_path / "log.jsonl", events)]), load_policy(rules), AS_OF)
    assert sorted({f.subject for f in result.findings if f.rule == "notice-content"}) == ["n-1"]
