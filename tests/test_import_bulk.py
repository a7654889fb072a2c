"""The streaming import (forewarn.log.bulk) behaves exactly like validate-everything-then-append.

The reference is the straightforward algorithm built from the public pieces: parse every file into models,
the log checks as first written (`reference_check_log`, walking the events one by one) against the log, append
in evaluation order. Both run on the same inputs (out of order, split,
repeated, conflicting, dangling, bad lines, onto a log that already holds events) and must give the same
errors, in the same order, and the same rows, whatever the chunking, the number of worker processes and
whether the indexes are dropped for the append.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forewarn import parallel
from forewarn.events import InputError, KnownEntity, SourcedEvent, evaluation_order, parse_files
from forewarn.events.models import Reference, WaiverGranted
from forewarn.events.parse import gc_paused
from forewarn.events.references import dangling_message, id_clash_message, unknown_rule_message
from forewarn.instants import epoch_us as _epoch_us
from forewarn.log import bulk
from forewarn.log.source import InputErrors, import_files, read_store
from forewarn.log.store import EventStore, _utc_text

SAMPLES = Path(__file__).resolve().parents[1] / "forewarn" / "samples"
QUARTER = SAMPLES / "quarter.jsonl"
DATA = Path(__file__).parent / "data"
RULES = {
    "advance-notice", "closing-notice", "emergency-notice", "extension-notice", "incident-notice", "notice-content",
    "release-notice", "reply-routing", "sender-address", "start-reminder", "ticket-opened", "update-cadence",
}
QUARTER_LINES = QUARTER.read_bytes().splitlines(keepends=True)


# --------------------------------------------------------------------------- the reference checks

_EMPTY: Mapping[str, str] = {}


def reference_check_log(
    new: Sequence[SourcedEvent],
    known_entities: Iterable[KnownEntity] = (),
    known_events: Mapping[str, str] = _EMPTY,
    rule_ids: Collection[str] | None = None,
) -> tuple[list[SourcedEvent], list[InputError]]:
    """The log checks as they were first written, walking the events one by one: the oracle `forewarn.log.bulk`'s
    checks (the one implementation) are compared with.

    (events to append, errors) for new events against the log and each other.

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


def _located(item: SourcedEvent, field: str | None, message: str) -> InputError:
    event = item.event
    return InputError(item.file, item.line, event.type, event.id, field, message)


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


def _check_rules(fresh: Sequence[SourcedEvent], rule_ids: Collection[str]) -> list[InputError]:
    """A waiver's rule must name a rule of the policy in force."""
    errors: list[InputError] = []
    for item in fresh:
        event = item.event
        if isinstance(event, WaiverGranted) and event.rule not in rule_ids:
            errors.append(_located(item, "rule", unknown_rule_message(event.rule, rule_ids)))
    return errors



# --------------------------------------------------------------------------- helpers


def reference_import(db: Path, paths: Sequence[Path], rule_ids: set[str] | None = RULES) -> list[str]:
    """Validate everything into models, check, append in evaluation order (the unoptimised algorithm)."""
    store = EventStore(db)
    try:
        parsed, errors = parse_files(paths)
        if errors:
            return [str(e) for e in errors]
        store.begin_exclusive()
        known = store.known_events(s.event.id for s in parsed)
        fresh, errors = reference_check_log(parsed, store.known_entities(), known, rule_ids)
        if errors:
            store.rollback()
            return [str(e) for e in errors]
        store.append_in_transaction(evaluation_order(fresh))
        store.commit()
        return []
    finally:
        store.close()


def streaming_import(db: Path, paths: Sequence[Path], workers: int = 1, rule_ids: set[str] | None = RULES) -> list[str]:
    store = EventStore(db)
    try:
        import_files(store, paths, rule_ids, workers=workers)
        return []
    except InputErrors as exc:
        return [str(e) for e in exc.errors]
    finally:
        store.close()


def rows(db: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT *, typeof(payload) FROM events ORDER BY seq").fetchall()
    finally:
        conn.close()


def schema(db: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return sorted(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall())
    finally:
        conn.close()


def digest(db: Path) -> str:
    return hashlib.sha256(repr(rows(db)).encode()).hexdigest()


def write(path: Path, lines: Sequence[bytes]) -> Path:
    path.write_bytes(b"".join(lines))
    return path


def line(event: dict[str, object]) -> bytes:
    return json.dumps(event).encode() + b"\n"


def events() -> list[dict[str, object]]:
    return [json.loads(x) for x in QUARTER_LINES]


@pytest.fixture(params=["serial", "parallel"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Tiny chunks (many of them, so files are cut mid-way) and the index drop for any append."""
    monkeypatch.setattr(bulk, "CHUNK_BYTES", 2_000)
    monkeypatch.setattr(bulk, "BULK_MIN_ROWS", 1)
    return 1 if request.param == "serial" else 2


def same(tmp_path: Path, steps: Sequence[Sequence[Path]], workers: int, rule_ids: set[str] | None = RULES) -> None:
    """Each step (one import of some files) gives the same errors and leaves the same rows both ways."""
    expected, actual = tmp_path / "reference.db", tmp_path / "streaming.db"
    for paths in steps:
        want = reference_import(expected, paths, rule_ids)
        got = streaming_import(actual, paths, workers, rule_ids)
        assert got == want
        assert rows(actual) == rows(expected)
    assert schema(actual) == schema(expected)


# --------------------------------------------------------------------------- same behaviour


def test_sample_in_one_import(tmp_path: Path, mode: int) -> None:
    same(tmp_path, [[QUARTER], [QUARTER], [SAMPLES / "basic.jsonl"]], mode)


@pytest.mark.parametrize("chunk", [500, 5_000])
def test_more_workers_than_cpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(bulk, "CHUNK_BYTES", chunk)
    lines = list(QUARTER_LINES)
    random.Random(chunk).shuffle(lines)
    shuffled = write(tmp_path / "shuffled.jsonl", lines)
    same(tmp_path, [[QUARTER], [shuffled, QUARTER]], 4)


def test_shuffled_lines_are_recorded_in_evaluation_order(tmp_path: Path, mode: int) -> None:
    lines = list(QUARTER_LINES)
    random.Random(7).shuffle(lines)
    same(tmp_path, [[write(tmp_path / "shuffled.jsonl", lines)]], mode)


def test_files_given_in_reverse_time_order(tmp_path: Path, mode: int) -> None:
    """The first file goes in as it comes; the second goes back in time: everything is re-inserted by `at`."""
    third = len(QUARTER_LINES) // 3
    parts = [QUARTER_LINES[:third], QUARTER_LINES[third : 2 * third], QUARTER_LINES[2 * third :]]
    files = [write(tmp_path / f"part{i}.jsonl", p) for i, p in enumerate(parts)]
    same(tmp_path, [list(reversed(files))], mode)


def test_late_events_after_the_prefix_are_appended_in_order(tmp_path: Path, mode: int) -> None:
    """Only the last chunk is out of order, and all of it comes after what went in first."""
    head, tail = QUARTER_LINES[:300], QUARTER_LINES[300:]
    same(tmp_path, [[write(tmp_path / "a.jsonl", head + list(reversed(tail)))]], mode)


def test_onto_a_log_that_holds_events(tmp_path: Path, mode: int) -> None:
    half = len(QUARTER_LINES) // 2
    first = write(tmp_path / "first.jsonl", QUARTER_LINES[:half])
    overlap = write(tmp_path / "overlap.jsonl", QUARTER_LINES[half // 2 :])
    same(tmp_path, [[first], [overlap], [QUARTER]], mode)


def test_small_append_onto_a_larger_log_keeps_the_indexes(
    tmp_path: Path, mode: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "BULK_MIN_ROWS", 50)
    first = write(tmp_path / "first.jsonl", QUARTER_LINES[:350])
    rest = write(tmp_path / "rest.jsonl", QUARTER_LINES[300:])
    same(tmp_path, [[first], [rest]], mode)


def test_repeats_and_conflicts(tmp_path: Path, mode: int) -> None:
    evs = events()
    lines = [line(e) for e in evs]
    changed = dict(evs[40], subject="something else") if "subject" in evs[40] else dict(evs[40], meta={"x": 1})
    respelled = json.dumps(dict(reversed(list(evs[50].items())))).encode() + b"\n"  # same content, other spelling
    a = write(tmp_path / "a.jsonl", lines[:200] + lines[10:20] + [respelled])
    b = write(tmp_path / "b.jsonl", [*lines[150:], line(changed), *lines[5:6], *lines[199:201]])
    same(tmp_path, [[a, b]], mode)
    same(tmp_path / "..", [], mode)  # nothing


def test_conflicts_with_the_log(tmp_path: Path, mode: int) -> None:
    evs = events()
    lines = [line(e) for e in evs]
    first = write(tmp_path / "first.jsonl", lines[:100])
    conflict = dict(evs[3], meta={"changed": True})
    second = write(tmp_path / "second.jsonl", [*lines[90:], line(conflict), *lines[0:2]])
    same(tmp_path, [[first], [second]], mode)


def test_dangling_references_and_late_definitions(tmp_path: Path, mode: int) -> None:
    evs = events()
    maintenance = next(i for i, e in enumerate(evs) if e["type"] == "maintenance.scheduled")
    late = dict(evs[maintenance], at="2027-01-01T00:00:00Z")
    lines = [line(e) for i, e in enumerate(evs) if i != maintenance] + [line(late)]
    waiver = {"id": "w-x", "type": "waiver.granted", "at": "2026-06-01T00:00:00Z", "waiver": "wv-x",
              "rule": "advance-notise", "subject": "nothing-such", "reason": "r", "approved_by": "me"}
    self_ref = {"id": "t-x", "type": "ticket.opened", "at": "2026-06-01T00:00:00Z", "ticket": "tk-x",
                "communication": "c-later"}
    comm = next(e for e in evs if e["type"] == "communication.sent")
    later_comm = dict(comm, id="c-later-ev", communication="c-later", at="2026-06-02T00:00:00Z")
    same(tmp_path, [[write(tmp_path / "x.jsonl", [*lines, line(waiver), line(self_ref), line(later_comm)])]], mode)


def test_references_to_the_log_count_from_their_time_on(tmp_path: Path, mode: int) -> None:
    evs = events()
    customers = [line(e) for e in evs if e["type"] == "customer.upserted"]
    others = [line(e) for e in evs if e["type"] != "customer.upserted"]
    first = write(tmp_path / "customers.jsonl", customers)
    moved = [dict(e, at="2030-01-01T00:00:00Z", id=f"{e['id']}-late") for e in evs if e["type"] == "customer.upserted"]
    late = write(tmp_path / "late.jsonl", [line(e) for e in moved])
    rest = write(tmp_path / "rest.jsonl", others)
    early = dict(evs[-1], id="early-one", at="2020-01-01T00:00:00Z")
    same(tmp_path, [[late], [rest, write(tmp_path / "early.jsonl", [line(early)])], [first], [rest]], mode)


def test_waiver_rules_not_checked_without_a_policy(tmp_path: Path, mode: int) -> None:
    waiver = {"id": "w-x", "type": "waiver.granted", "at": "2026-06-01T00:00:00Z", "waiver": "wv-x",
              "rule": "no-such-rule", "subject": "mx-0005", "reason": "r", "approved_by": "me"}
    path = write(tmp_path / "w.jsonl", [*QUARTER_LINES, line(waiver)])
    same(tmp_path, [[path]], mode, rule_ids=None)
    same(tmp_path / "..", [[path]], mode)


def test_input_errors_only_until_the_lines_are_valid(tmp_path: Path, mode: int) -> None:
    """Bad lines are all reported, and then nothing else (no reference or id checks), as before."""
    evs = events()
    bad = [line(e) for e in evs]
    bad[5] = b'{"id": "broken", \n'
    bad[100] = line(dict(evs[100], at="2026-01-01T00:00:00"))
    bad[300] = b"\n"
    bad[301] = b"  \n"
    conflict = line(dict(evs[3], meta={"changed": True}))
    files = [write(tmp_path / "bad.jsonl", [*bad, conflict]), tmp_path / "missing.jsonl", tmp_path]
    same(tmp_path, [files, [files[0]]], mode)


@pytest.mark.parametrize("fixture", sorted((DATA / "bad").glob("*.jsonl")) + sorted((DATA / "good").glob("*.jsonl")),
                         ids=lambda p: p.name)
def test_every_fixture(tmp_path: Path, fixture: Path) -> None:
    same(tmp_path, [[fixture]], 1)


def test_bom_blank_lines_and_no_final_newline(tmp_path: Path, mode: int) -> None:
    lines = list(QUARTER_LINES)
    lines[0] = b"\xef\xbb\xbf" + lines[0]
    lines.insert(10, b"\n")
    lines.insert(11, b"\r\n")
    lines[-1] = lines[-1].rstrip(b"\n")
    second = list(QUARTER_LINES[:3])
    second[0] = b"\xef\xbb\xbf" + second[0]
    same(tmp_path, [[write(tmp_path / "a.jsonl", lines)], [write(tmp_path / "b.jsonl", second)]], mode)
    bom_later = [QUARTER_LINES[0], b"\xef\xbb\xbf" + QUARTER_LINES[1]]
    same(tmp_path / "..", [[write(tmp_path / "c.jsonl", bom_later)]], mode)


def test_empty_files(tmp_path: Path, mode: int) -> None:
    empty = write(tmp_path / "empty.jsonl", [])
    same(tmp_path, [[empty], [empty, QUARTER, empty]], mode)


def test_a_pipe_is_read_as_a_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk, "STREAM_LINES", 7)
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    shuffled = list(QUARTER_LINES)
    random.Random(3).shuffle(shuffled)

    def feed() -> None:
        with open(fifo, "wb") as fh:
            fh.write(b"".join(shuffled))

    writer = threading.Thread(target=feed)
    writer.start()
    got = streaming_import(tmp_path / "pipe.db", [fifo], workers=2)
    writer.join()
    want = reference_import(tmp_path / "ref.db", [write(tmp_path / "same.jsonl", shuffled)])
    assert got == [e.replace("same.jsonl", "pipe.jsonl") for e in want]
    assert rows(tmp_path / "pipe.db") == rows(tmp_path / "ref.db")


def test_a_pipe_is_read_as_a_stream_into_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk, "STREAM_LINES", 7)
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    threading.Thread(target=lambda: fifo.write_bytes(QUARTER.read_bytes())).start()
    assert streaming_import(tmp_path / "pipe.db", [fifo], workers=2) == []
    assert reference_import(tmp_path / "ref.db", [QUARTER]) == []
    assert rows(tmp_path / "pipe.db") == rows(tmp_path / "ref.db")


# --------------------------------------------------------------------------- properties


_PICK = st.lists(st.integers(0, len(QUARTER_LINES) - 1), max_size=60)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    before=_PICK,
    batches=st.lists(st.lists(_PICK, min_size=1, max_size=3), min_size=1, max_size=3),
    tweak=st.lists(st.integers(0, len(QUARTER_LINES) - 1), max_size=3),
    chunk=st.sampled_from([200, 1_000, 100_000]),
    bulk_rows=st.sampled_from([1, 30, 10**9]),
)
def test_any_sequence_of_imports(
    tmp_path_factory: pytest.TempPathFactory,
    before: list[int],
    batches: list[list[list[int]]],
    tweak: list[int],
    chunk: int,
    bulk_rows: int,
) -> None:
    """Random picks of sample lines (any order, repeats, a few with changed content), imported in steps."""
    tmp = tmp_path_factory.mktemp("prop")
    evs = events()
    lines = [line(e) for e in evs]
    for i in tweak:
        lines.append(line(dict(evs[i], meta={"tweaked": i})))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bulk, "CHUNK_BYTES", chunk)
        patch.setattr(bulk, "BULK_MIN_ROWS", bulk_rows)
        steps = [[write(tmp / "before.jsonl", [QUARTER_LINES[i] for i in before])]]
        for b, files in enumerate(batches):
            picks = [[lines[i % len(lines)] for i in f] for f in files]
            steps.append([write(tmp / f"step{b}-{k}.jsonl", p) for k, p in enumerate(picks)])
        same(tmp, steps, 1)


# --------------------------------------------------------------------------- database effects


def test_index_drop_and_recreate_leaves_the_same_schema(tmp_path: Path, mode: int) -> None:
    fresh = tmp_path / "fresh.db"
    EventStore(fresh).close()
    db = tmp_path / "log.db"
    assert streaming_import(db, [QUARTER], mode) == []
    assert schema(db) == schema(fresh)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert len(conn.execute("SELECT * FROM events INDEXED BY idx_events_id WHERE id = 'evt-waiver-2'").fetchall()) == 1
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM events")
    conn.close()


def test_a_rejected_large_import_changes_nothing(tmp_path: Path, mode: int) -> None:
    db = tmp_path / "log.db"
    half = len(QUARTER_LINES) // 2
    assert streaming_import(db, [write(tmp_path / "a.jsonl", QUARTER_LINES[:half])], mode) == []
    before, before_schema = digest(db), schema(db)
    evs = events()
    comm = next(e for e in reversed(evs) if e["type"] == "communication.sent" and "maintenance" in e)
    bad = [line(e) for e in evs] + [line(dict(comm, id="dangling", maintenance="mx-none"))]
    errors = streaming_import(db, [write(tmp_path / "b.jsonl", bad)], mode)
    assert len(errors) == 1 and "mx-none" in errors[0]
    assert digest(db) == before and schema(db) == before_schema
    shuffled = list(bad)
    random.Random(1).shuffle(shuffled)
    assert streaming_import(db, [write(tmp_path / "c.jsonl", shuffled)], mode) != []
    assert digest(db) == before and schema(db) == before_schema


def test_nothing_to_append_leaves_the_file_untouched(tmp_path: Path, mode: int) -> None:
    db = tmp_path / "log.db"
    store = EventStore(db)
    result = import_files(store, [QUARTER], RULES, workers=mode)
    assert result.appended == len(QUARTER_LINES) and result.unchanged == 0
    store.close()
    size = db.stat().st_size
    store = EventStore(db)
    result = import_files(store, [QUARTER, QUARTER], RULES, workers=mode)
    assert result.appended == 0 and result.unchanged == 2 * len(QUARTER_LINES)
    store.close()
    assert db.stat().st_size == size


def test_read_back_gives_the_parsed_events(tmp_path: Path, mode: int) -> None:
    store = EventStore(tmp_path / "log.db")
    import_files(store, [QUARTER], RULES, workers=mode)
    parsed, _ = parse_files([QUARTER])
    assert read_store(store) == [s.event for s in evaluation_order(parsed)]
    store.close()


def test_progress_counts_every_byte(tmp_path: Path, mode: int) -> None:
    seen: list[int] = []
    store = EventStore(tmp_path / "log.db")
    import_files(store, [QUARTER, SAMPLES / "basic.jsonl"], RULES, progress=seen.append, workers=mode)
    store.close()
    assert sum(seen) == QUARTER.stat().st_size + (SAMPLES / "basic.jsonl").stat().st_size


def test_the_engine_append_path_still_works(tmp_path: Path) -> None:
    """`append_in_transaction` (used by the engine) writes the same columns as the import."""
    parsed, _ = parse_files([QUARTER])
    store = EventStore(tmp_path / "engine.db")
    store.append(evaluation_order(parsed))
    store.close()
    assert streaming_import(tmp_path / "import.db", [QUARTER]) == []
    assert rows(tmp_path / "engine.db") == rows(tmp_path / "import.db")


def test_timestamp_columns_match_the_plain_formulas() -> None:
    rng = random.Random(5)
    lowest = datetime(1, 1, 1, tzinfo=UTC)
    for _ in range(20_000):
        t = lowest + timedelta(microseconds=rng.randrange(315_537_897_600_000_000))
        if rng.random() < 0.3:
            t = t.replace(microsecond=0)
        assert _utc_text(t) == t.isoformat().replace("+00:00", "Z")
        delta = t - datetime(1970, 1, 1, tzinfo=UTC)
        assert _epoch_us(t) == (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def test_fast_canonical_form_is_canonical_json() -> None:
    from forewarn.events import EVENT_ADAPTER, canonical_json
    from forewarn.events.parse import fast_canonical_json, fast_canonical_texts

    paths = [QUARTER, SAMPLES / "quarter-lifecycle.jsonl", SAMPLES / "basic.jsonl", *(DATA / "good").glob("*.jsonl")]
    for path in paths:
        for raw in path.read_bytes().splitlines():
            event = EVENT_ADAPTER.validate_json(raw)
            assert fast_canonical_json(event) == canonical_json(event)
    events = [EVENT_ADAPTER.validate_json(raw) for path in paths for raw in path.read_bytes().splitlines()]
    assert fast_canonical_texts(events) == [canonical_json(event) for event in events]  # the serializer once


def test_fast_canonical_form_defers_to_canonical_json_if_they_ever_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    from forewarn.events import EVENT_ADAPTER, parse

    monkeypatch.setattr(parse, "canonical_json", lambda event: "changed")
    monkeypatch.setattr(parse, "_calls", 0)
    monkeypatch.setattr(parse, "_fast", True)
    event = EVENT_ADAPTER.validate_json(QUARTER_LINES[0])
    assert [parse.fast_canonical_json(event) for _ in range(3)] == ["changed"] * 3
    monkeypatch.setattr(parse, "_calls", parse._CHECK_EVERY - 2)  # the third of these is compared
    monkeypatch.setattr(parse, "_fast", True)
    assert parse.fast_canonical_texts([event] * 3) == ["changed"] * 3
    assert not parse._fast


def test_how_many_processes_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FOREWARN_IMPORT_WORKERS", raising=False)
    assert 0.0 <= parallel.idle_cpus(sample=0.01) <= parallel.cpus()
    assert bulk._worker_count(3, 0) == 3
    assert bulk._worker_count(0, 10**12) == 1
    assert bulk._worker_count(None, bulk.PARALLEL_MIN_BYTES - 1) == 1  # small input: this process only
    assert 1 <= bulk._worker_count(None, 10**12) <= 4
    monkeypatch.setattr(parallel, "idle_cpus", lambda: float(parallel.cpus()))  # all idle: one more than the CPUs
    assert bulk._worker_count(None, 10**12) == min(len(os.sched_getaffinity(0)) + 1, 4)
    monkeypatch.setattr(parallel, "idle_cpus", lambda: 1.0)
    assert bulk._worker_count(None, 10**12) == min(len(os.sched_getaffinity(0)) + 1, 2)
    monkeypatch.setattr(parallel, "idle_cpus", lambda: 0.2)  # busy: this process only
    assert bulk._worker_count(None, 10**12) == 1
    monkeypatch.setenv("FOREWARN_IMPORT_WORKERS", "2")
    assert bulk._worker_count(None, 0) == 2
