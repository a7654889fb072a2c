"""What must be sent now: the policy's pending obligations turned into drafts (and alerts for people)."""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from forewarn.calendar import format_local
from forewarn.engine.alerts import Alert
from forewarn.engine.draft import Draft, Invitation
from forewarn.engine.published import Snapshot, due_or_upcoming, json_entry
from forewarn.events import CustomerUpserted
from forewarn.events.models import COMMUNICATION_KINDS
from forewarn.instants import epoch_us, utc
from forewarn.lifecycle.fold import SubjectHistory
from forewarn.lifecycle.model import Obligation, Outcome, Sent
from forewarn.policy.model import Policy, Rule
from forewarn.policy.schema import Check

# A second communication an obligation needs (update-cadence's promised
# update) goes out this long before its deadline, not straight after the first.
UPDATE_LEAD = timedelta(minutes=10)


@dataclass(frozen=True)
class Due:
    """A pending obligation and the instant from which the engine should send for it."""

    outcome: Outcome
    send_from: datetime
    sent_so_far: int  # matching communications already inside its interval
    sender: str | None = None  # From: per the policy
    to: tuple[str, ...] = ()  # the customer's contacts
    late: bool = False  # missed (deadline passed, nothing sent) and still to be sent, late

    @property
    def obligation(self) -> Obligation:
        return self.outcome.obligation

    @property
    def sendable(self) -> bool:
        """Whether the engine sends for it once `send_from` has come: pending, or missed and sent late."""
        return self.late or self.outcome.status == "pending"


@dataclass(frozen=True)
class Plan:
    as_of: datetime
    due: list[Due]
    upcoming: list[Due]
    alerts: list[Alert] = field(default_factory=list)
    cancellations: list[tuple[str, str]] = field(default_factory=list)
    """(maintenance, customer): cancelled after the customer was told of it, not yet told of the
    cancellation. Not a policy obligation: a courtesy, so the invitation leaves their calendar."""

    def next_wake(self) -> datetime | None:
        """When the next upcoming obligation becomes due."""
        return min((d.send_from for d in self.upcoming), default=None)


class Facts(Protocol):
    """What plans and drafts read about the log as of an instant: the engine's open subjects
    (engine.cache.EngineView), or a whole period's evaluation (forewarn.synth.batch)."""

    as_of: datetime
    policy: Policy

    @property
    def last_pos(self) -> int:
        """The position of the last event at or before the as-of."""
        ...

    def history(self, kind: str, subject: str) -> SubjectHistory | None:
        """The subject's lifecycle as of the as-of."""
        ...

    def customer_at(self, customer: str, pos: int) -> CustomerUpserted | None:
        """The customer's attributes in force at position `pos`."""
        ...

    def sent_about(self, kind: str, subject: str, customer: str, comm_kind: str) -> Sequence[Sent]:
        """The communications of `comm_kind` sent to `customer` about the subject, in send order."""
        ...


def due_of(outcome: Outcome, sent: int, contacts: tuple[str, ...], history: SubjectHistory, policy: Policy) -> Due:
    """A plan entry: a pending obligation, or a missed one (sent at its deadline, a notice is on time; after
    it, late if the policy says so), `sent` fitting communications already in its window."""
    ob = outcome.obligation
    start = max(ob.opened, ob.not_before)
    if sent:  # a further communication (the promised update): late in the interval
        start = max(start, ob.not_after - UPDATE_LEAD)
    late = outcome.status != "pending" and late_sendable(policy, history, ob)
    return Due(outcome, start, sent, policy.sender(history.release_related), contacts, late)


class PlanBasis:
    """What a plan needs, computed once: `at(now)` is then the plan for any `now` at which the evaluation
    is unchanged but for its as-of (see engine.cache).

    `by_subject`: each open subject's entries (pending and missed obligations), subjects in order of
    definition; `overruns`: (end, alert) per maintenance running past its end; `cancellations`: (maintenance,
    customer) told of a maintenance since cancelled and not yet of that. Built from an earlier basis
    (`previous`), the snapshot rows of the entries kept (the same objects) are reused."""

    def __init__(
        self,
        as_of: datetime,
        by_subject: dict[tuple[str, str], list[Due]],
        overruns: list[tuple[datetime, Alert]],
        cancellations: list[tuple[str, str]],
        previous: PlanBasis | None = None,
    ) -> None:
        self.as_of = as_of
        self.by_subject = by_subject
        self.entries = sorted((d for entries in by_subject.values() for d in entries), key=_due_order)
        self.overruns = overruns
        self.missed = missed_alerts(d for entries in by_subject.values() for d in entries)
        self.cancellations = cancellations
        # Each entry's snapshot row by id(entry), made once per entry rather than once per snapshot.
        # An id names one live object: every entry of this basis and of `previous` is alive here.
        self._rows: dict[int, tuple[int, int, str, str]] = {}
        if previous is not None:
            rows = previous._rows
            self._rows = {id(d): rows[id(d)] for d in self.entries if id(d) in rows}

    def snapshot(self, seq: int, horizon: datetime) -> Snapshot:
        """This basis in JSON-ready form, for as-of instants from the evaluation's up to `horizon`
        (see engine.published): what `forewarn plan` shows, from here or from a published copy."""
        columns: tuple[list[Any], ...] = ([], [], [], [], [])
        pending, send_from, not_after, local, texts = columns
        rows = self._rows
        for d in self.entries:
            row = rows.get(id(d))
            if row is None:
                row = rows[id(d)] = _snapshot_row(d)
            pending.append(d.sendable)
            send_from.append(row[0])
            not_after.append(row[1])
            local.append(row[2])
            texts.append(row[3])
        return Snapshot(
            seq,
            epoch_us(self.as_of),
            epoch_us(horizon),
            *columns,
            overruns=[[epoch_us(end), alert.to_json()] for end, alert in self.overruns],
            missed=[alert.to_json() for alert in self.missed],
            cancellations=[{"subject": s, "customer": c} for s, c in self.cancellations],
        )

    def at(self, now: datetime) -> Plan:
        """The plan as of `now`."""
        due: list[Due] = []
        upcoming: list[Due] = []
        for d in self.entries:
            where = due_or_upcoming(d.sendable, d.send_from, d.obligation.not_after, now)
            if where is not None:
                (due if where == "due" else upcoming).append(d)
        overruns = [alert for end, alert in self.overruns if end < now]
        return Plan(now, due, upcoming, overruns + self.missed, list(self.cancellations))


def _snapshot_row(d: Due) -> tuple[int, int, str, str]:
    """An entry's columns in a snapshot: send-from and deadline (epoch us), local deadline, JSON text."""
    ob = d.obligation
    obligation = {
        "rule": ob.rule,
        "subject": ob.subject,
        "customer": ob.customer,
        "kind": ob.kinds[0],
        "from": d.sender,
        "to": list(d.to),
        "not_before": utc(d.send_from),
        "not_after": utc(ob.not_after),
    }
    local = format_local(ob.not_after, ob.timezone)
    return epoch_us(d.send_from), epoch_us(ob.not_after), local, json_entry(obligation)


def cancellation_drafts(facts: Facts, pairs: list[tuple[str, str]]) -> list[Draft]:
    """`other` messages withdrawing the invitation (METHOD:CANCEL) of cancelled maintenances."""
    pos = facts.last_pos
    drafts = []
    for subject, customer in pairs:
        h = facts.history("maintenance", subject)
        attrs = facts.customer_at(customer, pos)
        version = h.versions[-1] if h is not None and h.versions else None
        if h is None or attrs is None or version is None or h.cancelled_at is None:
            continue
        title = str(h.attrs.get("title") or subject)
        invitation = Invitation(
            uid=f"{subject}@forewarn",
            sequence=len(h.versions) + len(h.extension_positions),
            method="CANCEL",
            start=version.start,
            end=version.end,
            summary=title,
        )
        note = {"note": "This maintenance has been cancelled: no work will take place in this window."}
        drafts.append(
            _new_draft(
                facts,
                h,
                customer,
                attrs,
                "other",
                f"cancel/{subject}/{customer}",
                {},
                note,
                invitation,
                (f"cancelled/maintenance:{subject}/{customer}",),
            )
        )
    return drafts


def _due_order(d: Due) -> tuple[datetime, datetime, str, str, str]:
    ob = d.obligation
    return (d.send_from, ob.not_after, ob.rule, ob.subject, ob.customer)


def overrun_candidates(histories: Mapping[tuple[str, str], SubjectHistory]) -> list[tuple[datetime, Alert]]:
    """(end, alert) per maintenance still running with no extension since its end was set:
    an overrun once the end has passed."""
    out: list[tuple[datetime, Alert]] = []
    for (kind, subject), h in sorted(histories.items()):
        if kind != "maintenance" or h.cancelled_at or h.completed_at or not h.ends:
            continue
        end = h.ends[-1][0]
        last_end_pos = h.end_positions[-1]
        extended_since = bool(h.extension_positions) and h.extension_positions[-1] > last_end_pos
        if not extended_since:
            out.append(
                (
                    end,
                    Alert(
                        "extension-notice",
                        subject,
                        "overrun",
                        f"{subject} passed its end {end:%Y-%m-%d %H:%M}Z with no completion or extension recorded: "
                        "record a maintenance.extended with the reason (and a new end or next update time), "
                        "or a maintenance.completed",
                    ),
                )
            )
    return out


def sends_late(facts: Facts, ob: Obligation, at: datetime | None = None) -> bool:
    """Whether a missed obligation is still sent, late (policy.md, "The engine and deadlines already
    passed"): its rule says `late: send` (the default) and knows a `late` problem; its subject was not
    cancelled and its window version not superseded, for then the customer is told of what replaced it
    instead; and, but for a closing notice, its maintenance is not completed: announcing work that is
    over tells nobody anything (a person is alerted instead). All as of `at` (default: the evaluation's
    as-of)."""
    history = facts.history(ob.subject_kind, ob.subject)
    return history is not None and late_sendable(facts.policy, history, ob, at)


def late_sendable(policy: Policy, history: SubjectHistory, ob: Obligation, at: datetime | None = None) -> bool:
    """sends_late, given the obligation's subject's history."""
    rule = policy.by_id.get(ob.rule)
    if rule is None or rule.late != "send" or "late" not in rule.spec.problems:
        return False  # a rule that knows no `late` (update-cadence) stays missing however late one sends
    if history.cancelled_at is not None and (at is None or history.cancelled_at <= at):
        return False
    completed = history.completed_at
    if completed is not None and (at is None or completed <= at) and "closing" not in ob.kinds:
        return False
    number = ob.moment.attrs.get("version")
    if isinstance(number, int) and 0 < number <= len(history.versions):
        superseded = history.versions[number - 1].superseded_at
        if superseded is not None and (at is None or superseded <= at):
            return False
    return True


def missed_alerts(entries: Iterable[Due]) -> list[Alert]:
    """The obligations among a plan's entries (pending or missed) past their deadline with nothing sent."""
    out: list[Alert] = []
    for d in entries:
        outcome = d.outcome
        if outcome.status == "violated" and outcome.problem == "missing":
            ob = outcome.obligation
            then = (
                "the engine sends it late as soon as it can (the audit reports it late): tell the customer why, "
                "or record a waiver with the reason"
                if d.late
                else "contact the customer and record a waiver with the reason"
            )
            out.append(
                Alert(
                    ob.rule,
                    ob.subject,
                    "missed",
                    f"{ob.rule}: nothing was sent to {ob.customer} for {ob.subject} by {ob.not_after:%Y-%m-%d %H:%M}Z; "
                    + then,
                    customer=ob.customer,
                )
            )
    return out


# -- drafts -----------------------------------------------------------------------------


def obligation_key(ob: Obligation) -> str:
    """A stable name for one obligation: rule/subject/customer/trigger event/opened/deadline (two
    extensions recorded at the same instant are two obligations, and get two communications)."""
    return (
        f"{ob.rule}/{ob.subject_kind}:{ob.subject}/{ob.customer}/{ob.moment.event_id}"
        f"/{ob.opened:%Y%m%dT%H%M%S}/{ob.not_after:%Y%m%dT%H%M%S}"
    )


def drafts_for(facts: Facts, due: list[Due]) -> list[Draft]:
    """Drafts for what is due now, stating the subject as it stands now."""
    return drafts_at(facts, due, facts.last_pos, facts.as_of)


def drafts_at(facts: Facts, due: list[Due], pos: int, now: datetime) -> list[Draft]:
    """One draft per (subject, customer, kind) that covers the due obligations, stating the
    subject as of position `pos`; a draft covers at most one obligation per rule (a
    communication fulfils one per rule)."""
    groups: dict[tuple[str, str, str], list[tuple[str, set[str], list[Due]]]] = defaultdict(list)
    for d in due:
        ob = d.obligation
        slots = groups[(ob.subject_kind, ob.subject, ob.customer)]
        for kind, rules, members in slots:
            if kind in ob.kinds and ob.rule not in rules:
                rules.add(ob.rule)
                members.append(d)
                break
        else:
            slots.append((ob.kinds[0], {ob.rule}, [d]))
    drafts = []
    for (subject_kind, subject, customer), slots in groups.items():
        history = facts.history(subject_kind, subject)
        assert history is not None
        for kind, _rules, members in slots:
            drafts.append(_draft(facts, history, customer, kind, members, pos, now))
    return drafts


def _draft(
    facts: Facts,
    history: SubjectHistory,
    customer: str,
    kind: str,
    members: list[Due],
    pos: int,
    now: datetime,
) -> Draft:
    attrs = facts.customer_at(customer, pos)
    assert attrs is not None
    primary = members[0]
    required = stated_requirements(facts.policy, kind, history, pos, attrs)
    states, context, invitation = _content(history, kind, pos, now, required)
    context.update(_what_changed(facts, history, customer, kind, pos))
    reasons = tuple(obligation_key(d.obligation) for d in members)
    seed = f"{obligation_key(primary.obligation)}#{primary.sent_so_far}"
    draft = _new_draft(facts, history, customer, attrs, kind, seed, states, context, invitation, reasons)
    late = tuple(obligation_key(d.obligation) for d in members if d.obligation.not_after < now)
    return replace(draft, late=late) if late else draft


def _new_draft(
    facts: Facts,
    history: SubjectHistory,
    customer: str,
    attrs: CustomerUpserted,
    kind: str,
    seed: str,
    states: dict[str, object],
    context: dict[str, object],
    invitation: Invitation | None,
    reasons: tuple[str, ...],
) -> Draft:
    """A draft to one customer about `history`; its ids derive from `seed` (stable across retries)."""
    communication = "fw-" + hashlib.sha256(seed.encode()).hexdigest()[:20]
    sender = facts.policy.sender(history.release_related) or "enterprise-support@example.com"
    thread = first_message_id(facts, history, customer)
    if thread is not None:
        context = {**context, "thread": thread}
    return Draft(
        communication=communication,
        message_id=f"<{communication}@{sender.rsplit('@', 1)[-1]}>",
        kind=kind,
        subject_kind=history.kind,
        subject=history.id,
        subject_title=str(history.attrs.get("title") or history.id),
        customer=customer,
        customer_name=attrs.name,
        timezone=attrs.timezone,
        sender=sender,
        to=tuple(attrs.contacts),
        support_contact=facts.policy.sender(False) or sender,
        states=states,
        context=context,
        invitation=invitation,
        reasons=reasons,
        policy_digest=facts.policy.digest,
    )


def first_message_id(facts: Facts, history: SubjectHistory, customer: str) -> str | None:
    """The Message-ID of the first message to `customer` about the subject (later ones are replies to it:
    the customer's mail client shows them as one thread)."""
    first = None
    for kind in COMMUNICATION_KINDS:
        for sent in facts.sent_about(history.kind, history.id, customer, kind):  # in send order
            if sent.comm.message_id:
                if first is None or sent.pos < first.pos:
                    first = sent
                break
    return first.comm.message_id if first is not None else None


def _what_changed(facts: Facts, history: SubjectHistory, customer: str, kind: str, pos: int) -> dict[str, object]:
    """What a message says changed, as context for its text (never a decision input): a reschedule's
    previous window; for an extension message after one was already sent about the same extension (the
    update an extension promised), when that one went out and what it stated."""
    out: dict[str, object] = {}
    if history.kind != "maintenance":
        return out
    version = history.version_at(pos)
    if kind in ("advance_notice", "emergency") and version is not None and version.number > 1:
        previous = history.versions[version.number - 2]
        out.update(previous_window_start=previous.start, previous_window_end=previous.end)
    if kind == "extension":
        i = bisect_right(history.extension_positions, pos)
        since = history.extension_positions[i - 1] if i else None
        earlier = [
            s for s in facts.sent_about("maintenance", history.id, customer, "extension")
            if since is not None and s.pos > since
        ]
        if earlier:
            last = earlier[-1].comm
            out["update_since"] = last.at
            stated = last.states
            if stated is not None and stated.end is not None:
                out["update_previous_end"] = stated.end
            if stated is not None and stated.next_update_by is not None:
                out["update_previous_next_update_by"] = stated.next_update_by
    return out


def applies(
    rule: Rule, check: Check, kind: str, history: SubjectHistory | None, pos: int, customer: object | None
) -> bool:
    """Whether `check` of `rule` applies to a communication of `kind` about the subject of `history`, sent at
    `pos` to a customer with the attributes `customer` (in force then): its kinds; its subject kind and subject
    terms on the subject's attributes and labels then; its customer terms. The conditions are the condition
    table's (forewarn.policy.conditions), as the audit's queries read them (forewarn.relational.checks)."""
    if check.kinds != "all" and (check.kinds is None or kind not in check.kinds):
        return False
    condition = rule.check_condition(check)
    if condition.on_customer and not condition.holds_for_customer(customer):
        return False
    if check.about is None:
        return True
    if history is None or history.kind != check.about:
        return False
    return not condition.on_subject or condition.holds_for_subject(history.attrs_at(pos))


def stated_requirements(
    policy: Policy, kind: str, history: SubjectHistory | None, pos: int, customer: object | None
) -> frozenset[str]:
    """The `states-*` requirements the policy's checks make of a communication of `kind` about the subject of
    `history`, sent at `pos` to a customer with the attributes `customer`: what such a message must state
    (the engine's drafts state exactly these, so what it sends passes the checks)."""
    return frozenset(
        req
        for rule in policy.rules
        for check in rule.spec.checks
        if not check.replies and applies(rule, check, kind, history, pos, customer)
        for req, _args in check.requirements()
        if req.startswith("states-")
    )


RESTATED: dict[str, frozenset[str]] = {"start_reminder": frozenset({"states-window", "states-impact"})}
"""What a message restates for its reader though no rule requires it: a start reminder repeats the window."""


def _content(
    history: SubjectHistory, kind: str, pos: int, now: datetime, required: frozenset[str] = frozenset()
) -> tuple[dict, dict, Invitation | None]:
    """What a message of `kind` states about the subject now: what the policy's checks require of it
    (`required`: stated_requirements, e.g. the notice-content rule), and what RESTATED adds."""
    states: dict[str, object] = {}
    context: dict[str, object] = dict(history.context)
    invitation = None
    required = required | RESTATED.get(kind, frozenset())
    if history.kind == "maintenance":
        version = history.version_at(pos)
        impact = str(history.attrs.get("impact"))
        summary = history.context.get("impact_summary") or (
            "No customer impact expected" if impact == "none" else impact
        )
        if version is not None and "states-window" in required:
            states.update(window_start=version.start, window_end=version.end)
        if "states-impact" in required:
            states["impact"] = summary
        ext = history.latest_extension(pos)
        if ext is not None:
            if "states-reason" in required:
                states["reason"] = ext.reason
            if required & {"states-next-step", "states-end-in-force"}:
                if ext.end is not None:
                    states["end"] = history.end_in_force_at(pos)
                if ext.next_update_by is not None:
                    states["next_update_by"] = ext.next_update_by
        if version is not None and kind in ("advance_notice", "emergency", "extension", "start_reminder"):
            end = history.end_in_force_at(pos) or version.end
            if end <= version.start:  # an extension "ending" before the window began: keep the window's end
                end = version.end
            invitation = Invitation(
                uid=f"{history.id}@forewarn",
                sequence=version.number - 1 + bisect_right(history.extension_positions, pos),
                method="REQUEST",
                start=version.start,
                end=end,
                summary=str(history.attrs.get("title") or history.id),
            )
    return states, context, invitation
