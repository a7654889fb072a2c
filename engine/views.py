"""How `plan` shows itself: JSON per cli.md, or a rich table (a plan's imports are light: see engine.published)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import orjson

from forewarn.engine.published import PlanView
from forewarn.instants import utc

if TYPE_CHECKING:
    from rich.console import Console

    from forewarn.engine.propose import ProposalAnswer


def plan_json(plan: PlanView) -> str:
    """cli.md's plan JSON, two-space indented as orjson writes it: the obligations are written from
    their stored JSON text (`json_entry`), the rest encoded (tests/test_published.py checks that the
    whole is exactly what encoding it all would give)."""
    skeleton = {"as_of": utc(plan.as_of), "due": [], "upcoming": [], "alerts": plan.alerts}
    skeleton["cancellations"] = plan.cancellations
    body = orjson.dumps(skeleton, option=orjson.OPT_INDENT_2).decode()
    for name, entries in (("due", plan.due), ("upcoming", plan.upcoming)):
        if entries:
            listed = "[\n" + ",\n".join(text for _local, text in entries) + "\n  ]"
            body = body.replace(f'\n  "{name}": [],', f'\n  "{name}": {listed},', 1)
    return body + "\n"


def _json(body: dict[str, object]) -> str:
    """Two-space indented JSON in UTF-8, as the audit's JSON report writes it (orjson: json.dumps
    falls back to its pure-Python encoder when indenting, which a large plan spent most of its time in)."""
    return orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n"


def _console() -> tuple[Console, io.StringIO]:
    from rich.console import Console

    buffer = io.StringIO()
    return Console(file=buffer, width=150, color_system=None), buffer


def plan_table(plan: PlanView) -> str:
    from rich.table import Table

    console, buffer = _console()
    for title, rows in (("due now", plan.due), ("upcoming", plan.upcoming)):
        table = Table(title=f"{title} as of {utc(plan.as_of)} ({len(rows)})", title_justify="left")
        for col in ("rule", "subject", "customer", "kind", "send from", "deadline (customer's time)"):
            table.add_column(col)
        for local, text in rows[:200]:
            ob = orjson.loads(text)
            table.add_row(ob["rule"], ob["subject"], ob["customer"], ob["kind"], ob["not_before"] or "", local)
        if len(rows) > 200:
            table.add_row("…", f"{len(rows) - 200} more", "", "", "", "")
        console.print(table)
    if plan.alerts:
        table = Table(title=f"alerts ({len(plan.alerts)}): a person must act", title_justify="left")
        for col in ("rule", "subject", "problem", "what to do"):
            table.add_column(col)
        for a in plan.alerts:
            table.add_row(a["rule"], a["subject"], a["problem"], a["message"])
        console.print(table)
    return buffer.getvalue()


def proposal_json(answer: ProposalAnswer) -> str:
    from forewarn.calendar import format_local
    from forewarn.engine.propose import describe

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
    from rich.table import Table

    from forewarn.calendar import format_local
    from forewarn.engine.propose import describe

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
