"""Validation throughput of one JSONL file on the import's two paths, in this process (CPU time, best of 3).

    forewarn synth --size year --scale 0.175 -o /tmp/year.jsonl   # ~107k events
    .venv/bin/python bench/bench_validate.py /tmp/year.jsonl

parse_lines is the path of `audit --events` / `plan --events`, parse_chunk the import's (per byte range).
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path

from forewarn.events.parse import parse_lines
from forewarn.log.bulk import parse_chunk


def main() -> None:
    path = sys.argv[1]
    lines = Path(path).read_bytes().splitlines(keepends=True)
    paths: dict[str, Callable[[], object]] = {
        "parse_lines": lambda: parse_lines(lines, path),
        "parse_chunk": lambda: parse_chunk(lines, path, True),
    }
    best: dict[str, float] = {}
    for _ in range(3):
        for name, run in paths.items():
            gc.collect()
            started = time.process_time()
            result = run()
            best[name] = min(best.get(name, float("inf")), time.process_time() - started)
            del result
    for name, seconds in best.items():
        print(f"{name}: {len(lines) / seconds:,.0f} events/s ({seconds:.2f} s CPU, best of 3)")


if __name__ == "__main__":
    main()
