"""A message the engine decided to send: who, what it states, why (the planner's output, the renderer's input)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal


@dataclass(frozen=True)
class Invitation:
    """The calendar invitation attached to a maintenance notice (RFC 5545)."""

    uid: str  # stable per maintenance
    sequence: int  # rises with each reschedule / extension
    method: Literal["REQUEST", "CANCEL"]
    start: datetime  # UTC
    end: datetime  # UTC
    summary: str


@dataclass(frozen=True)
class Draft:
    """One e-mail to one customer about one subject, fully decided."""

    communication: str  # the communication id recorded in the log
    message_id: str  # RFC 5322 Message-ID, deterministic per obligation (retries reuse it)
    kind: str  # one of forewarn.events.models.COMMUNICATION_KINDS
    subject_kind: str  # maintenance | incident | release
    subject: str  # the subject's id
    subject_title: str  # the maintenance / incident / release title (customer-visible)
    customer: str
    customer_name: str
    timezone: str  # the customer's IANA zone: times are shown in it and in UTC
    sender: str  # From: per the policy's sender requirement
    to: tuple[str, ...]  # the customer's contacts
    support_contact: str  # where customers can reach support
    states: dict[str, object] = field(default_factory=dict)
    """Exactly what the message states, as recorded in `communication.sent.states`:
    window_start, window_end (datetime), impact (str), reason (str), end,
    next_update_by (datetime). The templates render these and nothing else
    of substance, so the record and the message cannot disagree."""
    context: dict[str, object] = field(default_factory=dict)
    """Further customer-visible text: impact_summary, incident summary and
    severity, release_at, emergency reason. Never used for decisions."""
    invitation: Invitation | None = None
    reasons: tuple[str, ...] = ()  # obligation keys this send fulfils: "rule/subject/customer/not_after"
    policy_digest: str = ""
    follow_up_of: str | None = None
    """Set on a resend of a message already recorded (same Message-ID, same content) to recipients
    the server refused the first time: the communication it follows up."""
    late: tuple[str, ...] = ()
    """The obligation keys among `reasons` whose deadline had passed unmet: this send is late."""
    resend_to: tuple[str, ...] = ()
    """A follow-up's envelope recipients: the refused ones (the message's To header stays as it was)."""


def _encode(value: object) -> object:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value.microsecond else value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _instant(text: object) -> object:
    if isinstance(text, str) and len(text) >= 20 and text[4] == "-" and text.endswith("Z"):
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return text
    return text


def draft_to_json(draft: Draft) -> dict[str, object]:
    """A JSON-safe form of the draft (persisted in the outbox so a retry resends it exactly)."""
    out = _encode(dict(draft.__dict__))
    assert isinstance(out, dict)
    if draft.invitation is not None:
        out["invitation"] = _encode(dict(draft.invitation.__dict__))
    return out


def draft_from_json(data: dict[str, object]) -> Draft:
    """Inverse of draft_to_json."""
    fields_ = dict(data)
    inv = fields_.get("invitation")
    if isinstance(inv, dict):
        fields_["invitation"] = Invitation(**{k: _instant(v) for k, v in inv.items()})  # type: ignore[arg-type]
    fields_["states"] = {k: _instant(v) for k, v in dict(fields_.get("states") or {}).items()}  # type: ignore[call-overload]
    fields_["context"] = {k: _instant(v) for k, v in dict(fields_.get("context") or {}).items()}  # type: ignore[call-overload]
    fields_["to"] = tuple(fields_.get("to") or ())  # type: ignore[arg-type]
    fields_["reasons"] = tuple(fields_.get("reasons") or ())  # type: ignore[arg-type]
    fields_["resend_to"] = tuple(fields_.get("resend_to") or ())  # type: ignore[arg-type]
    fields_["late"] = tuple(fields_.get("late") or ())  # type: ignore[arg-type]
    return Draft(**fields_)  # type: ignore[arg-type]
