"""Load and lint rules/*.yaml into the Policy in force (every problem as file:line: code: message)."""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from forewarn.policy import conditions
from forewarn.policy.files import SCOPE_FILE, default_rules_dir, rule_files
from forewarn.policy.model import Policy, Rule, policy_digest
from forewarn.policy.schema import (
    EMAIL,
    MAX_MINUTES,
    MESSAGE_FIELDS,
    PARAM_REF,
    REQUIREMENT_ARGS,
    REQUIREMENT_PROBLEMS,
    TRIGGER_SUBJECT,
    RuleFile,
    ScopeFile,
    placeholders,
)
from forewarn.policy.yamlsrc import YamlDoc, YamlError, load_yaml


@dataclass(frozen=True, order=True)
class LintError:
    """One problem in a rule file."""

    file: str
    line: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.code}: {self.message}"


class PolicyError(Exception):
    """The policy cannot be loaded; `errors` says every reason."""

    def __init__(self, errors: list[LintError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


def load_policy(directory: str | Path | None = None) -> Policy:
    """The policy in `directory` (default: the project's rules/); PolicyError if any file is bad."""
    rules, errors = lint_directory(directory)  # the scope file's problems included
    root = Path(directory) if directory is not None else default_rules_dir()
    scope, _ = lint_scope(root)
    if errors or scope is None:
        raise PolicyError(errors)
    return Policy(
        rules=tuple(rules),
        digest=policy_digest(rules, scope.customers),
        source=str(directory or ""),
        scope=scope.customers,
        scope_description=scope.description,
    )


DEFAULT_SCOPE_FILE = ScopeFile(description="customers on the enterprise plan", customers=dict(conditions.DEFAULT_SCOPE))


def lint_scope(root: Path) -> tuple[ScopeFile | None, list[LintError]]:
    """The policy's scope (the directory's _scope.yaml, or the default) and its problems."""
    path = root / SCOPE_FILE
    if not root.is_dir() or not path.is_file():
        return DEFAULT_SCOPE_FILE, []
    name = str(path)
    try:
        doc = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return None, [LintError(name, 1, "unreadable", str(exc))]
    except YamlError as exc:
        return None, [LintError(name, exc.line, exc.code, exc.message)]
    errors = [
        LintError(name, line, "duplicate-key", f"key {p[-1]!r} appears twice; the second would silently win")
        for p, line in doc.duplicates
    ]
    if not isinstance(doc.data, dict):
        not_a_scope = LintError(name, 1, "not-a-scope", "a scope file is a mapping (description:, customers:)")
        return None, [*errors, not_a_scope]
    try:
        scope = ScopeFile.model_validate(doc.data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and _is_union_tag(p)))
            where = ".".join(str(p) for p in loc) or "(file)"
            if err["type"] == "extra_forbidden":
                hint = _did_you_mean(str(loc[-1]), list(ScopeFile.model_fields))
                errors.append(LintError(name, doc.line_of(loc), "unknown-key", f"unknown key {loc[-1]!r}{hint}"))
            else:
                errors.append(LintError(name, doc.line_of(loc), "invalid-value", f"{where}: {err['msg']}"))
        return None, errors
    for key, message in conditions.problems(scope.customers, "scope", None):
        errors.append(LintError(name, doc.line_of(("customers", key)), "unknown-key" if "no attribute" in message
                                else "invalid-value", message))
    return (None if errors else scope), errors


def lint_directory(directory: str | Path | None = None) -> tuple[list[Rule], list[LintError]]:
    """Every rule of the directory that is valid, and every problem found."""
    root = Path(directory) if directory is not None else default_rules_dir()
    if not root.is_dir():
        return [], [LintError(str(root), 0, "no-directory", "not a directory of rule files")]
    files = rule_files(root)
    if not files:
        return [], [LintError(str(root), 0, "no-rules", "no *.yaml rule files in this directory")]
    rules: list[Rule] = []
    errors: list[LintError] = []
    seen: dict[str, str] = {}
    for path in files:
        rule, errs = lint_file(path)
        errors.extend(errs)
        if rule is None:
            continue
        if rule.id in seen:
            errors.append(
                LintError(str(path), 1, "duplicate-id", f"rule id {rule.id!r} is also defined in {seen[rule.id]}")
            )
            continue
        seen[rule.id] = str(path)
        rules.append(rule)
    errors.extend(lint_scope(root)[1])
    return sorted(rules, key=lambda r: r.id), sorted(errors)


def lint_file(path: Path) -> tuple[Rule | None, list[LintError]]:
    """The rule in `path` if it is valid, and every problem found in it."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [LintError(name, 1, "unreadable", str(exc))]
    try:
        doc = load_yaml(text)
    except YamlError as exc:
        return None, [LintError(name, exc.line, exc.code, exc.message)]
    errors = [
        LintError(name, line, "duplicate-key", f"key {p[-1]!r} appears twice; the second would silently win")
        for p, line in doc.duplicates
    ]
    if not isinstance(doc.data, dict):
        return None, [*errors, LintError(name, 1, "not-a-rule", "a rule file is a mapping (id:, title:, ...)")]
    try:
        parsed = RuleFile.model_validate(doc.data)
    except ValidationError as exc:
        errors.extend(_schema_errors(name, doc, exc))
        return None, errors
    errors.extend(_semantic_errors(name, doc, parsed, path.stem))
    if errors:
        return None, errors
    return Rule(spec=parsed, path=name), []


# -- schema errors, in words, with did-you-mean -----------------------------------


def _schema_errors(name: str, doc: YamlDoc, exc: ValidationError) -> list[LintError]:
    out: list[LintError] = []
    seen: set[tuple[int, str]] = set()
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and _is_union_tag(p)))
        line = doc.line_of(loc)
        where = ".".join(str(p) for p in loc) or "(file)"
        kind = err["type"]
        if kind == "extra_forbidden":
            key = str(loc[-1])
            hint = _did_you_mean(key, _fields_at(loc[:-1]))
            code, msg = "unknown-key", f"unknown key {key!r} in {'.'.join(map(str, loc[:-1])) or 'the rule'}{hint}"
        elif kind == "missing":
            code, msg = "missing-key", f"{where}: required"
        elif kind == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            got = err.get("input")
            hint = _did_you_mean(str(got), [e.strip(" '") for e in str(expected).replace(" or ", ",").split(",")])
            code, msg = "invalid-value", f"{where}: {got!r} is not one of {expected}{hint}"
        else:
            code, msg = "invalid-value", f"{where}: {err['msg']}"
        if (line, msg) not in seen:
            seen.add((line, msg))
            out.append(LintError(name, line, code, msg))
    return out


def _is_union_tag(part: str) -> bool:
    # pydantic names union members in error locations (e.g. "int", "str",
    # "list[str]", "function-after[...]"); they are not keys of the file.
    return part in {"int", "str", "bool", "float"} or "[" in part or part.startswith("function-")


def _unwrap(annotation: Any) -> Any:
    """The model class inside Optional[...] / list[...] / dict[str, ...], if any."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            inner = _unwrap(arg)
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
        return None
    if origin in (list, dict):
        return _unwrap(typing.get_args(annotation)[-1])
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    return annotation


def _fields_at(loc: tuple[str | int, ...]) -> list[str]:
    """The field names of the schema model at `loc` (for did-you-mean)."""
    model: Any = RuleFile
    for part in loc:
        if isinstance(part, int) or not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        field = model.model_fields.get(part)
        if field is None:
            # a dict key (e.g. a param name): the value type is the model
            continue
        model = _unwrap(field.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _did_you_mean(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# -- what the schema cannot see ---------------------------------------------------


def _semantic_errors(name: str, doc: YamlDoc, rule: RuleFile, stem: str) -> list[LintError]:
    errors: list[LintError] = []

    def err(loc: tuple[str | int, ...], code: str, msg: str) -> None:
        errors.append(LintError(name, doc.line_of(loc), code, msg))

    if rule.id != stem:
        err(("id",), "id-mismatch", f"id {rule.id!r} must equal the file name {stem!r}")
    if rule.obligation is None and rule.alarm is None and not rule.checks:
        err((), "no-logic", "a rule needs an obligation, an alarm or checks")

    used: set[str] = set()

    def ref(loc: tuple[str | int, ...], value: object, want: str) -> None:
        if not isinstance(value, str):
            return
        m = PARAM_REF.match(value)
        if not m:
            err(loc, "invalid-value", f"{value!r} is neither a number nor a $parameter")
            return
        pname = m.group(1)
        used.add(pname)
        param = rule.params.get(pname)
        if param is None:
            err(
                loc,
                "undefined-param",
                f"parameter {pname!r} is not defined in params{_did_you_mean(pname, list(rule.params))}",
            )
        elif param.type != want:
            err(loc, "param-type", f"parameter {pname!r} is a {param.type}; this needs {want}")

    producible: set[str] = set()
    if rule.obligation is not None:
        ob = rule.obligation
        producible |= {"missing", "late", "early"}
        for i, trig in enumerate(ob.trigger):
            if TRIGGER_SUBJECT[trig] != ob.subject:
                err(("obligation", "trigger", i), "invalid-value", f"{trig} is not a moment of a {ob.subject}")
        _check_where(ob.subject, ob.where, ("obligation", "where"), err, "obligation")
        for side in ("not_before", "not_after"):
            anchor = getattr(ob.window, side)
            base = ("obligation", "window", side)
            ref((*base, "business_days_before"), anchor.business_days_before, "business_days")
            ref((*base, "minutes_before"), anchor.minutes_before, "minutes")
            ref((*base, "minutes_after"), anchor.minutes_after, "minutes")
            if anchor.at == "release_at" and ob.subject != "release":
                err((*base, "at"), "invalid-value", "release_at is an anchor of releases only")
        if "missing" not in rule.problems:
            err(("problems",), "missing-problem", "an obligation needs a message for problem 'missing'")
    if rule.alarm is not None:
        _check_where(rule.alarm.subject, rule.alarm.where, ("alarm", "where"), err, "obligation")
        ref(("alarm", "after", "minutes_after"), rule.alarm.after.minutes_after, "minutes")
        ref(("alarm", "after", "minutes_before"), rule.alarm.after.minutes_before, "minutes")
        producible.add(rule.alarm.problem)
        if rule.alarm.problem not in rule.problems:
            err(("problems",), "missing-problem", f"no message for the alarm's problem {rule.alarm.problem!r}")
    for i, check in enumerate(rule.checks):
        base = ("checks", i)
        _check_where(check.about, check.where, (*base, "where"), err, "check")
        for j, (req, args) in enumerate(check.requirements()):
            if req not in REQUIREMENT_PROBLEMS:
                hint = _did_you_mean(req, list(REQUIREMENT_PROBLEMS))
                err((*base, "require", j), "unknown-requirement", f"unknown requirement {req!r}{hint}")
                continue
            producible |= set(REQUIREMENT_PROBLEMS[req])
            for code in REQUIREMENT_PROBLEMS[req]:
                if code not in rule.problems:
                    err(("problems",), "missing-problem", f"requirement {req!r} can report {code!r}: give it a message")
            wanted = REQUIREMENT_ARGS.get(req, {})
            for arg, value in args.items():
                if arg not in wanted:
                    err(
                        (*base, "require", j, req),
                        "unknown-key",
                        f"{req} takes no argument {arg!r}{_did_you_mean(arg, list(wanted))}",
                    )
                elif isinstance(value, str) and PARAM_REF.match(value):
                    ref((*base, "require", j, req, arg), value, wanted[arg])
                elif wanted[arg] == "email" and not (isinstance(value, str) and EMAIL.match(value)):
                    err((*base, "require", j, req, arg), "invalid-value", f"{arg} needs an e-mail address")
                elif wanted[arg] == "minutes" and not (
                    isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_MINUTES
                ):
                    err((*base, "require", j, req, arg), "invalid-value", f"{arg} needs minutes, 0 to {MAX_MINUTES}")
            for arg in wanted:
                if arg not in args:
                    err((*base, "require", j), "missing-key", f"{req} needs argument {arg!r}")

    for code in rule.problems:
        if code not in producible:
            err(
                ("problems", code),
                "unknown-problem",
                f"this rule never reports {code!r}{_did_you_mean(code, sorted(producible))}",
            )
    for code, template in rule.problems.items():
        _check_template(template, MESSAGE_FIELDS | set(rule.params), ("problems", code), err)
    _check_template(rule.message, set(rule.params), ("message",), err)
    for pname in rule.params:
        if pname not in used:
            err(("params", pname), "unused-param", f"parameter {pname!r} is never used: the rule's logic ignores it")
    return errors


def _check_where(subject: str | None, where: dict[str, object], loc: tuple[str | int, ...], err: Any,
                 place: Any) -> None:
    """Every key and value of a condition checked against the condition table (with did-you-mean)."""
    for key, message in conditions.problems(where, place, subject):
        err((*loc, key), "unknown-key" if message.startswith("no attribute") else "invalid-value", message)


def _check_template(template: str, allowed: set[str], loc: tuple[str | int, ...], err: Any) -> None:
    try:
        fields = placeholders(template)
    except ValueError as exc:
        err(loc, "bad-template", f"malformed message template: {exc}")
        return
    for f in fields:
        if f not in allowed:
            hint = _did_you_mean(f, sorted(allowed))
            err(loc, "unknown-placeholder", f"{{{f}}} is not a known placeholder{hint} (no attribute or index access)")
