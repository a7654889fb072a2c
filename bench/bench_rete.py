"""Benchmark: facts per second through a rete Session (12 rules, N subjects x k facts each)."""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forewarn.lifecycle.rete import Rule, Session

KINDS = (
    "maintenance.scheduled",
    "maintenance.rescheduled",
    "maintenance.started",
    "maintenance.extended",
    "maintenance.closed",
    "incident.declared",
)

# Shaped like the compiled policy: type any-of plus a few attribute tests.
WHERES: list[dict[str, object]] = [
    {"type": ["maintenance.scheduled", "maintenance.rescheduled"], "emergency": False},
    {"type": "maintenance.scheduled", "emergency": True},
    {"type": ["maintenance.scheduled", "maintenance.rescheduled"], "release": True},
    {"type": "maintenance.extended", "end": {"exists": True}},
    {"type": "maintenance.closed"},
    {"type": "maintenance.started", "impact": ["degraded", "interruption"]},
    {"type": "maintenance.started", "impact": "none"},
    {"type": "incident.declared", "severity": ["critical", "major"]},
    {"type": "incident.declared", "severity": "minor"},
    {"type": "maintenance.rescheduled", "version": [2, 3]},
    {"type": "maintenance.scheduled", "timer": "advance-notice", "notifiable": True},
    {"next_update_by": {"exists": True}, "emergency": {"exists": False}},
]


def make_rules(fired: list[str]) -> list[Rule]:
    def record(name: str) -> Callable[[str, Mapping[str, object]], None]:
        def action(_sid: str, _fact: Mapping[str, object]) -> None:
            fired.append(name)

        return action

    return [Rule(f"rule-{n:02d}", where, record(f"rule-{n:02d}")) for n, where in enumerate(WHERES)]


def make_fact(subject: int, n: int) -> dict[str, object]:
    """The n-th moment of a subject: varied enough to hit about a third of the rules."""
    kind = KINDS[(subject + n) % len(KINDS)]
    fact: dict[str, object] = {
        "id": str(n),
        "type": kind,
        "emergency": (subject % 7 == 0),
        "release": (n % 3 == 0),
        "notifiable": True,
        "impact": ("none", "degraded", "interruption")[subject % 3],
        "version": n + 1,
        "severity": ("critical", "major", "minor")[n % 3],
        "end": f"2026-03-{1 + n:02d}T10:00:00+00:00",
    }
    if subject % 4 == 0:
        fact["next_update_by"] = "2026-03-01T12:00:00+00:00"
    if n == 0:
        fact["timer"] = "advance-notice"
    return fact


def run(subjects: int, facts: int) -> tuple[float, int]:
    """Seconds to push every subject's facts through one Session, and actions run."""
    fired: list[str] = []
    inputs = [[make_fact(s, n) for n in range(facts)] for s in range(subjects)]
    began = time.perf_counter()
    with Session(make_rules(fired)) as session:
        for subject, moments in enumerate(inputs):
            sid = f"maintenance:mx-{subject}"
            for fact in moments:
                session.assert_fact(sid, fact)
            session.end_subject(sid)
    return time.perf_counter() - began, len(fired)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=5_000)
    parser.add_argument("--facts", type=int, default=5, help="facts per subject")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    total = args.subjects * args.facts
    run(min(args.subjects, 200), args.facts)  # warm-up
    results = [run(args.subjects, args.facts) for _ in range(args.repeats)]
    rates = [total / seconds for seconds, _ in results]
    actions = results[0][1]
    print(
        f"rete Session: {args.subjects:,} subjects x {args.facts} facts = {total:,} facts, "
        f"{len(WHERES)} rules, {actions:,} actions ({actions / total:.2f} per fact)"
    )
    print(
        f"  x{args.repeats}: median {statistics.median(rates):,.0f} facts/s, "
        f"min {min(rates):,.0f}, max {max(rates):,.0f}"
    )
    print(f"  median {1e6 / statistics.median(rates):.1f} µs per fact")
    print(f"peak RSS: {peak_rss_mib():.1f} MiB")


if __name__ == "__main__":
    main()
