"""Per-communication and per-reply checks compiled to queries: one predicate per requirement.

A check selects communications (its kinds; with `about`, those about a subject of that kind whose
attributes pass its `where`) of customers in scope when sent; each requirement is a query that
returns the communications failing it, with what the finding's message needs. Rule values (kinds,
addresses, minutes, `where` values) are bound parameters; requirement names and `where` attributes
pick fixed fragments (the closed vocabulary of forewarn.policy.schema).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

import duckdb

from forewarn.policy.conditions import Condition
from forewarn.policy.model import Policy, Rule
from forewarn.policy.schema import Check
from forewarn.relational.conditions import condition_sql
from forewarn.relational.obligations import scope_sql
from forewarn.relational.tables import run

# The communications a check applies to, with their subject (if folded) and scope at the time.
SCOPED = """
CREATE TABLE IF NOT EXISTS scoped_comms AS
SELECT c.*, cv.pos AS cv_pos FROM comms c ASOF JOIN customer_versions cv ON cv.customer = c.customer AND cv.pos <= c.pos
WHERE {scope}
"""
"""The communications to customers in scope when sent (made once, read by every check), with the position of
the customer's version then (`cv_pos`)."""


def scoped(con: duckdb.DuckDBPyConnection, policy: Policy) -> None:
    """Make `scoped_comms` (once per evaluation) for the policy's scope."""
    params: dict[str, object] = {}
    run(con, SCOPED.format(scope=scope_sql(policy.scope_condition, params)), params)


APPLIES = """
SELECT c.*, s.subject_kind AS s_kind, s.defined_event, s.release_related, s.closed_pos
FROM scoped_comms c
LEFT JOIN subjects s ON s.subject_kind = c.subject_kind AND s.subject = c.subject{joins}
WHERE ($all_kinds{n} OR list_contains($kinds{n}::VARCHAR[], c.kind)) AND {about}
"""
_CUSTOMER_JOIN = "\nLEFT JOIN customer_versions cv ON cv.customer = c.customer AND cv.pos = c.cv_pos"
_LABELS_JOIN = (
    "\nASOF LEFT JOIN subject_labels sl ON sl.subject_kind = c.subject_kind AND sl.subject = c.subject"
    " AND sl.pos <= c.pos"
)


def applies_sql(rule: Rule, check: Check, params: dict[str, object], n: int) -> str:
    """The communications a check applies to (APPLIES): its kinds; its subject kind (`about`) and subject terms
    on the subject's attributes and labels in force when sent; its customer terms on the customer's version
    then (as the engine's drafts read them: forewarn.engine.planner.applies). Its parameters (`$kinds{n}`,
    `$about{n}`, the terms') are added to `params`."""
    params[f"all_kinds{n}"] = check.kinds == "all"
    params[f"kinds{n}"] = [] if check.kinds == "all" or check.kinds is None else list(check.kinds)
    condition: Condition = rule.check_condition(check)
    joins = ""
    parts = []
    if check.about is not None:
        params[f"about{n}"] = check.about
        parts.append(f"s.subject_kind = $about{n}")
        parts.append(condition_sql(condition, params, f"c{n}", "subject"))
        if any(t.label is not None for t in condition.on_subject):
            joins += _LABELS_JOIN
    if condition.on_customer:
        parts.append(condition_sql(condition, params, f"c{n}", "customer"))
        joins += _CUSTOMER_JOIN
    return APPLIES.format(joins=joins, about=" AND ".join(parts) or "TRUE", n=n)


def applies_to(con, policy: Policy, rule: Rule, check: Check, pos: int) -> bool:
    """Whether a communication check of `rule` applies to the communication at `pos` (APPLIES)."""
    scoped(con, policy)
    params: dict[str, object] = {"pos": pos}
    text = applies_sql(rule, check, params, 0)
    return con.execute(f"SELECT count(*) FROM ({text}) a WHERE a.pos = $pos", params).fetchone()[0] > 0


# Per requirement: the failing communications of `a` (the check's APPLIES), one row each:
# (pos, problem, due_us, stated, expected, extra event id, ticket lateness base).
REQUIREMENTS: dict[str, str] = {
    "states-window": """
        SELECT a.pos, CASE WHEN a.stated_window_start IS NULL OR a.stated_window_end IS NULL THEN 'window-missing'
                           ELSE 'window-mismatch' END AS problem,
               a.at_us AS due_us, a.stated_window_start AS stated_a, a.stated_window_end AS stated_b,
               v.start_us AS expected_a, v.end_us AS expected_b, v.event_id AS extra_event
        FROM a ASOF LEFT JOIN versions v ON v.subject_kind = a.subject_kind AND v.subject = a.subject AND v.pos <= a.pos
        WHERE a.s_kind IS NOT NULL AND (
            a.stated_window_start IS NULL OR a.stated_window_end IS NULL
            OR (v.number IS NOT NULL AND (a.stated_window_start <> v.start_us OR a.stated_window_end <> v.end_us)))
    """,
    "states-impact": """
        SELECT a.pos, 'impact-missing' AS problem, a.at_us AS due_us
        FROM a WHERE a.stated_impact IS NULL OR regexp_full_match(a.stated_impact, $blank)
    """,
    "states-reason": """
        SELECT a.pos, 'reason-missing' AS problem, a.at_us AS due_us
        FROM a WHERE a.stated_reason IS NULL OR regexp_full_match(a.stated_reason, $blank)
    """,
    "states-next-step": """
        SELECT a.pos, 'next-step-missing' AS problem, a.at_us AS due_us
        FROM a WHERE a.stated_end IS NULL AND a.stated_next_update_by IS NULL
    """,
    "states-end-in-force": """
        SELECT a.pos, 'end-mismatch' AS problem, a.at_us AS due_us, a.stated_end AS stated_a, e.end_us AS expected_a
        FROM a
        ASOF JOIN extensions x ON x.subject_kind = a.subject_kind AND x.subject = a.subject AND x.pos <= a.pos
        ASOF LEFT JOIN ends_in_force e ON e.subject_kind = a.subject_kind AND e.subject = a.subject AND e.pos <= a.pos
        WHERE a.s_kind IS NOT NULL AND a.stated_end IS NOT NULL AND x.gave_end
          AND a.stated_end IS DISTINCT FROM e.end_us
    """,
    "sent-after-closed": """
        SELECT a.pos, 'premature' AS problem, a.at_us AS due_us
        FROM a WHERE a.s_kind IS NOT NULL AND (a.closed_pos IS NULL OR a.closed_pos > a.pos)
    """,
    "sender": """
        SELECT a.pos, 'wrong-sender' AS problem, a.at_us AS due_us,
               CASE WHEN coalesce(a.release_related, FALSE) THEN $releases ELSE $support END AS expected_text
        FROM a
        WHERE lower(a.from_addr) <> lower(CASE WHEN coalesce(a.release_related, FALSE) THEN $releases ELSE $support END)
    """,
    "ticket-opened": """
        SELECT a.pos, CASE WHEN t.pos IS NULL THEN 'missing' ELSE 'late' END AS problem,
               a.at_us + $within_minutes::BIGINT * 60000000 AS due_us, t.id AS extra_event, t.at_us AS ticket_us
        FROM a LEFT JOIN (
            SELECT communication, id, at_us, pos FROM tickets
            QUALIFY row_number() OVER (PARTITION BY communication ORDER BY at_us, pos) = 1
        ) t ON t.communication = a.communication
        WHERE (t.pos IS NULL AND a.at_us + $within_minutes::BIGINT * 60000000 <= $as_of_us)
           OR (t.pos IS NOT NULL AND t.at_us > a.at_us + $within_minutes::BIGINT * 60000000)
    """,
}

REPLY_ORIGIN = """
SELECT r.pos, 'origin-missing' AS problem, r.at_us AS due_us, o.from_addr AS expected_text,
       o.id AS extra_event, o.communication AS origin, r.id AS reply_event, r.reply, r.customer
FROM replies r
JOIN customer_versions cv
  ON cv.customer = r.customer AND cv.pos <= r.pos AND (cv.pos_to IS NULL OR r.pos < cv.pos_to)
JOIN (SELECT communication, arg_max(from_addr, pos) AS from_addr, arg_max(id, pos) AS id
      FROM comms GROUP BY communication) o ON o.communication = r.in_reply_to
WHERE {scope} AND {terms}
  AND NOT list_contains(list_transform(r.to_list, lambda x: lower(x)), lower(o.from_addr))
"""

@cache
def blank_pattern() -> str:
    """A text that is all white space as Python's str.strip sees it (a statement is missing when it is empty
    once stripped): every code point str.isspace admits, as an RE2 class (DuckDB's trim strips spaces only,
    RE2's \\s ASCII only)."""
    return "[" + "".join(f"\\x{{{c:x}}}" for c in range(SPACES_BELOW) if chr(c).isspace()) + "]*"


SPACES_BELOW = 0x3001
"""Every code point str.isspace admits is below this one (U+3000, the ideographic space, is the last; a test
scans them all), so the class is built without looking at a million code points in every process."""


_COLUMNS = (
    "pos",
    "problem",
    "due_us",
    "stated_a",
    "stated_b",
    "expected_a",
    "expected_b",
    "extra_event",
    "ticket_us",
    "expected_text",
)


def _args(rule: Rule, args: Mapping[str, object]) -> dict[str, object]:
    return {k: rule.resolve(v) for k, v in args.items()}  # type: ignore[arg-type]


def check_queries(rule: Rule, check: Check, number: int) -> list[tuple[str, str, dict[str, object]]]:
    """(requirement, query, parameters) per requirement of a communication check: its failing communications."""
    params: dict[str, object] = {}
    applies = applies_sql(rule, check, params, number)
    out = []
    for req, args in check.requirements():
        body = REQUIREMENTS[req]  # KeyError: a requirement the schema admits but nothing compiles
        mine = dict(params)
        for key, value in _args(rule, args).items():
            mine[key] = value
        if "$blank" in body:
            mine["blank"] = blank_pattern()
        text = f"WITH a AS ({applies})\n{body}"
        out.append((req, text, mine))
    return out


def reply_query(rule: Rule, check: Check, scope: Condition) -> tuple[str, dict[str, object]]:
    """REPLY_ORIGIN for a reply check of `rule`, in a policy of `scope` (its customer terms on `cv`)."""
    params: dict[str, object] = {}
    scoped_text = scope_sql(scope, params)
    terms = condition_sql(rule.check_condition(check), params, "reply", "customer")
    return REPLY_ORIGIN.format(scope=scoped_text, terms=terms), params


def rule_check_queries(rule: Rule, scope: Condition) -> list[tuple[str, str, dict[str, object]]]:
    """Every check query of a rule (communication checks; reply checks as REPLY_ORIGIN)."""
    return [(req, text, params) for _check, req, text, params in _rule_checks(rule, scope)]


def _rule_checks(rule: Rule, scope: Condition) -> list[tuple[Check, str, str, dict[str, object]]]:
    """(check, requirement, query, parameters) of every check query of a rule, in rule_check_queries' order."""
    out = []
    for n, check in enumerate(rule.spec.checks):
        if check.replies:
            for req, _args in check.requirements():
                if req == "reply-includes-origin":
                    out.append((check, req, *reply_query(rule, check, scope)))
        else:
            out.extend((check, *query) for query in check_queries(rule, check, n))
    return out


PRESENT = "SELECT (SELECT list(DISTINCT kind) FROM scoped_comms), EXISTS (SELECT 1 FROM replies)"
"""The kinds of the communications in scope, and whether a reply was received: a check applying to none of
those has nothing to fail."""


def present(con: duckdb.DuckDBPyConnection) -> tuple[list[str], bool]:
    """The kinds of the communications in scope (`scoped`: made first), and whether a reply was received."""
    ((kinds, replied),) = run(con, PRESENT).fetchall()  # read to its end: the connection takes more work
    return kinds or [], replied  # no communication in scope: NULL


def applicable(check: Check, kinds: list[str]) -> bool:
    """A communication check applies to some of the communications in scope of these kinds (as far as its kinds
    tell: its `about` and terms are the queries')."""
    if check.kinds == "all":
        return bool(kinds)
    return any(kind in kinds for kind in check.kinds or ())


def failing(
    con: duckdb.DuckDBPyConnection, policy: Policy, as_of_us: int, found: tuple[list[str], bool] | None = None
) -> list[dict[str, object]]:
    """Every failing (communication or reply, rule, requirement), in a fixed order:
    communications by position, then rule, check and requirement order; then replies. `found`: `present`'s
    answer, if known (`scoped_comms` made)."""
    rows: list[dict[str, object]] = []
    if found is None:
        scoped(con, policy)
        found = present(con)
    kinds, replied = found
    for rule_no, rule in enumerate(policy.rules):
        for req_no, (check, req, text, params) in enumerate(_rule_checks(rule, policy.scope_condition)):
            if not (replied if check.replies else applicable(check, kinds)):
                continue  # nothing it applies to: no communication of its kinds in scope, or no reply
            if "$as_of_us" in text:
                params = {**params, "as_of_us": as_of_us}
            cur = run(con, text, params)
            names = [d[0] for d in cur.description]
            for values in cur.fetchall():
                row = dict(zip(names, values, strict=True))
                row.update(rule=rule.id, rule_no=rule_no, req_no=req_no, requirement=req)
                rows.append(row)
    rows.sort(key=lambda r: (r["requirement"] == "reply-includes-origin", r["pos"], r["rule_no"], r["req_no"]))
    return rows
