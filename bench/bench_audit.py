"""Benchmark `forewarn audit` end to end on synthetic logs: time (median/min/max), peak RSS, findings checked.

    .venv/bin/python bench/bench_audit.py                  # the reference log: scale 1.25, about 800k events
    .venv/bin/python bench/bench_audit.py --scales 1.25 2.5 5 --runs 1   # the growth curve: 1x, 2x, 4x
    .venv/bin/python bench/bench_audit.py --workers-ab --runs 4            # with and without the forked children

Each scale's log is made once by `forewarn synth --size year --scale S --violations N` (cached in --dir),
imported once into a database, then audited --runs times from the file and from the database, each as
a separate process (/usr/bin/time -v gives the peak RSS). The audit must find exactly the seeded findings.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

FOREWARN = [sys.executable, "-m", "forewarn.cli"]


def _timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str, float]:
    """Wall seconds, peak RSS in MiB, stdout, CPU seconds (user + system) of one run of `cmd`."""
    started = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    cpu = sum(float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", proc.stderr))
    return elapsed, (int(rss.group(1)) / 1024 if rss else float("nan")), proc.stdout, cpu


def _log(directory: Path, scale: float, violations: int) -> tuple[Path, Path]:
    log = directory / f"year-x{scale:g}.jsonl"
    expected = directory / f"year-x{scale:g}.expected.json"
    if not log.exists() or not expected.exists():
        subprocess.run(
            [
                *FOREWARN,
                "synth",
                "--size",
                "year",
                "--scale",
                str(scale),
                "--violations",
                str(violations),
                "-o",
                str(log),
                "--expected",
                str(expected),
            ],
            check=True,
        )
    return log, expected


def _check(report: str, expected_path: Path) -> str:
    expected = json.loads(expected_path.read_text())
    got = sorted(
        (f["rule"], f["problem"], f["subject"], f["customer"], f["status"]) for f in json.loads(report)["findings"]
    )
    want = sorted((f["rule"], f["problem"], f["subject"], f["customer"], f["status"]) for f in expected["findings"])
    if got == want:
        return f"{len(got)} findings, exactly the seeded ones"
    return f"{len(got)} findings: MISMATCH ({len(set(got) - set(want))} extra, {len(set(want) - set(got))} missing)"


def _report(label: str, runs: list[tuple[float, float, str, float]], events: int) -> None:
    times = [t for t, _, _, _ in runs]
    rss = max(r for _, r, _, _ in runs)
    cpu = statistics.median(c for _, _, _, c in runs)
    print(
        f"  {label}: median {statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f}), "
        f"{events / statistics.median(times):,.0f} events/s, peak RSS {rss:.0f} MiB, CPU {cpu:.2f} s "
        f"(load {os.getloadavg()[0]:.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--scales", type=float, nargs="+", default=[1.25], help="1.25: the reference size, about 800k events"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--violations", type=int, default=3, help="seeded violations of each kind")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/forewarn-bench"))
    parser.add_argument("--format", default="json", help="report format to render (json, html, ...)")
    parser.add_argument(
        "--workers-ab",
        action="store_true",
        help="each run twice, interleaved: as is, and with FOREWARN_WORKERS=1 (no forked children); the reports "
        "must be byte-identical",
    )
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    for scale in args.scales:
        log, expected = _log(args.dir, scale, args.violations)
        as_of = json.loads(expected.read_text())["as_of"]
        events = sum(1 for _ in log.open("rb"))
        print(f"scale {scale:g}: {events:,} events ({log})")
        db = args.dir / f"year-x{scale:g}.db"
        if not db.exists():
            subprocess.run([*FOREWARN, "import", str(log), "--db", str(db)], check=True)
        for source, label in ((["--events", str(log)], "audit --events"), (["--db", str(db)], "audit --db")):
            cmd = [*FOREWARN, "audit", *source, "--as-of", as_of, "--format", args.format]
            if not args.workers_ab:
                runs = [_timed(cmd) for _ in range(args.runs)]
            else:  # interleaved, so that both see the machine alike
                alone = {**os.environ, "FOREWARN_WORKERS": "1"}
                runs, single = [], []
                for _ in range(args.runs):
                    runs.append(_timed(cmd))
                    single.append(_timed(cmd, alone))
                    if single[-1][2] != runs[-1][2]:
                        raise SystemExit(f"{label}: the report differs with FOREWARN_WORKERS=1")
                _report(f"{label} (FOREWARN_WORKERS=1)", single, events)
            _report(label, runs, events)
            if args.format == "json":
                print(f"    {_check(runs[-1][2], expected)}")


if __name__ == "__main__":
    main()
