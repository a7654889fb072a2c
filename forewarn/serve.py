"""`forewarn serve`: the HTTP API (forewarn.api) and the engine loop on one log (the engine in a child process)."""

from __future__ import annotations

import functools
import ipaddress
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from forewarn.program import db_path, rules_key


def fail(message: str) -> Any:
    from forewarn.cli import fail as cli_fail

    cli_fail(message)


DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_MAX_BODY = 16 << 20
EXIT_INTERNAL = 3


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT ([::1]:PORT for IPv6)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host or int(port) > 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def templates_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--templates",
        "templates_dir",
        metavar="DIR",
        default=None,
        type=click.Path(file_okay=False, exists=True),
        help="Your own mail templates (NAME.txt.j2, NAME.html.j2); the bundled ones for any not in DIR.",
    )(f)


def log_format_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--log-format",
        "log_format",
        type=click.Choice(["plain", "json"]),
        default="plain",
        show_default=True,
        help="Log lines on stderr: plain text with timestamps, or one JSON object per line.",
    )(f)


def ticket_auth_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--ticket-auth-header",
        metavar="VALUE",
        envvar="FOREWARN_TICKET_AUTH",
        default=None,
        show_default=False,
        help="The webhook's Authorization header ('Bearer TOKEN') or 'Name: value' ($FOREWARN_TICKET_AUTH); "
        "never printed.",
    )(f)


def delivery_limit_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--timeout, --pass-deadline and --give-up-after (run and serve)."""
    for option in reversed(
        (
            click.option(
                "--timeout",
                metavar="SECONDS",
                type=click.FloatRange(min=0.1),
                default=10.0,
                show_default=True,
                help="Connect / read timeout of each attempt (mail server and ticket webhook).",
            ),
            click.option(
                "--pass-deadline",
                metavar="SECONDS",
                type=click.FloatRange(min=1),
                default=300.0,
                show_default=True,
                help="A pass starts no delivery after this; the rest waits for the next pass.",
            ),
            click.option(
                "--give-up-after",
                metavar="N",
                type=click.IntRange(min=0),
                default=3,
                show_default=True,
                help="Consecutive failures after which the mail server (or webhook) is not tried again this pass "
                "(0: never).",
            ),
        )
    ):
        f = option(f)
    return f


def use_templates(templates_dir: str | None) -> None:
    """Mail templates from DIR (falling back to the bundled ones), all compiled now: a bad one is exit 2."""
    from forewarn.engine.render import RenderError
    from forewarn.engine.render import use_templates as use

    try:
        use(templates_dir)
    except RenderError as exc:
        fail(str(exc))


def delivery_factory(
    outbox_dir: str | None,
    smtp: str | None,
    starttls: bool,
    smtp_user: str | None,
    password: str | None,
    timeout: float = 10.0,
) -> tuple[Callable[[], Any], str]:
    """A function making the delivery (as `run` does), its arguments checked now, and its destination's name.
    The function is a partial of the delivery's class: the engine's process receives it pickled."""
    from forewarn.engine.delivery import OutboxDirectory, SmtpDelivery, parse_smtp_target

    if smtp and outbox_dir:
        fail("give either --outbox or --smtp, not both")
    if smtp:
        try:
            host, port = parse_smtp_target(smtp)
        except ValueError as exc:
            fail(f"--smtp: {exc}")
        return (
            functools.partial(
                SmtpDelivery, host, port, starttls=starttls, username=smtp_user, password=password, timeout=timeout
            ),
            f"SMTP {host}:{port}",
        )
    return functools.partial(OutboxDirectory, Path(outbox_dir or "outbox")), f"outbox {outbox_dir or 'outbox'}"


EXAMPLES = (
    "forewarn serve --db forewarn.db --insecure-no-auth",
    "FOREWARN_API_TOKENS=writer:$W,reader:$R forewarn serve --listen 0.0.0.0:8080 --smtp mail.example.com:25",
    "FOREWARN_CONFIG=/etc/forewarn/settings.toml forewarn serve --log-format json",
)
"""The examples of `serve --help` (its epilog, made by forewarn.cli.examples where the command is registered)."""


@click.command("serve")
@click.option(
    "--db", metavar="PATH", default=None, help="The SQLite event log (default ./forewarn.db, or $FOREWARN_DB)."
)
@click.option("--rules", "rules_dir", metavar="DIR", default=None, type=click.Path(file_okay=False),
              help="The policy: a directory of rule files (default: the project's rules/).")
@click.option("--listen", metavar="HOST:PORT", default=DEFAULT_LISTEN, show_default=True, help="Where the API listens.")
@click.option(
    "--insecure-no-auth", "insecure", is_flag=True,
    help="No tokens: anyone who can connect may do anything (loopback only).",
)
@click.option(
    "--max-body", "max_body", metavar="BYTES", type=click.IntRange(min=1), default=DEFAULT_MAX_BODY, show_default=True,
    help="Largest request body accepted (413 beyond).",
)
@click.option("--outbox", "outbox_dir", metavar="DIR", default=None, type=click.Path(file_okay=False),
              help="Write each message as a .eml file into DIR (the default: ./outbox).")
@click.option("--smtp", metavar="HOST:PORT", default=None, help="Deliver over SMTP instead.")
@click.option("--starttls", is_flag=True, help="SMTP: upgrade the connection with STARTTLS.")
@click.option("--smtp-user", metavar="USER", default=None, help="SMTP: log in as USER ($FOREWARN_SMTP_PASSWORD).")
@click.option("--ticket-webhook", metavar="URL", default=None, help="Also open each ticket in an external system.")
@ticket_auth_option
@click.option("--poll", metavar="SECONDS", type=float, default=30.0, show_default=True,
              help="Longest sleep between passes (an append through the API wakes the engine at once).")
@delivery_limit_options
@templates_option
@log_format_option
def serve_cmd(
    db: str | None,
    rules_dir: str | None,
    listen: str,
    insecure: bool,
    max_body: int,
    outbox_dir: str | None,
    smtp: str | None,
    starttls: bool,
    smtp_user: str | None,
    ticket_webhook: str | None,
    ticket_auth_header: str | None,
    poll: float,
    timeout: float,
    pass_deadline: float,
    give_up_after: int,
    templates_dir: str | None,
    log_format: str,
) -> None:
    """Run the engine loop and the HTTP API on one log.

    Tokens come from the config file (api.tokens) or $FOREWARN_API_TOKENS (writer:TOKEN,reader:TOKEN).
    Without tokens it only starts with --insecure-no-auth on a loopback address."""
    from forewarn import config, logs
    from forewarn.cli import load_policy_or_fail
    from forewarn.service import Service, Settings, TokenError, Tokens, no_webhook, parse_tokens

    values = config.settings()
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        fail(f"--listen: {exc}")
    try:
        tokens = Tokens(parse_tokens(values.get("api.tokens")))
    except TokenError as exc:
        fail(str(exc))
    if insecure:
        if not is_loopback(host):
            fail(f"--insecure-no-auth only on a loopback address (127.0.0.1, ::1), not {host}")
    elif not tokens:
        fail(
            "no API tokens: set api.tokens in the config file or $FOREWARN_API_TOKENS (writer:TOKEN,reader:TOKEN),"
            " or use --insecure-no-auth on a loopback address"
        )
    logs.setup(log_format)
    key = rules_key(rules_dir)
    policy = load_policy_or_fail(rules_dir)
    use_templates(templates_dir)
    path = db_path(db)
    if not Path(path).exists():
        fail(f"no event log at {path}; import one with `forewarn import FILE.jsonl --db {path}`")
    from forewarn.engine.tickets import TicketWebhook
    from forewarn.log.store import LogError, open_store
    from forewarn.options import check_smtp_login, check_webhook_url

    password = values.get("smtp.password") or os.environ.get("FOREWARN_SMTP_PASSWORD")
    for problem in (check_webhook_url(ticket_webhook), check_smtp_login(smtp, smtp_user, password)):
        if problem:
            fail(problem)
    try:
        open_store(path, upgrade=True).close()  # the service writes: an older log is upgraded once, here
    except LogError as exc:
        fail(str(exc))
    make_delivery, destination = delivery_factory(outbox_dir, smtp, starttls, smtp_user, password, timeout)
    try:
        if ticket_webhook:  # checked now; the engine's process makes its own
            TicketWebhook(ticket_webhook, timeout=timeout, authorization=ticket_auth_header).close()
    except ValueError as exc:  # its message never holds a credential
        fail(f"--ticket-webhook: {exc}")
    make_webhook: Callable[[], Any] = (
        functools.partial(TicketWebhook, ticket_webhook, timeout=timeout, authorization=ticket_auth_header)
        if ticket_webhook else no_webhook
    )

    settings = Settings(
        db=path, rules_dir=rules_dir, policy=policy, plan_key=key, tokens=tokens, insecure=insecure,
        max_body=max_body, poll=poll, make_delivery=make_delivery, make_webhook=make_webhook,
        destination=destination, pass_deadline=pass_deadline, give_up_after=give_up_after,
        templates_dir=templates_dir, log_format=log_format,
    )
    code = serve(Service(settings), host, port)
    if code:
        sys.exit(code)


def make_server(service: Any, host: str, port: int) -> Any:
    """The uvicorn server of the API (run() it; in the main thread it stops on SIGTERM/SIGINT)."""
    import uvicorn

    from forewarn.api import create_app

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            """Stop serving; unlike uvicorn's, the signal is not raised again once the server stopped, so
            the engine is stopped too (service.shutdown) and the process ends with status 0."""
            service.stop.set()  # the engine's process, which may have had the signal too, is not started again
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True

    server = Server(
        uvicorn.Config(
            create_app(service), host=host, port=port, log_config=None, access_log=False, server_header=False,
            lifespan="off", timeout_graceful_shutdown=10,
        )
    )

    def engine_failed() -> None:
        server.should_exit = True

    service.on_engine_failure = engine_failed
    return server


def serve(service: Any, host: str, port: int) -> int:
    """Run the engine's process and the API until SIGTERM/SIGINT, or until the engine fails (exit status 3)."""
    import gc
    import logging

    log = logging.getLogger("forewarn.serve")
    server = make_server(service, host, port)
    # What start-up built (modules, the policy, the app) lives as long as the process: out of the cyclic
    # GC's way, or every full collection walks all of it again while requests wait.
    gc.collect()
    gc.freeze()
    service.start_engine()
    log.info("listening", extra={"fields": {"event": "listening", "address": f"{host}:{port}",
                                             "auth": not service.settings.insecure}})
    try:
        server.run()
    finally:
        service.shutdown()
    log.info("stopped", extra={"fields": {"event": "stopped"}})
    return EXIT_INTERNAL if service.engine_error else 0
