"""Settings for every command: `forewarn.toml` (--config FILE or $FOREWARN_CONFIG), each key overridable by a
`FOREWARN_*` environment variable, and each by its command-line flag.

One mechanism: an eager `--config` option on every command reads the file and the environment and hands the
result to click as the command's `default_map` (click's defaults for options not given on the command line);
`forewarn --config FILE CMD` does the same through the group's default_map, by command name.
So the order of precedence is: flag, environment variable, config file, built-in default. Settings that are
not flags (API tokens, the SMTP password) are read from the same merged settings (`settings(ctx)`).

A key's environment variable is `FOREWARN_` and its dotted name in upper case, dots as underscores:
`smtp.server` -> `FOREWARN_SMTP_SERVER`, `api.tokens` -> `FOREWARN_API_TOKENS`, `db` -> `FOREWARN_DB`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

CONFIG_ENV = "FOREWARN_CONFIG"
META_KEY = "forewarn.settings"


@dataclass(frozen=True)
class Key:
    name: str  # dotted name in the file
    kind: type  # str | float | int | bool
    param: str | None  # the click parameter it sets (None: read with setting())
    path: bool = False  # a file or directory: relative to the config file's directory


KEYS = (
    Key("db", str, "db", path=True),
    Key("rules", str, "rules_dir", path=True),
    Key("templates", str, "templates_dir", path=True),
    Key("outbox", str, "outbox_dir", path=True),
    Key("poll", float, "poll"),
    Key("log_format", str, "log_format"),
    Key("smtp.server", str, "smtp"),
    Key("smtp.starttls", bool, "starttls"),
    Key("smtp.user", str, "smtp_user"),
    Key("smtp.password", str, None),
    Key("webhook.url", str, "ticket_webhook"),
    Key("webhook.auth_header", str, "ticket_auth_header"),
    Key("timeout", float, "timeout"),
    Key("pass_deadline", float, "pass_deadline"),
    Key("give_up_after", int, "give_up_after"),
    Key("api.listen", str, "listen"),
    Key("api.tokens", str, None),
    Key("api.max_body_bytes", int, "max_body"),
)
BY_NAME = {k.name: k for k in KEYS}


def env_name(key: str) -> str:
    return "FOREWARN_" + key.upper().replace(".", "_")


class ConfigError(click.ClickException):
    """A bad config file or environment variable: a clear message, exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"forewarn: error: {self.format_message()}", err=True)


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in table.items():
        dotted = f"{prefix}{name}"
        if isinstance(value, dict):
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _typed(key: Key, value: Any, where: str) -> Any:
    """The value as the key's type; tokens may be a list of ROLE:TOKEN strings."""
    if key.name == "api.tokens" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    if key.kind is bool and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{where}: must be true or false, not {value!r}")
    if key.kind in (int, float) and isinstance(value, str):
        try:
            return key.kind(value)
        except ValueError:
            raise ConfigError(f"{where}: must be a number, not {value!r}") from None
    if key.kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, key.kind) or (key.kind is not bool and isinstance(value, bool)):
        raise ConfigError(f"{where}: must be {key.kind.__name__}, not {type(value).__name__}")
    return value


def load(config: str | None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The merged settings by dotted key: the file's, overridden by the environment's."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if config:
        path = Path(config)
        try:
            with path.open("rb") as fh:
                raw = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"{config}: cannot read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config}: not valid TOML: {exc}") from None
        for name, value in _flatten(raw).items():
            key = BY_NAME.get(name)
            if key is None:
                known = ", ".join(k.name for k in KEYS)
                raise ConfigError(f"{config}: unknown key {name!r} (known: {known})")
            value = _typed(key, value, f"{config}: {name}")
            if key.path and isinstance(value, str):
                value = str((path.parent / value).resolve()) if not Path(value).is_absolute() else value
            values[name] = value
    for key in KEYS:
        text = environ.get(env_name(key.name))
        if text is not None and text != "":
            values[key.name] = _typed(key, text, f"${env_name(key.name)}")
    return values


def default_map(values: Mapping[str, Any], params: set[str]) -> dict[str, Any]:
    """click defaults for the parameters among `params` that the settings set."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        key = BY_NAME[name]
        if key.param is not None and key.param in params:
            out[key.param] = value
    return out


def _apply(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Eager callback of --config: runs before the other options are processed, so their defaults come from here."""
    from_group = META_KEY in ctx.meta  # `forewarn --config FILE CMD`: the group's settings apply already
    if from_group and (value is None or ctx.get_parameter_source("config") == click.core.ParameterSource.ENVIRONMENT):
        return value
    values = load(value)
    names = {p.name for p in ctx.command.params if p.name}
    ctx.default_map = {**(ctx.default_map or {}), **default_map(values, names)}
    ctx.meta[META_KEY] = values
    return value


def settings(ctx: click.Context | None = None) -> dict[str, Any]:
    """The merged settings of the running command (for keys that are not flags)."""
    ctx = ctx or click.get_current_context()
    found = ctx.meta.get(META_KEY)
    return dict(found) if found is not None else load(os.environ.get(CONFIG_ENV))


def config_option() -> click.Option:
    return click.Option(
        ["--config"],
        metavar="FILE",
        envvar=CONFIG_ENV,
        is_eager=True,
        expose_value=False,
        callback=_apply,
        type=click.Path(dir_okay=False),
        help="Settings file (TOML; default $FOREWARN_CONFIG); FOREWARN_* variables and flags override it.",
    )


def _apply_group(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Callback of the group's --config (`forewarn --config FILE CMD`): the settings become the defaults of
    whichever command runs (click's default_map by command name), and the settings of that command."""
    if value is None:
        return value
    values = load(value)
    group = ctx.command
    assert isinstance(group, click.Group)
    ctx.default_map = _group_defaults(values, group)
    ctx.meta[META_KEY] = values
    return value


def _group_defaults(values: Mapping[str, Any], group: click.Group) -> dict[str, Any]:
    """click's default_map of a group: by command name, nested for subgroups."""
    out: dict[str, Any] = {}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            out[name] = _group_defaults(values, command)
        else:
            out[name] = default_map(values, {p.name for p in command.params if p.name})
    return out


def install(group: click.Group, top: bool = True) -> None:
    """Give every command of `group` (and of its subgroups) the --config option; `group` itself too (`top`)."""
    if top and not any(p.name == "config" for p in group.params):
        option = config_option()
        option.envvar = None  # $FOREWARN_CONFIG is read by the command's own --config
        option.callback = _apply_group
        group.params.append(option)
    for command in group.commands.values():
        if isinstance(command, click.Group):
            install(command, top=False)
        elif not any(p.name == "config" for p in command.params):
            command.params.insert(0, config_option())
