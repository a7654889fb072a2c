"""Run every benchmark with its defaults, in order (`make bench`): the figures of the README's Performance section.

    .venv/bin/python bench/run_all.py [--dir /tmp/forewarn-bench]

The reference log (about 800k events, `forewarn synth --size year --scale 1.25`) is made once by
bench_audit.py in --dir and reused by bench_import.py. Takes about a quarter of an hour on 2 cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/forewarn-bench"))
    args = parser.parse_args()
    log = args.dir / "year-x1.25.jsonl"
    runs = [
        ["bench_calendar.py"],
        ["bench_rete.py"],
        ["bench_audit.py", "--dir", str(args.dir)],
        ["bench_import.py", str(log)],
        ["bench_smtp.py"],
        ["bench_engine.py"],
        ["bench_engine.py", "--plan"],
    ]
    failed = []
    for script, *rest in runs:
        print(f"\n== {script} {' '.join(rest)}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script), *rest]).returncode != 0:
            failed.append(script)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
