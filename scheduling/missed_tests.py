"""Missed INR tests: "did not attend" (DNA), the recall, and the escalation after a second miss in a row.

An INR test still open ``Clinic.dna_after_days`` days after its due date (clinic setting, 7 by default) is
marked missed ("did not attend") and a recall is opened, due on the clinic's today, so it appears on Today.
When that miss is the patient's second (or later) INR test missed in a row, the recall is escalated to the
responsible clinician (and the clinic's alert address) through the outbox's escalation e-mail, once per
recall (:func:`scheduling.outbox.dna_escalation_rows`).

The reference sets no number of days: ``dna_after_days`` is clinic practice, a setting. Run by the sweep,
idempotent: an item is marked once (a conditional UPDATE of a row still scheduled), its recall has a unique
key.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from anticoag.inr import clinic_zone
from patients.models import Clinic

from .models import FollowUp, FollowUpKind, FollowUpStatus

#: The rule of a recall after one missed INR test, and after a second one in a row (this one escalates).
DNA_RECALL_RULE = "inr_dna_recall"
DNA_ESCALATED_RULE = "inr_dna_recall_escalated"
DNA_SOURCE = "clinic practice: missed INR test recalled (days before 'did not attend': clinic setting)"
DNA_NOTE = "Did not attend: no INR within {days} days of the due date."
#: Reminder.reason of the escalation e-mail of a second miss.
DNA_ESCALATION_REASON = "inr_dna"


def consecutive_misses(*, patient_id: int, before: FollowUp) -> int:
    """How many INR tests the patient missed in a row before ``before`` (closed INR tests, newest first,
    until one that was done)."""
    count = 0
    for status in (
        FollowUp.objects.filter(patient_id=patient_id, kind=FollowUpKind.INR_TEST)
        .exclude(pk=before.pk)
        .exclude(status=FollowUpStatus.SCHEDULED)
        .exclude(status=FollowUpStatus.CANCELLED)
        .filter(due_on__lte=before.due_on)
        .order_by("-due_on", "-pk")
        .values_list("status", flat=True)[:20]
    ):
        if status != FollowUpStatus.MISSED:
            break
        count += 1
    return count


def missed_inr_tests_mark(*, now: datetime | None = None) -> dict[str, int]:
    """Mark the INR tests not done ``dna_after_days`` after their due date as missed and open their recalls.

    Returns counts: ``missed`` (items marked), ``escalated`` (recalls that escalate: a second miss in a row).
    """
    now = now or timezone.now()
    counts = {"missed": 0, "escalated": 0}
    for clinic in Clinic.objects.all():
        today = now.astimezone(clinic_zone(clinic)).date()
        cutoff = today - timedelta(days=clinic.dna_after_days)
        items = list(
            FollowUp.objects.filter(
                patient__clinic=clinic,
                patient__active=True,
                kind=FollowUpKind.INR_TEST,
                status=FollowUpStatus.SCHEDULED,
                due_on__lt=cutoff,
            ).order_by("due_on", "pk")
        )
        for item in items:
            with transaction.atomic():
                # Row lock and re-check: a reading stored meanwhile completed it, or another sweep marked it.
                item = (
                    FollowUp.objects.select_for_update(of=("self",))
                    .filter(pk=item.pk, status=FollowUpStatus.SCHEDULED)
                    .first()
                )
                if item is None:
                    continue
                item.status = FollowUpStatus.MISSED
                item.result_note = DNA_NOTE.format(days=clinic.dna_after_days)
                item.save(update_fields=["status", "result_note", "updated_at"])  # audited (auditlog)
                counts["missed"] += 1
                escalate = consecutive_misses(patient_id=item.patient_id, before=item) >= 1
                FollowUp.objects.get_or_create(
                    key=f"dna-recall:{item.pk}",
                    defaults={
                        "patient_id": item.patient_id,
                        "episode_id": item.episode_id,
                        "kind": FollowUpKind.INR_TEST,
                        "due_on": today,
                        "window_end_on": today,
                        "rule": DNA_ESCALATED_RULE if escalate else DNA_RECALL_RULE,
                        "source": DNA_SOURCE,
                    },
                )
                counts["escalated"] += int(escalate)
    return counts
