"""The condition vocabulary of rule files: one table of attributes, one interpreter.

A condition (a rule's `where`, the policy's `scope`) maps attribute names to tests:
a value (equal), a list of values (any of them) or {exists: true|false}. Every
attribute a condition may name is a row of ATTRIBUTES: which entity it is read
from, which field, its type and allowed values. Lint, the evaluation of
obligations and alarms, the per-communication checks and the policy scope all go
through `compile_condition` and `Condition.holds`, so a condition means the same
wherever it is written (and compiling it to another form, e.g. SQL, is a mapping
of this table: entity -> table, field -> column, test -> predicate).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Literal, get_args

from forewarn.events.models import SUBJECT_KINDS, CustomerUpserted, IncidentDeclared, MaintenanceScheduled

Entity = Literal["subject", "moment", "customer"]
"""subject: the maintenance / incident / release, as in force at the moment tested;
moment: the triggering lifecycle moment's own fields (obligations and alarms only);
customer: the customer's attributes in force at the trigger (`customer.` prefix)."""
AttrType = Literal["bool", "enum", "int", "instant", "text"]

CUSTOMER_PREFIX = "customer."
LABEL_NAME_PATTERN = r"[a-z0-9][a-z0-9._-]{0,62}"  # as forewarn.events.models.LABEL_KEY_PATTERN
_LABEL_NAME = re.compile(LABEL_NAME_PATTERN + r"\Z")
LABELS = "labels"


def _values(model: type, name: str) -> tuple[str, ...]:
    """The allowed values of an event field (a Literal of the event contract): one definition."""
    return tuple(get_args(model.model_fields[name].annotation))  # type: ignore[attr-defined]


PLANS = _values(CustomerUpserted, "plan")
IMPACTS = _values(MaintenanceScheduled, "impact")
SEVERITIES = _values(IncidentDeclared, "severity")


@dataclass(frozen=True)
class Attribute:
    """One attribute a condition may test."""

    name: str  # as written in a rule; a labels attribute stands for `labels.NAME`
    entity: Entity
    field: str  # the entity's field it is read from (for labels: the labels object)
    type: AttrType
    values: tuple[str, ...] = ()  # allowed values of an enum
    subjects: tuple[str, ...] = SUBJECT_KINDS  # subject kinds that have it (subject/moment attributes)
    description: str = ""

    @property
    def labels(self) -> bool:
        return self.field == LABELS


ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("impact", "subject", "impact", "enum", IMPACTS, ("maintenance",),
              "the maintenance's expected impact"),
    Attribute("emergency", "subject", "emergency", "bool", (), ("maintenance",), "an emergency maintenance"),
    Attribute("release", "subject", "release", "bool", (), ("maintenance", "release"),
              "release-related work (always true of a release)"),
    Attribute("notifiable", "subject", "notifiable", "bool", (), ("maintenance",),
              "impact is not none, or an emergency"),
    Attribute("severity", "subject", "severity", "enum", SEVERITIES, ("incident",),
              "the incident's severity"),
    Attribute("labels.*", "subject", LABELS, "text", (), SUBJECT_KINDS,
              "a label of the subject in force (a reschedule's labels replace the maintenance's)"),
    Attribute("end", "moment", "end", "instant", (), ("maintenance",), "the end the moment gave"),
    Attribute("next_update_by", "moment", "next_update_by", "instant", (), ("maintenance",),
              "the next update an extension promised"),
    Attribute("version", "moment", "version", "int", (), ("maintenance",), "the window version (1, 2, ...)"),
    Attribute("customer.plan", "customer", "plan", "enum", PLANS, description="the customer's plan"),
    Attribute("customer.country", "customer", "country", "text", description="ISO 3166-1 alpha-2 code"),
    Attribute("customer.subdivision", "customer", "subdivision", "text", description="state/region code"),
    Attribute("customer.timezone", "customer", "timezone", "text", description="IANA time zone"),
    Attribute("customer.labels.*", "customer", LABELS, "text", description="a label of the customer"),
)
BY_NAME: dict[str, Attribute] = {a.name: a for a in ATTRIBUTES}


def attribute(name: str) -> tuple[Attribute, str | None] | None:
    """The table row a condition key names, and the label name for `labels.NAME` keys."""
    row = BY_NAME.get(name)
    if row is not None and not row.labels:
        return row, None
    for prefix in ("customer.labels.", "labels."):
        if name.startswith(prefix) and len(name) > len(prefix):
            return BY_NAME[prefix + "*"], name[len(prefix):]
    return None


def names_for(where: Literal["obligation", "check", "scope"], subject: str | None) -> list[str]:
    """The attribute names a condition of this place (and subject kind) may test, for messages."""
    out = []
    for a in ATTRIBUTES:
        if where == "scope" and a.entity != "customer":
            continue
        if where == "check" and a.entity == "moment":
            continue
        if a.entity != "customer" and subject is not None and subject not in a.subjects:
            continue
        out.append(a.name.replace("*", "NAME"))
    return out


def problems(where: Mapping[str, object], place: Literal["obligation", "check", "scope"],
             subject: str | None) -> list[tuple[str, str]]:
    """(key, message) for every key or value of `where` the table does not allow here."""
    out: list[tuple[str, str]] = []
    allowed = names_for(place, subject)
    for key, spec in where.items():
        found = attribute(key)
        if found is None or (key not in allowed and found[0].name.replace("*", "NAME") not in allowed):
            why = ""
            if found is not None:
                row = found[0]
                why = (" (a customer attribute; a scope tests nothing else)" if place == "scope"
                       else " (a field of the triggering moment: obligations and alarms only)"
                       if row.entity == "moment" and place == "check"
                       else f" (an attribute of {' or '.join(_a(k) for k in row.subjects)}, not of {_a(str(subject))})")
            out.append((key, f"no attribute {key!r} can be tested here{why}{_hint(key, allowed)}; "
                             f"attributes: {', '.join(allowed)}"))
            continue
        row, label = found
        if label is not None and not _LABEL_NAME.match(label):
            out.append((key, f"{key}: a label name matches {LABEL_NAME_PATTERN} (labels are lower case), "
                             f"so this never matches"))
            continue
        if isinstance(spec, dict):
            if set(spec) != {"exists"} or not isinstance(spec["exists"], bool):
                out.append((key, f"{key}: a mapping condition is {{exists: true|false}}"))
            continue
        if isinstance(spec, list) and not spec:
            out.append((key, f"{key}: an empty list matches nothing"))
        for v in spec if isinstance(spec, list) else [spec]:
            message = _value_problem(row, key, v)
            if message:
                out.append((key, message))
    return out


def _a(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def _value_problem(row: Attribute, key: str, v: object) -> str | None:
    if row.type == "bool" and not isinstance(v, bool):
        return f"{key}: expected true or false, got {v!r}"
    if row.type == "int" and (not isinstance(v, int) or isinstance(v, bool)):
        return f"{key}: expected a whole number, got {v!r}"
    if row.type == "instant":
        return f"{key}: an instant can only be tested with {{exists: true|false}}"
    if row.type in ("enum", "text") and not isinstance(v, str):
        return f"{key}: expected a string, got {v!r}"
    if row.type == "enum" and v not in row.values:
        return f"{key}: {v!r} is not one of {', '.join(row.values)}{_hint(str(v), list(row.values))}"
    return None


def _hint(word: str, candidates: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# ------------------------------------------------------------------ the interpreter --

Test = tuple[str, object]  # ("eq", value) | ("in", frozenset) | ("exists", bool)


def _test(spec: object) -> Test:
    if isinstance(spec, Mapping):
        return "exists", bool(spec.get("exists"))
    if isinstance(spec, list | tuple):
        return "in", tuple(spec)
    return "eq", spec


def _passes(test: Test, value: object) -> bool:
    """The meaning of one test on a value read from its entity (None: the entity has no such value).
    Equality is strict about types: true is not 1, "1" is not 1."""
    op, arg = test
    if op == "exists":
        return arg == (value is not None)
    if value is None:
        return False
    if op == "in":
        return any(type(value) is type(item) and value == item for item in arg)  # type: ignore[attr-defined]
    return type(value) is type(arg) and value == arg


@dataclass(frozen=True)
class Term:
    """One attribute's test of a compiled condition."""

    key: str
    attribute: Attribute
    label: str | None
    test: Test

    def read(self, source: Mapping[str, object] | object | None) -> object:
        """The attribute's value in its entity: a mapping of subject/moment attributes, or a customer."""
        if source is None:
            return None
        field = self.attribute.field
        value = source.get(field) if isinstance(source, Mapping) else getattr(source, field, None)
        if self.label is not None:
            return value.get(self.label) if isinstance(value, Mapping) else None
        return value

    def holds(self, source: Mapping[str, object] | object | None) -> bool:
        return _passes(self.test, self.read(source))

    def why_not(self, source: Mapping[str, object] | object | None) -> str:
        """The term as it failed: "labels.service is web, needs = api"."""
        value = self.read(source)
        return f"{self.key} is {'not set' if value is None else _value(value)}, needs {_show(self.test)}"


@dataclass(frozen=True)
class Condition:
    """A compiled condition: all its terms must hold."""

    terms: tuple[Term, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "on_subject", tuple(t for t in self.terms if t.attribute.entity != "customer"))
        object.__setattr__(self, "on_customer", tuple(t for t in self.terms if t.attribute.entity == "customer"))
        object.__setattr__(self, "customer_predicate", _customer_predicate(self.on_customer))

    on_subject: tuple[Term, ...] = field(init=False, repr=False, compare=False)
    """The terms read from the subject (or the moment)."""
    on_customer: tuple[Term, ...] = field(init=False, repr=False, compare=False)
    """The terms read from the customer."""
    customer_predicate: Callable[[object], bool] = field(init=False, repr=False, compare=False)
    """`holds_for_customer` of a customer version (not None), as one function: the scope is tested for
    every communication, so its terms are read with attrgetter instead of `Term.read`'s general path."""

    def holds(self, subject: Mapping[str, object] | None = None, customer: object | None = None) -> bool:
        """Whether every term holds: subject and moment terms on `subject` (the attributes in force
        at the moment, moment fields included), customer terms on `customer` (its attributes in force)."""
        return all(term.holds(customer if term.attribute.entity == "customer" else subject) for term in self.terms)

    def holds_for_subject(self, subject: Mapping[str, object] | None) -> bool:
        return all(t.holds(subject) for t in self.on_subject)

    def holds_for_customer(self, customer: object | None) -> bool:
        if customer is None:
            return not self.on_customer or all(t.holds(None) for t in self.on_customer)
        return self.customer_predicate(customer)

    def describe(self) -> str:
        """The condition as written, for explanations."""
        return ", ".join(f"{t.key} {_show(t.test)}" for t in self.terms) or "always"


def _show(test: Test) -> str:
    op, arg = test
    if op == "exists":
        return "is set" if arg else "is not set"
    if op == "in":
        return "in [" + ", ".join(_value(a) for a in arg) + "]"  # type: ignore[attr-defined]
    return "= " + _value(arg)


def _value(v: object) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def _customer_predicate(terms: tuple[Term, ...]) -> Callable[[object], bool]:
    """The customer terms as one function of a customer version, with the meaning of `_passes`."""
    tests = [_customer_test(t) for t in terms]
    if not tests:
        return lambda _c: True
    if len(tests) == 1:
        return tests[0]
    return lambda c: all(test(c) for test in tests)


def _customer_test(term: Term) -> Callable[[object], bool]:
    plain = attrgetter(term.attribute.field)
    label = term.label
    if label is None:
        read = plain
    else:

        def read(c: object) -> object:
            labels = plain(c)
            return labels.get(label) if labels else None

    op, arg = term.test
    if op == "eq":
        kind = type(arg)
        return lambda c: type(v := read(c)) is kind and v == arg
    if op == "in":
        options = tuple(arg)  # type: ignore[arg-type]
        return lambda c: any(type(v := read(c)) is type(o) and v == o for o in options)
    present = bool(arg)
    return lambda c: (read(c) is not None) == present


def compile_condition(where: Mapping[str, object]) -> Condition:
    """The compiled form of a condition lint accepted (an unknown key raises KeyError)."""
    terms = []
    for key, spec in where.items():
        found = attribute(key)
        if found is None:
            raise KeyError(f"no attribute {key!r} in the condition table")
        terms.append(Term(key, found[0], found[1], _test(spec)))
    return Condition(tuple(terms))


DEFAULT_SCOPE: Mapping[str, object] = {"customer.plan": "enterprise"}
"""The customers a policy covers when its directory has no scope file."""
