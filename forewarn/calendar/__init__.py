"""Business calendar: business days per country and "N business days before t" deadlines."""

from forewarn.calendar.business import (
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
