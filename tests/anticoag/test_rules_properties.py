"""Property-based tests of the rules engine (hypothesis): totality, and durations that never shrink."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from itertools import combinations
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anticoag.medicines import MEDICINES
from anticoag.rules import (
    CATEGORIES,
    FOLLOW_UP_KINDS,
    INPUT_FIELDS,
    RISK_FACTORS,
    SEVERITIES,
    SOURCES,
    WARNING_CODES,
    EpisodeFacts,
    FactsError,
    facts_from_mapping,
    recommend,
)

CODES = sorted(RISK_FACTORS)
# The whole range EpisodeFacts accepts, so calendar clamping at any month end is exercised.
DATES = st.dates(min_value=date(1, 1, 1), max_value=date(9998, 12, 31))


MEDICINE_CODES = sorted(MEDICINES)


@st.composite
def episode_facts(draw: st.DrawFn, risk_factors: st.SearchStrategy[frozenset[str]] | None = None) -> EpisodeFacts:
    """Any valid EpisodeFacts (inside the documented input limits, and without the contradictions the rules
    refuse: delivery dates and breastfeeding only with a pregnancy code, as reference §3 rev 2 requires)."""
    diagnosed_on = draw(DATES)
    codes = draw(risk_factors if risk_factors is not None else st.frozensets(st.sampled_from(CODES)))
    pregnant = draw(st.booleans())
    all_codes = codes | ({"pregnancy"} if pregnant else set())
    low, high = date(1, 1, 1).toordinal(), date(9998, 12, 31).toordinal()
    delivered_on = expected = None
    breastfeeding = False
    if "pregnancy" in all_codes:
        # A delivery near the diagnosis (when it matters) more often than a random date would give.
        near = st.integers(min_value=-300, max_value=300).map(lambda days: diagnosed_on.toordinal() + days)
        near_dates = near.filter(lambda ordinal: low <= ordinal <= high).map(date.fromordinal)
        delivered_on = draw(st.none() | near_dates | DATES)
        expected = draw(st.none() | near_dates)
        breastfeeding = draw(st.booleans())
    elif "puerperium" in all_codes:
        # §1: a CVT within 6 weeks after delivery.
        after = st.integers(min_value=0, max_value=42).map(lambda days: diagnosed_on.toordinal() - days)
        delivered_on = draw(st.none() | after.filter(lambda ordinal: ordinal >= low).map(date.fromordinal))
        breastfeeding = draw(st.booleans())
    return EpisodeFacts(
        diagnosed_on=diagnosed_on,
        age=draw(st.none() | st.integers(min_value=0, max_value=130)),
        sex=draw(st.none() | st.sampled_from(["male", "female"])),
        weight_kg=draw(st.none() | st.floats(min_value=0.1, max_value=1000)),
        serum_creatinine_mg_dl=draw(st.none() | st.floats(min_value=0.01, max_value=100)),
        risk_factors=codes,
        prior_cvt=draw(st.booleans()),
        prior_vte=draw(st.booleans()),
        hemorrhage=draw(st.booleans()),
        subdural_hematoma=draw(st.booleans()),
        microbleeds=draw(st.integers(min_value=0, max_value=500)),
        anti_amyloid_therapy=draw(st.booleans()),
        pregnant=pregnant,
        delivered_on=delivered_on,
        expected_delivery_on=expected,
        breastfeeding=breastfeeding,
        deterioration=draw(st.booleans()),
        thrombophilia_tested_on_anticoagulant=draw(st.booleans()),
        medications=draw(st.frozensets(st.sampled_from(MEDICINE_CODES), max_size=3)),
    )


OUTPUT_KEYS = {
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
    "rationale",
    "scope",
    "doac_formulary",
}
DURATION_KEYS = {
    "min_months",
    "max_months",
    "indefinite",
    "earliest_end_on",
    "latest_end_on",
    "review_every_months",
    "source",
    "notes",
    "earliest_end_text",
    "adult_rule",
}


@settings(deadline=None, max_examples=400)
@given(facts=episode_facts())
def test_recommend_is_total_on_valid_facts(facts: EpisodeFacts) -> None:
    # When the rules run on any valid episode
    result = recommend(facts).as_dict()
    # Then the output is strict JSON (no NaN/Infinity) with every key of the format
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    assert set(result) == OUTPUT_KEYS
    assert set(result["duration"]) == DURATION_KEYS
    assert result["category"] in CATEGORIES
    assert result["acute_phase"]["agent"] in {"lmwh", "ufh", "argatroban"}
    # And heparin is never proposed with VITT or HIT (reference §3 rev 2)
    if facts.risk_factors & {"vitt", "heparin_induced_thrombocytopenia"}:
        assert result["acute_phase"]["agent"] == "argatroban"
    # And a pregnant patient's course never shows an end date that could fall before the delivery
    if facts.pregnant and result["duration"]["earliest_end_on"] is not None and not result["duration"]["indefinite"]:
        assert facts.expected_delivery_on is not None
        assert date.fromisoformat(result["duration"]["earliest_end_on"]) > facts.expected_delivery_on
    # And every item is from the stable vocabularies and carries a source
    assert {w["code"] for w in result["warnings"]} <= set(WARNING_CODES)
    assert {w["severity"] for w in result["warnings"]} <= set(SEVERITIES)
    assert {f["kind"] for f in result["follow_ups"]} <= set(FOLLOW_UP_KINDS)
    items = [
        result["duration"],
        result["acute_phase"],
        *result["duration"]["notes"],
        *result["oral_options"],
        *result["doac_eligible"]["reasons"],
        *result["warnings"],
        *result["follow_ups"],
    ]
    assert all(item["source"] for item in items)
    assert {s["name"] for s in result["sources"]} <= set(SOURCES)
    # And dates are ISO strings (or null)
    for follow_up in result["follow_ups"]:
        assert follow_up["due_on"] is not None
        date.fromisoformat(follow_up["due_on"])
    # And the agent rules hold: no oral option in pregnancy or for a patient under 18 (or of unknown age);
    # each DOAC only when not excluded
    adult = facts.age is not None and facts.age >= 18
    assert (result["oral_options"] == []) is (facts.pregnant or not adult)
    for agent in ("dabigatran", "rivaroxaban", "apixaban"):
        offered = [o for o in result["oral_options"] if o["agent"] == agent]
        assert bool(offered) is (adult and not facts.pregnant and result["doac_eligible"]["eligible"] is not False)
    if not adult:
        assert result["creatinine_clearance_ml_min"] is None
        assert "pediatric_out_of_scope" in {w["code"] for w in result["warnings"]}
    # And anticoagulation is always proposed: a bleed never removes the acute phase
    assert result["acute_phase"]["message"]


def at_least_as_long(longer: dict[str, Any], shorter: dict[str, Any]) -> bool:
    """Minimum durations compared: indefinite beats any finite course; a course that ends "6 weeks after delivery
    (date pending)" (at least 6 months, and after a delivery still to come) beats any dated finite course;
    dated finite courses by earliest end."""
    if longer["indefinite"]:
        return True
    if shorter["indefinite"]:
        return False
    if longer["earliest_end_on"] is None:
        return True
    if shorter["earliest_end_on"] is None:
        return False
    return date.fromisoformat(longer["earliest_end_on"]) >= date.fromisoformat(shorter["earliest_end_on"])


def facts_or_none(**kwargs: Any) -> EpisodeFacts | None:
    """The facts, or None when the rules refuse them as contradictory (e.g. puerperium after the diagnosis)."""
    try:
        return EpisodeFacts(**kwargs)
    except FactsError:
        return None


# Small sets, so that the interesting moves (transient → mild, mild → pregnancy, ...) come up often.
NON_EMPTY_CODES = st.frozensets(st.sampled_from(CODES), min_size=1, max_size=3)


@settings(deadline=None, max_examples=400)
@given(facts=episode_facts(NON_EMPTY_CODES), extra=st.sampled_from(CODES))
def test_adding_a_risk_factor_never_shortens_the_minimum_duration(facts: EpisodeFacts, extra: str) -> None:
    # Given an episode that already has at least one risk factor (see the exception test below), and no
    # prior episode (with one every course is indefinite: see the next test)
    facts = replace(facts, prior_cvt=False, prior_vte=False)
    before = recommend(facts).as_dict()["duration"]
    # When one more risk factor is recorded (unless that contradicts the recorded delivery)
    try:
        more = replace(facts, risk_factors=facts.risk_factors | {extra})
    except FactsError:
        return
    after = recommend(more).as_dict()["duration"]
    # Then the minimum duration is at least as long as before
    assert at_least_as_long(after, before), (sorted(facts.risk_factors), extra, before, after)


@settings(deadline=None, max_examples=200)
@given(facts=episode_facts())
def test_a_prior_episode_never_shortens_the_minimum_duration(facts: EpisodeFacts) -> None:
    before = recommend(facts).as_dict()["duration"]
    after = recommend(replace(facts, prior_cvt=True)).as_dict()["duration"]
    assert after["indefinite"] and at_least_as_long(after, before)


@pytest.mark.parametrize("delivered_on", [None, date(2024, 12, 1), date(2025, 3, 1), date(2025, 8, 20)])
def test_adding_a_risk_factor_never_shortens_the_minimum_duration_exhaustively(delivered_on: date | None) -> None:
    # Every non-empty set of up to two codes, plus every code: the vocabulary is small enough to walk it all.
    starts = [frozenset(pair) for size in (1, 2) for pair in combinations(CODES, size)]
    walked = 0
    for start in starts:
        facts = facts_or_none(age=40, diagnosed_on=date(2025, 3, 10), risk_factors=start, delivered_on=delivered_on)
        if facts is None:  # a delivery date needs a pregnancy code (reference §3 rev 2)
            continue
        before = recommend(facts).as_dict()["duration"]
        for extra in CODES:
            more = facts_or_none(
                age=40, diagnosed_on=date(2025, 3, 10), risk_factors=start | {extra}, delivered_on=delivered_on
            )
            if more is None:
                continue
            after = recommend(more).as_dict()["duration"]
            assert at_least_as_long(after, before), (sorted(start), extra, before, after)
            walked += 1
    assert walked > 500  # the walk is not emptied by the refusals


def test_the_one_exception_no_risk_factor_to_transient_shortens_the_minimum() -> None:
    # The reference itself (§2 rows 7 and 8) gives an episode with NO risk factor (unprovoked: 6-12 months)
    # a longer minimum than one with only a transient factor (3-6 months): finding the provoking cause makes
    # a shorter course reasonable. So "adding a risk factor never shortens" holds only from a non-empty set.
    unprovoked = recommend(EpisodeFacts(diagnosed_on=date(2025, 3, 10))).as_dict()["duration"]
    provoked = recommend(EpisodeFacts(diagnosed_on=date(2025, 3, 10), risk_factors={"infection"})).as_dict()["duration"]
    assert (unprovoked["min_months"], provoked["min_months"]) == (6, 3)
    assert not at_least_as_long(provoked, unprovoked)


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
JSON_VALUES = st.recursive(
    JSON_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
)
KEYS = st.sampled_from(INPUT_FIELDS) | st.text(max_size=10)
DATE_TEXT = st.dates().map(date.isoformat) | st.text(max_size=12)
VALUES_FOR_KEYS = st.one_of(JSON_VALUES, DATE_TEXT, st.lists(st.sampled_from([*CODES, "foo"]), max_size=4))


@settings(deadline=None, max_examples=500)
@given(data=st.dictionaries(KEYS, VALUES_FOR_KEYS, max_size=8) | JSON_VALUES)
def test_facts_from_mapping_raises_only_facts_error(data: Any) -> None:
    # Given any JSON-shaped input, valid or not
    try:
        facts = facts_from_mapping(data)
    except FactsError as err:
        # Then a bad one is a one-line FactsError that starts with its field
        assert "\n" not in str(err)
        assert str(err).startswith(f"{err.field}: ")
    else:
        # And a good one gives facts the rules accept
        recommend(facts).as_dict()
