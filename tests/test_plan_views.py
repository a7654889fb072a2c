"""`forewarn plan`'s text tables (engine/views.py): aligned, complete, within the width."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from forewarn.engine.published import PlanView, json_entry
from forewarn.engine.views import TABLE_WIDTH, _width, box_table, plan_table

AS_OF = datetime(2026, 3, 2, 10, tzinfo=UTC)


def entry(n: int, customer: str = "") -> tuple[str, str]:
    ob = {
        "rule": "advance-notice",
        "subject": f"mx-{n}",
        "customer": customer or f"cust-{n}",
        "kind": "advance_notice",
        "from": "enterprise-support@example.com",
        "to": [f"ops@cust-{n}.example"],
        "not_before": "2026-03-02T10:00:00Z",
        "not_after": "2026-03-03T08:00:00Z",
    }
    return "Tue 2026-03-03 09:00 CET", json_entry(ob)


def tables(text: str) -> list[list[str]]:
    """The text split into tables: title line, then the box lines."""
    out: list[list[str]] = []
    for line in text.splitlines():
        if line and line[0] not in "┏┃┡│└":
            out.append([line])
        else:
            out[-1].append(line)
    return out


def test_every_line_of_a_table_is_as_wide_as_its_frame() -> None:
    text = plan_table(PlanView(AS_OF, [entry(1), entry(2, "東京-ü")], [entry(3)], [], []))
    due, upcoming = tables(text)
    assert due[0] == "due now as of 2026-03-02T10:00:00Z (2)"
    assert upcoming[0] == "upcoming as of 2026-03-02T10:00:00Z (1)"
    for table in (due, upcoming):
        widths = {_width(line) for line in table[1:]}
        assert len(widths) == 1, table
    assert [c.strip() for c in due[2].split("┃")[1:-1]] == [
        "rule", "subject", "customer", "kind", "send from (UTC)", "deadline (customer's time)"
    ]
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in due[4:-1]]
    assert rows == [
        ["advance-notice", "mx-1", "cust-1", "advance_notice", "2026-03-02 10:00", "Tue 2026-03-03 09:00 CET"],
        ["advance-notice", "mx-2", "東京-ü", "advance_notice", "2026-03-02 10:00", "Tue 2026-03-03 09:00 CET"],
    ]


def test_a_long_list_shows_its_first_200_and_how_many_more() -> None:
    entries = [entry(n) for n in range(450)]
    (due, upcoming) = tables(plan_table(PlanView(AS_OF, [], entries, [], [])))
    assert due == ["due now as of 2026-03-02T10:00:00Z (0): nothing is due: no notice must be sent now"]
    body = upcoming[4:-1]
    assert len(body) == 201
    assert [line.split("│")[2].strip() for line in body[:3]] == ["mx-0", "mx-1", "mx-2"]
    assert [c.strip() for c in body[-1].split("│")[1:3]] == ["…", "250 more"]


def test_alerts_are_wrapped_to_the_width_word_by_word() -> None:
    message = "record a maintenance.extended with the reason " * 8 + "x" * 200
    alerts = [{"rule": "extension-notice", "subject": "mx-1", "problem": "overrun", "message": message}]
    text = plan_table(PlanView(AS_OF, [], [], alerts, []))
    alert_table = tables(text)[-1]
    assert alert_table[0] == "alerts (1): a person must act"
    assert {_width(line) for line in alert_table[1:]} == {TABLE_WIDTH}
    assert [c.strip() for c in alert_table[2].split("┃")[1:-1]] == [
        "rule", "problem", "count", "subjects", "what to do (first)"
    ]
    last = [line.split("│")[-2].strip() for line in alert_table[4:-1]]
    assert len(last) > 2
    assert "".join(last).replace(" ", "") == message.replace(" ", "")  # every character, in order
    words = [line for line in last if "xx" not in line]
    assert len(words) >= 2 and all(f" {line} " in f" {message} " for line in words)  # broken at spaces
    first = [c.strip() for c in alert_table[4].split("│")[1:5]]
    assert first == ["extension-notice", "overrun", "1", "mx-1"]


def test_alerts_are_grouped_per_rule_and_problem_with_counts_and_the_first_few_subjects() -> None:
    def alert(rule: str, subject: str, problem: str) -> dict[str, str]:
        return {"rule": rule, "subject": subject, "problem": problem, "message": f"{subject}: act"}

    alerts = [alert("extension-notice", f"mx-{n}", "overrun") for n in range(7)]
    alerts += [alert("delivery", "m-1", "refused"), alert("extension-notice", "mx-0", "overrun")]
    alert_table = tables(plan_table(PlanView(AS_OF, [], [], alerts, [])))[-1]
    assert alert_table[0] == "alerts (9): a person must act"
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in alert_table[4:-1]]
    assert rows == [
        ["extension-notice", "overrun", "7", "mx-0, mx-1, mx-2 and 4 more", "mx-0: act"],
        ["delivery", "refused", "1", "m-1", "m-1: act"],
    ]


def test_titles_are_coloured_only_when_asked() -> None:
    plain = plan_table(PlanView(AS_OF, [entry(1)], [], [], []))
    coloured = plan_table(PlanView(AS_OF, [entry(1)], [], [], []), color=True)
    assert "\x1b[" not in plain
    assert coloured.startswith("\x1b[1mdue now") and coloured.replace("\x1b[1m", "").replace("\x1b[0m", "") == plain


@pytest.mark.parametrize("word", ["a" * 45, "東" * 30])
def test_a_word_longer_than_the_column_is_cut(word: str) -> None:
    table = box_table("t", ("a", "b"), [("x", f"{word} end")], width=30)
    lines = table.splitlines()
    assert {_width(line) for line in lines[1:]} == {30}
    cells = [line.split("│")[2].strip() for line in lines[4:-1]]
    assert len(cells) >= 2 and "".join(cells).replace(" ", "") == word + "end"


def test_the_plan_table_reads_the_same_entries_as_the_json() -> None:
    due = [entry(n) for n in range(3)]
    text = plan_table(PlanView(AS_OF, due, [], [], []))
    subjects = [line.split("│")[2].strip() for line in tables(text)[0][4:-1]]
    assert subjects == [orjson.loads(t)["subject"] for _local, t in due]


def test_a_narrow_terminal_wraps_the_last_column_to_fit() -> None:
    text = plan_table(PlanView(AS_OF, [entry(1)], [], [], []), width=100)
    assert max(_width(line) for line in text.splitlines()) == 100
    lines = tables(text)[0]
    body = lines[next(i for i, line in enumerate(lines) if line.startswith("┡")) + 1 : -1]
    assert " ".join(line.split("│")[-2].strip() for line in body) == "Tue 2026-03-03 09:00 CET"
