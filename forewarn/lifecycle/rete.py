"""The project's only door to durable_rules: single-fact rules, one sid per subject, no threads."""

# Defects of durable_rules 2.0.28 avoided here. They are listed in
# /work/shared/notes/durable-rules.md, and (*) marks ones confirmed in its C
# source (src/rules/*.c of the 2.0.28 sdist) or by experiment on this machine:
#
#  D1  Facts are keyed by a 32-bit FNV-1a hash of their "id" per sid; the string
#      is never compared (state.c storeMessage). A colliding id is rejected as
#      "already observed" (*: "40189" and "797186" collide). Sids are keyed the
#      same way, so two live sids with colliding hashes silently share one state
#      (*). Field names are keyed by FNV-1a too (json.c).
#  D2  Action exceptions are swallowed into the state's "exception" field, and
#      an action that takes over 10 s is dropped without completing.
#  D3  Events are consumed by the first rule that matches; facts fire them all.
#  D4  Host() starts two timer threads that never stop; rulesets live in the C
#      core until delete_ruleset, states until delete_state.
#  D5  On Python 3.12 every action triggers utcfromtimestamp's DeprecationWarning.
#  D6  No locks anywhere in the C core.
#  D7  Cross-fact comparisons read out of bounds: never generated here.
#  D8  (*) Every sid owns a state fact {"sid": s, "id": "sid-" + s, "$s": 1}
#      that runs through the same rules: an unguarded condition such as
#      "$nex type" or "$ex id" matches it and, since each action rewrites the
#      state, fires again and again (an assert never returned).
#  D9  (*) The C core compares false == 0 and true == 1 and cannot parse
#      floats written with an exponent but no fraction ("1e+20": error 204).
#  D10 (*) Matching walks alpha nodes on a 64-entry stack: one fact matching 65
#      rules with distinct conditions fails with error 303.
#  D11 (*) A ruleset holds at most 1024 live sids; the 1025th half-creates a
#      state node and reports "out of memory".
#  D12 (*) createStateNode leaves the state's action context uninitialised and
#      delete_state frees it: deleting a sid on which no action ever ran frees
#      garbage (segfaults and aborts found by the property test; valgrind:
#      "conditional jump depends on uninitialised value" in deleteStateNode).
#      Starting an action sets the context, completing it resets it to NULL.
#  D13 (*) A fact's string compared with an int in a condition goes through
#      strncmp with an uninitialised length (valgrind), so whether "1" == 1
#      depends on stack garbage. With the tagged encoding of D9 such a pair
#      differs at its first byte, whatever the length.
#  D14 (*) Ruleset.do_actions runs each action through a Promise whose run()
#      defines a timeout function that refers to itself, holding the action's
#      Closure, which holds the host and the ruleset: a reference cycle per
#      action run that only the cyclic GC frees (and a process that freezes
#      the GC, as `forewarn run` does, keeps). The actions are run here instead,
#      with the same C calls and no Python callbacks. Host, rulesets and their
#      Promises form cycles too (host <-> ruleset, each Promise its own root):
#      undone when a session is freed.
#  D15 (*) A sid must be a non-empty ASCII string without '"', '\' or control
#      characters, or the assertion fails. Subjects are named by the caller
#      with any string (user ids such as "wartung-ä"); each open subject gets a
#      generated sid ("s" + a number) for as long as it is open.

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

import durable_rules_engine
from durable import engine as _dr_engine

__all__ = [
    "ActionError",
    "Condition",
    "FactIdCollision",
    "Rule",
    "RuleEngineError",
    "Session",
    "SubjectIdCollision",
    "compile_condition",
    "fnv1a_32",
]

Condition = Mapping[str, object]
Action = Callable[[str, Mapping[str, object]], None]
Encoded = str | int

RULE_NAME: Final = re.compile(r"[a-z0-9_.-]+\Z")
FIELD_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
# Printable ASCII without '"' and '\': its JSON text is the string itself, so
# the bytes the C core hashes (D1) are exactly the bytes hashed here.
TOKEN: Final = re.compile(r'[ !#-\[\]-~]+\Z')

RULES_PER_RULESET: Final = 32  # D10: at most ~64 distinct matches per ruleset; keep 2x margin
MAX_LIVE_SUBJECTS: Final = 1024  # D11
MAX_FACT_FIELDS: Final = 250  # C MAX_OBJECT_PROPERTIES is 255, sid and id included
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
ERR_SID_NOT_FOUND: Final = "error code: 309"
ASSERTED, NOT_HANDLED, OBSERVED = 0, 1, 2  # durable_rules_engine.assert_fact result codes

# D12: before deleting a state on which no action ever ran, set PRIME_FIELD
# on its state fact: PRIME_RULE fires, its action clears the field, and the
# context is then initialised (and NULL). States that ran a user action need
# nothing. Upper case: no user rule can take the name; "$": no user field can.
PRIME_RULE: Final = "PRIME"
PRIME_FIELD: Final = "$prime"
PRIME_CONDITION: Final[Mapping[str, object]] = {"$and": [{"$s": 1}, {"$ex": {PRIME_FIELD: 1}}]}

# D8: every condition starts with this, so no rule ever sees a state fact.
STATE_GUARD: Final[Mapping[str, object]] = {"$nex": {"$s": 1}}  # a copy goes in each condition

_FNV_OFFSET: Final = 0x811C9DC5
_FNV_PRIME: Final = 0x01000193
_SESSION_NUMBERS = itertools.count(1)


class RuleEngineError(Exception):
    """durable_rules failed, or was about to be used in a way known to fail."""


class FactIdCollision(RuleEngineError):
    """Two distinct fact ids of one subject share a 32-bit FNV-1a hash (D1)."""


class SubjectIdCollision(RuleEngineError):
    """Two live sids share a 32-bit FNV-1a hash, so the C core would merge them (D1)."""


class ActionError(RuleEngineError):
    """A rule's action raised; the original exception is the __cause__."""

    def __init__(
        self, message: str, *, sid: str, fact_id: str, rule: str,
        fired: Sequence[str], not_run: Sequence[str],
    ) -> None:
        super().__init__(message)
        self.sid = sid
        self.fact_id = fact_id
        self.rule = rule
        self.fired = tuple(fired)  # actions of this fact that ran to completion
        self.not_run = tuple(not_run)  # matched rules whose action was not run


@dataclass(frozen=True)
class Rule:
    """A named single-fact pattern and the action to run on every fact it matches."""

    name: str
    where: Condition
    action: Action


def fnv1a_32(text: str) -> int:
    """The 32-bit FNV-1a hash the C core keys facts, sids and fields by (D1)."""
    value = _FNV_OFFSET
    for byte in text.encode():
        if byte > 0x7F:  # the C code xors a signed char: bytes >= 0x80 are sign-extended
            byte |= 0xFFFFFF00
        value = ((value ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return value


# --------------------------------------------------------------- conditions --


def _encode(value: object, what: str) -> Encoded:
    """A fact or condition scalar as the C core will see it.

    D9: booleans and strings are tagged strings, so false != 0 and "1" != 1;
    integral floats become ints (1.0 == 1, as in Python) and other floats a
    tagged repr, which the C JSON parser always reads. D13: a tagged string
    starts with a letter, the text of an int with a digit or "-".
    """
    if isinstance(value, bool):
        return "b:true" if value else "b:false"
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise RuleEngineError(f"{what}: integer {value} outside the C core's 64-bit range")
        return value
    if isinstance(value, float):
        if value.is_integer() and INT64_MIN <= value <= INT64_MAX:
            return int(value)
        return "f:" + repr(value)
    if isinstance(value, str):
        return "s:" + value
    raise RuleEngineError(f"{what}: {type(value).__name__} is not a str, int, float or bool")


def _check_field(name: object, what: str) -> str:
    if not isinstance(name, str) or not FIELD_NAME.match(name):
        raise RuleEngineError(f"{what}: field name {name!r} must match {FIELD_NAME.pattern}")
    if name == "sid":
        raise RuleEngineError(f"{what}: 'sid' is the subject, set by the session")
    return name


def _check_token(value: object, what: str) -> str:
    if not isinstance(value, str) or not TOKEN.match(value):
        raise RuleEngineError(
            f"{what}: {value!r} must be a non-empty ASCII string without '\"' or '\\'"
        )
    return value


def _equality(name: str, value: object, what: str) -> dict[str, object]:
    if name == "id":  # the C core keeps "id" as the raw string (it hashes it, D1)
        return {"id": _check_token(value, what)}
    if value is None:
        raise RuleEngineError(f"{what}: null is not a value; use {{'exists': false}}")
    return {name: _encode(value, what)}


def _conjunct(name: str, spec: object) -> dict[str, object]:
    what = f"where.{name}"
    if isinstance(spec, Mapping):
        if set(spec) != {"exists"} or not isinstance(spec["exists"], bool):
            raise RuleEngineError(f"{what}: a mapping must be {{'exists': true|false}}")
        return {"$ex" if spec["exists"] else "$nex": {name: 1}}
    if isinstance(spec, list | tuple):
        if not spec:
            raise RuleEngineError(f"{what}: an empty any-of list matches nothing")
        options = [_equality(name, item, what) for item in spec]
        # Dropping duplicates keeps one match per rule and fact (D10's bound).
        unique = list({repr(option): option for option in options}.values())
        return unique[0] if len(unique) == 1 else {"$or": unique}
    return _equality(name, spec, what)


def compile_condition(where: Condition) -> dict[str, object]:
    """The durable_rules condition (for the pattern "m") of a where-mapping.

    All conjuncts must hold; a spec is a scalar (equality), a list of scalars
    (any of them) or {"exists": bool}. An empty where matches every fact, but
    never the engine's own state fact (D8).
    """
    if not isinstance(where, Mapping):
        raise RuleEngineError(f"where must be a mapping, not {type(where).__name__}")
    conjuncts: list[dict[str, object]] = [{"$nex": {"$s": 1}}]  # STATE_GUARD, fresh
    conjuncts += [_conjunct(_check_field(name, "where"), spec) for name, spec in where.items()]
    return conjuncts[0] if len(conjuncts) == 1 else {"$and": conjuncts}


# ------------------------------------------------------------------- engine --


class _ThreadlessHost(_dr_engine.Host):
    """durable's Host without its two never-ending timer threads (D4).

    Nothing is dispatched in the background: actions run synchronously inside
    assert_fact, and no timers are used.
    """

    def _run(self) -> None:
        return None


@contextmanager
def _utc_warning_silenced() -> Iterator[None]:
    """Hide the 3.12 utcfromtimestamp DeprecationWarning of durable's actions (D5), locally."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"datetime\.datetime\.utcfromtimestamp", category=DeprecationWarning
        )
        yield


@dataclass
class _Match:
    rule: str
    sid: object
    fact_id: object


def _record_match(matches: list[_Match], rule: str, closure: Any) -> None:
    """The durable-side action of every rule: note the match, run nothing else.

    User actions run later, outside durable, so none of their exceptions can be
    swallowed (D2) and none can approach the 10-second action lease.
    """
    fact = getattr(closure.m, "_d", None)
    if not isinstance(fact, dict):
        raise RuleEngineError(f"rule {rule} fired without a fact")
    matches.append(_Match(rule, fact.get("sid"), fact.get("id")))


def _recorder(matches: list[_Match], rule: str) -> Callable[[Any], None]:
    def record(closure: Any) -> None:  # durable requires exactly one parameter
        _record_match(matches, rule, closure)

    return record


def _unprime(closure: Any) -> None:
    """PRIME_RULE's action (D12): drop the field, so the rule does not fire again."""
    closure.s[PRIME_FIELD] = None  # durable's Content deletes a key set to None


class _Engine:
    """The C-side resources of a Session, separate so a finalizer can free them."""

    def __init__(self, prefix: str, chunks: Sequence[Sequence[Rule]]) -> None:
        self.matches: list[_Match] = []
        self.host: _ThreadlessHost | None = _ThreadlessHost()
        self.rulesets: dict[str, Any] = {}  # name -> durable's Ruleset
        self.actions: dict[str, dict[str, Callable[[Any], None]]] = {}  # name -> rule name -> action (D14)
        self.handles: dict[str, int] = {}  # name -> C handle
        # sid -> {ruleset holding its state: whether an action started there (D12)}
        self.states: dict[str, dict[str, bool]] = {}
        try:
            for number, chunk in enumerate(chunks):
                self._register(f"{prefix}-{number}", chunk)
        except BaseException:
            self.free()
            raise

    def _register(self, name: str, rules: Sequence[Rule]) -> None:
        assert self.host is not None
        actions: dict[str, Callable[[Any], None]] = {rule.name: _recorder(self.matches, rule.name) for rule in rules}
        actions[PRIME_RULE] = _unprime
        definition: dict[str, dict[str, object]] = {
            rule.name: {"all": [{"m": compile_condition(rule.where)}], "run": actions[rule.name]} for rule in rules
        }
        definition[PRIME_RULE] = {"all": [{"m": copy.deepcopy(PRIME_CONDITION)}], "run": _unprime}
        try:
            self.host.set_rulesets({name: definition})  # mutates definition: fresh each time
        except Exception as exc:
            raise RuleEngineError(f"durable_rules rejected ruleset {name}: {_reason(exc)}") from exc
        self.rulesets[name] = self.host.get_ruleset(name)
        self.handles[name] = self.rulesets[name]._handle
        self.actions[name] = actions

    def assert_fact(self, sid: str, fact_id: str, payload: dict[str, object]) -> list[str]:
        """Assert into every ruleset; the names of the rules that matched."""
        self.matches.clear()
        held = self.states.setdefault(sid, {})
        text = json.dumps(payload, ensure_ascii=False)  # as durable's Ruleset would
        with _utc_warning_silenced():
            for name in self.handles:
                held.setdefault(name, False)  # the C core creates the state before matching
                before = len(self.matches)
                state = self._assert_one(name, text)
                if state is not None:  # an action ran: the state's context is set (D12)
                    held[name] = True
                if state is not None or len(self.matches) > before:
                    _check_completed(state)
        for match in self.matches:
            if match.sid != sid or match.fact_id != fact_id:
                raise RuleEngineError(
                    f"rule {match.rule} fired on fact {match.fact_id!r} of {match.sid!r}"
                )
        return [match.rule for match in self.matches]

    def _assert_one(self, name: str, text: str) -> object:
        """Assert into one ruleset and run what it queued; durable's state, or None.

        Host.assert_fact, minus its exceptions for "matched nothing" and one
        json.dumps per ruleset.
        """
        try:
            code, state_offset = durable_rules_engine.assert_fact(self.handles[name], text)  # D3
        except Exception as exc:  # durable_rules_engine.error, MemoryError from C, ...
            raise RuleEngineError(f"durable_rules failed: {_reason(exc)}") from exc
        if code == OBSERVED:  # D1, unreachable after the session's own check
            raise RuleEngineError("durable_rules took the fact id as already observed")
        if code not in (ASSERTED, NOT_HANDLED):
            raise RuleEngineError(f"durable_rules deferred the fact (code {code})")
        return self._do_actions(name, state_offset)

    def _prime(self, name: str, sid: str) -> None:
        """Make PRIME_RULE run on the sid's state fact, initialising its context (D12)."""
        state = {"sid": sid, "id": "sid-" + sid, "$s": 1, PRIME_FIELD: 1}
        try:
            with _utc_warning_silenced():
                state_offset = durable_rules_engine.update_state(
                    self.handles[name], json.dumps(state, ensure_ascii=False)
                )
                _check_completed(self._do_actions(name, state_offset))
        except Exception as exc:
            raise RuleEngineError(f"could not prepare {sid} for deletion: {_reason(exc)}") from exc
        finally:
            self.matches.clear()  # actions left pending by a failed assert may have run

    def _do_actions(self, name: str, state_offset: int) -> object:
        """Run the actions queued on a state, one after the other as durable's Ruleset.do_actions
        does (an action's exception goes into the state's "exception", D2); the state, or None
        if nothing was queued. Done here rather than by durable, whose way leaves a cycle (D14)."""
        handle = self.handles[name]
        actions = self.actions[name]
        try:
            started = durable_rules_engine.start_action_for_state(handle, state_offset)
            if not started:
                return None
            state = json.loads(started[0])
            queued = json.loads(started[1])
            while queued:
                action, message = next(iter(queued.items()))
                closure = _dr_engine.Closure(None, None, state, message, state_offset)
                try:
                    actions[action](closure)
                except Exception as exc:  # as durable's Promise.run: into the state
                    closure.s.exception = f"exception caught {exc}"
                durable_rules_engine.update_state(handle, json.dumps(closure.s._d, ensure_ascii=False))
                following = durable_rules_engine.complete_and_start_action(handle, state_offset)
                queued = json.loads(following) if following else None
        except Exception as exc:
            raise RuleEngineError(f"durable_rules failed running actions: {_reason(exc)}") from exc
        return state

    def delete_state(self, sid: str) -> list[str]:
        """Free a sid's state in every ruleset; the errors, if any."""
        errors = []
        for name, primed in self.states.pop(sid, {}).items():
            try:
                if not primed:
                    self._prime(name, sid)
                durable_rules_engine.delete_state(self.handles[name], sid)
            except RuleEngineError as exc:  # not primed: leaking the state beats a crash
                errors.append(str(exc))
            except Exception as exc:
                if not str(exc).endswith(ERR_SID_NOT_FOUND):  # assert failed before creating it
                    errors.append(f"delete_state({name}, {sid}): {_reason(exc)}")
        return errors

    def free(self) -> list[str]:
        """Delete every state, then every ruleset; idempotent; the errors, if any."""
        errors = []
        for sid in list(self.states):
            errors += self.delete_state(sid)
        for name, handle in self.handles.items():
            try:
                durable_rules_engine.delete_ruleset(handle)  # does not free live states
            except Exception as exc:
                errors.append(f"delete_ruleset({name}): {_reason(exc)}")
        self.handles.clear()
        self.rulesets.clear()
        self.actions.clear()
        if self.host is not None:  # D14: durable's own cycles, undone so that all of it goes by reference count
            for ruleset in self.host._ruleset_list:
                for promise in ruleset._actions.values():
                    promise.root = None  # each Promise is its own root
                ruleset._actions.clear()
                ruleset._host = None  # the host lists its rulesets, each ruleset names its host
            self.host._ruleset_directory.clear()
            self.host._ruleset_list.clear()
        self.host = None  # drop the Python Ruleset objects that still hold the handles
        return errors


def _check_completed(state: object) -> None:
    """D2: after actions, durable returns the state; check they all completed cleanly."""
    if not isinstance(state, dict):
        raise RuleEngineError("durable_rules did not complete its actions (action lease expired?)")
    if "exception" in state:
        raise RuleEngineError(f"durable_rules swallowed an action exception: {state['exception']}")


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "message", None) or exc) or type(exc).__name__


# ------------------------------------------------------------------ session --


@dataclass
class _Subject:
    sid: str  # the generated sid the C core knows the subject by (D15)
    ids: dict[int, str] = field(default_factory=dict)  # FNV-1a hash -> fact id
    failed: str | None = None


class Session:
    """One evaluation's durable_rules host: one sid per subject, no threads, freed on close.

    A subject is any non-empty string (a user's id may hold any Unicode); the
    C core sees a generated ASCII sid instead (D15). The rules live in one
    ruleset (one per 32 rules, D10). Facts are asserted
    one at a time; each returns the rules whose actions ran, in the order of
    `rules`. A subject whose assertion failed (engine error or action error)
    refuses further facts until end_subject. Not thread-safe: a Session
    refuses concurrent or re-entrant use (D6).
    """

    def __init__(self, rules: Sequence[Rule]) -> None:
        self._rules: dict[str, Rule] = {}
        for rule in rules:
            self._check_rule(rule)
            self._rules[rule.name] = rule
        self._order = {name: position for position, name in enumerate(self._rules)}
        self._fields: set[str] = set()  # field names checked and claimed
        reserved = ("id", "sid", "$s", PRIME_FIELD)
        self._field_owners = {fnv1a_32(name): name for name in reserved}
        for name in (f for rule in self._rules.values() for f in rule.where):
            self._claim_field(name)
        self._subjects: dict[str, _Subject] = {}  # subject -> its state
        self._sid_owners: dict[int, str] = {}  # FNV-1a hash -> live generated sid
        self._sid_numbers: Iterator[int] = itertools.count(1)
        self._lock = threading.Lock()
        self._closed = False
        listed = list(self._rules.values())
        chunks = [listed[i:i + RULES_PER_RULESET] for i in range(0, len(listed), RULES_PER_RULESET)]
        self._engine = _Engine(f"forewarn-{next(_SESSION_NUMBERS)}", chunks)
        self._finalizer = weakref.finalize(self, self._engine.free)  # in case close is forgotten

    @property
    def open_subjects(self) -> int:
        """How many sids hold state (asserted to and not yet ended)."""
        return len(self._subjects)

    def assert_fact(self, sid: str, fact: Mapping[str, object]) -> list[str]:
        """Assert one fact of subject `sid` (any non-empty string); the names of the rules whose
        action ran, in order. Actions are called with `sid` as given.

        Raises FactIdCollision (nothing asserted) if another id of the subject
        has the same FNV-1a hash, ActionError if an action raised, and
        RuleEngineError for a repeated id, a bad fact or a durable_rules failure.
        """
        with self._using():
            if not isinstance(sid, str) or not sid:
                raise RuleEngineError(f"subject {sid!r} must be a non-empty string")
            fact_id, payload = self._payload(sid, fact)
            subject = self._subject(sid)
            self._claim_id(subject, sid, fact_id)
            payload["sid"] = subject.sid
            try:
                matched = self._engine.assert_fact(subject.sid, fact_id, payload)
            except BaseException as exc:
                subject.failed = f"fact {fact_id!r} failed in durable_rules: {exc}"
                if isinstance(exc, RuleEngineError):
                    raise RuleEngineError(f"subject {sid}: {subject.failed}") from exc
                raise
            matched.sort(key=self._order.__getitem__)
            if len(set(matched)) != len(matched):
                subject.failed = f"a rule fired twice on fact {fact_id!r}: {matched}"
                raise RuleEngineError(f"subject {sid}: {subject.failed}")
            return self._run_actions(subject, sid, fact_id, fact, matched)

    def end_subject(self, sid: str) -> None:
        """Delete the subject's state in the C core and forget its fact ids."""
        with self._using(allow_closed=True):
            subject = None if self._closed else self._subjects.pop(sid, None)
            if subject is None:
                return
            del self._sid_owners[fnv1a_32(subject.sid)]
            errors = self._engine.delete_state(subject.sid)
            if errors:
                raise RuleEngineError("; ".join(errors))

    def close(self) -> None:
        """Delete the remaining states and the rulesets; idempotent."""
        with self._using(allow_closed=True):
            if self._closed:
                return
            self._closed = True
            self._subjects.clear()
            self._sid_owners.clear()
            errors = self._engine.free()
            self._finalizer.detach()
            if errors:
                raise RuleEngineError("; ".join(errors))

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------ helpers --

    @contextmanager
    def _using(self, *, allow_closed: bool = False) -> Iterator[None]:
        """D6: one caller at a time (also refuses an action calling back in)."""
        if not self._lock.acquire(blocking=False):
            raise RuleEngineError("Session used concurrently or from inside an action")
        try:
            if self._closed and not allow_closed:
                raise RuleEngineError("Session is closed")
            yield
        finally:
            self._lock.release()

    def _check_rule(self, rule: Rule) -> None:
        if not isinstance(rule, Rule):
            raise RuleEngineError(f"not a Rule: {rule!r}")
        if not RULE_NAME.match(rule.name):
            raise RuleEngineError(f"rule name {rule.name!r} must match {RULE_NAME.pattern}")
        if rule.name in self._rules:
            raise RuleEngineError(f"two rules are named {rule.name}")
        if not callable(rule.action):
            raise RuleEngineError(f"rule {rule.name}: action is not callable")
        try:
            compile_condition(rule.where)
        except RuleEngineError as exc:
            raise RuleEngineError(f"rule {rule.name}: {exc}") from None

    def _claim_field(self, name: str) -> None:
        """D1: the C core tells fields apart by FNV-1a hash only; refuse a colliding pair."""
        owner = self._field_owners.setdefault(fnv1a_32(name), name)
        if owner != name:
            raise RuleEngineError(f"fields {owner!r} and {name!r} share an FNV-1a hash")
        self._fields.add(name)

    def _payload(self, sid: str, fact: Mapping[str, object]) -> tuple[str, dict[str, object]]:
        """The fact id and the JSON-ready fact for the C core (sid added, nulls dropped)."""
        if not isinstance(fact, Mapping):
            raise RuleEngineError(f"fact must be a mapping, not {type(fact).__name__}")
        fact_id = _check_token(fact.get("id"), "fact id")
        if fact.get("sid", sid) != sid:
            raise RuleEngineError(f"fact {fact_id!r} names sid {fact['sid']!r}, not {sid!r}")
        payload: dict[str, object] = {"sid": None, "id": fact_id}  # the generated sid, set by the caller
        for name, value in fact.items():
            if name in ("id", "sid") or value is None:  # null: absent, for "exists"
                continue
            if name not in self._fields:
                self._claim_field(_check_field(name, f"fact {fact_id!r}"))
            payload[name] = _encode(value, f"fact {fact_id!r} field {name}")
        if len(payload) > MAX_FACT_FIELDS:
            raise RuleEngineError(f"fact {fact_id!r} has more than {MAX_FACT_FIELDS} fields")
        return fact_id, payload

    def _subject(self, sid: str) -> _Subject:
        subject = self._subjects.get(sid)
        if subject is not None:
            if subject.failed is not None:
                raise RuleEngineError(f"subject {sid} failed earlier ({subject.failed}); end it")
            return subject
        if len(self._subjects) >= MAX_LIVE_SUBJECTS:
            raise RuleEngineError(
                f"{MAX_LIVE_SUBJECTS} subjects are open: end_subject some before starting {sid}"
            )
        generated = self._new_sid()
        state_id = "sid-" + generated  # the id of the engine's own state fact (D8)
        subject = self._subjects[sid] = _Subject(generated, {fnv1a_32(state_id): state_id})
        return subject

    def _new_sid(self) -> str:
        """A fresh ASCII sid (D15) whose FNV-1a hash no live sid has (D1: the C core would merge them)."""
        for _ in range(MAX_LIVE_SUBJECTS + 1):  # at most MAX_LIVE_SUBJECTS hashes are taken
            candidate = f"s{next(self._sid_numbers)}"
            if self._sid_owners.setdefault(fnv1a_32(candidate), candidate) == candidate:
                return candidate
        raise SubjectIdCollision("no generated sid is free of FNV-1a collisions with the open subjects")

    @staticmethod
    def _claim_id(subject: _Subject, sid: str, fact_id: str) -> None:
        value = fnv1a_32(fact_id)
        owner = subject.ids.get(value)
        if owner == fact_id:
            raise RuleEngineError(f"fact id {fact_id!r} asserted twice in subject {sid}")
        if owner is not None:
            raise FactIdCollision(
                f"fact ids {owner!r} and {fact_id!r} of subject {sid} share the FNV-1a hash "
                f"{value:#010x}; durable_rules would drop one"
            )
        subject.ids[value] = fact_id

    def _run_actions(
        self, subject: _Subject, sid: str, fact_id: str, fact: Mapping[str, object],
        matched: list[str],
    ) -> list[str]:
        """Run the matched rules' actions in rule order; stop and raise at the first failure."""
        fired: list[str] = []
        for position, name in enumerate(matched):
            try:
                self._rules[name].action(sid, dict(fact))
            except BaseException as exc:
                subject.failed = f"action of rule {name} raised on fact {fact_id!r}"
                if not isinstance(exc, Exception):
                    raise  # KeyboardInterrupt and friends go through unchanged
                raise ActionError(
                    f"subject {sid}: {subject.failed}: {exc!r}; ran {fired}, "
                    f"not run {matched[position + 1:]}",
                    sid=sid, fact_id=fact_id, rule=name,
                    fired=fired, not_run=matched[position + 1:],
                ) from exc
            fired.append(name)
        return fired
