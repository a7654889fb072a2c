"""The policy in force: validated rules, their resolved parameters, and the policy digest."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from forewarn.policy.conditions import DEFAULT_SCOPE, Condition, compile_condition
from forewarn.policy.schema import PARAM_REF, Anchor, Check, RuleFile


@dataclass(frozen=True)
class Rule:
    """One validated rule file."""

    spec: RuleFile
    path: str

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def severity(self) -> str:
        return self.spec.severity

    @property
    def late(self) -> str:
        """What the engine does once a deadline of this rule passed unmet: "send" (late) or "alert" only."""
        return self.spec.late or "send"

    def resolve(self, value: int | str | None) -> int | str | None:
        """A `$param` reference's value; literals unchanged."""
        if isinstance(value, str):
            m = PARAM_REF.match(value)
            if m:
                return self.spec.params[m.group(1)].value
        return value

    def resolve_int(self, value: int | str | None) -> int | None:
        resolved = self.resolve(value)
        return None if resolved is None else int(resolved)

    def anchor_offset(self, anchor: Anchor) -> tuple[str, int]:
        """(unit, signed amount) of an anchor: ('business_days', -N) or ('minutes', +-M)."""
        if anchor.business_days_before is not None:
            return "business_days", -int(self.resolve_int(anchor.business_days_before) or 0)
        if anchor.minutes_before is not None:
            return "minutes", -int(self.resolve_int(anchor.minutes_before) or 0)
        if anchor.minutes_after is not None:
            return "minutes", int(self.resolve_int(anchor.minutes_after) or 0)
        return "minutes", 0

    @cached_property
    def obligation_condition(self) -> Condition:
        """The obligation's `where`, compiled (subject, moment and customer terms)."""
        ob = self.spec.obligation
        return compile_condition(ob.where if ob is not None else {})

    @cached_property
    def alarm_condition(self) -> Condition:
        alarm = self.spec.alarm
        return compile_condition(alarm.where if alarm is not None else {})

    @cached_property
    def check_conditions(self) -> tuple[Condition, ...]:
        """Each check's `where`, compiled, in the order of `spec.checks`."""
        return tuple(compile_condition(c.where) for c in self.spec.checks)

    @cached_property
    def _conditions_by_check(self) -> dict[int, Condition]:
        return {id(c): condition for c, condition in zip(self.spec.checks, self.check_conditions, strict=True)}

    def check_condition(self, check: Check) -> Condition:
        """The compiled `where` of one of this rule's checks."""
        found = self._conditions_by_check.get(id(check))
        return found if found is not None else compile_condition(check.where)

    def params(self) -> dict[str, int | str]:
        return {name: p.value for name, p in self.spec.params.items()}

    def why(self) -> str:
        """The rule's message (what, why, what to do) with its parameters filled in."""
        return self.spec.message.format_map(self.params())

    def canonical(self) -> dict[str, object]:
        return self.spec.model_dump(mode="json", exclude_none=True)


@dataclass(frozen=True)
class Policy:
    """Every rule in force, by id, with the digest that identifies the policy."""

    rules: tuple[Rule, ...]
    digest: str
    source: str = ""
    scope: Mapping[str, object] = field(default_factory=lambda: dict(DEFAULT_SCOPE), compare=False)
    """The condition on a customer's attributes in force that puts it under the policy."""
    scope_description: str = field(default="customers on the enterprise plan", compare=False)
    """(Both are part of `digest`, which equality and hashing compare.)"""

    @cached_property
    def scope_condition(self) -> Condition:
        return compile_condition(self.scope)

    @cached_property
    def covers(self) -> Callable[[object], bool]:
        """Whether a customer version (attributes in force) is under the policy: one function, called
        for every communication and affected customer."""
        return self.scope_condition.customer_predicate

    @cached_property
    def by_id(self) -> dict[str, Rule]:
        return {r.id: r for r in self.rules}

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.rules]

    def get(self, rule_id: str) -> Rule | None:
        return self.by_id.get(rule_id)

    def sender(self, release_related: bool) -> str | None:
        """The address a communication must come from (per the `sender` requirement)."""
        return self._senders.get("releases" if release_related else "support")

    @cached_property
    def _senders(self) -> dict[str, str]:
        for rule in self.rules:
            for check in rule.spec.checks:
                for req, args in check.requirements():
                    if req == "sender":
                        return {key: str(rule.resolve(args[key])) for key in ("support", "releases")}
        return {}


def policy_digest(rules: Sequence[Rule], scope: Mapping[str, object] | None = None) -> str:
    """sha256 of the rules' validated content and the scope (formatting and comments do not count).
    The default scope leaves the digest as it was before scopes were written in files."""
    content: object = [r.canonical() for r in sorted(rules, key=lambda r: r.id)]
    if scope is not None and dict(scope) != dict(DEFAULT_SCOPE):
        content = {"rules": content, "scope": dict(scope)}
    body = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()
