"""Instants as the log and the reports write them: `2026-03-09T02:00:00Z`, and microseconds since the epoch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["epoch_us", "parse_instant", "utc"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def utc(t: datetime | None) -> str | None:
    """A UTC instant as printed in reports and plans, to the second (None stays None)."""
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t is not None else None


def epoch_us(t: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact, no float)."""
    return (t - _EPOCH) // _MICROSECOND


def parse_instant(value: str) -> datetime:
    """An RFC 3339 timestamp with offset, a date (00:00 UTC), or 'now' (to the second), in UTC;
    ValueError says what is wrong and how to write it."""
    if value == "now":
        return datetime.now(UTC).replace(microsecond=0)
    text = value.strip().replace("z", "Z")
    try:
        if len(text) == 10:
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not a timestamp; use e.g. 2026-03-09T02:00:00Z or 2026-03-09") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset; add one, e.g. {value}Z")
    return parsed.astimezone(UTC)
