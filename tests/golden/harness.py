"""The golden reports' cases and how each report is produced (shared by record.py and test_golden.py).

Every case is audited through the CLI (in process), once per format, so a golden report is
byte for byte what a user gets. Only the forewarn version is normalised (it changes with
releases, not with the evaluation)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from forewarn import __version__
from forewarn.cli import main

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "reports"
SAMPLES = ROOT / "forewarn" / "samples"
FIXTURES = ROOT / "rules" / "fixtures"
FORMATS = ("json", "sarif", "csv", "html", "table", "markdown", "junit")
INLINE_MAX = 32_000
"""Reports up to this many bytes are committed as they are (a failing test shows their diff);
larger ones as their sha256 (the big synthetic logs' reports would bloat the repository)."""
HASHED_FORMATS = ("html", "sarif")
"""Formats committed as sha256 except for the samples: for a fixture, mostly the same style sheet and
rule catalogue each time (their findings show in the other formats' diffs)."""


@dataclass(frozen=True)
class Case:
    name: str  # directory under reports/
    log: Path | None  # the JSONL log, or None for a synthetic one made on demand
    as_of: str
    synth: tuple[str, ...] = ()  # `forewarn synth` arguments (size, scale, seed)
    big: bool = False  # only with FOREWARN_GOLDEN_BIG=1 (seconds per format)


def _expected_as_of(path: Path) -> str:
    return json.loads(path.read_text())["as_of"]


SYNTH = {
    "synth-quarter": ("--size", "quarter", "--seed", "2"),
    "synth-year-0.05": ("--size", "year", "--scale", "0.05", "--seed", "2"),  # the smallest year it makes
    "synth-year-0.15": ("--size", "year", "--scale", "0.15", "--seed", "2"),
}


def cases() -> list[Case]:
    quarter_as_of = _expected_as_of(SAMPLES / "quarter.expected.json")
    out = [
        Case("sample-basic", SAMPLES / "basic.jsonl", _expected_as_of(SAMPLES / "basic.expected.json")),
        Case("sample-quarter", SAMPLES / "quarter.jsonl", quarter_as_of),
        Case("sample-quarter-lifecycle", SAMPLES / "quarter-lifecycle.jsonl", quarter_as_of),
    ]
    for log in sorted(FIXTURES.glob("*/*.jsonl")):
        expected = log.with_name(log.name.replace(".jsonl", ".expected.json"))
        out.append(Case(f"fixture-{log.parent.name}-{log.stem}", log, _expected_as_of(expected)))
    for name, args in SYNTH.items():
        out.append(Case(name, None, "", args, big=name != "synth-quarter"))
    return out


def synth_log(case: Case, workdir: Path) -> tuple[Path, str]:
    """The case's synthetic log (made once per work directory) and its as-of."""
    log, expected = workdir / f"{case.name}.jsonl", workdir / f"{case.name}.expected.json"
    if not log.exists():
        cmd = [sys.executable, "-m", "forewarn.cli", "synth", *case.synth, "-o", str(log), "--expected", str(expected)]
        subprocess.run(cmd, check=True, capture_output=True)
    return log, _expected_as_of(expected)


def normalise(text: str) -> str:
    """The report with the forewarn version replaced (the only field that varies between builds)."""
    v = re.escape(__version__)
    text = re.sub(rf"forewarn {v}\b", "forewarn <VERSION>", text)
    return re.sub(rf'"(forewarn|version)": "{v}"', r'"\1": "<VERSION>"', text)


@dataclass(frozen=True)
class Report:
    format: str
    text: str
    exit_code: int
    summary: str  # the CLI's one-line summary on stderr


def audit(log: Path, as_of: str, fmt: str, db: Path | None = None) -> Report:
    """One report as the CLI writes it (from the JSONL log, or from `db` if given)."""
    source = ["--db", str(db)] if db is not None else ["--events", str(log)]
    result = CliRunner().invoke(main, ["audit", *source, "--as-of", as_of, "--format", fmt])
    if result.exit_code not in (0, 1) or not isinstance(result.exception, (SystemExit, type(None))):
        raise RuntimeError(f"audit of {log} failed ({result.exit_code}): {result.stderr}{result.exception!r}")
    return Report(fmt, normalise(result.stdout), result.exit_code, result.stderr.strip())


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def stored_name(fmt: str) -> str:
    return f"report.{fmt}"


def record(case: Case, as_of: str, reports: list[Report]) -> None:
    """Write the case's golden reports: small ones whole, large ones (or a big case's) as sha256."""
    folder = GOLDEN / case.name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    meta: dict[str, object] = {"as_of": as_of, "exit_code": reports[0].exit_code, "summary": reports[0].summary}
    hashes: dict[str, str] = {}
    for r in reports:
        hashed = r.format in HASHED_FORMATS and not case.name.startswith(("sample-", "synth-"))
        if case.big or hashed or len(r.text.encode()) > INLINE_MAX:
            hashes[r.format] = sha256(r.text)
        else:
            (folder / stored_name(r.format)).write_text(r.text, encoding="utf-8")
    meta["sha256"] = hashes
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def load(case: Case) -> tuple[dict[str, object], dict[str, str]]:
    """The recorded meta data and the reports stored whole, by format."""
    folder = GOLDEN / case.name
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    whole = {f: p.read_text(encoding="utf-8") for f in FORMATS if (p := folder / stored_name(f)).exists()}
    return meta, whole
