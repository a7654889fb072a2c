"""The per-object evaluation's per-communication and per-reply checks (tests/oracle.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from forewarn.evaluate.index import LogIndex
from forewarn.events.models import COMMUNICATION_KINDS
from forewarn.lifecycle.fold import SubjectHistory
from forewarn.lifecycle.model import Sent, Violation
from forewarn.policy.conditions import Condition
from forewarn.policy.model import Policy, Rule
from forewarn.policy.schema import Check
from forewarn.relational.violations import humanize


@dataclass(frozen=True)
class CheckContext:
    """What every check may look at."""

    index: LogIndex
    histories: Mapping[tuple[str, str], SubjectHistory]
    as_of: datetime


def _fmt(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t is not None else "nothing"


Requirement = Callable[..., Violation | None]
Compiled = list[tuple[Rule, Check, Condition, list[tuple[Requirement, Mapping[str, object]]]]]


def compile_checks(policy: Policy) -> dict[str, Compiled]:
    """For each communication kind, the checks that may apply and their requirement functions."""
    out: dict[str, Compiled] = {k: [] for k in COMMUNICATION_KINDS}
    for rule in policy.rules:
        for check in rule.spec.checks:
            if check.replies:
                continue
            reqs = [
                (_COMM_REQUIREMENTS[req], {k: rule.resolve(v) for k, v in args.items()})
                for req, args in check.requirements()
            ]
            for kind in COMMUNICATION_KINDS:
                if check.kinds == "all" or (check.kinds is not None and kind in check.kinds):
                    out[kind].append((rule, check, rule.check_condition(check), reqs))
    return out


def run_checks(policy: Policy, ctx: CheckContext) -> list[Violation]:
    """Every violation of the policy's per-communication and per-reply checks."""
    out: list[Violation] = []
    by_kind = compile_checks(policy)
    reply_checks = [(r, c) for r in policy.rules for c in r.spec.checks if c.replies]
    covered_at = ctx.index.covered_at
    covers = policy.covers
    # whether a check's subject terms hold, per (check, subject, labels version): fixed within one
    about: dict[tuple[int, tuple[str, str] | None, int], bool] = {}
    for sent in ctx.index.sent:
        comm = sent.comm
        customer = covered_at(comm.customer, sent.pos, covers)
        if customer is None:
            continue  # out of the policy's scope
        subject = sent.subject
        history = ctx.histories.get(subject) if subject else None
        for rule, check, condition, reqs in by_kind[comm.kind]:
            if check.about is not None:
                key = (id(check), subject, history.labels_version_at(sent.pos) if history else 0)
                fits = about.get(key)
                if fits is None:
                    fits = about[key] = _about(check, condition, subject, history, sent.pos)
                if not fits:
                    continue
            if condition.on_customer and not condition.holds_for_customer(customer):
                continue
            for fn, args in reqs:
                found = fn(rule, args, sent, history, ctx)
                if found is not None:
                    out.append(found)
    for pos, reply in ctx.index.replies:
        customer = covered_at(reply.customer, pos, covers)
        if customer is None:
            continue
        for rule, check in reply_checks:
            if not rule.check_condition(check).holds_for_customer(customer):
                continue
            for req, _args in check.requirements():
                if req == "reply-includes-origin" and (found := _reply_origin(rule, reply, ctx)) is not None:
                    out.append(found)
    return out


def _about(
    check: Check, condition: Condition, subject: tuple[str, str] | None, history: SubjectHistory | None, pos: int
) -> bool:
    """Whether the communication's subject is of the check's kind and its subject terms hold at `pos`."""
    if subject is None or subject[0] != check.about or history is None:
        return False
    return not condition.on_subject or condition.holds_for_subject(history.attrs_at(pos))


def _violation(
    rule: Rule, problem: str, item: Sent, due: datetime, evidence: tuple[str, ...], *, of: str | None = None,
    **fields: str,
) -> Violation:
    """The violation of a per-communication check: its subject is the communication, or `of`."""
    comm = item.comm
    subject = item.subject
    base = {
        "communication": comm.communication,
        "customer": comm.customer,
        "kind": comm.kind.replace("_", " "),
        "subject": subject[1] if subject else comm.communication,
    }
    return Violation(
        rule=rule.id,
        problem=problem,
        subject=comm.communication if of is None else of,
        customer=comm.customer,
        communication=comm.communication,
        due=due,
        sent=comm.at,
        fields={**base, **fields},
        evidence=evidence,
    )


Found = Violation | None
"""A requirement's verdict on one communication: its violation, or None."""


def _states(sent: Sent, name: str) -> object:
    states = sent.comm.states
    return getattr(states, name, None) if states is not None else None


def _filled(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _evidence(sent: Sent, history: SubjectHistory | None, *more: str | None) -> tuple[str, ...]:
    ids = [history.defined_event] if history else []
    ids.append(sent.comm.id)
    ids.extend(m for m in more if m)
    return tuple(dict.fromkeys(ids))


def _states_window(rule: Rule, _a: Mapping, sent: Sent, history: SubjectHistory | None, _c: CheckContext) -> Found:
    start, end = _states(sent, "window_start"), _states(sent, "window_end")
    if history is None:
        return
    version = history.version_at(sent.pos)
    ev = _evidence(sent, history, version.event_id if version else None)
    if start is None or end is None:
        return _violation(rule, "window-missing", sent, sent.comm.at, ev)
    elif version is not None and (start, end) != (version.start, version.end):
        return _violation(
            rule,
            "window-mismatch",
            sent,
            sent.comm.at,
            ev,
            stated=f"{_fmt(start)} to {_fmt(end)}",  # type: ignore[arg-type]
            expected=f"{_fmt(version.start)} to {_fmt(version.end)}",
        )


def _states_impact(rule: Rule, _a: Mapping, sent: Sent, history: SubjectHistory | None, _c: CheckContext) -> Found:
    if not _filled(_states(sent, "impact")):
        return _violation(rule, "impact-missing", sent, sent.comm.at, _evidence(sent, history))


def _states_reason(rule: Rule, _a: Mapping, sent: Sent, history: SubjectHistory | None, _c: CheckContext) -> Found:
    if not _filled(_states(sent, "reason")):
        return _violation(rule, "reason-missing", sent, sent.comm.at, _evidence(sent, history))


def _states_next_step(rule: Rule, _a: Mapping, sent: Sent, history: SubjectHistory | None, _c: CheckContext) -> Found:
    if _states(sent, "end") is None and _states(sent, "next_update_by") is None:
        return _violation(rule, "next-step-missing", sent, sent.comm.at, _evidence(sent, history))


def _states_end(rule: Rule, _a: Mapping, sent: Sent, history: SubjectHistory | None, _c: CheckContext) -> Found:
    stated = _states(sent, "end")
    if history is None or stated is None or not history.latest_extension_gave_end(sent.pos):
        return
    expected = history.end_in_force_at(sent.pos)
    if stated != expected:
        return _violation(
            rule,
            "end-mismatch",
            sent,
            sent.comm.at,
            _evidence(sent, history),
            stated=_fmt(stated),
            expected=_fmt(expected),  # type: ignore[arg-type]
        )


def _after_closed(rule: Rule, _a: Mapping, sent: Sent, history: SubjectHistory | None, _c: CheckContext) -> Found:
    if history is not None and not history.closed_by(sent.pos):
        # policy.md: a finding of the obligation rule, so its subject is the maintenance (a waiver for the
        # maintenance covers it); the closing mail is its `communication`.
        return _violation(
            rule, "premature", sent, sent.comm.at, _evidence(sent, history), of=history.id, sent=_fmt(sent.comm.at)
        )


def _sender(rule: Rule, args: Mapping, sent: Sent, history: SubjectHistory | None, _c: CheckContext) -> Found:
    release = history.release_related if history is not None else False
    expected = str(args["releases" if release else "support"])  # resolved by compile_checks
    if sent.comm.from_.lower() != expected.lower():
        return _violation(
            rule,
            "wrong-sender",
            sent,
            sent.comm.at,
            _evidence(sent, None),
            stated=sent.comm.from_,
            expected=expected,
        )


def _ticket(rule: Rule, args: Mapping, sent: Sent, _h: SubjectHistory | None, ctx: CheckContext) -> Found:
    minutes = int(args["within_minutes"])  # resolved by compile_checks
    due = sent.comm.at + timedelta(minutes=minutes)
    tickets = ctx.index.tickets.get(sent.comm.communication)
    if tickets:
        _pos, ticket = tickets[0] if len(tickets) == 1 else min(tickets, key=lambda t: (t[1].at, t[0]))
        if ticket.at > due:
            late = ticket.at - due
            return _violation(
                rule,
                "late",
                sent,
                due,
                (sent.comm.id, ticket.id),
                lateness=humanize(late),
                deadline=f"{minutes} min after it was sent",
            )
    elif due <= ctx.as_of:
        return _violation(rule, "missing", sent, due, (sent.comm.id,), deadline=f"{minutes} min after it was sent")


def _reply_origin(rule: Rule, reply: object, ctx: CheckContext) -> Found:
    origin = ctx.index.sent_by_id.get(reply.in_reply_to)  # type: ignore[attr-defined]
    if origin is None:
        return
    address = origin.comm.from_
    if address.lower() not in {a.lower() for a in reply.to}:  # type: ignore[attr-defined]
        return Violation(
            rule=rule.id,
            problem="origin-missing",
            subject=reply.reply,  # type: ignore[attr-defined]
            customer=reply.customer,
            communication=origin.comm.communication,  # type: ignore[attr-defined]
            due=reply.at,
            sent=None,  # type: ignore[attr-defined]
            fields={
                "subject": reply.reply,
                "customer": reply.customer,  # type: ignore[attr-defined]
                "communication": origin.comm.communication,
                "expected": address,
            },
            evidence=(origin.comm.id, reply.id),  # type: ignore[attr-defined]
        )


_COMM_REQUIREMENTS = {
    "states-window": _states_window,
    "states-impact": _states_impact,
    "states-reason": _states_reason,
    "states-next-step": _states_next_step,
    "states-end-in-force": _states_end,
    "sent-after-closed": _after_closed,
    "sender": _sender,
    "ticket-opened": _ticket,
}
