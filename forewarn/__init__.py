"""forewarn: customer-notification policy as code (engine, auditor, policy tests)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("forewarn")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"
