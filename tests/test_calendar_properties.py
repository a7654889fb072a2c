"""Property tests: the laws of "N business days before t" (policy.md, "Business days")."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from forewarn.calendar import (
    business_days_before,
    business_days_before_many,
    calendar_for,
)
from forewarn.calendar.business import _zone_year

ZONES = [
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",  # 30-minute DST
    "Asia/Jerusalem",
    "Pacific/Chatham",  # +12:45 / +13:45
    "UTC",
]
COUNTRIES = [None, "US", "DE", "IL", "EG", "GB", "FR", "JP", "AU"]
FIRST_YEAR, LAST_YEAR = 2000, 2035
CHANGES = {
    tz: [t for y in range(FIRST_YEAR, LAST_YEAR) for t, _ in _zone_year(tz, y)[1]] for tz in ZONES
}

uniform_instants = st.datetimes(
    min_value=datetime(FIRST_YEAR, 1, 1),
    max_value=datetime(LAST_YEAR - 1, 12, 31),
    timezones=st.just(UTC),
)


@st.composite
def near_change(draw: st.DrawFn, tz: str) -> datetime:
    """An instant 0-9 days (+- 3 h) after one of the zone's UTC-offset changes."""
    change = draw(st.sampled_from(CHANGES[tz]))
    days = draw(st.integers(0, 9))
    jitter = draw(st.integers(-3 * 3600, 3 * 3600))
    micros = draw(st.sampled_from([0, 0, 1, 999_999]))
    return datetime.fromtimestamp(change + days * 86_400 + jitter, UTC) + timedelta(
        microseconds=micros
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[datetime, str, str | None]:
    """(t, time zone, country) with t uniform or near a DST change of the zone."""
    tz = draw(st.sampled_from(ZONES))
    country = draw(st.sampled_from(COUNTRIES))
    instants = uniform_instants | near_change(tz) if CHANGES[tz] else uniform_instants
    return draw(instants), tz, country


ns = st.integers(1, 5)


def _deadline(t: datetime, n: int, tz: str, country: str | None) -> datetime:
    return business_days_before(t, n, tz, country)


def _nth_business_before(country: str | None, day: date, n: int) -> date:
    cal = calendar_for(country)
    while n:
        day -= timedelta(days=1)
        n -= cal.is_business_day(day)
    return day


@given(cases(), ns)
def test_deadline_is_not_after_t(case: tuple[datetime, str, str | None], n: int):
    t, tz, country = case
    assert _deadline(t, n, tz, country) <= t


@given(cases(), st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10)), ns)
def test_monotone_in_t(case: tuple[datetime, str, str | None], delta: timedelta, n: int):
    t1, tz, country = case
    t2 = t1 + delta
    zone = ZoneInfo(tz)
    wall1 = t1.astimezone(zone).replace(tzinfo=None)
    wall2 = t2.astimezone(zone).replace(tzinfo=None)
    if wall1 <= wall2:  # see test_not_monotone_within_a_repeated_hour for the exception
        assert _deadline(t1, n, tz, country) <= _deadline(t2, n, tz, country)


def test_not_monotone_within_a_repeated_hour():
    """The one exception to monotonicity, a consequence of "keep t's wall-clock time": in the
    repeated hour of a fall-back on a business day, a later t has an earlier wall time."""
    first = datetime(2026, 10, 24, 22, 30, tzinfo=UTC)  # Sun 01:30 IDT, Asia/Jerusalem
    second = datetime(2026, 10, 24, 23, 10, tzinfo=UTC)  # Sun 01:10 IST, 40 minutes later
    d1 = _deadline(first, 1, "Asia/Jerusalem", "IL")
    d2 = _deadline(second, 1, "Asia/Jerusalem", "IL")
    assert d2 < d1 and d1 - d2 == timedelta(minutes=20)


@given(cases(), ns)
def test_more_days_is_earlier(case: tuple[datetime, str, str | None], n: int):
    t, tz, country = case
    assert _deadline(t, n + 1, tz, country) < _deadline(t, n, tz, country)


@given(cases(), ns)
def test_deadline_date_is_business_day(case: tuple[datetime, str, str | None], n: int):
    t, tz, country = case
    local = _deadline(t, n, tz, country).astimezone(ZoneInfo(tz))
    assert calendar_for(country).is_business_day(local.date())


def _is_transition(d: datetime, zone: ZoneInfo) -> bool:
    return (d - timedelta(seconds=1)).astimezone(zone).utcoffset() != d.astimezone(zone).utcoffset()


@given(cases(), ns)
def test_wall_time(case: tuple[datetime, str, str | None], n: int):
    """t's wall time (00:00 for a non-business t) on the n-th previous business day; the
    earlier instant when that reading is repeated; the transition instant when it is skipped."""
    t, tz, country = case
    zone = ZoneInfo(tz)
    local = t.astimezone(zone)
    business = calendar_for(country).is_business_day(local.date())
    wall = local.time().replace(fold=0) if business else time(0)
    want = datetime.combine(_nth_business_before(country, local.date(), n), wall)
    got = _deadline(t, n, tz, country)
    if got.astimezone(zone).replace(tzinfo=None) == want:
        readings = [want.replace(tzinfo=zone, fold=f).astimezone(UTC) for f in (0, 1)]
        assert got == min(readings)
    else:  # want is in a gap: got is the end of that gap
        round_trip = want.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)
        assert round_trip.replace(tzinfo=None) != want  # want does not exist
        assert got.astimezone(zone).replace(tzinfo=None) > want
        assert (got - timedelta(microseconds=1)).astimezone(zone).replace(tzinfo=None) < want
        assert got.astimezone(zone).date() == want.date()
        assert _is_transition(got, zone)


@given(st.lists(cases(), min_size=1, max_size=20), ns)
def test_many_equals_scalar(items: list[tuple[datetime, str, str | None]], n: int):
    _, tz, country = items[0]
    ts = np.array([int(t.timestamp()) for t, _, _ in items], dtype=np.int64)
    want = [
        int(_deadline(datetime.fromtimestamp(int(s), UTC), n, tz, country).timestamp()) for s in ts
    ]
    assert business_days_before_many(ts, n, tz, country).tolist() == want
