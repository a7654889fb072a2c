"""The import's fast paths give exactly what the plain ones give; every index of a new log serves a query.

- `bulk.parse_chunk` builds rows and light data inline for the common line; it must equal `validate_line` +
  `row_values` + `defines()` / `references()` for every line, odd ones included (errors, blank lines, a BOM,
  `str` lines, overlong lines, unstorable `meta`, waivers, "all" customers).
- Every index of a new log serves a query (the store's own, or the lookups by subject, customer and type
  that readers and reports need), and each of those queries uses it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st
from strategies import scaled

from forewarn.events import WaiverGranted
from forewarn.events.parse import MAX_LINE_BYTES, TOO_LONG, validate_line
from forewarn.log import bulk
from forewarn.log.store import PAGE_SIZE, EventStore, row_values

SAMPLES = Path(__file__).resolve().parents[1] / "forewarn" / "samples"
QUARTER_LINES = (SAMPLES / "quarter.jsonl").read_bytes().splitlines(keepends=True)


def plain_chunk(lines: list[Any], name: str, at_file_start: bool) -> bulk.Chunk:
    """What `parse_chunk` computes, the plain way: one `validate_line` and the public methods per line."""
    rows: list[tuple[Any, ...]] = []
    numbers: list[int] = []
    defs: dict[str, tuple[list[str], list[int]]] = {}
    refs: dict[tuple[str, ...], tuple[list[str], list[str], list[int], list[int]]] = {}
    rules: list[tuple[int, str]] = []
    errors: list[tuple[Any, ...]] = []
    ordered, last, number = True, -(1 << 63), 0
    for number, line in enumerate(lines, 1):
        result = validate_line(line, name, number, at_file_start and number == 1)
        if type(result) is not tuple:
            errors.extend((e.file, e.line, e.event_type, e.event_id, e.field, e.message) for e in result or ())
            if result and result[-1].message == TOO_LONG:
                return rows, numbers, defs, refs, rules, errors, number, ordered, True
            continue
        event, canonical = result
        i = len(rows)
        rows.append(row_values(event, canonical))
        numbers.append(number)
        ordered = ordered and rows[-1][3] >= last
        last = rows[-1][3]
        defined = event.defines()
        if defined is not None:
            group = defs.setdefault(defined[0], ([], []))
            group[0].append(defined[1])
            group[1].append(i)
        for j, ref in enumerate(event.references()):
            entry = refs.setdefault(ref.kinds, ([], [], [], []))
            entry[0].append(ref.field)
            entry[1].append(ref.id)
            entry[2].append(i)
            entry[3].append(j)
        if isinstance(event, WaiverGranted):
            rules.append((i, event.rule))
    return rows, numbers, defs, refs, rules, errors, number, ordered, False


def odd_lines() -> list[Any]:
    events = [json.loads(x) for x in QUARTER_LINES]
    first = QUARTER_LINES[0]
    comm = next(e for e in events if e["type"] == "communication.sent")
    scheduled = next(e for e in events if e["type"] == "maintenance.scheduled")
    waiver = next(e for e in events if e["type"] == "waiver.granted")
    return [
        b"\xef\xbb\xbf" + first,  # a BOM: skipped on a file's first line only
        first.decode(),  # a str line
        b"\n",
        b"   \n",
        b"{not json\n",
        b"\xef\xbb\xbf" + QUARTER_LINES[1],  # a BOM not on the first line: an error
        json.dumps(dict(comm, id="c-bad", kind="nope")).encode(),
        json.dumps(dict(comm, id="c-meta", meta={"n": 1.5, "s": "\u00e9", "l": [1, None]})).encode(),
        json.dumps(dict(comm, id="c-surrogate", meta={"s": "x"})).replace('"x"', '"\\ud800"').encode(),
        json.dumps(dict(comm, id="c-offset", at="2026-03-09T10:00:00+09:00")).encode(),
        json.dumps(dict(scheduled, id="s-all", maintenance="mx-all", customers="all")).encode(),
        json.dumps(dict(scheduled, id="s-defaults", maintenance="mx-d", emergency=False, meta=None)).encode(),
        json.dumps(dict(waiver, id="w-x", rule="no-such-rule")).encode(),
        *QUARTER_LINES[2:40],
        json.dumps(dict(comm, id="c-early", at="2000-01-01T00:00:00Z")).encode(),  # `at` goes back
        b'{"id": "long", "type": "ticket.opened", "pad": "' + b"x" * MAX_LINE_BYTES + b'"}\n',  # the last one read
        *QUARTER_LINES[40:45],
    ]


def test_parse_chunk_equals_the_plain_path() -> None:
    lines = odd_lines()
    for at_file_start in (True, False):
        assert bulk.parse_chunk(lines, "f.jsonl", at_file_start) == plain_chunk(lines, "f.jsonl", at_file_start)
    chunk = bulk.parse_chunk(lines, "f.jsonl", True)
    assert chunk[5] and chunk[4] and not chunk[7]  # the lines above do exercise errors, waivers, disorder
    assert chunk[8] and chunk[6] == len(lines) - 5  # and an over-long line, after which nothing is read
    assert bulk.parse_chunk(QUARTER_LINES, "q.jsonl", True) == plain_chunk(QUARTER_LINES, "q.jsonl", True)


def _plan(conn: sqlite3.Connection, sql: str, params: list[object]) -> str:
    return " | ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall())


def test_every_index_of_a_new_log_serves_a_query(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "log.db")
    store.close()
    conn = sqlite3.connect(tmp_path / "log.db")
    assert conn.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
    indexes = {name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL"
    )}
    used = {
        "idx_events_id": ("SELECT id, payload FROM events WHERE id IN (?, ?)", ["a", "b"]),  # known_events
        "idx_events_at_us_seq": ("SELECT payload FROM events ORDER BY at_us, seq", []),  # payloads
        "idx_events_entity_kind_entity_id": (  # first_definitions_of
            "SELECT entity_id, min(at_us) FROM events WHERE entity_kind = ? AND entity_id IN (?, ?) AND seq <= ?"
            " GROUP BY entity_id",
            ["customer", "a", "b", 10],
        ),
        # the lookups readers need: by subject, by customer, by type, each in time order
        "idx_events_subject_at_us": ("SELECT payload FROM events WHERE subject = ? ORDER BY at_us", ["mx-1"]),
        "idx_events_customer_at_us": ("SELECT payload FROM events WHERE customer = ? ORDER BY at_us", ["acme"]),
        "idx_events_type_at_us": (
            "SELECT payload FROM events WHERE type = ? AND at_us >= ? ORDER BY at_us", ["maintenance.started", 0]
        ),
    }
    assert indexes == set(used)
    for name, (sql, params) in used.items():
        assert name in _plan(conn, sql, params), sql
    conn.close()


# --------------------------------------------------------------------------- a JSON array in one validation


def items_way(body: bytes) -> bulk.Chunk:
    """What the array `body` gives validated item by item (each item's compact JSON a line of its own)."""
    from forewarn.service import array_items, item_lines

    return bulk.validate_lines(item_lines(body, array_items(body)), "<request>")[0]


def array_way(body: bytes) -> bulk.Chunk | None:
    from forewarn.service import array_items

    validated = bulk.validate_array(body, array_items(body))
    return None if validated is None else validated[0]


QUARTER = [json.loads(x) for x in QUARTER_LINES]
COMM = next(e for e in QUARTER if e["type"] == "communication.sent")
CUSTOMER = next(e for e in QUARTER if e["type"] == "customer.upserted")


def common_bodies() -> list[bytes]:
    """Arrays the one validation takes: every layout without whitespace before a colon, escapes, meta, labels."""
    events = [*QUARTER, dict(COMM, id="c-meta", meta={"n": 1.5, "big": 2**64 - 1, "s": 'a "b" \\ \u00e9\n', "l": [{}]}),
              dict(CUSTOMER, id="c-lab", customer="lab", labels={"tier": "gold", "region": "eu"}),
              dict(COMM, id="c-null", meta=None), dict(COMM, id="c-quoted", subject='say "hi" x: y')]
    return [
        json.dumps(events).encode(),
        json.dumps(events, separators=(",", ":")).encode(),
        json.dumps(events, indent=2).encode(),  # line ends after strings; ": " after every key
        json.dumps(events, ensure_ascii=False).encode(),
        json.dumps(events[:1]).encode(),
        b"[]",
    ]


def test_an_array_validated_at_once_equals_its_items_validated_one_by_one() -> None:
    for body in common_bodies():
        chunk = array_way(body)
        assert chunk is not None, body[:80]  # taken: these are the bodies it is for
        assert chunk == items_way(body)


def test_orjson_writes_every_string_as_short_as_json_allows() -> None:
    """What `validate_array` relies on for the lines' length: a string's JSON, as orjson writes it, is no longer
    than the text it was read from (escapes only where JSON requires one, each as short as JSON allows)."""
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    assert orjson.dumps(every) == json.dumps(every, ensure_ascii=False).encode()


def odd_bodies() -> list[tuple[bytes, str]]:
    """Arrays the one validation leaves to the items' lines, and part of the error those lines give ("": none)."""
    spaced = json.dumps([COMM], separators=(",", " : ")).encode()
    repeated = json.dumps([COMM]).replace('"kind": ', '"kind": "x", "kind": ', 1).encode()
    meta = json.dumps([dict(COMM, meta={"a": {"b": 1}})]).replace('"b": 1', '"b": 1, "b": 2').encode()
    labels = json.dumps([dict(CUSTOMER, labels={"t": "x"})]).replace('"t": "x"', '"t": "x", "t": "y"').encode()
    # orjson writes 1e15 as 1000000000000000.0: the item's line is over the limit, the body is not
    wide = json.dumps([dict(COMM, meta={"n": "N"})]).replace('"N"', "[" + ",".join(["1e15"] * 60_000) + "]")
    return [
        (spaced, ""),  # valid, but a key before " : " escapes the count of keys: the lines decide
        (json.dumps([dict(COMM, subject='say "hi": x')]).encode(), ""),  # valid, `":` in a string: likewise
        (spaced.replace(b'"kind" : ', b'"kind" : "x", "kind" : ', 1), "duplicate key"),
        (repeated, "duplicate key"),
        (meta, "duplicate key"),
        (labels, "duplicate key"),
        (json.dumps([dict(COMM, kind="nope"), CUSTOMER]).encode(), "kind"),
        # past 64 bits pydantic's parser keeps the integer (which meta refuses), orjson's gives a double
        (json.dumps([dict(COMM, meta={"big": 2**64})]).encode(), ""),
        (json.dumps([COMM, 1, "x", None]).encode(), "object"),
        (wide.encode(), TOO_LONG),
    ]


def test_an_array_it_cannot_vouch_for_is_left_to_its_items_lines() -> None:
    for body, error in odd_bodies():
        assert len(body) <= MAX_LINE_BYTES
        assert array_way(body) is None, body[:80]
        errors = items_way(body)[5]
        assert (error in str(errors[0])) if error else errors == [], (body[:80], errors)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12,
)


@given(metas=st.lists(st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=4), min_size=1, max_size=4),
       compact=st.booleans())
@scaled(60)
def test_any_meta_gives_the_same_rows_either_way(metas: list[dict[str, Any]], compact: bool) -> None:
    """Numbers, strings and nesting in meta as pydantic's parser reads them in the body, or orjson's (the items)."""
    events = [dict(COMM, id=f"c-{i}", meta=meta) for i, meta in enumerate(metas)]
    body = json.dumps(events, separators=(",", ":") if compact else None, ensure_ascii=compact).encode()
    chunk = array_way(body)
    if chunk is not None:
        assert chunk == items_way(body)
