"""The rules engine against ``clinical-reference.md``, table by table (§1, §2, §3, §4 follow-ups, §5).

Pure tests: no database. Expected values are written out by hand from the reference, never computed with
the code under test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from anticoag import rules
from anticoag.rules import (
    ACKNOWLEDGE_SEVERITIES,
    CATEGORIES,
    FOLLOW_UP_KINDS,
    RISK_FACTORS,
    SOURCES,
    UMOL_PER_MG_DL,
    WARNING_CODES,
    EpisodeFacts,
    FactsError,
    cockcroft_gault,
    facts_from_mapping,
    recommend,
)

REPO = Path(__file__).resolve().parents[2]

DIAGNOSED = date(2025, 3, 10)
#: 60-year-old man, 70 kg, creatinine 1.0 mg/dL: CrCl = 80 x 70 / 72 = 77.78 → 77.8 mL/min.
KIDNEYS_OK: dict[str, Any] = {"age": 60, "sex": "male", "weight_kg": 70.0, "serum_creatinine_mg_dl": 1.0}


def facts(**kwargs: Any) -> EpisodeFacts:
    kwargs.setdefault("diagnosed_on", DIAGNOSED)
    # Reference §0 (rev 2): the rules are for adults; an unknown age is out of scope. Tests that are not about
    # age describe an adult unless they say otherwise (age=None or a child, explicitly).
    kwargs.setdefault("age", 45)
    return EpisodeFacts(**kwargs)


def advise(**kwargs: Any) -> dict[str, Any]:
    return recommend(facts(**kwargs)).as_dict()


def codes(items: list[dict[str, Any]]) -> list[str]:
    return [item["code"] for item in items]


def by_code(items: list[dict[str, Any]], code: str) -> dict[str, Any]:
    matches = [item for item in items if item["code"] == code]
    assert len(matches) == 1, f"{code}: {codes(items)}"
    return matches[0]


def follow_up(result: dict[str, Any], kind: str) -> dict[str, Any]:
    matches = [item for item in result["follow_ups"] if item["kind"] == kind]
    assert len(matches) == 1, f"{kind}: {[f['kind'] for f in result['follow_ups']]}"
    return matches[0]


def agents(result: dict[str, Any]) -> list[str]:
    return [option["agent"] for option in result["oral_options"]]


# ---------------------------------------------------------------------------------------------------------
# Purity
# ---------------------------------------------------------------------------------------------------------


def test_rules_module_imports_nothing_from_django() -> None:
    # Given a fresh interpreter without Django settings
    code = "import anticoag.rules, sys; print(sorted(m for m in sys.modules if m.startswith('django')))"
    # When it imports the rules
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, env={"PATH": ""}
    )
    # Then it succeeds and no django module was loaded
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------------------
# §1 Risk factor vocabulary
# ---------------------------------------------------------------------------------------------------------

#: Reference §1, column "class", written out by hand.
REFERENCE_VOCABULARY = {
    "infection": "transient",
    "head_trauma": "transient",
    "neurosurgery": "transient",
    "lumbar_puncture": "transient",
    "intracranial_hypotension": "transient",
    "oral_contraceptive": "transient",
    "hormone_therapy": "transient",
    "pregnancy": "pregnancy",
    "puerperium": "pregnancy",
    "dehydration": "transient",
    "drug_induced": "transient",
    "active_cancer": "cancer",
    "myeloproliferative": "persistent",
    "inflammatory_disease": "persistent",
    "nephrotic_syndrome": "persistent",
    "fvl_heterozygous": "mild_thrombophilia",
    "pt_g20210a_heterozygous": "mild_thrombophilia",
    "hyperhomocysteinemia": "mild_thrombophilia",
    "fvl_homozygous": "severe_thrombophilia",
    "pt_g20210a_homozygous": "severe_thrombophilia",
    "protein_c_deficiency": "severe_thrombophilia",
    "protein_s_deficiency": "severe_thrombophilia",
    "antithrombin_deficiency": "severe_thrombophilia",
    "antiphospholipid_syndrome": "severe_thrombophilia",
    "vitt": "transient",  # rev 2
    "heparin_induced_thrombocytopenia": "transient",  # rev 2
}


def codes_of_class(risk_class: str) -> list[str]:
    return [code for code, cls in REFERENCE_VOCABULARY.items() if cls == risk_class]


def test_vocabulary_is_the_reference_table_in_order() -> None:
    assert {code: str(rf.risk_class) for code, rf in RISK_FACTORS.items()} == REFERENCE_VOCABULARY
    assert list(RISK_FACTORS) == list(REFERENCE_VOCABULARY)


# ---------------------------------------------------------------------------------------------------------
# §2 Category and duration: every row
# ---------------------------------------------------------------------------------------------------------

# Diagnosis 2025-03-10: + 3 months = 2025-06-10, + 6 months = 2025-09-10, + 12 months = 2026-03-10.
INDEFINITE_12 = {"min_months": None, "max_months": None, "indefinite": True, "review_every_months": 12}
INDEFINITE_6 = {"min_months": None, "max_months": None, "indefinite": True, "review_every_months": 6}
NO_DATES = {"earliest_end_on": None, "latest_end_on": None}
MONTHS_6_12 = {"min_months": 6, "max_months": 12, "indefinite": False, "review_every_months": None}
MONTHS_6_12_DATES = {"earliest_end_on": "2025-09-10", "latest_end_on": "2026-03-10"}

SECTION_2_ROWS: list[Any] = [
    # row 1
    pytest.param(
        {"prior_cvt": True}, "recurrent", INDEFINITE_12, NO_DATES, "EFNS2010 (≥ 2 episodes)", id="1-prior_cvt"
    ),
    pytest.param({"prior_vte": True}, "recurrent", INDEFINITE_12, NO_DATES, "AHA2011 (IIb-C)", id="1-prior_vte"),
    # row 2: each severe code, and two different mild codes (combined defect)
    *[
        pytest.param(
            {"risk_factors": {code}}, "severe_thrombophilia", INDEFINITE_12, NO_DATES, "AHA2011 (IIb-C)", id=f"2-{code}"
        )
        for code in codes_of_class("severe_thrombophilia")
    ],
    pytest.param(
        {"risk_factors": {"fvl_heterozygous", "hyperhomocysteinemia"}},
        "severe_thrombophilia",
        INDEFINITE_12,
        NO_DATES,
        "EFNS2010",
        id="2-two-mild-codes",
    ),
    # row 3
    pytest.param({"risk_factors": {"active_cancer"}}, "cancer", INDEFINITE_6, NO_DATES, "extrapolation", id="3-cancer"),
    # row 4: 6 months in total (delivery long enough before: 6 weeks after it ends earlier)
    pytest.param(
        {"risk_factors": {"pregnancy"}, "delivered_on": date(2025, 4, 1)},
        "pregnancy",
        {"min_months": 6, "max_months": None, "indefinite": False, "review_every_months": None},
        {"earliest_end_on": "2025-09-10", "latest_end_on": None},
        "AHA2011 (class I)",
        id="4-pregnancy",
    ),
    pytest.param(
        {"risk_factors": {"puerperium"}, "delivered_on": date(2025, 2, 20)},
        "pregnancy",
        {"min_months": 6, "max_months": None, "indefinite": False, "review_every_months": None},
        {"earliest_end_on": "2025-09-10", "latest_end_on": None},
        "AHA2011 (class I)",
        id="4-puerperium",
    ),
    # row 5
    *[
        pytest.param(
            {"risk_factors": {code}}, "mild_thrombophilia", MONTHS_6_12, MONTHS_6_12_DATES, "EFNS2010", id=f"5-{code}"
        )
        for code in codes_of_class("mild_thrombophilia")
    ],
    # row 6
    *[
        pytest.param(
            {"risk_factors": {code}}, "persistent", MONTHS_6_12, MONTHS_6_12_DATES, "by analogy", id=f"6-{code}"
        )
        for code in codes_of_class("persistent")
    ],
    # row 7
    *[
        pytest.param(
            {"risk_factors": {code}},
            "transient",
            {"min_months": 3, "max_months": 6, "indefinite": False, "review_every_months": None},
            {"earliest_end_on": "2025-06-10", "latest_end_on": "2025-09-10"},
            "EFNS2010 says 3 months",
            id=f"7-{code}",
        )
        for code in codes_of_class("transient")
    ],
    # row 8
    pytest.param({}, "unprovoked", MONTHS_6_12, MONTHS_6_12_DATES, "AHA2011 (IIb-C); EFNS2010", id="8-no-code"),
]


@pytest.mark.parametrize(("given", "category", "duration", "dates", "source"), SECTION_2_ROWS)
def test_section_2_category_and_duration(
    given: dict[str, Any], category: str, duration: dict[str, Any], dates: dict[str, Any], source: str
) -> None:
    # Given an episode matching one row of §2, diagnosed on 2025-03-10
    # When the rules run
    result = advise(**given)
    # Then the category, the duration, its calendar dates and its source are that row's
    assert result["category"] == category
    got = result["duration"]
    assert {key: got[key] for key in duration} == duration
    assert {key: got[key] for key in dates} == dates
    assert source in got["source"]


def test_section_2_walk_covers_every_category_and_every_code() -> None:
    walked = [p.values[1] for p in SECTION_2_ROWS]
    assert set(walked) == set(CATEGORIES)
    assert list(CATEGORIES) == [
        "recurrent",
        "severe_thrombophilia",
        "cancer",
        "pregnancy",
        "mild_thrombophilia",
        "persistent",
        "transient",
        "unprovoked",
    ]
    walked_codes = {code for p in SECTION_2_ROWS for code in p.values[0].get("risk_factors", ())}
    assert walked_codes == set(REFERENCE_VOCABULARY)


PRECEDENCE_CASES = [
    pytest.param({"antiphospholipid_syndrome", "active_cancer"}, {}, "severe_thrombophilia", id="APS+cancer"),
    pytest.param({"infection"}, {"prior_vte": True}, "recurrent", id="prior_vte+transient"),
    pytest.param({"protein_s_deficiency"}, {"prior_cvt": True}, "recurrent", id="prior_cvt+severe"),
    pytest.param({"fvl_heterozygous", "pt_g20210a_heterozygous"}, {}, "severe_thrombophilia", id="2-different-mild"),
    pytest.param({"active_cancer", "pregnancy"}, {}, "cancer", id="cancer+pregnancy"),
    pytest.param({"pregnancy", "fvl_heterozygous"}, {}, "pregnancy", id="pregnancy+mild"),
    pytest.param({"fvl_heterozygous", "inflammatory_disease"}, {}, "mild_thrombophilia", id="mild+persistent"),
    pytest.param({"nephrotic_syndrome", "dehydration"}, {}, "persistent", id="persistent+transient"),
    pytest.param({"infection", "head_trauma", "oral_contraceptive"}, {}, "transient", id="transients-only"),
]


@pytest.mark.parametrize(("codes_given", "flags", "category"), PRECEDENCE_CASES)
def test_section_2_first_applicable_row_wins(codes_given: set[str], flags: dict[str, bool], category: str) -> None:
    assert advise(risk_factors=codes_given, **flags)["category"] == category


def test_same_mild_code_twice_counts_once() -> None:
    # Given the JSON input repeats one mild code (a set: it cannot count as a combined defect)
    parsed = facts_from_mapping({"diagnosed_on": "2025-03-10", "risk_factors": ["fvl_heterozygous"] * 2})
    # Then it is one mild code, not a combined thrombophilia defect
    assert parsed.risk_factors == frozenset({"fvl_heterozygous"})
    assert recommend(parsed).category == "mild_thrombophilia"


def test_finite_courses_carry_the_eso2017_note_and_indefinite_ones_do_not() -> None:
    for given in ({}, {"risk_factors": {"infection"}}, {"risk_factors": {"pregnancy"}}):
        note = by_code(advise(**given)["duration"]["notes"], "eso2017_no_recommendation")
        assert note["source"] == "ESO2017"
        assert "very poor quality of evidence" in note["message"]
    for given in ({"prior_cvt": True}, {"risk_factors": {"active_cancer"}}):
        assert "eso2017_no_recommendation" not in codes(advise(**given)["duration"]["notes"])


def test_persistent_factor_flags_consider_extending() -> None:
    note = by_code(advise(risk_factors={"myeloproliferative"})["duration"]["notes"], "consider_extending")
    assert "consider extending" in note["message"].lower()
    assert "persists" in note["message"]
    assert "consider_extending" not in codes(advise(risk_factors={"infection"})["duration"]["notes"])
    assert "consider_extending" not in codes(advise()["duration"]["notes"])


def test_transient_row_shows_the_efns2010_three_months_disagreement() -> None:
    note = by_code(advise(risk_factors={"infection"})["duration"]["notes"], "efns2010_three_months")
    assert "3 months" in note["message"]
    assert "EFNS2010" in note["source"]
    assert "efns2010_three_months" not in codes(advise()["duration"]["notes"])


def test_pregnancy_without_delivery_date_says_six_weeks_after_delivery_date_pending() -> None:
    # Given a CVT in pregnancy, delivery not yet recorded (rev 2: never an end date that could fall before it)
    result = advise(risk_factors={"pregnancy"}, sex="female")
    # Then there is no earliest end date, only "6 weeks after delivery (date pending)", and a note says why
    assert result["duration"]["earliest_end_on"] is None
    assert result["duration"]["earliest_end_text"] == "6 weeks after delivery (date pending)"
    assert result["duration"]["min_months"] == 6
    note = by_code(result["duration"]["notes"], "six_weeks_after_delivery")
    assert "6 weeks after delivery" in note["message"]
    # And once delivery is known the note is gone
    delivered = advise(risk_factors={"pregnancy"}, delivered_on=date(2025, 5, 1))
    assert "six_weeks_after_delivery" not in codes(delivered["duration"]["notes"])


def test_cancer_duration_says_extrapolation() -> None:
    duration = advise(risk_factors={"active_cancer"})["duration"]
    assert "extrapolation" in duration["source"]
    assert "while_cancer_active" in codes(duration["notes"])


# ---------------------------------------------------------------------------------------------------------
# §3 Acute phase, oral options, DOAC eligibility, Cockcroft-Gault
# ---------------------------------------------------------------------------------------------------------


def kidneys(*, age: int, weight: float, creatinine: float = 1.0, sex: str = "male") -> dict[str, Any]:
    return {"age": age, "weight_kg": weight, "serum_creatinine_mg_dl": creatinine, "sex": sex}


# Hand-computed CrCl values, (140 - age) x weight / (72 x creatinine):
#   age 60, 70 kg, 1.0: 80 x 70 / 72 = 77.78 → 77.8          female: x 0.85 = 66.11 → 66.1
#   age 68, 29 kg, 1.0: 72 x 29 / 72 = 29.0                  age 68, 30 kg: 30.0; 31 kg: 31.0
#   age 80, 70 kg, 1.0: 60 x 70 / 72 = 58.33 → 58.3          age 79, 70 kg: 61 x 70 / 72 = 59.31 → 59.3
#   age 30, 70 kg, 1.0, female: 110 x 70 / 72 x 0.85 = 90.90 → 90.9   age 68, 28 kg, female: 28 x 0.85 = 23.8
SECTION_3_CASES = [
    # id, given, acute agent, oral agents, doac eligible, dabigatran dose, CrCl
    pytest.param(KIDNEYS_OK, "lmwh", ["warfarin", "dabigatran", "rivaroxaban", "apixaban"], True, 150, 77.8, id="default-lmwh-warfarin-dabigatran"),
    pytest.param(kidneys(age=60, weight=70, sex="female"), "lmwh", ["warfarin", "dabigatran", "rivaroxaban", "apixaban"], True, 150, 66.1, id="female-x0.85"),
    pytest.param(kidneys(age=68, weight=29), "ufh", ["warfarin"], False, None, 29.0, id="crcl-29-ufh-no-doac"),
    pytest.param(kidneys(age=68, weight=30), "lmwh", ["warfarin"], False, None, 30.0, id="crcl-30-lmwh-no-doac"),
    pytest.param(kidneys(age=68, weight=31), "lmwh", ["warfarin", "dabigatran", "rivaroxaban", "apixaban"], True, 150, 31.0, id="crcl-31-eligible"),
    pytest.param(kidneys(age=80, weight=70), "lmwh", ["warfarin", "dabigatran", "rivaroxaban", "apixaban"], True, 110, 58.3, id="age-80-110mg"),
    pytest.param(kidneys(age=79, weight=70), "lmwh", ["warfarin", "dabigatran", "rivaroxaban", "apixaban"], True, 150, 59.3, id="age-79-150mg"),
    pytest.param({"risk_factors": {"antiphospholipid_syndrome"}, **KIDNEYS_OK}, "lmwh", ["warfarin"], False, None, 77.8, id="aps-vka-only"),
    pytest.param({"pregnant": True, "risk_factors": {"pregnancy"}, **kidneys(age=30, weight=70, sex="female")}, "lmwh", [], False, None, 90.9, id="pregnant-lmwh-only"),
    pytest.param({"pregnant": True, **kidneys(age=68, weight=28, sex="female")}, "ufh", [], False, None, 23.8, id="pregnant-renal-ufh"),
    pytest.param({"breastfeeding": True, "risk_factors": {"puerperium"}, **kidneys(age=30, weight=70, sex="female")}, "lmwh", ["warfarin"], False, None, 90.9, id="breastfeeding-no-doac"),
    pytest.param({"age": 60, "sex": "male", "serum_creatinine_mg_dl": 1.0}, "lmwh", ["warfarin", "dabigatran", "rivaroxaban", "apixaban"], None, 150, None, id="crcl-unknown"),
    pytest.param({"risk_factors": {"antiphospholipid_syndrome"}}, "lmwh", ["warfarin"], False, None, None, id="crcl-unknown-but-aps"),
    pytest.param({"hemorrhage": True, **KIDNEYS_OK}, "lmwh", ["warfarin", "dabigatran", "rivaroxaban", "apixaban"], True, 150, 77.8, id="hemorrhage-still-anticoagulate"),
    pytest.param({"risk_factors": {"active_cancer"}, **KIDNEYS_OK}, "lmwh", ["warfarin", "dabigatran", "rivaroxaban", "apixaban"], True, 150, 77.8, id="active-cancer-doac-allowed"),
]  # fmt: skip


@pytest.mark.parametrize(("given", "acute", "oral", "eligible", "dose", "crcl"), SECTION_3_CASES)
def test_section_3_agents_and_doac_eligibility(
    given: dict[str, Any], acute: str, oral: list[str], eligible: bool | None, dose: int | None, crcl: float | None
) -> None:
    # When the rules run on one §3 situation
    result = advise(**given)
    # Then the acute agent, the oral options, DOAC eligibility and CrCl are as the reference says
    assert result["acute_phase"]["agent"] == acute
    assert agents(result) == oral
    assert result["doac_eligible"]["eligible"] is eligible
    assert result["creatinine_clearance_ml_min"] == crcl
    if dose is not None:
        dabigatran = result["oral_options"][1]
        assert (dabigatran["dose_mg"], dabigatran["frequency"], dabigatran["eligible"]) == (
            dose,
            "twice daily",
            eligible,
        )


def test_cockcroft_gault_by_hand() -> None:
    assert cockcroft_gault(age=60, weight_kg=70, sex="male", creatinine_mg_dl=1.0) == pytest.approx(5600 / 72)
    assert cockcroft_gault(age=60, weight_kg=70, sex="female", creatinine_mg_dl=1.0) == pytest.approx(5600 / 72 * 0.85)
    assert cockcroft_gault(age=40, weight_kg=90, sex="male", creatinine_mg_dl=2.0) == pytest.approx(100 * 90 / 144)


def test_creatinine_in_umol_per_litre_is_divided_by_88_4() -> None:
    # Given creatinine 132.6 µmol/L = 1.5 mg/dL; CrCl = 80 x 70 / (72 x 1.5) = 51.85 → 51.9
    parsed = facts_from_mapping(
        {"diagnosed_on": "2025-03-10", "age": 60, "sex": "male", "weight_kg": 70, "serum_creatinine_umol_l": 132.6}
    )
    assert UMOL_PER_MG_DL == 88.4
    assert parsed.serum_creatinine_mg_dl == pytest.approx(1.5)
    assert recommend(parsed).creatinine_clearance_ml_min == 51.9


def test_warfarin_option_is_inr_2_to_3_with_heparin_overlap() -> None:
    for given in ({}, KIDNEYS_OK, {"risk_factors": {"antiphospholipid_syndrome"}}, {"prior_cvt": True}):
        warfarin = advise(**given)["oral_options"][0]
        assert (warfarin["agent"], warfarin["inr_low"], warfarin["inr_high"], warfarin["inr_target"]) == (
            "warfarin",
            2.0,
            3.0,
            2.5,
        )
        assert "at least 5 days" in warfarin["message"]
        assert "two measurements 24 h apart" in warfarin["message"]
        assert "CHEST2012" in warfarin["source"]


def test_dabigatran_follows_5_to_15_days_of_parenteral_therapy() -> None:
    dabigatran = advise(**KIDNEYS_OK)["oral_options"][1]
    assert "after 5-15 days of parenteral therapy" in dabigatran["message"]
    assert "RESPECT-CVT" in dabigatran["source"]
    elderly = advise(**kidneys(age=85, weight=70))["oral_options"][1]
    assert "EU label" in elderly["source"]


def test_acute_phase_sources() -> None:
    assert advise()["acute_phase"]["source"] == "ESO2017"
    assert "CSBP2024 §4.1" in advise(pregnant=True)["acute_phase"]["source"]
    renal = advise(**kidneys(age=68, weight=29))["acute_phase"]
    assert "below 30 mL/min" in renal["message"]
    assert "throughout pregnancy" in advise(pregnant=True)["acute_phase"]["message"]


DOAC_REASON_CASES = [
    pytest.param({"risk_factors": {"antiphospholipid_syndrome"}, **KIDNEYS_OK}, ["aps_vka_only"], id="aps"),
    pytest.param({"pregnant": True, **KIDNEYS_OK}, ["pregnancy_lmwh_only"], id="pregnant"),
    pytest.param({"breastfeeding": True, "risk_factors": {"puerperium"}, **KIDNEYS_OK}, ["breastfeeding_no_doac"], id="breastfeeding"),
    pytest.param(kidneys(age=68, weight=30), ["renal_doac_contraindicated"], id="crcl-30"),
    pytest.param({"pregnant": True, "breastfeeding": True, **kidneys(age=68, weight=30, sex="female")},
                 ["pregnancy_lmwh_only", "breastfeeding_no_doac", "renal_doac_contraindicated"], id="several"),
    pytest.param({"breastfeeding": True, "risk_factors": {"puerperium"}}, ["breastfeeding_no_doac", "crcl_unknown"], id="excluded-and-unknown"),
    pytest.param(KIDNEYS_OK, [], id="none"),
]  # fmt: skip


@pytest.mark.parametrize(("given", "reason_codes"), DOAC_REASON_CASES)
def test_each_doac_exclusion_is_a_sourced_reason(given: dict[str, Any], reason_codes: list[str]) -> None:
    reasons = advise(**given)["doac_eligible"]["reasons"]
    assert codes(reasons) == reason_codes
    assert all(reason["source"] and reason["message"] for reason in reasons)


@pytest.mark.parametrize(
    ("missing", "given"),
    [
        ("weight_kg", {"age": 60, "sex": "male", "serum_creatinine_mg_dl": 1.0}),
        ("sex", {"age": 60, "weight_kg": 70.0, "serum_creatinine_mg_dl": 1.0}),
        ("serum creatinine", {"age": 60, "sex": "male", "weight_kg": 70.0}),
    ],
)
def test_unknown_crcl_makes_eligibility_unknown_and_names_the_missing_input(missing: str, given: dict) -> None:
    result = advise(**given)
    assert result["creatinine_clearance_ml_min"] is None
    assert result["doac_eligible"]["eligible"] is None
    reason = by_code(result["doac_eligible"]["reasons"], "crcl_unknown")
    assert f"missing: {missing}" in reason["message"]
    assert [option["eligible"] for option in result["oral_options"][1:]] == [None, None, None]


# ---------------------------------------------------------------------------------------------------------
# §5 Warnings: every row, exactly when its condition holds
# ---------------------------------------------------------------------------------------------------------

SECTION_5_ROWS = [
    # code, severity, trigger, source substring, every warning expected for that trigger
    pytest.param("hemorrhage_not_contraindication", "info", {"hemorrhage": True}, "AHA2011 (IIa); EFNS2010; SEED000", None),
    pytest.param("subdural_caution", "caution", {"subdural_hematoma": True}, "SEED000", None),
    pytest.param("microbleeds_caution", "caution", {"microbleeds": 1}, "Liang 2018 meta-analysis", None),
    pytest.param("anti_amyloid_therapy", "urgent", {"anti_amyloid_therapy": True}, "AUR2023", None),
    pytest.param("aps_vka_only", "restriction", {"risk_factors": {"antiphospholipid_syndrome"}}, "EULAR 2019", None),
    pytest.param("pregnancy_lmwh_only", "restriction", {"pregnant": True}, "CSBP2024 §4.1", None),
    pytest.param("breastfeeding_no_doac", "restriction", {"breastfeeding": True, "risk_factors": {"puerperium"}},
                 "CSBP2024 §4.1", None),
    pytest.param("renal_doac_contraindicated", "restriction", kidneys(age=68, weight=30), "EHRA", None),
    # rev 2 rows
    pytest.param("pediatric_out_of_scope", "urgent", {"age": 17}, "SCOPE", None),
    pytest.param("pediatric_out_of_scope", "urgent", {"age": None}, "SCOPE", None, id="pediatric-age-unknown"),
    pytest.param("heparin_contraindicated", "urgent", {"risk_factors": {"vitt"}}, "VITT2021", None),
    pytest.param("heparin_contraindicated", "urgent", {"risk_factors": {"heparin_induced_thrombocytopenia"}},
                 "VITT2021", None, id="heparin-hit"),
    pytest.param("doac_interaction", "caution", {"medications": {"carbamazepine"}}, "EHRA",
                 ["doac_interaction", "warfarin_interaction"]),
    pytest.param("doac_interaction", "caution", {"medications": {"aspirin"}, **KIDNEYS_OK}, "EHRA",
                 ["doac_interaction", "warfarin_interaction"], id="doac-interaction-bleeding"),
    pytest.param("warfarin_interaction", "caution", {"medications": {"metronidazole"}}, "US label (warfarin)", None),
    pytest.param("doac_caution", "caution", {"weight_kg": 121.0, "age": 60, "sex": "male",
                                             "serum_creatinine_mg_dl": 1.0}, "RESPECT-CVT", None),
    pytest.param("estrogen_avoid", "info", {"risk_factors": {"oral_contraceptive"}}, "ESO2017", None),
    pytest.param("estrogen_avoid", "info", {"risk_factors": {"hormone_therapy"}}, "ESO2017", None, id="estrogen_avoid-hormone"),
    pytest.param("intracranial_hypotension", "caution", {"risk_factors": {"intracranial_hypotension"}}, "SEED002", None),
    pytest.param("deterioration", "urgent", {"deterioration": True}, "AHA2011 (I-C); SEED000; SEED002", None),
    pytest.param("cancer_extrapolated", "caution", {"risk_factors": {"active_cancer"}}, "extrapolation",
                 ["cancer_extrapolated", "doac_active_cancer"]),
    pytest.param("thrombophilia_test_on_anticoag", "caution", {"thrombophilia_tested_on_anticoagulant": True}, "AHA2011 (IIa-B)", None),
    pytest.param("doac_active_cancer", "caution", {"risk_factors": {"active_cancer"}, **KIDNEYS_OK}, "ACTION-CVT",
                 ["cancer_extrapolated", "doac_active_cancer"]),
]  # fmt: skip


@pytest.mark.parametrize(("code", "severity", "trigger", "source", "expected_codes"), SECTION_5_ROWS)
def test_section_5_warning_appears_exactly_when_its_condition_holds(
    code: str, severity: str, trigger: dict[str, Any], source: str, expected_codes: list[str] | None
) -> None:
    # Given a neutral episode (no warning at all) and the same episode with the row's condition
    assert advise(**KIDNEYS_OK)["warnings"] == []
    # When the condition holds
    warnings = advise(**trigger)["warnings"]
    # Then the warning is there once, with the table's severity and its source, and nothing else fired
    warning = by_code(warnings, code)
    assert warning["severity"] == severity
    assert source in warning["source"]
    assert warning["message"]
    assert codes(warnings) == (expected_codes or [code])


def test_section_5_walk_covers_every_warning_code() -> None:
    walked = {p.values[0] for p in SECTION_5_ROWS}
    reference_codes = [
        "hemorrhage_not_contraindication",
        "subdural_caution",
        "microbleeds_caution",
        "anti_amyloid_therapy",
        "aps_vka_only",
        "pregnancy_lmwh_only",
        "breastfeeding_no_doac",
        "renal_doac_contraindicated",
        "estrogen_avoid",
        "intracranial_hypotension",
        "deterioration",
        "cancer_extrapolated",
        "thrombophilia_test_on_anticoag",
    ]
    rev_2_codes = [
        "pediatric_out_of_scope",
        "heparin_contraindicated",
        "doac_interaction",
        "warfarin_interaction",
        "doac_caution",
    ]
    # The reference's codes in its order (the rev-2 rows sit after renal_doac_contraindicated), then our one
    # addition (active cancer with a DOAC).
    reference_codes[8:8] = rev_2_codes
    assert list(WARNING_CODES) == [*reference_codes, "doac_active_cancer"]
    assert walked == set(WARNING_CODES)


@pytest.mark.parametrize(
    ("given", "absent"),
    [
        ({"microbleeds": 0}, "microbleeds_caution"),
        (kidneys(age=68, weight=31), "renal_doac_contraindicated"),
        ({}, "renal_doac_contraindicated"),  # CrCl unknown is not CrCl ≤ 30
        ({"risk_factors": {"infection"}}, "estrogen_avoid"),
        ({"risk_factors": {"active_cancer", "antiphospholipid_syndrome"}, **KIDNEYS_OK}, "doac_active_cancer"),
        ({"risk_factors": {"active_cancer", "antiphospholipid_syndrome"}}, "cancer_extrapolated"),
        ({"risk_factors": {"active_cancer"}, "pregnant": True}, "doac_active_cancer"),
    ],
)
def test_section_5_warning_absent_when_condition_does_not_hold(given: dict[str, Any], absent: str) -> None:
    assert absent not in codes(advise(**given)["warnings"])


def test_microbleeds_warning_counts_from_one() -> None:
    assert by_code(advise(microbleeds=7)["warnings"], "microbleeds_caution")["severity"] == "caution"
    assert "130/80" in by_code(advise(microbleeds=1)["warnings"], "microbleeds_caution")["message"]


def test_acknowledgement_severities() -> None:
    assert frozenset({"caution", "urgent"}) == ACKNOWLEDGE_SEVERITIES
    assert {row.severity for row in rules.WARNING_TABLE} <= set(rules.SEVERITIES)


# ---------------------------------------------------------------------------------------------------------
# §4 Follow-ups implied by the recommendation
# ---------------------------------------------------------------------------------------------------------


def test_follow_up_kinds() -> None:
    assert FOLLOW_UP_KINDS == (
        "venous_imaging",
        "microbleed_mri",
        "end_of_therapy_review",
        "annual_review",
        "cancer_review",
        "thrombophilia_testing",
    )


def test_finite_course_follow_ups() -> None:
    # Given a transient CVT diagnosed 2025-03-10 (earliest end 2025-06-10)
    result = advise(risk_factors={"infection"})
    # Then: venography at 3 months (window to 6), review 2 weeks before the earliest end,
    # thrombophilia testing 2-4 weeks after it; no annual review
    assert [f["kind"] for f in result["follow_ups"]] == [
        "venous_imaging",
        "end_of_therapy_review",
        "thrombophilia_testing",
    ]
    imaging = follow_up(result, "venous_imaging")
    assert (imaging["due_on"], imaging["window_end_on"]) == ("2025-06-10", "2025-09-10")
    assert imaging["source"] == "AHA2011 (IIa-C); CSBP2024 §3.2; SEED002"
    review = follow_up(result, "end_of_therapy_review")
    assert (review["due_on"], review["window_end_on"], review["source"]) == ("2025-05-27", "2025-06-10", "CLINIC")
    testing = follow_up(result, "thrombophilia_testing")
    assert (testing["due_on"], testing["window_end_on"]) == ("2025-06-24", "2025-07-08")
    assert testing["source"] == "AHA2011 (IIa-B), to consider; ESO2017 suggests against routine screening"


def test_indefinite_course_gets_a_yearly_review_and_no_end_of_therapy_items() -> None:
    result = advise(prior_cvt=True)
    assert [f["kind"] for f in result["follow_ups"]] == ["venous_imaging", "annual_review"]
    annual = follow_up(result, "annual_review")
    assert (annual["due_on"], annual["window_end_on"], annual["source"]) == ("2026-03-10", None, "CLINIC")


def test_cancer_gets_a_six_monthly_review_instead_of_the_yearly_one() -> None:
    result = advise(risk_factors={"active_cancer"})
    assert [f["kind"] for f in result["follow_ups"]] == ["venous_imaging", "cancer_review"]
    assert follow_up(result, "cancer_review")["due_on"] == "2025-09-10"
    assert "extrapolation" in follow_up(result, "cancer_review")["source"]


def test_microbleed_mri_only_when_microbleeds_were_seen() -> None:
    mri = follow_up(advise(microbleeds=2), "microbleed_mri")
    assert (mri["due_on"], mri["window_end_on"], mri["source"]) == ("2025-06-10", "2025-09-10", "SEED001")
    assert "microbleed_mri" not in [f["kind"] for f in advise()["follow_ups"]]


# ---------------------------------------------------------------------------------------------------------
# Calendar edge cases (relativedelta clamps to the month's last day)
# ---------------------------------------------------------------------------------------------------------


def test_30_november_plus_3_months_is_end_of_february() -> None:
    result = advise(diagnosed_on=date(2025, 11, 30), risk_factors={"infection"})
    assert result["duration"]["earliest_end_on"] == "2026-02-28"
    assert follow_up(result, "venous_imaging")["due_on"] == "2026-02-28"
    assert result["duration"]["latest_end_on"] == "2026-05-30"
    # Review 2 weeks before the clamped end, testing 2 weeks after it
    assert follow_up(result, "end_of_therapy_review")["due_on"] == "2026-02-14"
    assert follow_up(result, "thrombophilia_testing")["due_on"] == "2026-03-14"


def test_30_november_plus_3_months_in_a_leap_year_is_29_february() -> None:
    result = advise(diagnosed_on=date(2027, 11, 30), risk_factors={"infection"})
    assert result["duration"]["earliest_end_on"] == "2028-02-29"


def test_29_february_plus_3_and_plus_12_months() -> None:
    result = advise(diagnosed_on=date(2024, 2, 29))  # unprovoked: 6-12 months
    assert follow_up(result, "venous_imaging")["due_on"] == "2024-05-29"
    assert result["duration"]["earliest_end_on"] == "2024-08-29"
    assert result["duration"]["latest_end_on"] == "2025-02-28"
    assert follow_up(advise(diagnosed_on=date(2024, 2, 29), prior_cvt=True), "annual_review")["due_on"] == "2025-02-28"


def test_31_august_plus_6_months() -> None:
    assert advise(diagnosed_on=date(2025, 8, 31))["duration"]["earliest_end_on"] == "2026-02-28"


def test_pregnancy_earliest_end_follows_a_late_delivery() -> None:
    # Given CVT in pregnancy on 2025-01-15 and delivery on 2025-06-20:
    # 6 months from diagnosis = 2025-07-15, 6 weeks after delivery = 2025-08-01 → the later one
    result = advise(diagnosed_on=date(2025, 1, 15), risk_factors={"pregnancy"}, delivered_on=date(2025, 6, 20))
    assert result["duration"]["earliest_end_on"] == "2025-08-01"
    assert follow_up(result, "end_of_therapy_review")["due_on"] == "2025-07-18"
    # And with an early delivery the 6 months from diagnosis decide
    early = advise(diagnosed_on=date(2025, 1, 15), risk_factors={"puerperium"}, delivered_on=date(2025, 1, 5))
    assert early["duration"]["earliest_end_on"] == "2025-07-15"


# ---------------------------------------------------------------------------------------------------------
# The seed cases
# ---------------------------------------------------------------------------------------------------------


def test_seed_002_cvt_secondary_to_intracranial_hypotension() -> None:
    # Given the 60-year-old man of seed 002: CVT from a CSF leak after spine surgery, subdural collections,
    # deterioration on day 5. His lung cancer was resected before: not coded as active cancer, so it does
    # not count (the rules only read codes).
    result = advise(
        age=60,
        sex="male",
        weight_kg=70.0,
        serum_creatinine_mg_dl=1.0,
        risk_factors={"intracranial_hypotension"},
        subdural_hematoma=True,
        deterioration=True,
    )
    # Then: transient, 3-6 months; dabigatran 150 mg twice daily is an option (CrCl 77.8 > 30)
    assert result["category"] == "transient"
    assert (result["duration"]["min_months"], result["duration"]["max_months"]) == (3, 6)
    assert result["creatinine_clearance_ml_min"] == 77.8
    dabigatran = result["oral_options"][1]
    assert (dabigatran["agent"], dabigatran["dose_mg"], dabigatran["eligible"]) == ("dabigatran", 150, True)
    # And the warnings of his course, the deterioration one urgent
    assert codes(result["warnings"]) == ["subdural_caution", "intracranial_hypotension", "deterioration"]
    assert by_code(result["warnings"], "deterioration")["severity"] == "urgent"
    assert "epidural blood patch" in by_code(result["warnings"], "intracranial_hypotension")["message"]
    # And MR venography at 3 months, as in the case report
    assert follow_up(result, "venous_imaging")["due_on"] == "2025-06-10"


def test_seed_000_small_venous_hemorrhage_is_still_anticoagulated() -> None:
    # Given a small venous hemorrhage from a CVT with a transient infection
    result = advise(hemorrhage=True, risk_factors={"infection"})
    # Then the bleed is flagged as NOT a contraindication, and anticoagulation is still recommended
    warning = by_code(result["warnings"], "hemorrhage_not_contraindication")
    assert "not a contraindication" in warning["message"]
    assert result["acute_phase"]["agent"] == "lmwh"
    warfarin = result["oral_options"][0]
    assert (warfarin["agent"], warfarin["inr_low"], warfarin["inr_high"]) == ("warfarin", 2.0, 3.0)
    assert (result["duration"]["min_months"], result["duration"]["max_months"]) == (3, 6)


# ---------------------------------------------------------------------------------------------------------
# Sources: every item cites a known short name; the sources list is exactly what was cited
# ---------------------------------------------------------------------------------------------------------


def every_table_source() -> list[str]:
    return [
        *(row.source for row in rules.CATEGORY_TABLE),
        *(row.source for row in rules.DURATION_NOTES),
        *(row.source for row in rules.ACUTE_PHASE_TABLE),
        *(row.source for row in rules.DOAC_EXCLUSIONS),
        *(row.source for row in rules.WARNING_TABLE),
        *(row.source for row in rules.FOLLOW_UP_TABLE),
        rules.WARFARIN_SOURCE,
    ]


@pytest.mark.parametrize("source", sorted(set(every_table_source())))
def test_every_rule_cites_a_known_source(source: str) -> None:
    assert rules.source_names(source), f"{source!r} cites no name from SOURCES"


def test_sources_list_is_every_cited_name_with_its_citation() -> None:
    result = advise(hemorrhage=True, microbleeds=1, risk_factors={"infection"}, **KIDNEYS_OK)
    items = [
        result["duration"],
        *result["duration"]["notes"],
        result["acute_phase"],
        *result["oral_options"],
        *result["doac_eligible"]["reasons"],
        *result["warnings"],
        *result["follow_ups"],
        *result["rationale"],
        result["acute_phase"]["dose_suggestion"],
    ]
    cited = {name for item in items for name in rules.source_names(item["source"])}
    assert [s["name"] for s in result["sources"]] == sorted(cited)
    assert {"SEED000", "SEED001", "CLINIC", "RESPECT-CVT"} <= cited
    assert all(s["citation"] == SOURCES[s["name"]] for s in result["sources"])


def test_source_names_do_not_confuse_similar_names() -> None:
    assert rules.source_names("AHA2024") == ["AHA2024"]
    assert rules.source_names("RESPECT-CVT; SEED002") == ["RESPECT-CVT", "SEED002"]
    assert rules.source_names("no guideline") == []


def test_output_is_json_with_iso_dates() -> None:
    result = advise(risk_factors={"infection"})
    assert json.loads(json.dumps(result)) == result
    assert result["rules_version"] == rules.RULES_VERSION
    assert set(result) == {
        "rules_version",
        "category",
        "duration",
        "acute_phase",
        "oral_options",
        "doac_eligible",
        "creatinine_clearance_ml_min",
        "warnings",
        "follow_ups",
        "sources",
        "rationale",  # rev 2
        "scope",  # rev 2
        "doac_formulary",  # rev 2
    }


# ---------------------------------------------------------------------------------------------------------
# Input: EpisodeFacts validation and the JSON input format
# ---------------------------------------------------------------------------------------------------------

VALID = {"diagnosed_on": "2025-03-10"}

BAD_INPUTS = [
    pytest.param({}, "diagnosed_on", "required", id="missing-date"),
    pytest.param({"diagnosed_on": None}, "diagnosed_on", "required", id="null-date"),
    pytest.param({"diagnosed_on": "2025-13-01"}, "diagnosed_on", "not a calendar date", id="month-13"),
    pytest.param({"diagnosed_on": "2025-02-30"}, "diagnosed_on", "not a calendar date", id="30-feb"),
    pytest.param({"diagnosed_on": "20250310"}, "diagnosed_on", "YYYY-MM-DD", id="basic-format"),
    pytest.param({"diagnosed_on": 20250310}, "diagnosed_on", "YYYY-MM-DD", id="number-date"),
    pytest.param({**VALID, "delivered_on": "yesterday"}, "delivered_on", "YYYY-MM-DD", id="bad-delivery"),
    pytest.param({**VALID, "risk_factors": ["foo"]}, "risk_factors",
                 "unknown code 'foo'; allowed: infection, head_trauma, neurosurgery", id="unknown-code"),
    pytest.param({**VALID, "risk_factors": "infection"}, "risk_factors", "list of codes", id="codes-not-list"),
    pytest.param({**VALID, "risk_factors": [1]}, "risk_factors", "unknown code 1", id="code-not-string"),
    pytest.param({**VALID, "age": "60"}, "age", "must be a number", id="age-string"),
    pytest.param({**VALID, "age": True}, "age", "must be a number", id="age-bool"),
    pytest.param({**VALID, "age": 60.5}, "age", "whole number", id="age-fraction"),
    pytest.param({**VALID, "age": -1}, "age", "between 0 and 130", id="age-negative"),
    pytest.param({**VALID, "age": 131}, "age", "between 0 and 130", id="age-too-high"),
    pytest.param({**VALID, "sex": "m"}, "sex", "allowed: male, female", id="sex"),
    pytest.param({**VALID, "weight_kg": -70}, "weight_kg", "between", id="weight-negative"),
    pytest.param({**VALID, "weight_kg": 0}, "weight_kg", "between", id="weight-zero"),
    pytest.param({**VALID, "weight_kg": "70"}, "weight_kg", "must be a number", id="weight-string"),
    pytest.param({**VALID, "weight_kg": False}, "weight_kg", "must be a number", id="weight-bool"),
    pytest.param({**VALID, "weight_kg": float("nan")}, "weight_kg", "between", id="weight-nan"),
    pytest.param({**VALID, "serum_creatinine_mg_dl": 0}, "serum_creatinine_mg_dl", "between", id="creatinine-zero"),
    pytest.param({**VALID, "serum_creatinine_mg_dl": -1.0}, "serum_creatinine_mg_dl", "between", id="creatinine-negative"),
    pytest.param({**VALID, "serum_creatinine_umol_l": -5}, "serum_creatinine_umol_l", "µmol/L", id="umol-negative"),
    pytest.param({**VALID, "serum_creatinine_mg_dl": 1.0, "serum_creatinine_umol_l": 88.4}, "serum_creatinine_umol_l",
                 "not both", id="both-creatinines"),
    pytest.param({**VALID, "hemorrhage": "yes"}, "hemorrhage", "true or false", id="bool-string"),
    pytest.param({**VALID, "pregnant": 1}, "pregnant", "true or false", id="bool-number"),
    pytest.param({**VALID, "breastfeeding": None}, "breastfeeding", "true or false", id="bool-null"),
    pytest.param({**VALID, "microbleeds": -1}, "microbleeds", "0 or more", id="microbleeds-negative"),
    pytest.param({**VALID, "microbleeds": 1.5}, "microbleeds", "whole number", id="microbleeds-fraction"),
    pytest.param({**VALID, "microbleeds": True}, "microbleeds", "number", id="microbleeds-bool"),
    pytest.param({**VALID, "microbleeds": None}, "microbleeds", "whole number", id="microbleeds-null"),
    pytest.param({**VALID, "foo": 1}, "foo", "unknown field; allowed: diagnosed_on, age, sex", id="unknown-key"),
    pytest.param({**VALID, "bad\nkey": 1}, "'bad\\nkey'", "unknown field", id="unknown-key-with-newline"),
    pytest.param(["2025-03-10"], "input", "JSON object", id="not-an-object"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "field", "fragment"), BAD_INPUTS)
def test_bad_input_raises_one_line_facts_error_naming_the_field(data: Any, field: str, fragment: str) -> None:
    with pytest.raises(FactsError) as caught:
        facts_from_mapping(data)
    err = caught.value
    assert err.field == field
    assert str(err) == f"{field}: {err.message}"
    assert "\n" not in str(err)
    assert fragment in str(err)


def test_valid_input_parses_absent_as_false_zero_or_unknown() -> None:
    parsed = facts_from_mapping({"diagnosed_on": "2025-03-10"})
    assert parsed == EpisodeFacts(diagnosed_on=DIAGNOSED)
    assert (parsed.age, parsed.microbleeds, parsed.hemorrhage, parsed.risk_factors) == (None, 0, False, frozenset())


def test_valid_input_full() -> None:
    parsed = facts_from_mapping(
        {
            "diagnosed_on": "2025-03-10",
            "age": 60.0,  # JSON has one number type: a whole float is a whole number
            "sex": None,
            "weight_kg": 70,
            "serum_creatinine_mg_dl": 1.1,
            "risk_factors": ["infection", "fvl_heterozygous", "puerperium"],
            "prior_cvt": False,
            "hemorrhage": True,
            "microbleeds": 3,
            "delivered_on": "2025-02-02",
            "thrombophilia_tested_on_anticoagulant": True,
            "medications": ["levetiracetam", "co-trimoxazole"],
        }
    )
    assert parsed.medications == frozenset({"levetiracetam", "co_trimoxazole"})
    assert parsed.age == 60 and isinstance(parsed.age, int)
    assert parsed.sex is None
    assert parsed.delivered_on == date(2025, 2, 2)
    assert parsed.risk_factors == frozenset({"infection", "fvl_heterozygous", "puerperium"})
    assert (parsed.hemorrhage, parsed.microbleeds, parsed.thrombophilia_tested_on_anticoagulant) == (True, 3, True)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"risk_factors": {"foo"}}, "risk_factors"),
        ({"weight_kg": -1.0}, "weight_kg"),
        ({"serum_creatinine_mg_dl": -1.0}, "serum_creatinine_mg_dl"),
        ({"microbleeds": -1}, "microbleeds"),
        ({"age": -1}, "age"),
        ({"sex": "x"}, "sex"),
        ({"hemorrhage": "no"}, "hemorrhage"),
        ({"diagnosed_on": "2025-03-10"}, "diagnosed_on"),
        ({"delivered_on": date(9999, 12, 31)}, "delivered_on"),
    ],
)
def test_episode_facts_validates_on_creation(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(FactsError) as caught:
        facts(**kwargs)
    assert caught.value.field == field


def test_episode_facts_normalises_codes_to_a_frozenset() -> None:
    assert facts(risk_factors=["infection", "infection"]).risk_factors == frozenset({"infection"})
