"""Warfarin phase, next INR test, dose nomogram, critical alerts and DOAC renal follow-up.

Table-driven from clinical-reference.md §4. Pure tests: no database.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from anticoag.monitoring import (
    DEFAULT_POLICY,
    AdviceRequest,
    InrPoint,
    MonitoringInputError,
    MonitoringPolicy,
    advice_request_from_mapping,
    classify_phase,
    critical_inr_alert,
    doac_alerts,
    doac_renal_interval_months,
    doac_renal_next_due,
    inr_advice,
)

ROOT = Path(__file__).resolve().parents[2]
D0 = date(2026, 1, 5)

#: Two consecutive INRs in range: initiation is over.
MAINTENANCE = ((0, 2.5), (7, 2.6))
#: In range on Jan 5, Feb 5, Mar 5 and Apr 5 (day 90): 4 readings over exactly 3 calendar months.
STABLE = ((0, 2.4), (31, 2.6), (59, 2.5), (90, 2.5))


def readings(*pairs: tuple[int, float], start: date = D0) -> list[InrPoint]:
    """(day offset, INR) pairs → InrPoints on plain dates."""
    return [InrPoint(start + timedelta(days=day), inr) for day, inr in pairs]


def advise(pairs, **kwargs):
    kwargs.setdefault("target_low", 2.0)
    kwargs.setdefault("target_high", 3.0)
    return inr_advice(readings(*pairs), **kwargs)


def assert_next_test(advice, pairs, earliest: int, latest: int) -> None:
    """Next test dates count from the latest reading's date."""
    last = D0 + timedelta(days=max(day for day, _ in pairs))
    assert advice.next_test_on == last + timedelta(days=earliest)
    assert advice.next_test_latest_on == last + timedelta(days=latest)


def alert_codes(advice) -> list[str]:
    return [alert.code for alert in advice.alerts]


# ----------------------------------------------------------------------------------------------------------
# Phases
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pairs", "phase"),
    [
        pytest.param((), "initiation", id="no readings"),
        pytest.param(((0, 1.2), (3, 1.8), (6, 2.2)), "initiation", id="one in range"),
        pytest.param(((0, 2.2), (3, 1.7), (6, 2.4)), "initiation", id="in range twice, not consecutive"),
        pytest.param(((0, 1.8), (3, 2.0), (6, 3.0)), "maintenance", id="two consecutive on the bounds"),
        pytest.param(((0, 1.8), (3, 2.2), (6, 2.5), (9, 1.6)), "maintenance", id="never back to initiation"),
        pytest.param(STABLE, "stable", id="3 months and 4 readings in range"),
        pytest.param((*STABLE[:3], (89, 2.5)), "maintenance", id="one day short of 3 months"),
        pytest.param(((0, 2.4), (45, 2.6), (90, 2.5)), "stable", id="exactly 3 readings"),
        pytest.param(((0, 2.4), (120, 2.6)), "maintenance", id="only 2 readings over 4 months"),
        pytest.param(((0, 1.4), (31, 2.6), (59, 2.5), (90, 2.5)), "maintenance", id="first reading out of range"),
        pytest.param((*STABLE, (118, 3.4)), "maintenance", id="stable broken by the latest"),
    ],
)
def test_classify_phase(pairs, phase):
    assert classify_phase(readings(*pairs), 2.0, 3.0) == phase


def test_stable_uses_calendar_months():
    # Given in-range readings on Jan 31, Feb 28 and Apr 30 (Jan 31 + 3 calendar months = Apr 30)
    points = [InrPoint(date(2026, 1, 31), 2.5), InrPoint(date(2026, 2, 28), 2.5), InrPoint(date(2026, 4, 30), 2.5)]
    # Then the patient is stable; a day earlier they are not
    assert classify_phase(points, 2.0, 3.0) == "stable"
    assert classify_phase([*points[:2], InrPoint(date(2026, 4, 29), 2.5)], 2.0, 3.0) == "maintenance"


def test_stable_period_is_configurable():
    policy = dataclasses.replace(DEFAULT_POLICY, stable_min_months=6)
    assert classify_phase(readings(*STABLE), 2.0, 3.0, policy=policy) == "maintenance"


# ----------------------------------------------------------------------------------------------------------
# INR testing interval, one test per row of the reference table (priority order of inr_advice)
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pairs", "kwargs"),
    [
        pytest.param((*MAINTENANCE, (21, 9.5)), {}, id="INR 9.5"),
        pytest.param((*MAINTENANCE, (21, 9.1)), {}, id="INR 9.1"),
        pytest.param((*MAINTENANCE, (21, 2.5)), {"bleeding": True}, id="bleeding, INR in range"),
        pytest.param((*STABLE, (118, 2.5)), {"bleeding": True, "extended_interval_allowed": True}, id="bleeding"),
    ],
)
def test_row_critical_inr_or_bleeding_retests_next_day(pairs, kwargs):
    advice = advise(pairs, **kwargs)
    assert_next_test(advice, pairs, 1, 1)
    assert advice.next_test_rule.code == "inr_critical_or_bleeding"
    # Rev 2 corrected the citation: "> 9" is CHEST2008's; CHEST2012 (2C) is oral vitamin K above 10.
    assert advice.next_test_rule.source == "CHEST2008 (> 9); CHEST2012 (> 10 without bleeding: oral vitamin K, 2C)"
    assert alert_codes(advice) == ["inr_critical"]
    assert advice.alerts[0].severity == "urgent"
    assert advice.hold_until in {"inr_in_range", "clinician_review"}


@pytest.mark.parametrize(
    ("pairs", "codes"),
    [
        pytest.param((*MAINTENANCE, (21, 5.0)), ["inr_high"], id="INR 5.0"),
        pytest.param((*MAINTENANCE, (21, 9.0)), ["inr_high"], id="INR 9.0"),
        pytest.param(((0, 1.2), (3, 6.0)), ["inr_high", "nomogram_initiation"], id="INR 6.0 in initiation"),
    ],
)
def test_row_inr_5_to_9_without_bleeding_retests_in_1_to_3_days(pairs, codes):
    advice = advise(pairs)
    assert_next_test(advice, pairs, 1, 3)
    assert advice.next_test_rule.code == "inr_5_to_9_no_bleeding"
    assert advice.next_test_rule.verified is False  # VA practice [verify]
    assert alert_codes(advice) == codes
    high = advice.alerts[0]
    assert (high.severity, high.verified) == ("urgent", False)
    assert advice.hold_until == "inr_in_range"
    assert advice.hold_doses is None


@pytest.mark.parametrize("latest", [3.5, 3.1, 1.9, 1.5])
def test_row_stable_single_small_excursion_retests_in_7_to_14_days(latest):
    pairs = (*STABLE, (118, latest))
    advice = advise(pairs, weekly_dose_mg=35)
    assert_next_test(advice, pairs, 7, 14)
    assert advice.next_test_rule.code == "stable_single_small_excursion"
    assert advice.dose_change_percent == 0
    assert alert_codes(advice) == []


@pytest.mark.parametrize(
    ("pairs", "kwargs"),
    [
        pytest.param((*MAINTENANCE, (21, 1.4)), {}, id="INR 1.4"),
        pytest.param((*MAINTENANCE, (21, 3.6)), {}, id="INR 3.6"),
        pytest.param((*MAINTENANCE, (21, 4.9)), {}, id="INR 4.9"),
        pytest.param((*MAINTENANCE, (21, 3.2)), {}, id="dose change suggested (3.2: -10 %)"),
        pytest.param((*STABLE, (118, 3.6)), {}, id="stable but out by 0.6"),
        pytest.param((*STABLE, (118, 1.4)), {}, id="stable but below 1.5"),
        pytest.param(
            (*MAINTENANCE, (14, 2.5), (28, 2.5)), {"dose_changed_at": D0 + timedelta(days=20)}, id="dose changed"
        ),
    ],
)
def test_row_within_7_days(pairs, kwargs):
    advice = advise(pairs, **kwargs)
    assert_next_test(advice, pairs, 7, 7)
    assert advice.next_test_rule.code == "within_7_days"
    assert advice.next_test_rule.source == "VA practice (Witt 2016)"
    assert advice.next_test_rule.verified is False
    assert alert_codes(advice) == []


@pytest.mark.parametrize(
    "pairs",
    [
        pytest.param(((0, 1.2), (3, 1.6)), id="INR 1.6"),
        pytest.param(((0, 1.1), (3, 1.2)), id="INR below 1.5: 2-3 days already meets 'within 7'"),
        pytest.param(((0, 1.6), (3, 2.4)), id="first in range"),
        pytest.param(((0, 2.4),), id="single reading in range"),
        pytest.param(((0, 1.6), (3, 4.2)), id="INR 4.2"),
    ],
)
def test_row_initiation_retests_every_2_to_3_days(pairs):
    advice = advise(pairs, dose_changed_at=D0)
    assert advice.phase == "initiation"
    assert_next_test(advice, pairs, 2, 3)
    assert advice.next_test_rule.code == "initiation"
    assert advice.next_test_rule.source == "CHEST2012 practice"
    assert alert_codes(advice) == ["nomogram_initiation"]


@pytest.mark.parametrize(
    ("pairs", "days"),
    [
        pytest.param(((0, 1.8), (3, 2.2), (6, 2.5)), 7, id="2 consecutive in range"),
        pytest.param(((0, 1.8), (3, 2.2), (6, 2.5), (13, 2.4)), 14, id="3 consecutive"),
        pytest.param(((0, 1.8), (3, 2.2), (6, 2.5), (13, 2.4), (27, 2.6)), 28, id="4 consecutive"),
        pytest.param(((0, 1.8), (3, 2.2), (6, 2.5), (13, 2.4), (27, 2.6), (55, 2.5)), 28, id="5 consecutive"),
        pytest.param((*MAINTENANCE, (21, 3.2), (28, 2.5)), 7, id="back in range after an excursion"),
        pytest.param((*STABLE, (118, 2.5)), 28, id="stable, not opted in"),
    ],
)
def test_row_in_range_after_initiation_steps_7_14_28(pairs, days):
    advice = advise(pairs)
    assert_next_test(advice, pairs, days, days)
    assert advice.next_test_rule.code == "in_range_after_initiation"
    assert advice.next_test_rule.source == 'Coumadin label "1 to 4 weeks"'
    assert advice.dose_change_percent == 0


def test_row_stable_extended_interval_is_12_weeks_when_opted_in():
    pairs = (*STABLE, (118, 2.5))
    advice = advise(pairs, extended_interval_allowed=True)
    assert advice.phase == "stable"
    assert_next_test(advice, pairs, 84, 84)
    assert advice.next_test_rule.code == "stable_extended"
    assert advice.next_test_rule.source == "CHEST2012 (2B)"


@pytest.mark.parametrize(
    ("pairs", "extended", "days"),
    [
        pytest.param((*STABLE, (118, 2.5)), False, 28, id="stable, not opted in"),
        pytest.param((*MAINTENANCE, (21, 2.5)), True, 14, id="opted in, not stable"),
        pytest.param((*STABLE, (118, 2.5)), True, 84, id="opted in and stable"),
    ],
)
def test_extended_interval_only_when_opted_in_and_stable(pairs, extended, days):
    advice = advise(pairs, extended_interval_allowed=extended)
    assert_next_test(advice, pairs, days, days)


def test_out_of_range_with_another_target_falls_back_to_7_days_unverified():
    # Given a 2.5-3.5 target (no nomogram) and an INR of 2.2 in maintenance: no reference row applies
    pairs = ((0, 3.0), (7, 3.0), (21, 2.2))
    advice = advise(pairs, target_low=2.5, target_high=3.5)
    # Then retest in 7 days, marked as clinic default, unverified
    assert_next_test(advice, pairs, 7, 7)
    assert advice.next_test_rule.code == "out_of_range_not_in_table"
    assert advice.next_test_rule.verified is False
    assert alert_codes(advice) == ["nomogram_not_applicable"]


# ----------------------------------------------------------------------------------------------------------
# After a dose change
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changed_at", "days"),
    [
        pytest.param(None, 28, id="no dose change"),
        pytest.param(D0 + timedelta(days=13), 28, id="before the previous reading"),
        pytest.param(D0 + timedelta(days=14), 7, id="on the previous reading's date"),
        pytest.param(D0 + timedelta(days=20), 7, id="between the last two readings"),
        pytest.param(D0 + timedelta(days=28), 7, id="after the latest reading"),
        pytest.param(datetime(2026, 1, 18, 20, 0, tzinfo=UTC), 28, id="before the previous reading's instant"),
        pytest.param(datetime(2026, 1, 19, 0, 1, tzinfo=UTC), 7, id="after the previous reading's instant"),
    ],
)
def test_dose_change_brings_the_next_test_within_7_days(changed_at, days):
    # Given four in-range readings (ladder: 28 days), the previous one on Jan 19 (midnight UTC)
    pairs = (*MAINTENANCE, (14, 2.5), (28, 2.5))
    advice = advise(pairs, dose_changed_at=changed_at)
    assert_next_test(advice, pairs, days, days)


# ----------------------------------------------------------------------------------------------------------
# Maintenance dose nomogram
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inr", "percent", "hold_doses", "hold_until", "dose_mg", "band"),
    [
        (1.4, 15, 0, None, 40.3, "< 1.5"),
        (1.5, 10, 0, None, 38.5, "1.5-1.9"),
        (1.9, 10, 0, None, 38.5, "1.5-1.9"),
        (2.0, 0, 0, None, 35.0, "2.0-3.0"),
        (3.0, 0, 0, None, 35.0, "2.0-3.0"),
        (3.1, -10, 0, None, 31.5, "3.1-3.9"),
        (3.9, -10, 0, None, 31.5, "3.1-3.9"),
        (4.0, -10, 1, None, 31.5, "4.0-4.9"),
        (4.9, -10, 1, None, 31.5, "4.0-4.9"),
        (5.0, -15, None, "inr_in_range", 29.8, ">= 5.0"),
        (9.5, -15, None, "inr_in_range", 29.8, ">= 5.0"),
        # One-decimal rounding, half up: 1.44 is "1.4", 1.45 is "1.5", 3.04 is "3.0", 3.05 is "3.1"
        (1.44, 15, 0, None, 40.3, "< 1.5"),
        (1.45, 10, 0, None, 38.5, "1.5-1.9"),
        (3.04, 0, 0, None, 35.0, "2.0-3.0"),
        (3.05, -10, 0, None, 31.5, "3.1-3.9"),
        (4.96, -15, None, "inr_in_range", 29.8, ">= 5.0"),
    ],
)
def test_nomogram_band(inr, percent, hold_doses, hold_until, dose_mg, band):
    # Given a maintenance patient on 35 mg/week whose latest INR is `inr`
    advice = advise((*MAINTENANCE, (21, inr)), weekly_dose_mg=35)
    # Then the nomogram row gives the change, the hold and the new weekly dose (0.1 mg, half up)
    assert advice.dose_change_percent == percent
    assert advice.hold_doses == hold_doses
    assert advice.hold_until == hold_until
    assert advice.suggested_weekly_dose_mg == dose_mg
    assert advice.dose_rule["band"] == band.replace(">=", "≥")
    assert advice.dose_rule["verified"] is False


def test_no_weekly_dose_means_no_suggested_dose():
    advice = advise((*MAINTENANCE, (21, 1.4)))
    assert advice.dose_change_percent == 15
    assert advice.suggested_weekly_dose_mg is None


def test_stable_small_excursion_wins_over_the_nomogram():
    # Given the same INR of 3.4 in a stable and in a merely maintained patient
    stable = advise((*STABLE, (118, 3.4)), weekly_dose_mg=35)
    maintained = advise((*MAINTENANCE, (21, 3.4)), weekly_dose_mg=35)
    # Then the stable patient keeps the dose (CHEST2012 (2C)); the nomogram would cut it by 10 %
    assert (stable.dose_change_percent, stable.hold_doses, stable.suggested_weekly_dose_mg) == (0, 0, 35.0)
    assert stable.dose_rule["code"] == "stable_single_small_excursion"
    assert stable.dose_rule["source"] == "CHEST2012 (2C)"
    assert (maintained.dose_change_percent, maintained.suggested_weekly_dose_mg) == (-10, 31.5)


def test_no_nomogram_during_initiation():
    advice = advise(((0, 1.2), (3, 1.4)), weekly_dose_mg=35)
    assert (advice.dose_change_percent, advice.hold_doses, advice.suggested_weekly_dose_mg) == (None, None, None)
    assert advice.alerts[0].code == "nomogram_initiation"
    assert advice.alerts[0].severity == "info"


def test_nomogram_not_applicable_for_another_target():
    advice = advise(((0, 3.0), (7, 3.0), (21, 3.0)), target_low=2.5, target_high=3.5, weekly_dose_mg=35)
    assert advice.dose_change_percent is None
    assert advice.suggested_weekly_dose_mg is None
    assert [(a.code, a.severity) for a in advice.alerts] == [("nomogram_not_applicable", "info")]


def test_bleeding_suggests_no_dose_and_holds_for_clinician_review():
    advice = advise((*MAINTENANCE, (21, 2.5)), bleeding=True, weekly_dose_mg=35)
    assert (advice.dose_change_percent, advice.hold_doses, advice.suggested_weekly_dose_mg) == (None, None, None)
    assert advice.hold_until == "clinician_review"


# ----------------------------------------------------------------------------------------------------------
# Output shape, sources, policy
# ----------------------------------------------------------------------------------------------------------


def test_as_dict_has_the_documented_keys_and_rounding():
    advice = advise(((0, 1.5), (10, 2.5), (20, 3.5), (30, 2.8)), weekly_dose_mg=35).as_dict()
    assert set(advice) == {
        "ttr_percent",
        "days_in_range",
        "days_total",
        "phase",
        "next_test_on",
        "next_test_latest_on",
        "dose_change_percent",
        "hold_doses",
        "suggested_weekly_dose_mg",
        "alerts",
        "sources",
        # documented extras
        "hold_until",
        "next_test_rule",
        "dose_rule",
        "ttr_method",
    }
    assert advice["ttr_percent"] == 42.857
    assert advice["days_in_range"] == 12.857
    assert advice["days_total"] == 30.0
    assert advice["next_test_on"] == "2026-02-06"
    assert advice["next_test_latest_on"] == "2026-02-07"
    assert advice["ttr_method"]["bounds"] == "inclusive"
    assert advice["ttr_method"]["max_gap_days"] == 56
    assert set(advice["alerts"][0]) == {"code", "severity", "message", "source", "verified"}


def test_single_reading_has_null_ttr():
    assert advise(((0, 2.5),)).as_dict()["ttr_percent"] is None


def test_sources_name_every_row_used():
    advice = advise((*MAINTENANCE, (21, 6.0)), weekly_dose_mg=35)
    assert advice.sources[0] == "ROSENDAAL1993"
    assert "CHEST2012; VA practice" in advice.sources
    assert advice.dose_rule["source"] in advice.sources


def test_next_test_counts_from_the_latest_readings_local_date():
    # Given a reading at 00:30 on Jan 6 in UTC+1 (still Jan 5 in UTC)
    cet = timezone(timedelta(hours=1))
    points = [
        InrPoint(datetime(2026, 1, 3, 9, 0, tzinfo=cet), 1.2),
        InrPoint(datetime(2026, 1, 6, 0, 30, tzinfo=cet), 1.5),
    ]
    advice = inr_advice(points, target_low=2.0, target_high=3.0)
    # Then the dates count from Jan 6, the date the nurse wrote down
    assert (advice.next_test_on, advice.next_test_latest_on) == (date(2026, 1, 8), date(2026, 1, 9))


def test_a_clinic_can_mark_a_verified_row_and_change_the_ladder():
    # Given a clinic that has checked the VA row and uses 7, 21, 35 days
    policy = dataclasses.replace(
        DEFAULT_POLICY,
        within_7_days_row=dataclasses.replace(DEFAULT_POLICY.within_7_days_row, verified=True),
        in_range_ladder_days=(7, 21, 35),
    )
    low = advise((*MAINTENANCE, (21, 1.4)), policy=policy)
    ladder = advise(((0, 1.8), (3, 2.2), (6, 2.5), (13, 2.4)), policy=policy)
    assert low.as_dict()["next_test_rule"]["verified"] is True
    assert ladder.next_test_on == D0 + timedelta(days=13 + 21)


def test_policy_refuses_inconsistent_tables():
    with pytest.raises(ValueError, match="ascending"):
        MonitoringPolicy(nomogram=(DEFAULT_POLICY.nomogram[0], *reversed(DEFAULT_POLICY.nomogram[1:])))
    with pytest.raises(ValueError, match="first band"):
        MonitoringPolicy(nomogram=DEFAULT_POLICY.nomogram[1:])
    with pytest.raises(ValueError, match="ladder"):
        MonitoringPolicy(in_range_ladder_days=())


def test_inr_advice_needs_a_reading_and_a_sane_target():
    with pytest.raises(ValueError, match="at least one"):
        inr_advice([], target_low=2.0, target_high=3.0)
    with pytest.raises(ValueError, match="below"):
        inr_advice(readings((0, 2.5)), target_low=3.0, target_high=3.0)


# ----------------------------------------------------------------------------------------------------------
# Critical INR alert (immediate, for the Django side)
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inr", "bleeding", "code", "verified"),
    [
        (4.9, False, None, None),
        (4.94, False, None, None),
        (4.96, False, "inr_high", False),
        (5.0, False, "inr_high", False),
        (9.0, False, "inr_high", False),
        (9.1, False, "inr_critical", True),
        (2.5, True, "inr_critical", True),
        (6.0, True, "inr_critical", True),
    ],
)
def test_critical_inr_alert(inr, bleeding, code, verified):
    alert = critical_inr_alert(inr, bleeding=bleeding)
    if code is None:
        assert alert is None
    else:
        assert alert["code"] == code
        assert alert["severity"] == "urgent"
        assert alert["verified"] is verified
        # inr_critical: CHEST2008 (> 9) since rev 2; inr_high: CHEST2012 and VA practice
        assert alert["source"].startswith("CHEST2008" if code == "inr_critical" else "CHEST2012")
        assert alert["message"]


# ----------------------------------------------------------------------------------------------------------
# DOAC renal monitoring
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("crcl", "age", "months"),
    [
        (90, 50, 12),
        (60, 50, 12),
        (59.5, 50, 6),
        (59, 50, 6),
        (30.1, 50, 6),
        (30, 50, 3),  # rev 2: "every 3 months if CrCl ≤ 30" (≤ 30 everywhere, as in §3)
        (29.9, 50, 3),
        (29, 50, 3),
        (90, 74, 12),
        (90, 75, 6),
        (45, 80, 6),
        (20, 80, 3),
    ],
)
def test_doac_renal_interval(crcl, age, months):
    assert doac_renal_interval_months(crcl_ml_min=crcl, age=age) == months


def test_doac_renal_next_due_counts_calendar_months():
    assert doac_renal_next_due(last_drawn_on=date(2026, 1, 31), crcl_ml_min=45, age=50) == date(2026, 7, 31)
    assert doac_renal_next_due(last_drawn_on=date(2026, 8, 31), crcl_ml_min=45, age=50) == date(2027, 2, 28)
    assert doac_renal_next_due(last_drawn_on=date(2026, 1, 15), crcl_ml_min=80, age=50) == date(2027, 1, 15)


@pytest.mark.parametrize(
    ("agent", "crcl", "alerted"),
    [
        ("dabigatran", 30, True),
        ("Dabigatran", 12, True),
        ("dabigatran", 30.1, False),
        ("dabigatran", None, False),
        ("apixaban", 25, True),  # reference §3: no DOAC at CrCl <= 30
        ("warfarin", 20, False),
    ],
)
def test_doac_alerts(agent, crcl, alerted):
    alerts = doac_alerts(agent=agent, crcl_ml_min=crcl)
    if not alerted:
        assert alerts == []
        return
    [alert] = alerts
    assert alert["code"] == "renal_doac_contraindicated"
    assert alert["severity"] == "urgent"
    assert (alert["source"], alert["verified"]) == ("EHRA", False)


# ----------------------------------------------------------------------------------------------------------
# Input parsing
# ----------------------------------------------------------------------------------------------------------


def test_advice_request_from_mapping_parses_a_valid_request():
    request = advice_request_from_mapping(
        {
            "target_low": 2,
            "target_high": 3.0,
            "readings": [{"drawn_on": "2026-01-05", "inr": 2.4}, {"drawn_on": "2026-01-08", "inr": 3}],
            "weekly_dose_mg": 35,
            "extended_interval_allowed": True,
        }
    )
    assert request == AdviceRequest(
        target_low=2.0,
        target_high=3.0,
        readings=(InrPoint(date(2026, 1, 5), 2.4), InrPoint(date(2026, 1, 8), 3.0)),
        weekly_dose_mg=35.0,
        extended_interval_allowed=True,
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"target_low": True}, "target_low"),
        ({"readings": []}, "readings"),
        ({"readings": [{"drawn_on": "2026-01-05", "inr": 2.5, "note": "x"}]}, "readings[0].note"),
        ({"readings": [{"drawn_on": "20260105", "inr": 2.5}]}, "readings[0].drawn_on"),
        ({"readings": [{"drawn_on": "2026-01-05", "inr": float("nan")}]}, "readings[0].inr"),
        ({"weekly_dose_mg": 0}, "weekly_dose_mg"),
        ({"bleeding": "yes"}, "bleeding"),
        ({"target_high": 1.5}, "target_low"),
    ],
)
def test_advice_request_from_mapping_names_the_bad_field(change, field):
    data = {"target_low": 2.0, "target_high": 3.0, "readings": [{"drawn_on": "2026-01-05", "inr": 2.5}], **change}
    with pytest.raises(MonitoringInputError) as excinfo:
        advice_request_from_mapping(data)
    assert excinfo.value.field == field
    assert str(excinfo.value).startswith(f"{field}: ")
    assert "\n" not in str(excinfo.value)


# ----------------------------------------------------------------------------------------------------------
# Purity
# ----------------------------------------------------------------------------------------------------------


def test_monitoring_imports_no_django():
    # Given a fresh interpreter that imports only the monitoring module
    code = "import sys, anticoag.monitoring; print(sorted(m for m in sys.modules if m.startswith('django')))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    # Then no Django module was loaded
    assert result.stdout.strip() == "[]"
