"""What evaluation yields: moments, obligations with deadlines, outcomes and violations; the communications
drafts read."""

from __future__ import annotations

from dataclasses import field
from datetime import datetime
from typing import Literal

from forewarn.events import CommunicationSent
from forewarn.record import record

Status = Literal["met", "violated", "pending", "void"]


@record
class Moment:
    """A point in a subject's lifecycle that policy rules can trigger on."""

    type: str  # e.g. "maintenance.rescheduled", "maintenance.closed", "maintenance.overrun"
    subject_kind: str  # maintenance | incident | release
    subject: str  # the subject's id
    at: datetime  # when it happened (UTC)
    pos: int  # position in evaluation order of the event that caused it
    event_id: str  # the event that caused it (for an overrun: the one that set the end)
    attrs: dict[str, object] = field(default_factory=dict, hash=False, compare=False)
    """Instants (opened, start, end, release_at, next_update_by, end_in_force) and
    attributes in force (impact, emergency, release, notifiable, severity, version)."""

    def instant(self, name: str) -> datetime | None:
        value = self.attrs.get(name)
        return value if isinstance(value, datetime) else None


@record
class Obligation:
    """Communications a customer must get about a subject, and when."""

    rule: str  # rule id
    subject_kind: str
    subject: str
    customer: str
    kinds: tuple[str, ...]  # communication kinds that fulfil it
    count: int  # how many communications it needs
    opened: datetime  # before this, nothing counts
    not_before: datetime  # earliest on-time instant (may precede `opened`)
    not_after: datetime  # the deadline
    anchor: str  # the moment's instant the deadline is measured from (start, opened, ...)
    anchor_at: datetime  # that instant
    offset: tuple[str, int]  # ("business_days", -N) or ("minutes", +-M) from the anchor
    moment: Moment  # what opened it
    evidence: tuple[str, ...]  # ids of the events that establish it
    timezone: str = "UTC"  # the customer's calendar at the moment
    country: str | None = None
    subdivision: str | None = None


@record
class Outcome:
    """An obligation's status as of the evaluation instant."""

    obligation: Obligation
    status: Status
    problem: str | None = None  # missing | late | early (when violated)
    communication: str | None = None  # the late/early communication
    sent: datetime | None = None  # when that (or the fulfilling) communication went out
    matched: tuple[str, ...] = ()  # communications that fulfil it (on time)
    matched_events: tuple[str, ...] = ()  # their event ids
    void_reason: str | None = None


@record
class Violation:
    """One rule broken once: becomes a finding (or a waived one)."""

    rule: str
    problem: str
    subject: str  # subject id, communication id, or reply id (per policy.md)
    customer: str
    communication: str | None
    due: datetime
    sent: datetime | None
    fields: dict[str, str]  # message placeholders
    evidence: tuple[str, ...]


@record
class Sent:
    """A communication, its position in evaluation order, and what it is about."""

    pos: int
    comm: CommunicationSent
    subject: tuple[str, str] | None  # e.g. ("maintenance", "mx-1"); None for a comm about nothing

    @staticmethod
    def of(pos: int, comm: CommunicationSent) -> Sent:
        """The communication at `pos`, its subject resolved once."""
        return Sent(pos, comm, comm.subject_ref())
