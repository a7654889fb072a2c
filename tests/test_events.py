"""Tests of forewarn.events: models, parsing, input errors and log-level checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from forewarn.events import (
    ENTITY_OF,
    EVENT_ADAPTER,
    EVENT_TYPES,
    CommunicationSent,
    InputError,
    KnownEntity,
    MaintenanceScheduled,
    SourcedEvent,
    canonical_json,
    check_log,
    parse_files,
    parse_lines,
    parse_timestamp,
)
from forewarn.events.parse import MAX_LINE_BYTES

DATA = Path(__file__).parent / "data"
BAD = DATA / "bad"
GOOD = DATA / "good"
BASIC = Path(__file__).parents[1] / "forewarn" / "samples" / "basic.jsonl"  # a copy of shared/examples
RULES = {"advance-notice", "closing-notice", "start-reminder"}
BAD_FIXTURES = sorted(p.stem for p in BAD.glob("*.jsonl"))


def _all_errors(paths: list[str]) -> list[str]:
    events, errors = parse_files(paths)
    _, more = check_log(events, rule_ids=RULES)
    return [str(e) for e in sorted(errors + more, key=InputError.sort_key)]


def _line(**fields: object) -> str:
    return json.dumps(fields)


CUSTOMER = {"id": "e1", "type": "customer.upserted", "at": "2026-01-01T00:00:00Z",
            "customer": "acme", "name": "Acme", "plan": "enterprise",
            "contacts": ["ops@acme.example"]}
MAINTENANCE = {"id": "e2", "type": "maintenance.scheduled", "at": "2026-03-01T09:00:00Z",
               "maintenance": "mx-1", "title": "Upgrade", "start": "2026-03-10T08:00:00Z",
               "end": "2026-03-10T10:00:00Z", "customers": ["acme"], "impact": "none"}
COMMUNICATION = {"id": "e3", "type": "communication.sent", "at": "2026-03-02T09:00:00Z",
                 "communication": "c-1", "customer": "acme", "to": ["ops@acme.example"],
                 "from": "support@example.com", "kind": "advance_notice",
                 "maintenance": "mx-1", "subject": "Planned maintenance"}


def _sourced(raw: dict[str, object], file: str = "new.jsonl", line: int = 1) -> SourcedEvent:
    event = EVENT_ADAPTER.validate_python(raw)
    return SourcedEvent(event, file, line, canonical_json(event))


# --------------------------------------------------------------------------- fixtures


def test_every_bad_fixture_has_expectations() -> None:
    assert len(BAD_FIXTURES) >= 30
    missing = [n for n in BAD_FIXTURES if not (BAD / f"{n}.expected").exists()]
    assert missing == []


@pytest.mark.parametrize("name", BAD_FIXTURES)
def test_bad_fixture_reports_exactly_the_expected_errors(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(BAD)
    expected = (BAD / f"{name}.expected").read_text(encoding="utf-8").splitlines()
    assert _all_errors([f"{name}.jsonl"]) == expected


@pytest.mark.parametrize("path", [BASIC, *sorted(GOOD.glob("*.jsonl"))], ids=lambda p: p.name)
def test_good_logs_parse_and_check_clean(path: Path) -> None:
    events, errors = parse_files([path])
    assert errors == []
    kept, problems = check_log(events, rule_ids={"advance-notice"})
    assert problems == []
    assert len(kept) == len(events) == sum(1 for x in path.read_text().splitlines() if x.strip())


def test_basic_example_events() -> None:
    events, _ = parse_files([BASIC])
    assert len(events) == 18
    assert [s.line for s in events] == list(range(1, 19))
    assert {s.file for s in events} == {str(BASIC)}
    assert events[4].event.subject_ref() == ("maintenance", "mx-1")


def test_good_fixture_covers_every_event_type() -> None:
    events, _ = parse_files([GOOD / "all-types.jsonl"])
    assert {s.event.type for s in events} == set(EVENT_TYPES)


# --------------------------------------------------------------------------- errors


def test_input_error_format_has_every_known_part() -> None:
    err = InputError("events.jsonl", 17, "maintenance.scheduled", "mx-42", "end",
                     "must be after 'start' (2026-03-09T02:00:00Z)")
    assert str(err) == ("events.jsonl:17: maintenance.scheduled 'mx-42': field 'end': "
                        "must be after 'start' (2026-03-09T02:00:00Z)")


def test_input_error_format_omits_unknown_parts() -> None:
    assert str(InputError("events.jsonl", 3, None, None, None,
                          "not valid JSON: Expecting ',' delimiter (column 17)")) == (
        "events.jsonl:3: not valid JSON: Expecting ',' delimiter (column 17)")
    assert str(InputError("x.jsonl", 0, None, None, None, "cannot read: No such file")) == (
        "x.jsonl: cannot read: No such file")
    assert str(InputError("x.jsonl", 2, None, "e2", "type", "required")) == (
        "x.jsonl:2: 'e2': field 'type': required")


def test_input_errors_sort_even_with_unknown_parts() -> None:
    a = InputError("f", 2, None, None, None, "b")
    b = InputError("f", 2, "ticket.opened", "e", "id", "a")
    c = InputError("f", 1, "ticket.opened", "e", "id", "z")
    assert sorted([a, b, c], key=InputError.sort_key) == [c, a, b]


def test_all_errors_of_a_file_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BAD)
    lines = {e.split(":")[1] for e in _all_errors(["all-errors-reported.jsonl"])}
    assert lines == {"1", "2", "3", "4", "5"}


def test_no_pydantic_wording_or_urls_in_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BAD)
    text = "\n".join(_all_errors([f"{n}.jsonl" for n in BAD_FIXTURES]))
    for leak in ("pydantic", "http", "Input should", "Field required", "Traceback"):
        assert leak not in text


def test_unreadable_file_is_an_input_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    events, errors = parse_files([missing])
    assert events == []
    assert [str(e) for e in errors] == [f"{missing}: cannot read: No such file or directory"]


# --------------------------------------------------------------------------- parsing


def test_blank_lines_are_skipped_and_lines_counted() -> None:
    lines = ["", _line(**CUSTOMER), "   ", "\r\n", _line(**MAINTENANCE) + "\r\n"]
    events, errors = parse_lines(lines, "x.jsonl")
    assert errors == []
    assert [(s.line, s.event.id) for s in events] == [(2, "e1"), (5, "e2")]


def test_bytes_and_str_lines_and_bom() -> None:
    events, errors = parse_lines([b"\xef\xbb\xbf" + _line(**CUSTOMER).encode()], "x.jsonl")
    assert errors == [] and events[0].event.id == "e1"


def test_unpaired_surrogate_in_str_line() -> None:
    _, errors = parse_lines(['{"id": "\udcff"}'], "x.jsonl")
    assert [str(e) for e in errors] == ["x.jsonl:1: not valid UTF-8 (unpaired surrogate)"]


def test_escaped_lone_surrogate_is_not_valid_json() -> None:
    raw = _line(**{**CUSTOMER, "name": "X"}).replace('"X"', '"\\ud800"')
    _, errors = parse_lines([raw], "x.jsonl")
    assert len(errors) == 1 and errors[0].message.startswith("not valid JSON: ")


def test_huge_line_is_refused_without_parsing() -> None:
    huge = _line(**{**CUSTOMER, "meta": {"blob": "x" * MAX_LINE_BYTES}})
    _, errors = parse_lines([huge], "x.jsonl")
    assert [e.message for e in errors] == [
        f"line too long: more than {MAX_LINE_BYTES} bytes (at most {MAX_LINE_BYTES}); the rest of the file is not read"]


def test_integer_out_of_range_in_meta() -> None:
    raw = _line(**{**CUSTOMER, "meta": {"n": 2**70}})
    _, errors = parse_lines([raw], "x.jsonl")
    assert [str(e) for e in errors] == [
        "x.jsonl:1: customer.upserted 'e1': field 'meta': integers must fit in 64 bits"]


def test_from_alias_only_in_json() -> None:
    _, errors = parse_lines([_line(**{**COMMUNICATION, "from_": "a@b.example"})], "x.jsonl")
    assert {(e.field, e.message) for e in errors} >= {("from_", "unknown field; did you mean "
                                                        "'from'?")}
    fields = {k: v for k, v in COMMUNICATION.items() if k != "from"}
    built = CommunicationSent.model_validate({**fields, "from_": "a@b.example"})
    assert built.from_ == "a@b.example"
    assert '"from":"a@b.example"' in canonical_json(built)


def test_nested_unknown_field_did_you_mean() -> None:
    raw = _line(**{**COMMUNICATION, "states": {"window_strat": "2026-03-10T08:00:00Z"}})
    _, errors = parse_lines([raw], "x.jsonl")
    assert [(e.field, e.message) for e in errors] == [
        ("states.window_strat", "unknown field; did you mean 'window_start'?")]


def test_wrong_types_in_plain_words() -> None:
    raw = _line(**{**COMMUNICATION, "to": "ops@acme.example", "states": [], "subject": None})
    _, errors = parse_lines([raw], "x.jsonl")
    assert sorted((e.field, e.message) for e in errors) == [
        ("states", "must be an object"), ("subject", "must be a string"),
        ("to", "must be a list")]


def test_unknown_type_not_a_string() -> None:
    _, errors = parse_lines([_line(id="e1", type=7)], "x.jsonl")
    assert [str(e) for e in errors] == ["x.jsonl:1: 'e1': field 'type': must be a string"]


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-09T02:00:00Z", datetime(2026, 3, 9, 2, tzinfo=UTC)),
        ("2026-03-09t02:00:00z", datetime(2026, 3, 9, 2, tzinfo=UTC)),
        ("2026-03-09 03:00:00+01:00", datetime(2026, 3, 9, 2, tzinfo=UTC)),
        ("2026-03-08T21:00:00-05:00", datetime(2026, 3, 9, 2, tzinfo=UTC)),
        ("2026-03-09T02:00:00.250Z", datetime(2026, 3, 9, 2, 0, 0, 250000, tzinfo=UTC)),
    ],
)
def test_timestamps_are_normalised_to_utc(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected and parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    ["2026-03-09T02:00:00", "2026-03-09", "1767225600", "2026-03-09T02:00Z",
     "20260309T020000Z", "2026-W11-1T02:00:00Z", "2026-03-09T02:00:00+0100", ""],
)
def test_timestamps_without_offset_or_not_rfc3339_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="RFC 3339 timestamp with offset"):
        parse_timestamp(text)


def test_python_datetimes_validate_too() -> None:
    aware = datetime(2026, 3, 9, 3, tzinfo=timezone(timedelta(hours=1)))
    event = EVENT_ADAPTER.validate_python({**CUSTOMER, "at": aware})
    assert event.at == datetime(2026, 3, 9, 2, tzinfo=UTC) and event.at.tzinfo is UTC
    with pytest.raises(ValidationError):
        EVENT_ADAPTER.validate_python({**CUSTOMER, "at": datetime(2026, 3, 9)})


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize(
    ("address", "ok"),
    [("ops@acme.example", True), ("first.last+tag@mail.acme.co.uk", True),
     ("o'brien@acme-corp.example", True), ("ops@acme", False), ("ops@@acme.example", False),
     ("ops.@acme.example", False), (".ops@acme.example", False), ("a..b@acme.example", False),
     ("ops@-acme.example", False), ("ops acme@acme.example", False), ("@acme.example", False),
     ("Ops <ops@acme.example>", False)],
)
def test_email_syntax(address: str, ok: bool) -> None:
    raw = {**CUSTOMER, "contacts": [address]}
    if ok:
        assert EVENT_ADAPTER.validate_python(raw).contacts == (address,)
    else:
        with pytest.raises(ValidationError):
            EVENT_ADAPTER.validate_python(raw)


def test_models_are_frozen() -> None:
    event = EVENT_ADAPTER.validate_python(MAINTENANCE)
    with pytest.raises(ValidationError):
        event.title = "other"  # type: ignore[misc]


def test_defaults_and_helpers() -> None:
    event = EVENT_ADAPTER.validate_python(MAINTENANCE)
    assert isinstance(event, MaintenanceScheduled)
    assert (event.emergency, event.release, event.reason) == (False, False, None)
    assert event.defines() == ("maintenance", "mx-1")
    assert [(r.field, r.id) for r in event.references()] == [("customers", "acme")]
    customer = EVENT_ADAPTER.validate_python(CUSTOMER)
    assert customer.timezone == "UTC" and customer.country is None


def test_entity_of_defining_events() -> None:
    assert ENTITY_OF == {
        "customer.upserted": "customer", "maintenance.scheduled": "maintenance",
        "incident.declared": "incident", "release.scheduled": "release",
        "communication.sent": "communication", "ticket.opened": "ticket",
        "reply.received": "reply", "waiver.granted": "waiver"}


def test_communication_other_may_have_no_subject() -> None:
    raw = {k: v for k, v in COMMUNICATION.items() if k != "maintenance"} | {"kind": "other"}
    event = EVENT_ADAPTER.validate_python(raw)
    assert isinstance(event, CommunicationSent) and event.subject_ref() is None


# --------------------------------------------------------------------------- canonical


def test_canonical_json_form() -> None:
    raw = {**MAINTENANCE, "at": "2026-03-01T10:00:00+01:00", "emergency": False,
           "meta": {"z": 1, "a": {"y": None, "b": True}}}
    text = canonical_json(EVENT_ADAPTER.validate_python(raw))
    assert text == (
        '{"at":"2026-03-01T09:00:00Z","customers":["acme"],"end":"2026-03-10T10:00:00Z",'
        '"id":"e2","impact":"none","maintenance":"mx-1","meta":{"a":{"b":true,"y":null},'
        '"z":1},"start":"2026-03-10T08:00:00Z","title":"Upgrade","type":"maintenance.scheduled"}')


def test_canonical_json_is_stable_and_round_trips() -> None:
    events, _ = parse_files([GOOD / "all-types.jsonl"])
    for sourced in events:
        again = EVENT_ADAPTER.validate_json(sourced.canonical)
        assert again == sourced.event
        assert canonical_json(again) == sourced.canonical
    assert '"from":' in events[4].canonical and "from_" not in events[4].canonical


def test_same_content_in_another_spelling_is_identical() -> None:
    a = dict(COMMUNICATION)
    b = dict(reversed(list(COMMUNICATION.items()))) | {"at": "2026-03-02T10:00:00+01:00",
                                                       "body": None}
    assert canonical_json(EVENT_ADAPTER.validate_python(a)) == canonical_json(
        EVENT_ADAPTER.validate_python(b))


# --------------------------------------------------------------------------- check_log


def test_out_of_order_file_imports() -> None:
    events, errors = parse_files([GOOD / "out-of-order.jsonl"])
    kept, problems = check_log(events)
    assert errors == [] and problems == [] and len(kept) == 4


def test_identical_duplicate_is_dropped_within_new_files() -> None:
    new = [_sourced(CUSTOMER, line=1), _sourced(CUSTOMER, line=2)]
    kept, errors = check_log(new)
    assert errors == [] and [s.line for s in kept] == [1]


def test_identical_event_already_in_the_log_is_dropped() -> None:
    old = _sourced(CUSTOMER)
    kept, errors = check_log([old, _sourced(MAINTENANCE, line=2)],
                             known_events={"e1": old.canonical},
                             known_entities=[KnownEntity("customer", "acme", old.event.at, 1)])
    assert errors == [] and [s.event.id for s in kept] == ["e2"]


def test_same_id_as_a_logged_event_with_other_content() -> None:
    new = _sourced({**CUSTOMER, "name": "Acme Corp"})
    _, errors = check_log([new], known_events={"e1": _sourced(CUSTOMER).canonical})
    assert [str(e) for e in errors] == [
        "new.jsonl:1: customer.upserted 'e1': field 'id': same id as an event already in "
        "the log, with different content"]


def test_known_entities_satisfy_references_including_ties() -> None:
    at = datetime(2026, 3, 2, 9, tzinfo=UTC)
    known = [KnownEntity("customer", "acme", at, 1), KnownEntity("maintenance", "mx-1", at, 2)]
    kept, errors = check_log([_sourced(COMMUNICATION)], known_entities=known)
    assert errors == [] and len(kept) == 1


def test_known_entity_defined_after_the_new_event_does_not_count() -> None:
    late = datetime(2026, 3, 3, tzinfo=UTC)
    known = [KnownEntity("customer", "acme", late, 1), KnownEntity("maintenance", "mx-1", late, 2)]
    _, errors = check_log([_sourced(COMMUNICATION)], known_entities=known)
    assert [e.field for e in errors] == ["customer", "maintenance"]


def test_ties_between_new_events_follow_file_order() -> None:
    same = "2026-03-02T09:00:00Z"
    ticket = {"id": "e4", "type": "ticket.opened", "at": same, "ticket": "t-1",
              "communication": "c-1"}
    base = [_sourced(CUSTOMER), _sourced(MAINTENANCE)]
    _, ok = check_log([*base, _sourced(COMMUNICATION), _sourced(ticket)])
    _, bad = check_log([*base, _sourced(ticket), _sourced(COMMUNICATION)])
    assert ok == [] and [e.field for e in bad] == ["communication"]


def test_waiver_subject_may_be_any_subject_kind() -> None:
    waiver = {"id": "e9", "type": "waiver.granted", "at": "2026-03-05T00:00:00Z",
              "waiver": "w-1", "rule": "advance-notice", "subject": "c-1",
              "reason": "Customer agreed", "approved_by": "vp"}
    base = [_sourced(CUSTOMER), _sourced(MAINTENANCE), _sourced(COMMUNICATION)]
    _, errors = check_log([*base, _sourced(waiver)], rule_ids=RULES)
    assert errors == []
    _, errors = check_log([*base, _sourced({**waiver, "subject": "nope"})])
    assert [e.message for e in errors] == [
        "unknown subject 'nope' (no maintenance, incident, release, communication or reply "
        "with that id at or before 2026-03-05T00:00:00Z)"]


def test_rule_ids_not_checked_when_not_given() -> None:
    waiver = {"id": "e9", "type": "waiver.granted", "at": "2026-03-05T00:00:00Z",
              "waiver": "w-1", "rule": "whatever", "subject": "mx-1",
              "reason": "r", "approved_by": "vp"}
    _, errors = check_log([_sourced(CUSTOMER), _sourced(MAINTENANCE), _sourced(waiver)])
    assert errors == []


# --------------------------------------------------------------------------- robustness

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
_SAMPLES = [CUSTOMER, MAINTENANCE, COMMUNICATION]


@given(st.lists(st.binary(max_size=200), max_size=5))
def test_arbitrary_bytes_never_raise(lines: list[bytes]) -> None:
    events, errors = parse_lines(lines, "fuzz.jsonl")
    assert len(events) <= len(lines)
    assert all(isinstance(e, InputError) and str(e) for e in errors)


@given(st.sampled_from(_SAMPLES), st.sampled_from(sorted({k for s in _SAMPLES for k in s})),
       _JSON)
def test_any_field_value_gives_an_event_or_errors(
    sample: dict[str, object], key: str, value: object
) -> None:
    raw = json.dumps({**sample, key: value})
    events, errors = parse_lines([raw], "fuzz.jsonl")
    assert len(events) + bool(errors) == 1
    for err in errors:
        assert err.line == 1 and err.message and "Input should" not in err.message
    for sourced in events:
        assert canonical_json(EVENT_ADAPTER.validate_json(sourced.canonical)) == sourced.canonical


def test_errors_of_one_line_are_capped() -> None:
    raw = _line(**{**CUSTOMER, "contacts": ["nobody"] * 1000})
    _, errors = parse_lines([raw], "x.jsonl")
    assert len(errors) == 20
    assert str(errors[-1]) == "x.jsonl:1: customer.upserted 'e1': ... and 981 more errors on this line"


# --------------------------------------------------------------------------- memory


def test_parsed_events_compute_their_canonical_form_on_demand() -> None:
    events, errors = parse_lines([_line(**COMMUNICATION).encode()], "x.jsonl")
    assert errors == [] and events[0].stored is None
    assert events[0].canonical == canonical_json(events[0].event)
    escaped, _ = parse_lines([_line(**{**COMMUNICATION, "subject": "Caf\u00e9"}).encode()], "x.jsonl")
    assert escaped[0].stored == canonical_json(escaped[0].event)  # a \u escape: serialised at parse time


def test_parsed_events_share_equal_fields_sets_and_stay_equal() -> None:
    other = {**COMMUNICATION, "id": "e4", "communication": "c-2"}
    fewer = {k: v for k, v in {**COMMUNICATION, "id": "e5"}.items() if k != "maintenance"}
    fewer["kind"] = "other"
    events, errors = parse_lines([_line(**raw).encode() for raw in (COMMUNICATION, other, fewer)], "x.jsonl")
    assert errors == []
    a, b, c = (s.event for s in events)
    fresh = [EVENT_ADAPTER.validate_python(raw) for raw in (COMMUNICATION, other, fewer)]
    assert a.model_fields_set is b.model_fields_set  # shared
    assert [e.model_fields_set for e in (a, b, c)] == [e.model_fields_set for e in fresh]  # same content
    assert [a, b, c] == fresh
    assert [e.model_dump(exclude_unset=True) for e in (a, b, c)] == [e.model_dump(exclude_unset=True) for e in fresh]
    copied = a.model_copy(update={"body": "text"})  # copies the set before adding to it
    assert "body" in copied.model_fields_set and "body" not in b.model_fields_set
