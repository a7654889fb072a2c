"""Rule conditions (forewarn.policy.conditions) as SQL predicates: a mapping of the one condition table.

Each Attribute row maps to a column by its entity (customer -> the customer version in force, `cv`;
subject -> the subject's row `s`, its labels in force `sl`) and field (the column of that name, or the
labels JSON); each test maps to a predicate with the interpreter's meaning (`_passes`: None fails every
test but {exists: false}, equality is strict about types). Values and label names are bound parameters.
"""

from __future__ import annotations

from forewarn.policy.conditions import Condition, Term

_ALIASES = {"customer": "cv", "subject": "s"}
"""The table alias each entity's attributes are read from (moment terms are tested on the lifecycle's
moments, where the triggers are made)."""

_SQL_TYPES = {"bool": bool, "enum": str, "text": str}
"""The Python type of the values an attribute's column holds (an equality with another type never holds)."""


def _column(term: Term, params: dict[str, object], name: str) -> str:
    entity = term.attribute.entity
    if entity not in _ALIASES:
        raise ValueError(f"{term.key}: a {entity} attribute has no column")
    if term.label is None:
        return f"{_ALIASES[entity]}.{term.attribute.field}"  # a field of the table, never text from a rule file
    params[name + "_path"] = '$."' + term.label + '"'  # label names: [a-z0-9._-] (lint), no quote
    labels = "cv.labels" if entity == "customer" else "sl.labels"
    return f"json_extract_string({labels}, ${name}_path)"


def term_sql(term: Term, params: dict[str, object], name: str) -> str:
    """One term as a predicate; its values bound as `$name...`."""
    column = _column(term, params, name)
    op, arg = term.test
    if op == "exists":
        return f"({column} IS NOT NULL)" if arg else f"({column} IS NULL)"
    kind = bool if term.label is None and term.attribute.type == "bool" else str
    if term.label is None and term.attribute.type not in _SQL_TYPES:
        raise ValueError(f"{term.key}: a {term.attribute.type} attribute has no column")
    values = list(arg) if op == "in" else [arg]  # type: ignore[call-overload]
    fitting = [v for v in values if type(v) is kind]
    if not fitting:
        return "FALSE"
    if kind is bool:
        params[name] = fitting
        return f"list_contains(${name}::BOOLEAN[], {column})"
    params[name] = [str(v) for v in fitting]
    return f"list_contains(${name}::VARCHAR[], {column})"


def condition_sql(
    condition: Condition, params: dict[str, object], prefix: str, entity: str | None = None
) -> str:
    """The condition's terms (of `entity` only, if given) as one predicate (TRUE if none)."""
    parts = ["TRUE"]
    for n, term in enumerate(condition.terms):
        on = "customer" if term.attribute.entity == "customer" else "subject"
        if entity is not None and on != entity:
            continue
        parts.append(term_sql(term, params, f"{prefix}t{n}"))
    return " AND ".join(parts)
