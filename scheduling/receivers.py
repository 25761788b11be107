"""Signal receivers that keep follow-ups in step with plans, INR readings, labs and deteriorations.

They run in the sender's transaction: a plan, a reading or a lab and the items and alerts that follow from
it commit together. (Dependencies point one way: anticoag sends, scheduling listens.)
"""

from __future__ import annotations

from django.db.models.signals import post_save
from django.dispatch import receiver

from anticoag.inr import inr_recorded, inr_recorded_many, warfarin_dose_recorded
from anticoag.procedure_services import procedure_changed
from anticoag.services import plan_changed
from patients.models import DeteriorationEvent, LabResult, PatientMedication

from .follow_ups import (
    follow_ups_sync_for_plan,
    inr_follow_up_for_dose,
    inr_follow_up_for_medication,
    inr_follow_up_sync,
    inr_follow_up_sync_many,
    procedure_follow_ups_sync,
    renal_follow_up_sync,
    urgent_imaging_for_deterioration,
)


@receiver(plan_changed, dispatch_uid="follow_ups_on_plan_changed")
def follow_ups_on_plan_changed(sender, plan, **kwargs) -> None:
    follow_ups_sync_for_plan(plan=plan)
    # A confirmed DOAC decision with a creatinine already on file starts the renal schedule now.
    renal_follow_up_sync(patient=plan.episode.patient)


@receiver(post_save, sender=DeteriorationEvent, dispatch_uid="urgent_imaging_on_deterioration")
def urgent_imaging_on_deterioration(sender, instance: DeteriorationEvent, raw: bool = False, **kwargs) -> None:
    if raw:  # fixtures load rows as they are
        return
    urgent_imaging_for_deterioration(event=instance)


@receiver(inr_recorded, dispatch_uid="inr_follow_up_on_reading")
def inr_follow_up_on_reading(sender, patient, readings, **kwargs) -> None:
    inr_follow_up_sync(patient=patient, readings=readings)


@receiver(inr_recorded_many, dispatch_uid="inr_follow_ups_on_import")
def inr_follow_ups_on_import(sender, patients, readings, **kwargs) -> None:
    inr_follow_up_sync_many(patients=patients, readings=readings)


@receiver(warfarin_dose_recorded, dispatch_uid="inr_follow_up_on_dose")
def inr_follow_up_on_dose(sender, patient, dose, **kwargs) -> None:
    inr_follow_up_for_dose(dose=dose)


@receiver(post_save, sender=LabResult, dispatch_uid="renal_follow_up_on_lab")
def renal_follow_up_on_lab(sender, instance: LabResult, raw: bool = False, **kwargs) -> None:
    if raw or instance.serum_creatinine is None:
        return
    renal_follow_up_sync(patient=instance.patient, lab=instance)


@receiver(procedure_changed, dispatch_uid="follow_ups_on_procedure_changed")
def follow_ups_on_procedure_changed(sender, procedure, **kwargs) -> None:
    procedure_follow_ups_sync(procedure=procedure)


@receiver(post_save, sender=PatientMedication, dispatch_uid="inr_follow_up_on_medication")
def inr_follow_up_on_medication(sender, instance: PatientMedication, raw: bool = False, **kwargs) -> None:
    if raw:  # fixtures load rows as they are
        return
    inr_follow_up_for_medication(medication=instance)
