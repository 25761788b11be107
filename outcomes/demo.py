"""Demo outcome data for ``manage.py seed_demo``: reviews of the demo patients whose 3- and 6-month reviews are
due, per-sinus recanalization of a few 3-month scans, and a handful of non-urgent events. Idempotent."""

from __future__ import annotations

from decimal import Decimal

from dateutil.relativedelta import relativedelta
from django.utils import timezone

from patients.models import Clinic, CvtEpisode
from scheduling.models import FollowUp, FollowUpStatus

from .models import ClinicalEvent, EventKind, OutcomeAssessment
from .services import event_record, outcome_assessment_record, recanalization_record

#: mRS by demo patient number (cycled), and who had seizures.
_MRS = [0, 1, 2, 1, 0, 3, 2, 1, 4, 0, 1, 2]


def seed_outcomes_demo(*, clinic: Clinic) -> int:
    """Record the demo clinic's outcome data; returns how many records were created."""
    today = timezone.localdate()
    created = 0
    # The 40 numbered demo cases only (DEMO-0001…): patients other seeders add later keep the second run a no-op.
    episodes = CvtEpisode.objects.filter(patient__clinic=clinic, patient__mrn__regex=r"^DEMO-\d+$").order_by("pk")
    for number, episode in enumerate(episodes):
        for timepoint, months in (("3m", 3), ("6m", 6), ("12m", 12)):
            day = episode.diagnosed_on + relativedelta(months=months)
            if day > today or OutcomeAssessment.objects.filter(episode=episode, timepoint=timepoint).exists():
                continue
            mrs = max(0, _MRS[number % len(_MRS)] - (1 if months == 6 else 0))
            outcome_assessment_record(
                episode=episode,
                timepoint=timepoint,
                assessed_on=day,
                mrs=mrs,
                seizures_since_last_review=number % 7 == 0,
                hit6_total=46 + (number * 5) % 25 if number % 2 else None,
                back_to_work="yes" if mrs <= 1 else "partly" if mrs == 2 else "no",
            )
            created += 1
        scan = FollowUp.objects.filter(key=f"ep{episode.pk}:venous_imaging", status=FollowUpStatus.SCHEDULED).first()
        day = episode.diagnosed_on + relativedelta(months=3)
        if scan is not None and day <= today and number % 3 == 0:
            grades = ["complete", "partial", "none"]
            per_sinus = {sinus: grades[(number + i) % 3] for i, sinus in enumerate(episode.sinuses or [])}
            if per_sinus:
                recanalization_record(follow_up=scan, completed_on=day, per_sinus=per_sinus)
                created += 1
    patients = list(clinic.patients.filter(mrn__in=["DEMO-0012", "DEMO-0027", "DEMO-0033"]).order_by("mrn"))
    facts = [
        {"kind": EventKind.BLEEDING, "bleeding_site": "nasal_oral"},
        {"kind": EventKind.BLEEDING, "bleeding_site": "genitourinary", "hemoglobin_fall_g_dl": Decimal("1.2"),
         "face_to_face_evaluation": True},
        {"kind": EventKind.OTHER_VTE, "vte_site": "dvt"},
    ]  # fmt: skip
    for patient, values in zip(patients, facts, strict=False):
        if ClinicalEvent.objects.filter(patient=patient).exists():
            continue
        episode = patient.episodes.order_by("-diagnosed_on").first()
        if episode is None:
            continue
        day = min(today, episode.diagnosed_on + relativedelta(months=2))
        event_record(event=ClinicalEvent(patient=patient, episode=episode, occurred_on=day, **values))
        created += 1
    return created
