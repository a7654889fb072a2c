"""Report test data: a realistic, seeded quarter of maintenances, notices and slips (no tests)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

from forewarn.audit.findings import AuditResult, audit
from forewarn.log.source import load_files
from forewarn.policy.loader import load_policy

QUARTER_START = datetime(2026, 7, 1, tzinfo=UTC)
QUARTER_END = datetime(2026, 10, 1, tzinfo=UTC)
AS_OF = datetime(2026, 10, 8, tzinfo=UTC)
SUPPORT = "enterprise-support@example.com"
RELEASES = "teams-releases@example.com"

CUSTOMERS = [  # id, name, time zone, country, subdivision
    ("northwind", "Northwind Traders", "Europe/Paris", "FR", None),
    ("contoso", "Contoso", "America/Chicago", "US", None),
    ("tailspin", "Tailspin Toys", "Europe/Berlin", "DE", "BY"),
    ("adatum", "Adatum", "Asia/Jerusalem", "IL", None),
    ("litware", "Litware", "Asia/Tokyo", "JP", None),
    ("fourthcoffee", "Fourth Coffee", "Europe/London", "GB", None),
    ("wingtip", "Wingtip Toys", "America/New_York", "US", "NY"),
    ("woodgrove", "Woodgrove Bank", "Asia/Kolkata", "IN", None),
]


def ts(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Log:
    """A growing list of events with fresh ids."""

    def __init__(self, seed: int) -> None:
        self.events: list[dict[str, object]] = []
        self.rng = random.Random(seed)
        self.counter = 0

    def add(self, type_: str, at: datetime, **fields: object) -> dict[str, object]:
        self.counter += 1
        event = {"id": f"e{self.counter}", "type": type_, "at": ts(at), **fields}
        self.events.append(event)
        return event

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def send(
        self,
        at: datetime,
        customer: str,
        kind: str,
        about: tuple[str, str],
        *,
        sender: str = SUPPORT,
        states: dict[str, str] | None = None,
        ticket: bool = True,
    ) -> str:
        """A communication, its ticket (now and then late or missing) and its id."""
        self.counter += 1
        comm = f"c-{self.counter}"
        fields: dict[str, object] = {
            "communication": comm,
            "customer": customer,
            "to": [f"ops@{customer}.example"],
            "from": sender,
            "kind": kind,
            about[0]: about[1],
            "subject": f"{kind} {about[1]}",
        }
        if states:
            fields["states"] = states
        self.add("communication.sent", at, **fields)
        if ticket and not self.chance(0.01):
            delay = timedelta(minutes=25) if self.chance(0.02) else timedelta(minutes=1)
            self.add("ticket.opened", at + delay, ticket=f"t-{comm}", communication=comm)
        return comm

    def sender(self) -> str:
        return "noreply@example.com" if self.chance(0.015) else SUPPORT


def _customers(log: Log, copies: int) -> list[tuple[str, str, str | None, str | None]]:
    out = []
    for i in range(copies):
        for cid, name, tz, country, sub in CUSTOMERS:
            cid = cid if i == 0 else f"{cid}-{i}"
            fields: dict[str, object] = {
                "customer": cid,
                "name": name,
                "plan": "enterprise",
                "timezone": tz,
                "contacts": [f"ops@{cid}.example"],
            }
            if country:
                fields["country"] = country
            if sub:
                fields["subdivision"] = sub
            log.add("customer.upserted", QUARTER_START - timedelta(days=60), **fields)
            out.append((cid, tz, country, sub))
    log.add(
        "customer.upserted",
        QUARTER_START - timedelta(days=60),
        customer="fabrikam",
        name="Fabrikam",
        plan="basic",
        timezone="UTC",
        contacts=["ops@fabrikam.example"],
    )
    return out


def _window_states(start: datetime, end: datetime, impact: str) -> dict[str, str]:
    return {"window_start": ts(start), "window_end": ts(end), "impact": impact}


def _advance_notices(
    log: Log,
    mx: str,
    customers: list[str],
    opened: datetime,
    start: datetime,
    end: datetime,
    summary: str,
) -> None:
    for c in customers:
        roll = log.rng.random()
        if roll < 0.02:
            continue  # forgotten
        sent = opened + timedelta(minutes=log.rng.randint(5, 90))
        if roll < 0.07:
            sent = start - timedelta(hours=log.rng.randint(2, 20))  # sent at the last minute
        states = _window_states(start, end, summary)
        if log.chance(0.02):
            states.pop("impact")
        log.send(sent, c, "advance_notice", ("maintenance", mx), sender=log.sender(), states=states)


def _window(log: Log, mx: str, customers: list[str], start: datetime, end: datetime, impact: str) -> datetime:
    """Start reminders, the work, closing notices; returns when it closed."""
    if impact == "interruption":
        for c in customers:
            if log.chance(0.02):
                continue
            off = log.rng.randint(-10, 5) if not log.chance(0.05) else log.rng.randint(20, 50)
            log.send(
                start + timedelta(minutes=off),
                c,
                "start_reminder",
                ("maintenance", mx),
                sender=log.sender(),
            )
    log.add("maintenance.started", start, maintenance=mx)
    return end - timedelta(minutes=log.rng.randint(5, 40))


def _closing(log: Log, mx: str, customers: list[str], closed: datetime) -> None:
    for c in customers:
        if log.chance(0.02):
            continue
        delay = log.rng.randint(3, 20) if not log.chance(0.04) else log.rng.randint(45, 120)
        if log.chance(0.01):
            delay = -15  # premature: before the maintenance was closed
        log.send(
            closed + timedelta(minutes=delay),
            c,
            "closing",
            ("maintenance", mx),
            sender=log.sender(),
        )


def _extension(log: Log, mx: str, customers: list[str], end: datetime) -> datetime:
    """Work overruns: an extension with a new end and an update promise; returns the new end."""
    at = end - timedelta(minutes=10)
    new_end = end + timedelta(hours=2)
    update_by = at + timedelta(hours=1)
    log.add(
        "maintenance.extended",
        at,
        maintenance=mx,
        reason="database migration is slower than planned",
        end=ts(new_end),
        next_update_by=ts(update_by),
    )
    for c in customers:
        delay = log.rng.randint(5, 20) if not log.chance(0.1) else 50
        log.send(
            at + timedelta(minutes=delay),
            c,
            "extension",
            ("maintenance", mx),
            states={"reason": "database migration is slower than planned", "end": ts(new_end)},
        )
        if not log.chance(0.15):
            log.send(
                at + timedelta(minutes=55),
                c,
                "extension",
                ("maintenance", mx),
                states={"reason": "migration at 80%", "end": ts(new_end)},
            )
    return new_end


def _planned(log: Log, n: int, customers: list[str], day: datetime) -> None:
    mx = f"mx-{n}"
    start = day.replace(hour=log.rng.choice([1, 3, 20, 22]), minute=0)
    end = start + timedelta(hours=log.rng.choice([1, 2, 3]))
    opened = start - timedelta(days=log.rng.randint(4, 12), hours=log.rng.randint(0, 8))
    impact = log.rng.choice(["interruption", "interruption", "degraded", "none"])
    scope = customers if log.chance(0.5) else log.rng.sample(customers, max(1, len(customers) // 2))
    summary = {
        "interruption": "Service unavailable",
        "degraded": "Search may be slow",
        "none": "No visible impact",
    }[impact]
    log.add(
        "maintenance.scheduled",
        opened,
        maintenance=mx,
        title=f"Platform maintenance {mx}",
        start=ts(start),
        end=ts(end),
        customers="all" if scope is customers else scope,
        impact=impact,
        impact_summary=summary,
    )
    if impact != "none":
        _advance_notices(log, mx, scope, opened, start, end, summary)
    if log.chance(0.12):  # moved closer: the new window leaves under a business day
        opened = start - timedelta(days=2)
        start, end = start - timedelta(hours=20), end - timedelta(hours=20)
        log.add("maintenance.rescheduled", opened, maintenance=mx, start=ts(start), end=ts(end))
        if impact != "none":
            _advance_notices(log, mx, scope, opened, start, end, summary)
    if log.chance(0.06):
        log.add("maintenance.cancelled", start - timedelta(days=1), maintenance=mx)
        return
    closed = _window(log, mx, scope, start, end, impact)
    if impact != "none" and log.chance(0.15):
        closed = _extension(log, mx, scope, end) - timedelta(minutes=20)
    log.add("maintenance.completed", closed, maintenance=mx, healthy=True)
    if impact != "none":
        _closing(log, mx, scope, closed)


def _emergency(log: Log, n: int, customers: list[str], day: datetime) -> None:
    mx = f"emx-{n}"
    declared = day.replace(hour=log.rng.randint(8, 18))
    start, end = declared + timedelta(minutes=30), declared + timedelta(hours=2)
    log.add(
        "maintenance.scheduled",
        declared,
        maintenance=mx,
        title=f"Emergency patch {mx}",
        start=ts(start),
        end=ts(end),
        customers="all",
        impact="interruption",
        emergency=True,
        reason="critical security fix",
        impact_summary="Short interruptions",
    )
    for c in customers:
        delay = log.rng.randint(10, 50) if not log.chance(0.08) else log.rng.randint(70, 150)
        log.send(
            declared + timedelta(minutes=delay),
            c,
            "emergency",
            ("maintenance", mx),
            states=_window_states(start, end, "Short interruptions"),
        )
    log.add("maintenance.started", start, maintenance=mx)
    log.add("maintenance.completed", end, maintenance=mx, healthy=False)
    log.add("maintenance.healthy", end + timedelta(minutes=20), maintenance=mx)
    _closing(log, mx, customers, end + timedelta(minutes=20))


def _incident(log: Log, n: int, customers: list[str], day: datetime) -> None:
    inc = f"inc-{n}"
    at = day.replace(hour=log.rng.randint(0, 23))
    log.add(
        "incident.declared",
        at,
        incident=inc,
        title="Elevated error rates",
        severity="critical",
        customers="all",
        summary="API errors in one region",
    )
    for c in customers:
        delay = log.rng.randint(10, 55) if not log.chance(0.1) else log.rng.randint(65, 200)
        log.send(at + timedelta(minutes=delay), c, "incident", ("incident", inc))
    log.add("incident.resolved", at + timedelta(hours=3), incident=inc)


def _release(log: Log, n: int, customers: list[str], day: datetime) -> None:
    rel = f"rel-{n}"
    at = day.replace(hour=9)
    release_at = at + timedelta(days=7)
    log.add(
        "release.scheduled",
        at,
        release=rel,
        title=f"Release 2026.{n}",
        release_at=ts(release_at),
        customers="all",
    )
    for c in customers:
        late = log.chance(0.05)
        sent = release_at - timedelta(hours=3) if late else at + timedelta(hours=2)
        log.send(sent, c, "release", ("release", rel), sender=RELEASES)


def _replies_and_waivers(log: Log, customers: list[str]) -> None:
    comms = [e for e in log.events if e["type"] == "communication.sent"]
    for i, comm in enumerate(log.rng.sample(comms, min(6, len(comms)))):
        to = [str(comm["from"])] if i else ["ops@example.com"]
        log.add(
            "reply.received",
            datetime.fromisoformat(str(comm["at"])) + timedelta(hours=1),
            reply=f"r-{i}",
            customer=comm["customer"],
            in_reply_to=comm["communication"],
            **{"from": f"it@{comm['customer']}.example"},
            to=to,
        )
    moved = [e for e in log.events if e["type"] == "maintenance.rescheduled"]
    for i, event in enumerate(moved[:2]):
        log.add(
            "waiver.granted",
            datetime.fromisoformat(str(event["at"])) + timedelta(hours=30),
            waiver=f"W-{i + 1}",
            rule="advance-notice",
            subject=event["maintenance"],
            reason="vendor security advisory forced the earlier window; customers were called",
            approved_by="head-of-support@example.com",
        )


def quarter_events(seed: int = 7, copies: int = 1, weeks: int = 13) -> list[dict[str, object]]:
    """A quarter (Jul-Sep 2026) of a support team's life; `copies` multiplies the customers."""
    log = Log(seed)
    customers = [c[0] for c in _customers(log, copies)]
    for week in range(weeks):
        monday = QUARTER_START + timedelta(days=week * 7 - QUARTER_START.weekday())
        for k, offset in enumerate((1, 3)):
            _planned(log, week * 2 + k + 1, customers, monday + timedelta(days=offset))
        if week % 4 == 2:
            _emergency(log, week, customers, monday + timedelta(days=2))
        if week % 5 == 1:
            _incident(log, week, customers, monday + timedelta(days=4))
        if week % 3 == 0:
            _release(log, week, customers, monday)
    _replies_and_waivers(log, customers)
    return sorted(log.events, key=lambda e: str(e["at"]))


def write_jsonl(events: list[dict[str, object]], path: Path) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return path


def audit_file(
    path: Path,
    as_of: datetime = AS_OF,
    since: datetime | None = QUARTER_START,
    until: datetime | None = QUARTER_END,
) -> AuditResult:
    policy = load_policy(None)
    return audit(load_files([path], policy.ids), policy, as_of, since, until)


@cache
def quarter_path() -> Path:
    """The seeded quarter as a JSONL file (written once per test session)."""
    import atexit
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="forewarn-report-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # no folder left behind per test run
    return write_jsonl(quarter_events(), folder / "quarter.jsonl")


@cache
def quarter_result() -> AuditResult:
    return audit_file(quarter_path())


def iter_formats() -> Iterator[str]:
    from forewarn.audit.formats import FORMATTERS

    yield from FORMATTERS


ROOT = Path(__file__).resolve().parent.parent
BASIC = ROOT / "forewarn" / "samples" / "basic.jsonl"
BASIC_AS_OF = datetime(2026, 10, 22, tzinfo=UTC)
HOSTILE = 'con"toso[bold]</script><img src=x onerror=alert(1)>'


def basic_events() -> list[dict[str, object]]:
    return [json.loads(line) for line in BASIC.read_text(encoding="utf-8").splitlines() if line]


def hostile_events() -> list[dict[str, object]]:
    """The basic example with markup in a customer id, a name and a maintenance title."""
    events = basic_events()
    for e in events:
        if e.get("customer") == "contoso":
            e["customer"] = HOSTILE
        if e["type"] == "customer.upserted" and e["customer"] == HOSTILE:
            e["name"] = '<b>Contoso</b> & "Sons" <!--'
        if e["type"] == "maintenance.scheduled":
            e["title"] = "Upgrade <script>alert('t')</script> | pipes | *stars*"
    return events


def result_of(
    events: list[dict[str, object]],
    folder: Path,
    as_of: datetime = BASIC_AS_OF,
    since: datetime | None = None,
    until: datetime | None = None,
) -> AuditResult:
    return audit_file(write_jsonl(events, folder / "log.jsonl"), as_of, since, until)
