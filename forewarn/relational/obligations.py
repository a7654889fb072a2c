"""Obligation rules compiled to queries: affected customers, deadlines, voiding, matching.

Each rule's `obligation` becomes a fixed set of query shapes over the `triggers`, `subject_customers`,
`customer_versions` and `comms` tables; the rule's values (id, kinds, count, offsets, scope) are bound
as parameters, and its anchors and void conditions (a closed vocabulary, see
forewarn.policy.schema) pick fragments from the tables below, never text from the rule file.
Business-day deadlines come from the calendar (forewarn.calendar), computed once per distinct
(zone, country, subdivision, anchor instant, days) and joined back.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa

from forewarn.calendar import business_days_before_many
from forewarn.calendar.business import business_days_before
from forewarn.instants import epoch_us
from forewarn.policy.conditions import Condition
from forewarn.policy.model import Policy, Rule
from forewarn.policy.schema import Anchor
from forewarn.relational.conditions import condition_sql
from forewarn.relational.lifecycle import ANCHORS
from forewarn.relational.tables import run

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def scope_sql(scope: Condition, params: dict[str, object]) -> str:
    """The policy's scope (its customer terms) as a predicate on the customer version `cv`."""
    return condition_sql(scope, params, "scope", "customer")

CREATE_OBLIGATIONS = """
CREATE OR REPLACE TABLE obligations (
    oid BIGINT, tid BIGINT, rule VARCHAR, subject_kind VARCHAR, subject VARCHAR, customer VARCHAR,
    customer_ord BIGINT, subject_rank BIGINT, moment_no BIGINT, fire_no BIGINT, pos BIGINT,
    opened_us BIGINT, event_id VARCHAR, defined_event VARCHAR, attrs_id VARCHAR,
    timezone VARCHAR, country VARCHAR, subdivision VARCHAR,
    nb_base_us BIGINT, nb_days BIGINT, nb_us BIGINT, na_base_us BIGINT, na_days BIGINT, na_minutes BIGINT,
    na_us BIGINT,
    kinds VARCHAR[], need BIGINT,
    superseded_us BIGINT, version_start_us BIGINT, cancelled_us BIGINT, closed_us BIGINT, void VARCHAR
)
"""

# The affected customers of triggers `t` (of one rule or several, `t.rule`), with their calendar in force at
# the moment.
AFFECTED = """
listed AS (
    SELECT t.tid, t.rule, t.pos, sc.customer, sc.ord
    FROM t JOIN subject_customers sc USING (subject_kind, subject)
    WHERE NOT t.all_customers
),
everyone AS (  -- "all": the customers in scope when the subject was defined, by id
    SELECT x.tid, x.rule, x.pos, x.customer, row_number() OVER (PARTITION BY x.tid ORDER BY x.customer) - 1 AS ord
    FROM (SELECT t.tid, t.rule, t.pos, t.defined_pos, c.customer
          FROM t, (SELECT DISTINCT customer FROM customer_versions) c WHERE t.all_customers) x
    ASOF JOIN customer_versions cv ON cv.customer = x.customer AND cv.pos <= x.defined_pos
    WHERE {scope}
),
affected AS (  -- the affected customers in scope at the moment, with their attributes then
    SELECT a.tid, a.customer, a.ord AS customer_ord, cv.id AS attrs_id, cv.timezone, cv.country, cv.subdivision,
           cv.contacts
    FROM (SELECT * FROM listed UNION ALL SELECT * FROM everyone) a
    ASOF JOIN customer_versions cv ON cv.customer = a.customer AND cv.pos <= a.pos
    WHERE {scope} AND {terms}
)
"""
"""A trigger's (`t`) affected customers in scope (policy.md: Scope) and in its rule's customer terms (`terms`),
in the subject's order: `{scope}` and `{terms}` are predicates on `cv` (forewarn.relational.conditions), `{terms}`
of the rule `a.rule`."""

# The one query shape of the obligation rules: their triggers' affected customers with their calendar in
# force at the moment, in one pass over the triggers whatever the number of rules. Each rule's values are a
# row of `w` (bound parameters); `{nb}` / `{na}` pick each rule's anchor columns of `triggers`.
OBLIGATIONS = f"""
INSERT INTO obligations BY NAME
WITH w (rule, nb_days, nb_minutes, na_days, na_minutes, kinds, need) AS (VALUES {{windows}}),
t AS (
    SELECT * FROM (
        SELECT tr.*, {{nb}} AS nb_base, {{na}} AS na_base
        FROM triggers tr WHERE NOT tr.alarm AND tr.rule IN (SELECT rule FROM w)
    ) WHERE nb_base IS NOT NULL AND na_base IS NOT NULL
),
{AFFECTED}
SELECT
    t.tid, t.rule, t.subject_kind, t.subject, a.customer, a.customer_ord, t.subject_rank,
    t.moment_no, t.fire_no, t.pos, t.opened_us, t.event_id, t.defined_event, a.attrs_id,
    a.timezone, a.country, a.subdivision,
    t.nb_base AS nb_base_us, w.nb_days,
    CASE WHEN w.nb_days = 0 THEN t.nb_base + w.nb_minutes * 60000000 END AS nb_us,
    t.na_base AS na_base_us, w.na_days, w.na_minutes,
    CASE WHEN w.na_days = 0 THEN t.na_base + w.na_minutes * 60000000 END AS na_us,
    w.kinds, w.need,
    t.superseded_us, t.version_start_us, t.cancelled_us, t.closed_us
FROM t JOIN affected a USING (tid) JOIN w USING (rule)
"""

# An alarm rule's fired timers: one finding per affected customer in scope.
ALARMS_OF_RULE = f"""
WITH t AS (SELECT * FROM triggers WHERE rule = $rule AND alarm),
{AFFECTED}
SELECT t.tid, t.subject, a.customer, a.timezone, t.opened_us AS due_us, t.end_in_force_at_us, t.defined_event,
       t.event_id
FROM t JOIN affected a USING (tid)
ORDER BY t.subject_rank, t.moment_no, t.fire_no, a.customer_ord
"""

# Void conditions (schema.VoidWhen): a predicate on an obligation row each, in the rule's order.
VOID_PREDICATES: dict[str, str] = {
    "superseded-before-deadline": "superseded_us IS NOT NULL AND superseded_us <= na_us",
    "superseded-before-start": "superseded_us IS NOT NULL AND version_start_us IS NOT NULL"
    " AND superseded_us < version_start_us",
    "cancelled-before-deadline": "cancelled_us IS NOT NULL AND cancelled_us < na_us",
    "closed-before-deadline": "closed_us IS NOT NULL AND closed_us < na_us",
}
VOID_SINCE: dict[str, str] = {
    "superseded-before-deadline": "superseded_us",
    "superseded-before-start": "superseded_us",
    "cancelled-before-deadline": "cancelled_us",
    "closed-before-deadline": "closed_us",
}
"""The column of the instant from which each void condition holds (an obligation row's), once it does."""
VOID_REASONS: dict[str, str] = {
    "superseded-before-deadline": "window superseded at {} before its deadline",
    "superseded-before-start": "window superseded at {} before its start",
    "cancelled-before-deadline": "maintenance cancelled at {}",
    "closed-before-deadline": "maintenance closed at {} before the promised update",
}
"""Why an obligation is void, per condition (`{}`: that instant, VOID_SINCE's)."""
VOID_CASE = "WHEN rule = ${name} THEN CASE {branches} END"

# Matching, the common cases in queries: each obligation's fitting communications (of its kinds, about
# its subject, to its customer, sent in its window and not before it opened); a group (rule, subject,
# customer) whose obligations are all met and share no fitting communication is matched as greedy
# matching would, each obligation taking its first `need` fitting ones; a group with no communication of
# its kinds at all is pending until its deadline, then missing. The other groups (an obligation not met on
# time, or a communication fitting two) go through the greedy pass (`match`).
FITS = """
CREATE OR REPLACE TABLE fits AS
SELECT o.oid, o.gid, o.need, c.pos,
       row_number() OVER (PARTITION BY o.oid ORDER BY c.pos) AS n
FROM obligations o JOIN comms c
  ON c.subject_kind = o.subject_kind AND c.subject = o.subject AND c.customer = o.customer
 AND list_contains(o.kinds, c.kind) AND c.at_us >= greatest(o.opened_us, o.nb_us) AND c.at_us <= o.na_us
WHERE o.void IS NULL
"""
MET_SIMPLY = """
CREATE OR REPLACE TABLE met_simply AS
WITH per_ob AS (
    SELECT oid, any_value(gid) AS gid, any_value(need) AS need, count(*) AS n_fit,
           list(pos ORDER BY pos) FILTER (WHERE n <= need) AS taken
    FROM fits GROUP BY oid
),
shared AS (  -- groups where a communication fits two obligations (a hash collision only lands a group here);
             -- an obligation counting communications (need > 1) uses none up, so it shares them freely
    SELECT DISTINCT gid FROM fits WHERE need = 1 GROUP BY gid, pos HAVING count(*) > 1
),
members AS (SELECT gid, count(*) AS members FROM obligations WHERE void IS NULL GROUP BY gid),
met AS (SELECT gid, count(*) FILTER (WHERE n_fit >= need) AS met FROM per_ob GROUP BY gid)
SELECT p.oid, p.taken
FROM per_ob p JOIN members g USING (gid) JOIN met m USING (gid) ANTI JOIN shared USING (gid)
WHERE g.members = m.met
"""

UNSENT = """
CREATE OR REPLACE TABLE unsent AS
SELECT o.oid, CASE WHEN o.na_us > $as_of_us THEN 'pending' ELSE 'violated' END AS status
FROM obligations o
WHERE o.void IS NULL AND NOT EXISTS (
    SELECT 1 FROM comms c
    WHERE c.subject_kind = o.subject_kind AND c.subject = o.subject AND c.customer = o.customer
      AND list_contains(o.kinds, c.kind))
"""
"""Obligations of groups with no communication of their kinds about their subject to their customer (before the
as-of): pending until their deadline, then violated (missing: nothing can be late or early)."""


def from_epoch_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _anchor_column(anchor: Anchor) -> str:
    if anchor.at not in ANCHORS:  # the schema admits nothing else; never text from a rule file in a query
        raise ValueError(f"unknown anchor {anchor.at!r}")
    return f"{anchor.at}_at_us"


def _offset(rule: Rule, anchor: Anchor) -> tuple[int, int]:
    """(business days before, signed minutes) of an anchor."""
    unit, amount = rule.anchor_offset(anchor)
    if unit == "business_days" and amount:
        return -amount, 0
    return 0, amount


def alarm_query(rule: Rule, scope: Condition) -> tuple[str, dict[str, object]]:
    """The query (text, bound parameters) of an alarm rule's findings."""
    params: dict[str, object] = {"rule": rule.id}
    scoped = scope_sql(scope, params)
    terms = condition_sql(rule.alarm_condition, params, "rule", "customer")
    return ALARMS_OF_RULE.format(scope=scoped, terms=terms), params


def obligations_query(rules: Sequence[Rule], scope: Condition) -> tuple[str, dict[str, object]]:
    """The query (text, bound parameters) adding the obligations of these obligation rules, in a policy of
    `scope`: one row of values per rule (`$rule_N`, `$nb_days_N`, ...), its anchors and customer terms picked by
    the rule's id."""
    params: dict[str, object] = {}
    windows, nb, na, terms = [], [], [], []
    for n, rule in enumerate(rules):
        spec = rule.spec.obligation
        if spec is None:
            raise ValueError(f"{rule.id} has no obligation")
        nb_days, nb_minutes = _offset(rule, spec.window.not_before)
        na_days, na_minutes = _offset(rule, spec.window.not_after)
        params.update(
            {
                f"rule_{n}": rule.id,
                f"nb_days_{n}": nb_days,
                f"nb_minutes_{n}": nb_minutes,
                f"na_days_{n}": na_days,
                f"na_minutes_{n}": na_minutes,
                f"kinds_{n}": list(spec.kinds),
                f"need_{n}": spec.count,
            }
        )
        windows.append(
            f"($rule_{n}, $nb_days_{n}::BIGINT, $nb_minutes_{n}::BIGINT, $na_days_{n}::BIGINT,"
            f" $na_minutes_{n}::BIGINT, $kinds_{n}::VARCHAR[], $need_{n}::BIGINT)"
        )
        nb.append(f"WHEN $rule_{n} THEN tr.{_anchor_column(spec.window.not_before)}")  # fixed column names
        na.append(f"WHEN $rule_{n} THEN tr.{_anchor_column(spec.window.not_after)}")
        own = condition_sql(rule.obligation_condition, params, f"rule{n}_", "customer")
        terms.append(f"WHEN $rule_{n} THEN ({own})")
    scoped = scope_sql(scope, params)
    text = OBLIGATIONS.format(
        windows=", ".join(windows),
        nb=f"CASE tr.rule {' '.join(nb)} END",
        na=f"CASE tr.rule {' '.join(na)} END",
        scope=scoped,
        terms=f"CASE a.rule {' '.join(terms)} ELSE FALSE END",
    )
    return text, params


def rule_queries(rule: Rule, scope: Condition) -> list[tuple[str, dict[str, object]]]:
    """The queries (text, bound parameters) an obligation rule compiles to (empty for other rules): its
    obligations (obligations_query, the rule alone), then (if it has void conditions) the fragment that marks
    them void. `scope`: the policy's."""
    spec = rule.spec.obligation
    if spec is None:
        return []
    out: list[tuple[str, dict[str, object]]] = [obligations_query([rule], scope)]
    void = void_case(rule, "rule")
    if void is not None:
        out.append((void, {"rule": rule.id}))
    return out


def void_since_query(policy: Policy) -> tuple[str, dict[str, object]]:
    """The query (text, bound parameters) of each void obligation's `oid` and the instant it became void
    (`since_us`): the earliest of its rule's void conditions that hold, as of when each does (VOID_SINCE)."""
    params: dict[str, object] = {}
    cases = []
    for rule in policy.rules:
        spec = rule.spec.obligation
        if spec is None or not spec.void_when:
            continue
        name = f"rule{len(cases)}"
        params[name] = rule.id
        since = ", ".join(f"CASE WHEN {VOID_PREDICATES[c]} THEN {VOID_SINCE[c]} END" for c in spec.void_when)
        cases.append(f"WHEN rule = ${name} THEN least({since})")  # fixed fragments; least() skips NULLs
    since_case = f"CASE {' '.join(cases)} END" if cases else "NULL::BIGINT"
    return f"SELECT oid, {since_case} AS since_us FROM obligations WHERE void IS NOT NULL", params


def void_case(rule: Rule, name: str) -> str | None:
    """The CASE branch marking an obligation of the rule (its id bound as `$name`) void, if it has void
    conditions: their fixed fragments in its order."""
    spec = rule.spec.obligation
    if spec is None or not spec.void_when:
        return None
    branches = " ".join(f"WHEN {VOID_PREDICATES[c]} THEN '{c}'" for c in spec.void_when)
    return VOID_CASE.format(name=name, branches=branches)


def _business_deadlines(con: duckdb.DuckDBPyConnection, side: str) -> pa.Table:
    """The business-day bounds of `side` (nb | na): the calendar once per distinct key, to join back."""
    keys = run(
        con,
        f"SELECT DISTINCT timezone, country, subdivision, {side}_days, {side}_base_us FROM obligations"
        f" WHERE {side}_days > 0"
    ).fetchall()
    groups: dict[tuple[str, str | None, str | None, int], list[int]] = defaultdict(list)
    for tz, country, sub, days, base in keys:
        groups[(tz, country, sub, days)].append(base)
    cols: dict[str, list[object]] = {k: [] for k in _DEADLINE_COLUMNS}
    for (tz, country, sub, days), bases in groups.items():
        whole = [b for b in bases if b % 1_000_000 == 0]  # the vectorised calendar works in whole seconds
        dues = business_days_before_many(
            np.array([b // 1_000_000 for b in whole], dtype=np.int64), days, tz, country, sub
        )
        pairs = list(zip(whole, (int(d) * 1_000_000 for d in dues), strict=True))
        pairs += [
            (b, epoch_us(business_days_before(from_epoch_us(b), days, tz, country, sub)))
            for b in bases
            if b % 1_000_000
        ]
        for base, due in pairs:
            cols["timezone"].append(tz)
            cols["country"].append(country or "")  # '' for none: the join compares with `=`
            cols["subdivision"].append(sub or "")
            cols["days"].append(days)
            cols["base"].append(base)
            cols["due"].append(due)
    return _deadline_table(cols)


_DEADLINE_COLUMNS = {
    "timezone": pa.string(),
    "country": pa.string(),
    "subdivision": pa.string(),
    "days": pa.int64(),
    "base": pa.int64(),
    "due": pa.int64(),
}


def _deadline_table(cols: dict[str, list[object]]) -> pa.Table:
    """The business-day bounds (`_business_deadlines`) as a table to join back (empty: no column given)."""
    return pa.table({name: pa.array(cols.get(name, []), kind) for name, kind in _DEADLINE_COLUMNS.items()})


FINISH_OBLIGATIONS = """
CREATE OR REPLACE TABLE obligations AS
WITH dated AS (
    SELECT o.rowid AS r, o.* REPLACE (coalesce(o.nb_us, nbd.due) AS nb_us, coalesce(o.na_us, nad.due) AS na_us)
    FROM obligations o
    LEFT JOIN nb_deadlines nbd
      ON nbd.timezone = o.timezone AND nbd.country = coalesce(o.country, '')
     AND nbd.subdivision = coalesce(o.subdivision, '') AND nbd.days = o.nb_days AND nbd.base = o.nb_base_us
    LEFT JOIN na_deadlines nad
      ON nad.timezone = o.timezone AND nad.country = coalesce(o.country, '')
     AND nad.subdivision = coalesce(o.subdivision, '') AND nad.days = o.na_days AND nad.base = o.na_base_us
)
SELECT d.* EXCLUDE (r) REPLACE (n.oid AS oid, {void} AS void),
       hash(d.rule, d.subject_kind, d.subject, d.customer) AS gid  -- the matching group, as a number
FROM dated d JOIN (  -- numbered by a sort of the keys alone, joined back
    SELECT rowid AS r, row_number() OVER (ORDER BY subject_rank, moment_no, fire_no, customer_ord) - 1 AS oid
    FROM obligations
) n ON n.r = d.r
"""
"""Deadlines joined back, void conditions applied, obligations numbered in derivation order."""


def build_obligations(con: duckdb.DuckDBPyConnection, policy: Policy, fired: Collection[str]) -> int:
    """The `obligations` table: every obligation with its bounds, in derivation order (`oid`), void marked; how
    many it holds.
    `fired`: the rules `triggers` holds obligation triggers of (lifecycle.register); a rule nothing triggered
    has no obligations (a small log, the engine's passes over a few subjects)."""
    run(con, CREATE_OBLIGATIONS)
    rules = [r for r in policy.rules if r.spec.obligation is not None and r.id in fired]
    added = 0
    if rules:
        ((added,),) = run(con, *obligations_query(rules, policy.scope_condition)).fetchall()
    windows = [r.spec.obligation.window for r in rules]  # type: ignore[union-attr]
    for side, anchors in (("nb", [(r, w.not_before) for r, w in zip(rules, windows, strict=True)]),
                          ("na", [(r, w.not_after) for r, w in zip(rules, windows, strict=True)])):
        counted = any(_offset(r, anchor)[0] for r, anchor in anchors)  # some fired rule counts it in business days
        con.register(f"{side}_deadlines", _business_deadlines(con, side) if counted else _deadline_table({}))
    cases: list[str] = []
    params: dict[str, object] = {}
    for rule in policy.rules:
        name = f"void_rule{len(cases)}"
        void = void_case(rule, name)
        if void is not None:
            cases.append(void)
            params[name] = rule.id
    void = f"CASE {' '.join(cases)} END" if cases else "NULL::VARCHAR"
    run(con, FINISH_OBLIGATIONS.format(void=void), params)
    for side in ("nb", "na"):
        con.unregister(f"{side}_deadlines")
    return added


Member = tuple[int, int, int, int, int]
"""An obligation of a matching group: (oid, communications needed, opened, not before, not after (epoch us))."""
Candidate = tuple[int, int]
"""A communication that may fulfil one: (position, sent (epoch us))."""


def fits(member: Member, at_us: int) -> bool:
    """Whether a communication sent at `at_us` (of the obligation's kinds, about its subject, to its customer)
    fits the obligation's window: not before it opened, inside [not before, not after]."""
    _oid, _need, opened, nb, na = member
    return opened <= at_us and nb <= at_us <= na


def match_group(
    members: Sequence[Member], candidates: Sequence[Candidate], codes: Collection[str], as_of_us: int
) -> list[tuple[int, str, str | None, list[int]]]:
    """The outcomes (oid, status, problem, positions of the communications taken) of one (rule, subject,
    customer) group's obligations, `members` in deadline order (not after, opened, oid), matched against the
    `candidates` of their kinds in send order, as policy.md says: first every obligation that can be met on
    time takes the earliest fitting unused communications; then each remaining one past its deadline
    (`as_of_us`) is late (an unused one sent after its window), early (one sent before it), or missing, as
    far as its rule's problem `codes` know late and early; one whose deadline is ahead is pending.

    An obligation needing more than one communication (update-cadence's "at least two e-mails between the
    extension and the promised update") counts every fitting one, used or not, and uses none up: one e-mail
    may be the promised update of several extensions (policy.md, settled readings)."""
    out: list[tuple[int, str, str | None, list[int]]] = []
    used: set[int] = set()
    done: set[int] = set()
    for member in members:  # pass 1: on time
        oid, need = member[0], member[1]
        counting = need > 1
        fitting = [p for p, at in candidates if (counting or p not in used) and fits(member, at)][:need]
        if len(fitting) == need:
            if not counting:
                used.update(fitting)
            done.add(oid)
            out.append((oid, "met", None, fitting))
    for oid, _need, opened, nb, na in members:  # pass 2: pending or violated
        if oid in done:
            continue
        if na > as_of_us:
            out.append((oid, "pending", None, []))
            continue
        unused = [(p, at) for p, at in candidates if p not in used and at >= opened]
        late = next((p for p, at in unused if at > na), None) if "late" in codes else None
        early = next((p for p, at in unused if at < nb), None) if "early" in codes else None
        chosen, problem = (
            (late, "late") if late is not None else (early, "early") if early is not None else (None, "missing")
        )
        if chosen is not None:
            used.add(chosen)
        out.append((oid, "violated", problem, [chosen] if chosen is not None else []))
    return out


FEW_OBLIGATIONS = 200
"""Up to this many obligations, FITS, MET_SIMPLY and UNSENT cost more than matching them all in the greedy pass."""


def match(con: duckdb.DuckDBPyConnection, policy: Policy, as_of_us: int, obligations: int) -> frozenset[str]:
    """The `outcomes` table (oid, status, problem, comm_pos[]) of every non-void obligation; the statuses
    other than met it holds (a query for an outcome of another status finds none).

    The common cases (groups met without contention, groups sent nothing: see FITS) are queries; the rest
    are matched per (rule, subject, customer) group in deadline order (`match_group`). `obligations`: how
    many the table holds; a few are all matched in the greedy pass (the queries' fixed cost is more than its)."""
    bulk = obligations > FEW_OBLIGATIONS
    if bulk:
        run(con, FITS)
        run(con, MET_SIMPLY)
        run(con, UNSENT, {"as_of_us": as_of_us})
    allowed = {r.id: frozenset(r.spec.problems) for r in policy.rules}
    rest = run(
        con,
        f"""
        SELECT o.oid, o.rule, o.subject_kind, o.subject, o.customer, o.kinds, o.need,
               o.opened_us, o.nb_us, o.na_us
        FROM obligations o {"ANTI JOIN met_simply m USING (oid) ANTI JOIN unsent u USING (oid)" if bulk else ""}
        WHERE o.void IS NULL
        ORDER BY o.rule, o.subject_kind, o.subject, o.customer, o.na_us, o.opened_us, o.oid
        """
    ).fetchall()
    groups: dict[tuple[str, str, str, str], list[tuple]] = defaultdict(list)
    for row in rest:
        groups[(row[1], row[2], row[3], row[4])].append(row)
    # Their candidate communications, fetched per group key in one query.
    keys = pa.table(
        {
            "subject_kind": pa.array([k[1] for k in groups], pa.string()),
            "subject": pa.array([k[2] for k in groups], pa.string()),
            "customer": pa.array([k[3] for k in groups], pa.string()),
        }
    )
    cands = []
    if groups:
        con.register("group_keys", keys)
        cands = run(
            con,
            """
            SELECT DISTINCT c.subject_kind, c.subject, c.customer, c.kind, c.pos, c.at_us
            FROM comms c JOIN group_keys g USING (subject_kind, subject, customer)
            ORDER BY c.pos
            """
        ).fetchall()
        con.unregister("group_keys")
    by_key: dict[tuple[str, str, str], list[tuple[str, int, int]]] = defaultdict(list)
    for kind_, subject, customer, kind, pos, at_us in cands:
        by_key[(kind_, subject, customer)].append((kind, pos, at_us))
    matched: list[tuple[int, str, str | None, list[int]]] = []
    for (rule, kind_, subject, customer), members in groups.items():
        kinds = set(members[0][5])
        candidates = [(pos, at) for kind, pos, at in by_key.get((kind_, subject, customer), ()) if kind in kinds]
        group = [(oid, need, opened, nb, na) for oid, *_k, _kinds, need, opened, nb, na in members]
        matched += match_group(group, candidates, allowed[rule], as_of_us)
    rest_table = pa.table(
        {
            "oid": pa.array([m[0] for m in matched], pa.int64()),
            "status": pa.array([m[1] for m in matched], pa.string()),
            "problem": pa.array([m[2] for m in matched], pa.string()),
            "comm_pos": pa.array([m[3] for m in matched], pa.list_(pa.int64())),
        }
    )
    con.register("rest_arrow", rest_table)
    simply = (
        "SELECT oid, 'met' AS status, NULL::VARCHAR AS problem, taken AS comm_pos FROM met_simply UNION ALL"
        " SELECT oid, status, CASE WHEN status = 'violated' THEN 'missing' END, []::BIGINT[] FROM unsent UNION ALL"
    )
    run(
        con,
        f"CREATE OR REPLACE TABLE outcomes AS {simply if bulk else ''}"
        " SELECT oid, status, problem, comm_pos FROM rest_arrow"
    )
    con.unregister("rest_arrow")
    statuses = {m[1] for m in matched}
    if bulk:
        statuses.update(status for (status,) in run(con, "SELECT DISTINCT status FROM unsent").fetchall())
        run(con, "DROP TABLE fits; DROP TABLE met_simply; DROP TABLE unsent")
    return frozenset(statuses) - {"met"}


def rule_sql(rule: Rule, scope: Condition) -> list[tuple[str, str, dict[str, object]]]:
    """(what, query, parameters) of every query a rule compiles to in a policy of `scope`, for
    `forewarn rules show --sql`."""
    from forewarn.relational.checks import rule_check_queries

    out: list[tuple[str, str, dict[str, object]]] = []
    queries = rule_queries(rule, scope)
    if queries:
        out.append(("obligations", *queries[0]))
        if len(queries) > 1:
            out.append(("void (a CASE branch of the obligations' final query)", *queries[1]))
        out.append(("deadlines joined back, void applied, numbered", FINISH_OBLIGATIONS, {}))
        out.append(("matching: fitting communications", FITS, {}))
        out.append(("matching: groups met without contention", MET_SIMPLY, {}))
        out.append(("matching: groups sent nothing", UNSENT, {}))
    if rule.spec.alarm is not None:
        out.append(("alarm", *alarm_query(rule, scope)))
    for req, text, params in rule_check_queries(rule, scope):
        out.append((f"check: {req}", text, params))
    return out
