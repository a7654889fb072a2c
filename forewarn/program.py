"""The `forewarn` program: `plan` from the log's published plan without loading the CLI; the rest by forewarn.cli.

Reading and showing a plan published by the engine (engine.published) is quick; most of the cost of
`forewarn plan` is then starting up, and much of that is importing click (which imports pathlib,
inspect, typing). So a `plan` whose arguments are plain (`--db`, `--rules`,
`--as-of`, `--format`, each at most once, with valid values) and whose log has a current published
plan is answered here, exactly as `forewarn.cli` would answer it (the same functions show it:
tests/test_program.py compares the two). Anything else, including every error, goes to
`forewarn.cli`, which parses, reports and evaluates as documented in cli.md.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlite3

    from forewarn.engine.published import PlanView, Snapshot

_PLAN_OPTIONS = {"--db": "db", "--rules": "rules", "--as-of": "as_of", "--format": "format"}


def main() -> None:
    """The console script's entry point."""
    configured = os.environ.get("FOREWARN_CONFIG") or os.environ.get("FOREWARN_RULES")  # forewarn.config's
    if sys.argv[1:2] == ["plan"] and not configured and quick_plan(sys.argv[2:]):
        return
    from forewarn.cli import entry

    entry()


def db_path(db: str | None) -> str:
    """The event log's path: --db, else $FOREWARN_DB, else ./forewarn.db."""
    return db or os.environ.get("FOREWARN_DB") or "forewarn.db"


def plain_plan_options(args: list[str]) -> dict[str, str] | None:
    """`plan`'s options if they are only --db, --rules, --as-of and --format (as `--name value` or
    `--name=value`, each once, none empty); None for anything else (help, --events, --propose, an
    unknown or repeated option, a missing value): forewarn.cli then parses them."""
    options: dict[str, str] = {}
    i = 0
    while i < len(args):
        name, eq, value = args[i].partition("=")
        if name not in _PLAN_OPTIONS or _PLAN_OPTIONS[name] in options:
            return None
        if not eq:
            if i + 1 >= len(args):
                return None
            i += 1
            value = args[i]
        if not value:
            return None
        options[_PLAN_OPTIONS[name]] = value
        i += 1
    if options.setdefault("format", "table") not in ("table", "json"):
        return None
    return options


def quick_plan(args: list[str]) -> bool:
    """Show the plan from the log's published plan if the arguments are plain and the plan is current
    for the as-of; False (nothing written) otherwise."""
    from forewarn.instants import parse_instant

    options = plain_plan_options(args)
    if options is None:
        return False
    path = db_path(options.get("db"))
    if path.endswith((".jsonl", ".json")) or not os.path.isfile(path):
        return False  # the CLI explains
    if "rules" in options and os.path.isfile(options["rules"]):
        return False  # not a directory: the CLI says so
    try:
        t = parse_instant(options.get("as_of", "now"))
    except ValueError:
        return False
    key = rules_key(options.get("rules"))
    return key is not None and show_published_plan(path, key, t, options["format"])


def rules_key(rules_dir: str | None) -> str | None:
    """engine.published.plan_key of the rules directory (default: the project's); None if a rule file
    cannot be read (loading the policy then says why). A directory without rule files has a key too,
    which no published plan has."""
    from pathlib import Path

    from forewarn.engine.published import plan_key
    from forewarn.policy.files import default_rules_dir

    try:
        return plan_key(Path(rules_dir) if rules_dir else default_rules_dir())
    except OSError:
        return None


def show_published_plan(path: str, key: str, t: datetime, fmt: str) -> bool:
    """Show the log's published plan as of `t` if it is current (published_plan); False (nothing
    written) if it is not."""
    from forewarn.engine.published import view

    found = published_plan(path, key, t)
    if found is None:
        return False
    snapshot, alerts = found
    show_plan(view(snapshot, t, alerts, published=True), fmt)
    return True


def published_plan(path: str, key: str, t: datetime) -> tuple[Snapshot, list[dict[str, Any]]] | None:
    """The log's published plan if current for `t` (engine.published.lookup) and the delivery alerts,
    read over one read-only connection (nothing written)."""
    import sqlite3
    from pathlib import Path

    from forewarn.engine.published import lookup
    from forewarn.log.schema import CURRENT, version_of

    try:
        conn = sqlite3.connect(Path(path).absolute().as_uri() + "?mode=ro", uri=True)
        try:
            if version_of(conn) != CURRENT:
                return None  # a log of another schema: the full path says so
            snapshot = lookup(conn, key, t)
            return None if snapshot is None else (snapshot, delivery_alerts_json(conn, t))
        finally:
            conn.close()
    except Exception:  # not a database we can read this way, or a damaged one: the full path reports it
        return None


def delivery_alerts_json(conn: sqlite3.Connection, t: datetime) -> list[dict[str, Any]]:
    """Alerts for deliveries that keep failing, from the engine's outbox in the log's database."""
    from forewarn.engine.alerts import delivery_alerts, ticket_alerts
    from forewarn.engine.outbox import failing
    from forewarn.engine.ticket_queue import failing as tickets_failing

    alerts = delivery_alerts(failing(conn), t) + ticket_alerts(tickets_failing(conn))
    return [alert.to_json() for alert in alerts]


def show_plan(view: PlanView, fmt: str) -> None:
    """The plan to stdout (table or JSON), its counts to stderr."""
    from forewarn import terminal
    from forewarn.engine.views import plan_json, plan_table

    text = plan_json(view) if fmt == "json" else plan_table(view, terminal.width(), terminal.color_enabled())
    text = text if text.endswith("\n") else text + "\n"
    try:
        sys.stdout.write(text)  # encoded whole before anything is written: all or nothing
    except UnicodeEncodeError:  # a stdout that is not UTF-8 (say PYTHONIOENCODING=ascii): UTF-8, as click.echo does
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode("utf-8"))
    sys.stdout.flush()
    source = " (from the plan published in the log; nothing appended since)" if view.published else ""
    counts = f"{len(view.due)} due, {len(view.upcoming)} upcoming, {len(view.alerts)} alert(s)"
    terminal.note(f"forewarn: {counts}{source}")
