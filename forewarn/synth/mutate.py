"""Seeded violations: mutate an engine-made log so that exactly the expected findings arise."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

SUPPORT = "enterprise-support@example.com"
RELEASES = "teams-releases@example.com"


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
    """A mutable view of a log: lifecycle facts per maintenance, communications and their tickets.

    Mutations change communications, tickets and replies only; lifecycle facts are indexed once.
    """

    events: list[dict[str, object]]
    touched: set[str] = field(default_factory=set)  # communication ids already mutated
    subjects_touched: set[tuple[str, str, str]] = field(default_factory=set)  # (subject, customer, rule)
    _lifecycles: dict[str, list[dict[str, object]]] | None = field(default=None, repr=False)
    _upserts: dict[str, list[tuple[datetime, str]]] | None = field(default=None, repr=False)

    def comms(self, kind: str) -> list[dict[str, object]]:
        return [
            e
            for e in self.events
            if e["type"] == "communication.sent" and e["kind"] == kind and e["communication"] not in self.touched
        ]

    def ticket_of(self, comm: str) -> dict[str, object] | None:
        return next((e for e in self.events if e["type"] == "ticket.opened" and e["communication"] == comm), None)

    def lifecycle(self, maintenance: str) -> list[dict[str, object]]:
        """The maintenance's lifecycle events, in log order."""
        if self._lifecycles is None:
            self._lifecycles = {}
            for e in self.events:
                if str(e["type"]).startswith("maintenance.") and "maintenance" in e:
                    self._lifecycles.setdefault(str(e["maintenance"]), []).append(e)
        return self._lifecycles.get(maintenance, [])

    def stable(self, maintenance: str) -> bool:
        """Never rescheduled or cancelled: its notices are unambiguous targets."""
        return not any(
            e["type"] in ("maintenance.rescheduled", "maintenance.cancelled") for e in self.lifecycle(maintenance)
        )

    def promised_updates(self, maintenance: str) -> bool:
        return any(e["type"] == "maintenance.extended" and "next_update_by" in e for e in self.lifecycle(maintenance))

    def extensions(self, maintenance: str) -> list[dict[str, object]]:
        return [e for e in self.lifecycle(maintenance) if e["type"] == "maintenance.extended"]

    def defined_at(self, kind: str, subject: str) -> datetime | None:
        """When the incident / release / maintenance was declared or scheduled."""
        types = {
            "incident": "incident.declared",
            "release": "release.scheduled",
            "maintenance": "maintenance.scheduled",
        }
        event = next((e for e in self.events if e["type"] == types[kind] and e.get(kind) == subject), None)
        return _at(event) if event is not None else None

    def closed_at(self, maintenance: str) -> datetime | None:
        """The first instant the maintenance was completed and healthy."""
        completed = False
        for e in self.lifecycle(maintenance):
            if e["type"] == "maintenance.completed":
                completed = True
                if e["healthy"]:
                    return _at(e)
            elif e["type"] == "maintenance.healthy" and completed:
                return _at(e)
        return None

    def enterprise_at(self, customer: str, t: datetime) -> bool:
        """Whether the customer's latest upsert at or before `t` puts it on the enterprise plan."""
        if self._upserts is None:  # mutations never change customers: index them once
            self._upserts = {}
            for e in self.events:
                if e["type"] == "customer.upserted":
                    self._upserts.setdefault(str(e["customer"]), []).append((_at(e), str(e["plan"])))
        plan = None
        for at, p in self._upserts.get(customer, ()):
            if at <= t:
                plan = p
        return plan == "enterprise"

    def remove(self, *events: dict[str, object] | None) -> None:
        ids = {id(e) for e in events if e is not None}
        self.events = [e for e in self.events if id(e) not in ids]

    def move(self, comm: dict[str, object], at: datetime) -> None:
        """Send the communication at `at` instead; its ticket follows a minute later."""
        comm["at"] = _t(at)
        ticket = self.ticket_of(str(comm["communication"]))
        if ticket is not None:
            ticket["at"] = _t(at + timedelta(minutes=1))

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


PER_COMMUNICATION = frozenset({"sender-address", "ticket-opened", "notice-content", "closing-notice", "reply-routing"})
"""Rules whose findings about a communication need its customer on the enterprise plan when it was sent."""


def _pick(
    log: Log, rng: random.Random, kind: str, rule: str, ok: Callable[[dict[str, object]], bool] = lambda c: True
) -> dict[str, object] | None:
    """A random unclaimed communication of `kind` that `ok` accepts, claimed for `rule`."""
    candidates = log.comms(kind)
    rng.shuffle(candidates)
    # Tested lazily, in random order: the first acceptable one is taken (the same choice as filtering
    # all first, without testing every communication of a large log).
    fits = (
        c
        for c in candidates
        if ok(c) and (rule not in PER_COMMUNICATION or log.enterprise_at(str(c["customer"]), _at(c)))
    )
    return next((c for c in fits if log.claim(c, rule)), None)


def _drop(kind: str, rule: str, needs_stable: bool = True, no_updates: bool = False) -> Mutation:
    """Drop one communication of `kind` (and its ticket): `rule` finds it missing."""

    def mutate(log: Log, rng: random.Random) -> list[Expected]:
        def ok(c: dict[str, object]) -> bool:
            m = c.get("maintenance")
            if m is None:
                return True
            if kind == "emergency" and _cancelled(log, str(m)):
                return False  # cancelled within the hour voids the emergency notice
            return (not needs_stable or log.stable(str(m))) and not (no_updates and log.promised_updates(str(m)))

        comm = _pick(log, rng, kind, rule, ok)
        if comm is None:
            return []
        log.remove(comm, log.ticket_of(str(comm["communication"])))
        return [Expected(rule, "missing", _subject(comm), str(comm["customer"]))]

    mutate.__name__ = f"drop-{kind}"
    return mutate


def _cancelled(log: Log, maintenance: str) -> bool:
    return any(e["type"] == "maintenance.cancelled" for e in log.lifecycle(maintenance))


def _single_extension(log: Log, maintenance: str) -> bool:
    """Exactly one extension and no promised update: its notice is the only one that can fit."""
    return len(log.extensions(maintenance)) == 1 and not log.promised_updates(maintenance)


def _move_to(
    kind: str,
    rule: str,
    problem: str,
    when: Callable[[Log, dict[str, object]], datetime | None],
    ok: Callable[[Log, dict[str, object]], bool] = lambda log, c: True,
) -> Mutation:
    """Send one communication of `kind` at `when(log, comm)` instead: `rule` finds it `problem`."""

    def mutate(log: Log, rng: random.Random) -> list[Expected]:
        comm = _pick(log, rng, kind, rule, lambda c: ok(log, c) and when(log, c) is not None)
        if comm is None:
            return []
        log.move(comm, when(log, comm))  # type: ignore[arg-type]
        return [Expected(rule, problem, _subject(comm), str(comm["customer"]))]

    mutate.__name__ = f"{problem}-{kind}"
    return mutate


def _window_start(c: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(c["states"]["window_start"]).replace("Z", "+00:00"))  # type: ignore[index]


def _stable(log: Log, c: dict[str, object]) -> bool:
    return log.stable(str(c["maintenance"]))


def late_advance_notice(log: Log, rng: random.Random) -> list[Expected]:
    """Send the advance notice one hour before the window starts (well past one business day)."""
    return _move_to(
        "advance_notice", "advance-notice", "late", lambda _log, c: _window_start(c) - timedelta(hours=1), _stable
    )(log, rng)


def reminder_outside_tolerance(log: Log, rng: random.Random) -> list[Expected]:
    """Send the start reminder 30 minutes after the window started (15 allowed)."""
    return _move_to(
        "start_reminder", "start-reminder", "late", lambda _log, c: _at(c) + timedelta(minutes=45), _stable
    )(log, rng)


def early_start_reminder(log: Log, rng: random.Random) -> list[Expected]:
    """Send the start reminder 35 minutes before the window starts (15 allowed), after it was scheduled."""

    def when(log: Log, c: dict[str, object]) -> datetime | None:
        at = _window_start(c) - timedelta(minutes=35)
        scheduled = log.defined_at("maintenance", str(c["maintenance"]))
        return at if scheduled is not None and scheduled <= at else None

    return _move_to("start_reminder", "start-reminder", "early", when, _stable)(log, rng)


def _after_declared(kind: str, minutes: int) -> Callable[[Log, dict[str, object]], datetime | None]:
    def when(log: Log, c: dict[str, object]) -> datetime | None:
        declared = log.defined_at(kind, str(c[kind]))
        return declared + timedelta(minutes=minutes) if declared is not None else None

    return when


def _late_closing_time(log: Log, c: dict[str, object]) -> datetime | None:
    closed = log.closed_at(str(c["maintenance"]))
    return closed + timedelta(minutes=35) if closed is not None else None


def _late_extension_time(log: Log, c: dict[str, object]) -> datetime | None:
    extensions = log.extensions(str(c["maintenance"]))
    return _at(extensions[0]) + timedelta(minutes=35) if len(extensions) == 1 else None


def _late_release_time(log: Log, c: dict[str, object]) -> datetime | None:
    release = next((e for e in log.events if e["type"] == "release.scheduled" and e["release"] == c["release"]), None)
    if release is None:
        return None
    return datetime.fromisoformat(str(release["release_at"]).replace("Z", "+00:00")) - timedelta(hours=1)


def wrong_sender(log: Log, rng: random.Random) -> list[Expected]:
    """Send one communication from an address that is not the policy's (noreply, or the other official one)."""
    kind = rng.choice(["advance_notice", "closing", "start_reminder", "incident", "release", "extension", "emergency"])
    comm = _pick(log, rng, kind, "sender-address")
    if comm is None:
        return []
    official = {SUPPORT, RELEASES}
    comm["from"] = rng.choice(["noreply@example.com", *sorted(official - {str(comm["from"])})])
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


def _restate(
    kinds: Sequence[str],
    problem: str,
    applies: Callable[[dict[str, object]], bool],
    change: Callable[[dict[str, object]], dict[str, object]],
) -> Mutation:
    """Change what one communication states: notice-content finds `problem`."""

    def mutate(log: Log, rng: random.Random) -> list[Expected]:
        kind = rng.choice(list(kinds))

        def ok(c: dict[str, object]) -> bool:
            return isinstance(c.get("states"), dict) and applies(c["states"])  # type: ignore[arg-type]

        comm = _pick(log, rng, kind, "notice-content", ok)
        if comm is None:
            return []
        comm["states"] = change(dict(comm["states"]))  # type: ignore[call-overload]
        return [Expected("notice-content", problem, str(comm["communication"]), str(comm["customer"]))]

    mutate.__name__ = f"restate-{problem}"
    return mutate


def _without(*keys: str) -> Callable[[dict[str, object]], dict[str, object]]:
    return lambda states: {k: v for k, v in states.items() if k not in keys}


def _shifted(key: str) -> Callable[[dict[str, object]], dict[str, object]]:
    def change(states: dict[str, object]) -> dict[str, object]:
        t = datetime.fromisoformat(str(states[key]).replace("Z", "+00:00"))
        return {**states, key: _t(t + timedelta(hours=1))}

    return change


def drop_stated_impact(log: Log, rng: random.Random) -> list[Expected]:
    return _restate(["advance_notice"], "impact-missing", lambda st: "impact" in st, _without("impact"))(log, rng)


def premature_closing(log: Log, rng: random.Random) -> list[Expected]:
    """An extra closing sent while the work was under way or not yet healthy (before the maintenance closed)."""

    def when(c: dict[str, object]) -> datetime | None:
        m = str(c["maintenance"])
        closed = log.closed_at(m)
        done = [e for e in log.lifecycle(m) if e["type"] in ("maintenance.completed", "maintenance.started")]
        if closed is None or not done:
            return None
        at = _at(done[-1]) + timedelta(minutes=1)
        return at if at < closed else None

    comm = _pick(
        log,
        rng,
        "closing",
        "closing-notice",
        lambda c: when(c) is not None and not log.promised_updates(str(c["maintenance"])),
    )
    if comm is None:
        return []
    at = when(comm)
    assert at is not None
    cid = f"{comm['communication']}-early"
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
    return [Expected("closing-notice", "premature", str(comm["maintenance"]), str(comm["customer"]))]


def reply_without_origin(log: Log, rng: random.Random) -> list[Expected]:
    """A customer reply (two hours later) that leaves out the address the communication came from."""

    def ok(c: dict[str, object]) -> bool:
        return log.enterprise_at(str(c["customer"]), _at(c) + timedelta(hours=2))

    comm = _pick(log, rng, rng.choice(["advance_notice", "closing"]), "reply-routing", ok)
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
            "from": comm["to"][0],  # type: ignore[index]
            "to": ["someone.else@example.com"],
        }
    )
    return [Expected("reply-routing", "origin-missing", rid, str(comm["customer"]))]


ALL_MUTATIONS: dict[str, Mutation] = {
    "drop-advance-notice": _drop("advance_notice", "advance-notice"),
    "late-advance-notice": late_advance_notice,
    "reminder-outside-tolerance": reminder_outside_tolerance,
    "early-start-reminder": early_start_reminder,
    "drop-start-reminder": _drop("start_reminder", "start-reminder"),
    "drop-closing": _drop("closing", "closing-notice", no_updates=True),
    "late-closing": _move_to(
        "closing",
        "closing-notice",
        "late",
        _late_closing_time,
        lambda log, c: not log.promised_updates(str(c["maintenance"])),
    ),
    "premature-closing": premature_closing,
    "drop-extension-notice": _drop("extension", "extension-notice", no_updates=True),
    "late-extension-notice": _move_to(
        "extension",
        "extension-notice",
        "late",
        _late_extension_time,
        lambda log, c: _single_extension(log, str(c["maintenance"])),
    ),
    "drop-emergency-notice": _drop("emergency", "emergency-notice", needs_stable=False),
    "late-emergency-notice": _move_to(
        "emergency", "emergency-notice", "late", _after_declared("maintenance", 65), _stable
    ),
    "drop-incident-notice": _drop("incident", "incident-notice", needs_stable=False),
    "late-incident-notice": _move_to("incident", "incident-notice", "late", _after_declared("incident", 65)),
    "drop-release-notice": _drop("release", "release-notice", needs_stable=False),
    "late-release-notice": _move_to("release", "release-notice", "late", _late_release_time),
    "wrong-sender": wrong_sender,
    "drop-ticket": drop_ticket,
    "delay-ticket": delay_ticket,
    "drop-stated-impact": drop_stated_impact,
    "drop-stated-window": _restate(
        ["advance_notice", "emergency"], "window-missing", lambda st: "window_start" in st, _without("window_start")
    ),
    "wrong-stated-window": _restate(
        ["advance_notice", "emergency"], "window-mismatch", lambda st: "window_start" in st, _shifted("window_start")
    ),
    "drop-stated-reason": _restate(["extension"], "reason-missing", lambda st: "reason" in st, _without("reason")),
    "drop-stated-next-step": _restate(
        ["extension"], "next-step-missing", lambda st: True, _without("end", "next_update_by")
    ),
    "wrong-stated-end": _restate(["extension"], "end-mismatch", lambda st: "end" in st, _shifted("end")),
    "reply-without-origin": reply_without_origin,
}


MUTATIONS: dict[str, Mutation] = {
    name: ALL_MUTATIONS[name]
    for name in (
        "delay-ticket",
        "drop-advance-notice",
        "drop-closing",
        "drop-emergency-notice",
        "drop-extension-notice",
        "drop-incident-notice",
        "drop-release-notice",
        "drop-stated-impact",
        "drop-start-reminder",
        "drop-ticket",
        "late-advance-notice",
        "premature-closing",
        "reminder-outside-tolerance",
        "reply-without-origin",
        "wrong-sender",
    )
}
"""The mutations `forewarn synth` seeds by default (the property tests draw from ALL_MUTATIONS)."""


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
            expected.extend(ALL_MUTATIONS[name](log, rng))
    add_replies(log, rng, reply_share)
    expected = waive(log, expected, rng, waiver_share)
    ordered = sorted(log.events, key=lambda e: str(e["at"]))
    return ordered, sorted(expected, key=Expected.key)
