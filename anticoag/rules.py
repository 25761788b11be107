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

from anticoag import medicines

#: Changes with every revision of the reference (issue 12: revision 2); stored with every plan.
RULES_VERSION = "2026.12.1"


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
        # rev 2: heparin is not an option with either (reference §3, VITT2021).
        RiskFactor(
            "vitt", "Vaccine-induced immune thrombotic thrombocytopenia (anti-PF4 after adenoviral vaccine)", _T
        ),
        RiskFactor("heparin_induced_thrombocytopenia", "Heparin-induced thrombocytopenia, current or past", _T),
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
    "ACTION-CVT": "Yaghi et al., Stroke 2022 (DOAC vs warfarin, 845 patients; excluded APS, active cancer, pregnancy).",
    "CHEST2012": "Holbrook et al., Chest 2012;141:e152S-e184S (VKA management); Ageno et al.",
    "ROSENDAAL1993": "Rosendaal et al., Thromb Haemost 1993;69:236-239 (time in therapeutic range).",
    "EHRA": "European Heart Rhythm Association practical guide on NOAC use (renal monitoring intervals; drug "
    "interaction tables: Steffel et al., Europace 2021) [verify].",
    "SECRET": "Field et al., Stroke 2023;54:2724-2736 (rivaroxaban 20 mg daily, 15 mg daily at CrCl 30-49, vs "
    "standard of care; adults; excluded APS, CrCl < 30, pregnancy, breastfeeding, strong CYP3A4 inducers).",
    "AUR2023": "Cummings et al., Lecanemab appropriate use recommendations, J Prev Alz Dis 2023;10:362-377.",
    "VITT2021": "Furie et al., AHA/ASA special report on CVST with vaccine-induced immune thrombotic "
    "thrombocytopenia, Stroke 2021; Siegler et al., Stroke 2021.",
    "CHEST2008": "Ansell et al., Chest 2008;133:160S-198S (VKA pharmacology; INR > 9 management).",
    "EU label": "Summaries of product characteristics (dabigatran, rivaroxaban, apixaban, enoxaparin, warfarin).",
    "US label": "US prescribing information (dabigatran, rivaroxaban, apixaban, enoxaparin, warfarin/Coumadin).",
    "VA practice": "Witt et al., 2016 (VA anticoagulation practice) [verify].",
    "ISTH2005": "Schulman & Kearon, J Thromb Haemost 2005;3:692-694 (major bleeding definition).",
    "ISTH2015": "Kaatz et al., J Thromb Haemost 2015;13:2119-2126 (clinically relevant non-major bleeding).",
    "SEED000": "Seed document 000: management of small cerebral venous hemorrhage.",
    "SEED001": "Seed document 001: microhemorrhages of unclear cause.",
    "SEED002": "Seed document 002: CVT secondary to intracranial hypotension (case report).",
    "CLINIC": "Clinic practice (no external guideline).",
    "SCOPE": "Clinical reference §0 (rev 2): the rules are for adults (18 or more); pediatric CVT needs a pediatric "
    "protocol (weight-based dosing, e.g. EINSTEIN-Jr CVT (rivaroxaban) or DIVERSITY (dabigatran)).",
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

#: Reference §0 (rev 2): adults only, "patients aged 18 or more".
ADULT_FROM_AGE = 18

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


#: Reference §0/§3 (rev 2): "pregnancy-associated" is one of these codes, never a separate flag.
PREGNANCY_CODES: frozenset[str] = frozenset({"pregnancy", "puerperium"})

#: Reference §1 "puerperium: CVT within 6 weeks after delivery".
PUERPERIUM = relativedelta(weeks=6)


def _check_medication_code(code: object) -> str:
    medicine = medicines.resolve(code) if isinstance(code, str) else None
    if medicine is None:
        raise FactsError("medications", f"unknown code {_one_line(code)}; allowed: {', '.join(medicines.MEDICINES)}")
    return medicine.code


@dataclass(frozen=True)
class EpisodeFacts:
    """The facts of one CVT episode that the rules read (issue 3, input fields; issue 12). Validated on creation.

    ``risk_factors`` accepts any iterable of codes and is stored as a frozenset (a code counts once).
    ``medications``: the patient's current medicines, codes of :data:`anticoag.medicines.MEDICINES` (§5a).
    ``thrombophilia_tested_on_anticoagulant``: a protein C/S/antithrombin result was drawn while the
    patient was anticoagulated (reference §5, last row).

    Pregnancy is one fact (reference §0, §3 rev 2): the ``pregnancy``/``puerperium`` code. ``pregnant=True``
    is accepted as an alias that adds the ``pregnancy`` code; after validation ``pregnant`` always means
    *pregnant now* — the ``pregnancy`` code and no delivery date — so it can never disagree with the codes.
    A delivery date, an expected delivery date or breastfeeding without a pregnancy code is refused.
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
    expected_delivery_on: date | None = None
    breastfeeding: bool = False
    deterioration: bool = False
    thrombophilia_tested_on_anticoagulant: bool = False
    medications: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        _check_date("diagnosed_on", self.diagnosed_on, optional=False)
        _check_date("delivered_on", self.delivered_on, optional=True)
        _check_date("expected_delivery_on", self.expected_delivery_on, optional=True)
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
        if self.pregnant:  # the alias of the pregnancy code (reference §0: one fact, one place)
            codes = codes | {"pregnancy"}
        meds = self.medications
        if isinstance(meds, (str, bytes)) or not isinstance(meds, Iterable):
            raise FactsError("medications", f"must be a list of codes, got {_one_line(meds)}")
        meds = frozenset(_check_medication_code(code) for code in sorted(meds, key=str))
        # Frozen dataclass: normalising a field in __post_init__ needs object.__setattr__.
        object.__setattr__(self, "risk_factors", codes)
        object.__setattr__(self, "medications", meds)
        object.__setattr__(self, "pregnant", "pregnancy" in codes and self.delivered_on is None)
        check_pregnancy_facts(
            risk_factors=codes,
            diagnosed_on=self.diagnosed_on,
            delivered_on=self.delivered_on,
            expected_delivery_on=self.expected_delivery_on,
            breastfeeding=self.breastfeeding,
        )

    def codes_of(self, risk_class: RiskClass) -> frozenset[str]:
        """The recorded risk factor codes of one class (reference §1)."""
        return frozenset(code for code in self.risk_factors if RISK_FACTORS[code].risk_class is risk_class)

    @property
    def pregnancy_associated(self) -> bool:
        """The ``pregnancy`` or ``puerperium`` code (reference §0): the one pregnancy fact."""
        return bool(self.risk_factors & PREGNANCY_CODES)

    @property
    def adult(self) -> bool:
        """Reference §0: the rules are for patients aged 18 or more; an unknown age is not an adult."""
        return self.age is not None and self.age >= ADULT_FROM_AGE


def check_pregnancy_facts(
    *,
    risk_factors: Iterable[str],
    diagnosed_on: date | None,
    delivered_on: date | None,
    expected_delivery_on: date | None,
    breastfeeding: bool,
) -> None:
    """Reference §3 (rev 2): a delivery date or breastfeeding without a pregnancy code is a contradiction.

    The same holds for an expected delivery date, and for the puerperium (a CVT *after* delivery): with only
    the ``puerperium`` code, a delivery date after the diagnosis contradicts the code, and so does one more
    than 6 weeks before it (§1: "within 6 weeks after delivery"). Raises :class:`FactsError` naming the field;
    the model's ``clean()`` and the admin call it too, so every path refuses the same things.
    """
    codes = frozenset(risk_factors)
    need = "needs the pregnancy or puerperium risk factor code (reference §3: pregnancy is one fact)"
    if not codes & PREGNANCY_CODES:
        if delivered_on is not None:
            raise FactsError("delivered_on", f"a delivery date {need}")
        if expected_delivery_on is not None:
            raise FactsError("expected_delivery_on", f"an expected delivery date {need}")
        if breastfeeding:
            raise FactsError("breastfeeding", f"breastfeeding {need}")
        return
    if "pregnancy" in codes:
        return
    if expected_delivery_on is not None:
        raise FactsError(
            "expected_delivery_on", "the puerperium code means the delivery has happened: give delivered_on instead"
        )
    if delivered_on is not None and diagnosed_on is not None:
        if delivered_on > diagnosed_on:
            raise FactsError(
                "delivered_on", "is after the diagnosis, but the puerperium code means a CVT after delivery"
            )
        if delivered_on + PUERPERIUM < diagnosed_on:
            raise FactsError(
                "delivered_on",
                "is more than 6 weeks before the diagnosis, but the puerperium code means a CVT within 6 weeks "
                "after delivery (reference §1)",
            )


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
    "expected_delivery_on",
    "breastfeeding",
    "deterioration",
    "thrombophilia_tested_on_anticoagulant",
    "medications",
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
    (age, sex, weight, creatinine, delivery dates). ``pregnant: true`` is an alias for the ``pregnancy``
    code. Raises :class:`FactsError` for every bad input.
    """
    if not isinstance(data, Mapping):
        raise FactsError("input", f"must be a JSON object of episode facts, got {_one_line(data)}")
    for key in data:
        if key not in INPUT_FIELDS:
            raise FactsError(_field_label(key), f"unknown field; allowed: {', '.join(INPUT_FIELDS)}")
    if data.get("diagnosed_on") is None:
        raise FactsError("diagnosed_on", "is required (an ISO date, YYYY-MM-DD)")

    kwargs: dict[str, Any] = {"diagnosed_on": _parse_date("diagnosed_on", data["diagnosed_on"])}
    for name in ("delivered_on", "expected_delivery_on"):
        if data.get(name) is not None:
            kwargs[name] = _parse_date(name, data[name])
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

    if "medications" in data:
        meds = data["medications"]
        if not isinstance(meds, (list, tuple, set, frozenset)):
            raise FactsError("medications", f"must be a list of codes, got {_one_line(meds)}")
        kwargs["medications"] = frozenset(_check_medication_code(code) for code in meds)

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
    if not facts.adult:  # reference §0: no adult creatinine clearance for a patient under 18
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
    #: Set when the earliest end cannot be a date yet (pregnant, no delivery date): what to show instead.
    earliest_end_text: str | None = None
    #: Reference §0: shown for a patient under 18 or of unknown age, whose category is an adult rule.
    adult_rule: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "min_months": self.min_months,
            "max_months": self.max_months,
            "indefinite": self.indefinite,
            "earliest_end_on": _iso(self.earliest_end_on),
            "earliest_end_text": self.earliest_end_text,
            "adult_rule": self.adult_rule,
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
    # §2 row 4 / §3 (rev 2), pregnant now without an expected date: the earliest end is not known yet.
    NoteRow("six_weeks_after_delivery",
            lambda f, row: row.category == "pregnancy" and f.pregnant and f.expected_delivery_on is None,
            "Continue for at least 6 months in total and at least 6 weeks after delivery: the earliest end is "
            "6 weeks after delivery (date pending). Record the delivery date (or an expected delivery date).",
            "AHA2011 (class I)"),
    # §3 (rev 2): "use the expected delivery date when one is recorded".
    NoteRow("expected_delivery_date",
            lambda f, row: row.category == "pregnancy" and f.pregnant and f.expected_delivery_on is not None,
            "The earliest end counts 6 weeks from the expected delivery date; it moves when the delivery date is "
            "recorded.",
            "AHA2011 (class I)"),
    # §0 (rev 2): category and duration of a patient under 18 (or of unknown age) are adult rules.
    NoteRow("adult_rule",
            lambda f, row: not f.adult,
            "Adult rule: the category and duration are those of adults (reference §0); a patient under 18 needs "
            "a pediatric protocol.",
            "SCOPE (clinical reference §0: adults only)"),
    # §2 row 3: "indefinite while the cancer is active".
    NoteRow("while_cancer_active",
            lambda f, row: row.category == "cancer",
            "Continue while the cancer is active; review every 6 months.",
            CANCER_SOURCE),
)
# fmt: on


#: The words shown instead of an end date while a pregnant patient's delivery date is unknown (§3 rev 2).
END_PENDING_DELIVERY = "6 weeks after delivery (date pending)"


def _duration(facts: EpisodeFacts, row: CategoryRow) -> Duration:
    """Reference §2, with §3 (rev 2) for pregnancy: at least 6 months in total and at least 6 weeks after
    delivery. While the patient is pregnant and no expected delivery date is recorded, the earliest end is not
    known: ``earliest_end_on`` is None and ``earliest_end_text`` says so — never a date that could fall before
    the delivery."""
    rule = row.duration
    earliest = latest = None
    pending: str | None = None
    if not rule.indefinite:
        assert rule.min_months is not None  # every finite row has a minimum
        earliest = facts.diagnosed_on + relativedelta(months=rule.min_months)
        if row.category == "pregnancy":
            delivery = facts.delivered_on or (facts.expected_delivery_on if facts.pregnant else None)
            if delivery is not None:
                earliest = max(earliest, delivery + PREGNANCY_AFTER_DELIVERY)
            elif facts.pregnant:
                earliest, pending = None, END_PENDING_DELIVERY
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
        earliest_end_text=pending,
        adult_rule=not facts.adult,
    )


# =====================================================================================================
# Clinic policy the rules read (reference §3 rev 2: formulary; [verify] values that are configurable)
# =====================================================================================================

#: Reference §3 (rev 2): the DOACs a clinic may offer, in the reference's order; the default formulary.
DOAC_AGENTS: tuple[str, ...] = ("dabigatran", "rivaroxaban", "apixaban")


@dataclass(frozen=True)
class RulesPolicy:
    """What a clinic sets: its DOAC formulary and the configurable [verify] values of §3.

    * ``doac_formulary`` — which DOACs the clinic offers (default all three; reference §3 rev 2).
    * ``enoxaparin_mg_per_kg`` — acute-phase suggestion, 1 mg/kg every 12 hours, once daily at CrCl < 30
      (EU/US label (enoxaparin)) [verify]; ``enoxaparin_verified`` says whether the clinic checked it.
    * ``apixaban_verified`` — apixaban 5 mg twice daily is [verify] in the reference.
    """

    doac_formulary: tuple[str, ...] = DOAC_AGENTS
    enoxaparin_mg_per_kg: float = 1.0
    enoxaparin_verified: bool = False
    apixaban_verified: bool = False

    def __post_init__(self) -> None:
        unknown = [a for a in self.doac_formulary if a not in DOAC_AGENTS]
        if unknown:
            raise FactsError(
                "formulary", f"unknown DOAC {', '.join(map(str, unknown))}; allowed: {', '.join(DOAC_AGENTS)}"
            )
        # Keep the reference's order whatever order the clinic listed them in.
        object.__setattr__(self, "doac_formulary", tuple(a for a in DOAC_AGENTS if a in self.doac_formulary))
        if not 0 < self.enoxaparin_mg_per_kg <= 2:
            raise FactsError("enoxaparin_mg_per_kg", f"must be above 0 and at most 2, got {self.enoxaparin_mg_per_kg}")


DEFAULT_RULES_POLICY = RulesPolicy()


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
    policy: RulesPolicy = DEFAULT_RULES_POLICY

    @property
    def category(self) -> str:
        return self.row.category

    @property
    def adult(self) -> bool:
        return self.facts.adult

    @property
    def renal_doac_contraindicated(self) -> bool:
        return self.crcl is not None and self.crcl <= DOAC_MAX_INELIGIBLE_CRCL

    @property
    def ufh_for_renal(self) -> bool:
        return self.crcl is not None and self.crcl < UFH_BELOW_CRCL

    @property
    def heparin_contraindicated(self) -> bool:
        """Reference §3 (rev 2): heparin is not an option with VITT or heparin-induced thrombocytopenia."""
        return bool(self.facts.risk_factors & HEPARIN_CONTRAINDICATING_CODES)

    def has(self, code: str) -> bool:
        return code in self.facts.risk_factors

    def current_medicines(self) -> list[medicines.Medicine]:
        return [medicines.MEDICINES[code] for code in sorted(self.facts.medications)]

    def medicines_with(self, agent: str, kinds: Iterable[str]) -> list[medicines.Medicine]:
        wanted = set(kinds)
        return [m for m in self.current_medicines() if m.effect_on(agent).kind in wanted]

    @property
    def strong_inducers(self) -> list[medicines.Medicine]:
        return [m for m in self.current_medicines() if m.strong_inducer]


#: Reference §3 (rev 2) and §1: the codes that rule heparin out.
HEPARIN_CONTRAINDICATING_CODES: frozenset[str] = frozenset({"vitt", "heparin_induced_thrombocytopenia"})


# =====================================================================================================
# §3 Acute phase
# =====================================================================================================


@dataclass(frozen=True)
class DoseSuggestion:
    """Reference §3 (rev 2): the acute-phase enoxaparin dose, a suggestion [verify], clinic-configurable."""

    agent: str
    dose_mg: int | None
    mg_per_kg: float
    frequency: str | None
    route: str
    message: str
    source: str
    verified: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "dose_mg": self.dose_mg,
            "mg_per_kg": self.mg_per_kg,
            "frequency": self.frequency,
            "route": self.route,
            "message": self.message,
            "source": self.source,
            "verified": self.verified,
        }


@dataclass(frozen=True)
class AcutePhase:
    """The parenteral (or, with heparin ruled out, non-heparin) anticoagulant to start at diagnosis.

    ``heparin`` is False when heparin is contraindicated (VITT, HIT); ``alternatives`` then lists the other
    non-heparin agents the reference names. ``dose_suggestion`` is the enoxaparin suggestion (None when no
    LMWH is proposed or the patient is out of the adult scope)."""

    agent: str
    message: str
    source: str
    heparin: bool = True
    alternatives: tuple[str, ...] = ()
    dose_suggestion: DoseSuggestion | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "message": self.message,
            "source": self.source,
            "heparin": self.heparin,
            "alternatives": list(self.alternatives),
            "dose_suggestion": None if self.dose_suggestion is None else self.dose_suggestion.as_dict(),
        }


@dataclass(frozen=True)
class AcutePhaseRow:
    """One row of the acute-phase choice: first row that applies wins."""

    agent: str
    applies: Callable[[Situation], bool]
    message: str
    source: str
    alternatives: tuple[str, ...] = ()


_PROCEDURE_HINT = "Use adjusted-dose UFH instead if a procedure may be needed."
_PEDIATRIC_DOSING = (
    " Patient under 18 or age unknown: dose by a pediatric protocol (weight-based); no adult dose is proposed."
)
#: Reference §3 (rev 2): "a non-heparin anticoagulant (argatroban, fondaparinux, or a DOAC)".
NON_HEPARIN_ALTERNATIVES: tuple[str, ...] = ("fondaparinux", "doac")

#: Reference §3, first bullet ("full-dose parenteral anticoagulation at diagnosis: LMWH preferred, UFH when
#: CrCl < 30 mL/min or a procedure may be needed"), the heparin bullet (rev 2: VITT/HIT → a non-heparin
#: anticoagulant, VITT2021) and the pregnancy bullet (CSBP2024 §4.1). Heparin ruled out wins over every other
#: row: the reference names argatroban first, and argatroban needs no renal dose change, so it is the
#: proposal, with fondaparinux or a DOAC as the alternatives the clinician may choose. When a pregnant patient
#: has CrCl < 30 the renal and pregnancy rules collide; UFH is a heparin too, so it satisfies the pregnancy
#: rule (no warfarin, no DOAC) while honouring the renal one.
# fmt: off
ACUTE_PHASE_TABLE: tuple[AcutePhaseRow, ...] = (
    AcutePhaseRow("argatroban", lambda s: s.heparin_contraindicated,
                  "Heparin is contraindicated (VITT or heparin-induced thrombocytopenia): no LMWH, no UFH. Start a "
                  "non-heparin anticoagulant: argatroban, fondaparinux or a DOAC. With VITT: IV immunoglobulin; no "
                  "platelet transfusion.",
                  "VITT2021", NON_HEPARIN_ALTERNATIVES),
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

ENOXAPARIN_SOURCE = "EU label (enoxaparin); US label (enoxaparin)"


def _enoxaparin_dose(s: Situation) -> DoseSuggestion:
    """Reference §3 (rev 2): 1 mg/kg s.c. every 12 hours; CrCl < 30: 1 mg/kg once daily. Needs the weight."""
    per_kg, verified = s.policy.enoxaparin_mg_per_kg, s.policy.enoxaparin_verified
    weight = s.facts.weight_kg
    common = dict(
        agent="enoxaparin", mg_per_kg=per_kg, route="subcutaneous", source=ENOXAPARIN_SOURCE, verified=verified
    )
    if weight is None:
        return DoseSuggestion(
            dose_mg=None,
            frequency=None,
            message=f"Enoxaparin {per_kg:g} mg/kg: the weight is not recorded, so no dose is suggested. Weigh the "
            "patient.",
            **common,
        )
    dose = round(weight * per_kg)
    if s.ufh_for_renal:
        frequency, why = "once daily", f" (creatinine clearance {s.crcl:g} mL/min, below 30)"
    else:
        frequency, why = "every 12 hours", ""
    message = f"Suggestion: enoxaparin {per_kg:g} mg/kg = {dose} mg subcutaneously {frequency}{why}."
    if s.crcl is None:
        message += " Creatinine clearance unknown: once daily instead if it is below 30 mL/min."
    if s.ufh_for_renal:
        message += " UFH is preferred at this creatinine clearance; this is the dose if LMWH is used."
    message += " Check against the label and local protocol [verify]."
    return DoseSuggestion(dose_mg=dose, frequency=frequency, message=message, **common)


def _acute_phase(s: Situation) -> AcutePhase:
    row = next(r for r in ACUTE_PHASE_TABLE if r.applies(s))
    message = row.message
    dose = None
    if not s.adult:
        message += _PEDIATRIC_DOSING
    elif row.agent in ("lmwh", "ufh"):
        dose = _enoxaparin_dose(s)
    return AcutePhase(
        agent=row.agent,
        message=message,
        source=row.source,
        heparin=row.agent in ("lmwh", "ufh"),
        alternatives=row.alternatives,
        dose_suggestion=dose,
    )


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
    message: Callable[[Situation], str] | str
    source: str


def _inducer_message(s: Situation) -> str:
    names = ", ".join(m.code for m in s.strong_inducers)
    return f"Current strong CYP3A4/P-glycoprotein inducer ({names}): DOAC levels fall; no DOAC."


#: Reference §3: "A DOAC is not eligible when any holds: antiphospholipid syndrome (VKA only; EULAR 2019: no
#: rivaroxaban in triple-positive APS); pregnancy; breastfeeding; creatinine clearance ≤ 30 mL/min
#: (Cockcroft-Gault); age under 18 (§0); (rev 2) a current strong inducer of CYP3A4 / P-glycoprotein
#: (carbamazepine, phenytoin, phenobarbital, rifampicin; SECRET exclusion; EHRA)." Codes equal the §5 warning
#: codes of the same condition, except the inducer row, whose warning is ``doac_interaction``.
# fmt: off
DOAC_EXCLUSIONS: tuple[ExclusionRow, ...] = (
    ExclusionRow("pediatric_out_of_scope", lambda s: not s.adult,
                 "Under 18, or age not recorded: no adult oral agent (reference §0).",
                 "SCOPE (clinical reference §0: adults only)"),
    ExclusionRow("aps_vka_only", lambda s: s.has("antiphospholipid_syndrome"),
                 "Antiphospholipid syndrome: warfarin (VKA) only, no DOAC.",
                 "EULAR 2019 (no rivaroxaban in triple-positive APS); ACTION-CVT and SECRET excluded APS"),
    ExclusionRow("pregnancy_lmwh_only", lambda s: s.facts.pregnant,
                 "Pregnant: no DOAC (and no warfarin) during pregnancy.",
                 "CSBP2024 §4.1; AHA2011"),
    ExclusionRow("breastfeeding_no_doac", lambda s: s.facts.breastfeeding,
                 "Breastfeeding: DOACs are not compatible with breastfeeding.",
                 "CSBP2024 §4.1"),
    ExclusionRow("renal_doac_contraindicated", lambda s: s.renal_doac_contraindicated,
                 "Creatinine clearance is 30 mL/min or less (Cockcroft-Gault): no DOAC is eligible.",
                 "EHRA"),
    ExclusionRow("strong_inducer", lambda s: bool(s.strong_inducers),
                 _inducer_message,
                 "SECRET (excluded strong CYP3A4 inducers); EHRA"),
)
# fmt: on

#: Not an exclusion but the reason eligibility is unknown: the renal row above cannot be evaluated.
CRCL_UNKNOWN = "crcl_unknown"
DOAC_REASON_CODES: tuple[str, ...] = (*(row.code for row in DOAC_EXCLUSIONS), CRCL_UNKNOWN)


def _doac_eligibility(s: Situation) -> DoacEligibility:
    reasons = [
        Reason(r.code, r.message(s) if callable(r.message) else r.message, r.source)
        for r in DOAC_EXCLUSIONS
        if r.applies(s)
    ]
    excluded = bool(reasons)
    if s.crcl is None and s.adult:
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
            "verified": True,
        }


@dataclass(frozen=True)
class DoacOption:
    """Reference §3, a DOAC bullet (dabigatran, rivaroxaban, apixaban). ``eligible`` is None when CrCl is
    unknown. ``evidence_level``: "randomised" or "observational", beside the source (rev 2)."""

    agent: str
    dose_mg: int
    frequency: str
    eligible: bool | None
    message: str
    source: str
    evidence_level: str
    verified: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "dose_mg": self.dose_mg,
            "frequency": self.frequency,
            "eligible": self.eligible,
            "message": self.message,
            "source": self.source,
            "evidence_level": self.evidence_level,
            "verified": self.verified,
        }


#: The dabigatran option of revision 1 is a DOAC option like the others.
DabigatranOption = DoacOption
OralOption = WarfarinOption | DoacOption

WARFARIN_MESSAGE = (
    "Warfarin, INR target 2.5 (range 2.0-3.0). Overlap with heparin for at least 5 days and until the INR is "
    "2.0 or more on two measurements 24 h apart."
)
#: INR range: reference §3 ("all categories") and seed 000 ("target INR of 2-3"); overlap: CHEST2012.
WARFARIN_SOURCE = "CHEST2012; SEED000"

#: Reference §3 (rev 2): rivaroxaban 20 mg once daily; 15 mg once daily at CrCl 30-49.
RIVAROXABAN_DOSE_MG, RIVAROXABAN_REDUCED_DOSE_MG = 20, 15
RIVAROXABAN_REDUCED_BELOW_CRCL = 50.0
#: Reference §3 (rev 2): apixaban 5 mg twice daily (ACTION-CVT, observational; no CVT trial) [verify].
APIXABAN_DOSE_MG = 5
RANDOMISED, OBSERVATIONAL = "randomised", "observational"
_AFTER_PARENTERAL = "after 5-15 days of parenteral therapy"


def _unknown_crcl_suffix(doac: DoacEligibility) -> str:
    return " Eligibility unknown until creatinine clearance can be computed." if doac.eligible is None else ""


def _dabigatran(s: Situation, doac: DoacEligibility) -> DoacOption:
    age = s.facts.age
    if age is not None and age >= DABIGATRAN_REDUCED_FROM_AGE:
        dose, source = DABIGATRAN_REDUCED_DOSE_MG, "RESPECT-CVT; EU label (dabigatran) (110 mg from age 80)"
        message = f"Dabigatran {dose} mg twice daily (age 80 or over) {_AFTER_PARENTERAL}."
    else:
        dose, source = DABIGATRAN_DOSE_MG, "RESPECT-CVT; SEED002"
        message = f"Dabigatran {dose} mg twice daily {_AFTER_PARENTERAL}."
    return DoacOption(
        "dabigatran",
        dose,
        DABIGATRAN_FREQUENCY,
        doac.eligible,
        message + _unknown_crcl_suffix(doac),
        source,
        RANDOMISED,
    )


def _rivaroxaban(s: Situation, doac: DoacEligibility) -> DoacOption:
    if s.crcl is not None and s.crcl < RIVAROXABAN_REDUCED_BELOW_CRCL:
        dose = RIVAROXABAN_REDUCED_DOSE_MG
        message = f"Rivaroxaban {dose} mg once daily (creatinine clearance 30-49 mL/min) {_AFTER_PARENTERAL}."
    else:
        dose = RIVAROXABAN_DOSE_MG
        message = f"Rivaroxaban {dose} mg once daily {_AFTER_PARENTERAL}."
        if s.crcl is None:
            message += " 15 mg once daily if creatinine clearance is 30-49 mL/min."
    return DoacOption(
        "rivaroxaban",
        dose,
        "once daily",
        doac.eligible,
        message + " SECRET was a randomised phase 2 trial; ACTION-CVT observational." + _unknown_crcl_suffix(doac),
        "SECRET (randomised); ACTION-CVT (observational)",
        RANDOMISED,
    )


def _apixaban(s: Situation, doac: DoacEligibility) -> DoacOption:
    message = (
        f"Apixaban {APIXABAN_DOSE_MG} mg twice daily {_AFTER_PARENTERAL}. Observational evidence only (ACTION-CVT); "
        "no CVT trial [verify]."
    )
    return DoacOption(
        "apixaban",
        APIXABAN_DOSE_MG,
        "twice daily",
        doac.eligible,
        message + _unknown_crcl_suffix(doac),
        "ACTION-CVT (observational) [verify]",
        OBSERVATIONAL,
        verified=s.policy.apixaban_verified,
    )


_DOAC_BUILDERS: dict[str, Callable[[Situation, DoacEligibility], DoacOption]] = {
    "dabigatran": _dabigatran,
    "rivaroxaban": _rivaroxaban,
    "apixaban": _apixaban,
}


def _oral_options(s: Situation, doac: DoacEligibility) -> tuple[OralOption, ...]:
    """Reference §0 and §3: none for a patient under 18 (or of unknown age); none while pregnant (LMWH
    throughout); else warfarin, plus each DOAC of the clinic's formulary unless a DOAC is excluded."""
    if not s.adult or s.facts.pregnant:
        return ()
    warfarin_message = WARFARIN_MESSAGE
    if s.facts.breastfeeding:
        warfarin_message += " Compatible with breastfeeding."
    options: list[OralOption] = [WarfarinOption(message=warfarin_message, source=WARFARIN_SOURCE)]
    if doac.eligible is not False:
        options.extend(_DOAC_BUILDERS[agent](s, doac) for agent in s.policy.doac_formulary)
    return tuple(options)


def _doacs_offered(s: Situation) -> list[str]:
    return [o.agent for o in _oral_options(s, _doac_eligibility(s)) if o.agent != "warfarin"]


def _warfarin_offered(s: Situation) -> bool:
    return s.adult and not s.facts.pregnant


#: Reference §3 (rev 2): "AHA2024 ... reasonable to move to a VKA or a DOAC; ESO2017, older, suggested not
#: using DOACs; show both in the rationale". Shown whenever an oral agent is proposed.
# fmt: off
RATIONALE_TABLE: tuple[NoteRow, ...] = (
    NoteRow("aha2024_vka_or_doac", lambda f, row: True,
            "AHA2024: after initial parenteral anticoagulation it is reasonable to move to a vitamin K antagonist "
            "or a DOAC.",
            "AHA2024"),
    NoteRow("eso2017_no_doac", lambda f, row: True,
            "ESO2017 (older) suggested not using DOACs for CVT, for lack of evidence at the time.",
            "ESO2017"),
)
# fmt: on


def _rationale(s: Situation, options: tuple[OralOption, ...]) -> tuple[Note, ...]:
    if not options:
        return ()
    return tuple(Note(n.code, n.message, n.source) for n in RATIONALE_TABLE if n.applies(s.facts, s.row))


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
    """One row of the §5 table. ``message`` is a sentence, or a function of the situation for the rows that
    name things (the medicine, the agent, the caution)."""

    code: str
    severity: str
    applies: Callable[[Situation], bool]
    message: Callable[[Situation], str] | str
    source: str


def _doac_offered(s: Situation) -> bool:
    return bool(_doacs_offered(s))


def _doac_interactions(s: Situation) -> list[str]:
    """§5a with a DOAC: inducers (whatever else excludes a DOAC), and the bleeding / P-gp rows for the DOACs
    actually proposed."""
    lines = [f"{m.name} with every DOAC: {m.effect_on('dabigatran').text}" for m in s.strong_inducers]
    offered = _doacs_offered(s)
    for m in s.current_medicines():
        if m.strong_inducer:
            continue
        by_effect: dict[str, list[str]] = {}
        for agent in offered:
            effect = m.effect_on(agent)
            if effect.kind in (medicines.REDUCE_OR_AVOID, medicines.BLEEDING_RISK):
                by_effect.setdefault(effect.text, []).append(agent)
        lines.extend(f"{m.name} with {', '.join(agents)}: {text}" for text, agents in by_effect.items())
    return lines


def _doac_interaction_message(s: Situation) -> str:
    return (
        "Current medicines that interact with a DOAC: "
        + "; ".join(_doac_interactions(s))
        + ". Interaction tables: EHRA 2021 and the labels [verify]."
    )


def _warfarin_interactions(s: Situation) -> list[str]:
    if not _warfarin_offered(s):
        return []
    kinds = (*medicines.INR_MOVING, medicines.BLEEDING_RISK)
    return [f"{m.name}: {m.effect_on('warfarin').text}" for m in s.medicines_with("warfarin", kinds)]


def _warfarin_interaction_message(s: Situation) -> str:
    return (
        "Current medicines that change the INR or the bleeding risk on warfarin: "
        + "; ".join(_warfarin_interactions(s))
        + ". Check the INR within 3-7 days of starting or stopping one [verify]."
    )


#: Reference §3 (rev 2), DOAC cautions: the option stays, with a warning to acknowledge.
DOAC_CAUTION_WEIGHT_ABOVE_KG = 120.0


def _doac_cautions(s: Situation) -> list[str]:
    offered = _doacs_offered(s)
    if not offered:
        return []
    cautions: list[str] = []
    if s.has("infection") or s.has("head_trauma"):
        cautions.append("CNS infection or major head trauma: such patients were excluded from RESPECT-CVT [verify]")
    if s.facts.weight_kg is not None and s.facts.weight_kg > DOAC_CAUTION_WEIGHT_ABOVE_KG:
        cautions.append(
            f"weight {s.facts.weight_kg:g} kg (over 120 kg): ISTH guidance on DOACs in obesity prefers rivaroxaban "
            "or apixaban to dabigatran [verify]"
        )
    if "dabigatran" in offered:
        inhibitors = s.medicines_with("dabigatran", (medicines.REDUCE_OR_AVOID,))
        if inhibitors:
            names = ", ".join(m.code for m in inhibitors)
            cautions.append(
                f"P-glycoprotein inhibitor with dabigatran ({names}): EU label (dabigatran): reduced dose or avoid "
                "[verify]"
            )
    return cautions


def _estrogen(s: Situation) -> bool:
    return (
        s.has("oral_contraceptive")
        or s.has("hormone_therapy")
        or any(m.effect_on("warfarin").kind == medicines.ESTROGEN for m in s.current_medicines())
    )


#: Reference §5, in the reference's order, plus one row of ours at the end. Each row cites the document the
#: rule comes from (rev 2 corrected the citations of microbleeds, anti-amyloid therapy and APS).
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
               "Cerebral microbleeds: higher risk of anticoagulant-related bleeding (OR ≈ 4, Liang 2018 "
               "meta-analysis). Weigh the bleeding risk against the benefit; keep blood pressure below 130/80 mmHg.",
               "Liang 2018 meta-analysis (Clin Neuropharmacol); SEED001"),
    WarningRow("anti_amyloid_therapy", URGENT, lambda s: s.facts.anti_amyloid_therapy,
               "Anti-amyloid antibody therapy (lecanemab/donanemab) or ARIA-H: patients who need anticoagulation "
               "should not receive lecanemab (donanemab by analogy [verify]). Contact the prescriber of the "
               "anti-amyloid therapy.",
               "AUR2023"),
    WarningRow("aps_vka_only", RESTRICTION, lambda s: s.has("antiphospholipid_syndrome"),
               "Antiphospholipid syndrome: warfarin only, no DOAC (no rivaroxaban in triple-positive APS).",
               "EULAR 2019; ACTION-CVT and SECRET excluded APS"),
    WarningRow("pregnancy_lmwh_only", RESTRICTION, lambda s: s.facts.pregnant,
               "Pregnant: LMWH only throughout pregnancy; no warfarin (teratogenic) and no DOAC. After delivery: "
               "LMWH or warfarin.",
               "CSBP2024 §4.1; AHA2011"),
    WarningRow("breastfeeding_no_doac", RESTRICTION, lambda s: s.facts.breastfeeding,
               "Breastfeeding: no DOAC. LMWH or warfarin (warfarin is compatible with breastfeeding).",
               "CSBP2024 §4.1"),
    WarningRow("renal_doac_contraindicated", RESTRICTION, lambda s: s.adult and s.renal_doac_contraindicated,
               "Creatinine clearance 30 mL/min or less (Cockcroft-Gault): no DOAC.",
               "EHRA"),
    WarningRow("pediatric_out_of_scope", URGENT, lambda s: not s.adult,
               lambda s: ("Age not recorded: an unknown age is not an adult; record the age. " if s.facts.age is None
                          else "Patient under 18. ")
               + "Pediatric CVT needs a pediatric protocol: weight-based dosing, e.g. EINSTEIN-Jr CVT (rivaroxaban) "
               "or DIVERSITY (dabigatran); involve the pediatric thrombosis service. No adult oral agent, dose or "
               "creatinine clearance is proposed; category and duration are adult rules.",
               "SCOPE (clinical reference §0: adults only)"),
    WarningRow("heparin_contraindicated", URGENT, lambda s: s.heparin_contraindicated,
               lambda s: "Heparin is contraindicated ("
               + " and ".join(RISK_FACTORS[c].meaning for c in sorted(s.facts.risk_factors & HEPARIN_CONTRAINDICATING_CODES))
               + "): no LMWH or UFH; use a non-heparin anticoagulant (argatroban, fondaparinux or a DOAC)"
               + ("; IV immunoglobulin for VITT; no platelet transfusion." if s.has("vitt") else "."),
               "VITT2021"),
    WarningRow("doac_interaction", CAUTION, lambda s: bool(_doac_interactions(s)),
               _doac_interaction_message,
               "EHRA; SECRET; EU label; US label"),
    WarningRow("warfarin_interaction", CAUTION, lambda s: bool(_warfarin_interactions(s)),
               _warfarin_interaction_message,
               "EHRA; US label (warfarin); CHEST2012"),
    WarningRow("doac_caution", CAUTION, lambda s: bool(_doac_cautions(s)),
               lambda s: "DOAC caution: " + "; ".join(_doac_cautions(s)) + ".",
               "RESPECT-CVT; EU label (dabigatran)"),
    WarningRow("estrogen_avoid", INFO, _estrogen,
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
    return tuple(
        RuleWarning(r.code, r.severity, r.message(s) if callable(r.message) else r.message, r.source)
        for r in WARNING_TABLE
        if r.applies(s)
    )


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
    """A finite course whose earliest end is known (while pregnant without a delivery date it is pending)."""
    return not s.duration.indefinite and s.duration.earliest_end_on is not None


#: Reference §4 (rev 2): protein C/S/antithrombin testing is to consider; the two sources disagree.
THROMBOPHILIA_TESTING_SOURCE = "AHA2011 (IIa-B), to consider; ESO2017 suggests against routine screening"

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
    # Protein C, S, antithrombin 2-4 weeks after anticoagulation stops (counted from the earliest end). Rev 2:
    # "to consider"; ESO2017 suggests against routine screening — both shown.
    FollowUpRow("thrombophilia_testing", _finite,
                _from_earliest_end(weeks=2), _from_earliest_end(weeks=4),
                THROMBOPHILIA_TESTING_SOURCE),
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
    rationale: tuple[Note, ...] = ()
    adult: bool = True
    doac_formulary: tuple[str, ...] = DOAC_AGENTS

    def cited_sources(self) -> list[str]:
        """Every short name cited by any output item, sorted."""
        strings = [
            self.duration.source,
            *(n.source for n in self.duration.notes),
            self.acute_phase.source,
            self.acute_phase.dose_suggestion.source if self.acute_phase.dose_suggestion else "",
            *(o.source for o in self.oral_options),
            *(n.source for n in self.rationale),
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
            "rationale": [n.as_dict() for n in self.rationale],
            "scope": {
                "adult": self.adult,
                "rule": "adults only (18 or more); under 18 or age unknown: pediatric_out_of_scope",
                "source": "SCOPE",
            },
            "doac_formulary": list(self.doac_formulary),
            "sources": [{"name": name, "citation": SOURCES[name]} for name in self.cited_sources()],
        }


def recommend(facts: EpisodeFacts, *, policy: RulesPolicy = DEFAULT_RULES_POLICY) -> Recommendation:
    """Apply the reference's §0, §2, §3, §4 and §5 tables to one episode, with the clinic's ``policy``."""
    row = category_row(facts)
    situation = Situation(
        facts=facts, row=row, duration=_duration(facts, row), crcl=_creatinine_clearance(facts), policy=policy
    )
    doac = _doac_eligibility(situation)
    options = _oral_options(situation, doac)
    return Recommendation(
        rules_version=RULES_VERSION,
        category=row.category,
        duration=situation.duration,
        acute_phase=_acute_phase(situation),
        oral_options=options,
        doac_eligible=doac,
        creatinine_clearance_ml_min=situation.crcl,
        warnings=_warnings(situation),
        follow_ups=_follow_ups(situation),
        rationale=_rationale(situation, options),
        adult=facts.adult,
        doac_formulary=policy.doac_formulary,
    )
