"""Instants as the log and the reports write them: `2026-03-09T02:00:00Z`, and microseconds since the epoch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["epoch_us", "utc"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def utc(t: datetime | None) -> str | None:
    """A UTC instant as printed in reports and plans, to the second (None stays None)."""
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t is not None else None


def epoch_us(t: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact, no float)."""
    return (t - _EPOCH) // _MICROSECOND
