"""Seeded, realistic lifecycles: customers across calendars, maintenances of every shape, incidents, releases."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# (timezone, country, subdivision): holiday-heavy calendars, Friday-Saturday
# weekends, DST in both hemispheres, half-hour offsets.
CALENDARS: list[tuple[str, str | None, str | None]] = [
    ("Europe/Berlin", "DE", None),
    ("Europe/Berlin", "DE", "BY"),
    ("America/Chicago", "US", None),
    ("America/New_York", "US", "NY"),
    ("Europe/London", "GB", None),
    ("Europe/Paris", "FR", None),
    ("Asia/Jerusalem", "IL", None),
    ("Africa/Cairo", "EG", None),
    ("Asia/Tokyo", "JP", None),
    ("Australia/Sydney", "AU", "NSW"),
    ("America/Sao_Paulo", "BR", None),
    ("Asia/Kolkata", "IN", None),
    ("Australia/Adelaide", "AU", "SA"),
    ("UTC", None, None),
    ("America/Los_Angeles", "US", "CA"),
]


@dataclass(frozen=True)
class Shape:
    """The knobs of a generated scenario."""

    customers: int = 8
    maintenances: int = 16
    incidents: int = 3
    releases: int = 2
    start: datetime = datetime(2026, 1, 5, tzinfo=UTC)
    days: int = 90
    min_affected: int = 1
    max_affected: int = 6
    all_share: float = 0.2  # share of subjects sent to "all" enterprise customers


def _t(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class Scenario:
    """Builds the lifecycle events of one scenario (no communications: the engine sends those)."""

    def __init__(self, seed: int, shape: Shape) -> None:
        self.rng = random.Random(seed)
        self.shape = shape
        self.events: list[dict[str, object]] = []
        self.customers: list[str] = []
        self._n = 0

    def add(self, type_: str, at: datetime, **fields: object) -> dict[str, object]:
        self._n += 1
        event = {"id": f"ev-{self._n:07d}", "type": type_, "at": _t(at), **fields}
        self.events.append(event)
        return event

    def build(self) -> list[dict[str, object]]:
        s = self.shape
        for i in range(s.customers):
            self._customer(i)
        for i in range(s.maintenances):
            self._maintenance(i)
        for i in range(s.incidents):
            self._incident(i)
        for i in range(s.releases):
            self._release(i)
        return sorted(self.events, key=lambda e: (str(e["at"]), str(e["id"])))

    def _when(self, lo_days: float, hi_days: float) -> datetime:
        offset = self.rng.uniform(lo_days, hi_days) * 86_400
        t = self.shape.start + timedelta(seconds=offset)
        return t.replace(second=0, microsecond=0, minute=(t.minute // 5) * 5)

    def _customer(self, i: int) -> None:
        cid = f"cust-{i:04d}"
        tz, country, sub = CALENDARS[i % len(CALENDARS)]
        plan = "enterprise" if self.rng.random() < 0.85 else self.rng.choice(["business", "basic"])
        fields: dict[str, object] = {
            "customer": cid,
            "name": f"Customer {i}",
            "plan": plan,
            "timezone": tz,
            "contacts": [f"ops@{cid}.example"],
        }
        if country:
            fields["country"] = country
        if sub:
            fields["subdivision"] = sub
        self.add("customer.upserted", self.shape.start - timedelta(days=30), **fields)
        self.customers.append(cid)
        if self.rng.random() < 0.1:  # a plan change during the period
            changed = dict(fields, plan="business" if plan == "enterprise" else "enterprise")
            self.add("customer.upserted", self._when(5, self.shape.days - 5), **changed)

    def _affected(self) -> list[str] | str:
        if self.rng.random() < self.shape.all_share:
            return "all"
        k = self.rng.randint(self.shape.min_affected, min(self.shape.max_affected, len(self.customers)))
        return sorted(self.rng.sample(self.customers, k))

    def _maintenance(self, i: int) -> None:
        mid = f"mx-{i:04d}"
        rng = self.rng
        start = self._when(7, self.shape.days - 7).replace(minute=0)
        end = start + timedelta(hours=rng.choice([1, 2, 3, 4]))
        emergency = rng.random() < 0.08
        impact = "interruption" if emergency else rng.choice(["interruption", "interruption", "degraded", "none"])
        opened = start - (timedelta(minutes=rng.choice([20, 40])) if emergency else timedelta(days=rng.uniform(8, 20)))
        fields: dict[str, object] = {
            "maintenance": mid,
            "title": f"Maintenance {mid}",
            "start": _t(start),
            "end": _t(end),
            "customers": self._affected(),
            "impact": impact,
        }
        if impact != "none":
            fields["impact_summary"] = rng.choice(["Search may be slow", "Logins unavailable", "Read-only mode"])
        if emergency:
            fields["emergency"] = True
            fields["reason"] = "critical vulnerability in the web tier"
        if rng.random() < 0.08:
            fields["release"] = True
        self.add("maintenance.scheduled", opened, **fields)
        roll = rng.random()
        if not emergency and roll < 0.08:  # cancelled
            self.add("maintenance.cancelled", opened + timedelta(days=1), maintenance=mid)
            return
        if not emergency and roll < 0.2:  # rescheduled (before or after the notice deadline)
            when = opened + timedelta(days=1) if roll < 0.15 else start - timedelta(hours=10)
            start = start + timedelta(days=rng.choice([10, 12, 14]))  # more than any holiday stretch
            end = start + timedelta(hours=2)
            self.add("maintenance.rescheduled", when, maintenance=mid, start=_t(start), end=_t(end))
        self.add("maintenance.started", start, maintenance=mid)
        self._finish(mid, start, end)

    def _finish(self, mid: str, start: datetime, end: datetime) -> None:
        rng = self.rng
        roll = rng.random()
        reason = "data migration slower than planned"
        if roll < 0.55:
            self.add("maintenance.completed", end - timedelta(minutes=20), maintenance=mid, healthy=True)
        elif roll < 0.7:
            self.add("maintenance.completed", end - timedelta(minutes=20), maintenance=mid, healthy=False)
            self.add("maintenance.healthy", end - timedelta(minutes=5), maintenance=mid)
        elif roll < 0.85:
            new_end = end + timedelta(hours=1)
            self.add(
                "maintenance.extended", end - timedelta(minutes=10), maintenance=mid, reason=reason, end=_t(new_end)
            )
            self.add("maintenance.completed", new_end - timedelta(minutes=15), maintenance=mid, healthy=True)
        else:  # only a next-update time, then a new end
            update_by = end + timedelta(minutes=50)
            self.add(
                "maintenance.extended",
                end - timedelta(minutes=10),
                maintenance=mid,
                reason=reason,
                next_update_by=_t(update_by),
            )
            new_end = end + timedelta(hours=2)
            self.add(
                "maintenance.extended",
                update_by - timedelta(minutes=5),
                maintenance=mid,
                reason=reason,
                end=_t(new_end),
            )
            self.add("maintenance.completed", new_end - timedelta(minutes=30), maintenance=mid, healthy=True)

    def _incident(self, i: int) -> None:
        iid = f"inc-{i:04d}"
        at = self._when(3, self.shape.days - 3)
        severity = self.rng.choice(["critical", "critical", "major", "minor"])
        self.add(
            "incident.declared",
            at,
            incident=iid,
            title=f"Incident {iid}",
            severity=severity,
            customers=self._affected(),
            summary="Users cannot log in",
        )
        self.add("incident.resolved", at + timedelta(hours=3), incident=iid)

    def _release(self, i: int) -> None:
        rid = f"rel-{i:04d}"
        at = self._when(3, self.shape.days - 15)
        release_at = (at + timedelta(days=self.rng.uniform(8, 14))).replace(minute=0)
        self.add(
            "release.scheduled",
            at,
            release=rid,
            title=f"Release {rid}",
            release_at=_t(release_at),
            customers=self._affected(),
        )


def scenario(seed: int, shape: Shape | None = None) -> list[dict[str, object]]:
    """The lifecycle events of a seeded scenario, in time order."""
    return Scenario(seed, shape or Shape()).build()
