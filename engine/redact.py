"""Credentials never printed: URLs and messages with their secrets replaced by `***`."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

MASK = "***"
_SECRET_PARAM = re.compile(r"(?i)(token|key|secret|pass|password|pwd|auth|sig|signature|credential)")


def url_secrets(url: str) -> list[str]:
    """The secret parts of URL: its user-info (user and password, raw and decoded) and the values of
    query parameters named like credentials (token, key, secret, password, auth, sig, ...)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found: list[str] = []
    userinfo, at, _host = parts.netloc.rpartition("@")
    if at and userinfo:
        found.append(userinfo)
        user, _, password = userinfo.partition(":")
        found += [user, password, unquote(user), unquote(password)]
    for name, value in parse_qsl(parts.query, keep_blank_values=False):
        if _SECRET_PARAM.search(name):
            found += [value, quote(value, safe="")]
    # longest first, so a part never leaves a longer secret half-masked
    return sorted({s for s in found if s}, key=len, reverse=True)


def redact_url(url: str) -> str:
    """URL with its user-info and credential-like query values masked (the rest kept for diagnosis)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    userinfo, at, host = parts.netloc.rpartition("@")
    netloc = f"{MASK}@{host}" if at and userinfo else parts.netloc
    query = "&".join(
        f"{name}={MASK}" if _SECRET_PARAM.search(name) else f"{name}={value}"
        for name, value in (item.partition("=")[::2] for item in parts.query.split("&") if item)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact(text: str, secrets: list[str]) -> str:
    """TEXT with every one of SECRETS (longest first) replaced by the mask."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text
