"""The demo clinic's history (``manage.py seed_demo``): what a clinic looks like in mid-year.

Months of INR readings with realistic control (most patients stable, some not, two lost to follow-up, one
critical INR this week), confirmed plans (a few left for the clinician to confirm), warfarin doses and
their changes, past follow-ups done, a handful overdue and a few due today. Everything goes through the
services the staff pages use (plan confirmation, follow-up completion, rescheduling with a reason); the
readings of each patient are stored at once and announced once (as the CSV import does), which keeps the
command fast.

Idempotent: a clinic that already has INR readings is left as it is. Deterministic: each patient's history
comes from a random generator seeded with the patient's number. All values are invented.
"""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone

from anticoag.inr import clinic_today, clinic_zone, dose_record, inr_readings_recorded
from anticoag.models import Agent, InrReading, InrSource, PlanDecision
from anticoag.services import plan_confirm
from patients.models import Clinic, Patient
from scheduling.follow_ups import IMAGING_KINDS, follow_up_complete
from scheduling.models import FollowUp, FollowUpKind, FollowUpStatus, Recanalization

from .work_list import follow_up_reschedule

#: Patients (by position in MRN order) whose plan is left for the clinician to confirm.
UNCONFIRMED = {3, 16, 27, 36}
#: Warfarin patients (by position) whose INRs stopped 60-80 days ago: lost to follow-up (reference §6: > 56 days).
LOST = {6, 20}
#: The warfarin patient (by position) with a critical INR this week (5.0-9.0, no bleeding: alert, hold, retest).
CRITICAL = 8
#: Items done this many days or more before today count as the past; younger ones stay open (overdue or due).
DONE_BEFORE_DAYS = 6
#: Open items moved to today, "booked for today" (with the reason recorded).
DUE_TODAY = 3
DEMO_NOTE = "Demo history."


def _decision(plan, clinician, agent: str) -> PlanDecision:
    """Confirm the plan with ``agent``, acknowledging its warnings; an agent the rules did not propose is an
    override and says so."""
    warnings = [w["code"] for w in plan.warnings_to_acknowledge]
    try:
        return plan_confirm(plan=plan, user=clinician, agent=agent, acknowledged_warnings=warnings)
    except ValidationError:
        return plan_confirm(
            plan=plan,
            user=clinician,
            agent=agent,
            acknowledged_warnings=warnings,
            override_reason="Demo data: the clinic's choice of agent.",
        )


def _agent(plan, position: int) -> str:
    options = [option["agent"] for option in plan.proposal.get("oral_options", [])]
    if not options:
        return Agent.LMWH  # pregnancy: LMWH throughout (reference §3)
    eligible = (plan.proposal.get("doac_eligible") or {}).get("eligible")
    if Agent.DABIGATRAN in options and eligible is True and position % 5 == 4:
        return Agent.DABIGATRAN
    return Agent.WARFARIN


def _inr_days(start: date, end: date, rng: random.Random, unstable: bool) -> list[date]:
    """Test days: every 3-4 days while starting, then weekly, then every 2-4 weeks (1-2 when unstable)."""
    days, day, count = [], start, 0
    while day <= end:
        days.append(day)
        count += 1
        if count < 4:
            step = rng.choice([3, 4])
        elif count < 7:
            step = 7
        else:
            step = rng.choice([7, 10, 14]) if unstable else rng.choice([14, 21, 28])
        day += timedelta(days=step)
    return days


def _value(rng: random.Random, index: int, unstable: bool) -> Decimal:
    if index == 0:
        value = rng.uniform(1.2, 1.6)  # the first INR, before warfarin has worked
    elif index < 3:
        value = rng.uniform(1.6, 2.6)
    elif unstable:
        value = rng.choice([rng.uniform(1.4, 1.9), rng.uniform(2.0, 3.0), rng.uniform(3.1, 4.3)])
    elif rng.random() < 0.12:
        value = rng.choice([rng.uniform(1.5, 1.9), rng.uniform(3.1, 3.8)])  # an occasional excursion
    else:
        value = min(max(rng.gauss(2.5, 0.35), 1.8), 3.4)
    return Decimal(f"{value:.1f}")


def _warfarin_history(patient: Patient, decision: PlanDecision, position: int, clinician, today: date) -> int:
    """Readings and doses of one warfarin patient from a week after diagnosis; returns the readings stored."""
    rng = random.Random(position)
    zone = clinic_zone(patient.clinic)
    diagnosed_on = decision.plan.episode.diagnosed_on
    start = max(diagnosed_on + timedelta(days=7), today - timedelta(days=330))
    end = today - timedelta(days=rng.randint(1, 6))
    if decision.end_on is not None:
        end = min(end, decision.end_on)
    if position in LOST:
        end = today - timedelta(days=60 + 7 * (position % 3))
    unstable = position % 4 == 1
    days = _inr_days(start, end, rng, unstable)
    if days and days[-1] < end - timedelta(days=3) and position not in LOST:
        days.append(end)  # seen recently: the last test was a few days ago
    if position == CRITICAL:
        days = [day for day in days if day < today - timedelta(days=5)] + [today - timedelta(days=2)]
    if not days:
        return 0
    readings = [
        InrReading(
            patient=patient,
            drawn_at=datetime.combine(day, time(8 + rng.randint(0, 3), rng.choice([0, 15, 30, 45])), tzinfo=zone),
            value=_value(rng, index, unstable),
            source=InrSource.LAB if index % 3 else InrSource.POINT_OF_CARE,
        )
        for index, day in enumerate(days)
    ]
    if position == CRITICAL:
        readings[-1].value = Decimal("6.4")
    InrReading.objects.bulk_create(readings)
    weekly = Decimal("35.0")
    for index, reading in enumerate(readings[:-1]):
        day = reading.drawn_at.astimezone(zone).date()
        if index == 0:
            dose_record(patient=patient, weekly_dose_mg=weekly, starts_on=day, inr_reading=reading,
                        decided_by=clinician, note=DEMO_NOTE)  # fmt: skip
        elif index >= 3 and (reading.value < Decimal("1.8") or reading.value > Decimal("3.4")):
            weekly += Decimal("2.5") if reading.value < 2 else Decimal("-2.5")
            dose_record(patient=patient, weekly_dose_mg=weekly, starts_on=day, inr_reading=reading,
                        decided_by=clinician, note=DEMO_NOTE)  # fmt: skip
    # Announced once, as an import does: the next INR test, and the alert for a critical latest reading.
    inr_readings_recorded(patient=patient, readings=[readings[-1]])
    if decision.end_on is not None and decision.end_on < today:
        # The course is over: no more INR tests (the end-of-therapy review is the follow-up that counts).
        FollowUp.objects.filter(patient=patient, kind=FollowUpKind.INR_TEST, status=FollowUpStatus.SCHEDULED).update(
            status=FollowUpStatus.CANCELLED, result_note=f"Warfarin course ended {decision.end_on.isoformat()}."
        )
    return len(readings)


def _past_follow_ups_done(clinic: Clinic, nurse, today: date) -> int:
    """What was due before the last couple of weeks was done (follow-ons included), as in a working clinic."""
    done = 0
    for _ in range(4):  # a done item can schedule a follow-on that is itself in the past
        stale = list(
            FollowUp.objects.filter(
                patient__clinic=clinic,
                status=FollowUpStatus.SCHEDULED,
                due_on__lt=today - timedelta(days=DONE_BEFORE_DAYS),
            )
            .exclude(kind=FollowUpKind.INR_TEST)  # INR tests are done by the next reading
            .exclude(kind=FollowUpKind.OUTCOME_REVIEW)  # done by recording the review (outcomes.demo)
            .select_related("patient")
            .order_by("due_on", "pk")
        )
        if not stale:
            break
        for item in stale:
            follow_up_complete(
                follow_up=item,
                completed_on=min(item.due_on + timedelta(days=2), today),
                recanalization=Recanalization.PARTIAL if item.kind in IMAGING_KINDS else "",
                result_note=DEMO_NOTE,
                user=nurse,
            )
            done += 1
    return done


def _booked_for_today(clinic: Clinic, nurse, today: date) -> int:
    items = (
        FollowUp.objects.filter(
            patient__clinic=clinic,
            status=FollowUpStatus.SCHEDULED,
            due_on__gt=today,
            due_on__lte=today + timedelta(days=10),
        )
        .select_related("patient")
        .order_by("due_on", "pk")[:DUE_TODAY]
    )
    moved = 0
    for item in items:
        follow_up_reschedule(follow_up=item, due_on=today, reason="Booked for today (demo).", user=nurse)
        moved += 1
    return moved


def demo_history_seed(*, clinic: Clinic, staff: dict[str, Any]) -> dict[str, int]:
    """Give the demo clinic its history (see the module docstring). Returns what was added."""
    if InrReading.objects.filter(patient__clinic=clinic).exists():
        return {}
    today = clinic_today(clinic)
    clinician, nurse = staff["clinician"], staff["nurse.ana"]
    counts = {"decisions": 0, "readings": 0}
    patients = Patient.objects.filter(clinic=clinic).select_related("clinic").order_by("mrn")
    for position, patient in enumerate(patients):
        if position in UNCONFIRMED:
            continue
        decision = None
        for episode in patient.episodes.select_related("plan").order_by("diagnosed_on", "pk"):  # oldest first
            plan = getattr(episode, "plan", None)
            if plan is None or plan.decisions.exists():
                continue
            decision = _decision(plan, clinician, _agent(plan, position))
            # Decided when the patient was seen after the diagnosis, not today.
            decided_at = datetime.combine(
                episode.diagnosed_on + timedelta(days=2), time(14), tzinfo=clinic_zone(clinic)
            )
            PlanDecision.objects.filter(pk=decision.pk).update(decided_at=min(decided_at, timezone.now()))
            decision.refresh_from_db()
            counts["decisions"] += 1
        if decision is not None and decision.agent == Agent.WARFARIN:
            counts["readings"] += _warfarin_history(patient, decision, position, clinician, today)
    counts["done"] = _past_follow_ups_done(clinic, nurse, today)
    counts["today"] = _booked_for_today(clinic, nurse, today)
    return counts
