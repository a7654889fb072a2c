"""A hand-written DuckDB yardstick: four rules' core checks over a JSONL log, with nothing else.

    .venv/bin/python bench/baseline_duckdb.py /tmp/forewarn-bench/year-x1.25.jsonl --runs 3

advance-notice (a notice between the window version's opening and 24 h before its start: a calendar
day, not a business day), sender-address (the support address, or the releases address for
release-related subjects), ticket-opened (a ticket within 10 min) and closing-notice (a closing
within 30 min of completion) for every affected enterprise customer, with customers' plans taken at
the end of the log. No validation, waivers, messages or evidence: what reading the JSONL and joining
costs in DuckDB, the floor `forewarn audit` is compared with (bench/bench_relational.py).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

import duckdb

QUERIES = {
    "load": """
        CREATE OR REPLACE TABLE ev AS
        SELECT row_number() OVER () AS pos, * FROM read_json($path, format = 'newline_delimited',
            columns = {'id': 'VARCHAR', 'type': 'VARCHAR', 'at': 'TIMESTAMPTZ', 'customer': 'VARCHAR',
                       'communication': 'VARCHAR', 'kind': 'VARCHAR', 'maintenance': 'VARCHAR', 'incident': 'VARCHAR',
                       'release': 'VARCHAR', 'from': 'VARCHAR', 'plan': 'VARCHAR', 'customers': 'JSON',
                       'impact': 'VARCHAR', 'emergency': 'BOOLEAN', 'start': 'TIMESTAMPTZ', 'healthy': 'BOOLEAN'})
    """,
    "advance-notice": """
        WITH enterprise AS (SELECT customer FROM ev WHERE type = 'customer.upserted'
                            QUALIFY last_value(plan) OVER (PARTITION BY customer ORDER BY pos
                                ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) = 'enterprise'
                                AND row_number() OVER (PARTITION BY customer ORDER BY pos) = 1),
        defs AS (SELECT maintenance, customers, impact, emergency FROM ev WHERE type = 'maintenance.scheduled'),
        versions AS (SELECT v.maintenance, v."at" AS opened, v.start FROM ev v
                     WHERE v.type IN ('maintenance.scheduled', 'maintenance.rescheduled')),
        owed AS (SELECT v.maintenance, e.customer, v.opened, v.start - INTERVAL 1 DAY AS deadline
                 FROM versions v JOIN defs d USING (maintenance), enterprise e
                 WHERE NOT d.emergency AND d.impact IN ('degraded', 'interruption')
                   AND (d.customers = '"all"' OR list_contains(CAST(d.customers AS VARCHAR[]), e.customer)))
        SELECT count(*) FROM owed o WHERE NOT EXISTS (
            SELECT 1 FROM ev c WHERE c.type = 'communication.sent' AND c.kind = 'advance_notice'
              AND c.maintenance = o.maintenance AND c.customer = o.customer
              AND c."at" >= o.opened AND c."at" <= o.deadline)
    """,
    "sender-address": """
        SELECT count(*) FROM ev c LEFT JOIN ev m ON m.type = 'maintenance.scheduled' AND m.maintenance = c.maintenance
        WHERE c.type = 'communication.sent'
          AND lower(c."from") <> CASE WHEN c.release IS NOT NULL OR m.release = 'true'
                                      THEN 'teams-releases@example.com' ELSE 'enterprise-support@example.com' END
    """,
    "ticket-opened": """
        SELECT count(*) FROM ev c WHERE c.type = 'communication.sent' AND NOT EXISTS (
            SELECT 1 FROM ev t WHERE t.type = 'ticket.opened' AND t.communication = c.communication
              AND t."at" <= c."at" + INTERVAL 10 MINUTE)
    """,
    "closing-notice": """
        WITH closed AS (SELECT maintenance, min("at") AS closed_at FROM ev
                        WHERE (type = 'maintenance.completed' AND healthy) OR type = 'maintenance.healthy'
                        GROUP BY maintenance),
        owed AS (SELECT c.maintenance, e.customer, c.closed_at AS t FROM closed c
                 JOIN ev d ON d.type = 'maintenance.scheduled' AND d.maintenance = c.maintenance,
                 (SELECT DISTINCT customer FROM ev WHERE type = 'customer.upserted' AND plan = 'enterprise') e
                 WHERE (d.impact <> 'none' OR d.emergency)
                   AND (d.customers = '"all"' OR list_contains(CAST(d.customers AS VARCHAR[]), e.customer)))
        SELECT count(*) FROM owed o WHERE NOT EXISTS (
            SELECT 1 FROM ev s WHERE s.type = 'communication.sent' AND s.kind = 'closing'
              AND s.maintenance = o.maintenance AND s.customer = o.customer
              AND s."at" >= o.t AND s."at" <= o.t + INTERVAL 30 MINUTE)
    """,
}


def run(path: str) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    con.execute(QUERIES["load"], {"path": path})
    found = {name: con.execute(q).fetchone()[0] for name, q in QUERIES.items() if name != "load"}
    return time.perf_counter() - started, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    times = []
    for _ in range(args.runs):
        elapsed, found = run(args.log)
        times.append(elapsed)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"baseline: median {statistics.median(times):.2f} s of {args.runs}"
        f" (min {min(times):.2f}, max {max(times):.2f}), peak RSS {peak:.0f} MiB; violations counted: {found}"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
