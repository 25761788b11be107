"""Demo procedures for ``manage.py seed_demo`` (idempotent): one awaiting a clinician, one confirmed with its letter."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from patients.models import Clinic, Patient

from .procedure_models import Procedure
from .procedure_services import procedure_confirm, procedure_record


def procedure_demo_seed(*, clinic: Clinic, clinician) -> int:
    """Two procedures on the clinic's first two patients with an episode; none when the clinic has some already."""
    if Procedure.objects.filter(patient__clinic=clinic).exists():
        return 0
    patients = list(Patient.objects.filter(clinic=clinic, episodes__isnull=False).distinct().order_by("mrn")[:2])
    if len(patients) < 2:
        return 0
    today = timezone.localdate()
    procedure_record(
        patient=patients[0],
        scheduled_on=today + timedelta(days=10),
        kind="lumbar_puncture",
        bleed_risk="high",
        agent="rivaroxaban",
        requested_by="Neurology",
        user=clinician,
    )
    confirmed = procedure_record(
        patient=patients[1],
        scheduled_on=today + timedelta(days=20),
        kind="endoscopy",
        bleed_risk="low",
        agent="warfarin",
        requested_by="Gastroenterology",
        user=clinician,
    )
    procedure_confirm(
        procedure=confirmed,
        user=clinician,
        acknowledged_warnings=[w["code"] for w in confirmed.warnings_to_acknowledge],
    )
    return 2
