"""Demo data of the INR clinic's day (issue 14), called by ``seed_demo``: the clinic's phone and tablets, patient
phones, and an INR history for the warfarin patient whose INR of today (1.7) awaits a dosing decision on
Today. Idempotent; adds no patient."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from anticoag.inr import clinic_today, dose_record, inr_reading_record
from anticoag.models import InrReading
from patients.choices import ContactChannel
from patients.models import Clinic, Patient


def inr_clinic_demo_seed(*, clinic: Clinic, staff: dict) -> None:
    """Fill in the clinic's phone, and add the demo warfarin patient (once)."""
    if not clinic.phone:
        clinic.phone = "+33 2 40 00 00 00"
        clinic.save(update_fields=["phone"])
    for number, patient in enumerate(Patient.objects.filter(clinic=clinic, phone="").order_by("pk")[:40], start=1):
        patient.phone = f"+33 6 00 00 {number // 100:02d} {number % 100:02d}"
        patient.preferred_contact = ContactChannel.PHONE if number % 3 else ContactChannel.TEXT
        patient.save(update_fields=["phone", "preferred_contact"])
    # The warfarin story goes to the demo patient with antiphospholipid syndrome (warfarin only, reference §5),
    # once: a maintenance history on 35 mg a week and an INR of 1.7 today, awaiting a decision on Today.
    patient = (
        Patient.objects.filter(clinic=clinic, episodes__risk_factors__code="antiphospholipid_syndrome")
        .order_by("pk")
        .first()
    )
    if patient is None:
        return
    today = clinic_today(clinic)
    now = timezone.now()
    if InrReading.objects.filter(patient=patient).exists():
        # The clinic's history (clinic.demo) gave this patient readings already: add only today's 1.7, once.
        if not InrReading.objects.filter(patient=patient, drawn_at__gte=now - timedelta(days=2)).exists():
            inr_reading_record(patient=patient, drawn_at=now - timedelta(hours=1), value="1.7", source="poc")
        return
    first = None
    for days, value in ((42, "2.3"), (35, "2.4"), (28, "2.6")):
        reading = inr_reading_record(patient=patient, drawn_at=now - timedelta(days=days), value=value, source="lab")
        first = first or reading
    dose_record(
        patient=patient,
        weekly_dose_mg="35",
        starts_on=today - timedelta(days=42),
        inr_reading=first,
        decided_by=staff["clinician"],
    )
    inr_reading_record(patient=patient, drawn_at=now - timedelta(hours=1), value="1.7", source="poc")
