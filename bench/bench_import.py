"""Benchmark `forewarn import`: a JSONL file into a fresh database, N times, in a subprocess.

    .venv/bin/python bench/bench_import.py /tmp/big/year.jsonl -n 5
    .venv/bin/python bench/bench_import.py /tmp/big/year.jsonl -n 5 --env FOREWARN_IMPORT_WORKERS=1

Prints, per run and as median/min/max: events/s (appended events / wall time of the whole command,
interpreter start-up and policy loading included), wall seconds, CPU seconds (user+sys of the command and
its workers), and memory:

- peak RSS: `ru_maxrss` of the command as reported by wait4 (the largest single process of the command's
  tree, as `/usr/bin/time -v` reports it);
- tree RSS / tree PSS: the peak over samples (every 50 ms) of the sum over the command and its worker
  processes, from /proc (PSS counts pages shared between the forked processes once).

Other work on the machine distorts wall times: look at the median, and at CPU seconds.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOREWARN = [str(ROOT / ".venv" / "bin" / "forewarn")]


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(x) for x in fh.read().split()]
    except OSError:
        return []


def _kib(pid: int, path: str, field: str) -> int:
    try:
        with open(f"/proc/{pid}/{path}") as fh:
            for line in fh:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeSampler(threading.Thread):
    """Peak sums of RSS and PSS over a process and its children, sampled."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.rss = self.pss = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            pids = [self.pid, *_children(self.pid)]
            self.rss = max(self.rss, sum(_kib(p, "status", "VmRSS:") for p in pids))
            self.pss = max(self.pss, sum(_kib(p, "smaps_rollup", "Pss:") for p in pids))
            self.stop.wait(self.every)


def run_once(jsonl: Path, workdir: Path, extra_env: dict[str, str]) -> dict[str, float]:
    db = workdir / "bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    env = {**os.environ, **extra_env}
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.Popen(
        [*FOREWARN, "import", str(jsonl), "--db", str(db)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    sampler = TreeSampler(proc.pid)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"import failed ({proc.returncode}):\n{stderr}")
    match = re.search(r"appended (\d+) event", stderr)
    events = int(match.group(1)) if match else 0
    return {
        "events": events,
        "events_per_s": events / wall,
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "tree_rss_mib": sampler.rss / 1024,
        "tree_pss_mib": sampler.pss / 1024,
        "load": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("jsonl", type=Path)
    parser.add_argument("-n", "--runs", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None, help="where the databases go (default: a temp dir)")
    parser.add_argument(
        "--forewarn", default=None, help="command to run instead of .venv/bin/forewarn (e.g. an older checkout)"
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="e.g. FOREWARN_IMPORT_WORKERS=1 (repeatable)"
    )
    args = parser.parse_args()
    if args.forewarn:
        FOREWARN[:] = args.forewarn.split()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-import-"))
    workdir.mkdir(parents=True, exist_ok=True)
    runs = []
    try:
        for i in range(args.runs):
            r = run_once(args.jsonl, workdir, dict(item.split("=", 1) for item in args.env))
            runs.append(r)
            print(
                f"run {i + 1}: {r['events']} events in {r['wall_s']:.2f} s = {r['events_per_s']:,.0f} events/s;"
                f" cpu {r['cpu_s']:.1f} s; peak RSS {r['peak_rss_mib']:.0f} MiB"
                f" (tree RSS {r['tree_rss_mib']:.0f} MiB, tree PSS {r['tree_pss_mib']:.0f} MiB);"
                f" load before {r['load']:.2f}",
                flush=True,
            )
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"load average now: {os.getloadavg()[0]:.2f} (on {os.cpu_count()} CPUs)")
    for key, unit in (
        ("events_per_s", "events/s"),
        ("wall_s", "s wall"),
        ("cpu_s", "s cpu"),
        ("peak_rss_mib", "MiB peak RSS"),
        ("tree_rss_mib", "MiB tree RSS"),
        ("tree_pss_mib", "MiB tree PSS"),
        ("load", "load before"),
    ):
        values = [r[key] for r in runs]
        print(f"{unit:>14}: median {statistics.median(values):,.1f}  min {min(values):,.1f}  max {max(values):,.1f}")


if __name__ == "__main__":
    main()
