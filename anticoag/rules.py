"""The clinical rules of the clinic, as plain Python tables.

This module is the executable form of ``clinical-reference.md``. It imports nothing from Django (a test
proves it) so the rules can be read, tested and run on their own (``manage.py recommend`` needs no
database). Every table below names the section of the reference it comes from; every output item carries
its source.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

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
