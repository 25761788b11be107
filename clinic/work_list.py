"""The nurse's work list actions that :mod:`scheduling.follow_ups` does not have: moving an open item's date.

Marking items done goes through :func:`scheduling.follow_ups.follow_up_complete` (one rule for the API, the
admin and the work list); this module adds :func:`follow_up_reschedule`.
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import date, datetime

from auditlog.context import set_actor
from django.core.exceptions import ValidationError
from django.db import transaction

from anticoag.inr import clinic_today
from scheduling.follow_ups import CLINICIAN_INR_RULE
from scheduling.models import FollowUp, FollowUpKind, FollowUpStatus

#: How the reason is written into ``result_note`` (newest first, the note is cut at 500 characters).
RESCHEDULE_NOTE = "Rescheduled from {old} to {new} by {user}: {reason}"


def follow_up_reschedule(*, follow_up: FollowUp, due_on: date, reason: str, user=None) -> FollowUp:
    """Move an open item to ``due_on`` and record why, or refuse with a ``ValidationError`` naming the field.

    * Refused: an empty ``reason``; a date that is not a date, is in the past (the clinic's day) or is the
      current due date (``due_on``); an item that is not scheduled any more (``status``).
    * The reason goes into ``result_note`` ("Rescheduled from … to … by …: reason") and, with the old and new
      date and the user, into the audit log (``FollowUp`` is audited). A window end before the new date
      moves to it; an earlier one is kept (the clinical window does not move with the appointment).
    * An INR test moved by hand is marked as the clinician's date (``rule = clinician_next_inr``), so a
      re-save of the same reading does not move it back; the next reading schedules the next test as usual.
      Plan items are recomputed when the plan's facts change: a new proposal can move them again.
    """
    reason = (reason or "").strip()
    context = set_actor(user) if user is not None else nullcontext()
    with context, transaction.atomic():
        item = FollowUp.objects.select_for_update(of=("self",)).select_related("patient__clinic").get(pk=follow_up.pk)
        errors: dict[str, str] = {}
        if not reason:
            errors["reason"] = "Give the reason for moving the date."
        if not isinstance(due_on, date) or isinstance(due_on, datetime):
            errors["due_on"] = "Give the new due date (YYYY-MM-DD)."
        elif due_on < clinic_today(item.patient.clinic):
            errors["due_on"] = f"{due_on.isoformat()} is in the past."
        elif due_on == item.due_on:
            errors["due_on"] = f"The item is already due on {due_on.isoformat()}."
        if item.status != FollowUpStatus.SCHEDULED:
            errors["status"] = f"This item is {item.get_status_display().lower()}: only open items can be rescheduled."
        if errors:
            raise ValidationError(errors)

        note = RESCHEDULE_NOTE.format(
            old=item.due_on.isoformat(), new=due_on.isoformat(), user=user or "—", reason=reason
        )
        item.result_note = " | ".join(part for part in (note, item.result_note) if part)[:500]
        item.due_on = due_on
        fields = ["due_on", "result_note", "updated_at"]
        if item.window_end_on is not None and item.window_end_on < due_on:
            item.window_end_on = due_on
            fields.append("window_end_on")
        if item.kind == FollowUpKind.INR_TEST:
            item.rule = CLINICIAN_INR_RULE
            fields.append("rule")
        item.save(update_fields=fields)
    follow_up.refresh_from_db()
    return item


def clinician_work(*, user, limit: int = 100) -> dict:
    """A clinician's "My work": the plans of their patients to confirm or review (and of patients with no
    responsible clinician, whom any clinician may take), and their patients' open items overdue beyond the
    escalation threshold (what the escalation e-mails list). Each day in its clinic's zone. Three queries."""
    from django.conf import settings
    from django.db.models import Q

    from anticoag.models import Plan, PlanStatus
    from patients.scoping import scope_to_user_clinics
    from scheduling import calendar

    from .dashboard import clinic_days, overdue_text, user_clinics

    mine = Q(episode__patient__responsible_clinician=user) | Q(episode__patient__responsible_clinician__isnull=True)
    plans = list(
        scope_to_user_clinics(Plan.objects.all(), user, "episode__patient__clinic")
        .filter(mine, status__in=[PlanStatus.PROPOSED, PlanStatus.REVIEW], episode__patient__active=True)
        .select_related("episode__patient")
        .defer("facts", "changes")
        .order_by("computed_at", "pk")[: limit + 1]
    )
    for plan in plans:
        plan.category_label = plan.category.replace("_", " ")
    after_days = int(getattr(settings, "ANTICOAG_ESCALATE_AFTER_DAYS", 7))
    days = clinic_days(user_clinics(user))
    escalated_q = Q(pk__in=[])
    for day in days:
        escalated_q |= Q(patient__clinic_id=day.clinic.pk, due_on__lt=calendar.escalation_cutoff(day.today, after_days))
    today_of = {day.clinic.pk: day.today for day in days}
    escalated = list(
        FollowUp.objects.filter(
            escalated_q, status=FollowUpStatus.SCHEDULED, patient__active=True, patient__responsible_clinician=user
        )
        .select_related("patient__primary_nurse")
        .order_by("due_on", "pk")[: limit + 1]
    )
    for item in escalated:
        item.when = overdue_text(item.due_on, today_of[item.patient.clinic_id])
    return {
        "plans": plans[:limit],
        "plans_more": len(plans) > limit,
        "escalated": escalated[:limit],
        "escalated_more": len(escalated) > limit,
        "after_days": after_days,
    }
