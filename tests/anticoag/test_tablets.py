"""Warfarin tablet schedules (clinical reference §4, rev 2): properties over the UK and US strength sets.

Pure tests: no database.
"""

from __future__ import annotations

from decimal import Decimal
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anticoag.tablets import (
    UK_STRENGTHS,
    US_STRENGTHS,
    Tablets,
    change_percent,
    guardrail_bounds,
    weekly_schedule,
    within_guardrail,
)

TABLET_SETS = st.sampled_from(
    [
        Tablets(UK_STRENGTHS, halves_allowed=False),
        Tablets(UK_STRENGTHS, halves_allowed=True),
        Tablets(US_STRENGTHS, halves_allowed=False),
        Tablets(US_STRENGTHS, halves_allowed=True),
    ]
)
# Weekly doses as clinics write them: 0.5 mg steps up to 105 mg (15 mg a day), and odd values in tenths.
WEEKLY_DOSES = st.one_of(
    st.integers(min_value=1, max_value=210).map(lambda n: Decimal(n) / 2),
    st.integers(min_value=1, max_value=1050).map(lambda n: Decimal(n) / 10),
)


def _check(schedule, tablets: Tablets) -> None:
    days = schedule.days
    assert len(days) == 7
    assert [d.weekday for d in days] == list(range(7))
    # Each day's tablets make its dose, and the week makes the reported weekly dose.
    for day in days:
        assert sum((s * c for s, c in day.tablets), Decimal(0)) == day.dose_mg
        # Only stocked strengths; at most two a day; halves only when allowed, at most one per strength.
        strengths = [s for s, _ in day.tablets]
        assert set(strengths) <= set(tablets.strengths)
        assert len(strengths) == len(set(strengths)) <= 2
        for _, count in day.tablets:
            assert count > 0
            assert count % 1 in ({Decimal(0), Decimal("0.5")} if tablets.halves_allowed else {Decimal(0)})
    assert sum((d.dose_mg for d in days), Decimal(0)) == schedule.weekly_mg
    # The days differ by at most one step.
    doses = [d.dose_mg for d in days]
    assert max(doses) - min(doses) <= tablets.step
    # Larger days are spread: never two larger days in a row while a smaller day also has a smaller neighbour
    # would allow otherwise (with at most 3 larger days, none are adjacent).
    larger = [i for i, d in enumerate(doses) if d > min(doses)]
    if len(larger) <= 3:
        assert all(b - a > 1 for a, b in pairwise(larger))


@settings(max_examples=300, deadline=None)
@given(weekly=WEEKLY_DOSES, tablets=TABLET_SETS)
def test_schedule_properties(weekly: Decimal, tablets: Tablets) -> None:
    schedule = weekly_schedule(weekly_mg=weekly, tablets=tablets)
    _check(schedule, tablets)
    assert schedule.requested_mg == weekly
    assert schedule.difference_mg == schedule.weekly_mg - weekly
    # Nearest achievable: never further than one step a day from the request (there is always a week of
    # the same daily dose on each side within reach at these doses).
    assert abs(schedule.difference_mg) <= 7 * tablets.step


@settings(max_examples=200, deadline=None)
@given(steps=st.integers(min_value=1, max_value=140), tablets=TABLET_SETS)
def test_multiples_of_the_step_are_made_exactly_at_ordinary_doses(steps: int, tablets: Tablets) -> None:
    weekly = tablets.step * steps
    if weekly > 56:  # up to 8 mg a day, every multiple of the step is made with ≤ 2 strengths a day
        return
    schedule = weekly_schedule(weekly_mg=weekly, tablets=tablets)
    assert schedule.exact, schedule.as_dict()


@settings(max_examples=200, deadline=None)
@given(weekly=WEEKLY_DOSES, tablets=TABLET_SETS)
def test_nearest_is_nearest(weekly: Decimal, tablets: Tablets) -> None:
    """No achievable week is nearer: a week of the next steps up and down from the reported one is not."""
    schedule = weekly_schedule(weekly_mg=weekly, tablets=tablets)
    for other in (schedule.weekly_mg - tablets.step, schedule.weekly_mg + tablets.step):
        if other < 0:
            continue
        alternative = weekly_schedule(weekly_mg=other, tablets=tablets)
        if alternative.exact:
            assert abs(other - weekly) >= abs(schedule.difference_mg)


def test_the_issue_example_38_5_mg_with_5_mg_tablets_is_not_a_fraction_of_a_tablet() -> None:
    schedule = weekly_schedule(weekly_mg="38.5", tablets=Tablets(UK_STRENGTHS))
    assert schedule.exact
    assert {d.dose_mg for d in schedule.days} == {Decimal("5.5")}
    assert schedule.days[0].tablets == ((Decimal("5"), Decimal("1")), (Decimal("0.5"), Decimal("1")))


def test_only_5_mg_tablets_whole_gives_the_nearest_dose_and_the_difference() -> None:
    schedule = weekly_schedule(weekly_mg="38.5", tablets=Tablets((Decimal(5),)))
    assert schedule.weekly_mg == Decimal("40")  # 35 is 3.5 mg away, 40 is 1.5 mg away
    assert schedule.difference_mg == Decimal("1.5")
    assert sorted(d.dose_mg for d in schedule.days) == [5, 5, 5, 5, 5, 5, 10]


def test_with_halves_of_5_mg_the_dose_is_exact() -> None:
    schedule = weekly_schedule(weekly_mg="37.5", tablets=Tablets((Decimal(5),), halves_allowed=True))
    assert schedule.exact
    doses = [d.dose_mg for d in schedule.days]
    assert doses.count(Decimal("7.5")) == 1 and doses.count(Decimal("5")) == 6


def test_larger_days_spread_through_the_week() -> None:
    schedule = weekly_schedule(weekly_mg="31.5", tablets=Tablets(UK_STRENGTHS))  # 4.5 × 7 = 31.5: exact
    assert schedule.exact
    schedule = weekly_schedule(weekly_mg="29.5", tablets=Tablets(UK_STRENGTHS))  # 4 × 4 + 4.5 × 3
    larger = [d.weekday for d in schedule.days if d.dose_mg == Decimal("4.5")]
    assert larger == [2, 4, 6]  # Wednesday, Friday, Sunday


def test_guardrail() -> None:
    assert guardrail_bounds(current_mg="35", percent=20) == (Decimal("28.0"), Decimal("42.0"))
    assert within_guardrail(current_mg="35", new_mg="42", percent=20)
    assert not within_guardrail(current_mg="35", new_mg="42.5", percent=20)
    assert within_guardrail(current_mg=None, new_mg="80")
    assert change_percent(current_mg="35", new_mg="38.5") == Decimal("10.0")
    # Bounds keep the proposal inside the guardrail when the nearest dose would fall outside it.
    schedule = weekly_schedule(weekly_mg="43", tablets=Tablets((Decimal(5),)), lowest_mg="28", highest_mg="42")
    assert schedule.weekly_mg == Decimal("40")


def test_negative_dose_is_refused() -> None:
    with pytest.raises(ValueError):
        weekly_schedule(weekly_mg="-1", tablets=Tablets(UK_STRENGTHS))
    with pytest.raises(ValueError):
        Tablets(())
