"""A larger log made of existing synthetic logs, each copy's ids renamed apart: the 10x growth point.

    .venv/bin/python bench/grow_log.py OUT.jsonl /tmp/forewarn-bench/year-x5.jsonl:a \\
        /tmp/forewarn-bench/year-x5.jsonl:b /tmp/forewarn-bench/year-x1.25.jsonl:c \\
        /tmp/forewarn-bench/year-x1.25.jsonl:d

`forewarn synth` holds every obligation of the year it makes as a Python object (about 2 KB per event:
16 GiB for 7.8 million events), so a log ten times the reference one is made of smaller ones: each
INPUT:TAG (a `forewarn synth` log with its `.expected.json` beside it) is copied with every id it
defines or references suffixed `-TAG` (the same company's year again, as another set of customers and
maintenances), and the copies are merged in time order into OUT, their expected findings renamed the
same way into OUT's `.expected.json` (bench/bench_audit.py checks a report against it).
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson

IDS = ("id", "customer", "communication", "maintenance", "incident", "ticket", "reply", "in_reply_to", "waiver")
"""Fields that hold an id (`release` too where it is a string, `subject` in a waiver, `customers` lists)."""


def rename(event: dict, tag: str) -> dict:
    suffix = f"-{tag}"
    for name in IDS:
        if isinstance(event.get(name), str):
            event[name] += suffix
    if isinstance(event.get("release"), str):  # a release's id (a maintenance's `release` is a flag)
        event["release"] += suffix
    if event.get("type") == "waiver.granted":
        event["subject"] += suffix
    if isinstance(event.get("customers"), list):
        event["customers"] = [c + suffix for c in event["customers"]]
    if isinstance(event.get("message_id"), str):
        event["message_id"] = event["message_id"].replace("@", f"{suffix}@", 1)
    return event


def copy(path: Path, tag: str) -> Iterator[tuple[str, int, bytes]]:
    with path.open("rb") as handle:
        for n, line in enumerate(handle):
            event = rename(orjson.loads(line), tag)
            yield event["at"], n, orjson.dumps(event)


def main() -> None:
    out = Path(sys.argv[1])
    inputs = [(Path(arg.rsplit(":", 1)[0]), arg.rsplit(":", 1)[1]) for arg in sys.argv[2:]]
    # synth writes whole seconds in UTC ("...:SSZ"): the text sorts as the instant does
    streams = [copy(path, tag) for path, tag in inputs]
    count = 0
    with out.open("wb") as handle:
        for _at, _n, line in heapq.merge(*streams, key=lambda item: item[0]):
            handle.write(line + b"\n")
            count += 1
    findings = []
    as_of = None
    for path, tag in inputs:
        expected = orjson.loads(path.with_suffix(".expected.json").read_bytes())
        as_of = expected["as_of"]
        for finding in expected["findings"]:
            findings.append(
                {**finding, "subject": finding["subject"] + f"-{tag}", "customer": finding["customer"] + f"-{tag}"}
            )
    expected_out = out.with_suffix(".expected.json")
    expected_out.write_bytes(orjson.dumps({"as_of": as_of, "findings": findings}, option=orjson.OPT_INDENT_2))
    print(f"{count} events to {out}; {len(findings)} expected findings to {expected_out}")


if __name__ == "__main__":
    main()
