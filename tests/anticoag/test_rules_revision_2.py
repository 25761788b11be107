"""Every (rev 2) row of ``clinical-reference.md`` and each boundary the issue names, table by table.

Pure tests: no database. Expected values are written out by hand from the reference (CrCl by hand:
(140 - age) x weight / (72 x creatinine), x 0.85 for women), never computed with the code under test.
"""

from __future__ import annotations

import io
import json
from datetime import date
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from anticoag import medicines
from anticoag.rules import (
    RULES_VERSION,
    SOURCES,
    EpisodeFacts,
    FactsError,
    RulesPolicy,
    facts_from_mapping,
    recommend,
)

DIAGNOSED = date(2025, 3, 10)  # + 6 months = 2025-09-10


def kidneys(*, age: int | None, weight: float, creatinine: float = 1.0, sex: str = "male") -> dict[str, Any]:
    return {"age": age, "weight_kg": weight, "serum_creatinine_mg_dl": creatinine, "sex": sex}


#: 60-year-old man, 70 kg, creatinine 1.0: CrCl = 80 x 70 / 72 = 77.8 mL/min.
ADULT = kidneys(age=60, weight=70)
#: 30-year-old woman, 70 kg, creatinine 0.8: CrCl = 110 x 70 / 57.6 x 0.85 = 113.6 mL/min.
WOMAN = kidneys(age=30, weight=70, creatinine=0.8, sex="female")


def advise(policy: RulesPolicy | None = None, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("diagnosed_on", DIAGNOSED)
    facts = EpisodeFacts(**kwargs)
    return (recommend(facts) if policy is None else recommend(facts, policy=policy)).as_dict()


def agents(result: dict[str, Any]) -> list[str]:
    return [option["agent"] for option in result["oral_options"]]


def warning(result: dict[str, Any], code: str) -> dict[str, Any]:
    matches = [w for w in result["warnings"] if w["code"] == code]
    assert len(matches) == 1, f"{code}: {[w['code'] for w in result['warnings']]}"
    return matches[0]


def warning_codes(result: dict[str, Any]) -> list[str]:
    return [w["code"] for w in result["warnings"]]


def option(result: dict[str, Any], agent: str) -> dict[str, Any]:
    (match,) = [o for o in result["oral_options"] if o["agent"] == agent]
    return match


ALL_ORAL = ["warfarin", "dabigatran", "rivaroxaban", "apixaban"]


def test_rules_version_changed_with_revision_2() -> None:
    assert RULES_VERSION == "2026.12.1"
    assert advise(**ADULT)["rules_version"] == RULES_VERSION


# ---------------------------------------------------------------------------------------------------------
# The three dangerous cases of the issue
# ---------------------------------------------------------------------------------------------------------


def test_pregnancy_code_alone_means_lmwh_only_with_the_pregnancy_warning() -> None:
    # Given a CVT coded `pregnancy`, no flag of any kind, an adult woman with normal kidneys
    result = advise(risk_factors={"pregnancy"}, **WOMAN)
    # Then no warfarin, no DOAC, LMWH, and the pregnancy warning
    assert agents(result) == []
    assert result["acute_phase"]["agent"] == "lmwh"
    assert result["doac_eligible"]["eligible"] is False
    assert "pregnancy_lmwh_only" in [r["code"] for r in result["doac_eligible"]["reasons"]]
    assert warning(result, "pregnancy_lmwh_only")["severity"] == "restriction"
    assert result["category"] == "pregnancy"


def test_the_pregnant_alias_is_the_pregnancy_code_and_never_ends_before_the_delivery() -> None:
    # Given the revision-1 input `pregnant: true` without any code
    result = advise(pregnant=True, **WOMAN)
    # Then it is the pregnancy category (not unprovoked), and the end waits for the delivery
    assert result["category"] == "pregnancy"
    assert result["duration"]["earliest_end_on"] is None
    assert result["duration"]["earliest_end_text"] == "6 weeks after delivery (date pending)"
    assert agents(result) == []
    assert "end_of_therapy_review" not in [f["kind"] for f in result["follow_ups"]]


@pytest.mark.parametrize(
    "given",
    [
        pytest.param(kidneys(age=8, weight=25, creatinine=0.4), id="8-year-old-25-kg"),
        pytest.param(kidneys(age=0, weight=3.5, creatinine=0.3), id="newborn"),
        pytest.param(kidneys(age=17, weight=70), id="17"),
        pytest.param(kidneys(age=None, weight=70), id="age-unknown"),
    ],
)
def test_a_child_or_an_unknown_age_gets_no_oral_agent_no_dose_and_no_adult_crcl(given: dict[str, Any]) -> None:
    result = advise(**given)
    assert agents(result) == []
    assert result["creatinine_clearance_ml_min"] is None
    assert result["acute_phase"]["dose_suggestion"] is None
    assert "pediatric protocol" in result["acute_phase"]["message"]
    pediatric = warning(result, "pediatric_out_of_scope")
    assert pediatric["severity"] == "urgent"
    assert "EINSTEIN-Jr CVT" in pediatric["message"] and "DIVERSITY" in pediatric["message"]
    # category and duration are shown, marked "adult rule"
    assert result["duration"]["adult_rule"] is True
    assert "adult_rule" in [n["code"] for n in result["duration"]["notes"]]
    assert result["scope"]["adult"] is False
    assert result["doac_eligible"]["eligible"] is False


def test_an_unknown_age_asks_for_it() -> None:
    result = advise(**kidneys(age=None, weight=70))
    assert "record the age" in warning(result, "pediatric_out_of_scope")["message"]


def test_anti_amyloid_therapy_is_an_urgent_warning_citing_aur2023() -> None:
    result = advise(anti_amyloid_therapy=True, **ADULT)
    amyloid = warning(result, "anti_amyloid_therapy")
    assert amyloid["severity"] == "urgent"
    assert "AUR2023" in amyloid["source"]
    assert "should not receive lecanemab" in amyloid["message"]
    assert "prescriber" in amyloid["message"]
    assert "donanemab by analogy [verify]" in amyloid["message"]
    assert {"name": "AUR2023", "citation": SOURCES["AUR2023"]} in result["sources"]


# ---------------------------------------------------------------------------------------------------------
# §0 boundaries: age 17 / 18
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "oral", "crcl"),
    [
        # age 17: out of scope; age 18: an adult. CrCl 18 y, 70 kg, 1.0: 122 x 70 / 72 = 118.6
        (17, [], None),
        (18, ALL_ORAL, 118.6),
    ],
)
def test_age_boundary_17_18(age: int, oral: list[str], crcl: float | None) -> None:
    result = advise(**kidneys(age=age, weight=70))
    assert agents(result) == oral
    assert result["creatinine_clearance_ml_min"] == crcl
    assert ("pediatric_out_of_scope" in warning_codes(result)) is (age < 18)


# ---------------------------------------------------------------------------------------------------------
# §3 / §4 boundaries: CrCl 29 / 30 / 31 / 49 / 50 (age 68, creatinine 1.0: CrCl = weight)
# ---------------------------------------------------------------------------------------------------------

CRCL_ROWS = [
    # CrCl, acute agent, DOAC eligible, rivaroxaban dose, enoxaparin frequency
    pytest.param(29, "ufh", False, None, "once daily", id="crcl-29"),
    pytest.param(30, "lmwh", False, None, "every 12 hours", id="crcl-30"),
    pytest.param(31, "lmwh", True, 15, "every 12 hours", id="crcl-31"),
    pytest.param(49, "lmwh", True, 15, "every 12 hours", id="crcl-49"),
    pytest.param(50, "lmwh", True, 20, "every 12 hours", id="crcl-50"),
]


@pytest.mark.parametrize(("crcl", "acute", "eligible", "rivaroxaban_mg", "enoxaparin_every"), CRCL_ROWS)
def test_crcl_boundaries(
    crcl: int, acute: str, eligible: bool, rivaroxaban_mg: int | None, enoxaparin_every: str
) -> None:
    result = advise(**kidneys(age=68, weight=crcl))
    assert result["creatinine_clearance_ml_min"] == crcl
    # §3: UFH below 30; a DOAC not eligible at ≤ 30 (every DOAC, rev 2)
    assert result["acute_phase"]["agent"] == acute
    assert result["doac_eligible"]["eligible"] is eligible
    assert ("renal_doac_contraindicated" in warning_codes(result)) is (not eligible)
    # §3 rev 2: rivaroxaban 15 mg once daily at CrCl 30-49, else 20 mg
    if rivaroxaban_mg is None:
        assert agents(result) == ["warfarin"]
    else:
        assert agents(result) == ALL_ORAL
        rivaroxaban = option(result, "rivaroxaban")
        assert (rivaroxaban["dose_mg"], rivaroxaban["frequency"]) == (rivaroxaban_mg, "once daily")
    # §3 rev 2: enoxaparin 1 mg/kg every 12 hours; CrCl < 30: once daily (the weight is the CrCl here)
    dose = result["acute_phase"]["dose_suggestion"]
    assert (dose["agent"], dose["dose_mg"], dose["frequency"]) == ("enoxaparin", crcl, enoxaparin_every)


# ---------------------------------------------------------------------------------------------------------
# §3 DOAC options: doses, sources, evidence levels, [verify], formulary
# ---------------------------------------------------------------------------------------------------------


def test_three_doac_options_with_source_evidence_level_and_verified_flag() -> None:
    result = advise(**ADULT)
    assert agents(result) == ALL_ORAL
    expected = {
        # agent: dose, frequency, evidence, verified, source fragment
        "dabigatran": (150, "twice daily", "randomised", True, "RESPECT-CVT"),
        "rivaroxaban": (20, "once daily", "randomised", True, "SECRET"),
        "apixaban": (5, "twice daily", "observational", False, "ACTION-CVT"),
    }
    for agent, (dose, frequency, evidence, verified, source) in expected.items():
        got = option(result, agent)
        assert (got["dose_mg"], got["frequency"], got["evidence_level"], got["verified"]) == (
            dose,
            frequency,
            evidence,
            verified,
        )
        assert source in got["source"]
        assert got["eligible"] is True
        assert "after 5-15 days of parenteral therapy" in got["message"]
    assert option(result, "warfarin")["verified"] is True


def test_dabigatran_110_mg_from_age_80() -> None:
    # age 80, 70 kg, 1.0: 60 x 70 / 72 = 58.3
    dabigatran = option(advise(**kidneys(age=80, weight=70)), "dabigatran")
    assert (dabigatran["dose_mg"], dabigatran["frequency"]) == (110, "twice daily")
    assert "EU label (dabigatran)" in dabigatran["source"]


def test_rationale_shows_aha2024_and_eso2017() -> None:
    result = advise(**ADULT)
    rationale = {note["code"]: note for note in result["rationale"]}
    assert rationale["aha2024_vka_or_doac"]["source"] == "AHA2024"
    assert (
        "VKA" in rationale["aha2024_vka_or_doac"]["message"]
        or "vitamin K" in rationale["aha2024_vka_or_doac"]["message"]
    )
    assert rationale["eso2017_no_doac"]["source"] == "ESO2017"
    assert {"AHA2024", "ESO2017"} <= {s["name"] for s in result["sources"]}


@pytest.mark.parametrize(
    ("formulary", "oral"),
    [
        (("dabigatran", "rivaroxaban", "apixaban"), ALL_ORAL),
        (("rivaroxaban",), ["warfarin", "rivaroxaban"]),
        (("apixaban", "dabigatran"), ["warfarin", "dabigatran", "apixaban"]),  # the reference's order
        ((), ["warfarin"]),
    ],
)
def test_the_clinic_formulary_decides_which_doacs_are_proposed(formulary: tuple[str, ...], oral: list[str]) -> None:
    result = advise(policy=RulesPolicy(doac_formulary=formulary), **ADULT)
    assert agents(result) == oral
    assert result["doac_formulary"] == [a for a in ("dabigatran", "rivaroxaban", "apixaban") if a in formulary]


def test_an_unknown_doac_in_the_formulary_is_refused() -> None:
    with pytest.raises(FactsError) as caught:
        RulesPolicy(doac_formulary=("edoxaban",))
    assert caught.value.field == "formulary"
    assert "allowed: dabigatran, rivaroxaban, apixaban" in str(caught.value)


# ---------------------------------------------------------------------------------------------------------
# §3 DOAC eligibility and cautions (rev 2)
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("inducer", ["carbamazepine", "phenytoin", "phenobarbital", "rifampicin"])
def test_a_strong_inducer_makes_every_doac_ineligible(inducer: str) -> None:
    result = advise(medications={inducer}, **ADULT)
    assert agents(result) == ["warfarin"]
    assert result["doac_eligible"]["eligible"] is False
    reason = next(r for r in result["doac_eligible"]["reasons"] if r["code"] == "strong_inducer")
    assert inducer in reason["message"]
    assert "SECRET" in reason["source"] and "EHRA" in reason["source"]
    interaction = warning(result, "doac_interaction")
    assert inducer.capitalize() in interaction["message"]
    # and warfarin's INR falls
    assert "INR falls" in warning(result, "warfarin_interaction")["message"]


@pytest.mark.parametrize(
    ("weight", "caution"),
    [(120, False), (121, True)],
)
def test_weight_over_120_kg_is_a_doac_caution(weight: float, caution: bool) -> None:
    result = advise(**kidneys(age=60, weight=weight))
    assert agents(result) == ALL_ORAL  # the option stays
    assert ("doac_caution" in warning_codes(result)) is caution
    if caution:
        message = warning(result, "doac_caution")["message"]
        assert "weight 121 kg (over 120 kg)" in message
        assert "prefers rivaroxaban or apixaban to dabigatran [verify]" in message


@pytest.mark.parametrize("code", ["infection", "head_trauma"])
def test_cns_infection_or_head_trauma_is_a_doac_caution_to_acknowledge(code: str) -> None:
    result = advise(risk_factors={code}, **ADULT)
    assert agents(result) == ALL_ORAL
    caution = warning(result, "doac_caution")
    assert caution["severity"] == "caution"
    assert "RESPECT-CVT" in caution["message"] and "[verify]" in caution["message"]


def test_a_pgp_inhibitor_with_dabigatran_is_a_caution_and_an_interaction() -> None:
    result = advise(medications={"verapamil"}, **ADULT)
    assert agents(result) == ALL_ORAL
    assert "verapamil" in warning(result, "doac_caution")["message"]
    assert "Verapamil with dabigatran: reduce the dose or avoid" in warning(result, "doac_interaction")["message"]
    assert "warfarin_interaction" not in warning_codes(result)  # verapamil does not move the INR (§5a)


def test_no_pgp_caution_when_the_clinic_offers_no_dabigatran() -> None:
    result = advise(policy=RulesPolicy(doac_formulary=("rivaroxaban", "apixaban")), medications={"verapamil"}, **ADULT)
    assert "doac_caution" not in warning_codes(result)
    assert "doac_interaction" not in warning_codes(result)


def test_active_cancer_keeps_the_doacs_with_a_warning() -> None:
    result = advise(risk_factors={"active_cancer"}, **ADULT)
    assert agents(result) == ALL_ORAL
    assert "doac_active_cancer" in warning_codes(result)


def test_aps_is_vka_only_citing_eular_2019() -> None:
    result = advise(risk_factors={"antiphospholipid_syndrome"}, **ADULT)
    assert agents(result) == ["warfarin"]
    assert "EULAR 2019" in warning(result, "aps_vka_only")["source"]


# ---------------------------------------------------------------------------------------------------------
# §5a current medicines: every row of the table
# ---------------------------------------------------------------------------------------------------------

MEDICINE_ROWS = [
    # code, warnings expected for an adult with normal kidneys (all four agents offered unless inducer)
    pytest.param("carbamazepine", ["doac_interaction", "warfarin_interaction"], ["warfarin"]),
    pytest.param("levetiracetam", [], ALL_ORAL),
    pytest.param("lacosamide", [], ALL_ORAL),
    pytest.param("valproate", ["warfarin_interaction"], ALL_ORAL),
    pytest.param("verapamil", ["doac_interaction", "doac_caution"], ALL_ORAL),
    pytest.param("amiodarone", ["doac_interaction", "warfarin_interaction", "doac_caution"], ALL_ORAL),
    pytest.param("clarithromycin", ["doac_interaction", "doac_caution"], ALL_ORAL),
    pytest.param("metronidazole", ["warfarin_interaction"], ALL_ORAL),
    pytest.param("co_trimoxazole", ["warfarin_interaction"], ALL_ORAL),
    pytest.param("fluconazole", ["warfarin_interaction"], ALL_ORAL),
    pytest.param("aspirin", ["doac_interaction", "warfarin_interaction"], ALL_ORAL),
    pytest.param("ibuprofen", ["doac_interaction", "warfarin_interaction"], ALL_ORAL),
    pytest.param("sertraline", ["doac_interaction", "warfarin_interaction"], ALL_ORAL),
    pytest.param("venlafaxine", ["doac_interaction", "warfarin_interaction"], ALL_ORAL),
    pytest.param("combined_contraceptive", ["estrogen_avoid"], ALL_ORAL),
    pytest.param("hrt", ["estrogen_avoid"], ALL_ORAL),
]


@pytest.mark.parametrize(("code", "expected", "oral"), MEDICINE_ROWS)
def test_each_medicine_row_gives_its_warnings(code: str, expected: list[str], oral: list[str]) -> None:
    result = advise(medications={code}, **ADULT)
    assert agents(result) == oral
    assert warning_codes(result) == expected


def test_medicine_vocabulary_is_the_reference_table_and_all_verify() -> None:
    assert list(medicines.MEDICINES) == [
        "carbamazepine",
        "phenytoin",
        "phenobarbital",
        "rifampicin",
        "levetiracetam",
        "lacosamide",
        "valproate",
        "verapamil",
        "amiodarone",
        "dronedarone",
        "ketoconazole",
        "itraconazole",
        "clarithromycin",
        "metronidazole",
        "co_trimoxazole",
        "fluconazole",
        "aspirin",
        "clopidogrel",
        "ibuprofen",
        "naproxen",
        "sertraline",
        "venlafaxine",
        "combined_contraceptive",
        "hrt",
    ]
    assert all(m.verified is False and m.source for m in medicines.MEDICINES.values())
    assert {m.code for m in medicines.MEDICINES.values() if m.strong_inducer} == {
        "carbamazepine",
        "phenytoin",
        "phenobarbital",
        "rifampicin",
    }
    assert {m.code for m in medicines.MEDICINES.values() if m.moves_inr} == {
        "carbamazepine",
        "phenytoin",
        "phenobarbital",
        "rifampicin",
        "valproate",
        "amiodarone",
        "metronidazole",
        "co_trimoxazole",
        "fluconazole",
    }


def test_interactions_are_not_warned_about_for_agents_not_proposed() -> None:
    # A pregnant patient on aspirin: no oral agent is proposed, so no oral-agent interaction is raised
    result = advise(risk_factors={"pregnancy"}, medications={"aspirin"}, **WOMAN)
    assert "doac_interaction" not in warning_codes(result)
    assert "warfarin_interaction" not in warning_codes(result)


# ---------------------------------------------------------------------------------------------------------
# §3 acute phase: heparin contraindicated (VITT, HIT), enoxaparin dose
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "ivig"),
    [("vitt", True), ("heparin_induced_thrombocytopenia", False)],
)
def test_vitt_or_hit_rules_heparin_out(code: str, ivig: bool) -> None:
    result = advise(risk_factors={code}, **ADULT)
    acute = result["acute_phase"]
    assert acute["agent"] == "argatroban"
    assert acute["heparin"] is False
    assert acute["alternatives"] == ["fondaparinux", "doac"]
    assert acute["dose_suggestion"] is None
    assert "VITT2021" in acute["source"]
    contraindicated = warning(result, "heparin_contraindicated")
    assert contraindicated["severity"] == "urgent"
    assert ("immunoglobulin" in contraindicated["message"]) is ivig
    assert ("no platelet transfusion" in contraindicated["message"]) is ivig
    assert result["category"] == "transient"  # §1: both are transient codes


def test_heparin_contraindication_wins_over_pregnancy_and_renal_rows() -> None:
    result = advise(risk_factors={"vitt", "pregnancy"}, **kidneys(age=68, weight=28, sex="female"))
    assert result["acute_phase"]["agent"] == "argatroban"
    assert agents(result) == []


def test_enoxaparin_dose_is_1_mg_per_kg_twice_daily_marked_verify() -> None:
    dose = advise(**kidneys(age=60, weight=73.4))["acute_phase"]["dose_suggestion"]
    assert (dose["dose_mg"], dose["mg_per_kg"], dose["frequency"], dose["route"]) == (
        73,
        1.0,
        "every 12 hours",
        "subcutaneous",
    )
    assert dose["verified"] is False
    assert dose["source"] == "EU label (enoxaparin); US label (enoxaparin)"
    assert "[verify]" in dose["message"]


def test_enoxaparin_without_weight_says_so_instead_of_guessing() -> None:
    dose = advise(age=60, sex="male", serum_creatinine_mg_dl=1.0)["acute_phase"]["dose_suggestion"]
    assert dose["dose_mg"] is None and dose["frequency"] is None
    assert "weight is not recorded" in dose["message"]


def test_enoxaparin_dose_is_clinic_configurable() -> None:
    policy = RulesPolicy(enoxaparin_mg_per_kg=1.5, enoxaparin_verified=True)
    dose = advise(policy=policy, **ADULT)["acute_phase"]["dose_suggestion"]
    assert (dose["dose_mg"], dose["verified"]) == (105, True)


# ---------------------------------------------------------------------------------------------------------
# §3 pregnancy as one fact: duration, delivery, contradictions, puerperium window
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delivered_on", "earliest_end"),
    [
        # 6 months after diagnosis = 2025-09-10; 6 weeks after delivery: 07-29 → 09-09, 07-30 → 09-10, 07-31 → 09-11
        (date(2025, 7, 29), "2025-09-10"),
        (date(2025, 7, 30), "2025-09-10"),
        (date(2025, 7, 31), "2025-09-11"),
    ],
)
def test_delivery_six_weeks_plus_minus_one_day_against_six_months(delivered_on: date, earliest_end: str) -> None:
    result = advise(risk_factors={"pregnancy"}, delivered_on=delivered_on, **WOMAN)
    assert result["duration"]["earliest_end_on"] == earliest_end
    assert result["duration"]["earliest_end_text"] is None
    # After delivery: LMWH or warfarin (and a DOAC when not breastfeeding: the §3 exclusions no longer hold)
    assert "warfarin" in agents(result)
    assert "pregnancy_lmwh_only" not in warning_codes(result)


def test_after_delivery_breastfeeding_means_warfarin_and_no_doac() -> None:
    result = advise(risk_factors={"pregnancy"}, delivered_on=date(2025, 5, 1), breastfeeding=True, **WOMAN)
    assert agents(result) == ["warfarin"]
    assert "Compatible with breastfeeding" in option(result, "warfarin")["message"]
    assert "breastfeeding_no_doac" in warning_codes(result)


def test_expected_delivery_date_gives_the_end_six_weeks_after_it() -> None:
    # Expected 2025-08-20 → 6 weeks after = 2025-10-01, later than 6 months (2025-09-10)
    result = advise(risk_factors={"pregnancy"}, expected_delivery_on=date(2025, 8, 20), **WOMAN)
    assert result["duration"]["earliest_end_on"] == "2025-10-01"
    assert "expected_delivery_date" in [n["code"] for n in result["duration"]["notes"]]
    assert agents(result) == []  # still pregnant


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"delivered_on": date(2025, 3, 1)}, "delivered_on"),
        ({"breastfeeding": True}, "breastfeeding"),
        ({"expected_delivery_on": date(2025, 8, 1)}, "expected_delivery_on"),
        ({"risk_factors": {"puerperium"}, "expected_delivery_on": date(2025, 8, 1)}, "expected_delivery_on"),
    ],
)
def test_pregnancy_contradictions_are_refused_naming_the_field(given: dict[str, Any], field: str) -> None:
    with pytest.raises(FactsError) as caught:
        EpisodeFacts(diagnosed_on=DIAGNOSED, **given)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("delivered_on", "accepted"),
    [
        # §1 puerperium = CVT within 6 weeks after delivery: 42 days before the diagnosis is in, 43 is out
        (date(2025, 1, 26), False),
        (date(2025, 1, 27), True),
        (date(2025, 3, 10), True),
        (date(2025, 3, 11), False),  # a delivery after the diagnosis is not a puerperium
    ],
)
def test_puerperium_window_six_weeks_plus_minus_one_day(delivered_on: date, accepted: bool) -> None:
    build = lambda: EpisodeFacts(  # noqa: E731
        diagnosed_on=DIAGNOSED, risk_factors={"puerperium"}, delivered_on=delivered_on, **WOMAN
    )
    if accepted:
        result = recommend(build()).as_dict()
        assert result["category"] == "pregnancy"
        # delivered before the diagnosis: 6 months from diagnosis is the later end
        assert result["duration"]["earliest_end_on"] == "2025-09-10"
        assert "warfarin" in agents(result)  # not pregnant now
    else:
        with pytest.raises(FactsError) as caught:
            build()
        assert caught.value.field == "delivered_on"


def test_puerperium_without_delivery_date_is_not_pregnant_now() -> None:
    result = advise(risk_factors={"puerperium"}, **WOMAN)
    assert result["duration"]["earliest_end_on"] == "2025-09-10"
    assert "pregnancy_lmwh_only" not in warning_codes(result)
    assert "warfarin" in agents(result)


# ---------------------------------------------------------------------------------------------------------
# Sources and §4 rows of rev 2
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("SECRET", "Stroke 2023;54:2724-2736"),
        ("AUR2023", "J Prev Alz Dis 2023;10:362-377"),
        ("VITT2021", "Furie et al."),
        ("CHEST2008", "Chest 2008;133:160S-198S"),
        ("EU label", "dabigatran"),
        ("US label", "Coumadin"),
        ("VA practice", "Witt et al., 2016"),
        ("ISTH2005", "Schulman & Kearon"),
        ("ISTH2015", "Kaatz et al."),
    ],
)
def test_rev_2_sources_are_listed(name: str, fragment: str) -> None:
    assert fragment in SOURCES[name]


def test_protein_testing_shows_both_aha2011_and_eso2017() -> None:
    testing = [
        f for f in advise(risk_factors={"dehydration"}, **ADULT)["follow_ups"] if f["kind"] == "thrombophilia_testing"
    ]
    assert "AHA2011 (IIa-B)" in testing[0]["source"] and "ESO2017" in testing[0]["source"]


# ---------------------------------------------------------------------------------------------------------
# The JSON input of `manage.py recommend` (backward compatible, plus the new inputs)
# ---------------------------------------------------------------------------------------------------------


def test_json_input_accepts_medications_expected_delivery_and_the_pregnant_alias() -> None:
    parsed = facts_from_mapping(
        {
            "diagnosed_on": "2025-03-10",
            "age": 30,
            "pregnant": True,
            "expected_delivery_on": "2025-08-20",
            "medications": ["levetiracetam"],
        }
    )
    assert "pregnancy" in parsed.risk_factors and parsed.pregnant is True
    assert parsed.expected_delivery_on == date(2025, 8, 20)
    assert parsed.medications == frozenset({"levetiracetam"})


@pytest.mark.parametrize(
    ("data", "field", "fragment"),
    [
        ({"medications": ["aspirine"]}, "medications", "unknown code 'aspirine'; allowed: carbamazepine, phenytoin"),
        ({"medications": "aspirin"}, "medications", "list of codes"),
        ({"risk_factors": ["vit"]}, "risk_factors", "vitt, heparin_induced_thrombocytopenia"),
        ({"delivered_on": "2025-03-01"}, "delivered_on", "pregnancy or puerperium"),
        ({"breastfeeding": True}, "breastfeeding", "pregnancy or puerperium"),
        ({"expected_delivery_on": "2025-13-01"}, "expected_delivery_on", "not a calendar date"),
    ],
)
def test_json_input_refuses_naming_the_field(data: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(FactsError) as caught:
        facts_from_mapping({"diagnosed_on": "2025-03-10", **data})
    assert caught.value.field == field
    assert fragment in str(caught.value)
    assert str(caught.value).startswith(f"{field}: ")


def test_recommend_command_with_the_new_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "sys.stdin",
        io.StringIO(
            json.dumps(
                {"diagnosed_on": "2025-03-10", **ADULT, "medications": ["carbamazepine"], "risk_factors": ["vitt"]}
            )
        ),
    )
    out = io.StringIO()
    call_command("recommend", "-", stdout=out)
    result = json.loads(out.getvalue())
    assert result["acute_phase"]["agent"] == "argatroban"
    assert [o["agent"] for o in result["oral_options"]] == ["warfarin"]
    assert {"heparin_contraindicated", "doac_interaction", "warfarin_interaction"} <= set(warning_codes(result))


def test_recommend_command_refuses_a_contradiction_with_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"diagnosed_on": "2025-03-10", "breastfeeding": True})))
    with pytest.raises(CommandError) as caught:
        call_command("recommend", "-", stdout=io.StringIO())
    assert caught.value.returncode == 2
    assert str(caught.value).startswith("breastfeeding: ")
