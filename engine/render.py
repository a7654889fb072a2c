"""Render a Draft into a complete e-mail: headers, text and HTML alternatives, ICS invitation."""

from __future__ import annotations

import functools
import quopri
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from email.header import Header
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar import Calendar, Event, vCalAddress, vDDDTypes
from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    FileSystemLoader,
    FunctionLoader,
    StrictUndefined,
    Template,
    TemplateError,
    select_autoescape,
)
from jinja2.sandbox import SandboxedEnvironment

from forewarn.engine.draft import Draft, Invitation
from forewarn.events.models import COMMUNICATION_KINDS

KINDS = COMMUNICATION_KINDS
TIME_STATES = ("window_start", "window_end", "end", "next_update_by")
TEXT_STATES = ("impact", "reason")
PRODID = "-//forewarn//forewarn engine//EN"
ICS_FILENAME = "invite.ics"
MAX_SUBJECT_TITLE = 200

_SUBJECT_PREFIX = {
    "advance_notice": "Scheduled maintenance",
    "start_reminder": "Maintenance starting",
    "closing": "Maintenance complete",
    "extension": "Maintenance extended",
    "emergency": "Emergency maintenance",
    "incident": "Incident",
    "release": "Release",
    "other": "Update",
}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# C0/C1 controls and the Unicode line/paragraph separators: anything that could
# end a header line (str.splitlines() splits on all of these).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"\s+")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# The event log's EMAIL_PATTERN (forewarn.events.models): a sent message must be recordable.
_EMAIL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+")
_MSGID = re.compile(r"[!-;=?-~]+@[!-;=?-~]+")  # printable ASCII without < > and space
_MIME_TEXT_LINE = 998
_BOUNDARY_MARK = "=_forewarn_"
_MAX_LINE = 78  # RFC 5322 recommended header line length


class RenderError(ValueError):
    """A Draft cannot be rendered (bad address, unknown kind or state, naive time...)."""


class _CachingRegistry(HeaderRegistry):
    """The stdlib header registry, minus its per-call class creation (a hot spot)."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls


class _RenderPolicy(EmailPolicy):
    """policy.SMTP whose parsed headers are memoised: the generator re-reads
    Content-Type several times per part, and rendered values repeat a lot."""

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if hasattr(value, "name"):
            return value
        return _parsed_header(name, value)


POLICY = _RenderPolicy(linesep="\r\n", header_factory=_CachingRegistry())
"""The policy of rendered messages: RFC 5322 with CRLF line ends (email.policy.SMTP)."""


@functools.lru_cache(maxsize=8192)
def _parsed_header(name: str, value: str) -> Any:
    """A header object for a raw value (immutable, so shared between messages)."""
    return EmailPolicy.header_fetch_parse(POLICY, name, value)


# ---------------------------------------------------------------- templates


def _load_template(name: str) -> str | None:
    """Template source from the package data (templates/mail/NAME), None if absent."""
    path = resources.files("forewarn.templates").joinpath("mail", name)
    return path.read_text(encoding="utf-8") if path.is_file() else None


_OWN_TEMPLATES: str | None = None
"""A directory of the operator's mail templates (`--templates DIR`), tried before the bundled ones."""


def use_templates(directory: str | None) -> None:
    """Take mail templates from DIR first, each template falling back to the bundled one of its name
    (so a DIR with only `layout.txt.j2` changes the text layout of every kind); None: only the bundled ones.
    Every template is compiled at once: RenderError names the file and line of a bad one."""
    global _OWN_TEMPLATES
    _OWN_TEMPLATES = directory
    environment.cache_clear()
    _template.cache_clear()
    try:
        for kind in (*KINDS, "layout"):  # a kind's template loads its layout only when rendered
            for fmt in ("txt", "html"):
                _template(kind, fmt)
    except TemplateError as exc:
        where = f"{getattr(exc, 'filename', None) or getattr(exc, 'name', None) or ''}:{getattr(exc, 'lineno', '')}"
        raise RenderError(f"mail template {where.strip(':')}: {exc.message or exc}") from None


@functools.cache
def environment() -> SandboxedEnvironment:
    """The sandboxed Jinja2 environment; HTML templates (*.html.j2) are autoescaped."""
    loader: BaseLoader = FunctionLoader(_load_template)
    if _OWN_TEMPLATES is not None:
        loader = ChoiceLoader([FileSystemLoader(_OWN_TEMPLATES), loader])
    return SandboxedEnvironment(
        loader=loader,
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )


@functools.cache
def _template(kind: str, fmt: str) -> Template:
    return environment().get_template(f"{kind}.{fmt}.j2")


# ---------------------------------------------------------------- values


def one_line(text: object, limit: int | None = None) -> str:
    """TEXT as a single header-safe line: controls and line breaks become spaces."""
    flat = _SPACES.sub(" ", _CONTROL.sub(" ", str(text))).strip()
    if limit is not None and len(flat) > limit:
        flat = flat[: limit - 3].rstrip() + "..."
    return flat


@functools.lru_cache(maxsize=4096)
def address(text: str, field: str = "address") -> str:
    """A validated plain addr-spec: what the event log accepts (dot-atom@dotted.domain, ASCII)."""
    if not isinstance(text, str) or len(text) > 254 or not _EMAIL.fullmatch(text):
        raise RenderError(
            f"{field}: {text!r} is not a plain e-mail address (local@example.com, ASCII)"
        )
    return text


def message_id(text: str) -> str:
    """The Message-ID in angle brackets, validated as id-left@id-right."""
    core = text.strip()
    if core.startswith("<") and core.endswith(">"):
        core = core[1:-1]
    if not _MSGID.fullmatch(core):
        raise RenderError(f"message_id: {text!r} is not an RFC 5322 msg-id (left@right)")
    return f"<{core}>"


def as_utc(value: object, field: str) -> datetime:
    """An aware datetime (or RFC 3339 text) converted to UTC; naive times are refused."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise RenderError(f"{field}: {value!r} is not an RFC 3339 timestamp") from None
    if not isinstance(value, datetime):
        raise RenderError(f"{field}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise RenderError(f"{field}: {value.isoformat()} has no UTC offset")
    return value.astimezone(UTC)


@functools.lru_cache(maxsize=512)
def zone(name: str) -> tzinfo:
    """The IANA zone NAME; RenderError if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise RenderError(f"timezone: unknown IANA zone {name!r}") from None


def _utc_offset(local: datetime) -> str:
    """UTC+05:30, UTC-04:00, UTC+00:00."""
    minutes = int((local.utcoffset() or timedelta(0)).total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{mins:02d}"


def _zone_abbrev(local: datetime) -> str:
    """The zone's abbreviation with its UTC offset, which makes it unambiguous (IST is India's, Israel's
    and Ireland's): "CET (UTC+01:00)", "IST (UTC+05:30)"; "UTC" itself; numeric-only names ("+03") become
    the offset alone ("UTC+03:00")."""
    name = local.tzname() or "UTC"
    offset = _utc_offset(local)
    if name == "UTC" and offset == "UTC+00:00":
        return "UTC"
    return offset if name[0] in "+-" else f"{name} ({offset})"


def _day(t: datetime, year: bool) -> str:
    text = f"{_DAYS[t.weekday()]} {t.day} {_MONTHS[t.month - 1]}"
    return f"{text} {t.year}" if year else text


def _clock(t: datetime) -> str:
    return f"{t.hour:02d}:{t.minute:02d}"


def format_local(t: datetime, tz: tzinfo, *, year: bool = True) -> str:
    """Tue 10 Mar 2026 09:00 CET: the instant in the customer's zone."""
    local = t.astimezone(tz)
    return f"{_day(local, year)} {_clock(local)} {_zone_abbrev(local)}"


def format_utc(t: datetime) -> str:
    """2026-03-10 08:00 UTC."""
    u = t.astimezone(UTC)
    return f"{u:%Y-%m-%d} {_clock(u)} UTC"


def format_window(start: datetime, end: datetime, tz: tzinfo) -> str:
    """Tue 10 Mar 09:00-11:00 CET, or with both days / zones when they differ."""
    ls, le = start.astimezone(tz), end.astimezone(tz)
    zs, ze = _zone_abbrev(ls), _zone_abbrev(le)
    if ls.date() == le.date() and zs == ze:
        return f"{_day(ls, False)} {_clock(ls)}-{_clock(le)} {zs}"
    first = f"{_day(ls, False)} {_clock(ls)}" + ("" if zs == ze else f" {zs}")
    return f"{first} - {_day(le, False)} {_clock(le)} {ze}"


def _instant(t: datetime, tz: tzinfo) -> dict[str, str]:
    return {"local": format_local(t, tz), "utc": format_utc(t), "iso": t.isoformat()}


# ---------------------------------------------------------------- content


def stated(draft: Draft) -> dict[str, object]:
    """draft.states checked and normalised: times in UTC, texts stripped; RenderError otherwise."""
    out: dict[str, object] = {}
    for key, value in draft.states.items():
        if key in TIME_STATES:
            out[key] = as_utc(value, f"states.{key}")
        elif key in TEXT_STATES:
            if not isinstance(value, str):
                raise RenderError(f"states.{key}: expected text, got {type(value).__name__}")
            out[key] = value.strip()
        else:
            raise RenderError(f"states.{key}: unknown state (the templates cannot state it)")
    return out


_DETAILS = {
    "advance_notice": ("impact_summary",),
    "start_reminder": ("impact_summary",),
    "extension": ("impact_summary",),
    "emergency": ("impact_summary", "emergency_reason"),
    "incident": ("severity", "summary"),
    "release": ("release_at",),
    "closing": ("note",),
    "other": ("note",),
}


def _details(draft: Draft, tz: tzinfo) -> dict[str, object]:
    """The customer-visible context the kind shows (never a decision input)."""
    ctx = dict(draft.context)
    if draft.kind == "emergency" and "reason" in ctx:
        ctx.setdefault("emergency_reason", ctx["reason"])
    details: dict[str, object] = {}
    for key in _DETAILS[draft.kind]:
        value = ctx.get(key)
        if not value:
            continue
        if key == "release_at":
            details[key] = _instant(as_utc(value, "context.release_at"), tz)
        else:
            details[key] = str(value).strip()
    if "reason" in draft.states:
        details.pop("emergency_reason", None)  # the stated reason is shown instead
    impact = draft.states.get("impact")
    if isinstance(impact, str) and details.get("impact_summary") == impact.strip():
        details.pop("impact_summary")  # already shown as the stated impact
    return details


def support_href(contact: str) -> str | None:
    """A safe link for the support contact: mailto: for an address, http(s) URLs as is."""
    text = contact.strip()
    if re.fullmatch(r"https?://[^\s<>\"']+", text):
        return text
    try:
        return f"mailto:{address(text, 'support_contact')}"
    except RenderError:
        return None


def _minutes(n: int) -> str:
    return f"{n} minute{'' if n == 1 else 's'}"


def _starts(start: datetime, sent_at: datetime, tz: tzinfo) -> dict[str, object]:
    """When the window starts as seen from the moment the message is sent: a start reminder sent 10
    minutes ahead says "starts at 09:00 ... in 10 minutes", not "is starting now"."""
    local = start.astimezone(tz)
    minutes = round((start - sent_at).total_seconds() / 60)
    when = "future" if minutes >= 1 else "past" if minutes <= -1 else "now"
    return {"when": when, "clock": f"{_clock(local)} {_zone_abbrev(local)}", "minutes": _minutes(abs(minutes))}


def _changes(draft: Draft, states: Mapping[str, object], tz: tzinfo) -> dict[str, object]:
    """What changed since an earlier message (engine.planner._what_changed's context), in words."""
    ctx = draft.context
    out: dict[str, object] = {}
    old_start, old_end = ctx.get("previous_window_start"), ctx.get("previous_window_end")
    new_start, new_end = states.get("window_start"), states.get("window_end")
    if old_start and old_end and isinstance(new_start, datetime) and isinstance(new_end, datetime):
        old_start = as_utc(old_start, "context.previous_window_start")
        old_end = as_utc(old_end, "context.previous_window_end")
        out["rescheduled"] = {
            "old": format_window(old_start, old_end, tz),
            "new": format_window(new_start, new_end, tz),
        }
    since = ctx.get("update_since")
    if since:
        news = []
        for key, label in (("end", "target end"), ("next_update_by", "next update")):
            before, now = ctx.get(f"update_previous_{key}"), states.get(key)
            if isinstance(now, datetime) and (not before or as_utc(before, f"context.{key}") != now):
                shown = f"The {label} is now {format_local(now, tz)}"
                if before:
                    shown += f" (it was {format_local(as_utc(before, f'context.{key}'), tz)})"
                news.append(shown + ".")
        out["update"] = {"since": _instant(as_utc(since, "context.update_since"), tz), "news": news}
    return out


def template_data(draft: Draft, sent_at: datetime | None = None) -> dict[str, object]:
    """Everything the templates may show, as plain data (never as template source)."""
    tz = zone(draft.timezone)
    states = stated(draft)
    data: dict[str, object] = {
        key: (_instant(value, tz) if isinstance(value, datetime) else value)
        for key, value in states.items()
    }
    details = _details(draft, tz)
    extra: dict[str, object] = _changes(draft, states, tz)
    start = states.get("window_start")
    if sent_at is not None and isinstance(start, datetime):
        extra["starts"] = _starts(start, as_utc(sent_at, "sent_at"), tz)
    return {
        **extra,
        "kind": draft.kind,
        "title": one_line(draft.subject_title) or one_line(draft.subject),
        "customer_name": one_line(draft.customer_name) or one_line(draft.customer),
        "subject_kind": draft.subject_kind,
        "subject_id": draft.subject,
        "timezone": draft.timezone,
        "support_contact": draft.support_contact,
        "support_href": support_href(draft.support_contact),
        "sender": draft.sender,
        "communication": one_line(draft.communication),
        "stated": data,
        "details": details,
        "cancelled": bool(draft.invitation and draft.invitation.method == "CANCEL"),
        "invitation": draft.invitation is not None,
    }


def _subject_suffix(draft: Draft, states: Mapping[str, object], tz: tzinfo) -> str:
    start, end = states.get("window_start"), states.get("window_end")
    if draft.kind == "extension":
        if isinstance(states.get("end"), datetime):
            return "new end " + format_local(states["end"], tz, year=False)  # type: ignore[arg-type]
        if isinstance(states.get("next_update_by"), datetime):
            nxt = states["next_update_by"]
            return "next update by " + format_local(nxt, tz, year=False)  # type: ignore[arg-type]
    if isinstance(start, datetime) and isinstance(end, datetime):
        return format_window(start, end, tz)
    if draft.kind == "release" and draft.context.get("release_at"):
        release_at = as_utc(draft.context["release_at"], "context.release_at")
        return format_local(release_at, tz, year=False)
    return ""


def _subject_prefix(draft: Draft) -> str:
    if draft.kind == "advance_notice" and draft.context.get("previous_window_start"):
        return "Maintenance rescheduled"
    if draft.kind == "extension" and draft.context.get("update_since"):
        return "Maintenance update"
    if draft.kind == "incident" and draft.context.get("severity"):
        return f"{one_line(draft.context['severity']).capitalize()} incident"
    if draft.kind == "other" and draft.invitation and draft.invitation.method == "CANCEL":
        return "Maintenance cancelled"
    if draft.kind == "other":
        return f"{draft.subject_kind.capitalize()} update"
    return _SUBJECT_PREFIX[draft.kind]


def subject_line(draft: Draft) -> str:
    """The Subject: "[Scheduled maintenance] <title>: Tue 10 Mar 09:00-11:00 CET" (one line)."""
    _check_kind(draft.kind)
    title = one_line(draft.subject_title, MAX_SUBJECT_TITLE) or one_line(draft.subject)
    suffix = _subject_suffix(draft, stated(draft), zone(draft.timezone))
    text = f"[{_subject_prefix(draft)}] {title}"
    return one_line(f"{text}: {suffix}" if suffix else text)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise RenderError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")


# ---------------------------------------------------------------- invitation


def invitation_ics(draft: Draft, sent_at: datetime) -> bytes:
    """The iCalendar object (METHOD REQUEST or CANCEL) for draft.invitation.

    The part shared by every customer of a maintenance version is built once
    (cached); DTSTAMP and the ATTENDEE lines are added per message, all
    serialised by icalendar."""
    inv = draft.invitation
    if inv is None:
        raise RenderError("invitation: the draft has none")
    _check_invitation(inv)
    summary = one_line(inv.summary) or one_line(draft.subject_title)
    head, tail = _ics_frame(inv, address(draft.sender, "sender"), summary, _ics_description(draft))
    stamp = b"DTSTAMP:" + vDDDTypes(as_utc(sent_at, "sent_at")).to_ical() + b"\r\n"
    recipients = dict.fromkeys(address(to, "to") for to in draft.to)
    return head + stamp + b"".join(_attendee_line(to) for to in recipients) + tail


_LINE_MAKER = Event()  # only its content_line() is used: icalendar's own line encoding


@functools.lru_cache(maxsize=8192)
def _attendee_line(addr: str) -> bytes:
    """ATTENDEE;ROLE=REQ-PARTICIPANT;RSVP=FALSE:mailto:ADDR, folded, with CRLF."""
    attendee = vCalAddress(f"mailto:{addr}")
    attendee.params["ROLE"] = "REQ-PARTICIPANT"
    attendee.params["RSVP"] = "FALSE"
    return _LINE_MAKER.content_line("ATTENDEE", attendee).to_ical() + b"\r\n"


@functools.lru_cache(maxsize=1024)
def _ics_frame(
    inv: Invitation, organizer: str, summary: str, description: str
) -> tuple[bytes, bytes]:
    """The calendar without DTSTAMP/ATTENDEE, split where those lines go (before END:VEVENT)."""
    event = Event()
    event.add("uid", inv.uid)
    event.add("sequence", inv.sequence)
    event.add("dtstart", as_utc(inv.start, "invitation.start"))
    event.add("dtend", as_utc(inv.end, "invitation.end"))
    event.add("summary", summary)
    event.add("description", description)
    event.add("status", "CANCELLED" if inv.method == "CANCEL" else "CONFIRMED")
    event.add("transp", "TRANSPARENT")
    event.add("organizer", vCalAddress(f"mailto:{organizer}"))
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", inv.method)
    cal.add_component(event)
    head, end, tail = cal.to_ical().partition(b"END:VEVENT\r\n")
    return head, end + tail


def _check_invitation(inv: Invitation) -> None:
    if inv.method not in ("REQUEST", "CANCEL"):
        raise RenderError(f"invitation.method: {inv.method!r} is not REQUEST or CANCEL")
    if not one_line(inv.uid) or one_line(inv.uid) != inv.uid:
        raise RenderError(f"invitation.uid: {inv.uid!r} must be one non-empty line")
    start, end = as_utc(inv.start, "invitation.start"), as_utc(inv.end, "invitation.end")
    if end <= start:
        raise RenderError("invitation: end must be after start")


def _ics_description(draft: Draft) -> str:
    lines = []
    impact = draft.states.get("impact")
    if isinstance(impact, str) and impact.strip():
        lines.append(f"Anticipated impact: {impact.strip()}")
    lines.append(f"Support: {draft.support_contact}")
    return "\n".join(lines)


# ---------------------------------------------------------------- MIME
# Headers are stored pre-folded with EmailMessage.set_raw() (what the parser
# does): the email package then parses a header only when it is read and
# emits it as is, instead of parsing and refolding every header of every
# message (most of the rendering time otherwise). Values are validated or
# flattened to one line first, so no CR/LF of ours reaches a header.


def fold(name: str, value: str) -> str:
    """VALUE folded for header NAME (lines <= 78): ASCII at spaces, anything else as RFC 2047."""
    if not value.isascii() or "=?" in value:
        # Encode everything ourselves: the header parser would decode
        # encoded words found in customer text (and could unfold CR/LF).
        encoded = Header(value, "utf-8", maxlinelen=_MAX_LINE, header_name=name)
        return encoded.encode(linesep="\n")
    words = value.split(" ")
    lines: list[str] = []
    line, room = words[0], _MAX_LINE - len(name) - 2
    for word in words[1:]:
        if len(line) + 1 + len(word) <= room:
            line = f"{line} {word}"
        else:
            lines.append(line)
            line, room = word, _MAX_LINE - 1
    lines.append(line)
    return "\n ".join(lines)


def _boundary(level: str) -> str:
    """A fixed boundary per nesting level (deterministic; parsed once, then cached).
    A body that contains it is sent quoted-printable, which cannot contain "=_"."""
    return f"=_forewarn_{level}_0b7c41f2d9e8"


def _multipart_type(subtype: str, boundary: str) -> str:
    return f'multipart/{subtype};\n boundary="{boundary}"'


def _text_part(text: str, subtype: str, params: str = "") -> EmailMessage:
    """A text/SUBTYPE part in UTF-8: 7bit when plain ASCII, quoted-printable otherwise."""
    body = text.replace("\r\n", "\n").replace("\r", "\n")
    if not body.endswith("\n"):
        body += "\n"
    plain = (
        body.isascii()
        and _BOUNDARY_MARK not in body
        and all(len(line) <= _MIME_TEXT_LINE for line in body.split("\n"))
    )
    if not plain:
        body = quopri.encodestring(body.encode("utf-8")).decode("ascii")
    part = EmailMessage(policy=POLICY)
    part.set_raw("Content-Type", f'text/{subtype}; charset="utf-8"{params}')
    part.set_raw("Content-Transfer-Encoding", "7bit" if plain else "quoted-printable")
    part.set_payload(body)
    return part


def _content(draft: Draft, sent_at: datetime) -> tuple[str, list[EmailMessage]]:
    """The top-level Content-Type and its parts: alternative (text, HTML) [+ invitation]."""
    data = template_data(draft, sent_at)
    texts = [
        _text_part(_template(draft.kind, "txt").render(data), "plain"),
        _text_part(_template(draft.kind, "html").render(data), "html"),
    ]
    alt_type = _multipart_type("alternative", _boundary("alt"))
    if draft.invitation is None:
        return alt_type, texts
    alternative = EmailMessage(policy=POLICY)
    alternative.set_raw("Content-Type", alt_type)
    alternative.set_payload(texts)  # type: ignore[arg-type]
    ics = invitation_ics(draft, sent_at).decode("utf-8")
    calendar = _text_part(ics, "calendar", f"; method={draft.invitation.method}")
    calendar.set_raw("Content-Disposition", f'attachment; filename="{ICS_FILENAME}"')
    return _multipart_type("mixed", _boundary("mix")), [alternative, calendar]


def _headers(draft: Draft, sent_at: datetime, msg_id: str) -> list[tuple[str, str]]:
    """The message headers in order, as (name, unfolded one-line value)."""
    recipients = [address(to, "to") for to in draft.to]
    if not recipients:
        raise RenderError("to: at least one recipient is required")
    return [
        ("From", address(draft.sender, "sender")),
        ("To", ", ".join(dict.fromkeys(recipients))),
        ("Subject", subject_line(draft)),
        ("Date", format_datetime(sent_at)),
        ("Message-ID", msg_id),
        *_thread(draft, msg_id),
        ("MIME-Version", "1.0"),
        ("Auto-Submitted", "auto-generated"),
        ("X-Forewarn-Communication", one_line(draft.communication)),
        ("X-Forewarn-Kind", draft.kind),
        ("X-Forewarn-Policy", one_line(draft.policy_digest)),
    ]


def _thread(draft: Draft, msg_id: str) -> list[tuple[str, str]]:
    """In-Reply-To and References to the first message about the subject (a later one is its reply), when
    the draft names one (context "thread") that is a valid msg-id other than its own."""
    thread = draft.context.get("thread")
    if not isinstance(thread, str):
        return []
    try:
        first = message_id(thread)
    except RenderError:
        return []  # a Message-ID recorded by another sender that is not one: no thread rather than no mail
    return [] if first == msg_id else [("In-Reply-To", first), ("References", first)]


def render(draft: Draft, sent_at: datetime) -> EmailMessage:
    """The complete message for DRAFT, dated SENT_AT; the same inputs give the same bytes."""
    _check_kind(draft.kind)
    sent_at = as_utc(sent_at, "sent_at")
    msg_id = message_id(draft.message_id)
    content_type, parts = _content(draft, sent_at)
    msg = EmailMessage(policy=POLICY)
    for name, value in _headers(draft, sent_at, msg_id):
        msg.set_raw(name, fold(name, value))
    msg.set_raw("Content-Type", content_type)
    msg.set_payload(parts)  # type: ignore[arg-type]
    return msg


_NEWLINES = re.compile(r"\r\n|\r|\n")


def wire_bytes(msg: EmailMessage) -> bytes:
    """`msg.as_bytes(policy=POLICY)`, several times faster for the messages render() builds.

    The email generator re-reads and re-parses each part's Content-Type, clones
    itself per part and writes through nested buffers: a good part of a send's
    CPU time. This writes the same bytes directly for what render() produces
    (raw header values, text payloads in ASCII, multiparts with a boundary, no
    preamble or epilogue) and leaves anything else to the generator.
    """
    out: list[bytes] = []
    if _flatten(msg, out):
        return b"".join(out)
    return msg.as_bytes(policy=POLICY)


def _header_bytes(name: str, value: Any) -> bytes:
    """POLICY.fold_binary(name, value), without its general machinery for the usual case: an
    ASCII raw value whose lines fit (which it writes as is, joined with CRLF)."""
    limit = POLICY.max_line_length
    if type(value) is str and value.isascii():  # not a header object (msg["X"] = ...): those fold themselves
        lines = value.splitlines()
        if lines and len(lines[0]) + len(name) + 2 <= limit and all(len(x) <= limit for x in lines[1:]):
            return (name + ": " + "\r\n".join(lines) + "\r\n").encode("ascii")
    return POLICY.fold_binary(name, value)


def _flatten(msg: EmailMessage, out: list[bytes]) -> bool:
    """Append MSG's bytes as BytesGenerator(policy=POLICY, mangle_from_=False) writes them;
    False (OUT then unusable) when MSG is not of the simple shape this handles."""
    if msg.preamble is not None or msg.epilogue is not None or "content-type" not in msg:
        return False
    for name, value in msg.raw_items():
        out.append(_header_bytes(name, value))
    out.append(b"\r\n")
    payload = msg._payload  # type: ignore[attr-defined]
    maintype = msg.get_content_maintype()
    if maintype == "multipart":
        boundary = msg.get_boundary()
        if not isinstance(payload, list) or not boundary or msg.get_content_subtype() in ("signed", "digest"):
            return False
        dash = b"--" + boundary.encode("ascii")
        out.append(dash + b"\r\n")
        for i, part in enumerate(payload):
            if i:
                out.append(b"\r\n" + dash + b"\r\n")
            if not isinstance(part, EmailMessage) or not _flatten(part, out):
                return False
        out.append(b"\r\n" + dash + b"--\r\n")
        return True
    if maintype == "message" or not (payload is None or (isinstance(payload, str) and payload.isascii())):
        return False
    if payload:
        out.append(_NEWLINES.sub("\r\n", payload).encode("ascii"))
    return True


def render_many(drafts: Iterable[Draft], sent_at: datetime) -> list[EmailMessage]:
    """render() for each draft, all dated SENT_AT."""
    return [render(draft, sent_at) for draft in drafts]
