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
    body = json.dumps(skeleton, indent=2, ensure_ascii=False)  # as orjson would write it; json imports far faster
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

    from forewarn import terminal

    buffer = io.StringIO()
    colour = terminal.color_enabled()
    console = Console(
        file=buffer,
        width=terminal.width(),
        force_terminal=colour,
        no_color=not colour,
        color_system="standard" if colour else None,
        highlight=False,
    )
    return console, buffer


TABLE_WIDTH = 120  # when the width is not given: forewarn.terminal.width() decides in the command line
MAX_ROWS = 200
ALERT_EXAMPLES = 3  # subjects shown per group of alerts, then "N more"


def plan_table(plan: PlanView, width: int | None = None, color: bool = False) -> str:
    """The plan as text tables as wide as the terminal: due now, upcoming (the first MAX_ROWS of each),
    and the alerts grouped by rule and problem; drawn here rather than by rich, whose import and layout
    cost more than the rest of showing a published plan. A plan with nothing due says so in words."""
    width = width or TABLE_WIDTH
    out = []
    headers = ("rule", "subject", "customer", "kind", "send from (UTC)", "deadline (customer's time)")
    for title, entries, style in (("due now", plan.due, "title"), ("upcoming", plan.upcoming, "")):
        heading = f"{title} as of {utc(plan.as_of)} ({len(entries)})"
        if not entries:
            nothing = "nothing is due: no notice must be sent now" if title == "due now" else "nothing upcoming"
            out.append(f"{heading}: {nothing}\n")
            continue
        rows = []
        for local, text in entries[:MAX_ROWS]:
            ob = json.loads(text)
            send_from = (ob["not_before"] or "")[:16].replace("T", " ")  # to the minute: the table stays narrow
            rows.append((ob["rule"], ob["subject"], ob["customer"], ob["kind"], send_from, local))
        if len(entries) > MAX_ROWS:
            rows.append(("…", f"{len(entries) - MAX_ROWS} more", "", "", "", ""))
        out.append(box_table(_paint(heading, style, color), headers, rows, width))
    if plan.alerts:
        rows = [
            (rule, problem, str(len(subjects)), _examples(subjects), first)
            for rule, problem, first, subjects in group_alerts(plan.alerts)
        ]
        title = _paint(f"alerts ({len(plan.alerts)}): a person must act", "error", color)
        out.append(box_table(title, ("rule", "problem", "count", "subjects", "what to do (first)"), rows, width))
    return "".join(out)


def group_alerts(alerts: Sequence[dict[str, object]]) -> list[tuple[str, str, str, list[str]]]:
    """Alerts grouped per rule and problem, in order of first appearance: (rule, problem, the first's message,
    the subjects, each once)."""
    groups: dict[tuple[str, str], tuple[str, list[str]]] = {}
    for a in alerts:
        key = (str(a["rule"]), str(a["problem"]))
        if key not in groups:
            groups[key] = (str(a["message"]), [])
        subjects = groups[key][1]
        if a["subject"] not in subjects:
            subjects.append(str(a["subject"]))
    return [(rule, problem, first, subjects) for (rule, problem), (first, subjects) in groups.items()]


def _examples(subjects: list[str]) -> str:
    shown = ", ".join(subjects[:ALERT_EXAMPLES])
    more = len(subjects) - ALERT_EXAMPLES
    return f"{shown} and {more} more" if more > 0 else shown


def _paint(text: str, style: str, color: bool) -> str:
    """A title line in colour (titles are outside the tables' frames: their escapes do not upset alignment)."""
    from forewarn.terminal import paint

    return paint(text, style, color) if style else text


def box_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]], width: int = TABLE_WIDTH) -> str:
    """A titled table with a heavy header box, each column as wide as its widest cell; when that is
    wider than `width`, the last column's cells (its header too) are wrapped at word boundaries to fit."""
    widths = [max([_width(h), *(_width(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    fixed = sum(widths[:-1]) + 3 * len(widths) + 1
    if fixed + widths[-1] > width:
        widths[-1] = max(12, width - fixed)
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
    from rich.text import Text

    from forewarn.calendar import format_local
    from forewarn.engine.propose import describe

    console, buffer = _console()
    p = answer.proposal
    table = Table(
        title=f"proposed window {utc(p.start)} to {utc(p.end)} ({p.impact}), as of {utc(answer.as_of)}",
        title_justify="left",
    )
    for col in ("rule", "customer", "kind", "latest send (customer's time)", "UTC", "how", "verdict"):
        table.add_column(col, no_wrap=col in ("rule", "UTC", "verdict"))
    for ob in answer.obligations:
        verdict = Text("TOO LATE", style="bold red") if answer.too_late(ob) else Text("ok", style="green")
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
