"""How `plan` shows itself: JSON per cli.md, or a rich table."""

from __future__ import annotations

import io

import orjson
from rich.console import Console
from rich.table import Table

from forewarn.audit.findings import utc
from forewarn.calendar import format_local
from forewarn.engine.planner import Due, Plan
from forewarn.engine.propose import ProposalAnswer, describe


def _obligation(d: Due, plan: Plan) -> dict[str, object]:
    ob = d.obligation
    return {
        "rule": ob.rule,
        "subject": ob.subject,
        "customer": ob.customer,
        "kind": ob.kinds[0],
        "from": d.sender,
        "to": list(d.to),
        "not_before": utc(d.send_from),
        "not_after": utc(ob.not_after),
    }


def plan_json(plan: Plan) -> str:
    body = {
        "as_of": utc(plan.as_of),
        "due": [_obligation(d, plan) for d in plan.due],
        "upcoming": [_obligation(d, plan) for d in plan.upcoming],
        "alerts": [a.to_json() for a in plan.alerts],
        "cancellations": [{"subject": s, "customer": c} for s, c in plan.cancellations],
    }
    return _json(body)


def _json(body: dict[str, object]) -> str:
    """Two-space indented JSON in UTF-8, as the audit's JSON report writes it (orjson: json.dumps
    falls back to its pure-Python encoder when indenting, which a large plan spent most of its time in)."""
    return orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n"


def _console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=150, color_system=None), buffer


def plan_table(plan: Plan) -> str:
    console, buffer = _console()
    for title, rows in (("due now", plan.due), ("upcoming", plan.upcoming)):
        table = Table(title=f"{title} as of {utc(plan.as_of)} ({len(rows)})", title_justify="left")
        for col in ("rule", "subject", "customer", "kind", "send from", "deadline (customer's time)"):
            table.add_column(col)
        for d in rows[:200]:
            ob = d.obligation
            table.add_row(
                ob.rule,
                ob.subject,
                ob.customer,
                ob.kinds[0],
                utc(d.send_from) or "",
                format_local(ob.not_after, ob.timezone),
            )
        if len(rows) > 200:
            table.add_row("…", f"{len(rows) - 200} more", "", "", "", "")
        console.print(table)
    if plan.alerts:
        table = Table(title=f"alerts ({len(plan.alerts)}): a person must act", title_justify="left")
        for col in ("rule", "subject", "problem", "what to do"):
            table.add_column(col)
        for a in plan.alerts:
            table.add_row(a.rule, a.subject, a.problem, a.message)
        console.print(table)
    return buffer.getvalue()


def proposal_json(answer: ProposalAnswer) -> str:
    body = {
        "as_of": utc(answer.as_of),
        "window": {
            "start": utc(answer.proposal.start),
            "end": utc(answer.proposal.end),
            "impact": answer.proposal.impact,
        },
        "notices": [
            {
                "rule": ob.rule,
                "customer": ob.customer,
                "kind": ob.kinds[0],
                "not_before": utc(max(ob.opened, ob.not_before)),
                "not_after": utc(ob.not_after),
                "not_after_local": format_local(ob.not_after, ob.timezone),
                "deadline": describe(ob),
                "too_late": answer.too_late(ob),
            }
            for ob in answer.obligations
        ],
    }
    return _json(body)


def proposal_table(answer: ProposalAnswer) -> str:
    console, buffer = _console()
    p = answer.proposal
    table = Table(
        title=f"proposed window {utc(p.start)} to {utc(p.end)} ({p.impact}), as of {utc(answer.as_of)}",
        title_justify="left",
    )
    for col in ("rule", "customer", "kind", "latest send (customer's time)", "UTC", "how", "verdict"):
        table.add_column(col)
    for ob in answer.obligations:
        verdict = "TOO LATE" if answer.too_late(ob) else "ok"
        table.add_row(
            ob.rule,
            ob.customer,
            ob.kinds[0],
            format_local(ob.not_after, ob.timezone),
            utc(ob.not_after) or "",
            describe(ob),
            verdict,
        )
    if not answer.obligations:
        console.print("This window obliges no notice (no affected enterprise customer, or no impact).")
    console.print(table)
    return buffer.getvalue()
