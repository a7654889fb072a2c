"""Shrunk counterexamples the property tests found, as plain tests (each fixed at its root)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from forewarn.audit.findings import AuditResult, audit
from forewarn.engine.replay import MemoryDelivery, replay
from forewarn.engine.runner import Engine
from forewarn.events import check_log, evaluation_order, parse_lines
from forewarn.log.source import read_store
from forewarn.log.store import EventStore
from forewarn.policy.loader import load_policy

HERE = Path(__file__).parent
POLICY = load_policy()


def engine_made(case: str, settle: bool = False) -> tuple[AuditResult, Engine]:
    """Import the case's lifecycle, step the real engine through it (engine/replay.py, or as `run_forever`
    drives it when `settle`), and audit what it left, three days after the last event."""
    lines = (HERE / case).read_text(encoding="utf-8").splitlines()
    parsed, errors = parse_lines(lines, case)
    assert not errors, errors
    fresh, errors = check_log(parsed, rule_ids=POLICY.ids)
    assert not errors, errors
    store = EventStore.memory()
    store.append(evaluation_order(fresh))
    engine = Engine(store, POLICY, MemoryDelivery())
    first, last = fresh[0].event.at, max(s.event.at for s in fresh) + timedelta(days=3)
    if settle:
        settled(engine, first, last)
    else:
        replay(engine, first, last)
    return audit(read_store(store), POLICY, last), engine


def settled(engine: Engine, start: datetime, end: datetime) -> None:
    """A pass at every event time and every wake; after a pass that sent, plan afresh (as `run_forever` does)."""
    times = sorted({t for t in engine.store_times() if start <= t <= end} | {start})
    t: datetime | None = start
    while t is not None and t <= end:
        while engine.run_once(t).sent:
            pass
        wake = engine.plan(t).next_wake()
        t = min([x for x in times if x > t] + ([wake] if wake is not None and wake > t else []), default=None)


def problems(result: AuditResult) -> list[tuple[str, str, str, str]]:
    return sorted((f.rule, f.problem, f.subject, f.customer) for f in result.findings)


# Fixed: BUG-1 (engine/planner.py make_plan): an obligation whose deadline is the instant it opens is never pending
# (matching: pending iff not_after > as_of), so the engine sends nothing although a notice sent then is on time
# (policy.md: s <= deadline)
def test_bug1_a_notice_that_opens_at_its_deadline_is_sent_then() -> None:
    # Tue 2026-03-03 09:00 UTC, no country: one business day before is Mon 09:00, the very instant it is scheduled.
    result, _ = engine_made("bug1-notice-opened-at-its-deadline.jsonl")
    assert problems(result) == []  # actual: advance-notice missing mx-1 cust-1


# Fixed: BUG-2 (engine/replay.py): after a pass that sent the extension notice, replay takes its next wake from the
# plan made before sending, where the promised update was 'due', so it never wakes for it
def test_bug2_replay_sends_the_promised_update() -> None:
    result, _ = engine_made("bug2-replay-forgets-the-promised-update.jsonl")
    assert problems(result) == []  # actual: update-cadence missing mx-1 cust-1 (1 of 2)


def test_bug2_the_engine_run_as_run_forever_runs_it_sends_the_promised_update() -> None:
    """The same log driven pass after pass: the engine itself plans the update right."""
    result, _ = engine_made("bug2-replay-forgets-the-promised-update.jsonl", settle=True)
    assert problems(result) == []


# Fixed: BUG-3 (engine/planner.py _content + engine/runner.py run_once): an extension whose new end is not after the
# window start gives an invitation with end <= start; render raises RenderError, uncaught, and every pass aborts:
# nothing else due is sent either
def test_bug3_an_extension_ending_before_the_window_starts_does_not_stop_the_engine() -> None:
    result, _ = engine_made("bug3-extension-ending-before-the-window-crashes-the-engine.jsonl")
    # scheduled after its notice deadline (so sent late: policy.md, "late, not never"), and never completed:
    # only what no sender could prevent
    assert {(rule, problem) for rule, problem, _s, _c in problems(result)} <= {
        ("advance-notice", "late"),
        ("extension-notice", "overrun"),
    }


# Fixed: BUG-4 (engine/planner.py obligation_key / _draft ids, engine/runner.py _record): two obligations with the
# same rule, subject, customer, opening and deadline (two extensions recorded at the same instant with the same next
# update) get one communication id; the batch record then inserts it twice: sqlite3.IntegrityError, and every later
# pass fails the same way (delivered, never recorded)
def test_bug4_two_identical_extensions_at_once_are_both_served() -> None:
    result, _ = engine_made("bug4-identical-extensions-crash-the-engine.jsonl", settle=True)
    assert problems(result) == []


# Fixed: BUG-5 (forewarn/events/models.py parse_timestamp vs forewarn/calendar/business.py): a timestamp in years
# 1-1899 or 2200-9999 was accepted as valid input, but the calendar supports 1900-2199 only; a window start (or
# release_at) there made every audit, plan and run of the log fail with a ValueError traceback (and the log is
# append-only: an imported database stayed broken). Found by tests/test_fuzz.py (edge timestamps).
def test_bug5_a_window_start_the_calendar_cannot_place_is_an_input_error_not_a_traceback(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from forewarn.cli import main

    case = HERE / "bug5-window-in-year-1-crashes-the-audit.jsonl"
    audited = CliRunner().invoke(main, ["audit", "--events", str(case), "--as-of", "2026-06-01T00:00:00Z"])
    assert audited.exception is None or isinstance(audited.exception, SystemExit), repr(audited.exception)
    imported = CliRunner().invoke(main, ["import", str(case), "--db", str(tmp_path / "log.db")])
    # the contract: bad input is reported with file:line and changes nothing (exit 2), like any other
    assert imported.exit_code == audited.exit_code == 2
    assert f"{case}:2: maintenance.scheduled 'e02': field 'start'" in audited.stderr


# BUG-6 (found by tests/test_fuzz.py, rules lint): a YAML error that is not a marked one (a control character:
# ReaderError) or raised outside `compose` (a tag the safe loader refuses: ConstructorError) was reported at
# line 1 whatever its line, with str(exc) as message running onto a second line; fixed in yamlsrc._located.
@pytest.mark.parametrize(
    "text",
    ["id: advance-notice\n\x07title: x\n", "id: advance-notice\ntitle: !!python/name:os.system\n"],
    ids=["control-character", "unsafe-tag"],
)
def test_bug6_a_yaml_error_in_a_rule_file_is_one_lint_line_at_its_line(tmp_path: Path, text: str) -> None:
    from click.testing import CliRunner

    from forewarn.cli import main

    rules = tmp_path / "rules"
    rules.mkdir()
    for path in (HERE.parent.parent / "rules").glob("*.yaml"):
        (rules / path.name).write_bytes(path.read_bytes())
    (rules / "advance-notice.yaml").write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["rules", "lint", str(rules)])
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{rules}/advance-notice.yaml:2: yaml-syntax: "), lines


# BUG-7 (found by tests/test_fuzz.py, rules lint, thorough profile): a parameter of 2**70 minutes passed
# `rules lint` and crashed the audit (OverflowError in the deadline arithmetic). Offsets are now bounded
# (forewarn.policy.schema.MAX_MINUTES, MAX_BUSINESS_DAYS) and lint says so at the parameter's line.
@pytest.mark.parametrize(
    ("name", "param", "old", "new"),
    [
        ("closing-notice.yaml", "within_minutes", "value: 30", "value: 1180591620717411303424"),
        ("advance-notice.yaml", "business_days", "value: 1", "value: 100000"),
    ],
    ids=["minutes", "business-days"],
)
def test_bug7_an_offset_beyond_a_year_is_a_lint_error_not_a_crash(
    tmp_path: Path, name: str, param: str, old: str, new: str
) -> None:
    from click.testing import CliRunner

    from forewarn.cli import main

    rules = tmp_path / "rules"
    rules.mkdir()
    for path in (HERE.parent.parent / "rules").glob("*.yaml"):
        (rules / path.name).write_bytes(path.read_bytes())
    text = (rules / name).read_text(encoding="utf-8")
    assert old in text
    (rules / name).write_text(text.replace(old, new, 1), encoding="utf-8")
    line = text[: text.index(f"  {param}:")].count("\n") + 1
    linted = CliRunner().invoke(main, ["rules", "lint", str(rules)])
    assert linted.exit_code == 2
    assert linted.stdout.splitlines() == [linted.stdout.splitlines()[0]]
    assert linted.stdout.startswith(f"{rules}/{name}:{line}: "), linted.stdout
    assert "at most" in linted.stdout
    audited = CliRunner().invoke(main, ["audit", "--events", str(HERE / "bug1-notice-opened-at-its-deadline.jsonl"),
                                        "--rules", str(rules), "--as-of", "2026-12-01T00:00:00Z"])
    assert audited.exit_code == 2 and "rules lint" in audited.stderr


# BUG-8 (found by tests/test_fuzz.py in CI, timestamps at the edges): with the log checks running in a child while
# the audit evaluates (forewarn/cli.py audit_cmd, forewarn/log/source.py load_files_checking), a log whose event
# names an incident declared only later crashed the evaluation (fold_subject) before the check could report it.
# The input errors are the answer when the evaluation of an unchecked log fails.
@pytest.mark.parametrize("apart", [True, False], ids=["checks-in-a-child", "checks-here"])
def test_bug8_a_reference_to_a_later_definition_is_an_input_error_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, apart: bool
) -> None:
    from click.testing import CliRunner

    from forewarn.cli import main
    from forewarn.log import source

    monkeypatch.setattr(source, "CHECKS_APART_MIN", 0 if apart else 10**9)
    case = HERE / "bug8-resolved-before-declared-crashes-the-audit.jsonl"
    result = CliRunner().invoke(main, ["audit", "--events", str(case), "--as-of", "2026-06-30T00:00:00Z"])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert f"{case}:3: incident.resolved 'e3': field 'incident': unknown incident 'inc-1'" in result.stderr
