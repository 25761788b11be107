"""Recording outcomes and events, and what follows from them (reference §7).

Keyword-only services named ``<thing>_<action>``; each runs in one transaction, so a record, the follow-up
it completes, the plan it marks for review and the urgent alert it raises commit together or not at all
(the outbox sends the alert only after commit).
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import date, timedelta
from typing import Any

from auditlog.context import set_actor
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import OuterRef, Subquery

from anticoag.inr import clinic_today
from anticoag.models import Plan, PlanDecision, PlanStatus
from patients.choices import Sinus
from patients.models import CvtEpisode, Patient
from scheduling.follow_ups import _urgent_alert, cancel_scheduled, follow_up_complete, outcome_review_key
from scheduling.models import FollowUp, FollowUpKind, FollowUpStatus, Recanalization

from . import definitions, statistics
from .models import ClinicalEvent, EventKind, OutcomeAssessment, SinusRecanalization

#: Source of the event review item and of the plan's "review needed" after a bleed (reference §7).
EVENT_REVIEW_SOURCE = "Reference §7 (ISTH2005; SECRET)"


def _actor(user):
    return set_actor(user) if user is not None else nullcontext()


# ---------------------------------------------------------------------------------------------------------------
# On anticoagulation
# ---------------------------------------------------------------------------------------------------------------


def episode_interval(diagnosed_on: date, decision_end_on: date | None) -> tuple[date, date | None]:
    """Days on anticoagulation for one episode: from the diagnosis (parenteral anticoagulation starts at
    diagnosis, reference §3) to the confirmed decision's end date (exclusive); open while the course is
    indefinite or not yet confirmed."""
    return diagnosed_on, decision_end_on


def anticoagulation_intervals(*, patient: Patient) -> list[tuple[date, date | None]]:
    """The patient's days on anticoagulation as half-open intervals, cut at death (two queries)."""
    latest = PlanDecision.objects.filter(plan__episode=OuterRef("pk")).order_by("-decided_at", "-pk")
    rows = (
        CvtEpisode.objects.filter(patient=patient)
        .annotate(end_on=Subquery(latest.values("end_on")[:1]), indefinite=Subquery(latest.values("indefinite")[:1]))
        .values_list("diagnosed_on", "end_on", "indefinite")
    )
    died_on = (
        ClinicalEvent.objects.filter(patient=patient, kind=EventKind.DEATH)
        .values_list("occurred_on", flat=True)
        .first()
    )
    return cut_at_death(
        [episode_interval(d, None if indefinite else end_on) for d, end_on, indefinite in rows], died_on
    )


def cut_at_death(intervals, died_on: date | None) -> list[tuple[date, date | None]]:
    """Intervals end with the day of death (which still counts: a fatal bleed happened on anticoagulation)."""
    if died_on is None:
        return statistics.merge_intervals(intervals)
    stop = died_on + timedelta(days=1)
    cut = [(low, stop if high is None else min(high, stop)) for low, high in intervals if low < stop]
    return statistics.merge_intervals(cut)


# ---------------------------------------------------------------------------------------------------------------
# Outcome assessments
# ---------------------------------------------------------------------------------------------------------------


def _review_follow_up(episode: CvtEpisode, timepoint: str) -> FollowUp | None:
    months = definitions.OUTCOME_REVIEW_MONTHS.get(timepoint)
    if months is None:
        return None
    return FollowUp.objects.select_for_update().filter(key=outcome_review_key(episode.pk, months)).first()


def outcome_assessment_record(
    *,
    episode: CvtEpisode,
    timepoint: str,
    assessed_on: date,
    mrs: int,
    seizures_since_last_review: bool = False,
    hit6_total: int | None = None,
    papilledema: str = "",
    visual_fields: str = "",
    back_to_work: str = "",
    note: str = "",
    user=None,
) -> OutcomeAssessment:
    """Record a review of ``episode`` and complete its scheduled ``outcome_review`` follow-up.

    Refused with a ``ValidationError`` naming the field: an mRS outside 0–6, a HIT-6 total outside 36–78, a
    date in the future (clinic's day) or before the diagnosis, a second review at the same time point.
    """
    assessment = OutcomeAssessment(
        patient_id=episode.patient_id,
        episode=episode,
        timepoint=timepoint,
        assessed_on=assessed_on,
        mrs=mrs,
        seizures_since_last_review=bool(seizures_since_last_review),
        hit6_total=hit6_total,
        papilledema=papilledema or "",
        visual_fields=visual_fields or "",
        back_to_work=back_to_work or "",
        note=(note or "").strip(),
    )
    return outcome_assessment_store(assessment=assessment, user=user)


def outcome_assessment_store(*, assessment: OutcomeAssessment, user=None) -> OutcomeAssessment:
    """Validate and save a review (new or corrected) and complete its time point's scheduled follow-up."""
    with _actor(user), transaction.atomic():
        episode = assessment.episode
        patient = Patient.objects.select_related("clinic").get(pk=episode.patient_id)
        assessment.patient = patient
        if assessment.pk is None and user is not None and getattr(user, "is_authenticated", False):
            assessment.entered_by = user
        day = assessment.assessed_on
        if isinstance(day, date) and day > clinic_today(patient.clinic):
            raise ValidationError({"assessed_on": f"{day.isoformat()} is in the future."})
        item = _review_follow_up(episode, assessment.timepoint)
        taken = OutcomeAssessment.objects.filter(follow_up=item).exclude(pk=assessment.pk).exists() if item else True
        if item is not None and assessment.follow_up_id is None and not taken:
            assessment.follow_up = item
        assessment.full_clean()
        assessment.save()
        if item is not None and item.status == FollowUpStatus.SCHEDULED and assessment.follow_up_id == item.pk:
            item.status, item.completed_on = FollowUpStatus.DONE, day
            item.result_note = f"mRS {assessment.mrs} ({definitions.MRS_GRADES[assessment.mrs]})."[:500]
            item.save(update_fields=["status", "completed_on", "result_note", "updated_at"])
    return assessment


# ---------------------------------------------------------------------------------------------------------------
# Recanalization per sinus
# ---------------------------------------------------------------------------------------------------------------


def recanalization_record(
    *,
    follow_up: FollowUp,
    completed_on: date,
    per_sinus: dict[str, str],
    result_note: str = "",
    user=None,
) -> tuple[FollowUp, list[FollowUp]]:
    """Record venous imaging sinus by sinus: the scan's grade follows from the sinuses (complete only when
    every sinus is), the follow-up is marked done with it — partial or none schedules the 6-month scan as
    before (:func:`scheduling.follow_ups.follow_up_complete`) — and each sinus's grade is stored.

    Sinuses must be among those the episode records (when it records any). Returns (item, follow-ons).
    """
    errors: dict[str, str] = {}
    if follow_up.kind != FollowUpKind.VENOUS_IMAGING:
        errors["follow_up"] = "Recanalization per sinus is recorded for venous imaging only."
    if not isinstance(per_sinus, dict) or not per_sinus:
        errors["sinuses"] = "Give at least one sinus with its grade (complete, partial, none)."
    else:
        unknown = sorted(s for s in per_sinus if s not in Sinus.values)
        bad = sorted(g for g in per_sinus.values() if g not in Recanalization.values)
        recorded = set(follow_up.episode.sinuses or []) if follow_up.episode_id else set()
        outside = sorted(s for s in per_sinus if s in Sinus.values and recorded and s not in recorded)
        if unknown:
            errors["sinuses"] = f"Unknown sinus code(s) {', '.join(map(str, unknown))}."
        elif bad:
            errors["sinuses"] = f"Unknown grade(s) {', '.join(map(str, bad))}; allowed: complete, partial, none."
        elif outside:
            errors["sinuses"] = (
                f"{', '.join(outside)} is not among the episode's sinuses ({', '.join(sorted(recorded))})."
            )
    if errors:
        raise ValidationError(errors)
    overall = definitions.overall_recanalization(per_sinus)
    with _actor(user), transaction.atomic():
        follow_ons = follow_up_complete(
            follow_up=follow_up, completed_on=completed_on, recanalization=overall, result_note=result_note, user=user
        )
        for sinus, grade in per_sinus.items():
            SinusRecanalization.objects.update_or_create(follow_up=follow_up, sinus=sinus, defaults={"grade": grade})
    return follow_up, follow_ons


# ---------------------------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------------------------


def _episode_on(patient: Patient, day: date) -> CvtEpisode | None:
    return CvtEpisode.objects.filter(patient=patient, diagnosed_on__lte=day).order_by("-diagnosed_on", "-pk").first()


def current_plan(*, patient: Patient) -> Plan | None:
    """The plan now in force: the one of the latest confirmed decision, else the latest episode's."""
    decision = PlanDecision.objects.filter(plan__episode__patient=patient).order_by("-decided_at", "-pk").first()
    if decision is not None:
        return decision.plan
    return Plan.objects.filter(episode__patient=patient).order_by("-episode__diagnosed_on", "-pk").first()


def event_summary(event: ClinicalEvent) -> str:
    """The event in words for the plan's "what changed" (no value beyond the classification's criterion)."""
    text = f"{event.get_kind_display()} on {event.occurred_on.isoformat()}"
    if event.isth_class:
        text += f": {event.get_isth_class_display()}"
        if event.isth_criterion:
            text += f" — {event.isth_criterion}"
    return text


def _mark_plan_for_review(event: ClinicalEvent) -> Plan | None:
    plan = current_plan(patient=event.patient)
    if plan is None:
        return None
    plan = Plan.objects.select_for_update().get(pk=plan.pk)
    if any(c.get("part") == "event" and c.get("event_id") == event.pk for c in plan.changes):
        return plan
    plan.changes = [
        *plan.changes,
        {"part": "event", "event_id": event.pk, "kind": event.kind, "text": event_summary(event)},
    ]
    if plan.status == PlanStatus.CONFIRMED:
        plan.status = PlanStatus.REVIEW
    plan.save(update_fields=["status", "changes", "updated_at"])
    return plan


def _raise_alert(event: ClinicalEvent) -> None:
    """Urgent alert through the outbox (like a critical INR), with a plan-review item due today that the
    e-mail names by MRN, kind and date."""
    from scheduling.follow_ups import _upsert_open  # the generator's idempotent upsert

    item = _upsert_open(
        key=f"event{event.pk}:event_review",
        patient_id=event.patient_id,
        episode_id=event.episode_id,
        kind=FollowUpKind.EVENT_REVIEW,
        due_on=clinic_today(event.patient.clinic),
        window_end_on=None,
        rule=f"event_review_after_{event.kind}",
        source=EVENT_REVIEW_SOURCE,
    )
    reason = "symptomatic_ich" if event.kind == EventKind.SYMPTOMATIC_ICH else "major_bleeding"
    _urgent_alert(clinic=event.patient.clinic, key=f"urgent:event:{event.pk}", reason=reason, follow_ups=[item])


def _open_recurrence(event: ClinicalEvent) -> None:
    """Recurrent CVT opens a new episode: a later episode of the patient is a recurrence (reference §1)."""
    if event.new_episode_id:
        return
    episode = CvtEpisode(
        patient=event.patient, diagnosed_on=event.occurred_on, notes=f"Opened by the recurrence event #{event.pk}."
    )
    episode.full_clean()
    episode.save()  # the plan follows through the episode's signal, as for any new episode
    ClinicalEvent.objects.filter(pk=event.pk).update(new_episode=episode)
    event.new_episode = episode


def _close_care_at_death(event: ClinicalEvent) -> int:
    """A recorded death ends the clinic's care: the patient becomes inactive (no reminder, Today, work list
    or missed-test recall names them again, and they leave the lost-to-follow-up count) and every scheduled
    follow-up is cancelled with the reason, each save audited. Undoing it (a death entered in error) is a
    staff decision: correct the event and tick "active" again; the cancelled items show why they were
    cancelled. Returns the items cancelled."""
    patient = Patient.objects.select_for_update().get(pk=event.patient_id)
    if patient.active:
        patient.active = False
        patient.save(update_fields=["active", "updated_at"])
    return cancel_scheduled(
        FollowUp.objects.select_for_update().filter(patient_id=patient.pk, status=FollowUpStatus.SCHEDULED),
        f"the patient died on {event.occurred_on.isoformat()}.",
    )


def event_needs_alert(event: ClinicalEvent) -> bool:
    """A major bleed (ISTH2005) or a symptomatic ICH (SECRET) while on anticoagulation."""
    return bool(event.on_anticoagulation) and (event.kind == EventKind.SYMPTOMATIC_ICH or event.is_major_bleed)


def event_record(*, event: ClinicalEvent, user=None) -> ClinicalEvent:
    """Validate and save ``event`` (new or changed), then what follows from it, idempotently:

    * blank episode → the latest episode diagnosed on or before the date; blank ``on_anticoagulation`` →
      worked out from the confirmed plans (:func:`anticoagulation_intervals`);
    * the ISTH class is computed from the facts on save (:meth:`ClinicalEvent.classify`);
    * recurrent CVT → a new episode (a recurrence), once;
    * death → the patient inactive and their scheduled follow-ups cancelled (:func:`_close_care_at_death`);
    * a major bleed or a symptomatic ICH on anticoagulation → an urgent alert to the clinic's alert
      address through the outbox, a plan-review follow-up due today, and the current plan marked
      "review needed" until a clinician confirms it again.

    Refused with a ``ValidationError`` naming the field (nothing is saved then).
    """
    with _actor(user), transaction.atomic():
        patient = Patient.objects.select_related("clinic").get(pk=event.patient_id)
        event.patient = patient
        if isinstance(event.occurred_on, date) and event.occurred_on > clinic_today(patient.clinic):
            raise ValidationError({"occurred_on": f"{event.occurred_on.isoformat()} is in the future."})
        if event.episode_id is None and isinstance(event.occurred_on, date):
            event.episode = _episode_on(patient, event.occurred_on)
        if event.on_anticoagulation is None and isinstance(event.occurred_on, date):
            event.on_anticoagulation = statistics.covers(anticoagulation_intervals(patient=patient), event.occurred_on)
        if event.pk is None and user is not None and getattr(user, "is_authenticated", False):
            event.entered_by = user
        event.classify()
        event.full_clean()
        event.save()
        if event.kind == EventKind.RECURRENT_CVT:
            _open_recurrence(event)
        if event.kind == EventKind.DEATH:
            _close_care_at_death(event)
        if event_needs_alert(event):
            _raise_alert(event)
            _mark_plan_for_review(event)
    return event


def event_facts(event: ClinicalEvent) -> dict[str, Any]:
    """The classification as shown everywhere: class, the criterion that decided it, all criteria, source."""
    if not event.isth_class:
        return {}
    return {
        "class": event.isth_class,
        "label": event.get_isth_class_display(),
        "criterion": event.isth_criterion,
        "criteria": list(event.isth_criteria),
        "source": event.classification_source,
    }
