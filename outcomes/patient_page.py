"""The patient page's "Outcomes and events" section: its context (a fixed number of queries) and the review
form it posts (to ``admin:outcomes_outcomeassessment_record``).

Called by one line from the patient page's view; rendered by ``outcomes/patient_page.html``, included by one
line in the page's template.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.urls import reverse
from django.utils.http import urlencode

from anticoag.inr import clinic_today
from patients.models import Patient
from scheduling.models import FollowUp, FollowUpKind, FollowUpStatus

from .forms import OutcomeReviewForm, timepoint_of
from .models import ClinicalEvent, OutcomeAssessment, SinusRecanalization
from .services import outcome_assessment_record


def open_reviews(patient: Patient) -> list[FollowUp]:
    return list(
        FollowUp.objects.filter(
            patient=patient, kind=FollowUpKind.OUTCOME_REVIEW, status=FollowUpStatus.SCHEDULED
        ).order_by("due_on", "pk")
    )


def outcomes_page_context(*, request: HttpRequest, patient: Patient, context: dict | None = None) -> dict[str, Any]:
    """Reviews done and due, events with their classification, per-sinus recanalization. Five queries."""
    context = context or {}
    today = clinic_today(patient.clinic)
    reviews = list(OutcomeAssessment.objects.filter(patient=patient).order_by("-assessed_on", "-pk")[:50])
    events = list(ClinicalEvent.objects.filter(patient=patient).order_by("-occurred_on", "-pk")[:50])
    sinus_results = list(
        SinusRecanalization.objects.filter(follow_up__patient=patient)
        .select_related("follow_up")
        .order_by("-follow_up__completed_on", "sinus")[:100]
    )
    due = open_reviews(patient)
    section: dict[str, Any] = {
        "reviews": reviews,
        "events": events,
        "sinus_results": sinus_results,
        "due_reviews": due,
        "today": today,
    }
    user = request.user
    if due and user.has_perm("outcomes.add_outcomeassessment"):
        section["form"] = context.get("outcome_form") or OutcomeReviewForm(items=due, today=today)
        section["action"] = reverse("admin:outcomes_outcomeassessment_record", args=[patient.pk])
    if user.has_perm("outcomes.add_clinicalevent"):
        section["event_add_url"] = (
            reverse("admin:outcomes_clinicalevent_add") + "?" + urlencode({"patient": patient.pk})
        )
    return section


def record_review(*, request: HttpRequest, patient: Patient) -> tuple[OutcomeReviewForm, OutcomeAssessment | None]:
    """Validate the posted review and record it; returns (form, review or None). Errors are on the fields."""
    today = clinic_today(patient.clinic)
    form = OutcomeReviewForm(request.POST, items=open_reviews(patient), today=today)
    if not form.is_valid():
        return form, None
    data = form.cleaned_data
    item = form.items[data["review"]]
    try:
        assessment = outcome_assessment_record(
            episode=item.episode,
            timepoint=timepoint_of(item),
            assessed_on=data["assessed_on"],
            mrs=data["mrs"],
            seizures_since_last_review=data["seizures_since_last_review"],
            hit6_total=data["hit6_total"],
            papilledema=data["papilledema"],
            visual_fields=data["visual_fields"],
            back_to_work=data["back_to_work"],
            note=data["note"],
            user=request.user,
        )
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            for message in messages:
                form.add_error(name if name in form.fields else None, message)
        return form, None
    return form, assessment
