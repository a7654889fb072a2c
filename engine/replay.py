"""Drive the engine through time: wake at every lifecycle event and every due time (tests, demo, synth)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage

from forewarn.engine.runner import Engine


@dataclass
class MemoryDelivery:
    """Delivery into a list: for replays, where no mail should leave the process."""

    messages: list[EmailMessage] = field(default_factory=list)

    def deliver(self, msg: EmailMessage, *, recipients: Sequence[str] | None = None) -> None:
        self.messages.append(msg)

    def close(self) -> None:
        return None


def replay(engine: Engine, start: datetime, end: datetime, max_passes: int = 100_000) -> int:
    """Run the engine at every instant something may become due between `start` and `end`.

    The instants are the `at` of each event already in the log (a lifecycle
    change can open obligations) and each upcoming obligation's send time.
    Returns the number of communications sent.
    """
    times = sorted({t for t in engine.store_times() if start <= t <= end} | {start})
    sent = passes = 0
    i = 0
    t: datetime | None = times[0]
    while t is not None and t <= end and passes < max_passes:
        result = engine.run_once(t)
        passes += 1
        sent += len(result.sent)
        while result.sent and passes < max_passes:  # what it sent may make more due at the same instant
            result = engine.run_once(t)
            passes += 1
            sent += len(result.sent)
        while i < len(times) and times[i] <= t:
            i += 1
        candidates = [times[i]] if i < len(times) else []
        wake = result.plan.next_wake() if result.plan else None
        if wake is not None and wake > t:
            candidates.append(wake)
        t = min(candidates) if candidates else None
    return sent
