"""How `plan` shows itself: JSON per cli.md, or text tables (a plan's imports are light: see engine.published)."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

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
    body = json.dumps(skeleton, indent=2, ensure_ascii=False)  # as orjson would write it; imports in 1 ms, not 11
    for name, entries in (("due", plan.due), ("upcoming", plan.upcoming)):
        if entries:
            listed = "[\n" + ",\n".join(text for _local, text in entries) + "\n  ]"
            body = body.replace(f'\n  "{name}": [],', f'\n  "{name}": {listed},', 1)
    return body + "\n"


def _json(body: dict[str, object]) -> str:
    """Two-space indented JSON in UTF-8, as the audit's JSON report writes it (orjson: json.dumps
    falls back to its pure-Python encoder when indenting, which a large plan spent most of its time in)."""
    import orjson

    return orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n"


def _console() -> tuple[Console, io.StringIO]:
    from rich.console import Console

    buffer = io.StringIO()
    return Console(file=buffer, width=150, color_system=None), buffer


TABLE_WIDTH = 150


def plan_table(plan: PlanView) -> str:
    """The plan as text tables (due now, upcoming: the first 200 of each; alerts), drawn here rather
    than by rich, whose import and layout took 100 ms of a 10,000-obligation plan's 200."""
    out = []
    headers = ("rule", "subject", "customer", "kind", "send from", "deadline (customer's time)")
    for title, entries in (("due now", plan.due), ("upcoming", plan.upcoming)):
        rows = []
        for local, text in entries[:200]:
            ob = json.loads(text)
            rows.append((ob["rule"], ob["subject"], ob["customer"], ob["kind"], ob["not_before"] or "", local))
        if len(entries) > 200:
            rows.append(("…", f"{len(entries) - 200} more", "", "", "", ""))
        out.append(box_table(f"{title} as of {utc(plan.as_of)} ({len(entries)})", headers, rows))
    if plan.alerts:
        rows = [(a["rule"], a["subject"], a["problem"], a["message"]) for a in plan.alerts]
        title = f"alerts ({len(plan.alerts)}): a person must act"
        out.append(box_table(title, ("rule", "subject", "problem", "what to do"), rows))
    return "".join(out)


def box_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]], width: int = TABLE_WIDTH) -> str:
    """A titled table with a heavy header box, each column as wide as its widest cell; when that is
    wider than `width`, the last column's cells are wrapped at word boundaries to fit."""
    widths = [max([_width(h), *(_width(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    fixed = sum(widths[:-1]) + 3 * len(widths) + 1
    if fixed + widths[-1] > width:
        widths[-1] = max(_width(headers[-1]), 20, width - fixed)
    lines = [title]

    def rule(left: str, fill: str, cross: str, right: str) -> str:
        return left + cross.join(fill * (w + 2) for w in widths) + right

    def cells(values: Sequence[str], bar: str) -> list[str]:
        wrapped = [[v] if i < len(widths) - 1 else _wrap(v, widths[i]) for i, v in enumerate(values)]
        height = max(len(w) for w in wrapped)
        out = []
        for n in range(height):
            parts = [(w[n] if n < len(w) else "") for w in wrapped]
            padded = (p + " " * (widths[i] - _width(p)) for i, p in enumerate(parts))
            out.append(bar + bar.join(f" {p} " for p in padded) + bar)
        return out

    lines.append(rule("┏", "━", "┳", "┓"))
    lines += cells(headers, "┃")
    lines.append(rule("┡", "━", "╇", "┩"))
    for row in rows:
        lines += cells(row, "│")
    lines.append(rule("└", "─", "┴", "┘"))
    return "\n".join(lines) + "\n"


def _width(text: str) -> int:
    """Terminal columns `text` takes: wide East Asian characters two, combining marks none."""
    if text.isascii():
        return len(text)
    from unicodedata import combining, east_asian_width

    return sum(0 if combining(c) else 2 if east_asian_width(c) in "WF" else 1 for c in text)


def _wrap(text: str, width: int) -> list[str]:
    """`text` in lines of at most `width` columns, broken at spaces (a longer word is cut)."""
    if _width(text) <= width:
        return [text]
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        while _width(word) > width:
            if line:
                lines.append(line)
                line = ""
            cut = width
            while _width(word[:cut]) > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        candidate = f"{line} {word}" if line else word
        if _width(candidate) <= width:
            line = candidate
        else:
            lines.append(line)
            line = word
    lines.append(line)
    return lines


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
        console.print("This window obliges no notice (no affected customer in the policy's scope, or no impact).")
    console.print(table)
    return buffer.getvalue()
