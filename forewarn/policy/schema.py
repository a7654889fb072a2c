"""The rule-file vocabulary: a pydantic schema every file in rules/ must satisfy."""

from __future__ import annotations

import re
import string
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from forewarn.events.models import CommunicationKind

Severity = Literal["critical", "high", "medium", "low"]
SEVERITY_ORDER: dict[str, int] = {"low": 1, "medium": 2, "high": 3, "critical": 4}

# The communication kinds are the event contract's (one list, forewarn.events.models).
Kind = CommunicationKind
SubjectKind = Literal["maintenance", "incident", "release"]

# Lifecycle moments an obligation can be opened by (produced by
# forewarn.lifecycle.fold): the subject's own events, plus the derived
# moments `maintenance.closed` (completed and healthy) and
# `maintenance.overrun` (an alarm's timer fired with no progress).
Trigger = Literal[
    "maintenance.scheduled",
    "maintenance.rescheduled",
    "maintenance.extended",
    "maintenance.closed",
    "incident.declared",
    "release.scheduled",
]
AlarmTrigger = Literal["maintenance.overrun"]
TRIGGER_SUBJECT: dict[str, str] = {
    "maintenance.scheduled": "maintenance",
    "maintenance.rescheduled": "maintenance",
    "maintenance.extended": "maintenance",
    "maintenance.closed": "maintenance",
    "maintenance.overrun": "maintenance",
    "incident.declared": "incident",
    "release.scheduled": "release",
}

# Instants an obligation window can be anchored at (fields of the moment).
AnchorName = Literal["opened", "start", "end", "release_at", "next_update_by", "end_in_force"]

# The attributes a `where` may test are the table of forewarn.policy.conditions.

VoidWhen = Literal[
    "superseded-before-deadline",  # a later version or a cancellation before not_after
    "superseded-before-start",  # ... before the version's start
    "cancelled-before-deadline",  # the maintenance was cancelled before not_after
    "closed-before-deadline",  # the maintenance closed before not_after
]

# Built-in requirements of per-communication checks, and the problem codes
# each can produce.
REQUIREMENT_PROBLEMS: dict[str, tuple[str, ...]] = {
    "states-window": ("window-missing", "window-mismatch"),
    "states-impact": ("impact-missing",),
    "states-reason": ("reason-missing",),
    "states-next-step": ("next-step-missing",),
    "states-end-in-force": ("end-mismatch",),
    "sent-after-closed": ("premature",),
    "sender": ("wrong-sender",),
    "ticket-opened": ("missing", "late"),
    "reply-includes-origin": ("origin-missing",),
}
REQUIREMENT_ARGS: dict[str, dict[str, str]] = {
    "sender": {"support": "email", "releases": "email"},
    "ticket-opened": {"within_minutes": "minutes"},
}

# Placeholders a problem message may use.
MESSAGE_FIELDS = frozenset(
    {
        "rule",
        "customer",
        "subject",
        "communication",
        "kind",
        "deadline",
        "due",
        "sent",
        "lateness",
        "earliness",
        "stated",
        "expected",
        "count_found",
        "end_in_force",
    }
)

# What `forewarn rules lint` reports, by code (every problem as file:line: code: message).
LINT_CODES: dict[str, str] = {
    "no-directory": "the path given is not a directory of rule files",
    "no-rules": "the directory holds no `*.yaml` rule file",
    "unreadable": "the file cannot be read, or is not UTF-8",
    "yaml-syntax": "the file is not valid YAML",
    "yaml-alias": "an anchor or alias (`&a`, `*a`, `<<`), refused before expansion (aliases can nest exponentially)",
    "duplicate-key": "a key appears twice in one mapping (YAML would silently keep the second)",
    "not-a-rule": "the file is not a mapping of rule keys",
    "not-a-scope": "the scope file (`_scope.yaml`) is not a mapping of scope keys",
    "duplicate-id": "two files define the same rule id",
    "id-mismatch": "the rule's id differs from its file name",
    "unknown-key": "a key the vocabulary does not have (with a did-you-mean suggestion)",
    "missing-key": "a required key is absent",
    "invalid-value": "a value of the wrong type or out of range",
    "no-logic": "the rule has no obligation, alarm or checks",
    "undefined-param": "a $parameter that `params` does not define",
    "param-type": "a $parameter of the wrong type for where it is used",
    "unused-param": "a parameter the rule's logic never uses",
    "missing-problem": "a problem the rule can report has no message in `problems`",
    "unknown-problem": "a message in `problems` for a problem the rule can never report",
    "unknown-requirement": "a check requires something the vocabulary does not have",
    "bad-template": "a message template that is not well formed",
    "unknown-placeholder": "a {placeholder} in a message that no finding provides",
}

PARAM_REF = re.compile(r"^\$([a-z][a-z0-9_]*)$")
EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")

MAX_MINUTES = 366 * 24 * 60
"""The longest offset in minutes a rule may give (a year): beyond it, no notice policy, and deadlines
overflow the calendar (found by fuzzing `rules lint`: 2**70 minutes passed lint and crashed the audit)."""
MAX_BUSINESS_DAYS = 260
"""The most business days a rule may give (about a year)."""

Number = Annotated[int, Field(ge=0, le=MAX_MINUTES)]
BusinessDays = Annotated[int, Field(ge=0, le=MAX_BUSINESS_DAYS)]
ParamRef = Annotated[str, Field(pattern=PARAM_REF.pattern)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Param(_Strict):
    """A named, typed value the rule's logic uses; edit `value` to change behaviour."""

    type: Literal["business_days", "minutes", "email"] = Field(description="what the value is")
    value: int | str = Field(description="the value in force")
    description: str = Field(min_length=1, description="what the value controls")

    @model_validator(mode="after")
    def _typed(self) -> Param:
        if self.type in ("business_days", "minutes"):
            if not isinstance(self.value, int) or isinstance(self.value, bool) or self.value < 0:
                raise ValueError(f"a {self.type} parameter needs a whole number >= 0")
            if self.type == "business_days" and self.value < 1:
                raise ValueError("business_days must be at least 1")
            most = MAX_BUSINESS_DAYS if self.type == "business_days" else MAX_MINUTES
            if self.value > most:
                raise ValueError(f"a {self.type} parameter can be at most {most} (about a year)")
        elif not isinstance(self.value, str) or not EMAIL.match(self.value):
            raise ValueError("an email parameter needs an e-mail address")
        return self


class Metadata(_Strict):
    """The clause of the policy document the rule enforces."""

    section: str = Field(min_length=1, description="section of the policy document")
    clause: str = Field(min_length=1, description="the sentence quoted from the document")
    also: str | None = Field(None, description="another section the rule draws on")


class Anchor(_Strict):
    """An instant relative to a field of the triggering moment."""

    at: AnchorName = Field(description="the moment's instant the window is measured from")
    business_days_before: BusinessDays | ParamRef | None = Field(None, description="N business days before")
    minutes_before: Number | ParamRef | None = Field(None, description="M minutes before")
    minutes_after: Number | ParamRef | None = Field(None, description="M minutes after")

    @model_validator(mode="after")
    def _one_offset(self) -> Anchor:
        offsets = [self.business_days_before, self.minutes_before, self.minutes_after]
        if sum(o is not None for o in offsets) > 1:
            raise ValueError("give at most one of business_days_before, minutes_before, minutes_after")
        return self


class Window(_Strict):
    """When a matching communication counts: [not_before, not_after]."""

    not_before: Anchor = Field(description="the earliest instant a communication counts")
    not_after: Anchor = Field(description="the deadline: sent later is late")


WhereValue = bool | int | str | list[str] | dict[str, bool]


class Obligation(_Strict):
    """Per affected customer in scope: communications of `kinds` due in `window`."""

    subject: SubjectKind = Field(description="what the obligation is about")
    trigger: list[Trigger] = Field(min_length=1, description="lifecycle moments that open it")
    where: dict[str, WhereValue] = Field(default_factory=dict, description="conditions on the subject and moment")
    kinds: list[Kind] = Field(min_length=1, description="communication kinds that fulfil it")
    count: int = Field(1, ge=1, description="how many communications it needs")
    window: Window = Field(description="when a communication counts")
    void_when: list[VoidWhen] = Field(default_factory=list, description="events that cancel the obligation")


class Alarm(_Strict):
    """A finding for every affected customer when a timer fires with no progress."""

    subject: Literal["maintenance"] = Field(description="alarms watch maintenances")
    trigger: list[AlarmTrigger] = Field(min_length=1, description="the timer moment")
    after: Anchor = Field(description="when the timer fires")
    where: dict[str, WhereValue] = Field(default_factory=dict, description="conditions on the maintenance")
    problem: str = Field(pattern=r"^[a-z][a-z-]*$", description="the problem code of the finding")


Requirement = str | dict[str, dict[str, int | str]]


class Check(_Strict):
    """A test every matching communication (or reply) must pass."""

    kinds: list[Kind] | Literal["all"] | None = Field(None, description="the communications checked")
    about: SubjectKind | None = Field(None, description="only communications about this kind of subject")
    where: dict[str, WhereValue] = Field(default_factory=dict, description="conditions on that subject")
    replies: bool = Field(False, description="check replies instead of communications")
    require: list[Requirement] = Field(min_length=1, description="requirements, by name, some with arguments")

    @model_validator(mode="after")
    def _target(self) -> Check:
        if self.replies == (self.kinds is not None):
            raise ValueError("a check applies either to `kinds` of communications or to `replies: true`")
        if self.about is None and any(not key.startswith("customer.") for key in self.where):
            raise ValueError("a `where` on the subject needs `about` (which kind of subject)")
        return self

    def requirements(self) -> list[tuple[str, dict[str, int | str]]]:
        out: list[tuple[str, dict[str, int | str]]] = []
        for item in self.require:
            if isinstance(item, str):
                out.append((item, {}))
            else:
                out.extend(item.items())
        return out


class RuleFile(_Strict):
    """One rule of the policy, as written in rules/<id>.yaml."""

    id: str = Field(pattern=r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$", description="kebab-case, = file name")
    title: str = Field(min_length=1, description="one line for people")
    severity: Severity = Field(description="how much a violation matters")
    message: str = Field(min_length=1, description="what was found, why it matters, what to do")
    metadata: Metadata = Field(description="the clause enforced")
    params: dict[str, Param] = Field(default_factory=dict, description="named values the logic uses as $name")
    obligation: Obligation | None = Field(None, description="what must be sent, when")
    alarm: Alarm | None = Field(None, description="a finding when a timer fires")
    checks: list[Check] = Field(default_factory=list, description="tests of every matching communication")
    problems: dict[str, str] = Field(min_length=1, description="problem code -> finding message")
    late: Literal["send", "alert"] | None = Field(
        None,
        description="a deadline passed unmet: `send` the communication late as soon as possible, and alert "
        "(the default), or only `alert` a person",
    )

    @field_validator("params")
    @classmethod
    def _param_names(cls, value: dict[str, Param]) -> dict[str, Param]:
        for name in value:
            if not re.match(r"^[a-z][a-z0-9_]*$", name):
                raise ValueError(f"parameter name {name!r} must be snake_case")
        return value


class ScopeFile(_Strict):
    """The policy's scope, as written in rules/_scope.yaml: which customers it covers."""

    description: str = Field(min_length=1, description="who is covered, in words")
    customers: dict[str, Any] = Field(
        min_length=1, description="the condition on a customer's attributes in force at the trigger"
    )


def placeholders(template: str) -> list[str]:
    """The `{name}` fields of a message template (raises ValueError if malformed)."""
    return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
