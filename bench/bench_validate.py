"""Validation throughput of one JSONL file on the import's two paths, in this process (CPU time, best of 3).

    forewarn synth --size year --scale 0.175 -o /tmp/year.jsonl   # ~107k events
    .venv/bin/python bench/bench_validate.py /tmp/year.jsonl

parse_lines is the model path of `audit --events` / `plan --events`, parse_chunk the import's (per byte range),
validate_chunk the relational `audit --events`' (per byte range, columns only). Then the parts of one line's
work, in µs per event: pydantic's validation alone, the duplicate-key check, the canonical JSON.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path

from forewarn.events.batch import validate_chunk
from forewarn.events.models import EVENT_ADAPTER, MetaKeys
from forewarn.events.parse import fast_canonical_bytes, maybe_duplicate_keys, parse_lines
from forewarn.log.bulk import parse_chunk


def main() -> None:
    path = sys.argv[1]
    lines = Path(path).read_bytes().splitlines(keepends=True)
    paths: dict[str, Callable[[], object]] = {
        "parse_lines": lambda: parse_lines(lines, path),
        "parse_chunk": lambda: parse_chunk(lines, path, True),
        "validate_chunk": lambda: validate_chunk(lines, True),
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
        print(f"{name}: {len(lines) / seconds:,.0f} events/s, {seconds / len(lines) * 1e6:.2f} µs/event"
              f" ({seconds:.2f} s CPU, best of 3)")
    validate = EVENT_ADAPTER.validator.validate_json
    gc.disable()
    counts = [MetaKeys() for _ in lines]
    events = [validate(line, by_name=False, context=c) for line, c in zip(lines, counts, strict=True)]
    parts: dict[str, Callable[[], object]] = {
        "validate_json": lambda: [validate(line, by_name=False) for line in lines],
        "duplicate-key check": lambda: [
            maybe_duplicate_keys(li, e, c.keys) for li, e, c in zip(lines, events, counts, strict=True)
        ],
        "canonical JSON": lambda: [fast_canonical_bytes(e) for e in events],
    }
    for name, run in parts.items():
        seconds = min(_cpu(run) for _ in range(3))
        print(f"  {name}: {seconds / len(lines) * 1e6:.2f} µs/event")


def _cpu(run: Callable[[], object]) -> float:
    started = time.process_time()
    run()
    return time.process_time() - started


if __name__ == "__main__":
    main()
