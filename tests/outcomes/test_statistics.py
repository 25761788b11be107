"""The report's pure arithmetic (outcomes.statistics) and the §7 definitions (outcomes.definitions), checked
against hand-computed and published values. No database."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from outcomes import definitions, statistics
from outcomes.definitions import BleedingFacts, classify_bleeding, overall_recanalization, symptomatic_ich

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module", ["outcomes.statistics", "outcomes.definitions"])
def test_the_pure_modules_load_no_django(module: str) -> None:
    # Given a fresh interpreter without Django settings
    code = f"import {module}, sys; print(sorted(m for m in sys.modules if m.startswith('django')))"
    # When it imports the module
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, env={"PATH": ""}
    )
    # Then no django module was loaded
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --- exact Poisson interval ---------------------------------------------------------------------------------


def test_zero_events_upper_bound_is_minus_log_of_0_025() -> None:
    low, high = statistics.poisson_ci(0)
    assert low == 0.0
    assert high == pytest.approx(-math.log(0.025), abs=1e-9)
    assert round(high, 3) == 3.689


# Published exact (Garwood) 95 % limits for a Poisson count (e.g. Ulm 1990, Am J Epidemiol 131:373; the
# standard table of chi-square/2 quantiles).
@pytest.mark.parametrize(
    ("events", "low", "high"),
    [
        (1, 0.0253, 5.5716),
        (2, 0.2422, 7.2247),
        (5, 1.6235, 11.6683),
        (10, 4.7954, 18.3904),
        (20, 12.2165, 30.8884),
    ],
)
def test_exact_poisson_limits_match_the_published_table(events: int, low: float, high: float) -> None:
    got_low, got_high = statistics.poisson_ci(events)
    assert got_low == pytest.approx(low, abs=5e-5)
    assert got_high == pytest.approx(high, abs=5e-5)


def test_one_event_limits_by_hand() -> None:
    # k = 1: lower L solves e^-L = 0.975 → L = -ln(0.975); upper U solves e^-U (1 + U) = 0.025.
    low, high = statistics.poisson_ci(1)
    assert low == pytest.approx(-math.log(0.975), abs=1e-9)
    assert math.exp(-high) * (1 + high) == pytest.approx(0.025, abs=1e-12)


def test_the_limits_bracket_the_count_and_narrow_relatively_as_it_grows() -> None:
    previous = math.inf
    for k in (1, 4, 16, 64, 256):
        low, high = statistics.poisson_ci(k)
        assert low < k < high
        width = (high - low) / k
        assert width < previous
        previous = width


def test_a_90_percent_interval_is_narrower() -> None:
    low95, high95 = statistics.poisson_ci(3)
    low90, high90 = statistics.poisson_ci(3, confidence=0.90)
    assert low95 < low90 < 3 < high90 < high95


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_a_count_must_be_a_whole_number(bad) -> None:
    with pytest.raises(ValueError):
        statistics.poisson_ci(bad)


def test_event_rate_per_100_patient_years() -> None:
    # 3 events over 150 patient-years: 2 per 100 patient-years; limits scaled by 100/150.
    rate = statistics.event_rate(3, 150.0)
    low, high = statistics.poisson_ci(3)
    assert rate.rate == pytest.approx(2.0)
    assert rate.ci_low == pytest.approx(low * 100 / 150)
    assert rate.ci_high == pytest.approx(high * 100 / 150)
    zero = statistics.event_rate(0, 50.0)
    assert zero.rate == 0 and zero.ci_high == pytest.approx(3.689 * 2, abs=2e-3)
    assert statistics.event_rate(2, 0).rate is None


def test_patient_years_use_the_julian_year() -> None:
    assert statistics.patient_years(365.25) == 1.0


# --- quantiles, bands, shares -------------------------------------------------------------------------------


def test_median_and_quartiles_by_linear_interpolation() -> None:
    # 1..10: median 5.5; Q1 at position 2.25 → 3.25; Q3 at 6.75 → 7.75 (type 7).
    assert statistics.median_iqr(range(1, 11)) == {"n": 10, "median": 5.5, "q1": 3.25, "q3": 7.75}
    assert statistics.median_iqr([42.857]) == {"n": 1, "median": 42.857, "q1": 42.857, "q3": 42.857}
    assert statistics.median_iqr([])["median"] is None


@pytest.mark.parametrize(
    ("ttr", "band"),
    [(0, "<50"), (49.99, "<50"), (50, "50-<65"), (64.99, "50-<65"), (65, "65-<80"), (80, ">=80"), (100, ">=80")],
)
def test_ttr_bands_put_65_percent_in_the_target_band(ttr: float, band: str) -> None:
    assert statistics.ttr_band(ttr) == band


def test_share() -> None:
    assert statistics.share(1, 3) == {"n": 1, "of": 3, "percent": 33.33}
    assert statistics.share(0, 0)["percent"] is None


def test_initiation_ends_at_the_second_of_two_consecutive_inrs_in_range() -> None:
    assert statistics.initiation_end([1.5, 2.1, 1.8, 2.4, 2.6, 3.5]) == 4
    assert statistics.initiation_end([1.2, 1.6, 2.2, 3.6]) is None
    # The reported (one-decimal, half-up) value decides: 1.95 is 2.0, in range.
    assert statistics.initiation_end([1.95, 3.04]) == 1


def test_days_on_anticoagulation_are_merged_and_clipped_to_the_period() -> None:
    intervals = [(date(2026, 1, 1), date(2026, 4, 1)), (date(2026, 3, 1), date(2026, 5, 1)), (date(2026, 9, 1), None)]
    assert statistics.merge_intervals(intervals) == [(date(2026, 1, 1), date(2026, 5, 1)), (date(2026, 9, 1), None)]
    # Period 2026-02-01..2026-09-30: Feb 1 – Apr 30 (89 days) + Sep 1 – Sep 30 (30 days).
    assert statistics.days_within(intervals, date(2026, 2, 1), date(2026, 9, 30)) == 89 + 30
    assert statistics.covers(intervals, date(2026, 4, 30)) and not statistics.covers(intervals, date(2026, 5, 1))


# --- ISTH bleeding classification -----------------------------------------------------------------------------


def bleed(**kwargs) -> definitions.BleedingClass:
    return classify_bleeding(BleedingFacts(**{"site": "gastrointestinal", **kwargs}))


@pytest.mark.parametrize(("fall", "major"), [("1.9", False), ("2.0", True), ("2.1", True)])
def test_hemoglobin_fall_boundary_is_2_g_dl(fall: str, major: bool) -> None:
    result = bleed(hemoglobin_fall_g_dl=Decimal(fall))
    assert (result.isth_class == definitions.MAJOR) is major
    if major:
        assert result.criterion == f"hemoglobin fall of {fall} g/dL (≥ 2 g/dL)"
        assert result.source == "ISTH2005"


@pytest.mark.parametrize(("units", "major"), [(0, False), (1, False), (2, True), (3, True)])
def test_transfusion_boundary_is_2_units(units: int, major: bool) -> None:
    result = bleed(units_transfused=units)
    assert (result.isth_class == definitions.MAJOR) is major
    if major:
        assert result.criterion == f"{units} units transfused (≥ 2 units)"


def test_fatal_bleeding_is_major_and_named_first() -> None:
    result = bleed(fatal=True, units_transfused=4)
    assert result.isth_class == definitions.MAJOR
    assert result.criteria == ("fatal bleeding", "4 units transfused (≥ 2 units)")


@pytest.mark.parametrize("site", sorted(definitions.CRITICAL_SITES))
def test_symptomatic_bleeding_in_each_critical_area_is_major(site: str) -> None:
    result = classify_bleeding(BleedingFacts(site=site))
    assert result.isth_class == definitions.MAJOR
    assert result.criterion.startswith("symptomatic bleeding in a critical area")


def test_an_asymptomatic_critical_site_bleed_or_plain_intramuscular_bleed_is_not_major_by_site() -> None:
    assert classify_bleeding(BleedingFacts(site="intracranial", symptomatic=False)).isth_class != definitions.MAJOR
    assert classify_bleeding(BleedingFacts(site="intramuscular")).isth_class == definitions.MINOR


@pytest.mark.parametrize(
    ("flag", "words"),
    [
        ("medical_intervention", "required medical intervention by a health-care professional"),
        ("hospitalization", "led to hospitalization or a higher level of care"),
        ("face_to_face_evaluation", "prompted a face-to-face evaluation"),
    ],
)
def test_each_isth2015_criterion_makes_a_non_major_bleed_clinically_relevant(flag: str, words: str) -> None:
    result = bleed(hemoglobin_fall_g_dl=Decimal("1.9"), units_transfused=1, **{flag: True})
    assert result.isth_class == definitions.CRNM
    assert result.criteria == (words,)
    assert result.source == "ISTH2015"


def test_a_bleed_meeting_no_criterion_is_minor() -> None:
    assert bleed(site="nasal_oral").isth_class == definitions.MINOR


def test_an_unknown_site_is_refused() -> None:
    with pytest.raises(ValueError):
        bleed(site="elbow")


# --- SECRET symptomatic ICH, mRS, recanalization -------------------------------------------------------------


@pytest.mark.parametrize(
    ("new", "growth", "worsening", "meets"),
    [
        (True, None, True, True),
        (True, None, False, False),
        (False, Decimal("33"), True, False),
        (False, Decimal("33.1"), True, True),
        (False, Decimal("50"), False, False),
        (False, None, True, False),
    ],
)
def test_symptomatic_ich_by_the_secret_definition(new, growth, worsening, meets) -> None:
    assert symptomatic_ich(new_hemorrhage=new, growth_percent=growth, worsening=worsening)[0] is meets


def test_the_mrs_has_seven_grades_with_words() -> None:
    assert list(definitions.MRS_GRADES) == [0, 1, 2, 3, 4, 5, 6]
    assert definitions.MRS_GRADES[0] == "No symptoms at all"
    assert definitions.MRS_GRADES[6] == "Dead"
    assert definitions.MRS_GRADES[2].startswith("Slight disability")


@pytest.mark.parametrize(
    ("grades", "overall"),
    [
        ({"superior_sagittal": "complete"}, "complete"),
        ({"superior_sagittal": "complete", "transverse_left": "complete"}, "complete"),
        ({"superior_sagittal": "complete", "transverse_left": "none"}, "partial"),
        ({"superior_sagittal": "none", "transverse_left": "none"}, "none"),
        ({"superior_sagittal": "partial"}, "partial"),
    ],
)
def test_the_scan_grade_follows_from_its_sinuses(grades, overall) -> None:
    assert overall_recanalization(grades) == overall
