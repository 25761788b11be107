"""Rosendaal TTR and the clinic quality indicators (clinical-reference.md §6). Pure tests: no database."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from anticoag.monitoring import InrPoint, clinic_ttr_summary, is_lost_to_follow_up, rosendaal_ttr

D0 = date(2026, 1, 5)


def readings(*pairs: tuple[float, float], start: date = D0) -> list[InrPoint]:
    """(day offset, INR) pairs → InrPoints on plain dates."""
    return [InrPoint(start + timedelta(days=day), inr) for day, inr in pairs]


WORKED_EXAMPLE = readings((0, 1.5), (10, 2.5), (20, 3.5), (30, 2.8))


def whole_day_ttr(pairs: list[tuple[int, float]], low: float, high: float) -> float:
    """The method the reference warns against: one interpolated value per whole day."""
    in_range = total = 0
    for (d0, v0), (d1, v1) in itertools.pairwise(pairs):
        for day in range(d0, d1):
            value = v0 + (v1 - v0) * (day - d0) / (d1 - d0)
            total += 1
            in_range += low <= round(value, 10) <= high
    return 100 * in_range / total


def test_worked_example_is_three_sevenths():
    # Given the reference's worked example, target 2.0-3.0
    # When TTR is computed on continuous time
    result = rosendaal_ttr(WORKED_EXAMPLE, 2.0, 3.0)
    # Then 5 + 5 + 20/7 days of 30 are in range: 3/7
    assert result.ttr_percent == pytest.approx(300 / 7)
    assert result.days_in_range == pytest.approx(5 + 5 + 20 / 7)
    assert result.days_total == pytest.approx(30)
    assert (result.intervals_used, result.intervals_skipped) == (3, 0)


def test_worked_example_is_not_whole_day_counting():
    # Given the whole-day method gives 43.33 % on the same data (the reference says so; we check it)
    whole_day = whole_day_ttr([(0, 1.5), (10, 2.5), (20, 3.5), (30, 2.8)], 2.0, 3.0)
    assert whole_day == pytest.approx(130 / 3)
    # When the product computes TTR
    result = rosendaal_ttr(WORKED_EXAMPLE, 2.0, 3.0)
    # Then it is not the whole-day figure
    assert result.ttr_percent != pytest.approx(whole_day, abs=0.01)
    assert round(result.ttr_percent, 3) == 42.857


def test_interval_of_57_days_counts_in_neither_numerator_nor_denominator():
    # Given an out-of-range reading, a 57-day gap, then 10 days in range
    points = readings((0, 1.0), (57, 2.5), (67, 2.5))
    # When TTR is computed with the default 56-day rule
    result = rosendaal_ttr(points, 2.0, 3.0)
    # Then the long interval is skipped entirely
    assert result.intervals_skipped == 1
    assert result.intervals_used == 1
    assert result.days_total == pytest.approx(10)
    assert result.ttr_percent == pytest.approx(100)


def test_interval_of_exactly_56_days_is_interpolated():
    # Given two readings exactly 56 days apart, rising 1.5 → 2.5
    result = rosendaal_ttr(readings((0, 1.5), (56, 2.5)), 2.0, 3.0)
    # Then the interval is used, half of it in range
    assert result.intervals_used == 1
    assert result.days_total == pytest.approx(56)
    assert result.ttr_percent == pytest.approx(50)


def test_56_days_and_one_second_is_too_long():
    # Given aware datetimes one second over the limit
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    points = [InrPoint(start, 2.5), InrPoint(start + timedelta(days=56, seconds=1), 2.5)]
    # Then nothing is interpolated and there is no TTR
    result = rosendaal_ttr(points, 2.0, 3.0)
    assert result.ttr_percent is None
    assert result.days_total == 0
    assert result.intervals_skipped == 1


def test_gap_limit_is_configurable():
    points = readings((0, 2.5), (70, 2.5))
    assert rosendaal_ttr(points, 2.0, 3.0).ttr_percent is None
    assert rosendaal_ttr(points, 2.0, 3.0, max_gap_days=90).ttr_percent == pytest.approx(100)


@pytest.mark.parametrize(
    ("inr", "inclusive", "expected"),
    [
        (3.0, True, 100.0),
        (3.0, False, 0.0),
        (2.0, True, 100.0),
        (2.0, False, 0.0),
        (2.5, False, 100.0),
        (3.5, True, 0.0),
    ],
)
def test_constant_inr_on_a_bound_depends_on_inclusiveness(inr, inclusive, expected):
    # Given a constant INR over 14 days
    points = readings((0, inr), (14, inr))
    # When TTR is computed with inclusive or exclusive bounds
    result = rosendaal_ttr(points, 2.0, 3.0, inclusive=inclusive)
    # Then only a value strictly inside (or on an inclusive bound) counts
    assert result.ttr_percent == pytest.approx(expected)


def test_changing_inr_touching_a_bound_is_the_same_inclusive_or_not():
    # A bound crossed by a changing INR is a single instant: it has no duration.
    points = readings((0, 1.5), (10, 2.5), (20, 3.5))
    assert rosendaal_ttr(points, 2.0, 3.0, inclusive=True).ttr_percent == pytest.approx(
        rosendaal_ttr(points, 2.0, 3.0, inclusive=False).ttr_percent
    )


def test_constant_interval_inside_a_series():
    # Given 1.5 → 2.5 (10 days, half in range), then 2.5 constant for 20 days
    result = rosendaal_ttr(readings((0, 1.5), (10, 2.5), (30, 2.5)), 2.0, 3.0)
    # Then 5 + 20 of 30 days are in range
    assert result.days_in_range == pytest.approx(25)
    assert result.ttr_percent == pytest.approx(250 / 3)


def test_single_reading_has_no_ttr():
    result = rosendaal_ttr(readings((0, 2.5)), 2.0, 3.0)
    assert result.ttr_percent is None
    assert (result.days_in_range, result.days_total, result.intervals_used) == (0, 0, 0)


def test_no_reading_has_no_ttr():
    assert rosendaal_ttr([], 2.0, 3.0).ttr_percent is None


def test_unsorted_input_gives_the_sorted_result():
    # Given every ordering of the worked example
    expected = rosendaal_ttr(WORKED_EXAMPLE, 2.0, 3.0)
    for ordering in itertools.permutations(WORKED_EXAMPLE):
        # Then the result is identical
        assert rosendaal_ttr(ordering, 2.0, 3.0) == expected


def test_same_day_readings_are_merged_as_their_mean_in_any_order():
    # Given two readings on the same date (same instant: midnight) and one ten days later
    first, second, later = InrPoint(D0, 1.0), InrPoint(D0, 2.0), InrPoint(D0 + timedelta(days=10), 2.5)
    # When TTR is computed in either order
    a = rosendaal_ttr([first, second, later], 2.0, 3.0)
    b = rosendaal_ttr([second, later, first], 2.0, 3.0)
    # Then the same-day pair counts once, as 1.5 (the mean): 1.5 → 2.5 is half in range,
    # and no zero-length interval is added
    assert a == b
    assert a.intervals_used == 1
    assert a.ttr_percent == pytest.approx(50)


def test_same_day_readings_at_different_times_are_separate_instants():
    # Given a morning point-of-care INR and an evening lab INR, 12 hours apart
    points = [
        InrPoint(datetime(2026, 1, 5, 8, 0, tzinfo=UTC), 1.5),
        InrPoint(datetime(2026, 1, 5, 20, 0, tzinfo=UTC), 2.5),
    ]
    result = rosendaal_ttr(points, 2.0, 3.0)
    # Then the half-day interval is interpolated: a quarter of a day in range
    assert result.days_total == pytest.approx(0.5)
    assert result.days_in_range == pytest.approx(0.25)


def test_two_readings_at_the_same_instant_are_one_usable_reading():
    moment = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    result = rosendaal_ttr([InrPoint(moment, 2.5), InrPoint(moment, 2.7)], 2.0, 3.0)
    assert result.ttr_percent is None


def test_datetimes_give_exact_fractions_of_a_day_across_time_zones():
    # Given 2026-01-05 00:00 at UTC+1 (= 2026-01-04 23:00 UTC) and 2026-01-06 12:00 UTC: 37 hours apart
    cet = timezone(timedelta(hours=1))
    points = [
        InrPoint(datetime(2026, 1, 5, 0, 0, tzinfo=cet), 1.0),
        InrPoint(datetime(2026, 1, 6, 12, 0, tzinfo=UTC), 3.0),
    ]
    # When TTR is computed
    result = rosendaal_ttr(points, 2.0, 3.0)
    # Then the interval is 37/24 days and the upper half of it is in range
    assert result.days_total == pytest.approx(37 / 24)
    assert result.days_in_range == pytest.approx(37 / 48)
    assert result.ttr_percent == pytest.approx(50)


def test_dates_and_datetimes_mix_with_dates_as_midnight_utc():
    points = [InrPoint(D0, 2.5), InrPoint(datetime(2026, 1, 5, 18, 0, tzinfo=UTC), 2.5)]
    assert rosendaal_ttr(points, 2.0, 3.0).days_total == pytest.approx(0.75)


def test_naive_datetime_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        InrPoint(datetime(2026, 1, 5, 8, 0), 2.5)


def test_target_low_must_be_below_high():
    with pytest.raises(ValueError, match="below"):
        rosendaal_ttr(WORKED_EXAMPLE, 3.0, 2.0)


def test_clinic_summary_median_and_share():
    # Given five patients, one without a computable TTR
    summary = clinic_ttr_summary([None, 50.0, 70.0, 80.0, 65.0])
    # Then the median is of the four TTRs and 3 of 4 (75 %) are at or above 65 %
    assert summary == {
        "median_ttr_percent": 67.5,
        "patients_with_ttr": 4,
        "patients_without_ttr": 1,
        "share_at_or_above_65_percent": 75.0,
        "median_meets_target": True,
    }


def test_clinic_summary_below_target_and_empty():
    assert clinic_ttr_summary([40.0, 60.0, 64.9])["median_meets_target"] is False
    empty = clinic_ttr_summary([None])
    assert empty["median_ttr_percent"] is None
    assert empty["share_at_or_above_65_percent"] is None
    assert empty["patients_with_ttr"] == 0


@pytest.mark.parametrize(
    ("last", "as_of", "lost"),
    [
        (date(2026, 1, 1), date(2026, 2, 26), False),  # exactly 56 days
        (date(2026, 1, 1), date(2026, 2, 27), True),  # 57 days
        (datetime(2026, 1, 1, 9, 0, tzinfo=UTC), datetime(2026, 2, 26, 9, 0, 1, tzinfo=UTC), True),
        (None, date(2026, 2, 1), True),
    ],
)
def test_lost_to_follow_up_after_more_than_56_days(last, as_of, lost):
    assert is_lost_to_follow_up(last, as_of) is lost
