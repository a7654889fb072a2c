"""Business days and "N business days before t" deadlines (policy.md, section "Business days")."""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache, lru_cache
from zoneinfo import ZoneInfo, available_timezones

import holidays
import numpy as np
from holidays.registry import COUNTRIES

__all__ = [
    "BusinessCalendar",
    "business_days_before",
    "business_days_before_many",
    "calendar_for",
    "country_suggestions",
    "explain_deadline",
    "format_local",
    "holidays_version",
    "is_valid_country",
    "is_valid_subdivision",
    "is_valid_timezone",
]

DAY = 86_400
MIN_YEAR = 1900  # instants must lie in [MIN_YEAR-01-01, MAX_YEAR-01-01) UTC
MAX_YEAR = 2200
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_NO_COUNTRY_WEEKEND = frozenset({5, 6})  # Saturday, Sunday
_PROBE_STEP = 6 * 3600  # UTC offsets change at most once per probe step (tzdata: >= 6 days)
_NOT_IANA = frozenset({"localtime", "posixrules", "Factory"})
_COUNTRY_ALIASES = {"UK": "GB", "EL": "GR"}
_MAX_LISTED = 5


# --------------------------------------------------------------------------- versions, validity


def holidays_version() -> str:
    """Version of the installed `holidays` library (audit reports record it)."""
    return str(holidays.__version__)


@cache
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_IANA


def is_valid_timezone(name: str) -> bool:
    """True if `name` is an IANA time zone name known to zoneinfo."""
    return isinstance(name, str) and name in _timezones()


@cache
def _countries() -> frozenset[str]:
    # The registry's codes, as holidays.list_supported_countries gives them without loading every country's
    # class to list its subdivisions (a tenth of a second in every process that reads a calendar).
    from holidays.registry import EntityLoader

    codes = EntityLoader.get_country_codes(include_aliases=False)
    return frozenset(code for code in codes if len(code) == 2)


def is_valid_country(code: str) -> bool:
    """True if `code` is an ISO 3166-1 alpha-2 code (upper case) supported by `holidays`."""
    return isinstance(code, str) and code in _countries()


@cache
def _entity_class(country: str) -> type[holidays.HolidayBase]:
    return type(holidays.country_holidays(country))


@cache
def _subdivisions(country: str) -> frozenset[str]:
    cls = _entity_class(country)
    parent = cls.parent_entity
    codes = (*cls.subdivisions, *cls.subdivisions_aliases, *(parent.subdivisions if parent else ()))
    return frozenset(codes)


def is_valid_subdivision(country: str, subdivision: str) -> bool:
    """True if `subdivision` (code or the library's alias) is a subdivision of `country`."""
    return (
        is_valid_country(country)
        and isinstance(subdivision, str)
        and subdivision in _subdivisions(country)
    )


@cache
def _country_names() -> dict[str, str]:
    """Normalised English country name -> alpha-2 code."""
    return {key.replace("_", ""): entry[1] for key, entry in COUNTRIES.items()}


def _alias_target(code: str) -> str | None:
    if code in _COUNTRY_ALIASES:
        return _COUNTRY_ALIASES[code]
    if code in holidays.list_supported_countries(include_aliases=True):
        target = getattr(_entity_class(code), "country", None)
        return target if isinstance(target, str) and is_valid_country(target) else None
    return None


def country_suggestions(code: str) -> list[str]:
    """Close valid alpha-2 codes for an invalid country `code` (for error messages)."""
    if not isinstance(code, str) or not code.strip():
        return []
    upper = code.strip().upper()
    found: list[str] = []
    if is_valid_country(upper):
        found.append(upper)
    if alias := _alias_target(upper):
        found.append(alias)
    name = "".join(ch for ch in code.lower() if ch.isalpha())
    names = _country_names()
    found += [names[m] for m in difflib.get_close_matches(name, names, n=2, cutoff=0.8)]
    if not found and len(upper) == 2:
        found += difflib.get_close_matches(upper, sorted(_countries()), n=3, cutoff=0.5)
    return [c for c in dict.fromkeys(found) if c != code][:5]


# --------------------------------------------------------------------------- calendars


@dataclass(frozen=True, eq=False)
class _Year:
    """One calendar year of one calendar: its non-business days and business days."""

    nonbusiness: dict[date, str]  # date -> reason ("Saturday", "Good Friday", ...)
    bdays: np.ndarray  # sorted epoch-day numbers (int64) of the year's business days


def _language(country: str) -> str | None:
    cls = _entity_class(country)
    return "en_US" if "en_US" in cls.supported_languages else cls.default_language


@lru_cache(maxsize=4096)
def _holidays_for(country: str, subdivision: str | None, year: int) -> holidays.HolidayBase:
    """The library's calendar for one year (default categories, observed days included)."""
    with warnings.catch_warnings():  # "available only from ... to ...": none outside
        warnings.simplefilter("ignore", UserWarning)
        return holidays.country_holidays(
            country, subdiv=subdivision, years=year, expand=False, language=_language(country)
        )


def _days_of(year: int) -> Iterator[date]:
    d, end = date(year, 1, 1), date(year + 1, 1, 1)
    while d < end:
        yield d
        d += timedelta(days=1)


def _weekdays_only(year: int) -> dict[date, str]:
    return {d: _WEEKDAYS[d.weekday()] for d in _days_of(year) if d.weekday() in _NO_COUNTRY_WEEKEND}


def _country_nonbusiness(country: str, subdivision: str | None, year: int) -> dict[date, str]:
    """Mirror of HolidayBase.is_working_day, also seeing holidays that a neighbouring
    year's population places in `year` (observed or substituted days across New Year)."""
    here = _holidays_for(country, subdivision, year)
    near = [here, _holidays_for(country, subdivision, year - 1)]
    near.append(_holidays_for(country, subdivision, year + 1))
    weekend_workdays = set().union(*(h.weekend_workdays for h in near))
    out: dict[date, str] = {}
    for d in _days_of(year):
        name = next((h[d] for h in near if d in h), None)
        if here.is_weekend(d):
            if d not in weekend_workdays:
                out[d] = name or _WEEKDAYS[d.weekday()]
        elif name:
            out[d] = name
    return out


@lru_cache(maxsize=4096)
def _year(country: str | None, subdivision: str | None, year: int) -> _Year:
    nonbusiness = _weekdays_only(year) if country is None else _country_nonbusiness(country, subdivision, year)
    days = [d.toordinal() - _EPOCH_ORDINAL for d in _days_of(year) if d not in nonbusiness]
    return _Year(nonbusiness, np.array(days, dtype=np.int64))


@dataclass(frozen=True)
class BusinessCalendar:
    """Working days of a country (+ subdivision); Monday-Friday without a country.

    A day is a business day iff `holidays`' own `is_working_day` says so: not in the
    country's weekend (its `weekend` attribute, date-dependent where the library says so)
    unless it is a weekend day made a working day, and not a public holiday (default
    categories, observed days included).
    """

    country: str | None = None
    subdivision: str | None = None

    def __post_init__(self) -> None:
        _check_calendar(self.country, self.subdivision)

    def is_business_day(self, d: date) -> bool:
        """True if local calendar day `d` is a working day."""
        return _as_date(d) not in self._year(d).nonbusiness

    def why_not_business(self, d: date) -> str | None:
        """None for a business day, else why not: "Saturday", "Good Friday", ..."""
        return self._year(d).nonbusiness.get(_as_date(d))

    def business_day_before(self, d: date, n: int = 1) -> date:
        """The n-th business day strictly before `d` (n >= 1)."""
        _check_n(n)
        d = _as_date(d)
        while n:
            d -= timedelta(days=1)
            n -= self.is_business_day(d)
        return d

    def _year(self, d: date) -> _Year:
        return _year(self.country, self.subdivision, d.year)


def _as_date(d: date) -> date:
    if isinstance(d, datetime) or not isinstance(d, date):
        raise TypeError(f"expected a local calendar date, got {type(d).__name__}")
    return d


def _check_calendar(country: str | None, subdivision: str | None) -> None:
    if country is None:
        if subdivision is not None:
            raise ValueError(f"subdivision {subdivision!r} given without a country")
        return
    if not is_valid_country(country):
        hint = country_suggestions(country)
        extra = f" (did you mean {', '.join(hint)}?)" if hint else ""
        raise ValueError(f"unknown country code {country!r}{extra}")
    if subdivision is not None and not is_valid_subdivision(country, subdivision):
        known = ", ".join(sorted(_entity_class(country).subdivisions)) or "none"
        raise ValueError(f"unknown subdivision {subdivision!r} of {country} (known: {known})")


@lru_cache(maxsize=1024)
def calendar_for(country: str | None, subdivision: str | None = None) -> BusinessCalendar:
    """The (cached) calendar of a country and subdivision; ValueError if unknown."""
    return BusinessCalendar(country, subdivision)


# --------------------------------------------------------------------------- scalar deadline


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1 business day, got {n}")


@cache
def _zone(tz: str) -> ZoneInfo:
    """The zone, kept: zoneinfo's own strong cache holds only 8 zones."""
    if not is_valid_timezone(tz):
        raise ValueError(f"unknown time zone {tz!r}")
    return ZoneInfo(tz)


def _check_instant(t: datetime) -> None:
    if not isinstance(t, datetime) or t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"t must be a timezone-aware datetime, got {t!r}")
    if not MIN_YEAR <= t.astimezone(UTC).year < MAX_YEAR:
        raise ValueError(f"t must lie in the years {MIN_YEAR}-{MAX_YEAR - 1}, got {t}")


def _local_wall(ts: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ts, zone).replace(tzinfo=None)


def _gap_end(naive: datetime, zone: ZoneInfo) -> datetime:
    """The transition instant of the DST gap that `naive` (a nonexistent local time) lies in."""
    before = naive.replace(tzinfo=zone, fold=1).timestamp()  # read with the later offset
    after = naive.replace(tzinfo=zone, fold=0).timestamp()  # read with the earlier offset
    lo, hi = math.floor(min(before, after)), math.ceil(max(before, after))
    while hi - lo > 1:  # invariant: wall(lo) < naive <= wall(hi)
        mid = (lo + hi) // 2
        if _local_wall(mid, zone) >= naive:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _first_instant(naive: datetime, zone: ZoneInfo) -> datetime:
    """Step 4: the first instant at which the local clock reads `naive` or later (UTC)."""
    naive = naive.replace(fold=0)
    guess = naive.replace(tzinfo=zone).astimezone(UTC)  # fold=0: earlier of two readings
    if guess.astimezone(zone).replace(tzinfo=None) == naive:
        return guess
    return _gap_end(naive, zone)


def _deadline_wall(cal: BusinessCalendar, local: datetime, n: int) -> datetime:
    """Steps 2-3: the deadline as a naive local date-time."""
    day = local.date()
    target = cal.business_day_before(day, n)
    wall = local.time().replace(fold=0) if cal.is_business_day(day) else time(0)
    return datetime.combine(target, wall)


def business_days_before(
    t: datetime, n: int, tz: str, country: str | None = None, subdivision: str | None = None
) -> datetime:
    """The instant `n` business days before `t` (aware), in UTC, per policy.md steps 1-4.

    `n` must be >= 1 (ValueError otherwise): "0 business days before" has no use in the
    policy and no single sensible meaning for a non-business t.
    """
    _check_n(n)
    _check_instant(t)
    zone = _zone(tz)
    cal = calendar_for(country, subdivision)
    return _first_instant(_deadline_wall(cal, t.astimezone(zone), n), zone)


# --------------------------------------------------------------------------- zone tables


def _year_start(year: int) -> int:
    return (date(year, 1, 1).toordinal() - _EPOCH_ORDINAL) * DAY


def _offset(zone: ZoneInfo, ts: int) -> int:
    delta = datetime.fromtimestamp(ts, zone).utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0


def _change_at(zone: ZoneInfo, lo: int, hi: int) -> int:
    """First second in (lo, hi] whose offset differs from lo's (exactly one change)."""
    base = _offset(zone, lo)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(zone, mid) == base:
            lo = mid
        else:
            hi = mid
    return hi


@lru_cache(maxsize=8192)
def _zone_year(tz: str, year: int) -> tuple[int, tuple[tuple[int, int], ...]]:
    """Offset at the year's first UTC second, and the (instant, new offset) changes in
    (start, next year's start], found by probing zoneinfo."""
    zone = ZoneInfo(tz)
    start, end = _year_start(year), _year_start(year + 1)
    first = prev_off = _offset(zone, start)
    changes: list[tuple[int, int]] = []
    prev = start
    for probe in [*range(start + _PROBE_STEP, end, _PROBE_STEP), end]:
        off = _offset(zone, probe)
        if off != prev_off:
            changes.append((_change_at(zone, prev, probe), off))
            prev_off = off
        prev = probe
    return first, tuple(changes)


@dataclass(frozen=True, eq=False)
class _ZoneTable:
    """UTC-offset segments of one zone over a range of years."""

    starts: np.ndarray  # segment k starts at starts[k] (UTC; starts[0] is -inf)
    offsets: np.ndarray  # UTC offset of segment k
    local_ends: np.ndarray  # local reading at which segment k ends (last is +inf)

    def utc_offsets(self, ts: np.ndarray) -> np.ndarray:
        return self.offsets[np.searchsorted(self.starts[1:], ts, side="right")]

    def first_instants(self, local: np.ndarray) -> np.ndarray:
        """Step 4 for local readings (seconds): first instant reading `local` or later."""
        k = np.searchsorted(self.local_ends, local, side="right")
        return np.maximum(local - self.offsets[k], self.starts[k])


@lru_cache(maxsize=1024)
def _zone_table(tz: str, first_year: int, last_year: int) -> _ZoneTable:
    initial, _ = _zone_year(tz, first_year)
    changes = [c for y in range(first_year, last_year + 1) for c in _zone_year(tz, y)[1]]
    big = np.iinfo(np.int64)
    starts = np.array([big.min] + [t for t, _ in changes], dtype=np.int64)
    offsets = np.array([initial] + [o for _, o in changes], dtype=np.int64)
    ends = np.append(starts[1:] + offsets[:-1], big.max)
    if np.any(np.diff(ends) <= 0):  # pragma: no cover - impossible with tzdata since 1970
        raise ValueError(f"time zone {tz}: overlapping offset changes")
    return _ZoneTable(starts, offsets, ends)


# --------------------------------------------------------------------------- vectorised deadline


def _utc_year(ts: int) -> int:
    return datetime.fromtimestamp(ts, UTC).year


def _day_year(day: int) -> int:
    return date.fromordinal(int(day) + _EPOCH_ORDINAL).year


@lru_cache(maxsize=256)
def _bdays(cal: BusinessCalendar, first_year: int, last_year: int) -> np.ndarray:
    years = range(first_year, last_year + 1)
    return np.concatenate([_year(cal.country, cal.subdivision, y).bdays for y in years])


def _step_back(cal: BusinessCalendar, day: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per local day: the n-th business day strictly before it, and whether it is one."""
    last = _day_year(day.max())
    first = _day_year(day.min()) - 1 - n // 200
    while True:
        bdays = _bdays(cal, first, last)
        idx = np.searchsorted(bdays, day)  # = number of business days before `day`
        if bdays.size and idx.min() >= n:
            break
        first -= 1 + n // 200
        if first < MIN_YEAR - 100:
            raise ValueError(f"fewer than {n} business days before the given instants")
    is_business = bdays[np.minimum(idx, bdays.size - 1)] == day
    return bdays[idx - n], is_business


def _check_many(ts: np.ndarray) -> None:
    if ts.dtype.kind not in "iu":
        raise TypeError(f"ts must hold integer epoch seconds, got dtype {ts.dtype}")
    if ts.size and (ts.min() < _year_start(MIN_YEAR) or ts.max() >= _year_start(MAX_YEAR)):
        raise ValueError(f"instants must lie in the years {MIN_YEAR}-{MAX_YEAR - 1}")


def _deadlines(ts: np.ndarray, n: int, tz: str, cal: BusinessCalendar) -> np.ndarray:
    lo, hi = _utc_year(int(ts.min())) - 1, _utc_year(int(ts.max())) + 1
    local = ts + _zone_table(tz, lo, hi).utc_offsets(ts)
    day = local // DAY
    target, is_business = _step_back(cal, day, n)
    wall = np.where(is_business, local - day * DAY, 0)
    lo = min(lo, _day_year(target.min()) - 1)
    return _zone_table(tz, lo, hi).first_instants(target * DAY + wall)


def business_days_before_many(
    ts: np.ndarray, n: int, tz: str, country: str | None = None, subdivision: str | None = None
) -> np.ndarray:
    """Vectorised business_days_before: int64 epoch seconds (UTC) in and out, same results."""
    _check_n(n)
    _zone(tz)
    cal = calendar_for(country, subdivision)
    arr = np.asarray(ts)
    _check_many(arr)
    flat = arr.astype(np.int64, copy=False).ravel()
    if flat.size == 0:
        return np.empty(arr.shape, dtype=np.int64)
    return _deadlines(flat, int(n), tz, cal).reshape(arr.shape)


# --------------------------------------------------------------------------- human text


def format_local(t: datetime, tz: str) -> str:
    """`t` in zone `tz` as "Mon 2026-03-09 02:00 CET" (seconds shown only when non-zero)."""
    _check_instant(t)
    local = t.astimezone(_zone(tz))
    clock = f"{local:%H:%M:%S}" if local.second or local.microsecond else f"{local:%H:%M}"
    return f"{_WEEKDAYS[local.weekday()][:3]} {local.date().isoformat()} {clock} {local.tzname()}"


def _skipped(cal: BusinessCalendar, after: date, upto: date) -> list[date]:
    """Non-business days in (after, upto], at most _MAX_LISTED + 1 of them."""
    out: list[date] = []
    d = after + timedelta(days=1)
    while d <= upto and len(out) <= _MAX_LISTED:
        if not cal.is_business_day(d):
            out.append(d)
        d += timedelta(days=1)
    return out


def _describe_day(cal: BusinessCalendar, d: date) -> str:
    label = f"{_WEEKDAYS[d.weekday()][:3]} {d.isoformat()}"
    reason = cal.why_not_business(d)
    return label if reason in (None, _WEEKDAYS[d.weekday()]) else f"{label} {reason}"


def _skipped_note(cal: BusinessCalendar, days: list[date]) -> str:
    if not days:
        return ""
    listed = [_describe_day(cal, d) for d in days[:_MAX_LISTED]]
    if len(days) > _MAX_LISTED:
        listed.append("...")
    verb = "not a business day" if len(days) == 1 else "not business days"
    return f" ({', '.join(listed)} {verb})"


def explain_deadline(
    t: datetime, n: int, tz: str, country: str | None = None, subdivision: str | None = None
) -> str:
    """Human text: "1 business day before <t> = <deadline> (<skipped days> not business days)"."""
    deadline = business_days_before(t, n, tz, country, subdivision)
    cal = calendar_for(country, subdivision)
    zone = _zone(tz)
    start = t.astimezone(zone).date()
    end = cal.business_day_before(start, n)
    unit = "business day" if n == 1 else "business days"
    head = f"{n} {unit} before {format_local(t, tz)} = {format_local(deadline, tz)}"
    return head + _skipped_note(cal, _skipped(cal, end, start))
