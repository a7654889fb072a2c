"""Checks of command-line values that click's types do not make, each returning the problem (or None)."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["check_smtp_login", "check_webhook_url"]


def check_webhook_url(url: str | None) -> str | None:
    """--ticket-webhook must be an http:// or https:// URL with a host (None: not given)."""
    if url is None:
        return None
    from forewarn.engine.redact import redact_url

    shown_url = redact_url(url)  # a URL's credentials are never printed
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError as exc:
        return f"--ticket-webhook {shown_url!r}: not a URL ({exc}); expected http(s)://HOST/PATH"
    if parts.scheme not in ("http", "https"):
        shown = f"{parts.scheme}: URLs are not accepted" if parts.scheme else "not a URL"
        return f"--ticket-webhook {shown_url!r}: {shown}; expected an http:// or https:// URL such as https://tickets.example/hook"
    if not host:
        return f"--ticket-webhook {shown_url!r}: the URL names no host; expected http(s)://HOST/PATH"
    return None


def check_smtp_login(smtp: str | None, user: str | None, password: str | None) -> str | None:
    """--smtp-user needs --smtp and a password in $FOREWARN_SMTP_PASSWORD."""
    if user is None:
        return None
    if not smtp:
        return "--smtp-user logs in to an SMTP server: give --smtp HOST:PORT too"
    if not password:
        return f"--smtp-user {user!r}: no password; set it in $FOREWARN_SMTP_PASSWORD"
    return None
