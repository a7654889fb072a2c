"""Per-communication and per-reply checks compiled to queries: one predicate per requirement.

A check selects communications (its kinds; with `about`, those about a subject of that kind whose
attributes pass its `where`) of customers in scope when sent; each requirement is a query that
returns the communications failing it, with what the finding's message needs. Rule values (kinds,
addresses, minutes, `where` values) are bound parameters; requirement names and `where` attributes
pick fixed fragments (the closed vocabulary of forewarn.policy.schema).
"""

from __future__ import annotations

from collections.abc import Mapping

from forewarn.policy.model import Policy, Rule
from forewarn.policy.schema import Check
from forewarn.relational.obligations import SCOPE_PLAN

SUBJECT_ATTRIBUTES: dict[str, tuple[str, type]] = {
    "impact": ("s.impact", str),
    "emergency": ("s.emergency", bool),
    "release": ("s.release", bool),
    "notifiable": ("s.notifiable", bool),
    "severity": ("s.severity", str),
}
"""Attributes a check's `where` can test: name -> (column of `subjects` as `s`, its Python type).
A new attribute is one entry here (and its column in lifecycle.SUBJECT_SCHEMA)."""


def where_sql(where: Mapping[str, object], params: dict[str, object], prefix: str) -> str:
    """A `where` as an SQL predicate on `s` (forewarn.evaluate.checks.where_matches: absent attributes are
    None, values compare with their type)."""
    parts = ["TRUE"]
    for n, (key, spec) in enumerate(where.items()):
        column, kind = SUBJECT_ATTRIBUTES.get(key, ("NULL", type(None)))
        name = f"{prefix}w{n}"
        if isinstance(spec, dict):
            parts.append(f"{column} IS NOT NULL" if spec.get("exists") else f"{column} IS NULL")
        elif isinstance(spec, list):
            if kind is not str:
                parts.append("FALSE")
            else:
                params[name] = [str(v) for v in spec]
                parts.append(f"list_contains(${name}::VARCHAR[], {column})")
        elif type(spec) is not kind:
            parts.append("FALSE")
        else:
            params[name] = spec
            parts.append(f"{column} = ${name}")
    return " AND ".join(parts)


# The communications a check applies to, with their subject (if folded) and scope at the time.
SCOPED = """
CREATE TABLE IF NOT EXISTS scoped_comms AS
SELECT c.* FROM comms c ASOF JOIN customer_versions cv ON cv.customer = c.customer AND cv.pos <= c.pos
WHERE cv.plan = $scope_plan
"""
"""The communications to customers in scope when sent (made once, read by every check)."""

APPLIES = """
SELECT c.*, s.subject_kind AS s_kind, s.defined_event, s.release_related, s.closed_pos
FROM scoped_comms c
LEFT JOIN subjects s ON s.subject_kind = c.subject_kind AND s.subject = c.subject
WHERE ($all_kinds OR list_contains($kinds::VARCHAR[], c.kind)) AND {about}
"""

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
        FROM a WHERE a.stated_impact IS NULL OR trim(a.stated_impact) = ''
    """,
    "states-reason": """
        SELECT a.pos, 'reason-missing' AS problem, a.at_us AS due_us
        FROM a WHERE a.stated_reason IS NULL OR trim(a.stated_reason) = ''
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
WHERE cv.plan = $scope_plan AND NOT list_contains(list_transform(r.to_list, lambda x: lower(x)), lower(o.from_addr))
"""

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
    params: dict[str, object] = {
        "all_kinds": check.kinds == "all",
        "kinds": [] if check.kinds == "all" or check.kinds is None else list(check.kinds),
    }
    if check.about is not None:
        params["about"] = check.about
        about = "s.subject_kind = $about AND " + where_sql(check.where, params, f"c{number}")
    else:
        about = "TRUE"
    out = []
    for req, args in check.requirements():
        body = REQUIREMENTS[req]  # KeyError: a requirement the schema admits but nothing compiles
        mine = dict(params)
        for key, value in _args(rule, args).items():
            mine[key] = value
        text = f"WITH a AS ({APPLIES.format(about=about)})\n{body}"
        out.append((req, text, mine))
    return out


def rule_check_queries(rule: Rule) -> list[tuple[str, str, dict[str, object]]]:
    """Every check query of a rule (communication checks; reply checks as REPLY_ORIGIN)."""
    out = []
    for n, check in enumerate(rule.spec.checks):
        if check.replies:
            for req, _args in check.requirements():
                if req == "reply-includes-origin":
                    out.append((req, REPLY_ORIGIN, {"scope_plan": SCOPE_PLAN}))
        else:
            out.extend(check_queries(rule, check, n))
    return out


def failing(con, policy: Policy, as_of_us: int) -> list[dict[str, object]]:
    """Every failing (communication or reply, rule, requirement), in the object evaluation's order:
    communications by position, then rule, check and requirement order; then replies."""
    rows: list[dict[str, object]] = []
    con.execute(SCOPED, {"scope_plan": SCOPE_PLAN})
    for rule_no, rule in enumerate(policy.rules):
        for req_no, (req, text, params) in enumerate(rule_check_queries(rule)):
            if "$as_of_us" in text:
                params = {**params, "as_of_us": as_of_us}
            cur = con.execute(text, params)
            names = [d[0] for d in cur.description]
            for values in cur.fetchall():
                row = dict(zip(names, values, strict=True))
                row.update(rule=rule.id, rule_no=rule_no, req_no=req_no, requirement=req)
                rows.append(row)
    rows.sort(key=lambda r: (r["requirement"] == "reply-includes-origin", r["pos"], r["rule_no"], r["req_no"]))
    return rows
