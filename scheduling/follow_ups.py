"""Follow-up items from plans, INR advice, DOAC labs and deteriorations; completing an item (reference §4).

Every generator is idempotent: each item has a key named by the rule that makes it (``ep42:venous_imaging``,
``inr:7:1234``, ``renal:7:88``, ``det5:urgent_imaging``), so running a generator again updates what is still
open and never duplicates. Items a person has dealt with (done, cancelled, missed) are history and are never
changed by a generator; the one exception is an item a generator itself cancelled because the plan no longer
called for it (its note starts with :data:`AUTO_CANCEL_NOTE`): it is reopened if the plan calls for it again,
because its unique key leaves no other way to schedule it.

Urgent alerts (deterioration, critical INR, CrCl ≤ 30 on a DOAC) go through the outbox
(:func:`scheduling.outbox.reminder_materialise`) in the caller's transaction, with one key per event.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from contextlib import nullcontext
from datetime import date, datetime, timedelta
from typing import Any

from auditlog.context import set_actor
from dateutil.relativedelta import relativedelta
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from anticoag import medicines, monitoring, rules
from anticoag.inr import clinic_today, inr_advice_for_patient, inr_advice_for_patients, monitoring_policy
from anticoag.models import InrReading, Plan, PlanDecision, WarfarinDose
from patients.models import Clinic, CvtEpisode, DeteriorationEvent, LabResult, Patient, PatientMedication

from .models import FollowUp, FollowUpKind, FollowUpStatus, Recanalization, ReminderKind

#: Prefix of ``result_note`` on items a generator cancelled (and may therefore reopen).
AUTO_CANCEL_NOTE = "Cancelled automatically:"


def cancel_scheduled(items, because) -> int:
    """Cancel each of ``items`` (scheduled follow-ups) with ``AUTO_CANCEL_NOTE`` and the reason ``because``
    (text, or a function of the item giving it), each by its own save so that it is audited. Returns how many."""
    count = 0
    for item in items:
        reason = because(item) if callable(because) else because
        item.status = FollowUpStatus.CANCELLED
        item.result_note = f"{AUTO_CANCEL_NOTE} {reason}"
        item.save(update_fields=["status", "result_note", "updated_at"])
        count += 1
    return count


#: Reference §4 "Beyond 6 months, imaging only when it would change treatment (CSBP2024)".
NO_THIRD_SCAN_NOTE = (
    "No further venous imaging scheduled automatically: beyond 6 months, imaging only when it would change "
    "treatment (CSBP2024)."
)

#: Kinds the plan generates (first occurrences), from the rules' follow-up table.
PLAN_KINDS: tuple[str, ...] = rules.FOLLOW_UP_KINDS

#: Kinds that are imaging: only they may carry a recanalization result.
IMAGING_KINDS = frozenset({FollowUpKind.VENOUS_IMAGING, FollowUpKind.URGENT_IMAGING, FollowUpKind.MICROBLEED_MRI})

#: Why an item disappears from the plan, for the note on the cancelled item.
_GONE_BECAUSE = {
    FollowUpKind.END_OF_THERAPY_REVIEW: "the course of anticoagulation is now indefinite",
    FollowUpKind.THROMBOPHILIA_TESTING: "the course of anticoagulation is now indefinite",
    FollowUpKind.ANNUAL_REVIEW: "the course is no longer indefinite (or has a 6-monthly cancer review)",
    FollowUpKind.CANCER_REVIEW: "the episode is no longer in the active-cancer category",
    FollowUpKind.MICROBLEED_MRI: "no cerebral microbleeds are recorded any more",
    FollowUpKind.VENOUS_IMAGING: "the plan no longer includes it",
}

#: Repeats after an item is done: kind → (months after completion, source). Reference §4 and §2 row 3.
_REPEATS: dict[str, tuple[int, str]] = {
    FollowUpKind.MICROBLEED_MRI: (6, "SEED001"),
    FollowUpKind.ANNUAL_REVIEW: (12, "CLINIC"),
    FollowUpKind.CANCER_REVIEW: (6, rules.CANCER_SOURCE),
}

#: Reference §4: urgent repeat CT/MRI at once on neurological deterioration.
URGENT_IMAGING_SOURCE = "AHA2011 (I-C); SEED000; SEED002"

#: A critical INR older than this that is not the patient's latest reading is history (an import of old
#: results): it gets no urgent alert now. The latest reading always does.
CRITICAL_ALERT_MAX_AGE = timedelta(days=7)

#: The rule name of an INR test date a clinician chose (``WarfarinDose.next_inr_on``): advice never moves it.
CLINICIAN_INR_RULE = "clinician_next_inr"


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------


def _iso(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def _upsert_open(
    *,
    key: str,
    patient_id: int,
    episode_id: int | None,
    kind: str,
    due_on: date,
    window_end_on: date | None,
    rule: str,
    source: str,
    reopen_auto_cancelled: bool = False,
) -> FollowUp:
    """Create the item, or update it while it is still scheduled; anything else is left as it is."""
    values = {"due_on": due_on, "window_end_on": window_end_on, "rule": rule[:80], "source": source[:300]}
    item, created = FollowUp.objects.get_or_create(
        key=key, defaults={"patient_id": patient_id, "episode_id": episode_id, "kind": kind, **values}
    )
    if created:
        return item
    changed: list[str] = []
    if (
        reopen_auto_cancelled
        and item.status == FollowUpStatus.CANCELLED
        and item.result_note.startswith(AUTO_CANCEL_NOTE)
    ):
        item.status, item.result_note = FollowUpStatus.SCHEDULED, ""
        changed += ["status", "result_note"]
    if item.status != FollowUpStatus.SCHEDULED:
        return item  # done, missed or cancelled by a person: history
    for name, value in values.items():
        if getattr(item, name) != value:
            setattr(item, name, value)
            changed.append(name)
    if changed:
        item.save(update_fields=[*changed, "updated_at"])
    return item


def _complete_open(items: Iterable[FollowUp], *, completed_on: date, note: str) -> list[FollowUp]:
    done = []
    for item in items:
        item.status, item.completed_on, item.result_note = FollowUpStatus.DONE, completed_on, note[:500]
        item.save(update_fields=["status", "completed_on", "result_note", "updated_at"])
        done.append(item)
    return done


def _urgent_alert(
    *,
    clinic: Clinic,
    key: str,
    reason: str,
    inr_reading: InrReading | None = None,
    follow_ups=(),
    recipient: str = "",
    recipient_user: Any = None,
) -> Any:
    """One urgent e-mail, to ``recipient`` (default: the clinic's alert address)."""
    from .outbox import reminder_materialise  # the outbox imports tasks and e-mail code: keep this module light

    return reminder_materialise(
        clinic=clinic,
        kind=ReminderKind.URGENT,
        recipient=recipient or clinic.alert_email,
        recipient_user=recipient_user,
        key=key,
        inr_reading=inr_reading,
        follow_ups=follow_ups,
        reason=reason,
    )


def _lock_patient(patient: Patient) -> Patient:
    """Serialise schedule updates per patient: two readings (or labs) stored at once must not both leave an
    open "next" item. ``FOR NO KEY UPDATE`` of the patient row only: it does not conflict with the key-share
    locks that inserting a reading or a lab takes, so it cannot deadlock with them, and the clinic row is
    not locked."""
    return Patient.objects.select_for_update(no_key=True, of=("self",)).select_related("clinic").get(pk=patient.pk)


def current_decision(patient: Patient) -> PlanDecision | None:
    """The patient's latest confirmed decision, whichever episode it belongs to: the treatment now."""
    return PlanDecision.objects.filter(plan__episode__patient=patient).order_by("-decided_at", "-pk").first()


# ---------------------------------------------------------------------------------------------------------------
# From the plan
# ---------------------------------------------------------------------------------------------------------------


def planned_follow_ups(*, plan: Plan) -> dict[str, dict[str, Any]]:
    """kind → {due_on, window_end_on, source, rule}: the first occurrences the plan calls for.

    The proposal's ``follow_ups`` are the basis. A clinician's confirmed decision decides the course, and
    with it the items that depend on the course (the architecture's promise: what a clinician confirmed is
    never silently lost, even while a changed proposal waits for review):

    * a finite decision (``end_on``): the end-of-therapy review is due ``end_on`` − 14 days (window to
      ``end_on``) and thrombophilia testing ``end_on`` + 2 to 4 weeks, *instead of* the proposal's dates
      (which count from the earliest end of the proposed range); no yearly review;
    * an indefinite decision: no end-of-therapy review, no thrombophilia testing (anticoagulation does not
      stop), and a yearly review at 12 months unless the 6-monthly cancer review is there.
    """
    items: dict[str, dict[str, Any]] = {}
    for entry in plan.proposal.get("follow_ups", []):
        due_on = _iso(entry.get("due_on"))
        if due_on is None or entry["kind"] not in FollowUpKind.values:
            continue
        items[entry["kind"]] = {
            "due_on": due_on,
            "window_end_on": _iso(entry.get("window_end_on")),
            "source": entry.get("source", ""),
            "rule": f"plan:{entry['kind']}",
        }
    decision = plan.current_decision
    if decision is None:
        return items
    if decision.indefinite:
        items.pop(FollowUpKind.END_OF_THERAPY_REVIEW, None)
        items.pop(FollowUpKind.THROMBOPHILIA_TESTING, None)
        if FollowUpKind.ANNUAL_REVIEW not in items and FollowUpKind.CANCER_REVIEW not in items:
            items[FollowUpKind.ANNUAL_REVIEW] = {
                "due_on": plan.episode.diagnosed_on + relativedelta(months=12),
                "window_end_on": None,
                "source": "CLINIC",
                "rule": "decision:annual_review",
            }
    elif decision.end_on:
        end_on = decision.end_on
        items.pop(FollowUpKind.ANNUAL_REVIEW, None)
        # The clinician's end date replaces the proposal's earliest end (reference §4: review 2 weeks before
        # the end; protein C/S/antithrombin 2-4 weeks after anticoagulation stops, AHA2011 IIa-B).
        items[FollowUpKind.END_OF_THERAPY_REVIEW] = {
            "due_on": end_on - timedelta(days=14),
            "window_end_on": end_on,
            "source": "CLINIC",
            "rule": "decision:end_of_therapy_review",
        }
        items[FollowUpKind.THROMBOPHILIA_TESTING] = {
            "due_on": end_on + timedelta(weeks=2),
            "window_end_on": end_on + timedelta(weeks=4),
            "source": "AHA2011 (IIa-B)",
            "rule": "decision:thrombophilia_testing",
        }
    return items


def _episode_key(episode_id: int, kind: str) -> str:
    return f"ep{episode_id}:{kind}"


@transaction.atomic
def follow_ups_sync_for_plan(*, plan: Plan) -> list[FollowUp]:
    """Bring the episode's plan-driven items in line with the plan; return them (sorted by due date).

    Creates missing items; moves the due dates of open ones; leaves done, missed and cancelled ones alone;
    cancels (with a note saying why) open items of kinds the plan no longer calls for, including their
    repeats (``ep42:microbleed_mri:2``). Repeats of kinds still planned are not touched: their dates come
    from the completion that created them.
    """
    episode = plan.episode
    planned = planned_follow_ups(plan=plan)
    items = [
        _upsert_open(
            key=_episode_key(episode.pk, kind),
            patient_id=episode.patient_id,
            episode_id=episode.pk,
            kind=kind,
            reopen_auto_cancelled=True,
            **values,
        )
        for kind, values in planned.items()
    ]
    gone = [kind for kind in PLAN_KINDS if kind not in planned]
    if gone:
        stale = FollowUp.objects.filter(
            episode=episode, kind__in=gone, status=FollowUpStatus.SCHEDULED, key__startswith=f"ep{episode.pk}:"
        )
        recomputed = timezone.localdate().isoformat()
        cancel_scheduled(
            stale,
            lambda item: (
                f"{_GONE_BECAUSE.get(item.kind, 'the plan no longer includes it')} (plan recomputed {recomputed})."
            ),
        )
    items += outcome_reviews_sync(episode=episode)
    return sorted((i for i in items if i.status != FollowUpStatus.CANCELLED), key=lambda i: (i.due_on, i.pk))


#: Reference §7: functional outcome (mRS) at 3, 6 and 12 months after diagnosis (ISCVT; SECRET).
OUTCOME_REVIEW_MONTHS = (3, 6, 12)
OUTCOME_REVIEW_SOURCE = "Reference §7 (ISCVT; SECRET)"


def outcome_review_key(episode_id: int, months: int) -> str:
    return f"{_episode_key(episode_id, FollowUpKind.OUTCOME_REVIEW)}:{months}m"


def outcome_reviews_sync(*, episode: CvtEpisode) -> list[FollowUp]:
    """The episode's outcome reviews at 3, 6 and 12 months after diagnosis (idempotent: one key each; a
    changed diagnosis date moves the open ones). Recording the review (``outcomes``) completes the item."""
    return [
        _upsert_open(
            key=outcome_review_key(episode.pk, months),
            patient_id=episode.patient_id,
            episode_id=episode.pk,
            kind=FollowUpKind.OUTCOME_REVIEW,
            due_on=episode.diagnosed_on + relativedelta(months=months),
            window_end_on=None,
            rule=f"outcome_review_{months}_months",
            source=OUTCOME_REVIEW_SOURCE,
        )
        for months in OUTCOME_REVIEW_MONTHS
    ]


# ---------------------------------------------------------------------------------------------------------------
# Completing an item
# ---------------------------------------------------------------------------------------------------------------


def _sequence(key: str) -> int:
    """The occurrence number in a key: ``ep4:annual_review`` is 1, ``ep4:annual_review:3`` is 3."""
    match = re.search(r":(\d+)$", key)
    return int(match.group(1)) if match else 1


def _follow_ons(item: FollowUp) -> tuple[list[dict[str, Any]], str]:
    """What completing ``item`` schedules next, and a note to add to it."""
    episode = item.episode
    if episode is None:
        return [], ""
    base_key = _episode_key(episode.pk, item.kind)
    plan = Plan.objects.filter(episode=episode).first()
    planned = planned_follow_ups(plan=plan) if plan else {}
    if item.kind == FollowUpKind.VENOUS_IMAGING:
        if item.recanalization not in (Recanalization.PARTIAL, Recanalization.NONE):
            return [], ""
        six_months = episode.diagnosed_on + relativedelta(months=6)
        if item.key != base_key or item.completed_on >= six_months:
            return [], NO_THIRD_SCAN_NOTE
        # Reference §4: the 3-month scan shows incomplete recanalization → repeat within the 3–6 month
        # window, at 6 months after diagnosis; no window end is given, so none is set.
        return [
            {
                "key": f"{base_key}:6m",
                "kind": item.kind,
                "due_on": six_months,
                "window_end_on": None,
                "rule": f"repeat_after_{item.recanalization}_recanalization",
                "source": "AHA2011 (IIa-C); CSBP2024 §3.2",
            }
        ], ""
    if item.kind in _REPEATS and item.kind in planned and item.key.startswith(base_key):
        months, source = _REPEATS[item.kind]
        return [
            {
                "key": f"{base_key}:{_sequence(item.key) + 1}",
                "kind": item.kind,
                "due_on": item.completed_on + relativedelta(months=months),
                "window_end_on": None,
                "rule": f"{item.kind}_every_{months}_months",
                "source": source,
            }
        ], ""
    return [], ""


def follow_up_complete(
    *,
    follow_up: FollowUp,
    completed_on: date,
    recanalization: str = "",
    result_note: str = "",
    user=None,
) -> list[FollowUp]:
    """Mark ``follow_up`` done and schedule what follows from it; return the follow-on items.

    * Venous imaging needs a recanalization result; other non-imaging items refuse one. Partial or no
      recanalization at the first (3-month) scan → repeat venous imaging 6 months after diagnosis; at the
      6-month scan (or a first scan done after 6 months) nothing more is scheduled: beyond 6 months imaging
      only when it would change treatment (CSBP2024), which the item's note says.
    * Microbleed MRI → the next one 6 months later, while the plan still follows microbleeds; annual
      review → the next 12 months later; cancer review → 6 months later (each from the completion date,
      while the plan still calls for that kind).
    * Refused with a ``ValidationError`` naming the field: a completion date in the future (clinic's day)
      or before the diagnosis (``completed_on``), a bad or misplaced recanalization result
      (``recanalization``), a cancelled item or an item already done differently (``status``).
    * Idempotent: completing a done item again with the same date and result changes nothing and creates
      nothing new; it returns the follow-ons that exist.
    """
    recanalization = (recanalization or "").strip()
    context = set_actor(user) if user is not None else nullcontext()
    with context, transaction.atomic():
        item = FollowUp.objects.select_for_update().get(pk=follow_up.pk)
        patient = Patient.objects.select_related("clinic").get(pk=item.patient_id)
        errors: dict[str, str] = {}
        if not isinstance(completed_on, date) or isinstance(completed_on, datetime):
            errors["completed_on"] = "Give the completion date (YYYY-MM-DD)."
        elif completed_on > clinic_today(patient.clinic):
            errors["completed_on"] = f"{completed_on.isoformat()} is in the future."
        elif item.episode_id and completed_on < item.episode.diagnosed_on:
            errors["completed_on"] = "The completion date is before the episode's diagnosis."
        if recanalization and recanalization not in Recanalization.values:
            errors["recanalization"] = (
                f"Unknown result {recanalization!r}; allowed: {', '.join(Recanalization.values)}."
            )
        elif recanalization and item.kind not in IMAGING_KINDS:
            errors["recanalization"] = f"A {item.get_kind_display()} has no recanalization result; leave it empty."
        elif not recanalization and item.kind == FollowUpKind.VENOUS_IMAGING:
            errors["recanalization"] = (
                "Give the recanalization result of the venous imaging: complete, partial or none."
            )
        if item.kind == FollowUpKind.OUTCOME_REVIEW and item.status != FollowUpStatus.DONE:
            errors["status"] = "Record the outcome review itself (mRS and findings): that marks it done."
        elif item.status == FollowUpStatus.CANCELLED:
            errors["status"] = "This item was cancelled; it cannot be marked done."
        elif (
            item.status == FollowUpStatus.DONE
            and not errors
            and (item.completed_on, item.recanalization) != (completed_on, recanalization)
        ):
            result = f" ({item.recanalization})" if item.recanalization else ""
            errors["status"] = f"Already done on {item.completed_on.isoformat()}{result}; correct it in the admin."
        if errors:
            raise ValidationError(errors)

        if item.status != FollowUpStatus.DONE:
            item.status, item.completed_on, item.recanalization = FollowUpStatus.DONE, completed_on, recanalization
            follow_ons, note = _follow_ons(item)
            item.result_note = " ".join(part for part in ((result_note or "").strip(), note) if part)[:500]
            item.save(update_fields=["status", "completed_on", "recanalization", "result_note", "updated_at"])
        else:
            follow_ons, _ = _follow_ons(item)
        created = [_upsert_open(patient_id=item.patient_id, episode_id=item.episode_id, **v) for v in follow_ons]
    follow_up.refresh_from_db()
    return created


# ---------------------------------------------------------------------------------------------------------------
# Deterioration
# ---------------------------------------------------------------------------------------------------------------


@transaction.atomic
def urgent_imaging_for_deterioration(*, event: DeteriorationEvent) -> FollowUp:
    """Reference §4: urgent repeat CT/MRI at once on deterioration, and an urgent alert to the clinic now."""
    episode = CvtEpisode.objects.select_related("patient__clinic").get(pk=event.episode_id)
    item = _upsert_open(
        key=f"det{event.pk}:urgent_imaging",
        patient_id=episode.patient_id,
        episode_id=episode.pk,
        kind=FollowUpKind.URGENT_IMAGING,
        due_on=event.occurred_on,
        window_end_on=event.occurred_on,
        rule="deterioration_urgent_imaging",
        source=URGENT_IMAGING_SOURCE,
    )
    _urgent_alert(
        clinic=episode.patient.clinic, key=f"urgent:det:{event.pk}", reason="deterioration", follow_ups=[item]
    )
    return item


# ---------------------------------------------------------------------------------------------------------------
# INR tests (warfarin)
# ---------------------------------------------------------------------------------------------------------------


def _latest_episode_id(patient: Patient) -> int | None:
    return (
        CvtEpisode.objects.filter(patient=patient).order_by("-diagnosed_on", "-pk").values_list("pk", flat=True).first()
    )


def _rule_source(rule: dict[str, Any]) -> str:
    return rule["source"] + ("" if rule.get("verified", True) else " [verify]")


@transaction.atomic
def inr_follow_up_sync(*, patient: Patient, readings: Iterable[InrReading] = ()) -> FollowUp | None:
    """After INR readings were stored: the next INR test from the advice, and urgent alerts.

    The open INR test item(s) of the patient are done (the latest reading completed them) and the next one
    is due on ``advice.next_test_on`` (window to ``next_test_latest_on``), keyed by the latest reading, so
    a later reading moves the schedule on and a re-save changes nothing. A date a clinician set with the
    dose (``next_inr_on``) is kept. Each critical reading among ``readings`` (reference §4: INR ≥ 5.0 or
    bleeding; :func:`anticoag.monitoring.critical_inr_alert`) alerts the clinic's alert address, the
    patient's primary nurse and responsible clinician now, once per reading and recipient — unless it is an old result that a later reading supersedes (see
    :data:`CRITICAL_ALERT_MAX_AGE`).
    """
    patient = _lock_patient(patient)
    advice = inr_advice_for_patient(patient=patient)
    if advice is None:
        return None
    latest_id = advice["latest_reading_id"]
    latest_on = date.fromisoformat(advice["latest_drawn_on"])
    key = f"inr:{patient.pk}:{latest_id}"
    _complete_open(
        FollowUp.objects.filter(patient=patient, kind=FollowUpKind.INR_TEST, status=FollowUpStatus.SCHEDULED)
        .exclude(key=key)
        .select_for_update(),
        completed_on=latest_on,
        note=f"Completed by the INR of {latest_on.isoformat()}.",
    )
    existing = FollowUp.objects.filter(key=key, rule=CLINICIAN_INR_RULE).first()
    item = existing or _upsert_open(
        key=key,
        patient_id=patient.pk,
        episode_id=_latest_episode_id(patient),
        kind=FollowUpKind.INR_TEST,
        due_on=date.fromisoformat(advice["next_test_on"]),
        window_end_on=date.fromisoformat(advice["next_test_latest_on"]),
        rule=f"inr:{advice['next_test_rule']['code']}",
        source=_rule_source(advice["next_test_rule"]),
    )

    _critical_inr_alerts(patient=patient, readings=readings, latest_id=latest_id)
    return item


def _critical_inr_alerts(*, patient: Patient, readings: Iterable[InrReading], latest_id: int) -> None:
    """An urgent alert for each critical reading among ``readings`` (see :func:`inr_follow_up_sync`): to the
    clinic's alert address and the patient's care team, once per reading and recipient."""
    policy = monitoring_policy()
    recent = timezone.now() - CRITICAL_ALERT_MAX_AGE
    for reading in readings:
        if reading.pk != latest_id and reading.drawn_at < recent:
            continue
        alert = monitoring.critical_inr_alert(float(reading.value), bleeding=reading.bleeding, policy=policy)
        if alert is not None:
            key = f"urgent:inr:{reading.pk}"
            _urgent_alert(clinic=patient.clinic, key=key, reason=alert["code"], inr_reading=reading)
            for user in _care_team(patient, besides=patient.clinic.alert_email):
                _urgent_alert(
                    clinic=patient.clinic,
                    key=f"{key}:u{user.pk}",
                    reason=alert["code"],
                    inr_reading=reading,
                    recipient=user.email,
                    recipient_user=user,
                )


def _care_team(patient: Patient, *, besides: str) -> list[Any]:
    """The patient's primary nurse and responsible clinician who can receive an alert: active, with an address,
    each address once and not the clinic's alert address again (that one has its own row)."""
    seen = {(besides or "").strip().lower()}
    team = []
    for user in (patient.primary_nurse, patient.responsible_clinician):
        address = (getattr(user, "email", "") or "").strip()
        if user is None or not user.is_active or not address or address.lower() in seen:
            continue
        seen.add(address.lower())
        team.append(user)
    return team


@transaction.atomic
def inr_follow_up_for_dose(*, dose: WarfarinDose) -> FollowUp | None:
    """A clinician's next-INR date (recorded with the dose) replaces the advice's date of the open INR test."""
    if dose.next_inr_on is None:
        return None
    open_items = list(
        FollowUp.objects.filter(
            patient_id=dose.patient_id, kind=FollowUpKind.INR_TEST, status=FollowUpStatus.SCHEDULED
        ).order_by("-due_on", "-pk")
    )
    values = {
        "due_on": dose.next_inr_on,
        "window_end_on": dose.next_inr_on,
        "rule": CLINICIAN_INR_RULE,
        "source": "clinician (warfarin dose record)",
    }
    if open_items:
        item = open_items[0]
        for name, value in values.items():
            setattr(item, name, value)
        item.save(update_fields=[*values, "updated_at"])
        return item
    return _upsert_open(
        key=f"inr:{dose.patient_id}:dose{dose.pk}",
        patient_id=dose.patient_id,
        episode_id=_latest_episode_id(dose.patient),
        kind=FollowUpKind.INR_TEST,
        **values,
    )


#: Reference §5 ``warfarin_interaction`` (rev 2): "check the INR within 3-7 days of starting or stopping it"
#: [verify]. Counted from the start/stop date, or from the day it is recorded when that is later.
MEDICATION_INR_DAYS = (3, 7)
MEDICATION_INR_SOURCE = "warfarin_interaction: INR within 3-7 days of starting or stopping the medicine [verify]"


def _medication_key_prefix(medication: PatientMedication) -> str:
    return f"med:{medication.patient_id}:{medication.pk}:"


@transaction.atomic
def inr_follow_up_for_medication(*, medication: PatientMedication) -> list[FollowUp]:
    """Starting or stopping a medicine that moves the INR (reference §5a) while on warfarin: an INR test 3 to
    7 days later (reference §5 ``warfarin_interaction`` [verify]).

    Applies when the patient's latest confirmed decision is warfarin and its course has not ended. One item per
    event, keyed by the medicine row, the event and its date (``med:{patient}:{row}:start:2026-12-01``), so
    saving again creates nothing; a corrected date replaces the open item of the old date (cancelled with a
    note). Other medicines, or a patient not on warfarin: nothing.
    """
    medicine = medicines.MEDICINES.get(medication.code)
    if medicine is None or not medicine.moves_inr:
        return []
    patient = _lock_patient(medication.patient)
    decision = current_decision(patient)
    today = clinic_today(patient.clinic)
    if decision is None or decision.agent != "warfarin" or (decision.end_on and decision.end_on < today):
        return []
    items: list[FollowUp] = []
    earliest, latest = MEDICATION_INR_DAYS
    for event, day in (("start", medication.started_on), ("stop", medication.stopped_on)):
        if day is None:
            continue
        base = max(day, today)
        item, _ = FollowUp.objects.get_or_create(
            key=f"{_medication_key_prefix(medication)}{event}:{day.isoformat()}",
            defaults={
                "patient_id": patient.pk,
                "episode_id": _latest_episode_id(patient),
                "kind": FollowUpKind.INR_TEST,
                "due_on": base + timedelta(days=earliest),
                "window_end_on": base + timedelta(days=latest),
                "rule": f"medication_{event}:{medicine.code}"[:80],
                "source": MEDICATION_INR_SOURCE,
            },
        )
        items.append(item)
    stale = FollowUp.objects.filter(
        key__startswith=_medication_key_prefix(medication), status=FollowUpStatus.SCHEDULED
    ).exclude(pk__in=[i.pk for i in items])
    cancel_scheduled(stale, "the medicine's start or stop date was corrected.")
    return items


# ---------------------------------------------------------------------------------------------------------------
# DOAC renal monitoring
# ---------------------------------------------------------------------------------------------------------------


def _crcl(patient: Patient, lab: LabResult, age: int) -> float | None:
    mg_dl = lab.creatinine_mg_dl
    if mg_dl is None or patient.weight_kg is None or not patient.sex:
        return None
    clearance = rules.cockcroft_gault(
        age=age, weight_kg=float(patient.weight_kg), sex=patient.sex, creatinine_mg_dl=mg_dl
    )
    return round(clearance, 1)  # as the rules do: the number shown and the decision agree


@transaction.atomic
def renal_follow_up_sync(*, patient: Patient, lab: LabResult | None = None) -> FollowUp | None:
    """DOAC patients (reference §4 "DOAC monitoring", EHRA [verify]): the next creatinine/CrCl check.

    Applies when the patient's latest *confirmed* decision names a DOAC (dabigatran) and its course has not
    ended by the lab date; an unconfirmed proposal does not count. Works from the latest creatinine (an
    older result entered late changes nothing). CrCl by Cockcroft-Gault with the age on the draw date; the
    next check is due :func:`anticoag.monitoring.doac_renal_next_due` later (key ``renal:{patient}:{lab}``),
    the previous open renal item is done. Without weight or sex CrCl is unknown: the shortest interval
    (3 months) applies. CrCl ≤ 30 → urgent alert ``renal_doac_contraindicated`` (key ``urgent:renal:{lab}``).
    """
    patient = _lock_patient(patient)
    decision = current_decision(patient)
    if decision is None or decision.agent not in monitoring.DOAC_AGENTS:
        return None
    latest = (
        LabResult.objects.filter(patient=patient, serum_creatinine__isnull=False).order_by("-drawn_on", "-pk").first()
    )
    if latest is None or (lab is not None and lab.pk != latest.pk):
        return None
    lab = latest
    if decision.end_on and decision.end_on < lab.drawn_on:
        return None  # the course is over
    policy = monitoring_policy()
    age = patient.age_on(lab.drawn_on)
    crcl = _crcl(patient, lab, age)
    if crcl is None:
        months = policy.doac_months_three_monthly
        due_on = lab.drawn_on + relativedelta(months=months)
        rule = f"doac_renal_crcl_unknown_every_{months}_months"
    else:
        months = monitoring.doac_renal_interval_months(crcl_ml_min=crcl, age=age, policy=policy)
        due_on = monitoring.doac_renal_next_due(last_drawn_on=lab.drawn_on, crcl_ml_min=crcl, age=age, policy=policy)
        rule = f"doac_renal_every_{months}_months"
    key = f"renal:{patient.pk}:{lab.pk}"
    _complete_open(
        FollowUp.objects.filter(patient=patient, kind=FollowUpKind.RENAL_FUNCTION, status=FollowUpStatus.SCHEDULED)
        .exclude(key=key)
        .select_for_update(),
        completed_on=lab.drawn_on,
        note=f"Completed by the creatinine of {lab.drawn_on.isoformat()}.",
    )
    item = _upsert_open(
        key=key,
        patient_id=patient.pk,
        episode_id=_latest_episode_id(patient),
        kind=FollowUpKind.RENAL_FUNCTION,
        due_on=due_on,
        window_end_on=None,
        rule=rule,
        source=policy.doac_source + ("" if policy.doac_verified else " [verify]"),
    )
    for alert in monitoring.doac_alerts(agent=decision.agent, crcl_ml_min=crcl, policy=policy):
        _urgent_alert(clinic=patient.clinic, key=f"urgent:renal:{lab.pk}", reason=alert["code"], follow_ups=[item])
    return item


# ---------------------------------------------------------------------------------------------------------------
# Procedures (reference §8): the INR check the day before (warfarin) and the restart reminder
# ---------------------------------------------------------------------------------------------------------------

#: Procedure plan field → follow-up kind it schedules.
_PROCEDURE_ITEMS = {
    "inr_check_on": FollowUpKind.PROCEDURE_INR_CHECK,
    "restart_on": FollowUpKind.PROCEDURE_RESTART,
}


@transaction.atomic
def procedure_follow_ups_sync(*, procedure) -> list[FollowUp]:
    """Bring a procedure's follow-ups in line with its *confirmed* plan; return the open ones.

    Keys ``proc{id}:{kind}``: confirming twice or saving again creates nothing new. A moved procedure moves its
    open items (the confirmed intervals counted from the new date). A cancelled procedure, or one whose plan is
    not confirmed, cancels its open items (reopened if it is confirmed again). Done items are history and stay;
    when a done item's date no longer matches (the procedure moved after the INR check was done) a new item is
    keyed by its date, ``proc{id}:{kind}:{date}``.
    """
    plan = procedure.confirmed_plan if procedure.status != "cancelled" else {}
    wanted: dict[str, date] = {}
    for name, kind in _PROCEDURE_ITEMS.items():
        if plan.get(name):
            wanted[kind] = date.fromisoformat(plan[name])
    source = plan.get("source", "")
    kept: list[FollowUp] = []
    for kind, due_on in wanted.items():
        values = {
            "patient_id": procedure.patient_id,
            "episode_id": procedure.episode_id,
            "kind": kind,
            "due_on": due_on,
            "window_end_on": due_on,
            "rule": f"procedure:{kind}",
            "source": source,
        }
        item = _upsert_open(key=f"proc{procedure.pk}:{kind}", reopen_auto_cancelled=True, **values)
        if item.status != FollowUpStatus.SCHEDULED and item.due_on != due_on:
            item = _upsert_open(key=f"proc{procedure.pk}:{kind}:{due_on.isoformat()}", reopen_auto_cancelled=True,
                                **values)  # fmt: skip
        kept.append(item)
    reason = "the procedure was cancelled" if procedure.status == "cancelled" else "the procedure plan changed"
    stale = (
        FollowUp.objects.filter(key__startswith=f"proc{procedure.pk}:", status=FollowUpStatus.SCHEDULED)
        .exclude(pk__in=[item.pk for item in kept])
        .select_for_update()
    )
    cancel_scheduled(stale, f"{reason} ({timezone.localdate().isoformat()}).")
    return [item for item in kept if item.status == FollowUpStatus.SCHEDULED]


# ---------------------------------------------------------------------------------------------------------------
# INR tests after an import: the same schedule for many patients in a fixed number of queries (issue 18)
# ---------------------------------------------------------------------------------------------------------------

#: Rows per bulk INSERT / UPDATE of follow-up items and audit entries.
BULK_BATCH_SIZE = 1000


def _audit_bulk(pairs: list[tuple[FollowUp | None, FollowUp]]) -> None:
    """The audit entries django-auditlog would have written for each save, written in bulk: ``(before, after)``
    per item (``before`` None for a new item), only items with changes. The entries pass through ``pre_save``
    like auditlog's own, so the request's actor and address are filled in the same way (no query)."""
    from auditlog.cid import get_cid
    from auditlog.diff import model_instance_diff
    from auditlog.models import LogEntry
    from django.conf import settings
    from django.contrib.contenttypes.models import ContentType
    from django.db.models.signals import pre_save

    content_type = ContentType.objects.get_for_model(FollowUp)  # cached after the first use
    cid = get_cid()
    use_json = getattr(settings, "AUDITLOG_STORE_JSON_CHANGES", False)
    # The item's own columns: a reverse relation (an outcome review pointing at the item) is not changed here,
    # and reading it would cost a query per item.
    own_fields = [field.name for field in FollowUp._meta.concrete_fields]
    entries = []
    for before, after in pairs:
        changes = model_instance_diff(before, after, fields_to_check=own_fields, use_json_for_changes=use_json)
        if not changes:
            continue
        entry = LogEntry(
            content_type=content_type,
            object_pk=str(after.pk),
            object_id=after.pk,
            object_repr=str(after),
            action=LogEntry.Action.CREATE if before is None else LogEntry.Action.UPDATE,
            changes=changes,
            cid=cid,
        )
        pre_save.send(sender=LogEntry, instance=entry, raw=False, using="default", update_fields=None)
        entries.append(entry)
    LogEntry.objects.bulk_create(entries, batch_size=BULK_BATCH_SIZE)


@transaction.atomic
def inr_follow_up_sync_many(*, patients: Iterable[Patient], readings: dict[int, list[InrReading]]) -> int:
    """:func:`inr_follow_up_sync` for many patients at once (a CSV import), with the same outcome per patient
    — open INR tests completed by the latest reading, the next test from the advice keyed by that reading, a
    clinician's date kept, urgent alerts for critical readings — in a fixed number of queries whatever the
    number of patients: the patients locked in id order, the advice (two queries), the open and the keyed
    items, the latest episodes, then bulk writes and their audit entries in batches of
    :data:`BULK_BATCH_SIZE`. Only an urgent alert costs queries of its own (a critical INR is rare). Returns
    the number of patients scheduled."""
    ids = sorted({patient.pk for patient in patients})
    if not ids:
        return 0
    locked = list(
        Patient.objects.select_for_update(no_key=True, of=("self",))
        .select_related("clinic", "primary_nurse", "responsible_clinician")
        .filter(pk__in=ids)
        .order_by("pk")
    )
    advice = inr_advice_for_patients(patients=locked)
    if not advice:
        return 0
    by_id = {patient.pk: patient for patient in locked}
    keys = {pid: f"inr:{pid}:{a['latest_reading_id']}" for pid, a in advice.items()}
    now = timezone.now()

    # Open INR tests the latest reading completes (every open one but the reading's own item).
    completed: list[tuple[FollowUp, FollowUp]] = []
    for item in FollowUp.objects.filter(
        patient_id__in=advice, kind=FollowUpKind.INR_TEST, status=FollowUpStatus.SCHEDULED
    ).select_for_update():
        if item.key == keys[item.patient_id]:
            continue
        before = copy.copy(item)
        latest_on = date.fromisoformat(advice[item.patient_id]["latest_drawn_on"])
        item.status, item.completed_on = FollowUpStatus.DONE, latest_on
        item.result_note = f"Completed by the INR of {latest_on.isoformat()}."[:500]
        item.updated_at = now
        completed.append((before, item))
    FollowUp.objects.bulk_update(
        [item for _, item in completed],
        ["status", "completed_on", "result_note", "updated_at"],
        batch_size=BULK_BATCH_SIZE,
    )

    # The next INR test per patient: kept when a clinician set it, updated while scheduled, else created.
    existing = {item.key: item for item in FollowUp.objects.filter(key__in=keys.values())}
    episodes: dict[int, tuple[date, int]] = {}
    for patient_id, episode_id, diagnosed_on in CvtEpisode.objects.filter(patient_id__in=advice).values_list(
        "patient_id", "pk", "diagnosed_on"
    ):
        if patient_id not in episodes or (diagnosed_on, episode_id) > episodes[patient_id]:
            episodes[patient_id] = (diagnosed_on, episode_id)
    created: list[FollowUp] = []
    updated: list[tuple[FollowUp, FollowUp]] = []
    changed_fields: set[str] = set()
    for patient_id, patient_advice in advice.items():
        values = {
            "due_on": date.fromisoformat(patient_advice["next_test_on"]),
            "window_end_on": date.fromisoformat(patient_advice["next_test_latest_on"]),
            "rule": f"inr:{patient_advice['next_test_rule']['code']}"[:80],
            "source": _rule_source(patient_advice["next_test_rule"])[:300],
        }
        item = existing.get(keys[patient_id])
        if item is None:
            episode = episodes.get(patient_id)
            created.append(
                FollowUp(
                    key=keys[patient_id],
                    patient_id=patient_id,
                    episode_id=episode[1] if episode else None,
                    kind=FollowUpKind.INR_TEST,
                    created_at=now,
                    updated_at=now,
                    **values,
                )
            )
        elif item.rule != CLINICIAN_INR_RULE and item.status == FollowUpStatus.SCHEDULED:
            before = copy.copy(item)
            changes = [name for name, value in values.items() if getattr(item, name) != value]
            for name in changes:
                setattr(item, name, values[name])
            if changes:
                item.updated_at = now
                changed_fields.update(changes)
                updated.append((before, item))
    FollowUp.objects.bulk_create(created, batch_size=BULK_BATCH_SIZE)
    if updated:
        FollowUp.objects.bulk_update(
            [item for _, item in updated], [*sorted(changed_fields), "updated_at"], batch_size=BULK_BATCH_SIZE
        )
    _audit_bulk([*completed, *((None, item) for item in created), *updated])

    # Urgent alerts: each critical reading among the new ones, as inr_follow_up_sync decides (a critical INR
    # is rare: its queries are its own).
    for patient_id, patient_advice in advice.items():
        _critical_inr_alerts(
            patient=by_id[patient_id],
            readings=readings.get(patient_id, ()),
            latest_id=patient_advice["latest_reading_id"],
        )
    return len(advice)
