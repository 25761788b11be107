"""The warfarin dosing decision after an INR: the suggestion in tablets, and the decision as given.

Reads the INR advice (:func:`anticoag.inr.inr_advice_for_patient`: the nomogram of reference §4) and turns its
weekly dose into the clinic's tablets (:mod:`anticoag.tablets`, reference §4 "Warfarin tablets", rev 2):

* the suggested weekly dose never moves more than the clinic's guardrail (``Clinic.dose_guardrail_percent``,
  20 % by default) from the current dose;
* it is proposed as the nearest dose the clinic's tablets make, with the difference shown;
* a decision that departs from the suggestion (another weekly dose, other hold doses or another next-test date)
  needs a reason; a dose beyond the guardrail needs a user allowed to change dose records (clinicians).

The decision is the existing :class:`anticoag.models.WarfarinDose` record, with its week in tablets stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from patients.models import Clinic, Patient, parse_tablet_colours, parse_tablet_strengths

from . import tablets as tablet_rules
from .inr import clinic_today, dose_record, inr_advice_for_patient, inr_advice_for_patients
from .models import InrReading, WarfarinDose

_TENTH = Decimal("0.1")


def clinic_tablets(clinic: Clinic) -> tablet_rules.Tablets:
    """The tablets the clinic stocks (its settings)."""
    return tablet_rules.Tablets(
        tuple(parse_tablet_strengths(clinic.tablet_strengths)), halves_allowed=clinic.tablet_halves_allowed
    )


def clinic_tablet_colours(clinic: Clinic) -> dict[str, str]:
    """Strength (as text, "0.5") → colour name; strengths without a colour are drawn white."""
    try:
        colours = parse_tablet_colours(clinic.tablet_colours)
    except ValueError:
        colours = {}
    return {tablet_rules.mg_text(strength): colour for strength, colour in colours.items()}


def dose_schedule(*, clinic: Clinic, weekly_mg: Decimal | float | str) -> dict[str, Any]:
    """The week of tablets nearest to ``weekly_mg`` with the clinic's tablets (no guardrail)."""
    return tablet_rules.weekly_schedule(weekly_mg=weekly_mg, tablets=clinic_tablets(clinic)).as_dict()


def dose_suggestion_for_patient(*, patient: Patient, advice: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The suggestion for the patient's latest INR, in tablets; ``None`` without an INR.

    Keys: ``reading_id``, ``latest_inr``, ``latest_drawn_on``, ``current_weekly_mg`` (the dose before this
    INR), ``nomogram_weekly_mg`` (what the nomogram said), ``suggested_weekly_mg`` (within the guardrail and
    achievable with the tablets; ``None`` when there is no current dose to adjust), ``change_percent``,
    ``hold_doses``, ``hold_until``, ``next_test_on``, ``schedule``, ``guardrail_percent``, ``guardrail_applied``,
    ``dose_rule``, ``next_test_rule``, ``sources``, ``decided`` (the dose record answering this INR, if any).

    ``advice``: the patient's :func:`~anticoag.inr.inr_advice_for_patient` as at now when the caller has it
    already (the patient page), so it is not read twice.
    """
    if advice is None:
        advice = inr_advice_for_patient(patient=patient)
    if advice is None:
        return None
    decided = (
        WarfarinDose.objects.filter(patient=patient, inr_reading_id=advice["latest_reading_id"]).order_by("-pk").first()
    )
    return _suggestion(patient, advice, decided)


def dose_suggestions_for_patients(*, patients: Sequence[Patient]) -> dict[int, dict[str, Any]]:
    """:func:`dose_suggestion_for_patient` for many patients (with their clinic), in a constant number of
    queries (the Today list). ``decided`` is not read: the list shows results still awaiting a decision."""
    advice = inr_advice_for_patients(patients=patients)
    return {patient.pk: _suggestion(patient, advice[patient.pk], None) for patient in patients if patient.pk in advice}


def _suggestion(patient: Patient, advice: dict[str, Any], decided: WarfarinDose | None) -> dict[str, Any]:
    clinic = patient.clinic
    guardrail = clinic.dose_guardrail_percent
    current = advice["weekly_dose_mg"]
    nomogram = advice["suggested_weekly_dose_mg"]
    suggested = None
    schedule = None
    guardrail_applied = False
    if nomogram is not None and current:
        low, high = tablet_rules.guardrail_bounds(current_mg=str(current), percent=guardrail)
        week = tablet_rules.weekly_schedule(
            weekly_mg=str(nomogram), tablets=clinic_tablets(clinic), lowest_mg=low, highest_mg=high
        )
        suggested = week.weekly_mg
        schedule = week.as_dict()
        guardrail_applied = not (low <= Decimal(str(nomogram)) <= high)
    elif current:
        schedule = dose_schedule(clinic=clinic, weekly_mg=str(current))
    next_test_on = date.fromisoformat(advice["next_test_on"])
    hold_doses = advice["hold_doses"] or 0
    if not hold_doses and advice["hold_until"] == "inr_in_range":
        # "Hold until INR 2–3" (INR ≥ 5.0) with a retest in 1–3 days: the doses until that retest are held.
        hold_doses = min(7, max(1, (next_test_on - clinic_today(clinic)).days))
    return {
        "reading_id": advice["latest_reading_id"],
        "latest_inr": advice["latest_inr"],
        "latest_drawn_on": advice["latest_drawn_on"],
        "current_weekly_mg": None if current is None else Decimal(str(current)).quantize(_TENTH),
        "nomogram_weekly_mg": nomogram,
        "suggested_weekly_mg": suggested,
        "change_percent": (
            tablet_rules.change_percent(current_mg=str(current), new_mg=suggested)
            if suggested is not None and current
            else None
        ),
        "hold_doses": hold_doses,
        "hold_until": advice["hold_until"],
        "next_test_on": next_test_on,
        "schedule": schedule,
        "guardrail_percent": guardrail,
        "guardrail_applied": guardrail_applied,
        "dose_rule": advice["dose_rule"],
        "next_test_rule": advice["next_test_rule"],
        "alerts": advice["alerts"],
        "sources": [*advice["sources"], tablet_rules.SOURCE],
        "decided": decided,
    }


def _departures(suggestion: dict[str, Any], weekly: Decimal, hold_doses: int, next_inr_on: date | None) -> list[str]:
    """Which parts of a decision differ from the suggestion."""
    parts = []
    if suggestion["suggested_weekly_mg"] is not None and weekly.quantize(_TENTH) != Decimal(
        suggestion["suggested_weekly_mg"]
    ).quantize(_TENTH):
        parts.append("weekly dose")
    if hold_doses != suggestion["hold_doses"]:
        parts.append("hold doses")
    if next_inr_on is not None and next_inr_on != suggestion["next_test_on"]:
        parts.append("next INR date")
    return parts


def dose_decide(
    *,
    patient: Patient,
    decided_by,
    weekly_dose_mg: Decimal | str | None = None,
    hold_doses: int | None = None,
    next_inr_on: date | None = None,
    reason: str = "",
    may_exceed_guardrail: bool = False,
) -> WarfarinDose:
    """Record the dosing decision for the patient's latest INR: the suggestion as it stands when only
    ``patient`` and ``decided_by`` are given (accept), or the values given (change, with ``reason``).

    Refusals are ``ValidationError`` by field: ``weekly_dose_mg`` (missing without a suggestion, not
    achievable, beyond the guardrail for a user who may not), ``change_reason`` (a departure without a reason),
    ``next_inr_on`` (not after the INR). Nothing is written when refused.
    """
    suggestion = dose_suggestion_for_patient(patient=patient)
    if suggestion is None:
        raise ValidationError({"inr_reading": "Record an INR first: the decision answers an INR."})
    if weekly_dose_mg in (None, ""):
        if suggestion["suggested_weekly_mg"] is None:
            raise ValidationError({"weekly_dose_mg": "There is no suggestion to accept: give the weekly dose."})
        weekly = Decimal(suggestion["suggested_weekly_mg"])
    else:
        try:
            weekly = Decimal(str(weekly_dose_mg)).quantize(_TENTH)
        except ArithmeticError:
            raise ValidationError({"weekly_dose_mg": "Enter the weekly dose in mg."}) from None
        if not weekly.is_finite() or weekly < 0 or weekly > 175:
            raise ValidationError({"weekly_dose_mg": "The weekly dose must be between 0 and 175 mg."})
    holds = suggestion["hold_doses"] if hold_doses is None else hold_doses
    if holds < 0 or holds > 7:
        raise ValidationError({"hold_doses": "Hold between 0 and 7 doses."})
    next_on = next_inr_on or suggestion["next_test_on"]
    week = tablet_rules.weekly_schedule(weekly_mg=weekly, tablets=clinic_tablets(patient.clinic))
    if not week.exact:
        raise ValidationError(
            {
                "weekly_dose_mg": f"{weekly} mg a week cannot be made with the clinic's tablets; "
                f"the nearest is {week.weekly_mg} mg."
            }
        )
    departures = _departures(suggestion, weekly, holds, next_inr_on)
    reason = (reason or "").strip()
    if departures and not reason:
        raise ValidationError(
            {"change_reason": f"Give a reason for departing from the suggestion ({', '.join(departures)})."}
        )
    current = suggestion["current_weekly_mg"]
    beyond = not tablet_rules.within_guardrail(
        current_mg=current, new_mg=weekly, percent=patient.clinic.dose_guardrail_percent
    )
    if beyond and not may_exceed_guardrail:
        raise ValidationError(
            {
                "weekly_dose_mg": f"A change of more than {patient.clinic.dose_guardrail_percent} % from "
                f"{current} mg a week needs a clinician."
            }
        )
    reading = InrReading.objects.get(pk=suggestion["reading_id"])
    with transaction.atomic():
        dose = dose_record(
            patient=patient,
            weekly_dose_mg=weekly,
            starts_on=max(clinic_today(patient.clinic), suggestion_day(reading, patient)),
            inr_reading=reading,
            suggested_weekly_dose_mg=suggestion["suggested_weekly_mg"],
            hold_doses=holds,
            next_inr_on=next_on,
            decided_by=decided_by,
            note="",
            schedule=week.as_dict(),
            change_reason=reason,
            beyond_guardrail=beyond,
        )
    return dose


def suggestion_day(reading: InrReading, patient: Patient) -> date:
    """The clinic date of a reading."""
    from .inr import clinic_zone

    return reading.drawn_at.astimezone(clinic_zone(patient.clinic)).date()
