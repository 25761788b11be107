"""Demo patients for the rows of clinical reference revision 2 (called by ``manage.py seed_demo``).

Three patients, each showing a new row with a plan a clinician has confirmed: a pregnant patient on LMWH
(pregnancy code, expected delivery date, no oral agent), a patient on carbamazepine (no DOAC; warfarin), and a
patient on rivaroxaban. Idempotent: a patient whose MRN exists is left as it is. All names are invented.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from dateutil.relativedelta import relativedelta
from django.utils import timezone

from patients.choices import CreatinineUnit, Sex
from patients.models import Clinic, CvtEpisode, EpisodeRiskFactor, LabResult, Patient, PatientMedication

from .models import Agent, Plan
from .services import plan_confirm, plan_refresh


@dataclass(frozen=True)
class RevisionTwoCase:
    """One demo patient of revision 2: who, the episode's codes, current medicines, and the confirmed agent."""

    mrn: str
    given_name: str
    family_name: str
    sex: str
    age: int
    weight_kg: str
    months_ago: int
    codes: tuple[str, ...]
    medications: tuple[str, ...]
    agent: str
    expected_delivery_in_weeks: int | None = None


CASES: tuple[RevisionTwoCase, ...] = (
    # Pregnant now (pregnancy code, no delivery yet): LMWH only; the end is 6 weeks after the expected delivery.
    RevisionTwoCase("DEMO-R2-01", "Mira", "Keller", Sex.FEMALE, 32, "68", 1, ("pregnancy",), (), Agent.LMWH, 14),
    # Seizures after the CVT, on carbamazepine: every DOAC is ineligible (strong inducer); warfarin.
    RevisionTwoCase(
        "DEMO-R2-02", "Tomas", "Nowak", Sex.MALE, 44, "82", 2, ("dehydration",), ("carbamazepine",), Agent.WARFARIN
    ),
    # Unprovoked CVT on rivaroxaban 20 mg once daily (SECRET).
    RevisionTwoCase("DEMO-R2-03", "Sofia", "Ribeiro", Sex.FEMALE, 52, "64", 3, (), (), Agent.RIVAROXABAN),
)


def _patient(*, clinic: Clinic, staff: dict, case: RevisionTwoCase, today: date) -> Patient:
    patient = Patient(
        clinic=clinic,
        mrn=case.mrn,
        given_name=case.given_name,
        family_name=case.family_name,
        date_of_birth=date(today.year - case.age, 3, 14),
        sex=case.sex,
        weight_kg=Decimal(case.weight_kg),
        primary_nurse=staff["nurse.ana"],
        responsible_clinician=staff["clinician"],
    )
    patient.full_clean()
    patient.save()
    return patient


def _episode(*, patient: Patient, case: RevisionTwoCase, diagnosed_on: date, today: date) -> CvtEpisode:
    expected = None
    if case.expected_delivery_in_weeks is not None:
        expected = today + timedelta(weeks=case.expected_delivery_in_weeks)
    episode = CvtEpisode(
        patient=patient, diagnosed_on=diagnosed_on, sinuses=["superior_sagittal"], expected_delivery_on=expected
    )
    episode.pending_risk_codes = set(case.codes)
    episode.full_clean()
    episode.save()
    for code in case.codes:
        EpisodeRiskFactor.objects.create(episode=episode, code=code, noted_on=diagnosed_on)
    return episode


def seed_rules_revision_2_patients(*, clinic: Clinic, staff: dict) -> int:
    """Create the revision-2 demo patients that do not exist yet; return how many were created."""
    today = timezone.localdate()
    created = 0
    for case in CASES:
        if Patient.objects.filter(clinic=clinic, mrn=case.mrn).exists():
            continue
        diagnosed_on = today - relativedelta(months=case.months_ago)
        patient = _patient(clinic=clinic, staff=staff, case=case, today=today)
        LabResult.objects.create(
            patient=patient,
            drawn_on=diagnosed_on,
            serum_creatinine=Decimal("0.8"),
            creatinine_unit=CreatinineUnit.MG_DL,
            hemoglobin_g_dl=Decimal("12.9"),
        )
        for code in case.medications:
            medication = PatientMedication(patient=patient, code=code, started_on=diagnosed_on + timedelta(days=2))
            medication.full_clean()
            medication.save()
        episode = _episode(patient=patient, case=case, diagnosed_on=diagnosed_on, today=today)
        plan = Plan.objects.filter(episode=episode).first() or plan_refresh(episode=episode)
        plan_confirm(
            plan=plan,
            user=staff["clinician"],
            agent=case.agent,
            acknowledged_warnings=[w["code"] for w in plan.warnings_to_acknowledge],
        )
        created += 1
    return created
