"""Tests of the business calendar and deadlines (policy.md, "Business days")."""

from __future__ import annotations

import zlib
from datetime import UTC, date, datetime, timedelta

import holidays
import numpy as np
import pytest

from forewarn.calendar import (
    BusinessCalendar,
    business_days_before,
    business_days_before_many,
    calendar_for,
    country_suggestions,
    explain_deadline,
    format_local,
    holidays_version,
    is_valid_country,
    is_valid_subdivision,
    is_valid_timezone,
)
from forewarn.calendar.business import _zone_year


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def deadline(t: str, tz: str, country: str | None = None, sub: str | None = None, n: int = 1):
    return business_days_before(utc(t), n, tz, country, sub)


def one_many(t: str, tz: str, country: str | None = None, sub: str | None = None, n: int = 1):
    ts = np.array([int(utc(t).timestamp())], dtype=np.int64)
    return datetime.fromtimestamp(int(business_days_before_many(ts, n, tz, country, sub)[0]), UTC)


# --------------------------------------------------------------------------- policy.md examples

POLICY_EXAMPLES = [
    # window start (UTC), tz, country, deadline (local), deadline (UTC)
    ("2026-03-10T08:00Z", "Europe/Berlin", "DE", "Mon 2026-03-09 09:00", "2026-03-09T08:00Z"),
    ("2026-03-09T01:00Z", "Europe/Berlin", "DE", "Fri 2026-03-06 02:00", "2026-03-06T01:00Z"),
    ("2026-03-14T01:00Z", "Europe/Berlin", "DE", "Fri 2026-03-13 00:00", "2026-03-12T23:00Z"),
    ("2026-04-07T08:00Z", "Europe/Berlin", "DE", "Thu 2026-04-02 10:00", "2026-04-02T08:00Z"),
    ("2026-03-09T06:00Z", "America/New_York", "US", "Fri 2026-03-06 02:00", "2026-03-06T07:00Z"),
    ("2026-03-09T06:00Z", "UTC", None, "Fri 2026-03-06 06:00", "2026-03-06T06:00Z"),
]


@pytest.mark.parametrize(("start", "tz", "country", "local", "expected"), POLICY_EXAMPLES)
def test_policy_examples(start: str, tz: str, country: str | None, local: str, expected: str):
    got = deadline(start, tz, country)
    assert got == utc(expected)
    assert got.tzinfo is UTC
    assert format_local(got, tz).startswith(local)
    assert one_many(start, tz, country) == utc(expected)


def test_policy_example_local_starts():
    assert format_local(utc("2026-03-10T08:00Z"), "Europe/Berlin") == "Tue 2026-03-10 09:00 CET"
    assert format_local(utc("2026-04-07T08:00Z"), "Europe/Berlin") == "Tue 2026-04-07 10:00 CEST"
    assert format_local(utc("2026-03-09T06:00Z"), "America/New_York") == "Mon 2026-03-09 02:00 EDT"
    assert format_local(utc("2026-03-06T07:00Z"), "America/New_York") == "Fri 2026-03-06 02:00 EST"


# --------------------------------------------------------------------------- calendars


def test_israel_weekend_is_friday_saturday():
    il = calendar_for("IL")
    assert il.is_business_day(date(2026, 3, 8))  # Sunday
    assert not il.is_business_day(date(2026, 3, 6))  # Friday
    assert not il.is_business_day(date(2026, 3, 7))  # Saturday
    assert il.why_not_business(date(2026, 3, 6)) == "Friday"
    # Sun 10:00 -> Thu 10:00 (Fri, Sat skipped); Mon 10:00 -> Sun 10:00
    assert deadline("2026-03-08T08:00Z", "Asia/Jerusalem", "IL") == utc("2026-03-05T08:00Z")
    assert deadline("2026-03-09T08:00Z", "Asia/Jerusalem", "IL") == utc("2026-03-08T08:00Z")
    # Saturday (non-business) -> Thu 00:00 local (UTC+2)
    assert deadline("2026-03-07T08:00Z", "Asia/Jerusalem", "IL") == utc("2026-03-04T22:00Z")


def test_egypt_weekend_is_friday_saturday():
    eg = calendar_for("EG")
    assert eg.is_business_day(date(2026, 3, 1))  # Sunday
    assert not eg.is_business_day(date(2026, 2, 27))  # Friday
    assert eg.why_not_business(date(2026, 2, 28)) == "Saturday"


def test_no_country_is_monday_to_friday():
    cal = calendar_for(None)
    days = [date(2026, 3, 2) + timedelta(days=i) for i in range(7)]
    assert [cal.is_business_day(d) for d in days] == [True] * 5 + [False] * 2
    assert cal.is_business_day(date(2026, 12, 25))  # no holidays without a country


def test_subdivision_holiday_epiphany():
    by, be = calendar_for("DE", "BY"), calendar_for("DE", "BE")
    assert by.why_not_business(date(2026, 1, 6)) == "Epiphany"
    assert be.is_business_day(date(2026, 1, 6))
    start = "2026-01-07T08:00Z"  # Wed 09:00 CET
    assert deadline(start, "Europe/Berlin", "DE", "BY") == utc("2026-01-05T08:00Z")
    assert deadline(start, "Europe/Berlin", "DE", "BE") == utc("2026-01-06T08:00Z")
    assert one_many(start, "Europe/Berlin", "DE", "BY") == utc("2026-01-05T08:00Z")


def test_observed_holiday_us_july_4_on_saturday():
    us = calendar_for("US")
    assert us.why_not_business(date(2026, 7, 3)) == "Independence Day (observed)"
    assert us.why_not_business(date(2026, 7, 4)) == "Independence Day"
    # Mon 2026-07-06 10:00 EDT -> Thu 2026-07-02 10:00 EDT
    assert deadline("2026-07-06T14:00Z", "America/New_York", "US") == utc("2026-07-02T14:00Z")


def test_observed_holiday_across_new_year():
    # New Year's Day 2022 is a Saturday: observed on Fri 2021-12-31.
    assert calendar_for("US").why_not_business(date(2021, 12, 31)) == "New Year's Day (observed)"
    assert deadline("2022-01-03T15:00Z", "America/New_York", "US") == utc("2021-12-30T15:00Z")


def test_weekend_workday_is_a_business_day():
    ru = calendar_for("RU")
    assert ru.is_business_day(date(2024, 4, 27))  # Saturday made a working day
    assert not ru.is_business_day(date(2024, 4, 20))


@pytest.mark.parametrize(
    ("country", "sub"),
    [
        ("US", None),
        ("DE", "BY"),
        ("GB", "SCT"),
        ("IL", None),
        ("EG", None),
        ("SA", None),
        ("AE", None),
        ("JP", None),
        ("AU", "NSW"),
        ("FR", None),
        ("RU", None),
        ("CN", None),
    ],
)
def test_calendar_matches_library_is_working_day(country: str, sub: str | None):
    lib = holidays.country_holidays(country, subdiv=sub, years=range(2024, 2028), language="en_US")
    cal = calendar_for(country, sub)
    day = date(2025, 1, 1)
    while day.year < 2027:
        assert cal.is_business_day(day) == lib.is_working_day(day), day
        day += timedelta(days=1)


def test_why_not_business():
    de = calendar_for("DE")
    assert de.why_not_business(date(2026, 3, 9)) is None
    assert de.why_not_business(date(2026, 3, 7)) == "Saturday"
    assert de.why_not_business(date(2026, 4, 3)) == "Good Friday"
    assert de.why_not_business(date(2026, 4, 6)) == "Easter Monday"
    with pytest.raises(TypeError):
        de.is_business_day(datetime(2026, 3, 9, tzinfo=UTC))  # type: ignore[arg-type]


def test_calendar_for_is_cached_and_validates():
    assert calendar_for("DE", "BY") is calendar_for("DE", "BY")
    assert calendar_for("DE", "BY") == BusinessCalendar("DE", "BY")
    with pytest.raises(ValueError, match="GB"):
        calendar_for("UK")
    with pytest.raises(ValueError, match="subdivision"):
        calendar_for("DE", "XX")
    with pytest.raises(ValueError, match="without a country"):
        calendar_for(None, "BY")


def test_business_day_before():
    de = calendar_for("DE")
    assert de.business_day_before(date(2026, 4, 7)) == date(2026, 4, 2)
    assert de.business_day_before(date(2026, 4, 7), 2) == date(2026, 4, 1)


# --------------------------------------------------------------------------- DST and N


def test_fall_back_ambiguous_time_takes_earlier_instant():
    # Israel falls back Sun 2026-10-25 02:00 -> 01:00; Sunday is an IL business day.
    # Mon 01:30 IST -> Sun 01:30, which occurs twice: IDT (UTC+3) first.
    assert deadline("2026-10-25T23:30Z", "Asia/Jerusalem", "IL") == utc("2026-10-24T22:30Z")
    # Berlin falls back Sun 2026-10-25 03:00 -> 02:00: Mon 02:30 CET -> Sun 02:30 CEST.
    assert deadline("2026-10-26T01:30Z", "Europe/Berlin", "IL") == utc("2026-10-25T00:30Z")
    assert one_many("2026-10-26T01:30Z", "Europe/Berlin", "IL") == utc("2026-10-25T00:30Z")


def test_second_pass_of_repeated_hour_keeps_wall_time():
    # Sun 2026-10-25 01:30 IST (the second 01:30) -> Thu 2026-10-22 01:30 IDT
    assert deadline("2026-10-24T23:30Z", "Asia/Jerusalem", "IL") == utc("2026-10-21T22:30Z")


@pytest.mark.parametrize(
    ("start", "tz", "country", "expected"),
    [
        # Berlin springs forward Sun 2026-03-29 02:00 -> 03:00: Mon 02:30 -> Sun 03:00 CEST
        ("2026-03-30T00:30Z", "Europe/Berlin", "IL", "2026-03-29T01:00Z"),
        # New York springs forward Sun 2026-03-08 02:00 -> 03:00: Mon 02:30 -> Sun 03:00 EDT
        ("2026-03-09T06:30Z", "America/New_York", "EG", "2026-03-08T07:00Z"),
        # Lord Howe springs forward 30 min, Sun 2026-10-04 02:00 -> 02:30 (+11)
        ("2026-10-04T15:15Z", "Australia/Lord_Howe", "IL", "2026-10-03T15:30Z"),
        # Cairo springs forward Fri 2024-04-26 00:00 -> 01:00: Saturday -> Fri 00:00 -> 01:00
        ("2024-04-27T12:00Z", "Africa/Cairo", None, "2024-04-25T22:00Z"),
    ],
)
def test_dst_gap_becomes_transition_instant(start: str, tz: str, country: str, expected: str):
    assert deadline(start, tz, country) == utc(expected)
    assert one_many(start, tz, country) == utc(expected)


def test_n_two():
    # Tue 09:00 -> Fri 09:00; Sat 02:00 -> Thu 00:00; Tue after Easter -> Wed 10:00
    assert deadline("2026-03-10T08:00Z", "Europe/Berlin", "DE", n=2) == utc("2026-03-06T08:00Z")
    assert deadline("2026-03-14T01:00Z", "Europe/Berlin", "DE", n=2) == utc("2026-03-11T23:00Z")
    assert deadline("2026-04-07T08:00Z", "Europe/Berlin", "DE", n=2) == utc("2026-04-01T08:00Z")
    assert one_many("2026-04-07T08:00Z", "Europe/Berlin", "DE", n=2) == utc("2026-04-01T08:00Z")


def test_microseconds_are_kept():
    t = datetime(2026, 3, 10, 8, 0, 5, 123456, tzinfo=UTC)
    assert business_days_before(t, 1, "Europe/Berlin", "DE") == t - timedelta(days=1)


@pytest.mark.parametrize("n", [0, -1])
def test_n_must_be_positive(n: int):
    with pytest.raises(ValueError, match="n must be >= 1"):
        business_days_before(utc("2026-03-10T08:00Z"), n, "UTC")
    with pytest.raises(ValueError, match="n must be >= 1"):
        business_days_before_many(np.array([0]), n, "UTC")


def test_bad_arguments():
    with pytest.raises(ValueError, match="timezone-aware"):
        business_days_before(datetime(2026, 3, 10), 1, "UTC")
    with pytest.raises(ValueError, match="time zone"):
        business_days_before(utc("2026-03-10T08:00Z"), 1, "Mars/Olympus")
    with pytest.raises(TypeError):
        business_days_before(utc("2026-03-10T08:00Z"), True, "UTC")
    with pytest.raises(TypeError):
        business_days_before_many(np.array([1.5]), 1, "UTC")


# --------------------------------------------------------------------------- validity, text


def test_holidays_version():
    assert holidays_version() == holidays.__version__


def test_validity_functions():
    assert is_valid_timezone("Europe/Berlin") and is_valid_timezone("UTC")
    assert not is_valid_timezone("europe/berlin")
    assert not is_valid_timezone("Mars/Olympus")
    assert not is_valid_timezone("")
    assert not is_valid_timezone("localtime")
    assert is_valid_country("DE") and is_valid_country("IL")
    assert not is_valid_country("de")
    assert not is_valid_country("UK")
    assert not is_valid_country("DEU")
    assert not is_valid_country("XX")
    assert is_valid_subdivision("DE", "BY")
    assert is_valid_subdivision("US", "CA")
    assert not is_valid_subdivision("DE", "CA")
    assert not is_valid_subdivision("XX", "BY")


def test_country_suggestions():
    assert country_suggestions("UK")[0] == "GB"
    assert country_suggestions("de") == ["DE"]
    assert country_suggestions("DEU") == ["DE"]
    assert country_suggestions("Germany") == ["DE"]
    assert all(is_valid_country(c) for c in country_suggestions("XX"))
    assert country_suggestions("") == []


def test_format_local():
    assert format_local(utc("2026-03-09T01:00Z"), "Europe/Berlin") == "Mon 2026-03-09 02:00 CET"
    assert format_local(utc("2026-03-09T01:00:30Z"), "UTC") == "Mon 2026-03-09 01:00:30 UTC"


def test_explain_deadline_weekend():
    text = explain_deadline(utc("2026-03-09T01:00Z"), 1, "Europe/Berlin", "DE")
    assert text == (
        "1 business day before Mon 2026-03-09 02:00 CET = Fri 2026-03-06 02:00 CET"
        " (Sat 2026-03-07, Sun 2026-03-08 not business days)"
    )


def test_explain_deadline_names_holidays():
    text = explain_deadline(utc("2026-04-07T08:00Z"), 1, "Europe/Berlin", "DE")
    assert text == (
        "1 business day before Tue 2026-04-07 10:00 CEST = Thu 2026-04-02 10:00 CEST"
        " (Fri 2026-04-03 Good Friday, Sat 2026-04-04, Sun 2026-04-05,"
        " Mon 2026-04-06 Easter Monday not business days)"
    )


def test_explain_deadline_non_business_start_and_no_skips():
    text = explain_deadline(utc("2026-03-14T01:00Z"), 1, "Europe/Berlin", "DE")
    assert text.endswith("= Fri 2026-03-13 00:00 CET (Sat 2026-03-14 not a business day)")
    text = explain_deadline(utc("2026-03-10T08:00Z"), 1, "Europe/Berlin", "DE")
    assert text == "1 business day before Tue 2026-03-10 09:00 CET = Mon 2026-03-09 09:00 CET"


def test_explain_deadline_truncates_long_lists():
    text = explain_deadline(utc("2026-03-30T07:00Z"), 15, "Europe/Berlin", "DE")
    assert text.startswith("15 business days before Mon 2026-03-30 09:00 CEST = Mon 2026-03-09")
    assert text.endswith("Sat 2026-03-28, ... not business days)")
    assert text.count("2026-03-") == 2 + 5


# --------------------------------------------------------------------------- vectorised


PAIRS = [
    ("America/New_York", "US", None),
    ("America/Los_Angeles", "US", "CA"),
    ("America/Sao_Paulo", "BR", None),
    ("America/Santiago", "CL", None),
    ("America/Havana", "CU", None),
    ("America/St_Johns", "CA", "NL"),
    ("Europe/Berlin", "DE", "BY"),
    ("Europe/London", "GB", None),
    ("Europe/Paris", "FR", None),
    ("Europe/Moscow", "RU", None),
    ("Europe/Berlin", "IL", None),
    ("Africa/Cairo", "EG", None),
    ("Africa/Cairo", None, None),
    ("Asia/Jerusalem", "IL", None),
    ("Asia/Riyadh", "SA", None),
    ("Asia/Kolkata", "IN", None),
    ("Asia/Kathmandu", None, None),
    ("Asia/Tokyo", "JP", None),
    ("Asia/Shanghai", "CN", None),
    ("Australia/Lord_Howe", "AU", "NSW"),
    ("Australia/Lord_Howe", "EG", None),
    ("Pacific/Chatham", "NZ", None),
    ("Pacific/Chatham", "IL", None),
    ("UTC", None, None),
    ("America/New_York", "IL", None),
]


def _random_instants(rng: np.random.Generator, tz: str, count: int) -> np.ndarray:
    """Uniform instants in 2018-2032, plus instants 0-9 days after each offset change
    (with jitter), so that deadlines fall into gaps and repeated hours."""
    lo, hi = int(utc("2018-01-01T00:00Z").timestamp()), int(utc("2032-01-01T00:00Z").timestamp())
    uniform = rng.integers(lo, hi, count)
    changes = np.array([t for y in range(2018, 2032) for t, _ in _zone_year(tz, y)[1]], dtype=int)
    if not changes.size:
        return uniform
    near = rng.choice(changes, count) + rng.integers(0, 10, count) * 86_400
    near += rng.integers(-3, 4, count) * 1800 + rng.integers(-1, 2, count)
    return np.concatenate([uniform, near])


@pytest.mark.parametrize(("tz", "country", "sub"), PAIRS)
def test_many_equals_scalar(tz: str, country: str | None, sub: str | None):
    rng = np.random.default_rng(zlib.crc32(f"{tz} {country}".encode()))
    ts = _random_instants(rng, tz, 80)
    for n in (1, 2, 7):
        got = business_days_before_many(ts, n, tz, country, sub)
        want = [
            int(
                business_days_before(
                    datetime.fromtimestamp(int(t), UTC), n, tz, country, sub
                ).timestamp()
            )
            for t in ts
        ]
        assert got.dtype == np.int64
        assert got.tolist() == want


def test_many_keeps_shape_and_handles_empty():
    ts = np.array([[1773043200, 1773129600], [1773216000, 1773302400]], dtype=np.int64)
    out = business_days_before_many(ts, 1, "Europe/Berlin", "DE")
    assert out.shape == (2, 2)
    assert business_days_before_many(np.array([], dtype=np.int64), 1, "UTC").shape == (0,)


def test_the_countries_accepted_are_those_holidays_lists() -> None:
    from forewarn.calendar.business import _countries

    listed = {code for code in holidays.list_supported_countries(include_aliases=False) if len(code) == 2}
    assert _countries() == listed and "DE" in listed
