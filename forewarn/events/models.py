"""Typed, validated events of the JSONL event log (the contract of spec/events.md)."""

from __future__ import annotations

import difflib
import functools
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, NamedTuple, Union

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "COMMUNICATION_KINDS",
    "ENTITY_OF",
    "EVENT_ADAPTER",
    "EVENT_CLASSES",
    "EVENT_TYPES",
    "REFERENCE_SOURCES",
    "SUBJECT_KINDS",
    "CommunicationKind",
    "CommunicationSent",
    "CustomerUpserted",
    "Event",
    "EventBase",
    "IncidentDeclared",
    "IncidentResolved",
    "MaintenanceCancelled",
    "MaintenanceCompleted",
    "MaintenanceExtended",
    "MaintenanceHealthy",
    "MaintenanceRescheduled",
    "MaintenanceScheduled",
    "MaintenanceStarted",
    "MetaKeys",
    "Reference",
    "ReleaseScheduled",
    "ReplyReceived",
    "States",
    "TicketOpened",
    "WaiverGranted",
    "canonical_json",
    "format_timestamp",
    "parse_timestamp",
    "share_fields_sets",
    "shorten",
]

# --------------------------------------------------------------------------- errors

CUSTOM_ERROR = "forewarn"
"""pydantic error type of every check written here; ctx carries `message` (and `field`)."""


def problem(message: str, field: str | None = None) -> PydanticCustomError:
    """A validation error in plain words, optionally attributed to another field."""
    ctx: dict[str, Any] = {"message": message}
    if field is not None:
        ctx["field"] = field
    return PydanticCustomError(CUSTOM_ERROR, "{message}", ctx)


def _raise_problems(problems: list[tuple[str, str]]) -> None:
    """Raise the (field, message) problems of a cross-field check, if any, as one error.

    The first is the error's `field`/`message`; the others ride along in ctx `more`.
    """
    if problems:
        (field, message), *more = problems
        ctx = {"message": message, "field": field, "more": tuple(more)}
        raise PydanticCustomError(CUSTOM_ERROR, "{message}", ctx)


def shorten(text: str, limit: int = 80) -> str:
    """User text quoted in a message, cut to a readable length."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def did_you_mean(word: str, candidates: list[str] | tuple[str, ...] | set[str]) -> str:
    """`; did you mean 'x'?` for the closest candidate, or ``""``."""
    folded = {c.casefold(): c for c in candidates}
    if word.casefold() in folded:
        return f"; did you mean '{folded[word.casefold()]}'?"
    best = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{best[0]}'?" if best else ""


# --------------------------------------------------------------------------- timestamps

_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})")
"""RFC 3339's layout, the offset included (its absence is the same error as any other departure from it)."""
WITH_OFFSET = "must be an RFC 3339 timestamp with offset"


def format_timestamp(value: datetime) -> str:
    """A UTC timestamp as printed everywhere: `2026-03-09T02:00:00Z`."""
    return orjson.dumps(value, option=orjson.OPT_UTC_Z).decode()[1:-1]


FIRST_YEAR, LAST_YEAR = 1900, 2199
"""Instants the business calendar handles (holidays, zone tables); others are input errors."""


def _to_utc(value: datetime) -> datetime:
    """Normalise an aware datetime to UTC; naive or out of range is an error."""
    if value.tzinfo is UTC:  # `Z` and +00:00 parse to it: aware, and in UTC already
        utc = value
    else:
        if value.tzinfo is None or value.utcoffset() is None:
            raise problem(WITH_OFFSET)
        try:
            utc = value.astimezone(UTC)
        except OverflowError:
            raise problem("out of range once converted to UTC") from None
    if not FIRST_YEAR <= utc.year <= LAST_YEAR:  # the business calendar's range
        raise problem(f"must be between {FIRST_YEAR} and {LAST_YEAR}")
    return utc


def _parse_timestamp_text(value: str) -> datetime:
    """An RFC 3339 timestamp string with offset, in UTC."""
    if _TIMESTAMP.fullmatch(value) is None:
        raise problem(WITH_OFFSET)
    try:
        parsed = datetime.fromisoformat(value.upper())
    except ValueError as exc:
        raise problem(f"not a valid timestamp: {exc}") from None
    if parsed.tzinfo is UTC and FIRST_YEAR <= parsed.year <= LAST_YEAR:
        return parsed  # what _to_utc returns for it (it is the common case: no call)
    return _to_utc(parsed)


_SEEN_TIMESTAMPS: dict[str, datetime] = {}
_SEEN_LIMIT = 50_000


def parse_timestamp(value: object) -> datetime:
    """Validate an RFC 3339 timestamp with offset (string or aware datetime) into UTC.

    Parsed strings are memoised (bounded): window timestamps repeat across many events.
    """
    if type(value) is str:
        hit = _SEEN_TIMESTAMPS.get(value)
        if hit is None:
            hit = _parse_timestamp_text(value)
            if len(_SEEN_TIMESTAMPS) >= _SEEN_LIMIT:
                _SEEN_TIMESTAMPS.clear()
            _SEEN_TIMESTAMPS[value] = hit
        return hit
    if isinstance(value, datetime):
        return _to_utc(value)
    raise problem(WITH_OFFSET)


Timestamp = Annotated[datetime, BeforeValidator(parse_timestamp)]
"""RFC 3339 timestamp with offset, held in UTC."""

# --------------------------------------------------------------------------- strings

_CONTROL = "\\x00-\\x1f\\x7f-\\x9f"  # Unicode category Cc: C0, DEL and C1 (NUL, tab, newlines, ...)
ID_PATTERN = rf"^[^{_CONTROL}]*[^\s{_CONTROL}][^{_CONTROL}]*$"
"""An id: not blank, no control character; any other Unicode (checked by pydantic's Rust regex: linear time)."""
_CONTROL_CHAR = re.compile(f"[{_CONTROL}]")
_VALID_ID = re.compile(ID_PATTERN.removeprefix("^").removesuffix("$") + r"\Z")
"""ID_PATTERN for Python's re (whose \\s is str.isspace's, as str.strip's): one C call for a valid id."""


def id_problem(value: str) -> str | None:
    """Why `value` is not a valid id (spec: 1-200 characters, not blank, no control characters), or None."""
    if not 0 < len(value) <= 200:
        return "must be 1-200 characters"
    bad = _CONTROL_CHAR.search(value)
    if bad is not None:
        return f"must not contain control characters (U+{ord(bad.group()):04X} at character {bad.start() + 1})"
    if not value.strip():
        return "must not be blank"
    return None


EventId = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=ID_PATTERN)]
EntityId = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=ID_PATTERN)]
NONBLANK_PATTERN = r"\S"
NonBlank = Annotated[str, StringConstraints(pattern=NONBLANK_PATTERN)]

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_PATTERN = rf"^{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+$"
"""Syntactic addr-spec check: dot-atom local part, dotted domain of DNS labels."""
Email = Annotated[str, StringConstraints(max_length=254, pattern=EMAIL_PATTERN)]


def _customers(value: object) -> tuple[str, ...] | Literal["all"]:
    """A non-empty list of customer ids, or the string "all"."""
    if value == "all":
        return "all"
    if not isinstance(value, (list, tuple)):
        raise problem('must be a list of customer ids or "all"')
    for v in value:
        if type(v) is not str and not isinstance(v, str):
            raise problem('must be a list of customer ids or "all"')
    if not value:
        raise problem('must list at least one customer (or be "all")')
    valid = _VALID_ID.match
    for v in value:
        if len(v) > 200 or valid(v) is None:  # a maintenance may list thousands: the full reason only for a bad one
            raise problem(f"customer ids {id_problem(v)} (got {shorten(v)!r})")
    return tuple(value)


Customers = Annotated[
    tuple[str, ...] | Literal["all"],
    PlainValidator(_customers),
    PlainSerializer(lambda v: v if v == "all" else list(v), return_type=list[str] | str),
    WithJsonSchema(
        {"anyOf": [{"type": "array", "items": {"type": "string"}, "minItems": 1},
                   {"const": "all"}]}
    ),
]

# --------------------------------------------------------------------------- labels

MAX_LABELS = 32
LABEL_KEY_PATTERN = r"[a-z0-9][a-z0-9._-]{0,62}"
_LABEL_KEY = re.compile(LABEL_KEY_PATTERN + r"\Z")
LABEL_VALUE_MAX = 200


def _labels(value: object) -> dict[str, str]:
    """Labels: at most 32 entries, lower-case keys, string values of 1-200 characters."""
    if not isinstance(value, dict):
        raise problem("must be an object of label names to strings")
    if len(value) > MAX_LABELS:
        raise problem(f"at most {MAX_LABELS} labels, got {len(value)}")
    for key, item in value.items():
        if not isinstance(key, str) or not _LABEL_KEY.match(key):
            raise problem(f"label name '{shorten(str(key))}' must match {LABEL_KEY_PATTERN}")
        if not isinstance(item, str):
            raise problem(f"label '{key}': must be a string, got {type(item).__name__}")
        if not 1 <= len(item) <= LABEL_VALUE_MAX:
            raise problem(f"label '{key}': must be 1-{LABEL_VALUE_MAX} characters")
    return dict(value)


Labels = Annotated[
    dict[str, str],
    PlainValidator(_labels),
    WithJsonSchema(
        {"type": "object", "maxProperties": MAX_LABELS, "propertyNames": {"pattern": f"^{LABEL_KEY_PATTERN}$"},
         "additionalProperties": {"type": "string", "minLength": 1, "maxLength": LABEL_VALUE_MAX}}
    ),
]
"""Free-form attributes rules can test (`labels.NAME`), e.g. {"tier": "premium"}."""
LABELS_DESCRIPTION = "Labels rules can test: at most 32, names [a-z0-9][a-z0-9._-]{0,62}, values 1-200 chars."

# --------------------------------------------------------------------------- calendar


def _calendar() -> Any:
    """The calendar stage (imported on first use: it loads holidays and numpy)."""
    from forewarn import calendar

    return calendar


@functools.cache
def _timezone_names() -> tuple[str, ...]:
    import zoneinfo

    return tuple(sorted(zoneinfo.available_timezones()))


def _check_timezone(name: str) -> str:
    if not _calendar().is_valid_timezone(name):
        hint = did_you_mean(name, _timezone_names())
        raise problem(f"unknown IANA time zone '{shorten(name)}'{hint}")
    return name


def _check_country(code: str) -> str:
    cal = _calendar()
    if not cal.is_valid_country(code):
        suggestions = cal.country_suggestions(code)
        hint = f"; did you mean '{suggestions[0]}'?" if suggestions else ""
        raise problem(
            f"unknown or unsupported ISO 3166-1 alpha-2 country code '{shorten(code)}'{hint}"
        )
    return code


# --------------------------------------------------------------------------- meta

_INT_RANGE = range(-(2**63), 2**64)


class MetaKeys:
    """A validation's context (`validate_json(..., context=MetaKeys())`): the keys (nested objects included) of
    every `meta` it validated, counted by the validator that checks them anyway. The duplicate-key check of
    forewarn.events.parse compares the keys the events hold with those in their text; the count travels with
    the call, so validations on other threads never touch it."""

    __slots__ = ("keys",)

    def __init__(self) -> None:
        self.keys = 0


def _check_json_numbers(value: object) -> int:
    """Numbers in free-form data must survive a JSON round trip (finite, 64-bit); the keys of its objects.

    Iterative, dispatching on exact types (the values come from JSON: dict, list, str, int, float,
    bool, None): every communication the engine sends carries `meta`, so this runs for most events.
    """
    pending = [value]
    keys = 0
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is dict:
            keys += len(item)  # type: ignore[arg-type]
            pending.extend(item.values())  # type: ignore[attr-defined]
        elif kind is list:
            pending.extend(item)  # type: ignore[arg-type]
        elif kind is float:
            if not math.isfinite(item):  # type: ignore[arg-type]
                raise problem("numbers must be finite")
        elif kind is int:
            if item not in _INT_RANGE:
                raise problem("integers must fit in 64 bits")
        elif kind is not str and kind is not bool and item is not None:  # not from JSON: the general case
            if isinstance(item, dict):
                keys += len(item)
                pending.extend(item.values())
            elif isinstance(item, list | tuple):
                pending.extend(item)
            elif isinstance(item, float) and not math.isfinite(item):
                raise problem("numbers must be finite")
            elif isinstance(item, int) and not isinstance(item, bool) and item not in _INT_RANGE:
                raise problem("integers must fit in 64 bits")
    return keys


# --------------------------------------------------------------------------- base


class Reference(NamedTuple):
    """A reference from an event field to an entity defined by an earlier event."""

    field: str
    kinds: tuple[str, ...]
    id: str


class EventBase(BaseModel):
    """Fields common to every event."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    ENTITY: ClassVar[str | None] = None
    """Entity kind this event type defines (its id is the field of that name)."""
    REFS: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = ()
    """(field, entity kinds it may name) for every single-id reference field."""
    HAS_CUSTOMERS: ClassVar[bool] = False
    """Whether the event has a `customers` list (of customer references)."""

    id: EventId = Field(description="Unique event id, 1-200 characters.")
    at: Timestamp = Field(description="When it happened (RFC 3339 with offset; held in UTC).")
    meta: dict[str, Any] | None = Field(
        default=None, description="Free-form metadata (source system, operator, ...)."
    )

    @field_validator("meta")
    @classmethod
    def _meta(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        if value is not None:
            keys = _check_json_numbers(value)
            counted = info.context
            if type(counted) is MetaKeys:
                counted.keys += keys
        return value

    def defines(self) -> tuple[str, str] | None:
        """(entity kind, id) this event defines, if it is a defining event."""
        if self.ENTITY is None:
            return None
        return self.ENTITY, getattr(self, self.ENTITY)

    def references(self) -> list[Reference]:
        """Every reference this event makes to other entities."""
        refs = [
            Reference(name, kinds, value)
            for name, kinds in self.REFS
            if (value := getattr(self, name)) is not None
        ]
        if self.HAS_CUSTOMERS:
            customers = self.customers  # type: ignore[attr-defined]
            if customers != "all":
                refs.extend(Reference("customers", ("customer",), c) for c in customers)
        return refs


def _end_after_start(start: datetime, end: datetime) -> None:
    if end <= start:
        raise problem(f"must be after 'start' ({format_timestamp(start)})", "end")


# --------------------------------------------------------------------------- event types


class CustomerUpserted(EventBase):
    """A customer and its attributes, in force from `at` on."""

    ENTITY: ClassVar[str | None] = "customer"
    type: Literal["customer.upserted"] = Field(description="Event type.")
    customer: EntityId = Field(description="Customer id.")
    name: str = Field(description="Display name.")
    plan: Literal["free", "basic", "business", "enterprise"] = Field(
        description="Plan; the policy's scope (rules/_scope.yaml) says which plans it covers: enterprise."
    )
    timezone: str = Field(default="UTC", description="IANA time zone name.")
    country: str | None = Field(
        default=None, description="ISO 3166-1 alpha-2 code selecting public holidays."
    )
    subdivision: str | None = Field(
        default=None, description="State/region code for holidays (requires country)."
    )
    contacts: tuple[Email, ...] = Field(min_length=1, description="E-mail addresses, >= 1.")
    labels: Labels | None = Field(default=None, description=LABELS_DESCRIPTION)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return _check_timezone(value)

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        return value if value is None else _check_country(value)

    @model_validator(mode="after")
    def _subdivision(self) -> CustomerUpserted:
        if self.subdivision is None:
            return self
        if self.country is None:
            raise problem("only allowed together with 'country'", "subdivision")
        if not _calendar().is_valid_subdivision(self.country, self.subdivision):
            raise problem(
                f"unknown subdivision '{shorten(self.subdivision)}' of country '{self.country}'",
                "subdivision",
            )
        return self


class MaintenanceScheduled(EventBase):
    """A maintenance window announced for a set of customers."""

    ENTITY: ClassVar[str | None] = "maintenance"
    HAS_CUSTOMERS: ClassVar[bool] = True
    type: Literal["maintenance.scheduled"] = Field(description="Event type.")
    maintenance: EntityId = Field(description="Maintenance id.")
    title: str = Field(description="Title.")
    start: Timestamp = Field(description="Window start.")
    end: Timestamp = Field(description="Window end; after start.")
    customers: Customers = Field(description='Affected customer ids, or "all" (every customer in scope).')
    impact: Literal["none", "degraded", "interruption"] = Field(description="Expected impact.")
    impact_summary: str | None = Field(
        default=None, description="What customers will notice; required unless impact is none."
    )
    emergency: StrictBool = Field(
        default=False, description="Emergency maintenance (critical issue)."
    )
    reason: str | None = Field(default=None, description="The critical issue; if emergency.")
    release: StrictBool = Field(default=False, description="Release-related work.")
    labels: Labels | None = Field(default=None, description=LABELS_DESCRIPTION)

    @model_validator(mode="after")
    def _consistent(self) -> MaintenanceScheduled:
        problems: list[tuple[str, str]] = []
        if self.end <= self.start:
            problems.append(("end", f"must be after 'start' ({format_timestamp(self.start)})"))
        if self.impact != "none" and not (self.impact_summary or "").strip():
            problems.append(("impact_summary", f"required when 'impact' is '{self.impact}'"))
        if self.emergency and not (self.reason or "").strip():
            problems.append(("reason", "required when 'emergency' is true"))
        _raise_problems(problems)
        return self


class MaintenanceRescheduled(EventBase):
    """A new window replacing the one in force."""

    REFS: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = (("maintenance", ("maintenance",)),)
    type: Literal["maintenance.rescheduled"] = Field(description="Event type.")
    maintenance: EntityId = Field(description="Maintenance id.")
    start: Timestamp = Field(description="New window start.")
    end: Timestamp = Field(description="New window end; after start.")
    labels: Labels | None = Field(
        default=None, description="Replaces the maintenance's labels from then on. " + LABELS_DESCRIPTION
    )

    @model_validator(mode="after")
    def _consistent(self) -> MaintenanceRescheduled:
        _end_after_start(self.start, self.end)
        return self


class _MaintenanceRef(EventBase):
    """An event about a maintenance."""

    REFS: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = (("maintenance", ("maintenance",)),)
    maintenance: EntityId = Field(description="Maintenance id.")


class MaintenanceCancelled(_MaintenanceRef):
    """The maintenance will not happen."""

    type: Literal["maintenance.cancelled"] = Field(description="Event type.")


class MaintenanceStarted(_MaintenanceRef):
    """The maintenance work started."""

    type: Literal["maintenance.started"] = Field(description="Event type.")


class MaintenanceExtended(_MaintenanceRef):
    """The maintenance takes longer than announced."""

    type: Literal["maintenance.extended"] = Field(description="Event type.")
    reason: NonBlank = Field(description="Why the extension is necessary.")
    end: Timestamp | None = Field(default=None, description="New target end.")
    next_update_by: Timestamp | None = Field(
        default=None, description="When customers can expect the next update."
    )

    @model_validator(mode="after")
    def _consistent(self) -> MaintenanceExtended:
        if self.end is None and self.next_update_by is None:
            raise problem("required unless 'next_update_by' is given (at least one of the two)",
                          "end")
        return self


class MaintenanceCompleted(_MaintenanceRef):
    """The work is complete."""

    type: Literal["maintenance.completed"] = Field(description="Event type.")
    healthy: StrictBool = Field(description="Whether monitoring shows healthy instances now.")


class MaintenanceHealthy(_MaintenanceRef):
    """Monitoring shows healthy instances after a completion that was not yet healthy."""

    type: Literal["maintenance.healthy"] = Field(description="Event type.")


class IncidentDeclared(EventBase):
    """An incident affecting a set of customers."""

    ENTITY: ClassVar[str | None] = "incident"
    HAS_CUSTOMERS: ClassVar[bool] = True
    type: Literal["incident.declared"] = Field(description="Event type.")
    incident: EntityId = Field(description="Incident id.")
    title: str = Field(description="Title.")
    severity: Literal["critical", "major", "minor"] = Field(description="Severity.")
    customers: Customers = Field(description='Affected customer ids, or "all" (every customer in scope).')
    summary: str = Field(description="What happened.")
    labels: Labels | None = Field(default=None, description=LABELS_DESCRIPTION)


class IncidentResolved(EventBase):
    """The incident is resolved."""

    REFS: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = (("incident", ("incident",)),)
    type: Literal["incident.resolved"] = Field(description="Event type.")
    incident: EntityId = Field(description="Incident id.")


class ReleaseScheduled(EventBase):
    """A release announced for a set of customers."""

    ENTITY: ClassVar[str | None] = "release"
    HAS_CUSTOMERS: ClassVar[bool] = True
    type: Literal["release.scheduled"] = Field(description="Event type.")
    release: EntityId = Field(description="Release id.")
    title: str = Field(description="Title.")
    release_at: Timestamp = Field(description="When the release happens.")
    customers: Customers = Field(description='Affected customer ids, or "all" (every customer in scope).')
    labels: Labels | None = Field(default=None, description=LABELS_DESCRIPTION)


class States(BaseModel):
    """What a message states, as structured data; an absent key is not stated."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window_start: Timestamp | None = Field(default=None, description="Stated window start.")
    window_end: Timestamp | None = Field(default=None, description="Stated window end.")
    impact: str | None = Field(default=None, description="Stated impact.")
    reason: str | None = Field(default=None, description="Stated reason.")
    end: Timestamp | None = Field(default=None, description="Stated new end.")
    next_update_by: Timestamp | None = Field(default=None, description="Stated next update.")


SUBJECT_KINDS = ("maintenance", "incident", "release")
"""What a communication can be about."""

CommunicationKind = Literal[
    "advance_notice", "start_reminder", "closing", "extension", "emergency", "incident", "release", "other"
]
"""The kinds of communication: the one list (rules, checks, planner, templates and reports use it)."""
COMMUNICATION_KINDS: tuple[str, ...] = CommunicationKind.__args__  # type: ignore[attr-defined]


class CommunicationSent(EventBase):
    """An e-mail sent to one customer."""

    ENTITY: ClassVar[str | None] = "communication"
    REFS: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = (
        ("customer", ("customer",)),
        ("maintenance", ("maintenance",)),
        ("incident", ("incident",)),
        ("release", ("release",)),
    )
    type: Literal["communication.sent"] = Field(description="Event type.")
    communication: EntityId = Field(description="Communication id.")
    customer: EntityId = Field(description="Customer the e-mail was sent to.")
    to: tuple[Email, ...] = Field(min_length=1, description="Recipient addresses.")
    from_: Email = Field(alias="from", description="Sender address.")
    kind: CommunicationKind = Field(description="Kind of communication.")
    maintenance: EntityId | None = Field(default=None, description="Maintenance it is about.")
    incident: EntityId | None = Field(default=None, description="Incident it is about.")
    release: EntityId | None = Field(default=None, description="Release it is about.")
    subject: str = Field(description="E-mail subject line.")
    body: str | None = Field(default=None, description="E-mail body.")
    message_id: str | None = Field(default=None, description="RFC 5322 Message-ID.")
    states: States | None = Field(default=None, description="What the message states.")

    @model_validator(mode="after")
    def _one_subject(self) -> CommunicationSent:
        if (self.maintenance is None) + (self.incident is None) + (self.release is None) == 2:
            return self
        given = [k for k in SUBJECT_KINDS if getattr(self, k) is not None]
        if len(given) > 1:
            raise problem(f"only one of 'maintenance', 'incident', 'release' may be given "
                          f"(also '{given[0]}')", given[1])
        if not given and self.kind != "other":
            field = self.kind if self.kind in SUBJECT_KINDS else "maintenance"
            raise problem(f"required for kind '{self.kind}' (exactly one of 'maintenance', "
                          f"'incident', 'release')", field)
        return self

    def subject_ref(self) -> tuple[str, str] | None:
        """(kind, id) of what the communication is about, e.g. ("maintenance", "mx-1")."""
        for kind in SUBJECT_KINDS:
            value = getattr(self, kind)
            if value is not None:
                return kind, value
        return None


class TicketOpened(EventBase):
    """The support ticket that a communication opened."""

    ENTITY: ClassVar[str | None] = "ticket"
    REFS: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = (
        ("communication", ("communication",)),
    )
    type: Literal["ticket.opened"] = Field(description="Event type.")
    ticket: EntityId = Field(description="Ticket id.")
    communication: EntityId = Field(description="Communication that opened it.")


class ReplyReceived(EventBase):
    """A customer replied to a communication."""

    ENTITY: ClassVar[str | None] = "reply"
    REFS: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = (
        ("customer", ("customer",)),
        ("in_reply_to", ("communication",)),
    )
    type: Literal["reply.received"] = Field(description="Event type.")
    reply: EntityId = Field(description="Reply id.")
    customer: EntityId = Field(description="Customer who replied.")
    in_reply_to: EntityId = Field(description="Communication replied to.")
    from_: Email = Field(alias="from", description="Sender address.")
    to: tuple[Email, ...] = Field(min_length=1, description="All addressees, To and Cc.")


WAIVER_SUBJECT_KINDS = ("maintenance", "incident", "release", "communication", "reply")


class WaiverGranted(EventBase):
    """A justified exception to a rule for one subject (and optionally one customer)."""

    ENTITY: ClassVar[str | None] = "waiver"
    REFS: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = (
        ("subject", WAIVER_SUBJECT_KINDS),
        ("customer", ("customer",)),
    )
    type: Literal["waiver.granted"] = Field(description="Event type.")
    waiver: EntityId = Field(description="Waiver id.")
    rule: EntityId = Field(description="Rule id of the policy in force.")
    subject: EntityId = Field(description="Maintenance/incident/release/communication/reply id.")
    customer: EntityId | None = Field(default=None, description="Customer; absent = all.")
    reason: NonBlank = Field(description="The justification.")
    approved_by: NonBlank = Field(description="Who approved it.")


# --------------------------------------------------------------------------- union

Event = Annotated[
    Union[  # noqa: UP007 - explicit Union reads better for a discriminated union
        CustomerUpserted,
        MaintenanceScheduled,
        MaintenanceRescheduled,
        MaintenanceCancelled,
        MaintenanceStarted,
        MaintenanceExtended,
        MaintenanceCompleted,
        MaintenanceHealthy,
        IncidentDeclared,
        IncidentResolved,
        ReleaseScheduled,
        CommunicationSent,
        TicketOpened,
        ReplyReceived,
        WaiverGranted,
    ],
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

EVENT_CLASSES: dict[str, type[EventBase]] = {
    cls.model_fields["type"].annotation.__args__[0]: cls  # type: ignore[union-attr]
    for cls in (
        CustomerUpserted, MaintenanceScheduled, MaintenanceRescheduled, MaintenanceCancelled,
        MaintenanceStarted, MaintenanceExtended, MaintenanceCompleted, MaintenanceHealthy,
        IncidentDeclared, IncidentResolved, ReleaseScheduled, CommunicationSent, TicketOpened,
        ReplyReceived, WaiverGranted,
    )
}
EVENT_TYPES: tuple[str, ...] = tuple(EVENT_CLASSES)

ENTITY_OF: dict[str, str] = {t: c.ENTITY for t, c in EVENT_CLASSES.items() if c.ENTITY}
"""Defining event type -> entity kind (customer.upserted -> customer, ...)."""
REFERENCE_SOURCES: dict[str, str] = {kind: t for t, kind in ENTITY_OF.items()}
"""Entity kind -> the event type that defines it."""


_FIELDS_SETS: dict[frozenset[str], set[str]] = {}
_LAST_FIELDS_SET: dict[tuple[type, int], set[str]] = {}
_set_attribute = object.__setattr__


def share_fields_sets(model: BaseModel) -> None:
    """Make `model` (and its `states`) share one set of set-field names with every equal one.

    Pydantic gives every instance its own `model_fields_set` (8-16 names: about 700 bytes, 40% of
    a communication's memory); events held by the thousand have a handful of distinct ones. The
    content is unchanged and nothing mutates it in place: the models are frozen, and
    `model_copy` copies the set before updating it.
    """
    fields = model.__pydantic_fields_set__
    key = (type(model), len(fields))
    shared = _LAST_FIELDS_SET.get(key)
    if shared is None or shared != fields:  # set equality: C speed, no allocation
        shared = _LAST_FIELDS_SET[key] = _FIELDS_SETS.setdefault(frozenset(fields), fields)
    _set_attribute(model, "__pydantic_fields_set__", shared)
    states = model.__dict__.get("states")
    if states is not None:
        share_fields_sets(states)


def canonical_json(event: EventBase) -> str:
    """Compact JSON, sorted keys, UTC `Z` timestamps, aliases, defaults omitted."""
    data = event.model_dump(by_alias=True, exclude_defaults=True)
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z).decode()
