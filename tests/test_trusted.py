"""Stored events read back without validation are exactly what validating them gives (forewarn.log.trusted)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from pydantic import BaseModel, ValidationError
from strategies import lifecycles, scaled

import forewarn
from forewarn.events import EVENT_ADAPTER, parse_lines
from forewarn.events.parse import fast_canonical_json
from forewarn.log.trusted import event_from_payload

SAMPLES = Path(forewarn.__file__).parent / "samples"
LOGS = [*sorted(SAMPLES.glob("*.jsonl")), *sorted((Path(__file__).parent / "data" / "good").glob("*.jsonl"))]


def assert_same(built: BaseModel, validated: BaseModel) -> None:
    """Same class, same values in the same field order, same set fields, nested models alike."""
    assert type(built) is type(validated)
    assert list(built.__dict__) == list(validated.__dict__)
    assert built.model_fields_set == validated.model_fields_set
    assert built.__pydantic_extra__ == validated.__pydantic_extra__
    assert built.__pydantic_private__ == validated.__pydantic_private__
    for name, value in validated.__dict__.items():
        mine = built.__dict__[name]
        if isinstance(value, BaseModel):
            assert_same(mine, value)
        else:
            assert type(mine) is type(value) and mine == value, name
    assert built == validated


def stored(lines: list[bytes]) -> list[str]:
    events, errors = parse_lines(lines, "<test>")
    assert not errors
    return [fast_canonical_json(s.event) for s in events]


@pytest.mark.parametrize("log", LOGS, ids=[p.name for p in LOGS])
def test_every_sample_event_reads_back_as_validated(log: Path) -> None:
    payloads = stored(log.read_bytes().splitlines())
    assert payloads
    for payload in payloads:
        assert_same(event_from_payload(payload), EVENT_ADAPTER.validate_json(payload))


@scaled(100)
@given(lifecycles())
def test_generated_events_read_back_as_validated(lifecycle: object) -> None:
    for payload in stored([line.encode() for line in lifecycle.jsonl().splitlines()]):  # type: ignore[attr-defined]
        assert_same(event_from_payload(payload), EVENT_ADAPTER.validate_json(payload))


def test_an_offset_timestamp_is_converted_as_validation_does() -> None:
    payload = '{"at":"2026-03-02T10:00:00+02:00","communication":"c1","id":"t1","ticket":"t","type":"ticket.opened"}'
    assert_same(event_from_payload(payload), EVENT_ADAPTER.validate_json(payload))


@pytest.mark.parametrize(
    "payload",
    [
        '{"at":"2026-03-02T10:00:00Z","communication":"c1","id":"t1","ticket":"t","type":"ticket.opened","x":1}',
        '{"at":"2026-03-02T10:00:00Z","id":"t1","ticket":"t","type":"ticket.opened"}',
        '{"at":"2026-03-02T10:00:00Z","communication":"c1","id":"t1","ticket":"t","type":"ticket.closed"}',
        '["not", "an", "event"]',
        "{not json",
    ],
    ids=["unknown field", "missing field", "unknown type", "not an object", "not JSON"],
)
def test_anything_but_the_stored_form_is_validated(payload: str) -> None:
    with pytest.raises(ValidationError):
        event_from_payload(payload)


def test_a_model_validation_would_complete_is_left_to_validation() -> None:
    from pydantic import Field

    from forewarn.log import trusted

    class WithFactory(BaseModel):
        tags: list[str] = Field(default_factory=list)

    with pytest.raises(ValueError, match="validation"):
        trusted._model(WithFactory)({})
