"""Ids with any Unicode work everywhere; blank ids and ids with control characters are refused at import.

events.md: every id is 1-200 characters, not blank, without control characters; `wartung-ä`,
`"quoted"` and `a\\b` are valid and must work everywhere. durable_rules only takes ASCII sids
without '"' or '\\': such a maintenance id once imported fine and then broke audit, plan and run.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from forewarn import program
from forewarn.cli import main
from forewarn.events import parse_lines
from forewarn.policy.loader import load_policy

CUSTOMER = "kunde-ä"
MAINTENANCES = ("wartung-ä", '"quoted"', "a\\b", 'mix-"ä"\\')
INCIDENT = 'inc-"ä"'
RELEASE = "rel\\ä"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def hostile_log() -> list[dict[str, object]]:
    events: list[dict[str, object]] = [
        {"id": "e-ä", "type": "customer.upserted", "at": "2026-01-01T00:00:00Z", "customer": CUSTOMER,
         "name": "Kunde", "plan": "enterprise", "contacts": ["ops@kunde.example"]},
    ]
    for n, mx in enumerate(MAINTENANCES):
        events.append({
            "id": f'mx-"{n}"\\', "type": "maintenance.scheduled", "at": "2026-10-12T14:00:00Z",
            "maintenance": mx, "title": f"Work {n}", "start": "2026-10-20T22:00:00Z",
            "end": "2026-10-21T00:00:00Z", "customers": [CUSTOMER] if n % 2 else "all",
            **({"impact": "none"} if n == 2 else {"impact": "interruption", "impact_summary": "slow"}),
        })
    events += [
        {"id": "inc-e", "type": "incident.declared", "at": "2026-10-12T15:00:00Z", "incident": INCIDENT,
         "title": "Outage", "severity": "critical", "customers": "all", "summary": "down"},
        {"id": "rel-e", "type": "release.scheduled", "at": "2026-10-12T15:00:00Z", "release": RELEASE,
         "title": "Release", "release_at": "2026-10-25T10:00:00Z", "customers": [CUSTOMER]},
        {"id": "c-ä", "type": "communication.sent", "at": "2026-10-12T15:10:00Z", "communication": "komm-ä",
         "customer": CUSTOMER, "to": ["ops@kunde.example"], "from": "enterprise-support@example.com",
         "kind": "incident", "incident": INCIDENT, "subject": "Outage"},
        {"id": "w-ä", "type": "waiver.granted", "at": "2026-10-12T16:00:00Z", "waiver": 'w"1"',
         "rule": "ticket-opened", "subject": "komm-ä", "reason": "no ticket system yet", "approved_by": "ops"},
    ]
    return events


def write(path: Path, events: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events), encoding="utf-8")
    return path


def test_unicode_quote_and_backslash_ids_work_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write(tmp_path / "ids.jsonl", hostile_log())
    db = str(tmp_path / "log.db")
    code, _, err = run("import", str(log), "--db", db)
    assert code == 0, err

    as_of = "2026-10-30T00:00:00Z"
    for source in (["--db", db], ["--events", str(log)]):
        code, out, err = run("audit", *source, "--as-of", as_of, "--format", "json")
        assert code == 1, err  # violations, not a crash
        findings = json.loads(out)["findings"]
        subjects = {f["subject"] for f in findings}
        assert {"wartung-ä", '"quoted"', 'mix-"ä"\\', RELEASE} <= subjects
        assert [f["status"] for f in findings if f["subject"] == "komm-ä"] == ["waived"]

    code, out, err = run("plan", "--db", db, "--as-of", "2026-10-13T00:00:00Z", "--format", "json")
    assert code == 0, err
    planned = json.loads(out)
    assert {e["subject"] for e in planned["due"]} == {"wartung-ä", '"quoted"', 'mix-"ä"\\', RELEASE}

    outbox = tmp_path / "outbox"
    code, _, err = run("run", "--db", db, "--once", "--now", "2026-10-13T00:00:00Z", "--outbox", str(outbox))
    assert code == 0, err
    assert len(list(outbox.glob("*.eml"))) == 4  # advance notices of 3 notifiable maintenances, the release

    # The published plan is served as the CLI serves it.
    args = ["--db", db, "--as-of", "2026-10-14T00:00:00Z", "--format", "json"]
    code, out, err = run("plan", *args)
    assert code == 0, err
    capsys.readouterr()
    assert program.quick_plan(args)
    assert capsys.readouterr().out == out
    reminded = {e["subject"] for e in json.loads(out)["upcoming"]}  # start reminders
    assert reminded == {"wartung-ä", '"quoted"', 'mix-"ä"\\'}

    code, _, err = run("run", "--db", db, "--once", "--now", "2026-10-20T21:55:00Z", "--outbox", str(outbox))
    assert code == 0, err
    assert len(list(outbox.glob("*.eml"))) == 7  # and their start reminders


def test_reevaluation_after_appends_with_hostile_subject_ids(tmp_path: Path) -> None:
    """The engine judges again the subjects appended events are about, selected from the log by their ids
    (bound, never pasted): hostile ids included."""
    from forewarn.engine.cache import EvaluationCache
    from forewarn.log.source import import_files
    from forewarn.log.store import EventStore

    more = [{"id": 'st-"ä"', "type": "maintenance.started", "at": "2026-10-20T22:01:00Z",
             "maintenance": "wartung-ä"},
            {"id": "ext\\ä", "type": "maintenance.extended", "at": "2026-10-20T23:50:00Z",
             "maintenance": "wartung-ä", "reason": "slow", "end": "2026-10-21T02:00:00Z"}]
    parsed, errors = parse_lines([json.dumps(e).encode() for e in more], "more.jsonl")
    assert not errors
    policy = load_policy()
    store = EventStore(tmp_path / "log.db")
    import_files(store, [write(tmp_path / "ids.jsonl", hostile_log())], policy.ids)
    t0, t1 = datetime.fromisoformat("2026-10-20T12:00:00Z"), datetime.fromisoformat("2026-10-21T06:00:00Z")
    cache = EvaluationCache(store, policy)
    cache.get(t0)
    store.append(parsed)
    _view, again = cache.get(t1)
    _fresh_view, fresh = EvaluationCache(store, policy).get(t1)
    assert again.at(t1) == fresh.at(t1)
    missed = {(a.rule, a.problem) for a in fresh.at(t1).alerts if a.subject == "wartung-ä"}
    assert ("extension-notice", "missed") in missed
    store.close()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("maintenance", "wartung\tä", "must not contain control characters (U+0009 at character 8)"),
        ("maintenance", "   ", "must not be blank"),
        ("maintenance", "\u00a0\u3000", "must not be blank"),
        ("maintenance", "a\nb", "must not contain control characters (U+000A at character 2)"),
        ("maintenance", "nul\u0000", "must not contain control characters (U+0000 at character 4)"),
        ("maintenance", "c1\u0085", "must not contain control characters (U+0085 at character 3)"),
        ("id", "evt\r", "must not contain control characters (U+000D at character 4)"),
        ("id", " ", "must not be blank"),
        ("customers", ["kunde-ä", "\t"], "customer ids must not contain control characters"),
        ("customers", ["  "], "customer ids must not be blank"),
    ],
)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_blank_and_control_character_ids_are_refused_at_import(
    tmp_path: Path, field: str, value: object, message: str, workers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOREWARN_IMPORT_WORKERS", workers)
    events = hostile_log()
    events[1] = {**events[1], field: value}
    log = write(tmp_path / "bad.jsonl", events)
    db = tmp_path / "log.db"
    code, _, err = run("import", str(log), "--db", str(db))
    assert code == 2
    assert "bad.jsonl:2: maintenance.scheduled" in err and f"field '{field}'" in err and message in err
    assert "Traceback" not in err
    code, _, err = run("audit", "--events", str(log))
    assert code == 2 and message in err and "bad.jsonl:2:" in err


def test_control_characters_in_references_are_refused(tmp_path: Path) -> None:
    events = hostile_log()
    events[-2] = {**events[-2], "customer": "kunde-ä\u007f"}
    log = write(tmp_path / "bad.jsonl", events)
    code, _, err = run("import", str(log), "--db", str(tmp_path / "log.db"))
    assert code == 2
    assert "bad.jsonl:8: communication.sent 'c-ä': field 'customer': must not contain control characters" in err


@given(st.text(max_size=210) | st.sampled_from(["", " ", "\u00a0", "a\u2028", "\u3000x", "x" * 201]))
def test_the_fast_id_check_accepts_exactly_the_ids_id_problem_accepts(value: str) -> None:
    from forewarn.events.models import _VALID_ID, id_problem

    fast = len(value) <= 200 and _VALID_ID.match(value) is not None
    assert fast == (id_problem(value) is None)
