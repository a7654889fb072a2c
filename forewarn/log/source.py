"""Getting events in and out of the log: all-or-nothing import, JSONL files as a log, reading back."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from forewarn.events import (
    EVENT_ADAPTER,
    Event,
    InputError,
    SourcedEvent,
    check_log,
    parse_files,
    parse_lines,
    share_fields_sets,
)
from forewarn.events.parse import bounded_lines, gc_paused
from forewarn.log.bulk import import_streaming
from forewarn.log.chain import Chain, Fingerprint
from forewarn.log.store import EventStore
from forewarn.parallel import forked


class InputErrors(Exception):
    """Bad input: every error found, each as `file:line: ...`."""

    def __init__(self, errors: Sequence[InputError]) -> None:
        super().__init__(f"{len(errors)} input error(s)")
        self.errors = list(errors)


@dataclass(frozen=True)
class ImportResult:
    appended: int
    unchanged: int  # identical events already in the log (or repeated in the files)


Progress = Callable[[int], None]
"""Called with the number of bytes read since the last call."""


def _counted(handle: Iterable[bytes], progress: Progress, every: int = 5_000) -> Iterator[bytes]:
    pending = 0
    for n, line in enumerate(handle, 1):
        pending += len(line)
        if n % every == 0:
            progress(pending)
            pending = 0
        yield line
    progress(pending)


def parse_with_progress(
    paths: Sequence[str | Path], progress: Progress | None
) -> tuple[list[SourcedEvent], list[InputError]]:
    """parse_files, reporting bytes read as it goes (for a progress bar)."""
    if progress is None:
        return parse_files(paths)
    events: list[SourcedEvent] = []
    errors: list[InputError] = []
    for path in paths:
        try:
            with open(path, "rb") as handle:
                found, problems = parse_lines(_counted(bounded_lines(handle), progress), str(path))
        except OSError as exc:
            errors.append(InputError(str(path), 0, None, None, None, f"cannot read: {exc.strerror}"))
            continue
        events.extend(found)
        errors.extend(problems)
    return events, errors


def _evaluation_order(events: Sequence[SourcedEvent]) -> list[SourcedEvent]:
    """Sort by `at`; ties keep file order (sorted() is stable)."""
    return sorted(events, key=lambda s: s.event.at)


def import_files(
    store: EventStore,
    paths: Sequence[str | Path],
    rule_ids: Collection[str] | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
) -> ImportResult:
    """Validate every file and append everything in one transaction, or nothing.

    Streams (see `forewarn.log.bulk`): large inputs are validated by `workers` processes, this one included
    (default: for a large input, one per CPU idle at the start; 1: this process only), rows are inserted as they
    come and the transaction is rolled back on error.
    """
    appended, unchanged, errors = import_streaming(store, paths, rule_ids, progress, workers)
    if errors:
        raise InputErrors(errors)
    return ImportResult(appended=appended, unchanged=unchanged)


def load_files(paths: Sequence[str | Path], rule_ids: Collection[str] | None = None) -> list[Event]:
    """JSONL files as a validated, temporary log, in evaluation order."""
    return load_files_fingerprinted(paths, rule_ids, fingerprint=False)[0]


def load_files_fingerprinted(
    paths: Sequence[str | Path], rule_ids: Collection[str] | None = None, fingerprint: bool = True
) -> tuple[list[Event], Fingerprint | None]:
    """`load_files`, and the log's fingerprint (`chain_fingerprint`) if asked for."""
    parsed, errors = parse_files(paths)
    if errors:
        raise InputErrors(errors)
    events, errors = check_log(parsed, rule_ids=rule_ids)
    if errors:
        raise InputErrors(errors)
    ordered = _evaluation_order(events)
    return [s.event for s in ordered], chain_fingerprint(ordered) if fingerprint else None


def chain_fingerprint(events: Iterable[SourcedEvent]) -> Fingerprint:
    """The fingerprint of an in-memory log (`--events`): the hash chain over its events in this order, as
    importing them into an empty log records them (in evaluation order: `_evaluation_order` of the checked events)."""
    return Chain().extend(s.canonical for s in events).fingerprint()


CHECKS_APART_MIN = 50_000
"""From this many events on, `load_files_checking` checks the log in a forked child."""


def load_files_checking(
    paths: Sequence[str | Path], rule_ids: Collection[str] | None = None
) -> tuple[list[Event], Confirm]:
    """`load_files`, with the log checks (ids, references, rules) done meanwhile on the other CPU.

    Returns the parsed events in evaluation order, which the caller may start working on, and
    `confirm`: it raises InputErrors if the log is bad, and returns None if those events stand,
    or the ones to use instead when identical repeats were dropped (as `load_files` would have);
    then `confirm.fingerprint` is the log's (`chain_fingerprint`, computed with the checks).
    Parse errors are raised at once. Small logs are checked here, before returning (their errors too).
    """
    parsed, errors = parse_files(paths)
    if errors:
        raise InputErrors(errors)
    if len(parsed) >= CHECKS_APART_MIN:
        checked = forked(_log_checks, parsed, rule_ids)
    else:
        result = _log_checks(parsed, rule_ids)
        if result[0]:
            raise InputErrors(result[0])
        checked = lambda: result  # noqa: E731

    return [s.event for s in _evaluation_order(parsed)], Confirm(parsed, checked)


class Confirm:
    """The `confirm` of `load_files_checking`."""

    def __init__(self, parsed: Sequence[SourcedEvent], checked: Callable[[], _Checks]) -> None:
        self.parsed = parsed
        self.checked = checked
        self.fingerprint: Fingerprint | None = None

    def __call__(self) -> list[Event] | None:
        errors, dropped, self.fingerprint = self.checked()
        if errors:
            raise InputErrors(errors)
        if not dropped:
            return None
        return [s.event for s in _evaluation_order([s for i, s in enumerate(self.parsed) if i not in dropped])]


_Checks = tuple[list[InputError], set[int], Fingerprint | None]


def _log_checks(parsed: Sequence[SourcedEvent], rule_ids: Collection[str] | None) -> _Checks:
    """check_log's errors, the positions of the events it dropped (identical repeats), and the fingerprint
    of the log (of the events kept) if it has no errors."""
    fresh, errors = check_log(parsed, rule_ids=rule_ids)
    kept = {id(s) for s in fresh}
    fingerprint = None if errors else chain_fingerprint(_evaluation_order(fresh))
    return errors, {i for i, s in enumerate(parsed) if id(s) not in kept}, fingerprint


def read_store(store: EventStore, until: datetime | None = None) -> list[Event]:
    """The log's events in evaluation order (up to `until`)."""
    return stored_events(store.payloads(until))


def read_store_fingerprinted(store: EventStore, until: datetime | None = None) -> tuple[list[Event], Fingerprint]:
    """`read_store`, and the fingerprint of the log read: events appended meanwhile are not read."""
    fingerprint = store.fingerprint()
    return stored_events(store.payloads(until, fingerprint.seq)), fingerprint


def stored_events(payloads: Iterable[bytes | str]) -> list[Event]:
    """Events from the log's stored payloads, kept in memory (equal fields sets shared, the GC paused)."""
    validate = EVENT_ADAPTER.validate_json
    events = []
    with gc_paused():
        for payload in payloads:
            try:
                event = validate(payload)
            except ValidationError as exc:  # the log holds only validated events: it was altered or damaged
                first = exc.errors(include_url=False)[0]
                raise DamagedLog(f"a stored event is not a valid event ({first['msg']})") from None
            share_fields_sets(event)
            events.append(event)
    return events


class DamagedLog(ValueError):
    """A stored event no longer validates: the log's file was altered or damaged."""
