"""Rendering: headers, alternatives, stated facts, ICS invitations, determinism and injection safety."""

from __future__ import annotations

import dataclasses
import email
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from importlib import resources

import pytest
from hypothesis import given
from hypothesis import strategies as st
from icalendar import Calendar

from forewarn.engine.draft import Draft, Invitation
from forewarn.engine.render import (
    KINDS,
    POLICY,
    RenderError,
    address,
    format_window,
    one_line,
    render,
    render_many,
    subject_line,
    zone,
)

SENT_AT = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)
START = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
END = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)


def make_draft(**changes: object) -> Draft:
    draft = Draft(
        communication="fw-0123456789abcdef",
        message_id="<fw-0123456789abcdef@example.com>",
        kind="advance_notice",
        subject_kind="maintenance",
        subject="mx-1",
        subject_title="Database upgrade",
        customer="northwind",
        customer_name="Northwind",
        timezone="Europe/Paris",
        sender="enterprise-support@example.com",
        to=("ops@northwind.example", "cto@northwind.example"),
        support_contact="enterprise-support@example.com",
        states={"window_start": START, "window_end": END, "impact": "Search may be slow"},
        context={"impact_summary": "Search may be slow"},
        invitation=Invitation(
            uid="mx-1@forewarn", sequence=0, method="REQUEST", start=START, end=END,
            summary="Database upgrade",
        ),
        reasons=("advance-notice/maintenance:mx-1/northwind/x/y",),
        policy_digest="sha256:feedface",
    )
    return dataclasses.replace(draft, **changes)  # type: ignore[arg-type]


def reparse(msg: EmailMessage) -> EmailMessage:
    """What a receiver sees: the message parsed back from its wire bytes."""
    return email.message_from_bytes(msg.as_bytes(), policy=POLICY)  # type: ignore[return-value]


def text_of(msg: EmailMessage, subtype: str) -> str:
    part = msg.get_body(preferencelist=(subtype,))
    assert part is not None and part.get_content_type() == f"text/{subtype}"
    return part.get_content()


def calendar_of(msg: EmailMessage) -> tuple[EmailMessage, Calendar]:
    parts = [p for p in msg.walk() if p.get_content_type() == "text/calendar"]
    assert len(parts) == 1
    return parts[0], Calendar.from_ical(parts[0].get_content())


# ---------------------------------------------------------------- headers and structure


def test_headers_of_an_advance_notice() -> None:
    msg = reparse(render(make_draft(), SENT_AT))
    assert msg["From"] == "enterprise-support@example.com"
    assert msg["To"] == "ops@northwind.example, cto@northwind.example"
    assert msg["Subject"] == "[Scheduled maintenance] Database upgrade: Tue 10 Mar 09:00-11:00 CET (UTC+01:00)"
    assert msg["Message-ID"] == "<fw-0123456789abcdef@example.com>"
    assert msg["Date"] == "Mon, 02 Mar 2026 09:15:00 +0000"
    assert msg["MIME-Version"] == "1.0"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Forewarn-Communication"] == "fw-0123456789abcdef"
    assert msg["X-Forewarn-Kind"] == "advance_notice"
    assert msg["X-Forewarn-Policy"] == "sha256:feedface"


def test_message_id_gets_angle_brackets() -> None:
    msg = render(make_draft(message_id="fw-1@example.com"), SENT_AT)
    assert msg["Message-ID"] == "<fw-1@example.com>"


def test_structure_with_invitation() -> None:
    msg = reparse(render(make_draft(), SENT_AT))
    assert msg.get_content_type() == "multipart/mixed"
    alternative, calendar = msg.get_payload()  # type: ignore[misc]
    assert alternative.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in alternative.get_payload()] == ["text/plain", "text/html"]
    assert calendar.get_content_type() == "text/calendar"
    assert calendar.get_param("method") == "REQUEST"
    assert calendar.get_filename() == "invite.ics"


def test_structure_without_invitation() -> None:
    msg = reparse(render(make_draft(invitation=None), SENT_AT))
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.get_payload()] == ["text/plain", "text/html"]  # type: ignore[union-attr]


def test_lines_are_crlf_and_short() -> None:
    data = render(make_draft(subject_title="A rather long maintenance title " * 5), SENT_AT).as_bytes()
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"\n" not in head.replace(b"\r\n", b"")
    assert all(len(line) <= 78 for line in head.split(b"\r\n"))


def test_long_subject_is_folded_and_unfolds_to_the_same_text() -> None:
    title = "A rather long maintenance title " * 5
    msg = reparse(render(make_draft(subject_title=title), SENT_AT))
    assert msg["Subject"] == f"[Scheduled maintenance] {one_line(title)}: Tue 10 Mar 09:00-11:00 CET (UTC+01:00)"


def test_non_ascii_title_is_encoded_and_decoded_back() -> None:
    title = "Mise à jour de la base – 数据库"
    raw = render(make_draft(subject_title=title, customer_name="Société Générale"), SENT_AT)
    assert raw.as_bytes().isascii()
    msg = reparse(raw)
    assert msg["Subject"].startswith(f"[Scheduled maintenance] {title}: ")
    assert title in text_of(msg, "plain")
    assert "Société Générale" in text_of(msg, "html")


def test_duplicate_recipients_appear_once() -> None:
    msg = render(make_draft(to=("a@x.example", "a@x.example", "b@x.example")), SENT_AT)
    assert msg["To"] == "a@x.example, b@x.example"


def test_render_many_renders_each() -> None:
    drafts = [make_draft(communication=f"c{i}", message_id=f"<c{i}@example.com>") for i in range(3)]
    msgs = render_many(drafts, SENT_AT)
    assert [m["Message-ID"] for m in msgs] == ["<c0@example.com>", "<c1@example.com>", "<c2@example.com>"]


# ---------------------------------------------------------------- what the message states


def test_times_in_customer_zone_and_utc() -> None:
    msg = reparse(render(make_draft(), SENT_AT))
    for body in (text_of(msg, "plain"), text_of(msg, "html")):
        assert "Tue 10 Mar 2026 09:00 CET (UTC+01:00)" in body
        assert "2026-03-10 08:00 UTC" in body
        assert "Tue 10 Mar 2026 11:00 CET (UTC+01:00)" in body
        assert "2026-03-10 10:00 UTC" in body
        assert "Search may be slow" in body
        assert "Europe/Paris" in body
        assert "enterprise-support@example.com" in body


def test_other_time_zone() -> None:
    msg = render(make_draft(timezone="America/Chicago"), SENT_AT)
    assert msg["Subject"].endswith(": Tue 10 Mar 03:00-05:00 CDT (UTC-05:00)")
    assert "Tue 10 Mar 2026 03:00 CDT (UTC-05:00) (2026-03-10 08:00 UTC)" in text_of(msg, "plain")


@pytest.mark.parametrize(
    ("key", "value", "label", "shown"),
    [
        ("window_start", START, "Window start", "Tue 10 Mar 2026 09:00 CET (UTC+01:00)"),
        ("window_end", END, "Window end", "Tue 10 Mar 2026 11:00 CET (UTC+01:00)"),
        ("impact", "Search may be slow", "Anticipated impact", "Search may be slow"),
        ("reason", "Index rebuild is slower than planned", "Reason", "Index rebuild"),
        ("end", END + timedelta(hours=2), "New target end", "Tue 10 Mar 2026 13:00 CET (UTC+01:00)"),
        ("next_update_by", END + timedelta(hours=1), "Next update by", "Tue 10 Mar 2026 12:00 CET (UTC+01:00)"),
    ],
)
def test_each_state_is_stated_exactly_when_present(
    key: str, value: object, label: str, shown: str
) -> None:
    """The message states a fact if and only if draft.states holds it."""
    draft = make_draft(kind="extension", states={key: value}, context={}, invitation=None)
    with_it = reparse(render(draft, SENT_AT))
    without = reparse(render(dataclasses.replace(draft, states={}), SENT_AT))
    for subtype in ("plain", "html"):
        assert label in text_of(with_it, subtype)
        assert shown in text_of(with_it, subtype)
        assert label not in text_of(without, subtype)
        assert shown not in text_of(without, subtype)


def test_unknown_state_is_refused() -> None:
    with pytest.raises(RenderError, match=r"states\.duration"):
        render(make_draft(states={"duration": "2h"}), SENT_AT)


def test_naive_state_time_is_refused() -> None:
    with pytest.raises(RenderError, match="no UTC offset"):
        render(make_draft(states={"window_start": datetime(2026, 3, 10, 8)}), SENT_AT)


def test_states_given_as_rfc3339_text() -> None:
    draft = make_draft(states={"window_start": "2026-03-10T08:00:00Z", "window_end": "2026-03-10T10:00:00Z"})
    assert render(draft, SENT_AT)["Subject"].endswith("Tue 10 Mar 09:00-11:00 CET (UTC+01:00)")


def test_extension_states_reason_and_new_end() -> None:
    draft = make_draft(
        kind="extension",
        states={"reason": "Index rebuild is slower", "end": END + timedelta(hours=2),
                "next_update_by": END + timedelta(hours=1)},
    )
    msg = reparse(render(draft, SENT_AT))
    assert msg["Subject"] == "[Maintenance extended] Database upgrade: new end Tue 10 Mar 13:00 CET (UTC+01:00)"
    plain = text_of(msg, "plain")
    assert "Reason:             Index rebuild is slower" in plain
    assert "New target end:     Tue 10 Mar 2026 13:00 CET (UTC+01:00) (2026-03-10 12:00 UTC)" in plain
    assert "Next update by:     Tue 10 Mar 2026 12:00 CET (UTC+01:00) (2026-03-10 11:00 UTC)" in plain


def test_extension_with_next_update_only() -> None:
    draft = make_draft(kind="extension", states={"reason": "r", "next_update_by": END})
    assert render(draft, SENT_AT)["Subject"].endswith(": next update by Tue 10 Mar 11:00 CET (UTC+01:00)")


def test_impact_summary_not_repeated_when_it_is_the_stated_impact() -> None:
    plain = text_of(render(make_draft(), SENT_AT), "plain")
    assert plain.count("Search may be slow") == 1


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_with_and_without_states(kind: str) -> None:
    for states in ({}, {"window_start": START, "window_end": END, "impact": "Slow"}):
        msg = reparse(render(make_draft(kind=kind, states=states), SENT_AT))
        assert msg["X-Forewarn-Kind"] == kind
        assert "Database upgrade" in text_of(msg, "plain")
        assert "Database upgrade" in text_of(msg, "html")


def test_every_kind_has_both_templates_in_package_data() -> None:
    mail = resources.files("forewarn.templates").joinpath("mail")
    for kind in KINDS:
        assert mail.joinpath(f"{kind}.txt.j2").is_file()
        assert mail.joinpath(f"{kind}.html.j2").is_file()


@pytest.mark.parametrize(
    ("changes", "subject"),
    [
        ({"kind": "start_reminder"}, "[Maintenance starting] Database upgrade: Tue 10 Mar 09:00-11:00 CET (UTC+01:00)"),
        ({"kind": "closing", "states": {}}, "[Maintenance complete] Database upgrade"),
        ({"kind": "emergency"}, "[Emergency maintenance] Database upgrade: Tue 10 Mar 09:00-11:00 CET (UTC+01:00)"),
        ({"kind": "incident", "states": {}, "subject_kind": "incident",
          "context": {"severity": "critical"}}, "[Critical incident] Database upgrade"),
        ({"kind": "release", "states": {}, "subject_kind": "release",
          "context": {"release_at": START}}, "[Release] Database upgrade: Tue 10 Mar 09:00 CET (UTC+01:00)"),
        ({"kind": "other", "states": {}}, "[Maintenance update] Database upgrade"),
    ],
)
def test_subject_per_kind(changes: dict[str, object], subject: str) -> None:
    draft = make_draft(invitation=None, **changes)
    assert subject_line(draft) == subject
    assert render(draft, SENT_AT)["Subject"] == subject


def test_incident_shows_severity_and_summary() -> None:
    draft = make_draft(kind="incident", subject_kind="incident", states={}, invitation=None,
                       context={"severity": "critical", "summary": "Patch for CVE-2026-0001"})
    plain = text_of(render(draft, SENT_AT), "plain")
    assert "Severity:           critical" in plain
    assert "Summary:            Patch for CVE-2026-0001" in plain


def test_emergency_shows_the_critical_issue() -> None:
    draft = make_draft(kind="emergency", context={"emergency_reason": "Certificate expiry"})
    assert "Critical issue:     Certificate expiry" in text_of(render(draft, SENT_AT), "plain")


def test_window_across_a_dst_change_names_both_zones() -> None:
    start = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    end = datetime(2026, 3, 29, 2, 0, tzinfo=UTC)
    assert format_window(start, end, zone("Europe/Paris")) == (
        "Sun 29 Mar 01:30 CET (UTC+01:00) - Sun 29 Mar 04:00 CEST (UTC+02:00)"
    )


def test_window_across_midnight_names_both_days() -> None:
    start = datetime(2026, 3, 10, 22, 0, tzinfo=UTC)
    end = datetime(2026, 3, 11, 1, 0, tzinfo=UTC)
    assert format_window(start, end, zone("UTC")) == "Tue 10 Mar 22:00 - Wed 11 Mar 01:00 UTC"


def test_numeric_zone_names_read_as_utc_offsets() -> None:
    assert format_window(START, END, zone("Asia/Riyadh")) == "Tue 10 Mar 11:00-13:00 UTC+03:00"


# ---------------------------------------------------------------- invitation


def test_invitation_request() -> None:
    part, cal = calendar_of(reparse(render(make_draft(), SENT_AT)))
    assert part.get_param("method") == "REQUEST"
    assert cal["METHOD"] == "REQUEST"
    (event,) = cal.walk("VEVENT")
    assert str(event["UID"]) == "mx-1@forewarn"
    assert event["SEQUENCE"] == 0
    assert event.decoded("DTSTART") == START
    assert event.decoded("DTEND") == END
    assert event.decoded("DTSTAMP") == SENT_AT
    assert str(event["STATUS"]) == "CONFIRMED"
    assert str(event["SUMMARY"]) == "Database upgrade"
    assert str(event["ORGANIZER"]) == "mailto:enterprise-support@example.com"
    assert [str(a) for a in event["ATTENDEE"]] == [
        "mailto:ops@northwind.example", "mailto:cto@northwind.example"]
    assert "Search may be slow" in str(event["DESCRIPTION"])
    assert b"DTSTART:20260310T080000Z" in part.get_payload(decode=True)


def test_invitation_cancel() -> None:
    inv = Invitation(uid="mx-1@forewarn", sequence=3, method="CANCEL", start=START, end=END,
                     summary="Database upgrade")
    msg = reparse(render(make_draft(kind="other", states={}, invitation=inv), SENT_AT))
    assert msg["Subject"] == "[Maintenance cancelled] Database upgrade"
    assert "has been cancelled" in text_of(msg, "plain")
    part, cal = calendar_of(msg)
    assert part.get_param("method") == "CANCEL"
    assert cal["METHOD"] == "CANCEL"
    (event,) = cal.walk("VEVENT")
    assert str(event["STATUS"]) == "CANCELLED"
    assert event["SEQUENCE"] == 3
    assert str(event["UID"]) == "mx-1@forewarn"


def test_invitation_uid_stable_and_sequence_as_given() -> None:
    inv = dataclasses.replace(make_draft().invitation, sequence=2)  # type: ignore[type-var]
    a = calendar_of(render(make_draft(), SENT_AT))[1]
    b = calendar_of(render(make_draft(invitation=inv, customer="contoso"), SENT_AT))[1]
    (ea,), (eb,) = a.walk("VEVENT"), b.walk("VEVENT")
    assert str(ea["UID"]) == str(eb["UID"])
    assert (ea["SEQUENCE"], eb["SEQUENCE"]) == (0, 2)


def test_invitation_summary_with_ics_special_characters() -> None:
    inv = dataclasses.replace(make_draft().invitation, summary="DB; upgrade, part\\2")  # type: ignore[type-var]
    (event,) = calendar_of(render(make_draft(invitation=inv), SENT_AT))[1].walk("VEVENT")
    assert str(event["SUMMARY"]) == "DB; upgrade, part\\2"


def test_invitation_with_end_before_start_is_refused() -> None:
    inv = dataclasses.replace(make_draft().invitation, end=START)  # type: ignore[type-var]
    with pytest.raises(RenderError, match="end must be after start"):
        render(make_draft(invitation=inv), SENT_AT)


# ---------------------------------------------------------------- determinism


def test_same_draft_same_bytes() -> None:
    assert render(make_draft(), SENT_AT).as_bytes() == render(make_draft(), SENT_AT).as_bytes()


def test_only_dates_depend_on_sent_at() -> None:
    a = render(make_draft(), SENT_AT).as_bytes().splitlines()
    b = render(make_draft(), SENT_AT + timedelta(minutes=1)).as_bytes().splitlines()
    diff = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
    assert [x.split(b":")[0] for x, _ in diff] == [b"Date", b"DTSTAMP"]


# ---------------------------------------------------------------- security


def test_template_syntax_in_customer_text_stays_literal() -> None:
    title = "{{ 7*7 }} {% for x in range(3) %}x{% endfor %} {{ ''.__class__ }}"
    draft = make_draft(subject_title=title, customer_name="{{ config }}",
                       states={"impact": "{{ 6*7 }}"}, invitation=None)
    msg = reparse(render(draft, SENT_AT))
    assert "{{ 7*7 }}" in msg["Subject"]
    for subtype in ("plain", "html"):
        body = text_of(msg, subtype)
        assert "49" not in body and "42" not in body and "xxx" not in body
        assert "{{ 6*7 }}" in body
        assert "{{ config }}" in body
    assert "{{ 7*7 }} {% for x in range(3) %}x{% endfor %}" in text_of(msg, "plain")


def test_html_is_escaped_and_plain_text_is_not() -> None:
    draft = make_draft(subject_title="<script>alert('x')</script>", states={"impact": "a & b <i>"},
                       invitation=None)
    msg = reparse(render(draft, SENT_AT))
    html = text_of(msg, "html")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "a &amp; b &lt;i&gt;" in html
    assert "<script>alert('x')</script>" in text_of(msg, "plain")


@pytest.mark.parametrize("field", ["subject_title", "communication", "policy_digest"])
def test_crlf_in_header_values_cannot_add_headers(field: str) -> None:
    draft = make_draft(**{field: "x\r\nBcc: evil@attacker.example\r\n\r\nbody"})
    data = render(draft, SENT_AT).as_bytes()
    msg = email.message_from_bytes(data, policy=POLICY)
    assert msg["Bcc"] is None
    assert b"\r\nBcc:" not in data.split(b"\r\n\r\n", 1)[0]
    assert [k for k in msg if k.lower() == "bcc"] == []


def test_unicode_line_separators_are_flattened_in_headers() -> None:
    msg = render(make_draft(subject_title="a\u2028Bcc: x\u0085y\x0bz"), SENT_AT)
    assert msg["Subject"].startswith("[Scheduled maintenance] a Bcc: x y z:")
    assert reparse(msg)["Bcc"] is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sender", "not an address"),
        ("sender", "a@b.example, c@d.example"),
        ("sender", "Support <support@example.com>"),
        ("sender", "support@example.com\r\nBcc: evil@x.example"),
        ("to", ("ops@northwind.example", "evil@x.example\r\nBcc: y@x.example")),
        ("to", ("nodomain@",)),
        ("to", ("ops@localhost",)),
        ("to", ('"o p"@northwind.example',)),
        ("to", ("ops@northwind.example ",)),
        ("to", ()),
        ("message_id", "no-at-sign"),
        ("message_id", "<a@b>\r\nBcc: x@y"),
        ("message_id", "<a b@c>"),
    ],
)
def test_invalid_addresses_and_ids_are_refused(field: str, value: object) -> None:
    with pytest.raises(RenderError):
        render(make_draft(**{field: value}), SENT_AT)


def test_addresses_accepted_are_those_the_event_log_accepts() -> None:
    models = pytest.importorskip("forewarn.events.models")
    samples = ["ops@northwind.example", "o.p+x@a-b.example", "o..p@x.example", "o@x", "ö@x.example",
               "o@x.example.", "o@-x.example", "o'neil@x.example", '"o"@x.example']
    for sample in samples:
        logged = re.fullmatch(models.EMAIL_PATTERN, sample) is not None
        try:
            address(sample)
            rendered = True
        except RenderError:
            rendered = False
        assert rendered == logged, sample


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"kind": "newsletter"}, "kind"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
    ],
)
def test_bad_draft_fields_are_refused(changes: dict[str, object], match: str) -> None:
    with pytest.raises(RenderError, match=match):
        render(make_draft(**changes), SENT_AT)


def test_naive_sent_at_is_refused() -> None:
    with pytest.raises(RenderError, match="sent_at"):
        render(make_draft(), datetime(2026, 3, 2, 9, 15))


def test_boundary_text_in_customer_text_cannot_split_the_message() -> None:
    fake = "--=_forewarn_alt_0b7c41f2d9e8\r\nContent-Type: text/html\r\n\r\n<b>fake</b>"
    msg = reparse(render(make_draft(subject_title=fake, invitation=None), SENT_AT))
    parts = msg.get_payload()
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]  # type: ignore[union-attr]
    assert parts[0]["Content-Transfer-Encoding"] == "quoted-printable"  # type: ignore[index]
    assert "=_forewarn_alt_0b7c41f2d9e8" in text_of(msg, "plain")


@pytest.mark.parametrize(
    ("contact", "href"),
    [
        ("support@example.com", 'href="mailto:support@example.com"'),
        ("https://support.example.com/new?a=1&b=2", 'href="https://support.example.com/new?a=1&amp;b=2"'),
        ("javascript:alert(1)", None),
    ],
)
def test_support_contact_link(contact: str, href: str | None) -> None:
    html = text_of(render(make_draft(support_contact=contact, invitation=None), SENT_AT), "html")
    if href is None:
        assert "href=" not in html
    else:
        assert href in html


@given(st.text(max_size=120), st.text(max_size=60))
def test_any_customer_text_renders_safely(title: str, name: str) -> None:
    states = {"window_start": START, "window_end": END, "impact": title}
    draft = make_draft(subject_title=title, customer_name=name, states=states)
    data = render(draft, SENT_AT).as_bytes()
    msg = email.message_from_bytes(data, policy=POLICY)
    assert sorted(set(msg.keys())) == sorted(
        ["From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Auto-Submitted",
         "X-Forewarn-Communication", "X-Forewarn-Kind", "X-Forewarn-Policy", "Content-Type"]
    )
    expected_title = one_line(title, 200) or "mx-1"
    assert msg["Subject"] == f"[Scheduled maintenance] {expected_title}: Tue 10 Mar 09:00-11:00 CET (UTC+01:00)"
    assert len(list(msg.walk())) == 5


@pytest.mark.parametrize(
    "title",
    [
        "=?utf-8?q?a=0D=0ABcc:_evil@x.example?=",
        "=?utf-8?b?YQ0KQmNjOiBldmlsQHguZXhhbXBsZQ==?=",
        "x =?utf-8?b?w6k=?= y",
    ],
)
def test_encoded_word_syntax_in_customer_text_stays_literal(title: str) -> None:
    """The header parser decodes RFC 2047 words: customer text must not be taken for one."""
    msg = reparse(render(make_draft(subject_title=title), SENT_AT))
    assert msg["Bcc"] is None
    assert msg["Subject"] == f"[Scheduled maintenance] {title}: Tue 10 Mar 09:00-11:00 CET (UTC+01:00)"


_PIECES = st.sampled_from(
    ["=?utf-8?q?", "=?utf-8?b?", "=0D=0A", "Bcc: x@y.example", "?=", " ", "é", "\r\n", "a", "\u2028"]
)


@given(st.lists(_PIECES, max_size=12).map("".join))
def test_hostile_titles_never_add_headers(title: str) -> None:
    msg = reparse(render(make_draft(subject_title=title, invitation=None), SENT_AT))
    assert msg["Bcc"] is None
    assert msg["Subject"] == subject_line(make_draft(subject_title=title))
