"""Log-level checks of new events: id uniqueness, idempotence and references in time order."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from forewarn.events.errors import InputError
from forewarn.events.models import (
    REFERENCE_SOURCES,
    did_you_mean,
    format_timestamp,
)
from forewarn.events.parse import SourcedEvent

__all__ = [
    "KnownEntity",
    "check_log",
    "dangling_message",
    "evaluation_order",
    "id_clash_message",
    "unknown_rule_message",
]

_EMPTY: Mapping[str, str] = {}


@dataclass(frozen=True)
class KnownEntity:
    """An entity defined by an event already in the log (seq = its recording sequence)."""

    kind: str
    id: str
    at: datetime
    seq: int


def check_log(
    new: Sequence[SourcedEvent],
    known_entities: Iterable[KnownEntity] = (),
    known_events: Mapping[str, str] = _EMPTY,
    rule_ids: Collection[str] | None = None,
) -> tuple[list[SourcedEvent], list[InputError]]:
    """(events to append, errors) for new events against the log and each other.

    Identical re-imports are dropped silently; the same id with other content is an
    error; every reference must name an entity defined earlier in evaluation order
    (`at`, then recording order: known events first, new ones in file/line order).
    These are the import's checks (`forewarn.log.bulk.check_events`: one implementation).
    """
    from forewarn.log.bulk import check_events  # the log's package builds on this one

    return check_events(new, known_entities, known_events, rule_ids)


def evaluation_order(events: Sequence[SourcedEvent]) -> list[SourcedEvent]:
    """New events in evaluation order: by `at`, ties in the given (recording) order."""
    return sorted(events, key=lambda s: s.event.at)  # sorted() is stable


def id_clash_message(other: str) -> str:
    """The message for an event whose id is taken by `other` (with different content)."""
    return f"same id as {other}, with different content"


def dangling_message(
    field: str, kinds: Sequence[str], ref_id: str, at: datetime, definer: tuple[datetime, str] | None
) -> str:
    """`unknown maintenance 'mx-9' (no maintenance.scheduled for it at or before T)`.

    `definer` is (when, where) of the first new event, in evaluation order, that defines
    the entity (for the first of `kinds` that has one), if any.
    """
    when = format_timestamp(at)
    if len(kinds) == 1:
        kind = kinds[0]
        message = (f"unknown {kind} '{ref_id}' (no {REFERENCE_SOURCES[kind]} "
                   f"for it at or before {when})")
    else:
        message = (f"unknown {field} '{ref_id}' (no {_or(kinds)} "
                   f"with that id at or before {when})")
    if definer is not None:
        message += f"; it is defined later, at {format_timestamp(definer[0])} ({definer[1]})"
    return message


def _or(words: Sequence[str]) -> str:
    return ", ".join(words[:-1]) + " or " + words[-1]


def unknown_rule_message(rule: str, rule_ids: Collection[str]) -> str:
    """A waiver naming a rule that is not in the policy."""
    return f"unknown rule '{rule}'{did_you_mean(rule, sorted(rule_ids))}"
