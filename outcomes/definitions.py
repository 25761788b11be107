"""Outcome and event definitions of reference §7 (rev 2), as readable tables and pure functions.

No Django import: the classification is computed from a bleed's facts here and stored with the event, so
the admin, the API, the exports and the report all show the same class and the criterion that decided it.

Sources (reference §7): ISTH2005 (Schulman & Kearon, major bleeding), ISTH2015 (Kaatz et al., clinically
relevant non-major bleeding), SECRET (Field et al., Stroke 2023: symptomatic intracranial hemorrhage),
ACTION-CVT (recanalization grades), ISCVT and SECRET (mRS time points).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

ISTH2005 = "ISTH2005"
ISTH2015 = "ISTH2015"

#: The modified Rankin Scale: grade → the scale's words for it (reference §7, functional outcome).
MRS_GRADES: dict[int, str] = {
    0: "No symptoms at all",
    1: "No significant disability despite symptoms; able to carry out all usual duties and activities",
    2: "Slight disability; unable to carry out all previous activities, but able to look after own affairs "
    "without assistance",
    3: "Moderate disability; requiring some help, but able to walk without assistance",
    4: "Moderately severe disability; unable to walk without assistance and unable to attend to own bodily "
    "needs without assistance",
    5: "Severe disability; bedridden, incontinent and requiring constant nursing care and attention",
    6: "Dead",
}

#: mRS 0–2: functional independence, the report's "good outcome" at 6 months.
MRS_INDEPENDENT_MAX = 2

#: Reference §7: mRS at 3, 6 and 12 months after diagnosis (ISCVT: 6 months and yearly; SECRET: days 180
#: and 365). Time point code → months after diagnosis.
OUTCOME_REVIEW_MONTHS: dict[str, int] = {"3m": 3, "6m": 6, "12m": 12}
OUTCOME_REVIEW_SOURCE = "Reference §7 (ISCVT; SECRET)"

#: HIT-6 total score range: six items scored 6, 8, 10, 11 or 13.
HIT6_MIN, HIT6_MAX = 36, 78

#: Bleeding sites. ISTH2005's critical areas or organs: a symptomatic bleed there is major.
BLEEDING_SITES: dict[str, str] = {
    "intracranial": "Intracranial",
    "intraspinal": "Intraspinal",
    "intraocular": "Intraocular",
    "retroperitoneal": "Retroperitoneal",
    "intra_articular": "Intra-articular",
    "pericardial": "Pericardial",
    "intramuscular_compartment": "Intramuscular with compartment syndrome",
    "intramuscular": "Intramuscular, no compartment syndrome",
    "gastrointestinal": "Gastrointestinal",
    "genitourinary": "Genitourinary (including heavy menstrual bleeding)",
    "nasal_oral": "Nose, mouth or gums",
    "skin": "Skin, bruising or wound",
    "other": "Other",
}
CRITICAL_SITES = frozenset(
    {
        "intracranial",
        "intraspinal",
        "intraocular",
        "retroperitoneal",
        "intra_articular",
        "pericardial",
        "intramuscular_compartment",
    }
)

#: ISTH2005 thresholds: a hemoglobin fall of 2 g/dL or more; 2 or more units of whole blood or red cells.
HB_FALL_MAJOR_G_DL = Decimal("2.0")
UNITS_TRANSFUSED_MAJOR = 2

#: SECRET: growth of an existing hemorrhage by more than a third counts (with worsening).
SICH_GROWTH_PERCENT = Decimal("33")

MAJOR, CRNM, MINOR = "major", "crnm", "minor"
ISTH_CLASSES = {
    MAJOR: "Major bleeding (ISTH)",
    CRNM: "Clinically relevant non-major bleeding (ISTH)",
    MINOR: "Minor bleeding",
}


@dataclass(frozen=True)
class BleedingFacts:
    """What is known about one bleed; the classification is computed from this and nothing else."""

    site: str
    symptomatic: bool = True
    hemoglobin_fall_g_dl: Decimal | None = None
    units_transfused: int = 0
    fatal: bool = False
    medical_intervention: bool = False
    hospitalization: bool = False
    face_to_face_evaluation: bool = False


@dataclass(frozen=True)
class BleedingClass:
    """The ISTH class, every criterion met (first the one that decided it), and the source."""

    isth_class: str
    criteria: tuple[str, ...] = field(default_factory=tuple)
    source: str = ""

    @property
    def criterion(self) -> str:
        return self.criteria[0] if self.criteria else ""

    def as_dict(self) -> dict:
        return {
            "class": self.isth_class,
            "label": ISTH_CLASSES[self.isth_class],
            "criterion": self.criterion,
            "criteria": list(self.criteria),
            "source": self.source,
        }


def classify_bleeding(facts: BleedingFacts) -> BleedingClass:
    """ISTH2005 major bleeding, else ISTH2015 clinically relevant non-major, else minor.

    Major when any holds (each met criterion is listed, in this order): fatal; symptomatic bleeding in a
    critical area or organ; hemoglobin fall ≥ 2 g/dL; ≥ 2 units transfused. Clinically relevant non-major:
    not major, and it needed medical intervention by a health-care professional, led to hospitalization or a
    higher level of care, or prompted a face-to-face evaluation.
    """
    if facts.site not in BLEEDING_SITES:
        raise ValueError(f"unknown bleeding site {facts.site!r}")
    major: list[str] = []
    if facts.fatal:
        major.append("fatal bleeding")
    if facts.site in CRITICAL_SITES and facts.symptomatic:
        major.append(f"symptomatic bleeding in a critical area: {BLEEDING_SITES[facts.site].lower()}")
    fall = facts.hemoglobin_fall_g_dl
    if fall is not None and Decimal(str(fall)) >= HB_FALL_MAJOR_G_DL:
        major.append(f"hemoglobin fall of {Decimal(str(fall)):g} g/dL (≥ 2 g/dL)")
    if facts.units_transfused >= UNITS_TRANSFUSED_MAJOR:
        major.append(f"{facts.units_transfused} units transfused (≥ 2 units)")
    if major:
        return BleedingClass(MAJOR, tuple(major), ISTH2005)
    relevant: list[str] = []
    if facts.medical_intervention:
        relevant.append("required medical intervention by a health-care professional")
    if facts.hospitalization:
        relevant.append("led to hospitalization or a higher level of care")
    if facts.face_to_face_evaluation:
        relevant.append("prompted a face-to-face evaluation")
    if relevant:
        return BleedingClass(CRNM, tuple(relevant), ISTH2015)
    return BleedingClass(MINOR, (), ISTH2015)


def symptomatic_ich(*, new_hemorrhage: bool, growth_percent: Decimal | None, worsening: bool) -> tuple[bool, str]:
    """SECRET: a new intracranial hemorrhage, or growth of an existing one by more than 33 %, with
    neurological worsening. Returns (meets the definition, why / why not)."""
    grew = growth_percent is not None and Decimal(str(growth_percent)) > SICH_GROWTH_PERCENT
    if not (new_hemorrhage or grew):
        return False, "neither a new hemorrhage nor growth of more than 33 % of an existing one"
    if not worsening:
        return False, "no neurological worsening"
    what = "new intracranial hemorrhage" if new_hemorrhage else f"growth of {Decimal(str(growth_percent)):g} % (> 33 %)"
    return True, f"{what} with neurological worsening"


#: Recanalization grades at venous imaging (ACTION-CVT): the same codes as the follow-up's result.
RECANALIZATION_GRADES = {"complete": "Complete", "partial": "Partial", "none": "None"}


def overall_recanalization(per_sinus: dict[str, str]) -> str:
    """The scan's grade from the grades of the sinuses: complete only when every sinus is, none only when
    no sinus recanalized at all, partial otherwise."""
    grades = set(per_sinus.values())
    if not grades:
        raise ValueError("no sinus graded")
    if grades - RECANALIZATION_GRADES.keys():
        raise ValueError(f"unknown grade(s) {sorted(grades - RECANALIZATION_GRADES.keys())}")
    if grades == {"complete"}:
        return "complete"
    if grades == {"none"}:
        return "none"
    return "partial"
