"""forewarn: customer-notification policy as code (engine, auditor, policy tests)."""

from __future__ import annotations

from functools import cache


@cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("forewarn")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0+unknown"


def __getattr__(name: str) -> str:
    """`__version__`, read from the installed metadata on first use (importing importlib.metadata
    would be most of the start-up of `forewarn plan` answering from a published plan)."""
    if name == "__version__":
        return _version()
    raise AttributeError(f"module 'forewarn' has no attribute {name!r}")
