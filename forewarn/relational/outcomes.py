"""Obligations and their outcomes as Python objects, for what reads them one by one: the engine's open
obligations (forewarn.relational.engine), `forewarn explain` and the synthetic period's sends
(forewarn.synth.batch). The audit never makes them: its counts and findings come from the tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from forewarn.events.parse import gc_paused
from forewarn.lifecycle.model import Obligation, Outcome
from forewarn.relational.evaluation import Relational
from forewarn.relational.obligations import VOID_REASONS, VOID_SINCE, from_epoch_us, void_since_query

OBLIGATION_COLUMNS = """o.rule, o.subject_kind, o.subject, o.customer, o.need, o.opened_us, o.nb_us, o.na_us,
       o.na_base_us, o.moment_no, o.event_id, o.defined_event, o.attrs_id, o.timezone, o.country, o.subdivision"""
"""What an Obligation object is made of (`Obligations`; its kinds are its rule's)."""

OUTCOMES = f"""
WITH taken AS (
    SELECT r.oid, list(c.communication ORDER BY u.n) AS communications, list(c.id ORDER BY u.n) AS event_ids,
           arg_max(c.at_us, u.n) AS last_us
    FROM outcomes r, unnest(r.comm_pos) WITH ORDINALITY AS u(p, n) JOIN comms c ON c.pos = u.p
    GROUP BY r.oid
)
SELECT o.oid, {OBLIGATION_COLUMNS}, o.void, o.superseded_us, o.cancelled_us, o.closed_us, r.status, r.problem,
       t.communications, t.event_ids, t.last_us
FROM obligations o LEFT JOIN outcomes r USING (oid) LEFT JOIN taken t USING (oid)
WHERE ($rule IS NULL OR o.rule = $rule) AND ($subject IS NULL OR o.subject = $subject)
  AND ($customer IS NULL OR o.customer = $customer)
ORDER BY o.oid
"""
"""Obligations (all, or of one rule, subject or customer) with their outcome and the communications it took,
in derivation order."""


class Obligations:
    """Makes the Obligation of each OBLIGATION_COLUMNS row of one evaluation: its moment is the subject's
    history's; what rows share (a rule's kinds and anchor, an instant) is made once."""

    def __init__(self, rel: Relational) -> None:
        self.rel = rel
        self._rules: dict[str, tuple[tuple[str, ...], str, tuple[str, int]]] = {}
        self._instants: dict[int, datetime] = {}

    def _instant(self, us: int) -> datetime:
        t = self._instants.get(us)
        if t is None:
            t = self._instants[us] = from_epoch_us(us)
        return t

    def _rule(self, rule_id: str) -> tuple[tuple[str, ...], str, tuple[str, int]]:
        found = self._rules.get(rule_id)
        if found is None:
            rule = self.rel.policy.by_id[rule_id]
            spec = rule.spec.obligation
            assert spec is not None
            anchor = spec.window.not_after
            found = self._rules[rule_id] = (tuple(spec.kinds), anchor.at, rule.anchor_offset(anchor))
        return found

    def __call__(self, row: Sequence) -> Obligation:
        (rule_id, kind, subject, customer, need, opened, nb, na, anchor_at, moment_no, event_id, defined,
         attrs_id, tz, country, sub) = row
        kinds, anchor, offset = self._rule(rule_id)
        instant = self._instant
        shared = (defined,) if defined == event_id else (defined, event_id)
        return Obligation(
            rule_id,
            kind,
            subject,
            customer,
            kinds,
            need,
            instant(opened),
            instant(nb),
            instant(na),
            anchor,
            instant(anchor_at),
            offset,
            self.rel.life.histories[(kind, subject)].moments[moment_no],
            (*shared, attrs_id) if attrs_id not in shared else shared,
            tz,
            country,
            sub,
        )


def outcomes(
    rel: Relational, rule: str | None = None, subject: str | None = None, customer: str | None = None
) -> dict[int, Outcome]:
    """Every obligation's outcome (only those of `rule`, `subject`, `customer` where given), by `oid`, in
    derivation order: met with the communications it took (the last one's send time), violated with the
    late or early one it took, pending, or void and why."""
    params = {"rule": rule, "subject": subject, "customer": customer}
    obligation = Obligations(rel)
    with gc_paused():  # as many acyclic objects as obligations: the cyclic GC only costs time here
        return {row[0]: _outcome(row, obligation) for row in rel.con.execute(OUTCOMES, params).fetchall()}


def _outcome(row: Sequence, obligation: Obligations) -> Outcome:
    """The outcome of an OUTCOMES row."""
    void, superseded, cancelled, closed, status, problem, comms, event_ids, last_us = row[17:]
    ob = obligation(row[1:17])
    if void is not None:
        instants = {"superseded_us": superseded, "cancelled_us": cancelled, "closed_us": closed}
        return Outcome(ob, "void", void_reason=VOID_REASONS[void].format(
            from_epoch_us(instants[VOID_SINCE[void]]).isoformat()
        ))
    if status == "met":
        return Outcome(ob, "met", sent=from_epoch_us(last_us), matched=tuple(comms), matched_events=tuple(event_ids))
    if status == "violated" and comms:
        return Outcome(ob, "violated", problem=problem, communication=comms[0], sent=from_epoch_us(last_us),
                       matched_events=tuple(event_ids))
    return Outcome(ob, status, problem=problem)


def void_since(rel: Relational) -> dict[int, datetime]:
    """The instant each void obligation (by `oid`) became void: before it, it stood (and was pending)."""
    return {oid: from_epoch_us(us) for oid, us in rel.con.execute(*void_since_query(rel.policy)).fetchall()}
