"""The per-object evaluation's index (tests/oracle.py): one pass over the log in evaluation order, lookups by
customer, subject and communication."""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from forewarn.events import (
    CustomerUpserted,
    Event,
    ReplyReceived,
    TicketOpened,
    WaiverGranted,
)
from forewarn.lifecycle.fold import LIFECYCLE_TYPES
from forewarn.lifecycle.model import Sent


@dataclass
class CustomerTimeline:
    """Every version of one customer's attributes, by evaluation position."""

    positions: list[int] = field(default_factory=list)
    versions: list[CustomerUpserted] = field(default_factory=list)

    def at(self, pos: int) -> CustomerUpserted | None:
        """The attributes in force at position `pos` (the latest upsert at or before it)."""
        if len(self.positions) == 1:  # most customers never change
            return self.versions[0] if pos >= self.positions[0] else None
        i = bisect_right(self.positions, pos)
        return self.versions[i - 1] if i else None


@dataclass
class LogIndex:
    """The log, split by what each stage needs."""

    customers: dict[str, CustomerTimeline] = field(default_factory=dict)
    subjects: dict[tuple[str, str], list[tuple[int, Event]]] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    sent_by_id: dict[str, Sent] = field(default_factory=dict)
    tickets: dict[str, list[tuple[int, TicketOpened]]] = field(default_factory=dict)
    replies: list[tuple[int, ReplyReceived]] = field(default_factory=list)
    waivers: list[tuple[int, WaiverGranted]] = field(default_factory=list)
    ats: list[datetime] = field(default_factory=list)  # `at` of every event, by position

    def customer_at(self, customer: str, pos: int) -> CustomerUpserted | None:
        timeline = self.customers.get(customer)
        return timeline.at(pos) if timeline else None

    def covered_at(
        self, customer: str, pos: int, covers: Callable[[CustomerUpserted], bool]
    ) -> CustomerUpserted | None:
        """The customer's attributes at `pos` if the policy's scope (`covers`, Policy.covers) covers it then."""
        timeline = self.customers.get(customer)  # customer_at, one call less: this runs for every communication
        version = timeline.at(pos) if timeline is not None else None
        return version if version is not None and covers(version) else None

    def covered_customers_at(self, pos: int, covers: Callable[[CustomerUpserted], bool]) -> list[str]:
        """Every customer the scope covers at `pos` (what "all" stands for)."""
        return sorted(c for c in self.customers if self.covered_at(c, pos, covers) is not None)


def build_index(events: Iterable[Event], start: int = 0) -> LogIndex:
    """Index events given in evaluation order (position = `start` + index in that order)."""
    index = LogIndex()
    subjects: dict[tuple[str, str], list[tuple[int, Event]]] = defaultdict(list)
    tickets: dict[str, list[tuple[int, TicketOpened]]] = defaultdict(list)
    ats = index.ats
    sent, sent_by_id, replies, waivers = index.sent, index.sent_by_id, index.replies, index.waivers
    for pos, event in enumerate(events, start):
        ats.append(event.at)
        kind = event.type  # dispatch on the type string, commonest first: this loop sees every event
        if kind == "communication.sent":
            item = Sent.of(pos, event)  # type: ignore[arg-type]
            sent.append(item)
            sent_by_id[event.communication] = item  # type: ignore[union-attr]
        elif kind == "ticket.opened":
            tickets[event.communication].append((pos, event))  # type: ignore[union-attr, arg-type]
        elif kind == "reply.received":
            replies.append((pos, event))  # type: ignore[arg-type]
        elif kind == "customer.upserted":
            timeline = index.customers.setdefault(event.customer, CustomerTimeline())  # type: ignore[union-attr]
            timeline.positions.append(pos)
            timeline.versions.append(event)  # type: ignore[arg-type]
        elif kind in LIFECYCLE_TYPES:
            subject_kind = kind.split(".", 1)[0]
            subjects[(subject_kind, getattr(event, subject_kind))].append((pos, event))
        elif kind == "waiver.granted":
            waivers.append((pos, event))  # type: ignore[arg-type]
    index.subjects = dict(subjects)
    index.tickets = dict(tickets)
    return index
