"""The shared aggregation: every finding in one case, bulk counts equal to case-by-case counts."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_report_support import QUARTER_START, audit_file, quarter_path, quarter_result

from forewarn.audit.findings import AuditResult
from forewarn.audit.formats import stats
from forewarn.calendar import business_days_before


def _case_counts(result: AuditResult, key) -> Counter:
    return Counter((key(c), c.status) for c in stats.iter_cases(result) if key(c) is not None)


def _group_counts(groups: list[stats.Group]) -> Counter:
    return Counter({(g.key, s): getattr(g.tally, s) for g in groups for s in stats.STATUSES if getattr(g.tally, s)})


PERIODS = [
    (QUARTER_START, datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 8, tzinfo=UTC)),
    (None, None, datetime(2026, 8, 15, 12, tzinfo=UTC)),  # as of mid-quarter: pending cases
    (datetime(2026, 7, 14, tzinfo=UTC), None, datetime(2026, 9, 3, tzinfo=UTC)),
]


@pytest.mark.parametrize(("since", "until", "as_of"), PERIODS)
def test_bulk_counts_equal_the_case_by_case_counts(since, until, as_of) -> None:
    result = audit_file(quarter_path(), as_of, since, until)
    report = stats.build(result)
    month = lambda c: stats.month_name((c.due.year, c.due.month))  # noqa: E731
    assert _group_counts([g for _r, g in report.rules]) == _case_counts(result, lambda c: c.rule)
    assert _group_counts(report.months) == _case_counts(result, month)
    assert _group_counts(report.customers) == _case_counts(result, lambda c: c.customer)
    assert _group_counts(report.subjects) == _case_counts(result, lambda c: c.about)
    assert report.kinds == Counter(c.kind for c in stats.iter_cases(result))


@pytest.mark.parametrize(("since", "until", "as_of"), PERIODS)
def test_every_finding_belongs_to_exactly_one_case(since, until, as_of) -> None:
    result = audit_file(quarter_path(), as_of, since, until)
    claimed = [f for c in stats.iter_cases(result) for f in c.findings]
    assert sorted(claimed, key=lambda f: f.sort_key()) == result.findings
    flagged = [f for c in stats.build(result).flagged for f in c.findings]
    assert sorted(flagged, key=lambda f: f.sort_key()) == result.findings


def test_obligation_cases_agree_with_the_json_summary() -> None:
    result = quarter_result()
    s = result.summary
    cases = [c for c in stats.iter_cases(result) if c.kind == "obligation"]
    by_status = Counter(c.status for c in cases)
    assert len(cases) == s.obligations
    assert (by_status["met"], by_status["pending"]) == (s.met, s.pending)
    assert by_status["violated"] + by_status["waived"] == s.violated + s.waived


def test_the_quarter_has_every_kind_of_case_and_finding() -> None:
    report = stats.build(quarter_result())
    assert report.kinds["obligation"] > 300 and report.kinds["check"] > 1000
    assert report.total.tally.waived >= 1 and report.total.tally.violated >= 20
    assert {s for s, n in report.total.violations.items() if n} >= {"high", "medium"}
    assert len(report.months) == 3  # July, August, September


def test_a_case_with_findings_is_waived_only_if_all_are() -> None:
    for case in stats.iter_cases(quarter_result()):
        if case.findings:
            all_waived = all(f.status == "waived" for f in case.findings)
            assert case.status == ("waived" if all_waived else "violated")


def test_rate_excludes_waived_and_pending() -> None:
    t = stats.Tally(met=9, violated=1, waived=5, pending=7)
    assert t.rate == pytest.approx(90.0) and t.cases == 22 and t.judged == 10
    assert stats.Tally().rate is None and stats.rate_text(None) == "-"


@pytest.mark.parametrize(
    ("start", "tz", "country"),
    [
        ("2026-03-10T08:00:00+00:00", "Europe/Berlin", "DE"),
        ("2026-03-14T01:00:00+00:00", "Europe/Berlin", "DE"),  # a Saturday
        ("2026-04-07T08:00:00+00:00", "Europe/Berlin", "DE"),  # after Easter
        ("2026-03-09T06:00:00+00:00", "America/New_York", "US"),  # DST began the day before
        ("2026-03-09T06:00:00+00:00", "UTC", None),
    ],
)
def test_business_time_is_one_day_exactly_at_the_deadline(start: str, tz: str, country) -> None:
    t = datetime.fromisoformat(start)
    deadline = business_days_before(t, 1, tz, country)
    assert stats.business_time(deadline, t, tz, country, None) >= 1.0
    later = deadline + timedelta(minutes=30)
    assert stats.business_time(later, t, tz, country, None) < 1.0
    assert stats.business_time(t, deadline, tz, country, None) <= -1.0


def test_period_text_names_the_bounds() -> None:
    result = quarter_result()
    assert stats.period_text(result) == ("due from 2026-07-01T00:00:00Z to 2026-10-01T00:00:00Z (exclusive)")


def test_lead_times_cover_every_judged_advance_notice() -> None:
    report = stats.build(quarter_result())
    leads = stats.lead_times(report)
    n, values = leads["advance-notice"]
    rule = next(g for r, g in report.rules if r.id == "advance-notice")
    assert n == 1 and len(values) == rule.tally.met + rule.tally.violated + rule.tally.waived
    met = [m for group in report.timed if group.rule == "advance-notice" for m in group.met.tolist()]
    met_leads = [v for v, m in zip(values.tolist(), met, strict=True) if m]
    assert met_leads and all(v >= 1.0 - 1e-9 for v in met_leads)


def _us(t: datetime) -> int:
    return (t - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def test_bulk_business_times_equal_one_by_one() -> None:
    report = stats.build(quarter_result())
    groups: dict = {}
    for leads in report.timed:
        where = (leads.timezone, leads.country, leads.subdivision)
        pairs = zip(leads.sent_us[leads.sent].tolist(), leads.anchor_us[leads.sent].tolist(), strict=True)
        groups.setdefault(where, []).extend(pairs)
    backwards = [(datetime(2026, 3, 9, 7, tzinfo=UTC), datetime(2026, 3, 6, 1, tzinfo=UTC))]
    # across both of Berlin's changes of offset, to the second (a local date and time of day each way)
    changes = [
        (datetime(2026, 3, 29, 0, 59, 59, 999_999, tzinfo=UTC), datetime(2026, 3, 30, 9, tzinfo=UTC)),
        (datetime(2026, 3, 29, 1, 0, 0, tzinfo=UTC), datetime(2026, 3, 27, 23, 30, tzinfo=UTC)),
        (datetime(2026, 10, 25, 0, 59, 59, tzinfo=UTC), datetime(2026, 10, 25, 1, 0, 1, tzinfo=UTC)),
        (datetime(2026, 10, 24, 22, 0, 0, 1, tzinfo=UTC), datetime(2026, 10, 26, 23, 0, tzinfo=UTC)),
    ]
    groups.setdefault(("Europe/Berlin", "DE", None), []).extend((_us(a), _us(b)) for a, b in [*backwards, *changes])
    assert len(groups) >= 5
    for where, items in groups.items():
        a_us = np.array([a for a, _b in items], dtype=np.int64)
        b_us = np.array([b for _a, b in items], dtype=np.int64)
        bulk = stats.business_times(a_us, b_us, *where)
        one = [stats.business_time(_at(a), _at(b), *where, cap=1e9) for a, b in items]
        assert bulk.tolist() == pytest.approx(one), where


def _at(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


_CHANGES = [
    _us(datetime(y, m, d, h, tzinfo=UTC))
    for y, m, d, h in [
        (2026, 3, 29, 1),
        (2026, 10, 25, 1),
        (2026, 3, 8, 7),
        (2026, 11, 1, 6),
        (2026, 4, 4, 15),
        (2026, 10, 3, 16),
    ]
]
_DAY_US = 86_400_000_000


@given(
    st.lists(
        st.one_of(
            st.builds(int.__add__, st.sampled_from(_CHANGES), st.integers(-2 * _DAY_US, 2 * _DAY_US)),
            st.integers(_us(datetime(1990, 1, 1, tzinfo=UTC)), _us(datetime(2040, 1, 1, tzinfo=UTC))),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_local_seconds_are_astimezones(instants: list[int]) -> None:
    """Several instants of a day whose offset changes (Europe, North America, Lord Howe's half hour), and any."""
    for name in ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "UTC"):
        zone = ZoneInfo(name)
        wall = [
            (_at(us).astimezone(zone).replace(tzinfo=None) - datetime(1970, 1, 1)) // timedelta(seconds=1)
            for us in instants
        ]
        assert stats.local_seconds(np.array(instants, dtype=np.int64), zone).tolist() == wall, name
