"""`audit --events` straight into the tables (forewarn.relational.jsonl): the same reports as the model path, and
its own log checks take exactly the logs `check_log` takes as they are (differential, Hypothesis)."""

from __future__ import annotations

import json
from array import array
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import scaled

import forewarn
from forewarn import parallel
from forewarn.cli import main
from forewarn.events.batch import validate_chunk
from forewarn.events.parse import parse_lines
from forewarn.events.references import check_log, evaluation_order
from forewarn.instants import epoch_us
from forewarn.log.chain import Chain
from forewarn.log.source import chain_fingerprint
from forewarn.policy.loader import load_policy
from forewarn.relational import jsonl

QUARTER = Path(forewarn.__file__).parent / "samples" / "quarter.jsonl"
AS_OF = "2026-07-15T00:00:00Z"
POLICY = load_policy()
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def _audit(args: list[str], monkeypatch: pytest.MonkeyPatch, fast: bool) -> tuple[int, str]:
    if not fast:
        monkeypatch.setattr(jsonl, "audit_files", lambda *a: None)
    result = CliRunner().invoke(main, ["audit", "--as-of", AS_OF, "--format", "json", *args])
    return result.exit_code, result.stdout


def test_the_sample_log_takes_the_direct_path(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = load_policy()
    done = jsonl.audit_files([QUARTER], policy, datetime(2026, 7, 15, tzinfo=UTC), None, None)
    assert done is not None
    result, fingerprint = done
    assert result.findings
    # only the counts' formats take this path: no case listed one by one, nothing read for an HTML report
    assert result.counted.listed is None and result.counted.details is None and result.counted.timed is None
    parsed, errors = parse_lines(QUARTER.read_bytes().splitlines(keepends=True), str(QUARTER))
    assert not errors
    assert fingerprint == chain_fingerprint(evaluation_order(parsed))


@pytest.mark.parametrize("workers", [0, 3])
def test_the_reports_are_those_of_the_model_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, workers: int
) -> None:
    if workers and not parallel.available():
        pytest.skip("needs fork and two CPUs")
    # small ranges, several per worker: the ranges' results are taken in file order, whoever finishes first
    monkeypatch.setattr(jsonl, "CHUNK_BYTES", 20_000)
    monkeypatch.setattr(jsonl, "PARALLEL_MIN_BYTES", 0 if workers else 1 << 40)
    monkeypatch.setattr(parallel, "idle_cpus", lambda: workers)
    pooled: list[int] = []
    real_ahead = parallel._ahead

    def ahead(pool, fn, items, window):  # type: ignore[no-untyped-def]
        pooled.append(len(items))
        return real_ahead(pool, fn, items, window)

    monkeypatch.setattr(parallel, "_ahead", ahead)
    taken = []
    real = jsonl.load_files

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = real(*args, **kwargs)
        taken.append(True)
        return out

    monkeypatch.setattr(jsonl, "load_files", spy)
    fast = _audit(["--events", str(QUARTER)], monkeypatch, fast=True)
    assert taken == [True]
    assert bool(pooled) == bool(workers) and (not pooled or pooled[0] > 3)
    assert fast == _audit(["--events", str(QUARTER)], monkeypatch, fast=False)
    assert fast[0] == 1 and json.loads(fast[1])["findings"]


def _shuffled_quarter(tmp_path: Path) -> Path:
    lines = QUARTER.read_bytes().splitlines(keepends=True)
    out = tmp_path / "swapped.jsonl"
    out.write_bytes(b"".join([*lines[:10], lines[11], lines[10], *lines[12:], lines[5]]))  # back in time; a repeat
    return out


def test_a_log_out_of_time_order_with_a_repeat_is_left_to_the_model_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _shuffled_quarter(tmp_path)
    assert jsonl.audit_files([path], POLICY, datetime(2026, 7, 15, tzinfo=UTC), None, None) is None
    left = _audit(["--events", str(path)], monkeypatch, fast=True)
    assert left == _audit(["--events", str(path)], monkeypatch, fast=False)
    assert left[0] == 1 and json.loads(left[1])["findings"]


def test_a_bad_line_is_reported_by_the_model_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lines = QUARTER.read_bytes().splitlines(keepends=True)
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"".join([*lines[:3], b'{"id": "x", "type": "ticket.opened"}\n', *lines[3:]]))
    result = CliRunner().invoke(main, ["audit", "--as-of", AS_OF, "--events", str(path)])
    assert result.exit_code == 2
    assert f"{path}:4: ticket.opened 'x': field 'at': required" in result.output


def test_standard_input_and_databases_are_not_cut_into_ranges(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    db.write_bytes(b"SQLite format 3\x00" + bytes(100))
    for paths in (["-"], [str(db)], [str(tmp_path)], [str(tmp_path / "missing.jsonl")]):
        with pytest.raises(jsonl.NotHere):
            jsonl.ranges(paths)


def test_ranges_end_at_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    data = b"".join(b"x" * (n % 37) + b"\n" for n in range(500)) + b"tail"
    path.write_bytes(data)
    cuts = jsonl.ranges([path], chunk=100)
    assert [(s, e) for _, s, e in cuts] == list(zip([0] + [e for _, _, e in cuts[:-1]], [e for _, _, e in cuts],
                                                     strict=True))
    assert cuts[-1][2] == len(data)
    assert all(data[e - 1 : e] == b"\n" for _, _, e in cuts[:-1])


# --------------------------------------------------------------------------- differential: the checks

CUSTOMERS = ["c1", "c2"]
RULES = ["advance-notice", "no-such-rule"]


@st.composite
def logs(draw: st.DrawFn) -> list[bytes]:
    """Small logs over a few ids and instants: repeats (same and other content), references before and after
    their definitions, `at` going back, waivers of known and unknown rules, now and then an invalid line."""
    out: list[bytes] = []
    hour = 0
    for _ in range(draw(st.integers(0, 8))):
        hour += draw(st.sampled_from([0, 1, 1, -1]))  # mostly on in time, now and then back
        at = (T0 + timedelta(hours=hour)).strftime("%Y-%m-%dT%H:%M:%SZ")
        ident = f"ev-{draw(st.integers(0, 9))}"
        kind = draw(st.sampled_from(["customer", "maintenance", "communication", "ticket", "waiver"] * 4 + ["bad"]))
        event: dict[str, object]
        if kind == "customer":
            event = {"type": "customer.upserted", "customer": draw(st.sampled_from(CUSTOMERS)), "name": "C",
                     "plan": "enterprise", "contacts": ["ops@c.example"]}
        elif kind == "maintenance":
            event = {"type": "maintenance.scheduled", "maintenance": draw(st.sampled_from(["m1", "m2"])),
                     "title": "M", "start": "2026-04-01T00:00:00Z", "end": "2026-04-01T02:00:00Z",
                     "customers": draw(st.sampled_from(["all", ["c1"], ["c1", "c2"]])), "impact": "none"}
        elif kind == "communication":
            event = {"type": "communication.sent", "communication": draw(st.sampled_from(["k1", "k2"])),
                     "customer": draw(st.sampled_from(CUSTOMERS)), "to": ["ops@c.example"],
                     "from": "support@example.com", "kind": "advance_notice",
                     "maintenance": draw(st.sampled_from(["m1", "m2"])), "subject": "S"}
        elif kind == "ticket":
            event = {"type": "ticket.opened", "ticket": "t1", "communication": draw(st.sampled_from(["k1", "k2"]))}
        elif kind == "waiver":
            event = {"type": "waiver.granted", "waiver": "w1", "rule": draw(st.sampled_from(RULES)),
                     "subject": draw(st.sampled_from(["m1", "k1", "c1"])), "reason": "r", "approved_by": "a"}
        else:
            event = {"type": "ticket.opened", "ticket": "t1"}  # no communication: invalid
        out.append(json.dumps({"id": ident, "at": at, **event}).encode() + b"\n")
    return out


def _line(ident: str, hour: int, **event: object) -> bytes:
    at = (T0 + timedelta(hours=hour)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps({"id": ident, "at": at, **event}).encode() + b"\n"


_M1 = {"type": "maintenance.scheduled", "maintenance": "m1", "title": "M", "start": "2026-04-01T00:00:00Z",
       "end": "2026-04-01T02:00:00Z", "customers": "all", "impact": "none"}
_C1 = {"type": "customer.upserted", "customer": "c1", "name": "C", "plan": "enterprise", "contacts": ["o@c.example"]}


@scaled(300)
@given(logs(), st.integers(1, 4))
@example([_line("e1", 0, **_M1), _line("e2", 1, type="waiver.granted", waiver="w1", rule="no-such-rule",
                                         subject="m1", reason="r", approved_by="a")], 1)
@example([_line("e1", 1, **_C1), _line("e2", 0, **_M1)], 2)
def test_the_direct_checks_pass_exactly_the_logs_check_log_takes_as_they_are(lines: list[bytes], cut: int) -> None:
    """`_Checks` passes a log (taken in ranges) exactly when every line is valid, `check_log` finds nothing and
    drops nothing, and evaluation order is file order; then it has the same columns and fingerprint."""
    parsed, parse_errors = parse_lines(lines, "log.jsonl")
    fresh, check_errors = check_log(parsed, rule_ids=POLICY.ids) if not parse_errors else ([], ["parse"])
    takes = (not parse_errors and not check_errors and len(fresh) == len(parsed)
             and evaluation_order(fresh) == list(fresh))
    checks = jsonl._Checks(POLICY.ids)
    chain = Chain()
    passed = True
    size = max(1, len(lines) // cut)
    columns = []
    for start in range(0, max(len(lines), 1), size):
        part = validate_chunk(lines[start : start + size], start == 0)
        if checks.failed(part) is not None:
            passed = False
            break
        jsonl._extend(chain, part.payloads, array("i", part.offsets))
        columns.append(part)
    assert passed == takes
    if passed:
        payloads = [c.payloads[a:b].decode() for c in columns for a, b in pairwise(array("i", c.offsets))]
        assert payloads == [s.canonical for s in parsed]
        assert [t for c in columns for t in c.types] == [s.event.type for s in parsed]
        assert [t for c in columns for t in array("q", c.at_us)] == [epoch_us(s.event.at) for s in parsed]
        assert chain.fingerprint() == chain_fingerprint(parsed)
