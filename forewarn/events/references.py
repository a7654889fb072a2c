"""Log-level checks of new events: id uniqueness, idempotence and references in time order."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from forewarn.events.errors import InputError
from forewarn.events.models import (
    REFERENCE_SOURCES,
    Reference,
    WaiverGranted,
    did_you_mean,
    format_timestamp,
)
from forewarn.events.parse import SourcedEvent, gc_paused

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
    """
    with gc_paused():
        fresh, errors = _dedupe(new, known_events)
        errors.extend(_check_references(fresh, known_entities))
        if rule_ids is not None:
            errors.extend(_check_rules(fresh, rule_ids))
    return fresh, errors


def evaluation_order(events: Sequence[SourcedEvent]) -> list[SourcedEvent]:
    """New events in evaluation order: by `at`, ties in the given (recording) order."""
    return sorted(events, key=lambda s: s.event.at)  # sorted() is stable


# --------------------------------------------------------------------------- ids


def _dedupe(
    new: Sequence[SourcedEvent], known_events: Mapping[str, str]
) -> tuple[list[SourcedEvent], list[InputError]]:
    """Drop identical repeats; report the same id with different content."""
    fresh: list[SourcedEvent] = []
    errors: list[InputError] = []
    first: dict[str, SourcedEvent] = {}
    for item in new:
        ident = item.event.id
        stored = known_events.get(ident)
        if stored is not None:
            if stored != item.canonical:
                errors.append(_id_clash(item, "an event already in the log"))
            continue
        earlier = first.get(ident)
        if earlier is None:
            first[ident] = item
            fresh.append(item)
        elif earlier.canonical != item.canonical:
            errors.append(_id_clash(item, f"the event at {earlier.where}"))
    return fresh, errors


def _id_clash(item: SourcedEvent, other: str) -> InputError:
    return _located(item, "id", id_clash_message(other))


def id_clash_message(other: str) -> str:
    """The message for an event whose id is taken by `other` (with different content)."""
    return f"same id as {other}, with different content"


def _located(item: SourcedEvent, field: str | None, message: str) -> InputError:
    event = item.event
    return InputError(item.file, item.line, event.type, event.id, field, message)


# --------------------------------------------------------------------------- references


def _check_references(
    fresh: Sequence[SourcedEvent], known_entities: Iterable[KnownEntity]
) -> list[InputError]:
    """Walk known definitions and new events in evaluation order."""
    known = sorted(known_entities, key=lambda k: (k.at, k.seq))
    ordered = evaluation_order(fresh)
    defined: defaultdict[str, set[str]] = defaultdict(set)
    dangling: list[tuple[SourcedEvent, Reference]] = []
    k, n_known = 0, len(known)
    for item in ordered:
        event = item.event
        at = event.at
        while k < n_known and known[k].at <= at:  # known events win ties
            defined[known[k].kind].add(known[k].id)
            k += 1
        # event.references(), without building a Reference for every reference that resolves
        for name, kinds in event.REFS:
            value = getattr(event, name)
            if value is not None and not (
                value in defined[kinds[0]] or any(value in defined[kind] for kind in kinds[1:])
            ):
                dangling.append((item, Reference(name, kinds, value)))
        if event.HAS_CUSTOMERS and event.customers != "all":  # type: ignore[attr-defined]
            customers = defined["customer"]
            dangling.extend(
                (item, Reference("customers", ("customer",), c))
                for c in event.customers  # type: ignore[attr-defined]
                if c not in customers
            )
        if event.ENTITY is not None:
            defined[event.ENTITY].add(getattr(event, event.ENTITY))
    if not dangling:
        return []
    later = _definitions(ordered)
    return [_dangling(item, ref, later) for item, ref in dangling]


def _definitions(ordered: Sequence[SourcedEvent]) -> dict[tuple[str, str], SourcedEvent]:
    """First new event (in evaluation order) defining each (kind, id)."""
    found: dict[tuple[str, str], SourcedEvent] = {}
    for item in ordered:
        entity = item.event.defines()
        if entity is not None:
            found.setdefault(entity, item)
    return found


def _dangling(
    item: SourcedEvent, ref: Reference, later: Mapping[tuple[str, str], SourcedEvent]
) -> InputError:
    definer = next((later[(kind, ref.id)] for kind in ref.kinds if (kind, ref.id) in later), None)
    where = None if definer is None else (definer.event.at, definer.where)
    return _located(item, ref.field, dangling_message(ref.field, ref.kinds, ref.id, item.event.at, where))


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


# --------------------------------------------------------------------------- rules


def _check_rules(fresh: Sequence[SourcedEvent], rule_ids: Collection[str]) -> list[InputError]:
    """A waiver's rule must name a rule of the policy in force."""
    errors: list[InputError] = []
    for item in fresh:
        event = item.event
        if isinstance(event, WaiverGranted) and event.rule not in rule_ids:
            errors.append(_located(item, "rule", unknown_rule_message(event.rule, rule_ids)))
    return errors


def unknown_rule_message(rule: str, rule_ids: Collection[str]) -> str:
    """A waiver naming a rule that is not in the policy."""
    return f"unknown rule '{rule}'{did_you_mean(rule, sorted(rule_ids))}"
