"""Today: the INR clinic's working list, per nurse ("my patients") or per clinic, and a nurse's landing page.

Three parts, each in the clinic's own today:

* **Results awaiting a dosing decision**: each patient's latest INR (of the last :data:`AWAITING_DAYS` days)
  that no dose record answers yet, critical results first (:func:`anticoag.monitoring.critical_inr_alert`:
  INR ≥ 5.0 or bleeding, reference §4), each with its suggestion in tablets and an "Accept" button (the same
  decision as on the patient page, :func:`anticoag.dosing.dose_decide`).
* **INR tests due today and overdue**, with the recalls of missed tests ("did not attend",
  :mod:`scheduling.missed_tests`) marked as such.

A constant number of queries whatever the number of patients (tested at 10 and 200).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Q, Subquery
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from anticoag import monitoring
from anticoag.dosing import clinic_tablet_colours, dose_suggestions_for_patients
from anticoag.inr import clinic_zone, monitoring_policy
from anticoag.models import InrReading, WarfarinDose
from patients.choices import Role
from scheduling.missed_tests import DNA_ESCALATED_RULE, DNA_RECALL_RULE
from scheduling.models import FollowUp, FollowUpKind, FollowUpStatus

from .dashboard import clinic_days, due_q, inr_shown, inr_words, overdue_text, user_clinics

#: Results older than this are not "awaiting a decision" on Today any more (they stay on the patient page).
AWAITING_DAYS = 30
#: At most this many rows per part (the oldest first for tests, critical first for results).
ROWS_LIMIT = 300


def today_list(*, user, mine: bool, clinic_id: int | None = None) -> dict[str, Any]:
    """Today's rows for the user's clinics (or one of them), for the user's own patients when ``mine``."""
    clinics = user_clinics(user)
    if clinic_id is not None:
        clinics = [clinic for clinic in clinics if clinic.pk == clinic_id]
    days = clinic_days(clinics)
    result: dict[str, Any] = {
        "clinics": clinics,
        "days": days,
        "results": [],
        "tests": [],
        "procedure_steps": [],
        "mine": mine,
    }
    if not days:
        return result
    clinic_ids = [clinic.pk for clinic in clinics]
    patients = Q(patient__clinic_id__in=clinic_ids, patient__active=True)
    if mine:
        patients &= Q(patient__primary_nurse=user)

    # --- INR tests due today and overdue ------------------------------------------------------------------
    today_by_clinic = {day.clinic.pk: day.today for day in days}
    tests = (
        FollowUp.objects.filter(
            patients,
            due_q("overdue", days) | due_q("today", days),
            kind=FollowUpKind.INR_TEST,
            status=FollowUpStatus.SCHEDULED,
        )
        .select_related("patient__clinic")
        .order_by("due_on", "pk")[:ROWS_LIMIT]
    )
    for item in tests:
        today = today_by_clinic[item.patient.clinic_id]
        result["tests"].append(
            {
                "item": item,
                "patient": item.patient,
                "when": overdue_text(item.due_on, today),
                "overdue": item.due_on < today,
                "recall": item.rule in (DNA_RECALL_RULE, DNA_ESCALATED_RULE),
                "escalated": item.rule == DNA_ESCALATED_RULE,
                "url": reverse("admin:patients_patient_change", args=[item.patient_id]) + "#record-inr",
            }
        )

    # --- Procedure steps due today and overdue (reference §8: the INR check before, the restart after) ---------
    steps = (
        FollowUp.objects.filter(
            patients,
            due_q("overdue", days) | due_q("today", days),
            kind__in=[FollowUpKind.PROCEDURE_INR_CHECK, FollowUpKind.PROCEDURE_RESTART],
            status=FollowUpStatus.SCHEDULED,
        )
        .select_related("patient__clinic")
        .order_by("due_on", "pk")[:ROWS_LIMIT]
    )
    result["procedure_steps"] = [
        {
            "item": item,
            "patient": item.patient,
            "when": overdue_text(item.due_on, today_by_clinic[item.patient.clinic_id]),
            "overdue": item.due_on < today_by_clinic[item.patient.clinic_id],
            "url": reverse("admin:patients_patient_change", args=[item.patient_id]) + "#procedures",
        }
        for item in steps
    ]

    # --- Results awaiting a dosing decision ---------------------------------------------------------------
    latest = InrReading.objects.filter(patient=OuterRef("patient")).order_by("-drawn_at", "-pk").values("pk")[:1]
    readings = list(
        InrReading.objects.filter(patients, drawn_at__gte=timezone.now() - timedelta(days=AWAITING_DAYS))
        .filter(pk=Subquery(latest))
        .exclude(Exists(WarfarinDose.objects.filter(inr_reading=OuterRef("pk"))))
        .select_related("patient__clinic")
        .order_by("drawn_at", "pk")[:ROWS_LIMIT]
    )
    suggestions = dose_suggestions_for_patients(patients=[reading.patient for reading in readings])
    policy = monitoring_policy()
    colours: dict[int, dict[str, str]] = {}
    rows = []
    for reading in readings:
        patient = reading.patient
        alert = monitoring.critical_inr_alert(float(reading.value), bleeding=reading.bleeding, policy=policy)
        words, position = inr_words(reading.value)
        if patient.clinic_id not in colours:
            colours[patient.clinic_id] = clinic_tablet_colours(patient.clinic)
        rows.append(
            {
                "reading": reading,
                "patient": patient,
                "inr": inr_shown(reading.value),
                "inr_words": words,
                "position": position,
                "drawn_at": reading.drawn_at.astimezone(clinic_zone(patient.clinic)),
                "alert": alert,
                "critical": alert is not None,
                "suggestion": suggestions.get(patient.pk),
                "colours": colours[patient.clinic_id],
                "url": reverse("admin:patients_patient_change", args=[patient.pk]) + "#dosing",
                "decide_url": reverse("admin:patients_patient_dose_decide", args=[patient.pk]),
            }
        )
    # Critical results first, then the oldest first.
    rows.sort(key=lambda row: (not row["critical"], row["reading"].drawn_at))
    result["results"] = rows
    return result


def today_view(request: HttpRequest) -> TemplateResponse:
    """``/clinic/today/``: ``?scope=mine`` (the default for a nurse) or ``?scope=clinic``; ``?clinic=<id>``."""
    user = request.user
    if not (user.has_perm("scheduling.view_followup") and user.has_perm("anticoag.view_inrreading")):
        raise PermissionDenied
    is_nurse = user.groups.filter(name=Role.NURSE).exists()
    scope = request.GET.get("scope") or ("mine" if is_nurse else "clinic")
    if scope not in {"mine", "clinic"}:
        scope = "clinic"
    clinic_id = request.GET.get("clinic") or None
    try:
        clinic_id = int(clinic_id) if clinic_id else None
    except ValueError:
        clinic_id = None
    data = today_list(user=user, mine=scope == "mine", clinic_id=clinic_id)
    response = TemplateResponse(
        request,
        "clinic/today.html",
        {
            **admin.site.each_context(request),
            "title": "Today",
            "today": data,
            "scope": scope,
            "clinic_id": clinic_id,
            "can_decide": user.has_perm("anticoag.add_warfarindose"),
            "here": request.get_full_path(),
        },
    )
    response["Cache-Control"] = "no-store"
    return response
