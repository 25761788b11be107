"""The data dictionary of the outcome and event exports: every column with its type, unit, codes, definition
and source (reference §7). Served beside the exports (``/api/v1/exports/dictionary.csv``); a test checks that
every exported column is described here."""

from __future__ import annotations

from . import definitions
from .models import BackToWork, DeathCause, EventKind, IsthClass, Papilledema, Timepoint, VisualFields, VteSite


def _codes(choices) -> str:
    return "; ".join(f"{value} = {label}" for value, label in choices)


MRS_CODES = "; ".join(f"{grade} = {words}" for grade, words in definitions.MRS_GRADES.items())
SITES = "; ".join(f"{code} = {label}" for code, label in definitions.BLEEDING_SITES.items())
BOOLEAN = "true / false"
#: Times are written in the record's clinic's zone (named in ``time_zone``), the fraction of a second without
#: trailing zeros: 2026-01-05 09:30:00.5+01 in CSV, 2026-01-05T09:30:00.5+01:00 in NDJSON.
CLINIC_TIME = "ISO 8601 in the clinic's zone, with its UTC offset"
ZONE = ("text", "", "IANA time zone", "The clinic's time zone, which the times are written in", "")
PSEUDONYM = "HMAC-SHA256 of clinic id and MRN under the study's key (research exports)"

#: (dataset, column) → (type, unit, codes, definition, source). Identified-only columns are marked.
COLUMNS: dict[tuple[str, str], tuple[str, str, str, str, str]] = {
    # -- outcomes ------------------------------------------------------------------------------------------
    ("outcomes", "id"): ("integer", "", "", "Review id (identified export)", ""),
    ("outcomes", "outcome_id"): ("integer", "", "", "Review id", ""),
    ("outcomes", "patient_id"): ("integer", "", "", "Patient id (identified export)", ""),
    ("outcomes", "patient_key"): ("text", "", "", "Research pseudonym of the patient", PSEUDONYM),
    ("outcomes", "clinic_id"): ("integer", "", "", "Clinic id", ""),
    ("outcomes", "time_zone"): ZONE,
    ("outcomes", "mrn"): ("text", "", "", "Medical record number (identified export)", ""),
    ("outcomes", "episode_id"): ("integer", "", "", "CVT episode the review belongs to", ""),
    ("outcomes", "follow_up_id"): ("integer", "", "", "The scheduled review it completed, if any", ""),
    ("outcomes", "timepoint"): (
        "code",
        "",
        _codes(Timepoint.choices),
        "Time point after the episode's diagnosis",
        "Reference §7 (ISCVT; SECRET)",
    ),
    ("outcomes", "assessed_on"): ("date", "YYYY-MM-DD, clinic day", "", "Day of the review", ""),
    ("outcomes", "days_after_diagnosis"): ("integer", "days", "", "assessed_on − diagnosis date", ""),
    ("outcomes", "mrs"): ("integer", "grade", MRS_CODES, "Modified Rankin Scale", "Reference §7"),
    ("outcomes", "seizures_since_last_review"): (
        "boolean",
        "",
        BOOLEAN,
        "Seizures since the last review",
        "Reference §7",
    ),
    ("outcomes", "hit6_total"): (
        "integer",
        "points (36–78)",
        "",
        "HIT-6 headache impact total; empty: not done",
        "Reference §7",
    ),
    ("outcomes", "papilledema"): (
        "code",
        "",
        _codes(Papilledema.choices),
        "Papilledema; empty: not examined",
        "Reference §7",
    ),
    ("outcomes", "visual_fields"): (
        "code",
        "",
        _codes(VisualFields.choices),
        "Visual fields; empty: not tested",
        "Reference §7",
    ),
    ("outcomes", "back_to_work"): (
        "code",
        "",
        _codes(BackToWork.choices),
        "Back at work or school; empty: not asked",
        "Reference §7",
    ),
    ("outcomes", "note"): ("text", "", "", "Free-text note (identified export only)", ""),
    ("outcomes", "created_at"): ("datetime", CLINIC_TIME, "", "Recorded at", ""),
    ("outcomes", "updated_at"): ("datetime", CLINIC_TIME, "", "Last changed at", ""),
    # -- events --------------------------------------------------------------------------------------------
    ("events", "id"): ("integer", "", "", "Event id (identified export)", ""),
    ("events", "event_id"): ("integer", "", "", "Event id", ""),
    ("events", "patient_id"): ("integer", "", "", "Patient id (identified export)", ""),
    ("events", "patient_key"): ("text", "", "", "Research pseudonym of the patient", PSEUDONYM),
    ("events", "clinic_id"): ("integer", "", "", "Clinic id", ""),
    ("events", "time_zone"): ZONE,
    ("events", "mrn"): ("text", "", "", "Medical record number (identified export)", ""),
    ("events", "episode_id"): ("integer", "", "", "Episode under treatment when it happened", ""),
    ("events", "kind"): ("code", "", _codes(EventKind.choices), "Kind of event", "Reference §7"),
    ("events", "occurred_on"): ("date", "YYYY-MM-DD, clinic day", "", "Day of the event", ""),
    ("events", "on_anticoagulation"): (
        "boolean",
        "",
        BOOLEAN + "; empty: unknown",
        "On anticoagulation that day (from the confirmed plans unless entered)",
        "",
    ),
    ("events", "bleeding_site"): ("code", "", SITES, "Site of a bleed", "ISTH2005 critical areas"),
    ("events", "symptomatic"): ("boolean", "", BOOLEAN, "Symptomatic bleed", "ISTH2005"),
    ("events", "hemoglobin_fall_g_dl"): (
        "decimal",
        "g/dL",
        "",
        "Fall in hemoglobin due to the bleed",
        "ISTH2005 (≥ 2 g/dL: major)",
    ),
    ("events", "units_transfused"): (
        "integer",
        "units",
        "",
        "Units of whole blood or red cells",
        "ISTH2005 (≥ 2: major)",
    ),
    ("events", "fatal"): ("boolean", "", BOOLEAN, "Fatal bleeding", "ISTH2005"),
    ("events", "medical_intervention"): ("boolean", "", BOOLEAN, "Needed medical intervention", "ISTH2015"),
    ("events", "hospitalization"): ("boolean", "", BOOLEAN, "Led to hospitalization or higher care", "ISTH2015"),
    ("events", "face_to_face_evaluation"): ("boolean", "", BOOLEAN, "Prompted a face-to-face evaluation", "ISTH2015"),
    ("events", "isth_class"): (
        "code",
        "",
        _codes(IsthClass.choices),
        "Computed from the facts: major (ISTH2005), else clinically relevant non-major (ISTH2015), else minor",
        "ISTH2005; ISTH2015",
    ),
    ("events", "isth_criteria"): (
        "list",
        "",
        "",
        "The criteria met, the deciding one first (';'-joined in CSV)",
        "ISTH2005; ISTH2015",
    ),
    ("events", "ich_new"): ("boolean", "", BOOLEAN, "New intracranial hemorrhage", "SECRET"),
    ("events", "ich_growth_percent"): (
        "decimal",
        "%",
        "",
        "Growth of an existing hemorrhage (> 33 % counts)",
        "SECRET",
    ),
    ("events", "neurological_worsening"): ("boolean", "", BOOLEAN, "With neurological worsening", "SECRET"),
    ("events", "vte_site"): (
        "code",
        "",
        _codes(VteSite.choices),
        "Site of another venous thromboembolism",
        "Reference §7",
    ),
    ("events", "death_cause"): ("code", "", _codes(DeathCause.choices), "Cause of death", "Reference §7"),
    ("events", "new_episode_id"): ("integer", "", "", "Episode opened by a recurrence", "Reference §1 (recurrence)"),
    ("events", "note"): ("text", "", "", "Free-text note (identified export only)", ""),
    ("events", "created_at"): ("datetime", CLINIC_TIME, "", "Recorded at", ""),
    ("events", "updated_at"): ("datetime", CLINIC_TIME, "", "Last changed at", ""),
}

HEADER = ["dataset", "column", "type", "unit", "codes", "definition", "source"]
DATASETS = ("outcomes", "events")


def dictionary_rows() -> list[list[str]]:
    return [[dataset, column, *described] for (dataset, column), described in COLUMNS.items()]
