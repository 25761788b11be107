"""The clinical rules of the clinic, as plain Python tables.

This module is the executable form of ``clinical-reference.md``. It imports nothing from Django (a test
proves it) so the rules can be read, tested and run on their own (``manage.py recommend`` needs no
database). Every table below names the section of the reference it comes from; every output item carries
its source.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from dateutil.relativedelta import relativedelta

RULES_VERSION = "2026.11.1"


class RiskClass(StrEnum):
    """The class of a risk factor (reference §1): it decides the risk category (§2)."""

    TRANSIENT = "transient"
    PREGNANCY = "pregnancy"
    CANCER = "cancer"
    PERSISTENT = "persistent"
    MILD_THROMBOPHILIA = "mild_thrombophilia"
    SEVERE_THROMBOPHILIA = "severe_thrombophilia"


@dataclass(frozen=True)
class RiskFactor:
    """One row of the risk factor vocabulary."""

    code: str
    meaning: str
    risk_class: RiskClass


_T, _P, _C = RiskClass.TRANSIENT, RiskClass.PREGNANCY, RiskClass.CANCER
_PE, _MT, _ST = RiskClass.PERSISTENT, RiskClass.MILD_THROMBOPHILIA, RiskClass.SEVERE_THROMBOPHILIA

#: Reference §1, in the reference's order. Codes are stable identifiers: never rename one.
RISK_FACTORS: dict[str, RiskFactor] = {
    rf.code: rf
    for rf in (
        RiskFactor("infection", "Head/neck, CNS or systemic infection", _T),
        RiskFactor("head_trauma", "Head injury", _T),
        RiskFactor("neurosurgery", "Intracranial or spinal surgery", _T),
        RiskFactor("lumbar_puncture", "Lumbar puncture", _T),
        RiskFactor("intracranial_hypotension", "Intracranial hypotension / CSF leak", _T),
        RiskFactor("oral_contraceptive", "Estrogen-containing contraception", _T),
        RiskFactor("hormone_therapy", "Estrogen/testosterone therapy", _T),
        RiskFactor("pregnancy", "CVT during pregnancy", _P),
        RiskFactor("puerperium", "CVT within 6 weeks after delivery", _P),
        RiskFactor("dehydration", "Dehydration", _T),
        RiskFactor("drug_induced", "Provoking drug (e.g. L-asparaginase, corticosteroids)", _T),
        RiskFactor("active_cancer", "Active malignancy", _C),
        RiskFactor("myeloproliferative", "Myeloproliferative neoplasm (e.g. JAK2 V617F)", _PE),
        RiskFactor("inflammatory_disease", "IBD, SLE, Behçet disease, other systemic inflammatory disease", _PE),
        RiskFactor("nephrotic_syndrome", "Nephrotic syndrome", _PE),
        RiskFactor("fvl_heterozygous", "Factor V Leiden, heterozygous", _MT),
        RiskFactor("pt_g20210a_heterozygous", "Prothrombin G20210A, heterozygous", _MT),
        RiskFactor("hyperhomocysteinemia", "Hyperhomocysteinemia", _MT),
        RiskFactor("fvl_homozygous", "Factor V Leiden, homozygous", _ST),
        RiskFactor("pt_g20210a_homozygous", "Prothrombin G20210A, homozygous", _ST),
        RiskFactor("protein_c_deficiency", "Protein C deficiency", _ST),
        RiskFactor("protein_s_deficiency", "Protein S deficiency", _ST),
        RiskFactor("antithrombin_deficiency", "Antithrombin deficiency", _ST),
        RiskFactor("antiphospholipid_syndrome", "Antiphospholipid syndrome", _ST),
    )
}

#: (code, label) pairs for form and model choices.
RISK_FACTOR_CHOICES: list[tuple[str, str]] = [(rf.code, rf.meaning) for rf in RISK_FACTORS.values()]

#: Reference "Sources": short name → full citation. Output items cite these short names.
SOURCES: dict[str, str] = {
    "AHA2011": "Saposnik et al., Diagnosis and management of CVT, AHA/ASA scientific statement, "
    "Stroke 2011;42:1158-1192.",
    "AHA2024": "Saposnik et al., AHA scientific statement on CVT, Stroke 2024 (doi 10.1161/STR.0000000000000456).",
    "EFNS2010": "Einhäupl et al., EFNS guideline on CVST, Eur J Neurol 2010;17:1229-1235.",
    "ESO2017": "Ferro et al., ESO guideline on CVT, Eur J Neurol 2017;24:1203-1213.",
    "CSBP2024": "Canadian Stroke Best Practice Recommendations, CVT module, 2024.",
    "RESPECT-CVT": "Ferro et al., JAMA Neurol 2019;76:1457-1465 (dabigatran 150 mg bid vs warfarin).",
    "ACTION-CVT": "Yaghi et al., Stroke 2022 (DOAC vs warfarin, 845 patients).",
    "CHEST2012": "Holbrook et al., Chest 2012;141:e152S-e184S (VKA management); Ageno et al.",
    "ROSENDAAL1993": "Rosendaal et al., Thromb Haemost 1993;69:236-239 (time in therapeutic range).",
    "EHRA": "European Heart Rhythm Association practical guide on NOAC use [verify].",
    "SEED000": "Seed document 000: management of small cerebral venous hemorrhage.",
    "SEED001": "Seed document 001: microhemorrhages of unclear cause.",
    "SEED002": "Seed document 002: CVT secondary to intracranial hypotension (case report).",
    "CLINIC": "Clinic practice (no external guideline).",
}


# =====================================================================================================
# Constants of the output vocabulary
# =====================================================================================================

#: Warning severities, mildest first. "restriction" narrows the options (e.g. no DOAC); it is enforced by
#: the options themselves, so it needs no acknowledgement.
INFO, RESTRICTION, CAUTION, URGENT = "info", "restriction", "caution", "urgent"
SEVERITIES: tuple[str, ...] = (INFO, RESTRICTION, CAUTION, URGENT)

#: Warnings a clinician must acknowledge before a plan counts as confirmed (issue 3: "caution" needs an
#: acknowledgement; "urgent" is at least as serious, so it does too).
ACKNOWLEDGE_SEVERITIES: frozenset[str] = frozenset({CAUTION, URGENT})

#: Reference §3: creatinine in µmol/L ÷ 88.4 = mg/dL.
UMOL_PER_MG_DL = 88.4

SEXES: tuple[str, ...] = ("male", "female")

#: Reference §3, warfarin: "INR target 2.5, range 2.0-3.0 (all categories)".
INR_LOW, INR_HIGH, INR_TARGET = 2.0, 3.0, 2.5

#: Reference §3, dabigatran: 150 mg twice daily (RESPECT-CVT); 110 mg twice daily from age 80 (EU label).
DABIGATRAN_DOSE_MG = 150
DABIGATRAN_REDUCED_DOSE_MG = 110
DABIGATRAN_REDUCED_FROM_AGE = 80
DABIGATRAN_FREQUENCY = "twice daily"

#: Reference §3: a DOAC is not eligible when CrCl ≤ 30 mL/min; prefer UFH when CrCl < 30 mL/min. The two
#: comparisons differ at exactly 30 on purpose: that is how the reference words them.
DOAC_MAX_INELIGIBLE_CRCL = 30.0
UFH_BELOW_CRCL = 30.0


# =====================================================================================================
# Input: the facts of one episode
# =====================================================================================================


class FactsError(ValueError):
    """Invalid episode facts. ``str(err)`` is one line: ``<field>: <what is wrong>[; allowed: ...]``."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class InputLimit:
    """A plausibility bound on a numeric input (inclusive)."""

    low: float
    high: float
    unit: str


#: Input sanity limits, NOT clinical thresholds: they are wide enough never to reject a real patient and
#: exist to catch unit mix-ups (weight in grams, creatinine in µmol/L typed as mg/dL) and to keep the
#: Cockcroft-Gault arithmetic finite (age < 140, creatinine > 0). The reference gives no such numbers.
INPUT_LIMITS: dict[str, InputLimit] = {
    "age": InputLimit(0, 130, "years"),
    "weight_kg": InputLimit(0.1, 1000, "kg"),
    "serum_creatinine_mg_dl": InputLimit(0.01, 100, "mg/dL"),
}

#: Dates after this would overflow Python's calendar when the longest offset (+12 months) is added.
_LATEST_DATE = date(9998, 12, 31)


def _one_line(value: object) -> str:
    """A short, single-line rendering of a bad value: 'text' for strings, JSON spelling for the rest."""
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            text = repr(value)
    text = text.replace("\n", " ").replace("\r", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def _check_risk_code(code: object) -> None:
    if not isinstance(code, str) or code not in RISK_FACTORS:
        raise FactsError("risk_factors", f"unknown code {_one_line(code)}; allowed: {', '.join(RISK_FACTORS)}")


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise FactsError(name, f"must be true or false, got {_one_line(value)}")


def _check_date(name: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    # A datetime is a date subclass; reject it so nobody's time zone leaks into calendar maths.
    if not isinstance(value, date) or isinstance(value, datetime):
        raise FactsError(name, f"must be a date (YYYY-MM-DD), got {_one_line(str(value))}")
    if value > _LATEST_DATE:
        raise FactsError(name, f"must be on or before {_LATEST_DATE.isoformat()}, got {value.isoformat()}")


def _check_number(name: str, value: object, limit: InputLimit, *, whole: bool = False) -> None:
    if value is None:
        return
    kind = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
        raise FactsError(name, f"must be {kind}, got {_one_line(value)}")
    if not math.isfinite(value) or not limit.low <= value <= limit.high:
        raise FactsError(name, f"must be between {limit.low:g} and {limit.high:g} {limit.unit}, got {_one_line(value)}")


@dataclass(frozen=True)
class EpisodeFacts:
    """The facts of one CVT episode that the rules read (issue 3, input fields). Validated on creation.

    ``risk_factors`` accepts any iterable of codes and is stored as a frozenset (a code counts once).
    ``thrombophilia_tested_on_anticoagulant``: a protein C/S/antithrombin result was drawn while the
    patient was anticoagulated (reference §5, last row).
    """

    diagnosed_on: date
    age: int | None = None
    sex: str | None = None
    weight_kg: float | None = None
    serum_creatinine_mg_dl: float | None = None
    risk_factors: frozenset[str] = frozenset()
    prior_cvt: bool = False
    prior_vte: bool = False
    hemorrhage: bool = False
    subdural_hematoma: bool = False
    microbleeds: int = 0
    anti_amyloid_therapy: bool = False
    pregnant: bool = False
    delivered_on: date | None = None
    breastfeeding: bool = False
    deterioration: bool = False
    thrombophilia_tested_on_anticoagulant: bool = False

    def __post_init__(self) -> None:
        _check_date("diagnosed_on", self.diagnosed_on, optional=False)
        _check_date("delivered_on", self.delivered_on, optional=True)
        _check_number("age", self.age, INPUT_LIMITS["age"], whole=True)
        if self.sex is not None and self.sex not in SEXES:
            raise FactsError("sex", f"unknown value {_one_line(self.sex)}; allowed: {', '.join(SEXES)}")
        _check_number("weight_kg", self.weight_kg, INPUT_LIMITS["weight_kg"])
        _check_number("serum_creatinine_mg_dl", self.serum_creatinine_mg_dl, INPUT_LIMITS["serum_creatinine_mg_dl"])
        if self.microbleeds is None or isinstance(self.microbleeds, bool) or not isinstance(self.microbleeds, int):
            raise FactsError("microbleeds", f"must be a whole number, got {_one_line(self.microbleeds)}")
        if self.microbleeds < 0:
            raise FactsError("microbleeds", f"must be 0 or more, got {self.microbleeds}")
        for name in _BOOLEAN_FIELDS:
            _check_bool(name, getattr(self, name))
        codes = self.risk_factors
        if isinstance(codes, (str, bytes)) or not isinstance(codes, Iterable):
            raise FactsError("risk_factors", f"must be a list of codes, got {_one_line(codes)}")
        codes = frozenset(codes)
        for code in sorted(codes, key=str):
            _check_risk_code(code)
        # Frozen dataclass: normalising a field in __post_init__ needs object.__setattr__.
        object.__setattr__(self, "risk_factors", codes)

    def codes_of(self, risk_class: RiskClass) -> frozenset[str]:
        """The recorded risk factor codes of one class (reference §1)."""
        return frozenset(code for code in self.risk_factors if RISK_FACTORS[code].risk_class is risk_class)


_BOOLEAN_FIELDS: tuple[str, ...] = (
    "prior_cvt",
    "prior_vte",
    "hemorrhage",
    "subdural_hematoma",
    "anti_amyloid_therapy",
    "pregnant",
    "breastfeeding",
    "deterioration",
    "thrombophilia_tested_on_anticoagulant",
)

#: The keys of the JSON input (issue 3), in the issue's order. Exactly one creatinine key may be given.
INPUT_FIELDS: tuple[str, ...] = (
    "diagnosed_on",
    "age",
    "sex",
    "weight_kg",
    "serum_creatinine_mg_dl",
    "serum_creatinine_umol_l",
    "risk_factors",
    "prior_cvt",
    "prior_vte",
    "hemorrhage",
    "subdural_hematoma",
    "microbleeds",
    "anti_amyloid_therapy",
    "pregnant",
    "delivered_on",
    "breastfeeding",
    "deterioration",
    "thrombophilia_tested_on_anticoagulant",
)

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _field_label(key: object) -> str:
    """A key as it can safely appear at the start of a one-line error."""
    return key if isinstance(key, str) and re.fullmatch(r"[\w.-]{1,60}", key) else _one_line(key)


def _parse_date(name: str, value: object) -> date:
    # date.fromisoformat also takes "20250101" and week dates; the input format is YYYY-MM-DD only.
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise FactsError(name, f"must be an ISO date (YYYY-MM-DD), got {_one_line(value)}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise FactsError(name, f"is not a calendar date, got {_one_line(value)}") from None


def _parse_number(name: str, value: object, *, whole: bool = False) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FactsError(name, f"must be a number, got {_one_line(value)}")
    if whole:
        # JSON has one number type: accept 60.0 as the whole number 60, refuse 60.5.
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise FactsError(name, f"must be a whole number, got {_one_line(value)}")
        return int(value)
    return value


def facts_from_mapping(data: Mapping[str, object]) -> EpisodeFacts:
    """Parse the JSON input of ``manage.py recommend`` (issue 3) into validated facts.

    Absent optional keys mean false, 0 or unknown; ``null`` is accepted only where "unknown" makes sense
    (age, sex, weight, creatinine, delivery date). Raises :class:`FactsError` for every bad input.
    """
    if not isinstance(data, Mapping):
        raise FactsError("input", f"must be a JSON object of episode facts, got {_one_line(data)}")
    for key in data:
        if key not in INPUT_FIELDS:
            raise FactsError(_field_label(key), f"unknown field; allowed: {', '.join(INPUT_FIELDS)}")
    if data.get("diagnosed_on") is None:
        raise FactsError("diagnosed_on", "is required (an ISO date, YYYY-MM-DD)")

    kwargs: dict[str, Any] = {"diagnosed_on": _parse_date("diagnosed_on", data["diagnosed_on"])}
    if data.get("delivered_on") is not None:
        kwargs["delivered_on"] = _parse_date("delivered_on", data["delivered_on"])
    kwargs["age"] = _parse_number("age", data.get("age"), whole=True)
    kwargs["weight_kg"] = _parse_number("weight_kg", data.get("weight_kg"))
    sex = data.get("sex")
    if sex is not None and sex not in SEXES:
        raise FactsError("sex", f"unknown value {_one_line(sex)}; allowed: {', '.join(SEXES)}")
    kwargs["sex"] = sex

    mg_dl = data.get("serum_creatinine_mg_dl")
    umol_l = data.get("serum_creatinine_umol_l")
    if mg_dl is not None and umol_l is not None:
        raise FactsError("serum_creatinine_umol_l", "give serum_creatinine_mg_dl or serum_creatinine_umol_l, not both")
    if umol_l is not None:
        umol = _parse_number("serum_creatinine_umol_l", umol_l)
        assert umol is not None  # _parse_number returns None only for None
        limit = INPUT_LIMITS["serum_creatinine_mg_dl"]
        low, high = limit.low * UMOL_PER_MG_DL, limit.high * UMOL_PER_MG_DL
        if not math.isfinite(umol) or not low <= umol <= high:
            raise FactsError("serum_creatinine_umol_l", f"must be between {low:g} and {high:g} µmol/L, got {umol:g}")
        kwargs["serum_creatinine_mg_dl"] = umol / UMOL_PER_MG_DL
    else:
        kwargs["serum_creatinine_mg_dl"] = _parse_number("serum_creatinine_mg_dl", mg_dl)

    if "microbleeds" in data:
        count = data["microbleeds"]
        if count is None:
            raise FactsError("microbleeds", "must be a whole number (0 when none were seen), got null")
        kwargs["microbleeds"] = _parse_number("microbleeds", count, whole=True)

    if "risk_factors" in data:
        codes = data["risk_factors"]
        if not isinstance(codes, (list, tuple, set, frozenset)):
            raise FactsError("risk_factors", f"must be a list of codes, got {_one_line(codes)}")
        for code in codes:
            _check_risk_code(code)
        kwargs["risk_factors"] = frozenset(codes)

    for name in _BOOLEAN_FIELDS:
        if name in data:
            _check_bool(name, data[name])
            kwargs[name] = data[name]
    return EpisodeFacts(**kwargs)


# =====================================================================================================
# Cockcroft-Gault (reference §3)
# =====================================================================================================


def cockcroft_gault(*, age: int, weight_kg: float, sex: str, creatinine_mg_dl: float) -> float:
    """Reference §3: CrCl (mL/min) = (140 - age) x weight (kg) / (72 x creatinine (mg/dL)), x 0.85 for women."""
    if sex not in SEXES:
        raise FactsError("sex", f"unknown value {_one_line(sex)}; allowed: {', '.join(SEXES)}")
    if creatinine_mg_dl <= 0:
        raise FactsError("serum_creatinine_mg_dl", f"must be greater than 0, got {creatinine_mg_dl:g}")
    clearance = (140 - age) * weight_kg / (72 * creatinine_mg_dl)
    return clearance * 0.85 if sex == "female" else clearance


def _creatinine_clearance(facts: EpisodeFacts) -> float | None:
    """CrCl rounded to 0.1 mL/min, or None when an input is missing.

    The rules compare the *rounded* value, so the number a clinician sees and the decision always agree
    (30.04 shows as 30.0 and counts as ≤ 30).
    """
    if facts.age is None or facts.weight_kg is None or facts.sex is None or facts.serum_creatinine_mg_dl is None:
        return None
    return round(
        cockcroft_gault(
            age=facts.age, weight_kg=facts.weight_kg, sex=facts.sex, creatinine_mg_dl=facts.serum_creatinine_mg_dl
        ),
        1,
    )


def _missing_clearance_inputs(facts: EpisodeFacts) -> list[str]:
    pairs = (
        ("age", facts.age),
        ("weight_kg", facts.weight_kg),
        ("sex", facts.sex),
        ("serum creatinine", facts.serum_creatinine_mg_dl),
    )
    return [name for name, value in pairs if value is None]


# =====================================================================================================
# §2 Risk category and duration
# =====================================================================================================


@dataclass(frozen=True)
class DurationRule:
    """The duration column of a §2 row: months from diagnosis, or indefinite with a review interval."""

    min_months: int | None
    max_months: int | None
    indefinite: bool
    review_every_months: int | None


def _months(low: int, high: int | None) -> DurationRule:
    return DurationRule(min_months=low, max_months=high, indefinite=False, review_every_months=None)


#: §2 "Indefinite anticoagulation gets a yearly review" (and §4: yearly review, clinic practice).
_INDEFINITE = DurationRule(min_months=None, max_months=None, indefinite=True, review_every_months=12)
#: §2 row 3: "indefinite while the cancer is active; review every 6 months".
_INDEFINITE_CANCER = DurationRule(min_months=None, max_months=None, indefinite=True, review_every_months=6)

#: §2 row 3's source. The reference requires the output to say "extrapolation".
CANCER_SOURCE = "extrapolation from cancer-associated VTE practice: AHA2011 and EFNS2010 do not address it"


def _prior_cvt_or_vte(f: EpisodeFacts) -> bool:
    return f.prior_cvt or f.prior_vte


def _severe_or_combined_thrombophilia(f: EpisodeFacts) -> bool:
    # §1: two or more *different* mild codes are a combined defect, which AHA2011 lists as severe. Codes are
    # a set, so the same mild code cannot count twice.
    return bool(f.codes_of(RiskClass.SEVERE_THROMBOPHILIA)) or len(f.codes_of(RiskClass.MILD_THROMBOPHILIA)) >= 2


def _active_cancer(f: EpisodeFacts) -> bool:
    return bool(f.codes_of(RiskClass.CANCER))


def _pregnancy_or_puerperium(f: EpisodeFacts) -> bool:
    # The row applies on the codes, as the reference writes it; the `pregnant` flag (current state) drives
    # the agent rules of §3, not the category.
    return bool(f.codes_of(RiskClass.PREGNANCY))


def _one_mild_code(f: EpisodeFacts) -> bool:
    return len(f.codes_of(RiskClass.MILD_THROMBOPHILIA)) == 1


def _persistent_code(f: EpisodeFacts) -> bool:
    return bool(f.codes_of(RiskClass.PERSISTENT))


def _only_transient_codes(f: EpisodeFacts) -> bool:
    return bool(f.risk_factors) and f.codes_of(RiskClass.TRANSIENT) == f.risk_factors


def _no_code(f: EpisodeFacts) -> bool:
    return not f.risk_factors


@dataclass(frozen=True)
class CategoryRow:
    """One row of the §2 table."""

    number: int
    category: str
    applies: Callable[[EpisodeFacts], bool]
    duration: DurationRule
    source: str


#: Reference §2, rows 1-8 in the reference's order. The category is the FIRST row, top to bottom, whose
#: predicate holds; rows 7 and 8 together cover every remaining case, so some row always applies.
# fmt: off
CATEGORY_TABLE: tuple[CategoryRow, ...] = (
    #           #  category                 applies when                         duration                source
    CategoryRow(1, "recurrent",             _prior_cvt_or_vte,                   _INDEFINITE,            "AHA2011 (IIb-C); EFNS2010 (≥ 2 episodes)"),
    CategoryRow(2, "severe_thrombophilia",  _severe_or_combined_thrombophilia,   _INDEFINITE,            "AHA2011 (IIb-C); EFNS2010"),
    CategoryRow(3, "cancer",                _active_cancer,                      _INDEFINITE_CANCER,     CANCER_SOURCE),
    CategoryRow(4, "pregnancy",             _pregnancy_or_puerperium,            _months(6, None),       "AHA2011 (class I)"),
    CategoryRow(5, "mild_thrombophilia",    _one_mild_code,                      _months(6, 12),         "EFNS2010; AHA2011 treats as unprovoked"),
    CategoryRow(6, "persistent",            _persistent_code,                    _months(6, 12),         "AHA2011 (unprovoked row) by analogy"),
    CategoryRow(7, "transient",             _only_transient_codes,               _months(3, 6),          "AHA2011 (IIb-C); EFNS2010 says 3 months"),
    CategoryRow(8, "unprovoked",            _no_code,                            _months(6, 12),         "AHA2011 (IIb-C); EFNS2010"),
)
# fmt: on

CATEGORIES: tuple[str, ...] = tuple(row.category for row in CATEGORY_TABLE)

#: §2 row 4: "at least 6 weeks after delivery" (in addition to 6 months in total).
PREGNANCY_AFTER_DELIVERY = relativedelta(weeks=6)


def category_row(facts: EpisodeFacts) -> CategoryRow:
    """The first row of §2 that applies."""
    for row in CATEGORY_TABLE:
        if row.applies(facts):
            return row
    raise AssertionError("§2 rows 7 and 8 cover every episode; the table is broken")  # pragma: no cover


@dataclass(frozen=True)
class Note:
    """A coded sentence with its source: a qualification of the duration, or a DOAC exclusion reason."""

    code: str
    message: str
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "source": self.source}


@dataclass(frozen=True)
class Duration:
    """How long to anticoagulate, from the diagnosis date, in calendar months."""

    min_months: int | None
    max_months: int | None
    indefinite: bool
    earliest_end_on: date | None
    latest_end_on: date | None
    review_every_months: int | None
    source: str
    notes: tuple[Note, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "min_months": self.min_months,
            "max_months": self.max_months,
            "indefinite": self.indefinite,
            "earliest_end_on": _iso(self.earliest_end_on),
            "latest_end_on": _iso(self.latest_end_on),
            "review_every_months": self.review_every_months,
            "source": self.source,
            "notes": [note.as_dict() for note in self.notes],
        }


@dataclass(frozen=True)
class NoteRow:
    """One duration note: when it applies (given the facts and the §2 row) and what it says."""

    code: str
    applies: Callable[[EpisodeFacts, CategoryRow], bool]
    message: str
    source: str


#: Qualifications the reference attaches to §2 rows. Codes are stable identifiers.
# fmt: off
DURATION_NOTES: tuple[NoteRow, ...] = (
    # §2 footnote: ESO2017 gives no duration; shown for every finite course, where the choice of end date matters.
    NoteRow("eso2017_no_recommendation",
            lambda f, row: not row.duration.indefinite,
            "ESO2017 makes no recommendation on the duration of anticoagulation (very poor quality of evidence).",
            "ESO2017"),
    # §2 row 7: the two sources disagree (3-6 months vs 3 months).
    NoteRow("efns2010_three_months",
            lambda f, row: row.category == "transient",
            "EFNS2010 recommends 3 months for a transient risk factor; AHA2011 suggests 3-6 months.",
            "EFNS2010; AHA2011 (IIb-C)"),
    # §2 row 6 flag. Also shown when a persistent factor sits under a finite higher row (e.g. one mild
    # thrombophilia code plus IBD): the factor persists there too.
    NoteRow("consider_extending",
            lambda f, row: not row.duration.indefinite and _persistent_code(f),
            "Consider extending anticoagulation while the risk factor persists.",
            "AHA2011 (unprovoked row) by analogy"),
    # §2 row 4 when the delivery date is not known yet: the end date shown counts the 6 months only.
    NoteRow("six_weeks_after_delivery",
            lambda f, row: row.category == "pregnancy" and f.delivered_on is None,
            "Continue also until at least 6 weeks after delivery; the delivery date is not recorded, so the "
            "earliest end shown counts only the 6 months from diagnosis.",
            "AHA2011 (class I)"),
    # §2 row 3: "indefinite while the cancer is active".
    NoteRow("while_cancer_active",
            lambda f, row: row.category == "cancer",
            "Continue while the cancer is active; review every 6 months.",
            CANCER_SOURCE),
)
# fmt: on


def _duration(facts: EpisodeFacts, row: CategoryRow) -> Duration:
    rule = row.duration
    earliest = latest = None
    if not rule.indefinite:
        assert rule.min_months is not None  # every finite row has a minimum
        earliest = facts.diagnosed_on + relativedelta(months=rule.min_months)
        if row.category == "pregnancy" and facts.delivered_on is not None:
            earliest = max(earliest, facts.delivered_on + PREGNANCY_AFTER_DELIVERY)
        if rule.max_months is not None:
            latest = facts.diagnosed_on + relativedelta(months=rule.max_months)
    notes = tuple(Note(n.code, n.message, n.source) for n in DURATION_NOTES if n.applies(facts, row))
    return Duration(
        min_months=rule.min_months,
        max_months=rule.max_months,
        indefinite=rule.indefinite,
        earliest_end_on=earliest,
        latest_end_on=latest,
        review_every_months=rule.review_every_months,
        source=row.source,
        notes=notes,
    )


# =====================================================================================================
# The situation the §3-§5 tables read
# =====================================================================================================


@dataclass(frozen=True)
class Situation:
    """Facts plus what §2 and Cockcroft-Gault derived from them: the input of the §3-§5 tables."""

    facts: EpisodeFacts
    row: CategoryRow
    duration: Duration
    crcl: float | None

    @property
    def category(self) -> str:
        return self.row.category

    @property
    def renal_doac_contraindicated(self) -> bool:
        return self.crcl is not None and self.crcl <= DOAC_MAX_INELIGIBLE_CRCL

    @property
    def ufh_for_renal(self) -> bool:
        return self.crcl is not None and self.crcl < UFH_BELOW_CRCL

    def has(self, code: str) -> bool:
        return code in self.facts.risk_factors


# =====================================================================================================
# §3 Acute phase
# =====================================================================================================


@dataclass(frozen=True)
class AcutePhase:
    """The parenteral anticoagulant to start at diagnosis."""

    agent: str
    message: str
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {"agent": self.agent, "message": self.message, "source": self.source}


@dataclass(frozen=True)
class AcutePhaseRow:
    """One row of the acute-phase choice: first row that applies wins."""

    agent: str
    applies: Callable[[Situation], bool]
    message: str
    source: str


_PROCEDURE_HINT = "Use adjusted-dose UFH instead if a procedure may be needed."

#: Reference §3, first bullet ("full-dose parenteral anticoagulation at diagnosis: LMWH preferred, UFH when
#: CrCl < 30 mL/min or a procedure may be needed") and the pregnancy bullet (CSBP2024 §4.1). When a pregnant
#: patient has CrCl < 30 the reference's two rules collide; UFH is a heparin too, so it satisfies the
#: pregnancy rule (no warfarin, no DOAC) while honouring the renal one.
# fmt: off
ACUTE_PHASE_TABLE: tuple[AcutePhaseRow, ...] = (
    AcutePhaseRow("ufh", lambda s: s.facts.pregnant and s.ufh_for_renal,
                  "Adjusted-dose unfractionated heparin: creatinine clearance is below 30 mL/min. Stay on heparin "
                  "throughout pregnancy; neither warfarin nor a DOAC during pregnancy.",
                  "ESO2017; CSBP2024 §4.1"),
    AcutePhaseRow("ufh", lambda s: s.ufh_for_renal,
                  "Adjusted-dose unfractionated heparin: creatinine clearance is below 30 mL/min, so UFH is "
                  "preferred over LMWH.",
                  "ESO2017"),
    AcutePhaseRow("lmwh", lambda s: s.facts.pregnant,
                  "Full-dose weight-based LMWH, started at diagnosis and continued throughout pregnancy; neither "
                  "warfarin nor a DOAC during pregnancy. " + _PROCEDURE_HINT,
                  "CSBP2024 §4.1"),
    AcutePhaseRow("lmwh", lambda s: True,
                  "Full-dose weight-based LMWH (preferred), started at diagnosis. " + _PROCEDURE_HINT,
                  "ESO2017"),
)
# fmt: on


def _acute_phase(s: Situation) -> AcutePhase:
    row = next(r for r in ACUTE_PHASE_TABLE if r.applies(s))
    return AcutePhase(agent=row.agent, message=row.message, source=row.source)


# =====================================================================================================
# §3 DOAC eligibility
# =====================================================================================================


#: Why a DOAC is not (or not known to be) eligible: a coded, sourced sentence, like a duration note.
Reason = Note


@dataclass(frozen=True)
class DoacEligibility:
    """``eligible`` is True, False, or None (unknown: CrCl cannot be computed and nothing else excludes)."""

    eligible: bool | None
    reasons: tuple[Reason, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"eligible": self.eligible, "reasons": [r.as_dict() for r in self.reasons]}


@dataclass(frozen=True)
class ExclusionRow:
    """One condition under which a DOAC is not eligible."""

    code: str
    applies: Callable[[Situation], bool]
    message: str
    source: str


#: Reference §3: "A DOAC is not eligible when any holds: antiphospholipid syndrome (VKA only); pregnancy;
#: breastfeeding; creatinine clearance ≤ 30 mL/min (Cockcroft-Gault)." The reference cites no source on that
#: line; each row cites where the reference itself places the rule (APS: excluded from ACTION-CVT; pregnancy
#: and breastfeeding: the CSBP2024 §4.1 bullet; renal: the EHRA DOAC-monitoring row). Codes equal the §5
#: warning codes of the same condition.
# fmt: off
DOAC_EXCLUSIONS: tuple[ExclusionRow, ...] = (
    ExclusionRow("aps_vka_only", lambda s: s.has("antiphospholipid_syndrome"),
                 "Antiphospholipid syndrome: warfarin (VKA) only, no DOAC.",
                 "ACTION-CVT (excluded APS)"),
    ExclusionRow("pregnancy_lmwh_only", lambda s: s.facts.pregnant,
                 "Pregnant: no DOAC (and no warfarin) during pregnancy.",
                 "CSBP2024 §4.1"),
    ExclusionRow("breastfeeding_no_doac", lambda s: s.facts.breastfeeding,
                 "Breastfeeding: DOACs are not compatible with breastfeeding.",
                 "CSBP2024 §4.1"),
    ExclusionRow("renal_doac_contraindicated", lambda s: s.renal_doac_contraindicated,
                 "Creatinine clearance is 30 mL/min or less (Cockcroft-Gault): dabigatran is not eligible.",
                 "EHRA"),
)
# fmt: on

#: Not an exclusion but the reason eligibility is unknown: the renal row above cannot be evaluated.
CRCL_UNKNOWN = "crcl_unknown"
DOAC_REASON_CODES: tuple[str, ...] = (*(row.code for row in DOAC_EXCLUSIONS), CRCL_UNKNOWN)


def _doac_eligibility(s: Situation) -> DoacEligibility:
    reasons = [Reason(r.code, r.message, r.source) for r in DOAC_EXCLUSIONS if r.applies(s)]
    excluded = bool(reasons)
    if s.crcl is None:
        missing = ", ".join(_missing_clearance_inputs(s.facts))
        reasons.append(
            Reason(
                CRCL_UNKNOWN,
                f"Creatinine clearance (Cockcroft-Gault) cannot be computed; missing: {missing}. "
                "DOAC eligibility needs CrCl above 30 mL/min.",
                "EHRA",
            )
        )
    eligible: bool | None = False if excluded else (None if s.crcl is None else True)
    return DoacEligibility(eligible=eligible, reasons=tuple(reasons))


# =====================================================================================================
# §3 Oral options after the acute phase
# =====================================================================================================


@dataclass(frozen=True)
class WarfarinOption:
    """Reference §3, VKA bullet."""

    message: str
    source: str
    agent: str = "warfarin"
    inr_low: float = INR_LOW
    inr_high: float = INR_HIGH
    inr_target: float = INR_TARGET

    def as_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "inr_low": self.inr_low,
            "inr_high": self.inr_high,
            "inr_target": self.inr_target,
            "message": self.message,
            "source": self.source,
        }


@dataclass(frozen=True)
class DabigatranOption:
    """Reference §3, dabigatran bullet. ``eligible`` is None when CrCl is unknown."""

    dose_mg: int
    eligible: bool | None
    message: str
    source: str
    agent: str = "dabigatran"
    frequency: str = DABIGATRAN_FREQUENCY

    def as_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "dose_mg": self.dose_mg,
            "frequency": self.frequency,
            "eligible": self.eligible,
            "message": self.message,
            "source": self.source,
        }


OralOption = WarfarinOption | DabigatranOption

WARFARIN_MESSAGE = (
    "Warfarin, INR target 2.5 (range 2.0-3.0). Overlap with heparin for at least 5 days and until the INR is "
    "2.0 or more on two measurements 24 h apart."
)
#: INR range: reference §3 ("all categories") and seed 000 ("target INR of 2-3"); overlap: CHEST2012.
WARFARIN_SOURCE = "CHEST2012; SEED000"


def _oral_options(s: Situation, doac: DoacEligibility) -> tuple[OralOption, ...]:
    """Reference §3: none during pregnancy (LMWH throughout); else warfarin, plus dabigatran unless excluded."""
    if s.facts.pregnant:
        return ()
    warfarin_message = WARFARIN_MESSAGE
    if s.facts.breastfeeding:
        warfarin_message += " Compatible with breastfeeding."
    options: list[OralOption] = [WarfarinOption(message=warfarin_message, source=WARFARIN_SOURCE)]
    if doac.eligible is not False:
        age = s.facts.age
        if age is not None and age >= DABIGATRAN_REDUCED_FROM_AGE:
            dose, source = DABIGATRAN_REDUCED_DOSE_MG, "RESPECT-CVT; EU label (110 mg from age 80)"
            message = f"Dabigatran {dose} mg twice daily (age 80 or over) after 5-15 days of parenteral therapy."
        else:
            dose, source = DABIGATRAN_DOSE_MG, "RESPECT-CVT; SEED002"
            message = f"Dabigatran {dose} mg twice daily after 5-15 days of parenteral therapy."
            if age is None:
                message += " 110 mg twice daily from age 80 (EU label); age not recorded."
        if doac.eligible is None:
            message += " Eligibility unknown until creatinine clearance can be computed."
        options.append(DabigatranOption(dose_mg=dose, eligible=doac.eligible, message=message, source=source))
    return tuple(options)


# =====================================================================================================
# §5 Warnings
# =====================================================================================================


@dataclass(frozen=True)
class RuleWarning:
    """A warning shown with the recommendation. Severities in ACKNOWLEDGE_SEVERITIES need acknowledging."""

    code: str
    severity: str
    message: str
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "message": self.message, "source": self.source}


@dataclass(frozen=True)
class WarningRow:
    """One row of the §5 table."""

    code: str
    severity: str
    applies: Callable[[Situation], bool]
    message: str
    source: str


def _doac_offered(s: Situation) -> bool:
    return not s.facts.pregnant and _doac_eligibility(s).eligible is not False


#: Reference §5, in the reference's order, plus one row of ours at the end. The reference gives no source
#: column; each row cites the document the rule comes from (the §3/§4 row or the seed it restates).
# fmt: off
WARNING_TABLE: tuple[WarningRow, ...] = (
    WarningRow("hemorrhage_not_contraindication", INFO, lambda s: s.facts.hemorrhage,
               "Intracranial hemorrhage caused by the CVT is not a contraindication: anticoagulate anyway and "
               "monitor for hemorrhage expansion. Withholding anticoagulation because of the bleed is the most "
               "dangerous error.",
               "AHA2011 (IIa); EFNS2010; SEED000"),
    WarningRow("subdural_caution", CAUTION, lambda s: s.facts.subdural_hematoma,
               "Subdural hematoma: anticoagulation may enlarge it. Monitor closely; the clinician must "
               "acknowledge this risk.",
               "SEED000"),
    WarningRow("microbleeds_caution", CAUTION, lambda s: s.facts.microbleeds >= 1,
               "Cerebral microbleeds: higher risk of anticoagulant-related bleeding (OR ≈ 4). Weigh the bleeding "
               "risk against the benefit; keep blood pressure below 130/80 mmHg.",
               "SEED001"),
    WarningRow("anti_amyloid_therapy", CAUTION, lambda s: s.facts.anti_amyloid_therapy,
               "Anti-amyloid antibody therapy (lecanemab/donanemab) or ARIA-H together with an anticoagulant: high "
               "bleeding risk.",
               "SEED001"),
    WarningRow("aps_vka_only", RESTRICTION, lambda s: s.has("antiphospholipid_syndrome"),
               "Antiphospholipid syndrome: warfarin only, no DOAC.",
               "ACTION-CVT (excluded APS)"),
    WarningRow("pregnancy_lmwh_only", RESTRICTION, lambda s: s.facts.pregnant,
               "Pregnant: LMWH only throughout pregnancy; neither warfarin nor a DOAC. After delivery: LMWH or "
               "warfarin.",
               "CSBP2024 §4.1"),
    WarningRow("breastfeeding_no_doac", RESTRICTION, lambda s: s.facts.breastfeeding,
               "Breastfeeding: no DOAC. LMWH or warfarin (warfarin is compatible with breastfeeding).",
               "CSBP2024 §4.1"),
    WarningRow("renal_doac_contraindicated", RESTRICTION, lambda s: s.renal_doac_contraindicated,
               "Creatinine clearance 30 mL/min or less (Cockcroft-Gault): no dabigatran.",
               "EHRA"),
    WarningRow("estrogen_avoid", INFO, lambda s: s.has("oral_contraceptive") or s.has("hormone_therapy"),
               "Stop estrogen-containing contraception or hormone therapy; avoid estrogen-containing "
               "contraception in future.",
               "ESO2017"),
    WarningRow("intracranial_hypotension", CAUTION, lambda s: s.has("intracranial_hypotension"),
               "CVT secondary to intracranial hypotension: treat the CSF leak (epidural blood patch). The course "
               "can be more severe: watch closely during days 1-8; consider mechanical thrombectomy if the "
               "patient deteriorates despite anticoagulation.",
               "SEED002"),
    WarningRow("deterioration", URGENT, lambda s: s.facts.deterioration,
               "Neurological deterioration: urgent repeat CT/MRI; consider endovascular therapy or decompressive "
               "hemicraniectomy.",
               "AHA2011 (I-C); SEED000; SEED002"),
    WarningRow("cancer_extrapolated", CAUTION, lambda s: s.category == "cancer",
               "Active cancer: the duration is extrapolated from cancer-associated VTE practice; there is no "
               "CVT-specific guideline. Review every 6 months while the cancer is active.",
               CANCER_SOURCE),
    WarningRow("thrombophilia_test_on_anticoag", CAUTION, lambda s: s.facts.thrombophilia_tested_on_anticoagulant,
               "Protein C, protein S and antithrombin results drawn during anticoagulation are unreliable; "
               "repeat 2-4 weeks after anticoagulation stops.",
               "AHA2011 (IIa-B)"),
    # Ours: §3 says active cancer is "allowed, with a warning (excluded from ACTION-CVT)" but names no code.
    WarningRow("doac_active_cancer", CAUTION, lambda s: s.has("active_cancer") and _doac_offered(s),
               "Active cancer: a DOAC is allowed, but patients with active cancer were excluded from ACTION-CVT.",
               "ACTION-CVT"),
)
# fmt: on

WARNING_CODES: tuple[str, ...] = tuple(row.code for row in WARNING_TABLE)


def _warnings(s: Situation) -> tuple[RuleWarning, ...]:
    return tuple(RuleWarning(r.code, r.severity, r.message, r.source) for r in WARNING_TABLE if r.applies(s))


# =====================================================================================================
# §4 Follow-ups implied by the recommendation
# =====================================================================================================


@dataclass(frozen=True)
class FollowUp:
    """The first occurrence of a follow-up item; repeats (every 6 or 12 months) are the scheduler's job."""

    kind: str
    due_on: date | None
    window_end_on: date | None
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "due_on": _iso(self.due_on),
            "window_end_on": _iso(self.window_end_on),
            "source": self.source,
        }


DateRule = Callable[[Situation], "date | None"]


@dataclass(frozen=True)
class FollowUpRow:
    """One follow-up item: when it is implied, its due date and the end of its window."""

    kind: str
    applies: Callable[[Situation], bool]
    due_on: DateRule
    window_end_on: DateRule
    source: str


def _from_diagnosis(**offset: int) -> DateRule:
    return lambda s: s.facts.diagnosed_on + relativedelta(**offset)


def _from_earliest_end(**offset: int) -> DateRule:
    def rule(s: Situation) -> date | None:
        end = s.duration.earliest_end_on
        return None if end is None else end + relativedelta(**offset)

    return rule


def _finite(s: Situation) -> bool:
    return not s.duration.indefinite


#: Reference §4 (venous imaging; clinic review and labs), as first occurrences. Kind names are stable codes.
# fmt: off
FOLLOW_UP_TABLE: tuple[FollowUpRow, ...] = (
    # CT/MR venography: 3 months after diagnosis, window until 6 months.
    FollowUpRow("venous_imaging", lambda s: True,
                _from_diagnosis(months=3), _from_diagnosis(months=6),
                "AHA2011 (IIa-C); CSBP2024 §3.2; SEED002"),
    # MRI SWI/GRE when microbleeds were seen: "3-6 month intervals initially" → due at 3, window to 6.
    FollowUpRow("microbleed_mri", lambda s: s.facts.microbleeds >= 1,
                _from_diagnosis(months=3), _from_diagnosis(months=6),
                "SEED001"),
    # 2 weeks before the earliest end date of a finite course; it must happen before that end.
    FollowUpRow("end_of_therapy_review", _finite,
                _from_earliest_end(weeks=-2), _from_earliest_end(),
                "CLINIC"),
    # Every 12 months of indefinite anticoagulation; cancer has its own 6-monthly review instead.
    FollowUpRow("annual_review", lambda s: s.duration.indefinite and s.category != "cancer",
                _from_diagnosis(months=12), lambda s: None,
                "CLINIC"),
    # §2 row 3 "review every 6 months". The kind name is ours: the reference names no follow-up for it.
    FollowUpRow("cancer_review", lambda s: s.category == "cancer",
                _from_diagnosis(months=6), lambda s: None,
                CANCER_SOURCE),
    # Protein C, S, antithrombin 2-4 weeks after anticoagulation stops (counted from the earliest end).
    FollowUpRow("thrombophilia_testing", _finite,
                _from_earliest_end(weeks=2), _from_earliest_end(weeks=4),
                "AHA2011 (IIa-B)"),
)
# fmt: on

FOLLOW_UP_KINDS: tuple[str, ...] = tuple(row.kind for row in FOLLOW_UP_TABLE)


def _follow_ups(s: Situation) -> tuple[FollowUp, ...]:
    return tuple(
        FollowUp(kind=r.kind, due_on=r.due_on(s), window_end_on=r.window_end_on(s), source=r.source)
        for r in FOLLOW_UP_TABLE
        if r.applies(s)
    )


# =====================================================================================================
# The recommendation
# =====================================================================================================


def _iso(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def source_names(source: str) -> list[str]:
    """The SOURCES short names cited in a source string, e.g. "AHA2011 (IIb-C); EFNS2010" → both names."""
    return [name for name in SOURCES if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", source)]


@dataclass(frozen=True)
class Recommendation:
    """What the rules propose for one episode. A clinician confirms it; nothing here is a decision."""

    rules_version: str
    category: str
    duration: Duration
    acute_phase: AcutePhase
    oral_options: tuple[OralOption, ...]
    doac_eligible: DoacEligibility
    creatinine_clearance_ml_min: float | None
    warnings: tuple[RuleWarning, ...]
    follow_ups: tuple[FollowUp, ...]

    def cited_sources(self) -> list[str]:
        """Every short name cited by any output item, sorted."""
        strings = [
            self.duration.source,
            *(n.source for n in self.duration.notes),
            self.acute_phase.source,
            *(o.source for o in self.oral_options),
            *(r.source for r in self.doac_eligible.reasons),
            *(w.source for w in self.warnings),
            *(f.source for f in self.follow_ups),
        ]
        return sorted({name for text in strings for name in source_names(text)})

    def warning_codes(self) -> list[str]:
        return [w.code for w in self.warnings]

    def as_dict(self) -> dict[str, Any]:
        """The JSON output of ``manage.py recommend`` (issue 3). Dates are ISO strings."""
        return {
            "rules_version": self.rules_version,
            "category": self.category,
            "duration": self.duration.as_dict(),
            "acute_phase": self.acute_phase.as_dict(),
            "oral_options": [option.as_dict() for option in self.oral_options],
            "doac_eligible": self.doac_eligible.as_dict(),
            "creatinine_clearance_ml_min": self.creatinine_clearance_ml_min,
            "warnings": [w.as_dict() for w in self.warnings],
            "follow_ups": [f.as_dict() for f in self.follow_ups],
            "sources": [{"name": name, "citation": SOURCES[name]} for name in self.cited_sources()],
        }


def recommend(facts: EpisodeFacts) -> Recommendation:
    """Apply the reference's §2, §3, §4 and §5 tables to one episode."""
    row = category_row(facts)
    situation = Situation(facts=facts, row=row, duration=_duration(facts, row), crcl=_creatinine_clearance(facts))
    doac = _doac_eligibility(situation)
    return Recommendation(
        rules_version=RULES_VERSION,
        category=row.category,
        duration=situation.duration,
        acute_phase=_acute_phase(situation),
        oral_options=_oral_options(situation, doac),
        doac_eligible=doac,
        creatinine_clearance_ml_min=situation.crcl,
        warnings=_warnings(situation),
        follow_ups=_follow_ups(situation),
    )
