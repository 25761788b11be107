"""The §8 procedure planner, table-driven from clinical-reference.md §8 (rev 2), without a database."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from anticoag.procedures import (
    INTERVAL_TABLE,
    Intervals,
    ProcedureFacts,
    ProcedureInputError,
    acknowledge_codes,
    facts_from_mapping,
    months_between,
    procedure_plan,
)

REPO = Path(__file__).resolve().parents[2]
MONDAY = date(2027, 3, 1)  # a Monday: every interval below crosses the weekend before it
assert MONDAY.weekday() == 0


def facts(**kwargs) -> ProcedureFacts:
    values = {
        "agent": "rivaroxaban",
        "procedure_on": MONDAY,
        "bleed_risk": "low",
        "months_since_diagnosis": 6.0,
        "category": "transient",
        "crcl_ml_min": 80.0,
    }
    values.update(kwargs)
    return ProcedureFacts(**values)


def test_the_planner_imports_nothing_from_django() -> None:
    code = "import anticoag.procedures, sys; print(sorted(m for m in sys.modules if m.startswith('django')))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, env={"PATH": ""}
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# §8, written out by hand from the reference, for a procedure on Monday 2027-03-01:
# (agent, CrCl, bleed risk) → (last dose, dates without before the procedure, restart, latest restart, source)
# fmt: off
ROWS = [
    # apixaban, rivaroxaban: low: last dose 2 days before (skip 1); high: 3 days before (skip 2); restart 1 / 2–3 after
    ("apixaban",    80.0, "low",  "2027-02-27", ["2027-02-28"],                                        "2027-03-02", "2027-03-02", "PAUSE"),
    ("apixaban",    80.0, "high", "2027-02-26", ["2027-02-27", "2027-02-28"],                          "2027-03-03", "2027-03-04", "PAUSE"),
    ("rivaroxaban", 80.0, "low",  "2027-02-27", ["2027-02-28"],                                        "2027-03-02", "2027-03-02", "PAUSE"),
    ("rivaroxaban", 80.0, "high", "2027-02-26", ["2027-02-27", "2027-02-28"],                          "2027-03-03", "2027-03-04", "PAUSE"),
    # dabigatran CrCl ≥ 50: skip 1 / 2; boundary 50.0 is in this row
    ("dabigatran",  50.0, "low",  "2027-02-27", ["2027-02-28"],                                        "2027-03-02", "2027-03-02", "PAUSE"),
    ("dabigatran",  50.0, "high", "2027-02-26", ["2027-02-27", "2027-02-28"],                          "2027-03-03", "2027-03-04", "PAUSE"),
    # dabigatran CrCl < 50: skip 2 / 4; boundary 49 (and 49.9) is in this row
    ("dabigatran",  49.0, "low",  "2027-02-26", ["2027-02-27", "2027-02-28"],                          "2027-03-02", "2027-03-02", "PAUSE"),
    ("dabigatran",  49.9, "low",  "2027-02-26", ["2027-02-27", "2027-02-28"],                          "2027-03-02", "2027-03-02", "PAUSE"),
    ("dabigatran",  49.0, "high", "2027-02-24", ["2027-02-25", "2027-02-26", "2027-02-27", "2027-02-28"], "2027-03-03", "2027-03-04", "PAUSE"),
    # warfarin: last dose 6 days before (skip 5), INR check the day before (a Sunday), restart that evening or next day
    ("warfarin",    None, "low",  "2027-02-23", ["2027-02-24", "2027-02-25", "2027-02-26", "2027-02-27", "2027-02-28"], "2027-03-01", "2027-03-02", "CHEST2022 [verify]"),
    ("warfarin",    None, "high", "2027-02-23", ["2027-02-24", "2027-02-25", "2027-02-26", "2027-02-27", "2027-02-28"], "2027-03-01", "2027-03-02", "CHEST2022 [verify]"),
]
# fmt: on


@pytest.mark.parametrize(("agent", "crcl", "risk", "last", "without", "restart", "latest", "source"), ROWS)
def test_every_row_of_section_8(agent, crcl, risk, last, without, restart, latest, source) -> None:
    plan = procedure_plan(facts(agent=agent, crcl_ml_min=crcl, bleed_risk=risk)).as_dict()

    assert plan["last_dose_on"] == last
    assert plan["days_without_dates"] == without
    assert plan["days_without"] == len(without)
    assert plan["restart_on"] == restart and plan["restart_latest_on"] == latest
    assert plan["source"] == source
    assert plan["verified"] is (source == "PAUSE")
    calendar = plan["calendar"]
    # Dated, consecutive calendar days from the last dose to the restart, across the weekend
    assert calendar[0]["date"] == last and calendar[0]["take"] is True
    assert calendar[-1]["date"] == max(restart, "2027-03-01") and calendar[-1]["take"] is True
    dates = [date.fromisoformat(d["date"]) for d in calendar]
    assert dates == [dates[0] + timedelta(days=i) for i in range(len(dates))]
    assert [d["weekday"] for d in calendar if d["date"] in ("2027-02-27", "2027-02-28")] == ["Saturday", "Sunday"]
    assert all(d["source"] == source for d in calendar)
    if agent == "warfarin":
        assert plan["inr_check_on"] == "2027-02-28"
        assert calendar[-1]["date"] == "2027-03-01" and "evening" in calendar[-1]["what"]
        assert "INR check" in [e for d in calendar for e in d["events"]]
        assert plan["restart_dose"] == "the usual warfarin dose"
    else:
        assert plan["inr_check_on"] is None
        procedure_day = next(d for d in calendar if d["date"] == "2027-03-01")
        assert procedure_day["take"] is False
        assert not any(d["events"] == ["INR check"] for d in calendar)


def test_the_table_has_a_row_for_every_agent_crcl_and_bleed_risk() -> None:
    for agent in ("warfarin", "dabigatran", "rivaroxaban", "apixaban"):
        for crcl in (20.0, 49.0, 50.0, 120.0):
            for risk in ("low", "high"):
                assert procedure_plan(facts(agent=agent, crcl_ml_min=crcl, bleed_risk=risk)).row in INTERVAL_TABLE


@pytest.mark.parametrize(
    ("months", "recent"), [(0.5, True), (2.0, True), (2.9, True), (2.999, True), (3.0, False), (3.1, False)]
)
def test_recent_cvt_is_within_the_last_3_months(months: float, recent: bool) -> None:
    for agent in ("warfarin", "rivaroxaban"):
        plan = procedure_plan(facts(agent=agent, months_since_diagnosis=months))
        codes = [w.code for w in plan.warnings]
        assert ("recent_cvt" in codes) is recent
        assert ("recent_cvt" in acknowledge_codes(plan)) is recent


def test_the_recent_cvt_caution_says_postpone_and_bridging_needs_a_clinician() -> None:
    warning = next(w for w in procedure_plan(facts(months_since_diagnosis=2.0)).warnings if w.code == "recent_cvt")
    assert "Consider postponing the procedure; if it cannot wait, discuss bridging with LMWH" in warning.message
    assert "clinician" in warning.message and warning.severity == "caution"
    assert warning.source == "CHEST2022 [verify]" and warning.verified is False


def test_months_since_diagnosis_counts_calendar_months() -> None:
    assert months_between(date(2026, 12, 1), MONDAY) == 3.0
    assert months_between(date(2026, 12, 2), MONDAY) < 3.0
    assert months_between(date(2026, 11, 30), date(2027, 2, 28)) == 3.0
    plan = procedure_plan(facts_from_mapping({"agent": "apixaban", "procedure_on": "2027-03-01", "bleed_risk": "low",
                                              "category": "transient", "diagnosed_on": "2026-12-02"}))  # fmt: skip
    assert "recent_cvt" in [w.code for w in plan.warnings]
    plan = procedure_plan(facts_from_mapping({"agent": "apixaban", "procedure_on": "2027-03-01", "bleed_risk": "low",
                                              "category": "transient", "diagnosed_on": "2026-12-01"}))  # fmt: skip
    assert "recent_cvt" not in [w.code for w in plan.warnings]


@pytest.mark.parametrize(
    ("category", "flag", "expected"),
    [
        ("severe_thrombophilia", None, True),
        ("transient", None, False),
        ("recurrent", True, True),  # §2 puts recurrent first: the thrombophilia is passed on its own
        ("severe_thrombophilia", False, False),
    ],
)
def test_a_severe_thrombophilia_is_a_high_thrombotic_risk(category, flag, expected) -> None:
    plan = procedure_plan(facts(agent="warfarin", category=category, severe_thrombophilia=flag))
    assert ("severe_thrombophilia" in acknowledge_codes(plan)) is expected


def test_doac_plans_say_extrapolation_and_no_bridging() -> None:
    plan = procedure_plan(facts(agent="apixaban"))
    by_code = {w.code: w for w in plan.warnings}
    assert "extrapolation" in by_code["pause_extrapolation"].message
    assert by_code["pause_extrapolation"].source == "PAUSE"
    assert by_code["no_bridging_doac"].message == "No heparin bridging for DOACs."
    warfarin = {w.code for w in procedure_plan(facts(agent="warfarin")).warnings}
    assert "bridging_not_routine" in warfarin and "pause_extrapolation" not in warfarin


def test_warfarin_inr_check_on_a_sunday_is_flagged() -> None:
    codes = [w.code for w in procedure_plan(facts(agent="warfarin")).warnings]
    assert "inr_check_on_weekend" in codes
    wednesday = procedure_plan(facts(agent="warfarin", procedure_on=date(2027, 3, 3))).as_dict()
    assert wednesday["inr_check_on"] == "2027-03-02"
    assert "inr_check_on_weekend" not in [w["code"] for w in wednesday["warnings"]]


def test_a_doac_at_crcl_30_or_less_is_flagged() -> None:
    codes = [w.code for w in procedure_plan(facts(agent="dabigatran", crcl_ml_min=30.0)).warnings]
    assert "renal_doac_contraindicated" in codes
    codes = [w.code for w in procedure_plan(facts(agent="dabigatran", crcl_ml_min=30.1)).warnings]
    assert "renal_doac_contraindicated" not in codes


def test_a_clinicians_intervals_give_the_calendar() -> None:
    plan = procedure_plan(facts(bleed_risk="high"), Intervals(skip_days=3, restart_after=3, inr_check=False))
    out = plan.as_dict()
    assert out["last_dose_on"] == "2027-02-25" and out["restart_on"] == "2027-03-04"
    assert out["proposed_intervals"] == {"skip_days": 2, "restart_after": 2, "inr_check": False}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"agent": "heparin"}, "agent"),
        ({"bleed_risk": "medium"}, "bleed_risk"),
        ({"procedure_kind": "lumbar_puncture", "bleed_risk": "low"}, "bleed_risk"),
        ({"procedure_kind": "neuraxial_anaesthesia", "bleed_risk": "low"}, "bleed_risk"),
        ({"agent": "dabigatran", "crcl_ml_min": None}, "crcl_ml_min"),
        ({"category": "mystery"}, "category"),
        ({"months_since_diagnosis": -1}, "months_since_diagnosis"),
        ({"procedure_kind": "tattoo"}, "procedure_kind"),
    ],
)
def test_bad_input_names_the_field(changes, field) -> None:
    with pytest.raises(ProcedureInputError) as caught:
        facts(**changes)
    assert caught.value.field == field


def test_lumbar_puncture_at_high_risk_is_accepted() -> None:
    assert procedure_plan(facts(procedure_kind="lumbar_puncture", bleed_risk="high")).row.bleed_risk == "high"


def test_an_implausible_date_is_refused_not_overflowed() -> None:
    with pytest.raises(ProcedureInputError) as caught:
        facts(procedure_on=date(9999, 12, 31))
    assert caught.value.field == "procedure_on"
