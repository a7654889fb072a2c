"""Each subject's lifecycle, folded in event-time order into moments and a queryable history."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from forewarn.events import Event, MaintenanceExtended
from forewarn.lifecycle.model import Moment

LIFECYCLE_TYPES = frozenset(
    {
        "maintenance.scheduled",
        "maintenance.rescheduled",
        "maintenance.cancelled",
        "maintenance.started",
        "maintenance.extended",
        "maintenance.completed",
        "maintenance.healthy",
        "incident.declared",
        "incident.resolved",
        "release.scheduled",
    }
)
"""The event types a subject's lifecycle is folded from."""


@dataclass
class Version:
    """One window version of a maintenance (opened by a schedule or a reschedule)."""

    number: int
    opened: datetime
    pos: int
    start: datetime
    end: datetime
    event_id: str
    superseded_at: datetime | None = None


@dataclass(frozen=True)
class Timer:
    """An alarm: fires at (end in force + minutes) unless the maintenance progressed."""

    rule: str
    minutes: int


@dataclass
class SubjectHistory:
    """What the lifecycle of one subject established, for voiding and for checks."""

    kind: str
    id: str
    defined_pos: int  # position of the defining event (scheduled / declared)
    defined_event: str
    customers: list[str] | str  # "all" or ids
    attrs: dict[str, object] = field(default_factory=dict)  # impact, emergency, release, ...
    versions: list[Version] = field(default_factory=list)
    # end in force over time: (pos, end, set by extension that gave an end?)
    end_positions: list[int] = field(default_factory=list)
    ends: list[tuple[datetime, bool]] = field(default_factory=list)
    extension_positions: list[int] = field(default_factory=list)
    extension_gave_end: list[bool] = field(default_factory=list)
    extensions: list[MaintenanceExtended] = field(default_factory=list)
    context: dict[str, object] = field(default_factory=dict)  # customer-visible text, not for decisions
    cancelled_at: datetime | None = None
    completed_at: datetime | None = None
    closed_at: datetime | None = None
    closed_pos: int | None = None
    closed_event: str | None = None
    moments: list[Moment] = field(default_factory=list)
    # labels in force over time (a reschedule that carries labels replaces them): (pos, labels)
    label_positions: list[int] = field(default_factory=list)
    label_versions: list[dict[str, str]] = field(default_factory=list)

    def attrs_at(self, pos: int) -> dict[str, object]:
        """The subject's attributes in force at position `pos` (its labels then)."""
        if len(self.label_positions) <= 1:
            return self.attrs
        i = bisect_right(self.label_positions, pos)
        return {**self.attrs, "labels": self.label_versions[max(i - 1, 0)]}

    def labels_version_at(self, pos: int) -> int:
        """Which labels version is in force at `pos` (0 when they never changed)."""
        return 0 if len(self.label_positions) <= 1 else bisect_right(self.label_positions, pos)

    @property
    def notifiable(self) -> bool:
        return bool(self.attrs.get("notifiable"))

    @property
    def release_related(self) -> bool:
        return self.kind == "release" or bool(self.attrs.get("release"))

    def version_at(self, pos: int) -> Version | None:
        """The window version in force at position `pos`."""
        i = bisect_right([v.pos for v in self.versions], pos)
        return self.versions[i - 1] if i else None

    def end_in_force_at(self, pos: int) -> datetime | None:
        i = bisect_right(self.end_positions, pos)
        return self.ends[i - 1][0] if i else None

    def latest_extension_gave_end(self, pos: int) -> bool | None:
        """Whether the latest extension at or before `pos` gave an end (None: no extension)."""
        i = bisect_right(self.extension_positions, pos)
        return self.extension_gave_end[i - 1] if i else None

    def latest_extension(self, pos: int) -> MaintenanceExtended | None:
        i = bisect_right(self.extension_positions, pos)
        return self.extensions[i - 1] if i else None

    def closed_by(self, pos: int) -> bool:
        return self.closed_pos is not None and self.closed_pos <= pos


def _notifiable(impact: str, emergency: bool) -> bool:
    return impact != "none" or emergency


def fold_subject(
    kind: str,
    subject: str,
    events: Sequence[tuple[int, Event]],
    timers: Sequence[Timer],
    as_of: datetime,
    pos_at: Callable[[datetime], int],
) -> SubjectHistory | None:
    """Fold one subject's lifecycle events (in evaluation order) into its history and moments.

    Returns None when the subject's defining event is missing (cannot happen
    in a validated log, whose references are checked).
    """
    if not events:
        return None
    first_pos, first = events[0]
    if kind == "maintenance":
        return _fold_maintenance(subject, events, timers, as_of, pos_at)
    history = SubjectHistory(
        kind=kind,
        id=subject,
        defined_pos=first_pos,
        defined_event=first.id,
        customers=first.customers,  # type: ignore[union-attr]
    )
    facts: dict[str, object] | None = None
    if kind == "incident" and first.type == "incident.declared":
        history.attrs = {"severity": first.severity, "title": first.title, "labels": first.labels or {}}  # type: ignore[union-attr]
        history.context = {"summary": first.summary, "severity": first.severity}  # type: ignore[union-attr]
        facts = {"opened": first.at, "severity": first.severity, "labels": first.labels or {}}  # type: ignore[union-attr]
    elif kind == "release" and first.type == "release.scheduled":
        history.attrs = {"release": True, "title": first.title, "labels": first.labels or {}}  # type: ignore[union-attr]
        history.context = {"release_at": first.release_at}  # type: ignore[union-attr]
        facts = {"opened": first.at, "release_at": first.release_at, "release": True, "labels": first.labels or {}}  # type: ignore[union-attr]
    if facts is not None:  # the subject's one moment: its definition
        history.moments.append(Moment(first.type, kind, subject, first.at, first_pos, first.id, facts))
    return history


def _fold_maintenance(
    subject: str,
    events: Sequence[tuple[int, Event]],
    timers: Sequence[Timer],
    as_of: datetime,
    pos_at: Callable[[datetime], int],
) -> SubjectHistory | None:
    first_pos, first = events[0]
    if first.type != "maintenance.scheduled":
        return None
    impact = first.impact  # type: ignore[union-attr]
    emergency = bool(first.emergency)  # type: ignore[union-attr]
    h = SubjectHistory(
        kind="maintenance",
        id=subject,
        defined_pos=first_pos,
        defined_event=first.id,
        customers=first.customers,  # type: ignore[union-attr]
        attrs={
            "impact": impact,
            "emergency": emergency,
            "release": bool(first.release),  # type: ignore[union-attr]
            "notifiable": _notifiable(impact, emergency),
            "title": first.title,  # type: ignore[union-attr]
            "labels": first.labels or {},  # type: ignore[union-attr]
        },
        label_positions=[first_pos],
        label_versions=[first.labels or {}],  # type: ignore[union-attr]
        context={
            "impact_summary": first.impact_summary,  # type: ignore[union-attr]
            "emergency_reason": first.reason,  # type: ignore[union-attr]
        },
    )
    # The alarm state: which event set the end in force, and whether the
    # maintenance progressed (completed / extended / rescheduled) since.
    setter: tuple[int, str, datetime] | None = None  # (pos, event id, end)
    fired: set[tuple[str, int]] = set()

    def fire_timers(until: datetime | None) -> None:
        """Fire every alarm due before `until` (None: due by as_of) that still applies."""
        if setter is None or h.cancelled_at is not None or h.completed_at is not None:
            return
        spos, sid, end = setter
        for timer in timers:
            due = end + timedelta(minutes=timer.minutes)
            if (timer.rule, spos) in fired or due > as_of or (until is not None and due >= until):
                continue
            fired.add((timer.rule, spos))
            h.moments.append(
                Moment(
                    "maintenance.overrun",
                    "maintenance",
                    subject,
                    due,
                    pos_at(due),
                    sid,
                    {**h.attrs, "opened": due, "end_in_force": end, "timer": timer.rule},
                )
            )

    for pos, ev in events:
        # Timers due strictly before this event fire first; an event at the
        # very instant a timer is due (say a completion) still counts.
        fire_timers(ev.at)
        if h.cancelled_at is not None:
            continue  # a cancellation ends the maintenance: nothing after it counts
        t = ev.type
        base = {**h.attrs, "opened": ev.at}
        if t in ("maintenance.scheduled", "maintenance.rescheduled"):
            if t == "maintenance.rescheduled" and h.versions:
                h.versions[-1].superseded_at = ev.at
            if t == "maintenance.rescheduled" and ev.labels is not None:  # type: ignore[union-attr]
                h.attrs = {**h.attrs, "labels": ev.labels}  # type: ignore[union-attr]
                h.label_positions.append(pos)
                h.label_versions.append(ev.labels)  # type: ignore[union-attr]
                base["labels"] = ev.labels  # type: ignore[union-attr]
            version = Version(len(h.versions) + 1, ev.at, pos, ev.start, ev.end, ev.id)  # type: ignore[union-attr]
            h.versions.append(version)
            h.end_positions.append(pos)
            h.ends.append((version.end, False))
            setter = (pos, ev.id, version.end)
            h.moments.append(
                Moment(
                    t,
                    "maintenance",
                    subject,
                    ev.at,
                    pos,
                    ev.id,
                    {
                        **base,
                        "start": version.start,
                        "end": version.end,
                        "end_in_force": version.end,
                        "version": version.number,
                    },
                )
            )
        elif t == "maintenance.extended":
            new_end = ev.end  # type: ignore[union-attr]
            h.extension_positions.append(pos)
            h.extension_gave_end.append(new_end is not None)
            h.extensions.append(ev)  # type: ignore[arg-type]
            attrs = {**base, "reason": ev.reason}  # type: ignore[union-attr]
            if new_end is not None:
                h.end_positions.append(pos)
                h.ends.append((new_end, True))
                attrs["end"] = new_end
            if ev.next_update_by is not None:  # type: ignore[union-attr]
                attrs["next_update_by"] = ev.next_update_by  # type: ignore[union-attr]
            attrs["end_in_force"] = h.end_in_force_at(pos)
            # An extension after the event that set the end in force rules
            # out its overrun; one that gives a new end sets the next one.
            setter = (pos, ev.id, new_end) if new_end is not None else None
            h.moments.append(Moment(t, "maintenance", subject, ev.at, pos, ev.id, attrs))
        elif t == "maintenance.cancelled":
            h.cancelled_at = ev.at
            if h.versions and h.versions[-1].superseded_at is None:
                h.versions[-1].superseded_at = ev.at
        elif t == "maintenance.completed":
            if h.completed_at is None:
                h.completed_at = ev.at
            if ev.healthy:  # type: ignore[union-attr]
                _close(h, ev, pos, base)
        elif t == "maintenance.healthy" and h.completed_at is not None:
            _close(h, ev, pos, base)
    fire_timers(None)
    return h


def _close(h: SubjectHistory, ev: Event, pos: int, base: dict[str, object]) -> None:
    if h.closed_at is not None:
        return
    h.closed_at, h.closed_pos, h.closed_event = ev.at, pos, ev.id
    h.moments.append(
        Moment(
            "maintenance.closed",
            "maintenance",
            h.id,
            ev.at,
            pos,
            ev.id,
            {
                **base,
                "end_in_force": h.end_in_force_at(pos),
            },
        )
    )
