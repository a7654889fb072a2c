"""Inline SVG charts for the HTML report: rates by rule and month, lead times, timelines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

GREEN, AMBER, RED, GREY, BLUE, INK = (
    "#1a7f37",
    "#bf8700",
    "#cf222e",
    "#8c959f",
    "#0969da",
    "#24292f",
)
FONT = 'font-family="system-ui, -apple-system, Segoe UI, sans-serif"'


def percent(rate: float) -> str:
    """A rate to one decimal; never "100.0%" while something was violated (99.9% at most), nor "0.0%"
    while something was met (0.1% at least)."""
    text = f"{rate:.1f}"
    if text == "100.0" and rate < 100.0:
        text = "99.9"
    elif text == "0.0" and rate > 0.0:
        text = "0.1"
    return f"{text}%"


def rate_colour(rate: float | None) -> str:
    """Green at 99% and above, amber from 95%, red below; grey when nothing was judged."""
    if rate is None:
        return GREY
    return GREEN if rate >= 99.0 else AMBER if rate >= 95.0 else RED


def compact(n: int) -> str:
    """A count in at most five characters: 987, 12.3k, 128k, 1.2M."""
    if n < 10_000:
        return str(n)
    if n < 100_000:
        return f"{n / 1000:.1f}k"
    return f"{n // 1000}k" if n < 1_000_000 else f"{n / 1e6:.1f}M"


def _text(
    x: float,
    y: float,
    body: str,
    *,
    anchor: str = "start",
    size: int = 12,
    fill: str = INK,
    weight: str = "normal",
    cls: str = "",
) -> str:
    klass = f' class="{cls}"' if cls else ""
    return (
        f'<text{klass} x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
        f'fill="{fill}" font-weight="{weight}">{escape(body)}</text>'
    )


def _svg(width: int, height: int, label: str, body: list[str], cls: str = "chart") -> str:
    return (
        f'<svg class="{cls}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{escape(label)}" {FONT}>'
        f"<title>{escape(label)}</title>{''.join(body)}</svg>"
    )


@dataclass(frozen=True)
class Bar:
    """One bar: a label, a rate (None: nothing judged), and the counts behind it."""

    label: str
    rate: float | None
    met: int
    judged: int
    note: str = ""


def rate_bars(title: str, bars: Sequence[Bar], width: int = 600) -> str:
    """Horizontal bars: compliance % per label, coloured by rate, with met/judged counts."""
    row, left, right = 26, 130, 130
    height = 30 + row * max(len(bars), 1)
    scale = (width - left - right) / 100.0
    body = [
        _text(left, 14, "0%", size=10, fill=GREY),
        _text(width - right, 14, "100%", anchor="end", size=10, fill=GREY),
    ]
    for i, bar in enumerate(bars):
        y = 24 + i * row
        body.append(f'<rect x="{left}" y="{y}" width="{100 * scale:.1f}" height="16" fill="#eaeef2" rx="2"/>')
        if bar.rate is not None:
            body.append(
                f'<rect class="bar" x="{left}" y="{y}" width="{bar.rate * scale:.1f}" height="16" '
                f'fill="{rate_colour(bar.rate)}" rx="2"><title>{escape(bar.label)}: '
                f"{percent(bar.rate)} ({bar.met} of {bar.judged} met)</title></rect>"
            )
        body.append(_text(left - 8, y + 12, bar.label, anchor="end"))
        value = "no cases" if bar.rate is None else f"{percent(bar.rate)}  ({compact(bar.met)}/{compact(bar.judged)})"
        body.append(_text(width - right + 8, y + 12, value, size=11))
    return _svg(width, height, title, body)


LABEL_PX = 52  # room one month label ("2026-01" at 11px) and its rate need, so neighbours never overlap


def month_columns(title: str, bars: Sequence[Bar], width: int = 560, height: int = 220) -> str:
    """Vertical columns: compliance % per month, the axis from the lowest rate shown to 100%.

    When the columns are narrower than a label, only every n-th month is labelled (from the first);
    every column keeps its details in its tooltip."""
    top, bottom, left = 20, 40, 44
    rates = [b.rate for b in bars if b.rate is not None]
    floor_ = max(0.0, min([*rates, 90.0]) - 5.0) // 5 * 5
    plot_h = height - top - bottom
    col = (width - left - 10) / max(len(bars), 1)
    step = max(1, -(-LABEL_PX // max(int(col), 1)))
    labelled = set(range(0, len(bars), step))

    def y_of(rate: float) -> float:
        return top + plot_h * (100.0 - rate) / (100.0 - floor_)

    body = []
    for tick in (floor_, (floor_ + 100) / 2, 100.0):
        y = y_of(tick)
        body.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d0d7de"/>')
        body.append(_text(left - 6, y + 4, f"{tick:.0f}%", anchor="end", size=10, fill=GREY))
    for i, bar in enumerate(bars):
        x = left + i * col + col * 0.2
        w = col * 0.6
        note = f"; {bar.note}" if bar.note else ""
        if bar.rate is not None:
            y = y_of(bar.rate)
            body.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" '
                f'height="{top + plot_h - y:.1f}" '
                f'fill="{rate_colour(bar.rate)}"><title>{escape(bar.label)}: {percent(bar.rate)} '
                f"({bar.met} of {bar.judged} met{escape(note)})</title></rect>"
            )
            if i in labelled:
                body.append(_text(x + w / 2, y - 4, percent(bar.rate), anchor="middle", size=11))
        if i in labelled:
            body.append(_text(x + w / 2, height - bottom + 16, bar.label, anchor="middle", size=11, cls="month"))
            if bar.note and step == 1:
                body.append(_text(x + w / 2, height - bottom + 30, bar.note, anchor="middle", size=10, fill=RED))
    return _svg(width, height, title, body)


@dataclass(frozen=True)
class Bin:
    """A histogram bin: its label, its count, and whether it is short of the required notice."""

    label: str
    count: int
    short: bool


def lead_histogram(
    title: str,
    bins: Sequence[Bin],
    line_after: int,
    line_label: str,
    width: int = 560,
    height: int = 220,
) -> str:
    """Notices per lead-time bin; the required notice is a dashed line after bin `line_after`."""
    top, bottom, left = 40, 44, 44
    plot_h = height - top - bottom
    peak = max([b.count for b in bins] + [1])
    col = (width - left - 10) / max(len(bins), 1)
    body = [
        f'<line x1="{left}" x2="{width - 10}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#8c959f"/>',
        _text(left - 6, top + 4, str(peak), anchor="end", size=10, fill=GREY),
        _text(left - 6, top + plot_h + 4, "0", anchor="end", size=10, fill=GREY),
    ]
    for i, b in enumerate(bins):
        h = plot_h * b.count / peak
        x = left + i * col + col * 0.12
        w = col * 0.76
        fill = RED if b.short else GREEN
        body.append(
            f'<rect class="bar" x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{w:.1f}" '
            f'height="{h:.1f}" '
            f'fill="{fill}"><title>{escape(b.label)}: {b.count} notices</title></rect>'
        )
        if b.count:
            body.append(_text(x + w / 2, top + plot_h - h - 4, str(b.count), anchor="middle", size=11))
        body.append(_text(x + w / 2, height - bottom + 16, b.label, anchor="middle", size=10))
    lx = left + (line_after + 1) * col
    body.append(
        f'<line class="threshold" x1="{lx:.1f}" x2="{lx:.1f}" y1="{top - 36}" y2="{top + plot_h}" '
        f'stroke="{INK}" stroke-width="2" stroke-dasharray="5 4"/>'
    )
    body.append(_text(lx + 4, top - 26, line_label, size=11, weight="bold"))
    body.append(
        _text(
            left + (width - left) / 2,
            height - 6,
            "business days between notice and window start",
            anchor="middle",
            size=11,
            fill=GREY,
        )
    )
    return _svg(width, height, title, body)


@dataclass(frozen=True)
class Mark:
    """Something on a maintenance timeline: a notice (lane = its kind) or a lifecycle event."""

    at: datetime
    lane: str
    label: str
    bad: bool = False
    missing: bool = False


@dataclass(frozen=True)
class Span:
    """A window (or its extension) on the timeline."""

    start: datetime
    end: datetime
    label: str
    style: str  # window | superseded | extension


@dataclass(frozen=True)
class Band:
    """When a kind of notice was due (earliest to latest customer deadline), on that kind's lane."""

    lane: str
    start: datetime
    end: datetime
    label: str


class Scale:
    """Piecewise-linear time axis: the lead-up to the window start takes `split` of the width."""

    def __init__(self, t0: datetime, pivot: datetime, t1: datetime, x0: float, x1: float, split: float = 0.42) -> None:
        self.t0, self.pivot, self.t1 = t0, pivot, t1
        self.x0, self.xp, self.x1 = x0, x0 + (x1 - x0) * split, x1

    def __call__(self, t: datetime) -> float:
        if t < self.pivot:
            span = (self.pivot - self.t0).total_seconds() or 1.0
            return self.x0 + (self.xp - self.x0) * max(0.0, (t - self.t0).total_seconds() / span)
        span = (self.t1 - self.pivot).total_seconds() or 1.0
        return self.xp + (self.x1 - self.xp) * min(1.0, (t - self.pivot).total_seconds() / span)


def _stamp(t: datetime) -> str:
    return t.strftime("%a %d %b %H:%M")


def _mark(x: float, y: float, m: Mark) -> str:
    colour = RED if m.bad or m.missing else GREEN
    tip = f"<title>{escape(m.label)}</title>"
    if m.missing:
        return (
            f'<g class="mark missing"><path d="M{x - 5:.1f},{y - 5:.1f}l10,10m0,-10l-10,10" '
            f'stroke="{RED}" stroke-width="2.5"/>{tip}</g>'
        )
    if m.lane == "lifecycle":
        return (
            f'<g class="mark"><path d="M{x:.1f},{y - 7:.1f}l6,7l-6,7l-6,-7z" '
            f'fill="{colour if m.bad else INK}"/>'
            f"{tip}</g>"
        )
    cls = "mark bad" if m.bad else "mark"
    return f'<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}">{tip}</circle>'


MAX_GOOD_MARKS = 120  # per lane: beyond this, on-time notices are thinned evenly (problems never)


def thin(marks: Sequence[Mark], limit: int = MAX_GOOD_MARKS) -> list[Mark]:
    """All problem marks, and at most `limit` unproblematic ones per lane, evenly spread in time."""
    out = [m for m in marks if m.bad or m.missing or m.lane == "lifecycle"]
    lanes: dict[str, list[Mark]] = {}
    for m in marks:
        if not (m.bad or m.missing or m.lane == "lifecycle"):
            lanes.setdefault(m.lane, []).append(m)
    for good in lanes.values():
        good.sort(key=lambda m: m.at)
        step = max(1, -(-len(good) // limit))
        out.extend(good[::step])
    return out


def timeline(
    title: str,
    spans: Sequence[Span],
    marks: Sequence[Mark],
    pivot: datetime,
    bands: Sequence[Band] = (),
    width: int = 900,
) -> str:
    """A maintenance's life: windows and extensions as bars, notices as dots, problems in red."""
    marks = thin(marks)
    lanes = ["window", "lifecycle", *dict.fromkeys(m.lane for m in marks if m.lane != "lifecycle")]
    times = [t for s in spans for t in (s.start, s.end)] + [m.at for m in marks]
    t0, t1 = min([*times, pivot]), max([*times, pivot])
    pad = (t1 - pivot) * 0.04
    left, row = 96, 24
    scale = Scale(t0 - (pivot - t0) * 0.03, pivot, t1 + pad, left, width - 16)
    height = 36 + row * len(lanes)
    body = [
        f'<rect x="{scale.xp:.1f}" y="8" width="{width - 16 - scale.xp:.1f}" height="{height - 28}" fill="#f6f8fa"/>',
        f'<line x1="{scale.xp:.1f}" x2="{scale.xp:.1f}" y1="8" y2="{height - 20}" '
        f'stroke="#8c959f" stroke-dasharray="3 3"/>',
    ]
    y_of = {lane: 22 + i * row for i, lane in enumerate(lanes)}
    for lane, y in y_of.items():
        body.append(_text(left - 8, y + 4, lane.replace("_", " "), anchor="end", size=11, fill=GREY))
        body.append(f'<line x1="{left}" x2="{width - 16}" y1="{y}" y2="{y}" stroke="#eaeef2"/>')
    for s in spans:
        x0, x1 = scale(s.start), max(scale(s.end), scale(s.start) + 2)
        fill = {"window": BLUE, "superseded": "#b6c2cf", "extension": AMBER}[s.style]
        body.append(
            f'<rect class="span {s.style}" x="{x0:.1f}" y="{y_of["window"] - 7}" '
            f'width="{x1 - x0:.1f}" '
            f'height="14" rx="3" fill="{fill}"><title>{escape(s.label)}</title></rect>'
        )
    for b in bands:
        if b.lane not in y_of:
            continue
        x0, x1 = scale(b.start), scale(b.end)
        body.append(
            f'<rect class="deadline" x="{x0 - 1.5:.1f}" y="{y_of[b.lane] - 9}" '
            f'width="{x1 - x0 + 3:.1f}" height="18" fill="none" stroke="{INK}" '
            f'stroke-dasharray="2 2"><title>{escape(b.label)}</title></rect>'
        )
    for m in sorted(marks, key=lambda m: (m.bad or m.missing, m.at)):
        body.append(_mark(scale(m.at), y_of[m.lane], m))
    for t, anchor in ((scale.t0, "start"), (pivot, "middle"), (t1, "end")):
        body.append(_text(scale(t), height - 6, _stamp(t) + " UTC", anchor=anchor, size=10, fill=GREY))
    return _svg(width, height, title, body, cls="timeline")
