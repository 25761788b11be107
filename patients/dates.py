"""Date sanity for every clinical date, in one place (issue 13): births, diagnoses, draws, labs, doses, events.

A clinical date is not before 1 January of ``ANTICOAG_EARLIEST_CLINICAL_YEAR`` (default 1900: a typo such as
0001-01-01 or 1800-01-01 is refused) and, for facts that already happened, not in the future. The model
fields carry these validators, so the admin, the API and ``full_clean()`` refuse the same dates with the same
messages; the INR CSV import asks :func:`clinical_date_problem` row by row. ``manage.py clinical_dates_check``
lists rows stored before these checks existed.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

#: Clock skew allowed between the server and the device that timed a blood draw.
CLOCK_SKEW = timedelta(minutes=5)


def earliest_clinical_date() -> date:
    """The first day a clinical date may name (setting read at run time)."""
    return date(getattr(settings, "ANTICOAG_EARLIEST_CLINICAL_YEAR", 1900), 1, 1)


def earliest_clinical_moment() -> datetime:
    """Midnight UTC of :func:`earliest_clinical_date`, for date-times."""
    return datetime.combine(earliest_clinical_date(), datetime.min.time(), tzinfo=UTC)


def clinical_date_problem(value: date | datetime | None, *, may_be_future: bool = False) -> str | None:
    """Why ``value`` is not a plausible clinical date or date-time, or None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if timezone.is_naive(value):
            value = timezone.make_aware(value, UTC)
        if value < earliest_clinical_moment():
            return f"{value.date().isoformat()} is before {earliest_clinical_date().year}: check the year."
        if not may_be_future and value > timezone.now() + CLOCK_SKEW:
            return f"{value.isoformat(timespec='minutes')} is in the future."
        return None
    if value < earliest_clinical_date():
        return f"{value.isoformat()} is before {earliest_clinical_date().year}: check the year."
    if not may_be_future and value > timezone.localdate():
        return f"{value.isoformat()} is in the future."
    return None


def validate_clinical_date(value: date | datetime | None) -> None:
    """A fact that happened: not before the earliest clinical year, not in the future."""
    problem = clinical_date_problem(value)
    if problem:
        raise ValidationError(problem, code="date_out_of_range")


def validate_clinical_date_may_be_future(value: date | datetime | None) -> None:
    """A planned date (a dose that starts tomorrow, the next test): only the earliest clinical year applies."""
    problem = clinical_date_problem(value, may_be_future=True)
    if problem:
        raise ValidationError(problem, code="date_out_of_range")
