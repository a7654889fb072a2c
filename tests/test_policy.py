"""The policy files: lint reports every problem with file:line, parameters drive behaviour."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from forewarn.audit.findings import audit
from forewarn.cli import main
from forewarn.log.source import load_files
from forewarn.policy.loader import default_rules_dir, lint_directory, load_policy

RULES = default_rules_dir()
FIXTURES = RULES / "fixtures"


def _copy_rules(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    target.mkdir()
    for f in RULES.glob("*.yaml"):
        shutil.copy(f, target / f.name)
    return target


def _lint(directory: Path) -> list[str]:
    return [str(e) for e in lint_directory(directory)[1]]


def test_shipped_policy_is_clean_and_has_the_twelve_rules_of_policy_md() -> None:
    rules, errors = lint_directory(RULES)
    assert errors == []
    assert [r.id for r in rules] == sorted(
        [
            "advance-notice",
            "release-notice",
            "start-reminder",
            "closing-notice",
            "extension-notice",
            "update-cadence",
            "emergency-notice",
            "incident-notice",
            "notice-content",
            "sender-address",
            "ticket-opened",
            "reply-routing",
        ]
    )
    for rule in rules:
        assert rule.spec.metadata.clause and rule.spec.metadata.section


def test_unknown_key_is_reported_with_line_and_did_you_mean(tmp_path: Path) -> None:
    rules = _copy_rules(tmp_path)
    path = rules / "advance-notice.yaml"
    path.write_text(path.read_text().replace("severity: high", "severty: high"))
    errors = _lint(rules)
    assert f"{path}:3: unknown-key: unknown key 'severty' in the rule; did you mean 'severity'?" in errors
    assert f"{path}:1: missing-key: severity: required" in errors


def test_nested_unknown_key_and_bad_enum_value(tmp_path: Path) -> None:
    rules = _copy_rules(tmp_path)
    path = rules / "start-reminder.yaml"
    path.write_text(path.read_text().replace("    impact: interruption", "    impcat: interruption"))
    other = rules / "release-notice.yaml"
    other.write_text(other.read_text().replace("severity: medium", "severity: urgent"))
    errors = "\n".join(_lint(rules))
    assert "unknown-key: no attribute 'impcat' can be tested here; did you mean 'impact'?" in errors
    assert f"{other}:3: invalid-value: severity: 'urgent' is not one of" in errors


def test_undefined_parameter_and_wrong_type(tmp_path: Path) -> None:
    rules = _copy_rules(tmp_path)
    path = rules / "advance-notice.yaml"
    path.write_text(
        path.read_text().replace("business_days_before: $business_days", "business_days_before: $busines_days")
    )
    errors = "\n".join(_lint(rules))
    assert "undefined-param: parameter 'busines_days' is not defined in params; did you mean 'business_days'?" in errors
    assert "unused-param: parameter 'business_days' is never used" in errors


def test_yaml_tags_cannot_execute_code(tmp_path: Path) -> None:
    rules = _copy_rules(tmp_path)
    path = rules / "reply-routing.yaml"
    path.write_text("!!python/object/apply:os.system ['touch pwned']\n" + path.read_text())
    errors = _lint(rules)
    assert any(e.startswith(f"{path}:") and "yaml-syntax" in e for e in errors)
    assert not Path("pwned").exists()


def test_duplicate_keys_and_id_mismatch_are_problems(tmp_path: Path) -> None:
    rules = _copy_rules(tmp_path)
    path = rules / "ticket-opened.yaml"
    path.write_text(
        path.read_text()
        .replace("severity: medium", "severity: medium\nseverity: low")
        .replace("id: ticket-opened", "id: tickets-opened")
    )
    errors = "\n".join(_lint(rules))
    assert f"{path}:4: duplicate-key: key 'severity' appears twice" in errors
    assert "id-mismatch: id 'tickets-opened' must equal the file name 'ticket-opened'" in errors


def test_message_placeholders_are_checked(tmp_path: Path) -> None:
    rules = _copy_rules(tmp_path)
    path = rules / "ticket-opened.yaml"
    path.write_text(path.read_text().replace("opened no ticket", "opened no ticket {customer.__class__}"))
    errors = "\n".join(_lint(rules))
    assert "unknown-placeholder" in errors


def test_lint_command_exits_2_with_file_line_code(tmp_path: Path) -> None:
    rules = _copy_rules(tmp_path)
    (rules / "advance-notice.yaml").write_text("id: [unclosed\n")
    result = CliRunner().invoke(main, ["rules", "lint", str(rules)])
    assert result.exit_code == 2
    assert f"{rules / 'advance-notice.yaml'}:" in result.output and "yaml-syntax" in result.output
    ok = CliRunner().invoke(main, ["rules", "lint", str(RULES)])
    assert ok.exit_code == 0


def test_rules_list_and_show() -> None:
    listed = CliRunner().invoke(main, ["rules", "list"])
    assert listed.exit_code == 0 and "advance-notice" in listed.output and "business_days=1" in listed.output
    shown = CliRunner().invoke(main, ["rules", "show", "sender-address"])
    assert shown.exit_code == 0 and "enterprise-support@example.com" in shown.output
    missing = CliRunner().invoke(main, ["rules", "show", "sender-adress"])
    assert missing.exit_code == 2 and "did you mean 'sender-address'" in missing.output


def _findings(rules_dir: Path | None, case: str, as_of: str) -> set[tuple[str, str, str, str]]:
    policy = load_policy(rules_dir)
    events = load_files([FIXTURES / case], policy.ids)
    result = audit(events, policy, datetime.fromisoformat(as_of.replace("Z", "+00:00")))
    return {(f.rule, f.problem, f.subject, f.customer) for f in result.findings}


def test_changing_parameters_in_the_files_changes_the_verdicts(tmp_path: Path) -> None:
    """business_days 1 -> 2 makes an on-time notice late; ticket tolerance 10 -> 5 min makes
    a ticket opened after 10 minutes late: no code change."""
    on_time = "advance-notice/ok-on-time.jsonl"  # window Tue 2026-03-10, notice Mon 03-02
    late_at_one = "advance-notice/ok-exactly-at-deadline.jsonl"  # notice exactly 1 business day before
    ticket_case = "ticket-opened/ok-within-ten-minutes.jsonl"  # ticket after exactly 10 minutes
    as_of = "2026-03-12T00:00:00Z"
    assert not {f for f in _findings(None, late_at_one, as_of) if f[0] == "advance-notice"}
    assert not {f for f in _findings(None, ticket_case, as_of) if f[0] == "ticket-opened"}

    rules = _copy_rules(tmp_path)
    adv = rules / "advance-notice.yaml"
    adv.write_text(adv.read_text().replace("    value: 1\n", "    value: 2\n"))
    tick = rules / "ticket-opened.yaml"
    tick.write_text(tick.read_text().replace("    value: 10\n", "    value: 5\n"))
    assert ("advance-notice", "late", "mx-1", "acme") in _findings(rules, late_at_one, as_of)
    assert not {f for f in _findings(rules, on_time, as_of) if f[0] == "advance-notice"}
    assert ("ticket-opened", "late", "c-4", "acme") in _findings(rules, ticket_case, as_of)
    assert load_policy(rules).digest != load_policy(None).digest


def test_bad_policy_stops_audit_with_exit_2(tmp_path: Path) -> None:
    rules = _copy_rules(tmp_path)
    (rules / "extra.yaml").write_text("id: extra\n")
    result = CliRunner().invoke(
        main, ["audit", "--rules", str(rules), "--events", str(FIXTURES / "advance-notice/ok-on-time.jsonl")]
    )
    assert result.exit_code == 2
    assert "rules lint" in result.output


@pytest.mark.parametrize("name", sorted(p.name for p in RULES.glob("*.yaml")))
def test_digest_ignores_comments_and_formatting(tmp_path: Path, name: str) -> None:
    rules = _copy_rules(tmp_path)
    path = rules / name
    path.write_text("# a comment\n" + path.read_text() + "\n\n")
    assert load_policy(rules).digest == load_policy(None).digest
    assert datetime.now(UTC)  # the digest does not depend on when it is computed


def _bomb(levels: int) -> str:
    """A "billion laughs" mapping: each level aliases the previous one nine times."""
    lines = ["x-bomb:", '  l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"  l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]" for n in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_anchors_and_aliases_are_refused_before_any_expansion(tmp_path: Path) -> None:
    # 9^12 "lol"s: walking (or constructing) the aliased nodes ran 73 s into a MemoryError.
    rules = _copy_rules(tmp_path)
    path = rules / "advance-notice.yaml"
    text = path.read_text()
    lines = text.count("\n")
    path.write_text(text + _bomb(12))
    errors = _lint(rules)
    assert errors == [f"{path}:{lines + 2}: yaml-alias: anchor &l0 not allowed: rule files use no anchors, "
                      "aliases or merge keys (write the value out)"]
    result = CliRunner().invoke(main, ["rules", "lint", str(rules)])
    assert result.exit_code == 2 and f"{path}:{lines + 2}: yaml-alias:" in result.output


@pytest.mark.parametrize(
    ("extra", "line", "what"),
    [
        ("x-a: &name 1\n", 1, "anchor &name"),
        ("x-a: 1\nx-b: *name\n", 2, "alias *name"),  # an alias without its anchor: refused as such too
        ("x-a:\n  <<: *base\n", 2, "alias *base"),  # merge keys need an alias
    ],
)
def test_every_anchor_and_alias_is_refused_at_its_line(tmp_path: Path, extra: str, line: int, what: str) -> None:
    rules = _copy_rules(tmp_path)
    path = rules / "ticket-opened.yaml"
    text = path.read_text()
    path.write_text(text + extra)
    errors = _lint(rules)
    assert len(errors) == 1 and errors[0].startswith(f"{path}:{text.count(chr(10)) + line}: yaml-alias: {what} ")
