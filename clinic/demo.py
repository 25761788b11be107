"""Demo data of the INR clinic's day (issue 14), called by ``seed_demo``: the clinic's phone and tablets, patient
phones, and a warfarin patient whose INR of today (1.7) awaits a dosing decision on Today. Idempotent."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from anticoag.inr import clinic_today, dose_record, inr_reading_record
from anticoag.models import InrReading
from patients.choices import ContactChannel, Sex
from patients.models import Clinic, Patient

DEMO_MRN = "DEMO-INR-1"


def inr_clinic_demo_seed(*, clinic: Clinic, staff: dict) -> None:
    """Fill in the clinic's phone, and add the demo warfarin patient (once)."""
    if not clinic.phone:
        clinic.phone = "+33 2 40 00 00 00"
        clinic.save(update_fields=["phone"])
    for number, patient in enumerate(Patient.objects.filter(clinic=clinic, phone="").order_by("pk")[:40], start=1):
        patient.phone = f"+33 6 00 00 {number // 100:02d} {number % 100:02d}"
        patient.preferred_contact = ContactChannel.PHONE if number % 3 else ContactChannel.TEXT
        patient.save(update_fields=["phone", "preferred_contact"])
    if Patient.objects.filter(clinic=clinic, mrn=DEMO_MRN).exists():
        return
    today = clinic_today(clinic)
    patient = Patient(
        clinic=clinic,
        mrn=DEMO_MRN,
        given_name="Jeanne",
        family_name="Morel",
        date_of_birth=today.replace(year=today.year - 58, day=1),
        sex=Sex.FEMALE,
        primary_nurse=staff["nurse.ana"],
        responsible_clinician=staff["clinician"],
        phone="+33 6 00 00 99 01",
        preferred_contact=ContactChannel.PHONE,
    )
    patient.full_clean()
    patient.save()
    now = timezone.now()
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
    if not InrReading.objects.filter(patient=patient, drawn_at__gte=now - timedelta(hours=12)).exists():
        inr_reading_record(patient=patient, drawn_at=now - timedelta(hours=1), value="1.7", source="poc")
