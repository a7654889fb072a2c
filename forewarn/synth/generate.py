"""`forewarn synth`: a seeded log at any size, communications as the engine sends them, violations seeded."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from forewarn.events import EVENT_ADAPTER
from forewarn.policy.model import Policy
from forewarn.synth.batch import engine_events
from forewarn.synth.mutate import Expected, seed_violations
from forewarn.synth.scenario import Shape, scenario

QUARTER = Shape()
YEAR = Shape(
    customers=2000,
    maintenances=500,
    incidents=40,
    releases=24,
    days=365,
    min_affected=100,
    max_affected=500,
    all_share=0.0,
)


@dataclass(frozen=True)
class Synthetic:
    events: list[dict[str, object]]
    expected: list[Expected]
    as_of: datetime


def synthesize(
    policy: Policy,
    seed: int,
    shape: Shape,
    violations: int = 1,
    waiver_share: float = 0.2,
    lifecycle_only: bool = False,
) -> Synthetic:
    """Lifecycle events, the engine's communications and tickets, then `violations` of each kind seeded."""
    life = scenario(seed, shape)
    as_of = shape.start + timedelta(days=shape.days + 10)
    if lifecycle_only:
        return Synthetic(life, [], as_of)
    comms = engine_events([EVENT_ADAPTER.validate_python(e) for e in life], policy, as_of)
    merged = sorted(life + comms, key=lambda e: str(e["at"]))
    if violations <= 0:
        return Synthetic(merged, [], as_of)
    mutated, expected = seed_violations(
        merged, seed, per_mutation=violations, waiver_share=waiver_share, reply_share=0.05
    )
    return Synthetic(mutated, expected, as_of)


def write_jsonl(path: Path, events: Iterable[dict[str, object]]) -> int:
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for e in events:
            fh.write(json.dumps(e, separators=(",", ":")) + "\n")
            n += 1
    return n


def write_expected(path: Path, synthetic: Synthetic) -> None:
    body = {
        "as_of": synthetic.as_of.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "findings": [e.to_json() for e in synthetic.expected],
    }
    path.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
