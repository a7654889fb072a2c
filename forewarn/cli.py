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

from forewarn import config, instants, serve, terminal
from forewarn.audit.formats import FORMATS as FORMAT_REGISTRY
from forewarn.program import db_path, rules_key

EXIT_OK, EXIT_FINDINGS, EXIT_BAD_INPUT = 0, 1, 2


class Fail(click.ClickException):
    """A clear error for the user, exit status 2, no traceback."""

    exit_code = EXIT_BAD_INPUT

    def show(self, file: Any = None) -> None:
        label = terminal.paint("error", "error", terminal.color_enabled(sys.stderr))
        click.echo(f"forewarn: {label}: {self.format_message()}", err=True)


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
        help="The event log, a SQLite file (default ./forewarn.db, or $FOREWARN_DB).",
    )(f)


def rules_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--rules",
        "rules_dir",
        metavar="DIR",
        default=None,
        type=click.Path(file_okay=False),
        help="The policy: a directory of rule files (default: the bundled rules).",
    )(f)


def events_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--events",
        "events_files",
        metavar="FILE.jsonl",
        multiple=True,
        type=click.Path(dir_okay=False),
        help="Read the log from JSONL file(s) instead of --db (validated, kept in memory; repeatable).",
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
    return read_log_fingerprinted(db, events_files, rule_ids, until, fingerprint=False)[0]


def read_log_fingerprinted(
    db: str | None,
    events_files: Sequence[str],
    rule_ids: Sequence[str],
    until: datetime | None,
    fingerprint: bool = True,
) -> tuple[list[Any], Any]:
    """`read_log`, and the fingerprint of the whole log read (forewarn.log.chain) if asked for."""
    from forewarn.log.source import InputErrors, load_files_fingerprinted, read_store, read_store_fingerprinted

    if events_files:
        if db:
            fail("give either --db or --events, not both")
        _check_input_names(events_files)
        try:
            events, log = load_files_fingerprinted(events_files, rule_ids, fingerprint)
        except InputErrors as exc:
            report_input_errors(exc.errors)
        return [e for e in events if until is None or e.at <= until], log
    with _opened_log(db) as (_path, store):
        return read_store_fingerprinted(store, until) if fingerprint else (read_store(store, until), None)


@contextmanager
def _opened_log(db: str | None) -> Iterator[tuple[str, Any]]:
    """The existing event log at --db, opened for reading: (path, store); closed afterwards, and a damaged
    log, or one that cannot be read, told as such (exit 2)."""
    from forewarn.errors import log_errors
    from forewarn.log.access import open_reader
    from forewarn.log.store import LogError

    path = _existing_db(db)
    try:
        store = open_reader(path)
    except LogError as exc:
        fail(str(exc))
    try:
        with log_errors(path):
            yield path, store
    finally:
        store.close()


def _refuse_foreign(path: str, check: Callable[[str], None]) -> None:
    """`check` the database at `path` (forewarn.log.access) before a command writes to it; its LogError is an error."""
    from forewarn.log.store import LogError

    try:
        check(path)
    except LogError as exc:
        fail(str(exc))


def _log_fingerprint(db: str | None, events_files: Sequence[str]) -> tuple[str, Any]:
    """The --db path of an existing event log and its fingerprint (read_log's checks, for readers that open the
    log themselves and read no event recorded after that fingerprint)."""
    if events_files:
        fail("give either --db or --events, not both")
    with _opened_log(db) as (path, store):
        return path, store.fingerprint()


def _check_input_names(paths: Sequence[str]) -> None:
    """Inputs are read once each (see forewarn.inputs): standard input can be named only once."""
    from forewarn.inputs import check_names

    problem = check_names(paths)
    if problem:
        fail(problem)


_EXIT_WITHOUT_TEARDOWN = False


def batch_process(read_only: bool = False) -> None:
    """A command that loads a whole log and exits: the cyclic GC only costs time here (millions of
    acyclic objects are scanned again and again), and the process's memory is returned at exit.
    Re-enabled when the command ends, for callers that run commands in process (tests).

    A `read_only` command (nothing open to close but files it has already written) also ends
    without the interpreter's teardown when run as the `forewarn` program (see `entry`): freeing a
    large log's objects one by one is a sizeable part of an audit, and the operating system frees
    the whole process at once anyway.
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
        click.echo(text, nl=not text.endswith("\n"), color=True)  # escapes only where colour was chosen
        return
    from forewarn.outputs import OutputError, write_file

    try:
        write_file(text, output)  # never replaces anything but a regular file
    except OutputError as exc:
        fail(str(exc))


def check_output_or_fail(output: str | None) -> None:
    """Before the work: a report that could not be written to `output` is an error now, not after it."""
    from forewarn.outputs import OutputError, check_output

    if output is not None and output != "-":
        try:
            check_output(output)
        except OutputError as exc:
            fail(str(exc))


# -- commands ----------------------------------------------------------------------


TIME_HELP = "T is a time: 2026-04-15T09:00:00Z (an offset is required), 2026-04-15 (midnight UTC) or now."


def examples(*lines: str, times: bool = False) -> str:
    """A command's --help epilog: its examples, kept as written, and the time format if it takes times."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines) + (f"\n\n{TIME_HELP}" if times else "")


class _Group(click.Group):
    """The top-level group: every command runs `guarded` (forewarn.errors), so that no failure exits 1."""

    def invoke(self, ctx: click.Context) -> Any:
        from forewarn.errors import guarded

        with guarded(bool(ctx.params.get("debug"))):
            return super().invoke(ctx)


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog='Shell completion (bash): eval "$(_FOREWARN_COMPLETE=bash_source forewarn)" (zsh: zsh_source).',
)
@click.version_option(package_name="forewarn", prog_name="forewarn")
@click.option(
    "--color/--no-color",
    "color",
    default=None,
    help="Colour severities and statuses (default: on a terminal, unless NO_COLOR is set).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress display and no summary lines on stderr (errors remain).")
@click.option("--debug", is_flag=True, help="On an internal error, show its traceback.")
def main(color: bool | None, quiet: bool, debug: bool) -> None:
    """forewarn: customer-notification policy as code.

    \b
    Examples:
      forewarn import events.jsonl            append events to ./forewarn.db
      forewarn audit --since 2026-01-01 --until 2026-04-01 --as-of 2026-04-15
      forewarn plan                           what the engine must send now
      forewarn run --once                     send it (into ./outbox) and record it

    \b
    Times: 2026-04-15T09:00:00Z (RFC 3339, an offset is required),
    2026-04-15 (midnight UTC), or now.

    \b
    Exit status: 0 success, nothing to report; 1 the audit found violations
    (or run --once could not deliver); 2 bad input, bad usage or bad policy;
    3 an internal error (--debug shows its traceback).
    """
    terminal.configure(color, quiet)


@main.command(
    "import", epilog=examples("forewarn import events.jsonl more.jsonl", "forewarn import --db q1.db q1/*.jsonl")
)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@db_option
@rules_option
def import_cmd(files: tuple[str, ...], db: str | None, rules_dir: str | None) -> None:
    """Validate FILE... and append them to the log: all or nothing, idempotent."""
    from forewarn.errors import log_errors
    from forewarn.inputs import is_stdin
    from forewarn.log.access import check_writable_target
    from forewarn.log.source import InputErrors, import_files
    from forewarn.log.store import LogError, open_store

    policy = load_policy_or_fail(rules_dir)
    batch_process()
    _check_input_names(files)
    for f in files:
        if not is_stdin(f) and not Path(f).exists():
            fail(f"{f}: no such file")
    path = db_path(db)
    _refuse_foreign(path, check_writable_target)
    try:
        store = open_store(path, upgrade=True)
    except LogError as exc:
        fail(str(exc))
    try:
        with import_progress(files) as progress, log_errors(path):
            result = import_files(store, files, policy.ids, progress)
    except InputErrors as exc:
        report_input_errors(exc.errors)
    finally:
        store.close()
    if result.appended:
        terminal.note(
            f"forewarn: appended {result.appended} event(s) to {path}"
            + (f"; {result.unchanged} already there" if result.unchanged else "")
        )
    else:
        terminal.note(f"forewarn: nothing to append: all {result.unchanged} event(s) already in {path}")


@contextmanager
def import_progress(files: Sequence[str]) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr for an import that takes over a second, on a terminal, not with --quiet."""
    from forewarn.inputs import regular_size

    if not terminal.Progress.wanted():
        yield None
        return
    total = sum(map(regular_size, files))
    with terminal.Progress("validating", total=total) as bar:
        yield bar.advance


FORMATS = list(FORMAT_REGISTRY)
SEVERITIES = ["low", "medium", "high", "critical"]


def output_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--output-FORMAT FILE for every format: several reports from one evaluation."""
    for fmt in reversed(FORMATS):
        f = click.option(
            f"--output-{fmt}",
            f"output_{fmt}",
            metavar="FILE",
            default=None,
            type=click.Path(dir_okay=False),
            help=f"Also write the {fmt} report to FILE ({FORMAT_REGISTRY[fmt].purpose}).",
        )(f)
    return f


@main.command(
    "audit",
    epilog=examples(
        "forewarn audit --as-of 2026-04-15",
        "forewarn audit --since 2026-01-01 --until 2026-04-01 --as-of 2026-04-15 --format html -o q1.html",
        "forewarn audit --events events.jsonl --fail-on high --output-sarif f.sarif --output-junit f.xml",
        times=True,
    ),
)
@db_option
@events_option
@rules_option
@click.option(
    "--as-of", "as_of", metavar="T", default="now", help="Judge as of T (default now); later facts are ignored."
)
@click.option("--since", metavar="T", default=None, help="Review period start (inclusive, by due time).")
@click.option("--until", metavar="T", default=None, help="Review period end (exclusive, by due time).")
@click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True, help="The report's format."
)
@click.option("-o", "--output", metavar="FILE", default=None, help="Write the report to FILE (only if the audit ran).")
@output_options
@click.option(
    "--fail-on",
    "fail_on",
    type=click.Choice(SEVERITIES),
    default="low",
    show_default=True,
    help="Exit 1 only for violations of this severity or higher; SARIF and JUnit report lower ones as notes/skipped.",
)
@click.option(
    "--compare-rules",
    "compare_rules",
    metavar="OLD_DIR",
    default=None,
    type=click.Path(file_okay=False),
    help="Also judge the log by the policy in OLD_DIR and report the findings --rules adds and removes.",
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
    compare_rules: str | None = None,
    **outputs: str | None,
) -> None:
    """Judge the log against the policy and report the findings.

    The review period [--since, --until) selects obligations by their due time; --as-of is the instant
    judged at: later facts are ignored, and what is due after it is pending, not a violation.
    """
    from dataclasses import replace

    from forewarn.audit.formats import render
    from forewarn.audit.formats.stats import build as build_stats
    from forewarn.audit.formats.stats import rate_text
    from forewarn.policy.schema import SEVERITY_ORDER

    policy = load_policy_or_fail(rules_dir)
    old_policy = load_policy_or_fail(compare_rules) if compare_rules else None
    batch_process(read_only=True)
    t = parse_instant(as_of, "--as-of")
    check_output_or_fail(output)
    start = parse_instant(since, "--since") if since else None
    end = parse_instant(until, "--until") if until else None
    if start and end and start >= end:
        fail("--since must be before --until")
    extra = _extra_outputs(outputs, output)
    from forewarn.relational.audit import DETAILED_FORMATS, audit_events, audit_store

    detail = DETAILED_FORMATS & {fmt, *(f for f, _p in extra)}  # what the formats need beyond the counts

    def compared(judge: Callable[[Any, frozenset[str]], Any]) -> Any:
        """`judge(policy, detail)`'s result, compared with the old policy's findings (--compare-rules)."""
        result = judge(policy, detail)
        if old_policy is None:
            return result
        from forewarn.audit.compare import compare

        old = judge(old_policy, frozenset())
        return replace(
            result,
            comparison=compare(result, old, old_policy.source or "(the project's rules)"),
            finding_kinds=result.finding_kinds + old.finding_kinds,  # the removed findings' subjects too
        )

    with terminal.Progress("reading the log") as progress:
        if events_files and not db:
            from forewarn.relational.jsonl import audit_files

            # straight into the tables (the counts' formats, one policy); a log it leaves (an error, a repeat,
            # out of order) and the formats that name events are read through the models
            fast = not detail and old_policy is None
            done = audit_files(events_files, policy, t, start, end) if fast else None
            result, log = done or _audit_files(
                events_files,
                lambda events: compared(lambda p, d: audit_events(events, p, t, start, end, d)),
                policy.ids,
            )
        else:
            from forewarn.errors import Refused, describe
            from forewarn.relational.tables import log_failure

            path, log = _log_fingerprint(db, events_files)
            progress.stage("evaluating")
            try:
                result = compared(lambda p, d: audit_store(path, p, t, start, end, log.seq, d))
            except Exception as exc:
                message = log_failure(exc, path) or describe(exc, path)
                if message is None:
                    raise
                raise Refused(message) from exc
        result = replace(result, log=log)
        progress.stage("writing the reports")
        if fmt == "table" and output in (None, "-"):
            from forewarn.audit.formats import table

            text = table.render(result, color=terminal.color_enabled())
        else:
            text = render(fmt, result, fail_on)
        reports = [(render(other, result, fail_on), path) for other, path in extra]
    write_output(text, output)
    for report, path in reports:
        write_output(report, path)
    s = result.summary
    total = build_stats(result).total.tally  # the same aggregation the format used
    terminal.note(
        f"forewarn: {s.obligations} obligations ({s.met} met, {s.violated} violated, {s.waived} waived, "
        f"{s.pending} pending), {s.findings} findings ({len(result.violations)} violations); "
        f"compliance {rate_text(total.rate)} of {total.met + total.violated} judged cases "
        "(obligations and per-communication checks)"
    )
    if result.comparison is not None:
        click.echo(f"forewarn: {result.comparison.summary()}", err=True)
    threshold = SEVERITY_ORDER[fail_on]
    if any(SEVERITY_ORDER[f.severity] >= threshold for f in result.violations):
        sys.exit(EXIT_FINDINGS)


def _extra_outputs(outputs: dict[str, str | None], output: str | None) -> list[tuple[str, str]]:
    """The --output-FORMAT options given, as (format, path); a path given twice is refused."""
    wanted = [(name.removeprefix("output_"), path) for name, path in outputs.items() if path]
    paths = [path for _fmt, path in wanted] + ([output] if output not in (None, "-") else [])
    resolved = [os.path.realpath(p) for p in paths]
    for p, r in zip(paths, resolved, strict=True):
        if resolved.count(r) > 1:
            fail(f"{p} is given for two reports; give each report its own file")
    return wanted


def _audit_files(files: Sequence[str], judge: Callable[[list[Any]], Any], rule_ids: Sequence[str]) -> tuple[Any, Any]:
    """`judge` of the JSONL files' events, while their checks (ids, references, rules) run on the other CPU
    (forewarn.log.source.load_files_checking), and the log's fingerprint; a bad log is reported as input errors
    (exit 2), as by read_log."""
    from forewarn.log.source import InputErrors, load_files_checking

    _check_input_names(files)
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
    return (result if instead is None else judge(instead)), confirm.fingerprint  # repeats dropped: judge the rest


@main.group(
    "rules", epilog=examples("forewarn rules list", "forewarn rules show advance-notice", "forewarn rules lint")
)
def rules_group() -> None:
    """The policy in force: list, show and lint the rule files."""


@rules_group.command("list", epilog=examples("forewarn rules list", "forewarn rules list --rules my-rules/"))
@rules_option
def rules_list(rules_dir: str | None) -> None:
    """Every rule: id, severity, title."""
    from rich.table import Table
    from rich.text import Text

    from forewarn.audit.formats.table import STYLE

    policy = load_policy_or_fail(rules_dir)
    scope = ", ".join(f"{k}: {v}" for k, v in policy.scope.items())
    table = Table(
        "id", "severity", "title", "parameters", title=f"policy {policy.digest[:19]}…", caption=f"scope: {scope}"
    )
    for rule in policy.rules:
        params = ", ".join(f"{k}={v}" for k, v in rule.params().items())
        table.add_row(rule.id, Text(rule.severity, style=STYLE.get(rule.severity, "")), rule.spec.title, params)
    terminal.rich_console().print(table)


@rules_group.command("show", epilog=examples("forewarn rules show advance-notice"))
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

        for what, text, params in rule_sql(rule, policy.scope_condition):
            click.echo(f"-- {what}\n-- parameters: {json.dumps(params, sort_keys=True)}\n{text.strip()};\n")
        return
    click.echo(Path(rule.path).read_text(encoding="utf-8"), nl=False)


@rules_group.command("lint", epilog=examples("forewarn rules lint", "forewarn rules lint my-rules/"))
@click.argument("directory", required=False, type=click.Path())
def rules_lint(directory: str | None) -> None:
    """Check rule files: every problem as file:line: code: message (exit 2 if any)."""
    from forewarn.policy.loader import lint_directory

    rules, errors = lint_directory(directory)
    for e in errors:
        click.echo(str(e))
    if errors:
        click.echo(f"forewarn: {len(errors)} problem(s) in the policy", err=True)
        sys.exit(EXIT_BAD_INPUT)
    terminal.note(f"forewarn: {len(rules)} rules, no problems")


@rules_group.command(
    "test", epilog=examples("forewarn rules test", "forewarn rules test docs/examples/rules --format json")
)
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def rules_test(directory: str | None, fmt: str) -> None:
    """Run the fixtures beside each rule (fixtures/<rule>/ruleid-*.jsonl must trigger, ok-*.jsonl must not).

    Exit 0 when all pass, 1 when some fail (the findings missing and extra are shown), 2 for a bad policy."""
    import json

    from forewarn.policy.tester import coverage_gaps, run_fixtures_of

    policy = load_policy_or_fail(directory)  # a bad policy: every problem, exit 2
    results = run_fixtures_of(policy, directory)
    failed = [r for r in results if not r.passed]
    if fmt == "json":
        click.echo(json.dumps({"fixtures": [r.to_json() for r in results], "failed": len(failed)}, indent=1))
    else:
        from forewarn.policy.tester import report_lines

        for line in report_lines(results):
            click.echo(line)
    for gap in coverage_gaps(policy, directory):
        click.echo(f"forewarn: note: {gap}", err=True)
    click.echo(f"forewarn: {len(results) - len(failed)} of {len(results)} fixture(s) pass", err=True)
    sys.exit(1 if failed else 0)


@main.command(
    "explain",
    epilog=examples(
        "forewarn explain --rule advance-notice --subject mx-0005 --customer cust-0001 --as-of 2026-04-15",
        "forewarn explain --rule closing-notice --subject mx-0005 --format json",
        times=True,
    ),
)
@db_option
@events_option
@rules_option
@click.option("--rule", "rule_id", metavar="R", required=True, help="The rule (see `forewarn rules list`).")
@click.option("--subject", metavar="S", required=True, help="The maintenance / incident / release (or communication).")
@click.option("--customer", metavar="C", default=None, help="Only this customer's obligations.")
@click.option("--as-of", "as_of", metavar="T", default="now", help="Explain as of T (default now).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def explain_cmd(
    db: str | None, events_files: tuple[str, ...], rules_dir: str | None, rule_id: str, subject: str,
    customer: str | None, as_of: str, fmt: str,
) -> None:
    """Why an obligation of R about S is met, pending, violated, waived or void: the moments that opened it,
    its window and deadline arithmetic, every candidate communication, the waivers considered."""
    import difflib
    import json

    from forewarn.explain import explain, judge, to_text

    policy = load_policy_or_fail(rules_dir)
    rule = policy.get(rule_id)
    if rule is None:
        close = difflib.get_close_matches(rule_id, policy.ids, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; rules: {', '.join(policy.ids)}"
        fail(f"--rule: no rule {rule_id!r}{hint}")
    t = parse_instant(as_of, "--as-of")
    result = judge(read_log(db, events_files, policy.ids, t), policy, t)
    try:
        found = explain(result, rule, subject, customer)
    finally:
        result.close()
    click.echo(json.dumps(found, indent=1, ensure_ascii=False) if fmt == "json" else to_text(found))


@main.command(
    "plan",
    epilog=examples(
        "forewarn plan",
        "forewarn plan --as-of 2026-03-02T10:00:00Z --format json",
        "forewarn plan --propose 'start=2026-04-06T07:00:00Z,end=2026-04-06T09:00:00Z,customers=all,"
        "impact=interruption'",
        times=True,
    ),
)
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

    Answered from the plan the engine last published in the log when nothing changed since; otherwise
    the log is evaluated (and that plan published for the next call)."""
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
        from forewarn.engine.cache import plan_basis_of_events

        events = read_log(db, events_files, policy.ids, t)  # refuses --db with --events
        snapshot = plan_basis_of_events(events, policy, t).snapshot(0, t + timedelta(microseconds=1))
        show_plan(published.view(snapshot, t), fmt)
        return
    from forewarn.engine.cache import EvaluationCache
    from forewarn.errors import log_errors
    from forewarn.log.access import open_reader
    from forewarn.log.store import LogError

    try:
        store = open_reader(path, publish=True)  # a read-only log is planned too, just not published in
    except LogError as exc:
        fail(str(exc))
    try:
        with log_errors(path):
            cache = EvaluationCache(store, policy, publish_key=key)  # publishes what it evaluates
            cache.get(t)
            snapshot = cache.snapshot()  # the one just published
            alerts = delivery_alerts_json(store.db.conn, t)
    finally:
        store.close()  # a damaged log refused too: left open, its connection keeps the -wal and -shm files
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


@main.command(
    "run",
    epilog=examples(
        "forewarn run --once                        one pass: send what is due into ./outbox",
        "forewarn run --once --now 2026-03-02T10:00:00Z",
        "forewarn run --smtp mail.example.com:587 --starttls --smtp-user bot",
        times=True,
    ),
)
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
@click.option("--ticket-webhook", metavar="URL", default=None, help="Open each ticket in an external system.")
@serve.ticket_auth_option
@click.option(
    "--poll",
    metavar="SECONDS",
    type=float,
    default=30.0,
    show_default=True,
    help="Without --once: longest sleep between passes.",
)
@click.option(
    "--retry-failed",
    "retry_failed",
    is_flag=True,
    help="First make refused deliveries due again: those named by ID (message or communication id), or all.",
)
@click.argument("ids", nargs=-1, metavar="[ID...]")
@serve.delivery_limit_options
@click.option("--lease", metavar="SECONDS", type=click.FloatRange(min=0.1), default=None, hidden=True)
@serve.templates_option
@serve.log_format_option
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
    ticket_auth_header: str | None,
    poll: float,
    retry_failed: bool,
    ids: tuple[str, ...],
    timeout: float,
    pass_deadline: float,
    give_up_after: int,
    lease: float | None,
    templates_dir: str | None,
    log_format: str,
) -> None:
    """Decide and send what is due, and record it in the log.

    Without --once it keeps running: it sleeps until the next due time, --poll seconds or an append by
    another process, and stops cleanly on SIGTERM or Ctrl-C."""
    from forewarn import logs
    from forewarn.engine.delivery import OutboxDirectory, SmtpDelivery, parse_smtp_target
    from forewarn.engine.runner import Engine
    from forewarn.engine.tickets import TicketWebhook
    from forewarn.log.store import LogError, open_store
    from forewarn.service import report_alert, report_pass

    logs.setup(log_format)
    key = rules_key(rules_dir)  # before the policy is loaded: a rule file edited meanwhile changes the key
    policy = load_policy_or_fail(rules_dir)
    serve.use_templates(templates_dir)
    if smtp and outbox_dir:
        fail("give either --outbox or --smtp, not both")
    t = parse_instant(now, "--now") if now else None
    if t is not None and not once:
        fail("--now replays one instant: use it with --once")
    if ids and not retry_failed:
        fail(f"unexpected argument {ids[0]!r}: IDs name failed deliveries to resend, with --retry-failed")
    path = db_path(db)
    if not Path(path).exists():
        fail(f"no event log at {path}; import one with `forewarn import FILE.jsonl --db {path}`")
    from forewarn.errors import note_log
    from forewarn.log.access import read_only_connection
    from forewarn.options import check_smtp_login, check_webhook_url

    password = config.settings().get("smtp.password") or os.environ.get("FOREWARN_SMTP_PASSWORD")
    for problem in (check_webhook_url(ticket_webhook), check_smtp_login(smtp, smtp_user, password)):
        if problem:
            fail(problem)
    note_log(path)  # a failure of the database below names it
    _refuse_foreign(path, lambda p: read_only_connection(p).close())  # a forewarn log, or nothing is created in it
    try:
        store = open_store(path, upgrade=True)
    except LogError as exc:
        fail(str(exc))
    if smtp:
        try:
            host, port = parse_smtp_target(smtp)
        except ValueError as exc:
            fail(f"--smtp: {exc}")
        delivery = SmtpDelivery(
            host,
            port,
            starttls=starttls,
            username=smtp_user,
            password=password,
            timeout=timeout,
        )
        destination = f"SMTP {host}:{port}"
    else:
        delivery = OutboxDirectory(Path(outbox_dir or "outbox"))
        destination = f"outbox {outbox_dir or 'outbox'}"
    try:
        webhook = (
            TicketWebhook(ticket_webhook, timeout=timeout, authorization=ticket_auth_header) if ticket_webhook else None
        )
    except ValueError as exc:  # its message never holds a credential
        fail(f"--ticket-webhook: {exc}")
    engine = Engine(
        store,
        policy,
        delivery,
        webhook,
        freeze_gc=True,  # this process is the engine's
        publish_key=key,
        lease=lease,
        pass_deadline=pass_deadline,
        give_up_after=give_up_after,
        destination=destination,
    )
    if retry_failed:
        try:
            reset = engine.retry_failed(ids, by="forewarn run --retry-failed" + "".join(f" {i}" for i in ids))
        except ValueError as exc:
            store.close()
            fail(f"--retry-failed: {exc}")
        click.echo(f"forewarn: {len(reset)} failed deliver(ies) due again", err=True)

    def report(result: Any) -> None:
        report_pass(result)  # the log lines (JSON with --log-format json: then the only lines on stderr)
        if log_format == "json":
            return
        terminal.note(
            f"forewarn: sent {len(result.sent)}, failed {len(result.failed)}, held by another process {result.skipped}"
            + (f", left for the next pass {result.deferred}" if result.deferred else ""),
        )
        for message_id, error in result.failed:
            click.echo(f"forewarn: delivery of {message_id} failed: {error}", err=True)
        for communication, error in result.ticket_errors:
            click.echo(
                f"forewarn: the ticket for {communication} is not opened (retried by later passes): {error}", err=True
            )
        for alert in result.alerts:
            click.echo(f"forewarn: alert: {alert.message}", err=True)

    try:
        if once:
            result = engine.run_once(t)
            refused = engine.standing_refusals(t or engine.clock())
            report(result)
            for alert in refused:
                if log_format == "json":
                    report_alert(alert)
                else:
                    click.echo(f"forewarn: alert: {alert.message}", err=True)
            if result.unfinished or refused:
                sys.exit(EXIT_FINDINGS)
        else:
            engine.run_forever(poll=poll, report=report)
    finally:
        delivery.close()
        if webhook is not None:
            webhook.close()
        store.close()


@main.command(
    "synth",
    epilog=examples(
        "forewarn synth -o quarter.jsonl --expected quarter.expected.json",
        "forewarn synth --size year --seed 7 -o year.jsonl",
    ),
)
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
    terminal.note(
        f"forewarn: wrote {n} events to {output}; {len(result.expected)} seeded findings"
        f"; audit as of {result.as_of:%Y-%m-%dT%H:%M:%SZ}"
    )


@main.command("demo", epilog=examples("forewarn demo", "forewarn demo --dir /tmp/forewarn-demo"))
@click.option("--dir", "workdir", default="forewarn-demo", show_default=True, help="Where to put the demo's files.")
def demo_cmd(workdir: str) -> None:
    """The main job on an embedded sample: import a realistic log and audit it."""
    from forewarn.demo import run_demo

    run_demo(Path(workdir))


@main.command(
    "verify",
    epilog=examples("forewarn verify --db forewarn.db", "forewarn verify --db forewarn.db --expect 42:sha256:ab12..."),
)
@db_option
@click.option(
    "--expect",
    metavar="SEQ:HEAD",
    default=None,
    help="Also check that the log holds the log a report judged (its fingerprint, e.g. 42:sha256:ab12...).",
)
def verify_cmd(db: str | None, expect: str | None) -> None:
    """Check the log's hash chain and append-only triggers: exit 0 intact, 1 broken (the first broken event)."""
    from forewarn.log.chain import Fingerprint
    from forewarn.log.schema import NewerLog, OutdatedLog
    from forewarn.log.verify import NotALog, verify

    try:
        expected = Fingerprint.parse(expect) if expect is not None else None
    except ValueError as exc:
        fail(f"--expect: {exc}")
    try:
        verdict = verify(_existing_db(db), expected)
    except (NotALog, OutdatedLog, NewerLog) as exc:
        fail(str(exc))
    for line in verdict.lines():
        click.echo(line)
    if not verdict.intact:
        sys.exit(EXIT_FINDINGS)


@main.command("upgrade", epilog=examples("forewarn upgrade --db forewarn.db"))
@db_option
def upgrade_cmd(db: str | None) -> None:
    """Upgrade a log written by an older forewarn to this one's schema (in place, all or nothing)."""
    from forewarn.log.store import LogError, upgrade_log

    path = _existing_db(db)
    try:
        before, after = upgrade_log(path)
    except LogError as exc:
        fail(str(exc))
    if before == after:
        click.echo(f"forewarn: {path} is schema {after} already", err=True)
    else:
        click.echo(f"forewarn: upgraded {path} from schema {before} to {after}", err=True)


serve.serve_cmd.epilog = examples(*serve.EXAMPLES)
main.add_command(serve.serve_cmd)
config.install(main)  # last: every command gets --config (forewarn.config)


if __name__ == "__main__":  # pragma: no cover
    entry()
