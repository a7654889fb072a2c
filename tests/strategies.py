"""Hypothesis strategies: small, valid lifecycles a real operation could produce, printed as importable JSONL."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from forewarn.calendar import business_days_before
from forewarn.events import EVENT_ADAPTER, Event

# --------------------------------------------------------------------------- profiles

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
THOROUGH = 10_000


def scaled(ci: int, thorough: int = THOROUGH, **kwargs: Any) -> settings:
    """Settings with `ci` examples under the ci profile, `thorough` under thorough, a quarter of ci under dev."""
    n = {"thorough": thorough, "dev": max(3, ci // 4)}.get(PROFILE, ci)
    kwargs.setdefault("suppress_health_check", [HealthCheck.too_slow, HealthCheck.data_too_large])
    return settings(max_examples=n, deadline=None, **kwargs)


# --------------------------------------------------------------------------- time

STEP = timedelta(minutes=5)
"""Every generated instant is on a 5-minute grid: counterexamples stay readable."""
DAY_STEPS = 24 * 12

# Starting points near DST changes and holiday clusters (2026): US DST begins
# Mar 8, EU Mar 29, AU DST ends Apr 5 / begins Oct 4, EU ends Oct 25, US Nov 1;
# Good Friday / Easter Monday Apr 3 / Apr 6, Passover Apr 2-9, Eid al-Fitr ~Mar 20,
# Eid al-Adha ~May 27, Golden Week Apr 29 - May 6, Rosh Hashanah Sep 12, Christmas.
BASES: list[datetime] = [
    datetime(2026, m, d, h, tzinfo=UTC)
    for m, d, h in [
        (3, 2, 9),
        (3, 16, 6),
        (3, 24, 22),
        (3, 30, 8),
        (4, 26, 3),
        (5, 20, 12),
        (9, 7, 9),
        (9, 28, 16),
        (10, 20, 9),
        (12, 18, 9),
    ]
]

# (timezone, country, subdivision): Friday-Saturday weekends (IL, EG), holiday-heavy
# calendars, DST in both hemispheres, half-hour and 45-minute offsets, no country.
CALENDARS: list[tuple[str, str | None, str | None]] = [
    ("UTC", None, None),
    ("Europe/Berlin", "DE", "BY"),
    ("Asia/Jerusalem", "IL", None),
    ("Africa/Cairo", "EG", None),
    ("America/New_York", "US", "NY"),
    ("Australia/Adelaide", "AU", "SA"),
    ("Asia/Tokyo", "JP", None),
    ("Asia/Kolkata", "IN", None),
    ("Europe/London", "GB", None),
    ("Asia/Kathmandu", "NP", None),
    ("Pacific/Chatham", "NZ", None),
    ("America/Santiago", "CL", None),
    ("Asia/Dubai", "AE", None),
    ("America/Los_Angeles", "US", "CA"),
]



@dataclass(frozen=True)
class ModelParams:
    """The policy's numbers as the models of these tests use them, read from the rule files' logic (the
    windows and timers of the rules), never written here: a parameter edited in a rule file moves the
    model with it."""

    advance_days: int  # advance-notice: business days before the window starts
    release_days: int  # release-notice: business days before release_at
    reminder: timedelta  # start-reminder: either side of the start
    emergency: timedelta  # emergency-notice: after the declaration
    closing: timedelta  # closing-notice: after the close
    extension: timedelta  # extension-notice: after the extension
    overrun: timedelta  # extension-notice's alarm: after the end in force
    incident: timedelta  # incident-notice: after the declaration
    support: str  # sender-address
    releases: str

    @staticmethod
    def of(policy: Any) -> ModelParams:
        def after(rule_id: str) -> timedelta:
            ob = policy.by_id[rule_id].spec.obligation
            unit, amount = policy.by_id[rule_id].anchor_offset(ob.window.not_after)
            assert unit == "minutes", rule_id
            return timedelta(minutes=amount)

        def days(rule_id: str) -> int:
            ob = policy.by_id[rule_id].spec.obligation
            unit, amount = policy.by_id[rule_id].anchor_offset(ob.window.not_after)
            assert unit == "business_days", rule_id
            return -amount

        alarm = policy.by_id["extension-notice"]
        return ModelParams(
            advance_days=days("advance-notice"),
            release_days=days("release-notice"),
            reminder=after("start-reminder"),
            emergency=after("emergency-notice"),
            closing=after("closing-notice"),
            extension=after("extension-notice"),
            overrun=timedelta(minutes=alarm.anchor_offset(alarm.spec.alarm.after)[1]),
            incident=after("incident-notice"),
            support=str(policy.sender(False)),
            releases=str(policy.sender(True)),
        )


def _shipped_params() -> ModelParams:
    from forewarn.policy.loader import load_policy

    return ModelParams.of(load_policy())


PARAMS = _shipped_params()
"""The shipped policy's numbers (the lifecycles below are drawn feasible for them)."""
SUPPORT = PARAMS.support
RELEASES = PARAMS.releases
RULE_IDS = [
    "advance-notice",
    "closing-notice",
    "emergency-notice",
    "extension-notice",
    "incident-notice",
    "notice-content",
    "release-notice",
    "reply-routing",
    "sender-address",
    "start-reminder",
    "ticket-opened",
    "update-cadence",
]


def ts(t: datetime) -> str:
    """A UTC instant as the log writes it."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def instant(text: object) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def to_jsonl(events: Sequence[dict[str, object]]) -> str:
    """The events as JSONL a developer can save and `forewarn import`."""
    return "".join(json.dumps(e, separators=(", ", ": ")) + "\n" for e in events)


def time_ordered(events: Sequence[dict[str, object]]) -> list[dict[str, object]]:
    """Stable sort by `at` (ties keep their order: recording order)."""
    return sorted(events, key=lambda e: instant(e["at"]))


def parse(events: Sequence[dict[str, object]]) -> list[Event]:
    """Validated events, in evaluation order."""
    return [EVENT_ADAPTER.validate_python(e) for e in time_ordered(events)]


@dataclass(frozen=True)
class Lifecycle:
    """A generated log (lifecycle facts, no communications) and an instant after all its deadlines."""

    events: tuple[dict[str, object], ...]
    as_of: datetime
    start: datetime  # the first event's `at`

    def __repr__(self) -> str:
        return f"Lifecycle(as_of={ts(self.as_of)}), as JSONL:\n{to_jsonl(self.events)}"

    def jsonl(self) -> str:
        return to_jsonl(self.events)

    def parsed(self) -> list[Event]:
        return parse(self.events)

    def customers(self) -> list[str]:
        return sorted({str(e["customer"]) for e in self.events if e["type"] == "customer.upserted"})


# --------------------------------------------------------------------------- building blocks


def chance(draw: st.DrawFn, percent: int) -> bool:
    """True with about `percent`% probability; shrinks to False."""
    return draw(st.integers(0, 99)) >= 100 - percent


def steps(draw: st.DrawFn, lo: int, hi: int) -> timedelta:
    """lo..hi steps of 5 minutes (shrinks to lo)."""
    return draw(st.integers(lo, hi)) * STEP


class _Log:
    """Events being built; ids are given once they are in time order."""

    def __init__(self) -> None:
        self.items: list[dict[str, object]] = []

    def add(self, type_: str, at: datetime, **fields: object) -> None:
        self.items.append({"id": "", "type": type_, "at": ts(at), **fields})

    def finish(self) -> tuple[dict[str, object], ...]:
        ordered = time_ordered(self.items)
        return tuple({**e, "id": f"e{n:02d}"} for n, e in enumerate(ordered, 1))


def _affected(draw: st.DrawFn, customers: list[str]) -> list[str] | str:
    if chance(draw, 25):
        return "all"
    return sorted(draw(st.lists(st.sampled_from(customers), min_size=1, max_size=len(customers), unique=True)))


def _deadline_of(start: datetime, customer_cal: tuple[str, str | None, str | None]) -> datetime:
    tz, country, sub = customer_cal
    return business_days_before(start, PARAMS.advance_days, tz, country, sub)


# --------------------------------------------------------------------------- lifecycles


@st.composite
def lifecycles(
    draw: st.DrawFn,
    feasible: bool = False,
    max_customers: int = 3,
    min_maintenances: int = 0,
    max_maintenances: int = 2,
    max_incidents: int = 1,
    max_releases: int = 1,
    waivers: bool = True,
) -> Lifecycle:
    """A small, valid lifecycle log.

    `feasible`: every obligation can be met by a prompt sender (notices are
    scheduled >= 10 days ahead, maintenances finish or are extended before they
    overrun). Otherwise leads may be short, exactly at the deadline or past it,
    reschedules may move a window after its notice deadline, and work may overrun.
    """
    base = draw(st.sampled_from(BASES))
    log = _Log()
    latest: list[datetime] = [base]

    def at(t: datetime) -> datetime:
        latest.append(t)
        return t

    # customers ------------------------------------------------------------
    customers: list[str] = []
    calendars: dict[str, tuple[str, str | None, str | None]] = {}
    for i in range(draw(st.integers(1, max_customers))):
        cid = f"cust-{i + 1}"
        cal = draw(st.sampled_from(CALENDARS))
        plan = "enterprise" if not chance(draw, 15) else draw(st.sampled_from(["business", "basic", "free"]))
        fields: dict[str, object] = {"customer": cid, "name": f"Customer {i + 1}", "plan": plan, "timezone": cal[0]}
        if cal[1]:
            fields["country"] = cal[1]
        if cal[2]:
            fields["subdivision"] = cal[2]
        fields["contacts"] = [f"ops@{cid}.example"]
        log.add("customer.upserted", base - timedelta(days=30), **fields)
        customers.append(cid)
        calendars[cid] = cal
        if chance(draw, 12):  # a plan change (or a move to another calendar) during the period
            other = draw(st.sampled_from(CALENDARS))
            changed = dict(fields, plan="business" if plan == "enterprise" else "enterprise", timezone=other[0])
            changed.pop("country", None)
            changed.pop("subdivision", None)
            if other[1]:
                changed["country"] = other[1]
            if other[2]:
                changed["subdivision"] = other[2]
            log.add("customer.upserted", at(base + steps(draw, 0, 10 * DAY_STEPS)), **changed)

    subjects: list[tuple[str, datetime]] = []

    # maintenances ----------------------------------------------------------
    for i in range(draw(st.integers(min_maintenances, max_maintenances))):
        mid = f"mx-{i + 1}"
        opened = at(base + steps(draw, 0, 7 * DAY_STEPS))
        emergency = chance(draw, 15)
        impact = draw(st.sampled_from(["interruption", "degraded", "none"]))
        affected = _affected(draw, customers)
        duration = steps(draw, 1, 72)
        if emergency:  # declared shortly before it starts, or just after (work already under way)
            start = opened + steps(draw, -6, 24)
            if feasible:  # not over before it was declared: it can finish before it overruns
                duration = max(duration, opened - start + STEP)
        elif feasible:
            start = opened + steps(draw, 10 * DAY_STEPS, 16 * DAY_STEPS)
        else:
            mode = draw(st.sampled_from(["days", "hours", "at-deadline"]))
            if mode == "days":
                start = opened + steps(draw, 0, 12 * DAY_STEPS)
            elif mode == "hours":
                start = opened + steps(draw, -6, 48)
            else:  # opened exactly at (or one step around) one customer's notice deadline
                start = opened + timedelta(days=draw(st.integers(1, 9)))
                who = affected[0] if isinstance(affected, list) else customers[0]
                opened = at(_deadline_of(start, calendars[who]) + draw(st.sampled_from([0, -1, 1])) * STEP)
        fields = {
            "maintenance": mid,
            "title": f"Maintenance {mid}",
            "start": ts(start),
            "end": ts(start + duration),
            "customers": affected,
            "impact": impact,
        }
        if impact != "none":
            fields["impact_summary"] = draw(st.sampled_from(["Logins unavailable", "Search may be slow"]))
        if emergency:
            fields["emergency"] = True
            fields["reason"] = "critical vulnerability in the web tier"
        if chance(draw, 15):
            fields["release"] = True
        log.add("maintenance.scheduled", opened, **fields)
        subjects.append((mid, opened))
        _maintenance_course(draw, log, at, mid, opened, start, start + duration, feasible)

    # incidents ----------------------------------------------------------------
    for i in range(draw(st.integers(0, max_incidents))):
        iid = f"inc-{i + 1}"
        declared = at(base + steps(draw, 0, 7 * DAY_STEPS))
        log.add(
            "incident.declared",
            declared,
            incident=iid,
            title=f"Incident {iid}",
            severity=draw(st.sampled_from(["critical", "major", "minor"])),
            customers=_affected(draw, customers),
            summary="Users cannot log in",
        )
        subjects.append((iid, declared))
        if chance(draw, 70):
            log.add("incident.resolved", at(declared + steps(draw, 1, 48)), incident=iid)

    # releases -------------------------------------------------------------------
    for i in range(draw(st.integers(0, max_releases))):
        rid = f"rel-{i + 1}"
        announced = at(base + steps(draw, 0, 7 * DAY_STEPS))
        lead = steps(draw, 10 * DAY_STEPS, 16 * DAY_STEPS) if feasible else steps(draw, 0, 12 * DAY_STEPS)
        log.add(
            "release.scheduled",
            announced,
            release=rid,
            title=f"Release {rid}",
            release_at=ts(at(announced + lead)),
            customers=_affected(draw, customers),
        )
        subjects.append((rid, announced))

    # waivers (granted for whatever findings there may be) ---------------------------
    if waivers and subjects:
        for n in range(draw(st.integers(0, 1))):
            subject, defined = draw(st.sampled_from(subjects))
            fields = {
                "waiver": f"wv-{n + 1}",
                "rule": draw(st.sampled_from(RULE_IDS)),
                "subject": subject,
                "reason": "customer agreed to the short notice by phone",
                "approved_by": "cdm@example.com",
            }
            if chance(draw, 50):
                fields["customer"] = draw(st.sampled_from(customers))
            log.add("waiver.granted", at(defined + steps(draw, 0, 3 * DAY_STEPS)), **fields)

    events = log.finish()
    return Lifecycle(events, max(latest) + timedelta(days=3), instant(events[0]["at"]))


def _maintenance_course(
    draw: st.DrawFn,
    log: _Log,
    at: Any,
    mid: str,
    opened: datetime,
    start: datetime,
    end: datetime,
    feasible: bool,
) -> None:
    """Reschedules, cancellation, start, extensions and completion of one maintenance."""
    at(start)
    at(end)
    last = opened
    for _ in range(draw(st.integers(0, 2)) if chance(draw, 35) else 0):
        # before or after the notice deadline, even after the start
        span = max(1, int((start - last) / STEP) + 6)
        if feasible:  # no later than the overrun alarm of the window in force
            span = max(1, min(span, int((end + PARAMS.overrun - last) / STEP)))
        when = at(last + steps(draw, 1, span))
        lead = steps(draw, 10 * DAY_STEPS, 14 * DAY_STEPS) if feasible else steps(draw, -6, 12 * DAY_STEPS)
        start = at(when + lead)
        end = at(start + steps(draw, 1, 72))
        log.add("maintenance.rescheduled", when, maintenance=mid, start=ts(start), end=ts(end))
        last = when
    if chance(draw, 15):
        log.add("maintenance.cancelled", at(last + steps(draw, 1, max(1, int((end - last) / STEP)))), maintenance=mid)
        return
    started = max(start, last + STEP) if start <= last else start
    log.add("maintenance.started", at(started), maintenance=mid)
    now = started
    end_in_force: datetime | None = end  # None: the latest extension set no end (no overrun alarm)
    overrun_ok = not feasible

    def before_overrun(lo: datetime) -> datetime:
        """An instant at or after `lo`, no later than the overrun alarm (unless overruns are allowed)."""
        if end_in_force is None:
            return lo + steps(draw, 0, 36)
        limit = end_in_force + PARAMS.overrun
        if overrun_ok and chance(draw, 20):
            return max(lo, limit) + steps(draw, 1, 24)
        if lo >= limit:
            return lo
        return lo + steps(draw, 0, int((limit - lo) / STEP))

    course = draw(st.sampled_from(["healthy", "unhealthy", "extended", "running"]))
    if course == "running" and feasible:
        course = "healthy"
    if course == "extended":
        for _ in range(draw(st.integers(1, 3))):
            x = at(before_overrun(now + STEP))
            gives_end = draw(st.sampled_from(["end", "next_update_by", "both"]))
            fields: dict[str, object] = {"maintenance": mid, "reason": "data migration slower than planned"}
            if gives_end in ("end", "both"):
                new_end = at(max(x, end_in_force or x) + steps(draw, 1, 24))
                fields["end"] = ts(new_end)
                end_in_force = new_end
            else:
                end_in_force = None
            if gives_end in ("next_update_by", "both"):
                fields["next_update_by"] = ts(at(x + steps(draw, 1, 24)))
            log.add("maintenance.extended", x, **fields)
            now = x
        course = draw(st.sampled_from(["healthy", "unhealthy"] + (["running"] if not feasible else [])))
    if course == "healthy":
        log.add("maintenance.completed", at(before_overrun(now)), maintenance=mid, healthy=True)
    elif course == "unhealthy":
        done = at(before_overrun(now))
        log.add("maintenance.completed", done, maintenance=mid, healthy=False)
        if chance(draw, 80):
            log.add("maintenance.healthy", at(done + steps(draw, 0, 24)), maintenance=mid)
