"""`forewarn explain`: why an obligation of a rule about a subject is met, pending, violated, waived or void.

Built on the evaluation's tables (forewarn.relational: the obligations and their outcomes, the
communications, the waivers, the subjects' histories and moments) and on the audit's findings, so it
explains what the engine and the audit compute: the moments that opened the obligation, its window and
the deadline arithmetic in the customer's calendar (days skipped and why, clock changes), every candidate
communication and why it counted or not, the waivers considered, and the outcome. For per-communication
rules it says which checks apply, and gives their findings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from forewarn.audit.findings import Finding, to_finding
from forewarn.calendar import explain_deadline, format_local
from forewarn.events import EVENT_ADAPTER, CustomerUpserted, Event, WaiverGranted
from forewarn.instants import utc
from forewarn.lifecycle.model import Obligation, Outcome
from forewarn.policy.model import Policy, Rule
from forewarn.relational import checks
from forewarn.relational.evaluation import Relational, evaluate_events
from forewarn.relational.obligations import from_epoch_us
from forewarn.relational.outcomes import outcomes as outcomes_of
from forewarn.relational.violations import humanize, obligation_deadline_text


@dataclass(frozen=True)
class Judged:
    """What an explanation reads: the relational evaluation of the log as of an instant (its tables, kept until
    `close`), the events evaluated (by position), the waivers (in evaluation order) and the findings."""

    as_of: datetime
    findings: list[Finding]
    rel: Relational
    events: Sequence[Event]
    waivers: list[WaiverGranted]

    def close(self) -> None:
        self.rel.close()

    def customer_at(self, customer: str, pos: int) -> CustomerUpserted | None:
        """The customer's attributes in force at position `pos`."""
        found = self.rel.con.execute(
            "SELECT max(pos) FROM customer_versions WHERE customer = $customer AND pos <= $pos",
            {"customer": customer, "pos": pos},
        ).fetchone()
        return self.events[found[0]] if found and found[0] is not None else None  # type: ignore[return-value]


def judge(events: Sequence[Event], policy: Policy, as_of: datetime) -> Judged:
    """Evaluate the log (events in evaluation order) as of `as_of`, its findings with the waivers applied.
    The result holds the evaluation's tables: `close` it."""
    evaluated = [e for e in events if e.at <= as_of]
    rel = evaluate_events(evaluated, policy, as_of)
    try:
        rows = rel.con.execute("SELECT payload FROM ev WHERE type = 'waiver.granted' ORDER BY pos").fetchall()
        waivers: list[WaiverGranted] = [EVENT_ADAPTER.validate_json(p) for (p,) in rows]  # type: ignore[misc]
        by_time = sorted(waivers, key=lambda w: (w.at, w.waiver))
        findings = sorted((to_finding(v, policy, by_time) for v in rel.violations()), key=Finding.sort_key)
    except BaseException:
        rel.close()
        raise
    return Judged(as_of, findings, rel, evaluated, waivers)


def explain(result: Judged, rule: Rule, subject: str, customer: str | None = None) -> dict[str, Any]:
    """The explanation, JSON-ready."""
    policy = result.rel.policy
    out: dict[str, Any] = {
        "rule": rule.id,
        "title": rule.spec.title,
        "subject": subject,
        "customer": customer,
        "as_of": utc(result.as_of),
        "scope": policy.scope_description,
        "condition": (rule.obligation_condition if rule.spec.obligation else rule.alarm_condition).describe(),
        "parameters": rule.params(),
        "obligations": [],
        "findings": [],
        "notes": [],
    }
    outcomes = list(outcomes_of(result.rel, rule.id, subject, customer).values())
    outcomes.sort(key=lambda o: (o.obligation.customer, o.obligation.not_after, o.obligation.opened))
    findings = [
        f for f in result.findings
        if f.rule == rule.id and f.subject == subject and (customer is None or f.customer == customer)
    ]
    for o in outcomes:
        out["obligations"].append(_obligation(result, o, findings, outcomes))
    claimed = {id(f) for ob in out["obligations"] for f in ob.pop("_findings")}
    out["findings"] = [_finding(f) for f in findings if id(f) not in claimed]  # checks, alarms, premature closings
    if not outcomes and not findings:
        out["notes"] = _why_nothing(result, rule, subject, customer)
    return out


# -- one obligation ----------------------------------------------------------------------


def _obligation(result: Judged, o: Outcome, findings: list[Finding], group: Sequence[Outcome]) -> dict[str, Any]:
    ob = o.obligation
    tz = ob.timezone
    mine = [f for f in findings if f.customer == ob.customer and f.due == ob.not_after and o.status == "violated"]
    status = "waived" if mine and all(f.status == "waived" for f in mine) else o.status
    window_from = max(ob.not_before, ob.opened)
    return {
        "customer": ob.customer,
        "status": status,
        "problem": o.problem,
        "opened_by": {
            "moment": ob.moment.type,
            "at": utc(ob.moment.at),
            "local": format_local(ob.moment.at, tz),
            "event": ob.moment.event_id,
            "evidence": list(ob.evidence),
        },
        "calendar": {"timezone": tz, "country": ob.country, "subdivision": ob.subdivision},
        "window": {
            "not_before": utc(window_from),
            "not_after": utc(ob.not_after),
            "local": f"{format_local(window_from, tz)} to {format_local(ob.not_after, tz)}",
            "kinds": list(ob.kinds),
            "count": ob.count,
        },
        "deadline": deadline_arithmetic(ob),
        "candidates": _candidates(result, o, group),
        "waivers": _waivers(result, ob),
        "outcome": _outcome_text(o, status, mine),
        "finding": [_finding(f) for f in mine],
        "void_reason": o.void_reason,
        "_findings": mine,
    }


def deadline_arithmetic(ob: Obligation) -> str:
    """How the deadline follows from the anchor, in the customer's calendar: the business days counted
    back with the days skipped and why (weekend, the holiday's name), and any clock change between."""
    unit, amount = ob.offset
    anchor = f"{ob.anchor} {format_local(ob.anchor_at, ob.timezone)}"
    if unit == "business_days" and amount:
        text = explain_deadline(ob.anchor_at, -amount, ob.timezone, ob.country, ob.subdivision)
        calendar = ob.country + (f"-{ob.subdivision}" if ob.subdivision else "") if ob.country else "Mon-Fri"
        text = f"{text}; counted in the calendar of {calendar}, {ob.timezone}; anchor: {ob.anchor}"
    else:
        text = f"{obligation_deadline_text(ob)} = {format_local(ob.not_after, ob.timezone)} (anchor: {anchor})"
    return text + _clock_change(ob.anchor_at, ob.not_after, ob.timezone)


def _clock_change(a: datetime, b: datetime, tz: str) -> str:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    off_a, off_b = a.astimezone(zone).utcoffset(), b.astimezone(zone).utcoffset()
    if off_a == off_b or off_a is None or off_b is None:
        return ""
    name_a, name_b = a.astimezone(zone).tzname(), b.astimezone(zone).tzname()
    step = humanize(abs(off_a - off_b))
    return f"; the clocks changed between the deadline ({name_b}) and the anchor ({name_a}) by {step}"


def _candidates(result: Judged, o: Outcome, group: Sequence[Outcome]) -> list[dict[str, Any]]:
    """Every communication about the subject to the customer, and why it did or did not count."""
    ob = o.obligation
    tz = ob.timezone
    sent = result.rel.con.execute(
        "SELECT communication, kind, at_us FROM comms"
        " WHERE subject_kind = $kind AND subject = $subject AND customer = $customer ORDER BY pos",
        {"kind": ob.subject_kind, "subject": ob.subject, "customer": ob.customer},
    ).fetchall()
    used_by = {}
    for other in group:
        if other.obligation.customer != ob.customer or other is o:
            continue
        for c in (*other.matched, *((other.communication,) if other.communication else ())):
            used_by[c] = other
    out = []
    for communication, kind, at_us in sent:
        at = from_epoch_us(at_us)
        if communication in o.matched:
            counted, why = True, "counted: sent within the window"
        elif communication == o.communication:
            after = at > ob.not_after
            gap = humanize(at - ob.not_after) if after else humanize(ob.not_before - at)
            counted, why = True, f"counted as {o.problem}: {gap} {'after' if after else 'before'} the window"
        elif kind not in ob.kinds:
            counted, why = False, f"a {kind} does not fulfil it (needs {' or '.join(ob.kinds)})"
        elif at < ob.opened:
            counted, why = False, f"sent before the obligation opened ({format_local(ob.opened, tz)})"
        elif communication in used_by:
            other = used_by[communication].obligation
            counted, why = False, f"used by another obligation of the rule (due {format_local(other.not_after, tz)})"
        elif at > ob.not_after:
            counted, why = False, "after the deadline"
        elif at < ob.not_before:
            counted, why = False, "before the window opened"
        else:
            counted, why = False, "not needed: the obligation was met by earlier communications"
        out.append(
            {"communication": communication, "kind": kind, "sent": utc(at), "local": format_local(at, tz),
             "counted": counted, "why": why}
        )
    return out


def _waivers(result: Judged, ob: Obligation) -> list[dict[str, Any]]:
    out = []
    for w in result.waivers:
        if w.subject != ob.subject:
            continue
        covers = w.rule == ob.rule and (w.customer is None or w.customer == ob.customer)
        if w.rule != ob.rule:
            why = f"a waiver of rule {w.rule}"
        elif not covers:
            why = f"for customer {w.customer} only"
        else:
            late = " (granted after the due time: retroactive)" if w.at > ob.not_after else ""
            why = f"covers this obligation's findings{late}"
        out.append(
            {"waiver": w.waiver, "granted": utc(w.at), "customer": w.customer, "reason": w.reason,
             "approved_by": w.approved_by, "covers": covers, "why": why}
        )
    return out


def _outcome_text(o: Outcome, status: str, findings: list[Finding]) -> str:
    ob = o.obligation
    tz = ob.timezone
    if o.status == "void":
        return f"void: {o.void_reason}"
    if o.status == "met":
        return f"met: {', '.join(o.matched)} sent {format_local(o.sent, tz) if o.sent else ''}".rstrip()
    if o.status == "pending":
        return f"pending: nothing counted yet; due by {format_local(ob.not_after, tz)}"
    text = f"violated ({o.problem})"
    if findings:
        text += f": {findings[0].message}"
    if status == "waived":
        text += f"; waived by {', '.join(sorted({f.waiver or '' for f in findings}))}"
    return text


def _finding(f: Finding) -> dict[str, Any]:
    return f.to_json()


# -- when nothing is owed ----------------------------------------------------------------


def _why_nothing(result: Judged, rule: Rule, subject: str, customer: str | None) -> list[str]:
    """Why the rule owes nothing about the subject (to the customer): no such subject, no moment that
    triggers it, the condition, the scope."""
    policy = result.rel.policy
    spec = rule.spec.obligation or rule.spec.alarm
    if spec is None:
        return _why_no_check_finding(result, rule, subject)
    history = result.rel.life.histories.get((spec.subject, subject))
    if history is None:
        return [f"no {spec.subject} {subject!r} in the log as of {utc(result.as_of)}"]
    condition = rule.obligation_condition if rule.spec.obligation else rule.alarm_condition
    notes = []
    triggers = [m for m in history.moments if m.type in spec.trigger]
    if not triggers:
        notes.append(f"no moment of {subject} triggers the rule (it opens on {', '.join(spec.trigger)})")
    for m in triggers:
        if not condition.holds_for_subject(m.attrs):
            failing = [t.why_not(m.attrs) for t in condition.on_subject if not t.holds(m.attrs)]
            notes.append(f"{m.type} at {utc(m.at)}: the rule's condition does not hold ({', '.join(failing)})")
            continue
        listed = history.customers
        candidates = _known_customers(result) if listed == "all" else list(listed)
        for c in candidates:
            if customer is not None and c != customer:
                continue
            version = result.customer_at(c, m.pos)
            if version is None:
                notes.append(f"{m.type} at {utc(m.at)}: customer {c} is not known then")
            elif not policy.covers(version):
                notes.append(f"{m.type} at {utc(m.at)}: customer {c} is out of the policy's scope "
                             f"({policy.scope_description.rstrip('.')}; plan {version.plan})")
            elif not condition.holds_for_customer(version):
                failing = [t.why_not(version) for t in condition.on_customer if not t.holds(version)]
                notes.append(f"{m.type} at {utc(m.at)}: customer {c}: the rule's condition does not hold "
                             f"({', '.join(failing)})")
        if customer is not None and listed != "all" and customer not in listed:
            notes.append(f"customer {customer} is not among the customers of {subject}")
    return notes or ["nothing owed: no obligation of this rule about this subject (and customer)"]


def _known_customers(result: Judged) -> list[str]:
    """Every customer with attributes recorded (what "all" stands for), by id."""
    rows = result.rel.con.execute("SELECT DISTINCT customer FROM customer_versions ORDER BY customer").fetchall()
    return [c for (c,) in rows]


def _why_no_check_finding(result: Judged, rule: Rule, subject: str) -> list[str]:
    """A per-communication rule with no finding about `subject` (a communication or reply id): why."""
    rel = result.rel
    policy = rel.policy
    if any(c.replies for c in rule.spec.checks):
        reply = rel.con.execute("SELECT 1 FROM replies WHERE reply = $reply", {"reply": subject}).fetchone()
        if reply is not None:
            return [f"reply {subject} passed the checks of {rule.id}"]
    sent = rel.con.execute(
        "SELECT pos, customer, kind, subject_kind, subject, at_us FROM comms WHERE communication = $communication"
        " ORDER BY pos DESC LIMIT 1",
        {"communication": subject},
    ).fetchone()
    if sent is None:
        return [f"{rule.id} checks communications: no communication {subject!r} in the log as of "
                f"{utc(result.as_of)} (give a communication or reply id as --subject)"]
    pos, to, kind, about_kind, about, at_us = sent
    checks.scoped(rel.con, policy)
    if rel.con.execute("SELECT 1 FROM scoped_comms WHERE pos = $pos", {"pos": pos}).fetchone() is None:
        return [f"{subject} went to {to}, out of the policy's scope then "
                f"({policy.scope_description.rstrip('.')})"]
    if not any(checks.applies_to(rel.con, policy, rule, c, pos) for c in rule.spec.checks if not c.replies):
        return [f"no check of {rule.id} applies to {subject} (a {kind}"
                + (f" about {about_kind} {about}" if about is not None else "") + ")"]
    minutes = _due_minutes(rule)
    if minutes and from_epoch_us(at_us).timestamp() + minutes * 60 > result.as_of.timestamp():
        return [f"{subject}: the checks of {rule.id} apply; its verdict is due {minutes} min after it was sent, "
                f"after the as-of: pending"]
    return [f"{subject} passed the checks of {rule.id} that apply to it"]


def _due_minutes(rule: Rule) -> int | None:
    """How long after a communication is sent a rule's verdict on it falls due (its `ticket-opened`
    requirement's minutes), or None when the verdict is due when it is sent."""
    for check in rule.spec.checks:
        for req, args in check.requirements():
            if req == "ticket-opened":
                return int(rule.resolve_int(args["within_minutes"]) or 0)  # type: ignore[arg-type]
    return None


# -- as text -----------------------------------------------------------------------------


def to_text(x: dict[str, Any]) -> str:
    lines = [f"{x['rule']}: {x['title']}", f"subject {x['subject']}" + (f", customer {x['customer']}"
             if x["customer"] else "") + f", as of {x['as_of']}",
             f"scope: {x['scope'].rstrip('.')}; rule condition: {x['condition']}"]
    if x["parameters"]:
        lines.append("parameters: " + ", ".join(f"{k}={v}" for k, v in x["parameters"].items()))
    for ob in x["obligations"]:
        lines += [
            "",
            f"== {ob['customer']}: {ob['status'].upper()}" + (f" ({ob['problem']})" if ob["problem"] else ""),
            f"opened by: {ob['opened_by']['moment']} {ob['opened_by']['event']} at {ob['opened_by']['local']}",
            f"window:    {ob['window']['local']} ({' or '.join(ob['window']['kinds'])}"
            + (f", {ob['window']['count']} needed" if ob["window"]["count"] > 1 else "") + ")",
            f"deadline:  {ob['deadline']}",
            f"calendar:  {ob['calendar']['timezone']}"
            + (f", {ob['calendar']['country']}" if ob["calendar"]["country"] else ", Mon-Fri")
            + (f"-{ob['calendar']['subdivision']}" if ob["calendar"]["subdivision"] else ""),
        ]
        lines.append("candidates:" if ob["candidates"] else "candidates: none (no communication about it to them)")
        for c in ob["candidates"]:
            mark = "+" if c["counted"] else "-"
            lines.append(f"  {mark} {c['communication']} {c['kind']} sent {c['local']}: {c['why']}")
        for w in ob["waivers"]:
            lines.append(f"waiver:    {w['waiver']} ({w['reason']}; approved by {w['approved_by']}): {w['why']}")
        lines.append(f"outcome:   {ob['outcome']}")
        if ob["void_reason"]:
            lines.append(f"void:      {ob['void_reason']}")
        lines.append(f"evidence:  {', '.join(ob['opened_by']['evidence'])}")
    if x["findings"]:
        lines += ["", "findings:"]
        for f in x["findings"]:
            lines.append(f"  {f['status']} {f['problem']} {f['customer']} due {f['due']}: {f['message']}")
    if x["notes"]:
        lines += ["", "no obligation or finding:"] + [f"  {n}" for n in x["notes"]]
    return "\n".join(lines)
