"""The relational audit against the hand-written DuckDB yardstick, on one log, in JSON, HTML and table.

    .venv/bin/python bench/bench_relational.py                       # the reference log (scale 1.25)
    .venv/bin/python bench/bench_relational.py --scale 0.15 --runs 3

Makes (or reuses) the log and its database as bench/bench_audit.py does, then times, each as a separate
process (wall seconds, peak RSS by /usr/bin/time): bench/baseline_duckdb.py over the JSONL; `audit --db`
in JSON and HTML (target: HTML at most 1.2x JSON) and `audit --events` in JSON; table and JUnit once.
Medians of --runs; the load average is printed first and last (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_audit import FOREWARN, _log, _timed


def _db(directory: Path, scale: float, log: Path) -> Path:
    db = directory / f"year-x{scale:g}.db"
    if not db.exists():
        subprocess.run([*FOREWARN, "import", "--db", str(db), str(log)], check=True, capture_output=True)
    return db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.25)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--violations", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/forewarn-bench"))
    parser.add_argument("--events", action="store_true", help="time only the yardstick and `audit --events`")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    log, expected = _log(args.dir, args.scale, args.violations)
    db = args.dir / "unused.db" if args.events else _db(args.dir, args.scale, log)
    as_of = json.loads(expected.read_text())["as_of"]
    print(f"load average {os.getloadavg()}; log {log} ({sum(1 for _ in log.open('rb'))} events)")
    audit = [*FOREWARN, "audit", "--as-of", as_of]
    plans: list[tuple[str, list[str], dict[str, str] | None, int]] = [
        (
            "baseline (DuckDB, 4 rules)",
            [sys.executable, "bench/baseline_duckdb.py", str(log), "--runs", "1"],
            None,
            args.runs,
        ),
        ("audit --db json", [*audit, "--db", str(db), "--format", "json"], None, args.runs),
        ("audit --db html", [*audit, "--db", str(db), "--format", "html"], None, args.runs),
        ("audit --events json", [*audit, "--events", str(log), "--format", "json"], None, args.runs),
        ("audit --db table", [*audit, "--db", str(db), "--format", "table"], None, 1),
        ("audit --db junit", [*audit, "--db", str(db), "--format", "junit"], None, 1),
    ]
    if args.events:
        plans = [plans[0], plans[3]]
    for name, cmd, env, runs in plans:
        results = [_timed(cmd, env) for _ in range(runs)]
        wall = statistics.median(r[0] for r in results)
        rss = max(r[1] for r in results)
        print(
            f"{name:22s} median {wall:6.2f} s of {runs} (min {min(r[0] for r in results):.2f}), peak {rss:6.0f} MiB,"
            f" CPU {statistics.median(r[3] for r in results):6.2f} s; load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
