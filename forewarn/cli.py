"""The `forewarn` command line: one click command per stage; reports to stdout, the rest to stderr."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import click

from forewarn import instants
from forewarn.program import db_path, rules_key

EXIT_OK, EXIT_FINDINGS, EXIT_BAD_INPUT = 0, 1, 2


class Fail(click.ClickException):
    """A clear error for the user, exit status 2, no traceback."""

    exit_code = EXIT_BAD_INPUT

    def show(self, file: Any = None) -> None:
        click.echo(f"forewarn: error: {self.format_message()}", err=True)


def fail(message: str) -> NoReturn:
    raise Fail(message)


def parse_instant(value: str, option: str) -> datetime:
    """An RFC 3339 timestamp with offset, a date (00:00 UTC), or 'now' (forewarn.instants.parse_instant)."""
    try:
        return instants.parse_instant(value)
    except ValueError as exc:
        fail(f"{option}: {exc}")


def db_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--db",
        metavar="PATH",
        default=None,
        help="The SQLite event log (default ./forewarn.db, or $FOREWARN_DB).",
    )(f)


def rules_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--rules",
        "rules_dir",
        metavar="DIR",
        default=None,
        type=click.Path(file_okay=False),
        help="The policy: a directory of rule files (default: the project's rules/).",
    )(f)


def events_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--events",
        "events_files",
        metavar="FILE.jsonl",
        multiple=True,
        type=click.Path(dir_okay=False),
        help="Read the log from JSONL file(s) instead of --db (validated, kept in memory).",
    )(f)


def load_policy_or_fail(rules_dir: str | None) -> Any:
    from forewarn.policy.loader import PolicyError, load_policy

    try:
        return load_policy(rules_dir)
    except PolicyError as exc:
        for e in exc.errors:
            click.echo(str(e), err=True)
        fail(f"the policy has {len(exc.errors)} problem(s); run `forewarn rules lint {rules_dir or ''}`".rstrip())


def report_input_errors(errors: Sequence[object]) -> NoReturn:
    for e in errors:
        click.echo(str(e), err=True)
    fail(f"{len(errors)} input error(s); nothing was changed")


def read_log(db: str | None, events_files: Sequence[str], rule_ids: Sequence[str], until: datetime | None) -> list[Any]:
    """The log's events in evaluation order, from --events files or the --db."""
    from forewarn.log.source import InputErrors, load_files, read_store
    from forewarn.log.store import LogError, open_store

    if events_files:
        if db:
            fail("give either --db or --events, not both")
        _refuse_databases(events_files)
        try:
            events = load_files(events_files, rule_ids)
        except InputErrors as exc:
            report_input_errors(exc.errors)
        return [e for e in events if until is None or e.at <= until]
    path = _existing_db(db)
    try:
        store = open_store(path)
        return read_store(store, until)
    except LogError as exc:
        fail(str(exc))


def _log_path(db: str | None, events_files: Sequence[str]) -> str:
    """The --db path of an existing event log (read_log's checks, for readers that open it themselves)."""
    from forewarn.log.store import LogError, open_store

    if events_files:
        fail("give either --db or --events, not both")
    path = _existing_db(db)
    try:
        open_store(path).close()
    except LogError as exc:
        fail(str(exc))
    return path


def _refuse_databases(paths: Sequence[str]) -> None:
    for p in paths:
        try:
            with open(p, "rb") as fh:
                head = fh.read(16)
        except OSError as exc:
            fail(f"{p}: {exc.strerror}")
        if head.startswith(b"SQLite format 3"):
            fail(f"{p} is a SQLite database, not JSONL: use --db {p}")


_EXIT_WITHOUT_TEARDOWN = False


def batch_process(read_only: bool = False) -> None:
    """A command that loads a whole log and exits: the cyclic GC only costs time here (millions of
    acyclic objects are scanned again and again), and the process's memory is returned at exit.
    Re-enabled when the command ends, for callers that run commands in process (tests).

    A `read_only` command (nothing open to close but files it has already written) also ends
    without the interpreter's teardown when run as the `forewarn` program (see `entry`): freeing a
    large log's objects one by one took 3.7 s of a 22 s audit.
    """
    global _EXIT_WITHOUT_TEARDOWN
    if gc.isenabled():
        gc.disable()
        click.get_current_context().call_on_close(gc.enable)
    _EXIT_WITHOUT_TEARDOWN = read_only


def entry() -> None:
    """The `forewarn` program: `main`, then, after a read-only batch command, exit at once."""
    try:
        main()
    except SystemExit as exc:
        if not _EXIT_WITHOUT_TEARDOWN:
            raise
        code = exc.code
        if isinstance(code, str):  # sys.exit("message"): what the interpreter would print
            print(code, file=sys.stderr)
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)


def write_output(text: str, output: str | None) -> None:
    """The report to stdout, or to FILE atomically (never a half-written file)."""
    if output is None or output == "-":
        click.echo(text, nl=not text.endswith("\n"))
        return
    target = Path(output)
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=target.parent or Path("."), prefix=f".{target.name}.")
    try:
        os.fchmod(fd, _new_file_mode())  # as open() would have created it, not mkstemp's 0600
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _new_file_mode() -> int:
    """0666 less the process's umask: the mode a plain open(path, "w") gives a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


# -- commands ----------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="forewarn", prog_name="forewarn")
def main() -> None:
    """forewarn: customer-notification policy as code.

    \b
    Exit status: 0 success, nothing to report; 1 the audit found violations;
    2 bad input, bad usage or bad policy.
    """


@main.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@db_option
@rules_option
def import_cmd(files: tuple[str, ...], db: str | None, rules_dir: str | None) -> None:
    """Validate FILE... and append them to the log: all or nothing, idempotent."""
    from forewarn.log.source import InputErrors, import_files
    from forewarn.log.store import LogError, open_store

    policy = load_policy_or_fail(rules_dir)
    batch_process()
    for f in files:
        if not Path(f).exists():
            fail(f"{f}: no such file")
    path = db_path(db)
    try:
        store = open_store(path)
    except LogError as exc:
        fail(str(exc))
    try:
        with import_progress(files) as progress:
            result = import_files(store, files, policy.ids, progress)
    except InputErrors as exc:
        report_input_errors(exc.errors)
    finally:
        store.close()
    if result.appended:
        click.echo(
            f"forewarn: appended {result.appended} event(s) to {path}"
            + (f"; {result.unchanged} already there" if result.unchanged else ""),
            err=True,
        )
    else:
        click.echo(f"forewarn: nothing to append: all {result.unchanged} event(s) already in {path}", err=True)


@contextmanager
def import_progress(files: Sequence[str]) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr for large imports, only when stderr is a terminal."""
    total = sum(Path(f).stat().st_size for f in files)
    if total < 5_000_000 or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    columns = ("validating", BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("import", total=total)
        yield lambda n: bar.advance(task, n)


FORMATS = ["table", "json", "markdown", "html", "sarif", "junit", "csv"]
SEVERITIES = ["low", "medium", "high", "critical"]


@main.command("audit")
@db_option
@events_option
@rules_option
@click.option(
    "--as-of", "as_of", metavar="T", default="now", help="Judge as of T (default now); later facts are ignored."
)
@click.option("--since", metavar="T", default=None, help="Review period start (inclusive, by due time).")
@click.option("--until", metavar="T", default=None, help="Review period end (exclusive, by due time).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("-o", "--output", metavar="FILE", default=None, help="Write the report to FILE (only if the audit ran).")
@click.option(
    "--fail-on",
    "fail_on",
    type=click.Choice(SEVERITIES),
    default="low",
    show_default=True,
    help="Exit 1 only for violations of this severity or higher.",
)
def audit_cmd(
    db: str | None,
    events_files: tuple[str, ...],
    rules_dir: str | None,
    as_of: str,
    since: str | None,
    until: str | None,
    fmt: str,
    output: str | None,
    fail_on: str,
) -> None:
    """Judge the log against the policy: findings per policy.md."""
    from forewarn.audit.findings import audit
    from forewarn.audit.formats import render
    from forewarn.audit.formats.stats import build as build_stats
    from forewarn.audit.formats.stats import rate_text
    from forewarn.policy.schema import SEVERITY_ORDER

    policy = load_policy_or_fail(rules_dir)
    batch_process(read_only=True)
    t = parse_instant(as_of, "--as-of")
    start = parse_instant(since, "--since") if since else None
    end = parse_instant(until, "--until") if until else None
    if start and end and start >= end:
        fail("--since must be before --until")
    from forewarn.relational.audit import relational_for

    if relational_for(fmt):  # the formats the relational evaluation serves (forewarn.relational.audit)
        from forewarn.relational.audit import audit_events, audit_store

        if events_files and not db:
            result = _audit_files(events_files, lambda events: audit_events(events, policy, t, start, end), policy.ids)
        else:
            result = audit_store(_log_path(db, events_files), policy, t, start, end)
    elif events_files and not db:  # the files' checks run meanwhile, on the other CPU

        def judge(events: list[Any]) -> Any:
            return audit([e for e in events if e.at <= t], policy, t, start, end)

        result = _audit_files(events_files, judge, policy.ids)
    else:
        result = audit(read_log(db, events_files, policy.ids, t), policy, t, start, end)
    text = render(fmt, result)
    write_output(text, output)
    s = result.summary
    total = build_stats(result).total.tally  # the same aggregation the format used
    click.echo(
        f"forewarn: {s.obligations} obligations ({s.met} met, {s.violated} violated, {s.waived} waived, "
        f"{s.pending} pending), {s.findings} findings ({len(result.violations)} violations); "
        f"compliance {rate_text(total.rate)} of {total.met + total.violated} judged cases "
        "(obligations and per-communication checks)",
        err=True,
    )
    threshold = SEVERITY_ORDER[fail_on]
    if any(SEVERITY_ORDER[f.severity] >= threshold for f in result.violations):
        sys.exit(EXIT_FINDINGS)


def _audit_files(files: Sequence[str], judge: Callable[[list[Any]], Any], rule_ids: Sequence[str]) -> Any:
    """`judge` of the JSONL files' events, while their checks (ids, references, rules) run on the other CPU
    (forewarn.log.source.load_files_checking); a bad log is reported as input errors (exit 2), as by read_log."""
    from forewarn.log.source import InputErrors, load_files_checking

    _refuse_databases(files)
    try:
        loaded, confirm = load_files_checking(files, rule_ids)
    except InputErrors as exc:
        report_input_errors(exc.errors)

    def confirmed() -> list[Any] | None:
        try:
            return confirm()
        except InputErrors as exc:
            report_input_errors(exc.errors)

    try:
        result = judge(loaded)
    except Exception:
        confirmed()  # a log that fails its checks may break the evaluation: its input errors are the answer
        raise
    instead = confirmed()
    return result if instead is None else judge(instead)  # identical repeats were dropped: judge the rest


@main.group("rules")
def rules_group() -> None:
    """The policy in force."""


@rules_group.command("list")
@rules_option
def rules_list(rules_dir: str | None) -> None:
    """Every rule: id, severity, title."""
    from rich.console import Console
    from rich.table import Table

    policy = load_policy_or_fail(rules_dir)
    table = Table("id", "severity", "title", "parameters", title=f"policy {policy.digest[:19]}…")
    for rule in policy.rules:
        params = ", ".join(f"{k}={v}" for k, v in rule.params().items())
        table.add_row(rule.id, rule.severity, rule.spec.title, params)
    Console().print(table)


@rules_group.command("show")
@click.argument("rule_id")
@rules_option
@click.option("--sql", "sql", is_flag=True, help="Print the queries the rule compiles to instead.")
def rules_show(rule_id: str, rules_dir: str | None, sql: bool) -> None:
    """One rule: its clause, message, parameters and logic."""
    import difflib

    policy = load_policy_or_fail(rules_dir)
    rule = policy.get(rule_id)
    if rule is None:
        close = difflib.get_close_matches(rule_id, policy.ids, n=1)
        fail(
            f"no rule {rule_id!r}" + (f"; did you mean {close[0]!r}?" if close else f"; rules: {', '.join(policy.ids)}")
        )
    if sql:
        import json

        from forewarn.relational.obligations import rule_sql

        for what, text, params in rule_sql(rule):
            click.echo(f"-- {what}\n-- parameters: {json.dumps(params, sort_keys=True)}\n{text.strip()};\n")
        return
    click.echo(Path(rule.path).read_text(encoding="utf-8"), nl=False)


@rules_group.command("lint")
@click.argument("directory", required=False, type=click.Path())
def rules_lint(directory: str | None) -> None:
    """Check rule files: every problem as file:line: code: message."""
    from forewarn.policy.loader import lint_directory

    rules, errors = lint_directory(directory)
    for e in errors:
        click.echo(str(e))
    if errors:
        click.echo(f"forewarn: {len(errors)} problem(s) in the policy", err=True)
        sys.exit(EXIT_BAD_INPUT)
    click.echo(f"forewarn: {len(rules)} rules, no problems", err=True)


@main.command("plan")
@db_option
@events_option
@rules_option
@click.option("--as-of", "as_of", metavar="T", default="now", help="Plan as of T (default now).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option(
    "--propose",
    metavar="start=T,end=T,customers=a|b|all,impact=I",
    default=None,
    help="What-if: when must each notice go out for this proposed window?",
)
def plan_cmd(
    db: str | None, events_files: tuple[str, ...], rules_dir: str | None, as_of: str, fmt: str, propose: str | None
) -> None:
    """What the engine must send: obligations due now, upcoming ones, and alerts for people.

    From the log's published plan when it is current (see engine.published), else by evaluating the log
    (and then publishing that plan)."""
    from forewarn.engine import published
    from forewarn.program import delivery_alerts_json, show_plan, show_published_plan

    t = parse_instant(as_of, "--as-of")
    if propose is None and not events_files:
        path = _existing_db(db)
        key = rules_key(rules_dir)
        if key and show_published_plan(path, key, t, fmt):
            return
    policy = load_policy_or_fail(rules_dir)
    batch_process(read_only=True)
    if propose is not None:
        from forewarn.engine.propose import ProposalError, parse_proposal, propose_window
        from forewarn.engine.views import proposal_json, proposal_table

        events = read_log(db, events_files, policy.ids, t)
        try:
            proposal = parse_proposal(propose, t)
            answer = propose_window(events, policy, proposal, t)
        except ProposalError as exc:
            fail(f"--propose: {exc}")
        write_output(proposal_json(answer) if fmt == "json" else proposal_table(answer), None)
        return
    if events_files:
        from forewarn.engine.planner import PlanBasis
        from forewarn.evaluate.evaluation import evaluate

        events = read_log(db, events_files, policy.ids, t)  # refuses --db with --events
        snapshot = PlanBasis(evaluate(events, policy, t, checks=False)).snapshot(0, t + timedelta(microseconds=1))
        show_plan(published.view(snapshot, t), fmt)
        return
    from forewarn.engine.cache import EvaluationCache
    from forewarn.log.store import LogError, open_store

    try:
        store = open_store(path)
        cache = EvaluationCache(store, policy, publish_key=key)  # publishes what it evaluates
        cache.get(t)
    except LogError as exc:
        fail(str(exc))
    snapshot = cache.snapshot()  # the one just published
    alerts = delivery_alerts_json(store.db.conn, t)
    store.close()
    show_plan(published.view(snapshot, t, alerts), fmt)


def _existing_db(db: str | None) -> str:
    """The --db path, which must be an existing database (else a clear error)."""
    path = db_path(db)
    if not Path(path).exists():
        fail(
            f"no event log at {path}; import one with `forewarn import FILE.jsonl --db {path}`,"
            " or use --events FILE.jsonl"
        )
    if path.endswith((".jsonl", ".json")):
        fail(f"{path} looks like a JSONL file, not a database: use --events {path}")
    return path


@main.command("run")
@db_option
@rules_option
@click.option("--once", is_flag=True, help="One pass, then exit.")
@click.option("--now", "now", metavar="T", default=None, help="Act as if it were T (tests and replays).")
@click.option(
    "--outbox",
    "outbox_dir",
    metavar="DIR",
    default=None,
    type=click.Path(file_okay=False),
    help="Write each message as a .eml file into DIR (the default: ./outbox).",
)
@click.option("--smtp", metavar="HOST:PORT", default=None, help="Deliver over SMTP instead.")
@click.option("--starttls", is_flag=True, help="SMTP: upgrade the connection with STARTTLS.")
@click.option("--smtp-user", metavar="USER", default=None, help="SMTP: log in as USER ($FOREWARN_SMTP_PASSWORD).")
@click.option("--ticket-webhook", metavar="URL", default=None, help="Also open each ticket in an external system.")
@click.option(
    "--poll",
    metavar="SECONDS",
    type=float,
    default=30.0,
    show_default=True,
    help="Without --once: longest sleep between passes.",
)
def run_cmd(
    db: str | None,
    rules_dir: str | None,
    once: bool,
    now: str | None,
    outbox_dir: str | None,
    smtp: str | None,
    starttls: bool,
    smtp_user: str | None,
    ticket_webhook: str | None,
    poll: float,
) -> None:
    """Decide and send what is due, and record it in the log."""
    from forewarn.engine.delivery import OutboxDirectory, SmtpDelivery, parse_smtp_target
    from forewarn.engine.runner import Engine
    from forewarn.engine.tickets import TicketWebhook
    from forewarn.log.store import LogError, open_store

    key = rules_key(rules_dir)  # before the policy is loaded: a rule file edited meanwhile changes the key
    policy = load_policy_or_fail(rules_dir)
    if smtp and outbox_dir:
        fail("give either --outbox or --smtp, not both")
    t = parse_instant(now, "--now") if now else None
    if t is not None and not once:
        fail("--now replays one instant: use it with --once")
    path = db_path(db)
    if not Path(path).exists():
        fail(f"no event log at {path}; import one with `forewarn import FILE.jsonl --db {path}`")
    try:
        store = open_store(path)
    except LogError as exc:
        fail(str(exc))
    if smtp:
        try:
            host, port = parse_smtp_target(smtp)
        except ValueError as exc:
            fail(f"--smtp: {exc}")
        delivery = SmtpDelivery(
            host, port, starttls=starttls, username=smtp_user, password=os.environ.get("FOREWARN_SMTP_PASSWORD")
        )
    else:
        delivery = OutboxDirectory(Path(outbox_dir or "outbox"))
    webhook = TicketWebhook(ticket_webhook) if ticket_webhook else None
    engine = Engine(store, policy, delivery, webhook, freeze_gc=True, publish_key=key)  # this process is the engine's

    def report(result: Any) -> None:
        click.echo(
            f"forewarn: sent {len(result.sent)}, failed {len(result.failed)}, held by another process {result.skipped}",
            err=True,
        )
        for message_id, error in result.failed:
            click.echo(f"forewarn: delivery of {message_id} failed: {error}", err=True)
        for ticket, error in result.ticket_errors:
            click.echo(f"forewarn: ticket {ticket} is in the log but the ticket webhook failed: {error}", err=True)

    try:
        if once:
            result = engine.run_once(t)
            report(result)
            if result.failed:
                sys.exit(EXIT_FINDINGS)
        else:
            engine.run_forever(poll=poll, report=report)
    finally:
        delivery.close()
        store.close()


@main.command("synth")
@rules_option
@click.option("--seed", type=int, default=2, show_default=True)
@click.option(
    "--size",
    type=click.Choice(["quarter", "year"]),
    default="quarter",
    show_default=True,
    help="quarter: 8 customers, 12 maintenances; year: 2,000 customers, 500 maintenances (~800k events).",
)
@click.option("--scale", type=float, default=1.0, show_default=True, help="Multiply customers and maintenances.")
@click.option("--violations", type=int, default=1, show_default=True, help="Seeded violations of each kind.")
@click.option("--waivers", type=float, default=0.2, show_default=True, help="Share of seeded violations waived.")
@click.option("--lifecycle-only", is_flag=True, help="Only lifecycle events: no communications (engine input).")
@click.option("-o", "--output", metavar="FILE.jsonl", required=True, type=click.Path(dir_okay=False))
@click.option(
    "--expected",
    metavar="FILE.json",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write the seeded findings (and the as-of to audit at) here.",
)
def synth_cmd(
    rules_dir: str | None,
    seed: int,
    size: str,
    scale: float,
    violations: int,
    waivers: float,
    lifecycle_only: bool,
    output: str,
    expected: str | None,
) -> None:
    """Generate a realistic, reproducible log with seeded violations."""
    from dataclasses import replace

    from forewarn.synth.generate import QUARTER, YEAR, synthesize, write_expected, write_jsonl

    policy = load_policy_or_fail(rules_dir)
    batch_process()
    base = QUARTER if size == "quarter" else YEAR
    shape = replace(
        base, customers=max(1, round(base.customers * scale)), maintenances=max(1, round(base.maintenances * scale))
    )
    result = synthesize(policy, seed, shape, violations, waivers, lifecycle_only)
    n = write_jsonl(Path(output), result.events)
    if expected:
        write_expected(Path(expected), result)
    click.echo(
        f"forewarn: wrote {n} events to {output}; {len(result.expected)} seeded findings"
        f"; audit as of {result.as_of:%Y-%m-%dT%H:%M:%SZ}",
        err=True,
    )


@main.command("demo")
@click.option("--dir", "workdir", default="forewarn-demo", show_default=True, help="Where to put the demo's files.")
def demo_cmd(workdir: str) -> None:
    """The main job on an embedded sample: import a realistic log and audit it."""
    from forewarn.demo import run_demo

    run_demo(Path(workdir))


if __name__ == "__main__":  # pragma: no cover
    entry()
