"""Digest timing and escalation weeks: pure functions, no database, across daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from scheduling import calendar


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("tz_name", "on", "at", "expected_utc"),
    [
        # Paris: CET (+1) in winter, CEST (+2) in summer.
        ("Europe/Paris", date(2026, 1, 15), time(7), utc(2026, 1, 15, 6)),
        ("Europe/Paris", date(2026, 7, 15), time(7), utc(2026, 7, 15, 5)),
        # Spring forward, 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00 UTC.
        ("Europe/Paris", date(2026, 3, 28), time(7), utc(2026, 3, 28, 6)),
        ("Europe/Paris", date(2026, 3, 29), time(7), utc(2026, 3, 29, 5)),
        ("Europe/Paris", date(2026, 3, 29), time(2, 30), utc(2026, 3, 29, 1)),  # skipped: at 03:00 CEST
        ("Europe/Paris", date(2026, 3, 29), time(2, 0), utc(2026, 3, 29, 1)),  # skipped too (gap is [02:00, 03:00))
        ("Europe/Paris", date(2026, 3, 29), time(3, 0), utc(2026, 3, 29, 1)),
        ("Europe/Paris", date(2026, 3, 29), time(1, 59), utc(2026, 3, 29, 0, 59)),
        # Fall back, 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00 UTC; 02:30 happens twice.
        ("Europe/Paris", date(2026, 10, 25), time(7), utc(2026, 10, 25, 6)),
        ("Europe/Paris", date(2026, 10, 25), time(2, 30), utc(2026, 10, 25, 0, 30)),  # the first 02:30
        ("Europe/Paris", date(2026, 10, 24), time(7), utc(2026, 10, 24, 5)),
        # New York: spring forward 2026-03-08 at 02:00 EST (07:00 UTC), fall back 2026-11-01 at 02:00 EDT.
        ("America/New_York", date(2026, 3, 7), time(7), utc(2026, 3, 7, 12)),
        ("America/New_York", date(2026, 3, 8), time(7), utc(2026, 3, 8, 11)),
        ("America/New_York", date(2026, 3, 8), time(2, 30), utc(2026, 3, 8, 7)),  # skipped: at 03:00 EDT
        ("America/New_York", date(2026, 11, 1), time(1, 30), utc(2026, 11, 1, 5, 30)),  # the first 01:30 (EDT)
        ("America/New_York", date(2026, 11, 1), time(7), utc(2026, 11, 1, 12)),
        ("UTC", date(2026, 3, 29), time(7), utc(2026, 3, 29, 7)),
    ],
)
def test_local_moment_is_the_first_instant_the_wall_clock_reads_the_digest_time(tz_name, on, at, expected_utc):
    assert calendar.local_moment(on, at, tz_name) == expected_utc


@pytest.mark.parametrize(
    ("now", "tz_name", "at", "expected"),
    [
        # Summer Paris 07:00 is 05:00 UTC.
        (utc(2026, 7, 15, 4, 59, 59), "Europe/Paris", time(7), None),
        (utc(2026, 7, 15, 5, 0), "Europe/Paris", time(7), date(2026, 7, 15)),
        # Winter Paris 07:00 is 06:00 UTC: at 05:30 UTC it is not yet due.
        (utc(2026, 1, 15, 5, 30), "Europe/Paris", time(7), None),
        (utc(2026, 1, 15, 6, 0), "Europe/Paris", time(7), date(2026, 1, 15)),
        # Due until local midnight, which in Paris is 22:00 or 23:00 UTC of the day before.
        (utc(2026, 7, 15, 21, 59), "Europe/Paris", time(7), date(2026, 7, 15)),
        (utc(2026, 7, 15, 22, 0), "Europe/Paris", time(7), None),
        (utc(2026, 1, 15, 22, 59), "Europe/Paris", time(7), date(2026, 1, 15)),
        (utc(2026, 1, 15, 23, 0), "Europe/Paris", time(7), None),
        # Spring forward with the digest in the skipped hour: due from 03:00 CEST (01:00 UTC).
        (utc(2026, 3, 29, 0, 59, 59), "Europe/Paris", time(2, 30), None),
        (utc(2026, 3, 29, 1, 0), "Europe/Paris", time(2, 30), date(2026, 3, 29)),
        # The day after the change, 07:00 is 05:00 UTC (it was 06:00 UTC the day before).
        (utc(2026, 3, 28, 5, 30), "Europe/Paris", time(7), None),
        (utc(2026, 3, 30, 5, 30), "Europe/Paris", time(7), date(2026, 3, 30)),
        # Fall back with the digest in the repeated hour: due from the first 02:30 and still the same date
        # during the second one (so the per-date key sends it once).
        (utc(2026, 10, 25, 0, 29), "Europe/Paris", time(2, 30), None),
        (utc(2026, 10, 25, 0, 30), "Europe/Paris", time(2, 30), date(2026, 10, 25)),
        (utc(2026, 10, 25, 1, 30), "Europe/Paris", time(2, 30), date(2026, 10, 25)),
        (utc(2026, 10, 25, 5, 59), "Europe/Paris", time(7), None),
        (utc(2026, 10, 25, 6, 0), "Europe/Paris", time(7), date(2026, 10, 25)),
        (utc(2026, 3, 8, 6, 59), "America/New_York", time(2, 30), None),
        (utc(2026, 3, 8, 7, 0), "America/New_York", time(2, 30), date(2026, 3, 8)),
        (utc(2026, 11, 1, 11, 59), "America/New_York", time(7), None),
        (utc(2026, 11, 1, 12, 0), "America/New_York", time(7), date(2026, 11, 1)),
        # New York's evening is already tomorrow in UTC: the local date counts.
        (utc(2026, 11, 2, 3, 0), "America/New_York", time(7), date(2026, 11, 1)),
    ],
)
def test_digest_due_returns_the_local_date_once_its_digest_time_has_come(now, tz_name, at, expected):
    assert calendar.digest_due(now, tz_name, at) == expected


@pytest.mark.parametrize(
    ("tz_name", "day", "at"),
    [
        ("Europe/Paris", date(2026, 3, 29), time(2, 30)),
        ("Europe/Paris", date(2026, 10, 25), time(2, 30)),
        ("Europe/Paris", date(2026, 10, 25), time(7)),
        ("America/New_York", date(2026, 3, 8), time(2, 30)),
        ("America/New_York", date(2026, 11, 1), time(1, 30)),
    ],
)
def test_every_five_minutes_through_a_change_day_the_digest_becomes_due_exactly_once(tz_name, day, at):
    """Sweeping every 5 minutes over 30 hours: each local date switches from 'not due' to 'due' once."""
    start = datetime.combine(day - timedelta(days=1), time(12), tzinfo=UTC)
    first_due: dict[date, datetime] = {}
    previous = None
    for step in range(30 * 12):
        now = start + timedelta(minutes=5 * step)
        due = calendar.digest_due(now, tz_name, at)
        if due is not None and due != previous:
            assert due not in first_due, f"{due} became due twice"
            first_due[due] = now
        previous = due
    assert first_due[day] == calendar.local_moment(day, at, tz_name)


def test_digest_due_refuses_a_naive_datetime():
    with pytest.raises(ValueError, match="aware"):
        calendar.digest_due(datetime(2026, 1, 1, 7), "Europe/Paris", time(7))


def test_digest_window_sections():
    window = calendar.digest_window(date(2026, 11, 23))
    assert window.week_end == date(2026, 11, 30)
    assert window.section(date(2026, 11, 1)) == "overdue"
    assert window.section(date(2026, 11, 22)) == "overdue"
    assert window.section(date(2026, 11, 23)) == "today"
    assert window.section(date(2026, 11, 24)) == "week"
    assert window.section(date(2026, 11, 30)) == "week"
    assert window.section(date(2026, 12, 1)) is None


@pytest.mark.parametrize(
    ("overdue_days", "after_days", "week"),
    [
        (0, 7, 0),
        (7, 7, 0),
        (8, 7, 1),
        (14, 7, 1),
        (15, 7, 2),
        (21, 7, 2),
        (22, 7, 3),
        (4, 3, 1),
        (11, 3, 2),
        (-3, 7, 0),
    ],
)
def test_escalation_week_counts_weeks_from_the_threshold(overdue_days, after_days, week):
    due_on = date(2026, 6, 1)
    assert calendar.escalation_week(due_on, due_on + timedelta(days=overdue_days), after_days) == week
    # The cutoff agrees: an item escalates exactly when it is due before the cutoff.
    today = due_on + timedelta(days=overdue_days)
    assert (due_on < calendar.escalation_cutoff(today, after_days)) == (week > 0)


def test_retry_delay_doubles_up_to_the_cap():
    delays = [calendar.retry_delay(n, base_seconds=60, max_seconds=3600).total_seconds() for n in range(1, 10)]
    assert delays == [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
    assert calendar.retry_delay(1000, base_seconds=60, max_seconds=3600) == timedelta(hours=1)
