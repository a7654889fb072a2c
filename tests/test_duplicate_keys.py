"""A key repeated in an event line (at any depth) is refused: JSON parsers silently keep the last one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from forewarn.cli import main
from forewarn.events import EVENT_ADAPTER, MetaKeys
from forewarn.events.parse import maybe_duplicate_keys, parse_lines
from forewarn.log import bulk

SAMPLE = Path(__file__).resolve().parents[1] / "forewarn" / "samples" / "basic.jsonl"
GOOD = SAMPLE.read_bytes().splitlines(keepends=True)
COMM = json.loads(GOOD[4])  # a communication.sent with `states`
MESSAGE = "duplicate key: a JSON object must not repeat a key (which value counts would be a guess)"


def text(event: dict[str, object]) -> str:
    return json.dumps(event, separators=(",", ":"))


def repeated(event: dict[str, object], key: str, value: object, *, spaced: str = "") -> bytes:
    """`event` with `key` given again (last) with `value`; `spaced`: whitespace before that colon."""
    body = text(event)[:-1]
    return f'{body},"{key}"{spaced}:{json.dumps(value)}}}\n'.encode()


CASES = [
    (repeated(COMM, "at", "2027-01-01T00:00:00Z"), "at"),
    (repeated(COMM, "at", COMM["at"]), "at"),  # the same value twice is still ambiguous input
    (repeated(COMM, "at", "2027-01-01T00:00:00Z", spaced=" "), "at"),
    (repeated(COMM, "at", "2027-01-01T00:00:00Z", spaced="\t"), "at"),
    (repeated(COMM, "at", "2027-01-01T00:00:00Z", spaced="  \r "), "at"),
    (text({**COMM, "meta": {"source": "a"}})[:-2].encode() + b',"source":"b"}}\n', "meta.source"),
    (text({**COMM, "meta": {"deep": [{"x": 1}]}}).replace('{"x":1}', '{"x":1,"x":2}').encode(), "meta.deep[0].x"),
    (text(COMM).replace('"impact":', '"impact":"x","impact":').encode(), "states.impact"),
    (text({**COMM, "subject": 'say \\"hi\\"'}).encode()[:-1] + b',"at":"2026-01-01T00:00:00Z"}', "at"),
]


@pytest.mark.parametrize(("line", "field"), CASES)
def test_a_repeated_key_is_refused(line: bytes, field: str) -> None:
    assert json.loads(line)  # valid JSON, every parser takes it
    for lines in ([line], [GOOD[0], line]):  # the first line takes the full path, the others the fast one
        events, errors = parse_lines(lines, "x.jsonl")
        assert [str(e) for e in errors] == [
            f"x.jsonl:{len(lines)}: communication.sent '{COMM['id']}': field '{field}': {MESSAGE}"]
        assert len(events) == len(lines) - 1
        chunk = bulk.parse_chunk(lines, "x.jsonl", True)
        assert [e[4:] for e in chunk[5]] == [(field, MESSAGE)] and len(chunk[0]) == len(lines) - 1


def test_lines_without_repeats_are_accepted_whatever_their_layout() -> None:
    lines = [
        json.dumps(COMM).encode(),  # ", " and ": " separators
        json.dumps(COMM, indent=None, separators=(" , ", " : ")).encode(),
        text({**COMM, "subject": 'a "quoted": b', "meta": {"n": [{"a": 1}, {"a": 2}], "a": {"a": {}}}}).encode(),
        text({**COMM, "meta": None}).encode(),
    ]
    events, errors = parse_lines([GOOD[0], *lines], "x.jsonl")
    assert errors == [] and len(events) == 5
    assert bulk.parse_chunk([GOOD[0], *lines], "x.jsonl", True)[5] == []


@pytest.mark.parametrize("workers", ["1", "2"])
def test_import_and_audit_refuse_it_with_file_and_line(
    tmp_path: Path, workers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOREWARN_IMPORT_WORKERS", workers)
    path = tmp_path / "dup.jsonl"
    path.write_bytes(b"".join(GOOD[:4]) + CASES[0][0] + b"".join(GOOD[5:]))
    result = CliRunner().invoke(main, ["import", str(path), "--db", str(tmp_path / "log.db")])
    assert result.exit_code == 2
    assert f"{path}:5: communication.sent '{COMM['id']}': field 'at': {MESSAGE}" in result.stderr
    result = CliRunner().invoke(main, ["audit", "--events", str(path)])
    assert result.exit_code == 2 and f"{path}:5:" in result.stderr and MESSAGE in result.stderr


CUSTOMER = json.loads(GOOD[0])


def test_a_repeated_label_is_refused_and_labels_alone_are_not_suspected() -> None:
    labelled = text({**CUSTOMER, "labels": {"tier": "a", "region": "eu"}})
    line = labelled.replace('"tier":"a"', '"tier":"a","tier":"b"').encode()
    events, errors = parse_lines([GOOD[1], line], "x.jsonl")
    assert [(e.field, e.message) for e in errors] == [("labels.tier", MESSAGE)] and len(events) == 1
    counted = MetaKeys()
    event = EVENT_ADAPTER.validate_json(labelled, by_name=False, context=counted)
    assert not maybe_duplicate_keys(labelled.encode(), event, counted.keys)  # every key counted: no second parse


def test_the_meta_keys_counted_are_those_of_the_validation_that_counted_them() -> None:
    """Each validation counts into the context it was given: another validation in between (another thread
    of the service validating stored events) neither adds to it nor replaces it."""
    line = repeated({**COMM, "meta": {"a": {"b": 1}}}, "at", COMM["at"])
    mine = MetaKeys()
    event = EVENT_ADAPTER.validate_json(line, by_name=False, context=mine)
    other = MetaKeys()
    EVENT_ADAPTER.validate_json(text({**COMM, "meta": {"x": 1, "y": {"z": 2}, "w": 3}}), by_name=False, context=other)
    EVENT_ADAPTER.validate_json(text({**COMM, "meta": {"x": 1}}))  # no context: counted nowhere
    assert (mine.keys, other.keys) == (2, 4)
    assert maybe_duplicate_keys(line, event, mine.keys)  # the repeated `at` shows
    assert not maybe_duplicate_keys(text({**COMM, "meta": {"a": {"b": 1}}}).encode(), event, mine.keys)
