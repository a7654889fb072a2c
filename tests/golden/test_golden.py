"""Every golden report (tests/golden/reports, made by record.py) is reproduced byte for byte.

The big synthetic logs' cases run only with FOREWARN_GOLDEN_BIG=1 (they take seconds per format)."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest
from harness import FORMATS, Case, audit, cases, load, sha256, synth_log

from forewarn.log.source import import_files
from forewarn.log.store import EventStore
from forewarn.policy.loader import load_policy

BIG = os.environ.get("FOREWARN_GOLDEN_BIG") == "1"
CASES = cases()

@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("golden")

def _source(case: Case, workdir: Path) -> tuple[Path, str]:
    return (case.log, case.as_of) if case.log is not None else synth_log(case, workdir)

def _compare(case: Case, log: Path, as_of: str, db: Path | None, formats: tuple[str, ...] = FORMATS) -> None:
    meta, whole = load(case)
    assert meta["as_of"] == as_of
    hashes: dict[str, str] = meta["sha256"]  # type: ignore[assignment]
    for fmt in formats:
        report = audit(log, as_of, fmt, db)
        assert (report.exit_code, report.summary) == (meta["exit_code"], meta["summary"]), fmt
        if fmt in whole:
            if report.text != whole[fmt]:
                diff = "".join(
                    difflib.unified_diff(
                        whole[fmt].splitlines(True), report.text.splitlines(True), "golden", "now", n=2
                    )
                )
                pytest.fail(f"{case.name}: the {fmt} report differs (re-record: tests/golden/record.py)\n{diff[:6000]}")
        else:
            assert sha256(report.text) == hashes[fmt], f"{case.name}: the {fmt} report differs (sha256)"

@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reports_from_the_jsonl_log(case: Case, workdir: Path) -> None:
    if case.big and not BIG:
        pytest.skip("set FOREWARN_GOLDEN_BIG=1")
    log, as_of = _source(case, workdir)
    _compare(case, log, as_of, None)

DB_CASES = [c for c in CASES if c.name in ("sample-quarter", "synth-quarter", "synth-year-0.05", "synth-year-0.15")]

@pytest.mark.parametrize("case", DB_CASES, ids=[c.name for c in DB_CASES])
def test_reports_from_the_database(case: Case, workdir: Path) -> None:
    if case.big and not BIG:
        pytest.skip("set FOREWARN_GOLDEN_BIG=1")
    log, as_of = _source(case, workdir)
    db = workdir / f"{case.name}.db"
    if not db.exists():
        import_files(EventStore(db), [log], load_policy().ids)
    _compare(case, log, as_of, db)
