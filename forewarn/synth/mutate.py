"""Seeded violations: mutate an engine-made log so that exactly the expected findings arise."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

SUPPORT = "enterprise-support@example.com"


@dataclass(frozen=True)
class Expected:
    """A finding the mutated log must produce."""

    rule: str
    problem: str
    subject: str
    customer: str
    status: str = "violation"

    def key(self) -> tuple[str, str, str, str, str]:
        return (self.rule, self.problem, self.subject, self.customer, self.status)

    def to_json(self) -> dict[str, str]:
        return dict(self.__dict__)


def _at(e: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(e["at"]).replace("Z", "+00:00"))


def _t(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Log:
    """A mutable view of a log: lifecycle facts per maintenance, communications and their tickets."""

    events: list[dict[str, object]]
    touched: set[str] = field(default_factory=set)  # communication ids already mutated
    subjects_touched: set[tuple[str, str, str]] = field(default_factory=set)  # (subject, customer, rule)

    def comms(self, kind: str) -> list[dict[str, object]]:
        return [
            e
            for e in self.events
            if e["type"] == "communication.sent" and e["kind"] == kind and e["communication"] not in self.touched
        ]

    def ticket_of(self, comm: str) -> dict[str, object] | None:
        return next((e for e in self.events if e["type"] == "ticket.opened" and e["communication"] == comm), None)

    def lifecycle(self, maintenance: str) -> list[dict[str, object]]:
        return [e for e in self.events if e.get("maintenance") == maintenance and str(e["type"]).startswith("maint")]

    def stable(self, maintenance: str) -> bool:
        """Never rescheduled or cancelled: its notices are unambiguous targets."""
        return not any(
            e["type"] in ("maintenance.rescheduled", "maintenance.cancelled") for e in self.lifecycle(maintenance)
        )

    def promised_updates(self, maintenance: str) -> bool:
        return any(e["type"] == "maintenance.extended" and "next_update_by" in e for e in self.lifecycle(maintenance))

    def remove(self, *events: dict[str, object] | None) -> None:
        ids = {id(e) for e in events if e is not None}
        self.events = [e for e in self.events if id(e) not in ids]

    def claim(self, comm: dict[str, object], rule: str) -> bool:
        """Reserve a communication (and its subject/customer for `rule`) for one mutation."""
        key = (
            str(comm.get("maintenance") or comm.get("incident") or comm.get("release") or ""),
            str(comm["customer"]),
            rule,
        )
        if comm["communication"] in self.touched or key in self.subjects_touched:
            return False
        self.touched.add(str(comm["communication"]))
        self.subjects_touched.add(key)
        return True


Mutation = Callable[[Log, random.Random], list[Expected]]


def _subject(comm: dict[str, object]) -> str:
    return str(comm.get("maintenance") or comm.get("incident") or comm.get("release"))


def _pick(
    log: Log, rng: random.Random, kind: str, rule: str, ok: Callable[[dict[str, object]], bool] = lambda c: True
) -> dict[str, object] | None:
    candidates = [c for c in log.comms(kind) if ok(c)]
    rng.shuffle(candidates)
    return next((c for c in candidates if log.claim(c, rule)), None)


def _drop(kind: str, rule: str, needs_stable: bool = True, no_updates: bool = False) -> Mutation:
    def mutate(log: Log, rng: random.Random) -> list[Expected]:
        def ok(c: dict[str, object]) -> bool:
            m = c.get("maintenance")
            if m is None:
                return True
            return (not needs_stable or log.stable(str(m))) and not (no_updates and log.promised_updates(str(m)))

        comm = _pick(log, rng, kind, rule, ok)
        if comm is None:
            return []
        log.remove(comm, log.ticket_of(str(comm["communication"])))
        return [Expected(rule, "missing", _subject(comm), str(comm["customer"]))]

    mutate.__name__ = f"drop-{kind}"
    return mutate


def late_advance_notice(log: Log, rng: random.Random) -> list[Expected]:
    """Send the advance notice one hour before the window starts (well past one business day)."""
    comm = _pick(log, rng, "advance_notice", "advance-notice", lambda c: log.stable(str(c["maintenance"])))
    if comm is None:
        return []
    start = datetime.fromisoformat(str(comm["states"]["window_start"]).replace("Z", "+00:00"))  # type: ignore[index]
    comm["at"] = _t(start - timedelta(hours=1))
    ticket = log.ticket_of(str(comm["communication"]))
    if ticket is not None:
        ticket["at"] = _t(start - timedelta(minutes=59))
    return [Expected("advance-notice", "late", _subject(comm), str(comm["customer"]))]


def reminder_outside_tolerance(log: Log, rng: random.Random) -> list[Expected]:
    comm = _pick(log, rng, "start_reminder", "start-reminder", lambda c: log.stable(str(c["maintenance"])))
    if comm is None:
        return []
    moved = _at(comm) + timedelta(minutes=45)
    comm["at"] = _t(moved)
    ticket = log.ticket_of(str(comm["communication"]))
    if ticket is not None:
        ticket["at"] = _t(moved + timedelta(minutes=1))
    return [Expected("start-reminder", "late", _subject(comm), str(comm["customer"]))]


def wrong_sender(log: Log, rng: random.Random) -> list[Expected]:
    kind = rng.choice(["advance_notice", "closing", "start_reminder", "incident"])
    comm = _pick(log, rng, kind, "sender-address")
    if comm is None:
        return []
    comm["from"] = "noreply@example.com"
    return [Expected("sender-address", "wrong-sender", str(comm["communication"]), str(comm["customer"]))]


def drop_ticket(log: Log, rng: random.Random) -> list[Expected]:
    comm = _pick(log, rng, rng.choice(["advance_notice", "closing"]), "ticket-opened")
    if comm is None:
        return []
    log.remove(log.ticket_of(str(comm["communication"])))
    return [Expected("ticket-opened", "missing", str(comm["communication"]), str(comm["customer"]))]


def delay_ticket(log: Log, rng: random.Random) -> list[Expected]:
    comm = _pick(log, rng, rng.choice(["advance_notice", "start_reminder"]), "ticket-opened")
    ticket = log.ticket_of(str(comm["communication"])) if comm else None
    if comm is None or ticket is None:
        return []
    ticket["at"] = _t(_at(comm) + timedelta(minutes=25))
    return [Expected("ticket-opened", "late", str(comm["communication"]), str(comm["customer"]))]


def drop_stated_impact(log: Log, rng: random.Random) -> list[Expected]:
    comm = _pick(
        log,
        rng,
        "advance_notice",
        "notice-content",
        lambda c: isinstance(c.get("states"), dict) and "impact" in c["states"],
    )  # type: ignore[operator]
    if comm is None:
        return []
    comm["states"] = {k: v for k, v in comm["states"].items() if k != "impact"}  # type: ignore[union-attr]
    return [Expected("notice-content", "impact-missing", str(comm["communication"]), str(comm["customer"]))]


def premature_closing(log: Log, rng: random.Random) -> list[Expected]:
    """An extra closing sent right after work started, before the maintenance closed."""
    comm = _pick(log, rng, "closing", "closing-notice")
    if comm is None:
        return []
    started = next((e for e in log.lifecycle(str(comm["maintenance"])) if e["type"] == "maintenance.started"), None)
    if started is None:
        return []
    cid = f"{comm['communication']}-early"
    at = _at(started) + timedelta(minutes=2)
    early = {**comm, "id": f"evt-{cid}", "communication": cid, "at": _t(at), "message_id": f"<{cid}@example.com>"}
    log.events.append(early)
    log.events.append(
        {
            "id": f"evt-t-{cid}",
            "type": "ticket.opened",
            "at": _t(at + timedelta(minutes=1)),
            "ticket": f"t-{cid}",
            "communication": cid,
        }
    )
    return [Expected("closing-notice", "premature", cid, str(comm["customer"]))]


def reply_without_origin(log: Log, rng: random.Random) -> list[Expected]:
    comm = _pick(log, rng, rng.choice(["advance_notice", "closing"]), "reply-routing")
    if comm is None:
        return []
    rid = f"reply-{comm['communication']}"
    log.events.append(
        {
            "id": f"evt-{rid}",
            "type": "reply.received",
            "at": _t(_at(comm) + timedelta(hours=2)),
            "reply": rid,
            "customer": comm["customer"],
            "in_reply_to": comm["communication"],
            "from": comm["to"][0],
            "to": ["someone.else@example.com"],
        }
    )  # type: ignore[index]
    return [Expected("reply-routing", "origin-missing", rid, str(comm["customer"]))]


MUTATIONS: dict[str, Mutation] = {
    "drop-advance-notice": _drop("advance_notice", "advance-notice"),
    "late-advance-notice": late_advance_notice,
    "reminder-outside-tolerance": reminder_outside_tolerance,
    "drop-start-reminder": _drop("start_reminder", "start-reminder"),
    "drop-closing": _drop("closing", "closing-notice", no_updates=True),
    "premature-closing": premature_closing,
    "drop-extension-notice": _drop("extension", "extension-notice", no_updates=True),
    "drop-emergency-notice": _drop("emergency", "emergency-notice", needs_stable=False),
    "drop-incident-notice": _drop("incident", "incident-notice", needs_stable=False),
    "drop-release-notice": _drop("release", "release-notice", needs_stable=False),
    "wrong-sender": wrong_sender,
    "drop-ticket": drop_ticket,
    "delay-ticket": delay_ticket,
    "drop-stated-impact": drop_stated_impact,
    "reply-without-origin": reply_without_origin,
}


def add_replies(log: Log, rng: random.Random, share: float = 0.05) -> None:
    """Well-routed customer replies to some communications (realism, no finding)."""
    for comm in [e for e in log.events if e["type"] == "communication.sent"]:
        if rng.random() < share and comm["communication"] not in log.touched:
            rid = f"reply-ok-{comm['communication']}"
            log.events.append(
                {
                    "id": f"evt-{rid}",
                    "type": "reply.received",
                    "at": _t(_at(comm) + timedelta(hours=3)),
                    "reply": rid,
                    "customer": comm["customer"],
                    "in_reply_to": comm["communication"],
                    "from": comm["to"][0],
                    "to": [comm["from"]],
                }
            )  # type: ignore[index]


def waive(log: Log, expected: list[Expected], rng: random.Random, share: float) -> list[Expected]:
    """Grant a waiver (after the fact) for a share of the seeded violations."""
    out = []
    last = max(_at(e) for e in log.events)
    for n, exp in enumerate(expected):
        if rng.random() < share:
            log.events.append(
                {
                    "id": f"evt-waiver-{n}",
                    "type": "waiver.granted",
                    "at": _t(last + timedelta(minutes=1)),
                    "waiver": f"wv-{n}",
                    "rule": exp.rule,
                    "subject": exp.subject,
                    "customer": exp.customer,
                    "reason": "customer agreed to the short notice by phone",
                    "approved_by": "cdm@example.com",
                }
            )
            out.append(Expected(exp.rule, exp.problem, exp.subject, exp.customer, "waived"))
        else:
            out.append(exp)
    return out


def seed_violations(
    events: Sequence[dict[str, object]],
    seed: int,
    per_mutation: int = 1,
    names: Sequence[str] | None = None,
    waiver_share: float = 0.0,
    reply_share: float = 0.0,
) -> tuple[list[dict[str, object]], list[Expected]]:
    """Apply each mutation `per_mutation` times; the mutated log (time-ordered) and the expected findings."""
    rng = random.Random(seed)
    log = Log([dict(e) for e in events])
    expected: list[Expected] = []
    for name in names or sorted(MUTATIONS):
        for _ in range(per_mutation):
            expected.extend(MUTATIONS[name](log, rng))
    add_replies(log, rng, reply_share)
    expected = waive(log, expected, rng, waiver_share)
    ordered = sorted(log.events, key=lambda e: str(e["at"]))
    return ordered, sorted(expected, key=Expected.key)
