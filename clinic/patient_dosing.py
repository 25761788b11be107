"""The INR clinic's part of the patient page (issue 14): the dosing decision, the dosing letter, contacts.

* **Dosing decision**: the suggestion for the latest INR (weekly dose, change %, hold doses, next test date)
  and its week in tablets; accept it in one action, or change it with a reason
  (:func:`anticoag.dosing.dose_decide`). A change beyond the clinic's guardrail needs a clinician (a user
  who may change dose records).
* **Dosing letter**: the patient's calendar until the next INR, as a printable page and a PDF
  (:mod:`clinic.letters`).
* **Contacts**: the patient's phone and preferred channel, and the contact log.
* **INR history**: each reading with the dose given after it.

Routed by :class:`clinic.admin.PatientPageAdmin` (``patient_dosing_urls``); its page context comes from
:func:`patient_dosing_context`, its template is ``clinic/patient_dosing.html``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from anticoag.dosing import clinic_tablet_colours, dose_decide, dose_suggestion_for_patient
from anticoag.inr import clinic_today, clinic_zone, inr_position
from anticoag.models import InrReading, WarfarinDose
from patients.choices import ContactKind, ContactOutcome
from patients.models import Patient, PatientContact

from . import letters
from .dashboard import inr_shown
from .views import DATE_INPUT, add_service_errors

#: Rows of the INR history table on the patient page.
HISTORY_ROWS = 20
#: Rows of the contact log on the patient page.
CONTACT_ROWS = 10


class DoseDecisionForm(forms.Form):
    """Change the suggested dose: every field starts at the suggestion; a departure needs a reason."""

    weekly_dose_mg = forms.DecimalField(
        label="Weekly dose (mg)", min_value=0, max_value=175, decimal_places=1, max_digits=5
    )
    hold_doses = forms.IntegerField(label="Doses to hold", min_value=0, max_value=7, initial=0)
    next_inr_on = forms.DateField(label="Next INR test", widget=forms.DateInput(attrs=DATE_INPUT))
    change_reason = forms.CharField(
        label="Reason for the change",
        required=False,
        max_length=500,
        widget=forms.TextInput(attrs={"size": 40}),
        help_text="Required when the decision departs from the suggestion.",
    )


class ContactForm(forms.Form):
    """One entry of the contact log."""

    channel = forms.ChoiceField(label="Contact", choices=ContactKind.choices, initial=ContactKind.CALL)
    outcome = forms.ChoiceField(label="Outcome", choices=ContactOutcome.choices)
    note = forms.CharField(label="Note", required=False, max_length=500, widget=forms.TextInput(attrs={"size": 40}))


def _may_exceed_guardrail(request: HttpRequest) -> bool:
    # Clinicians may change dose records; nurses may only add them (patients/roles.py).
    return request.user.has_perm("anticoag.change_warfarindose")


def _history(patient: Patient) -> list[dict[str, Any]]:
    """The latest INR readings, each with the dose decided after it (two queries)."""
    zone = clinic_zone(patient.clinic)
    readings = list(InrReading.objects.filter(patient=patient).order_by("-drawn_at", "-pk")[:HISTORY_ROWS])
    doses: dict[int, WarfarinDose] = {}
    for dose in WarfarinDose.objects.filter(inr_reading__in=readings).select_related("decided_by").order_by("pk"):
        doses[dose.inr_reading_id] = dose  # the latest decision for a reading wins
    return [
        {
            "reading": reading,
            "drawn_at": reading.drawn_at.astimezone(zone),
            "position": inr_position(reading.value),
            "inr": inr_shown(reading.value),
            "dose": doses.get(reading.pk),
        }
        for reading in readings
    ]


def patient_dosing_context(
    request: HttpRequest, patient: Patient, context: dict, *, advice: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The template context of ``clinic/patient_dosing.html`` for the patient page (``advice``: the patient's
    INR advice as at now, when the page has read it already)."""
    suggestion = dose_suggestion_for_patient(patient=patient, advice=advice)
    can_decide = request.user.has_perm("anticoag.add_warfarindose")
    form = context.get("dose_form")
    if form is None and suggestion is not None and can_decide:
        form = DoseDecisionForm(
            prefix="dose",
            initial={
                "weekly_dose_mg": suggestion["suggested_weekly_mg"] or suggestion["current_weekly_mg"],
                "hold_doses": suggestion["hold_doses"],
                "next_inr_on": suggestion["next_test_on"],
            },
        )
    latest_dose = (
        WarfarinDose.objects.filter(patient=patient).select_related("decided_by").order_by("-starts_on", "-pk").first()
    )
    can_contact = request.user.has_perm("patients.add_patientcontact")
    return {
        "dosing": {
            "suggestion": suggestion,
            "latest_inr_shown": inr_shown(Decimal(suggestion["latest_inr"])) if suggestion else None,
            "colours": clinic_tablet_colours(patient.clinic),
            "can_decide": can_decide,
            "form": form if can_decide else None,
            "accept_url": reverse("admin:patients_patient_dose_decide", args=[patient.pk]),
            "latest_dose": latest_dose,
            "letter_url": reverse("admin:patients_patient_dosing_letter", args=[patient.pk]),
            "letter_pdf_url": reverse("admin:patients_patient_dosing_letter_pdf", args=[patient.pk]),
            "history": _history(patient),
            "contacts": list(
                PatientContact.objects.filter(patient=patient).select_related("contacted_by")[:CONTACT_ROWS]
            ),
            "contact_form": (context.get("contact_form") or ContactForm(prefix="contact")) if can_contact else None,
            "contact_url": reverse("admin:patients_patient_contact_add", args=[patient.pk]),
            "zone": clinic_zone(patient.clinic),
        }
    }


# ---------------------------------------------------------------------------------------------------------------
# Views (routed by PatientPageAdmin)
# ---------------------------------------------------------------------------------------------------------------


def _patient(model_admin, request: HttpRequest, object_id: str) -> Patient:
    return get_object_or_404(model_admin.get_queryset(request), pk=unquote(object_id))


def dose_decide_view(model_admin, request: HttpRequest, object_id: str):
    """POST: ``accept`` records the suggestion as it stands; otherwise the form's values (change)."""
    patient = _patient(model_admin, request, object_id)
    page_url = reverse("admin:patients_patient_change", args=[patient.pk])
    if request.method != "POST":
        return HttpResponseRedirect(page_url + "#dosing")
    if not request.user.has_perm("anticoag.add_warfarindose"):
        raise PermissionDenied
    next_url = request.POST.get("next") or ""
    try:
        if "accept" in request.POST:
            dose = dose_decide(
                patient=patient, decided_by=request.user, may_exceed_guardrail=_may_exceed_guardrail(request)
            )
        else:
            form = DoseDecisionForm(request.POST, prefix="dose")
            if not form.is_valid():
                messages.error(request, "The dose was not recorded: see the form below.")
                return model_admin._redisplay(request, object_id, {"dose_form": form})
            try:
                dose = dose_decide(
                    patient=patient,
                    decided_by=request.user,
                    weekly_dose_mg=form.cleaned_data["weekly_dose_mg"],
                    hold_doses=form.cleaned_data["hold_doses"],
                    next_inr_on=form.cleaned_data["next_inr_on"],
                    reason=form.cleaned_data["change_reason"],
                    may_exceed_guardrail=_may_exceed_guardrail(request),
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
                messages.error(request, "The dose was not recorded: see the form below.")
                return model_admin._redisplay(request, object_id, {"dose_form": form})
    except ValidationError as exc:
        messages.error(
            request, "The suggestion was not recorded: " + " ".join(m for ms in exc.message_dict.values() for m in ms)
        )
        return HttpResponseRedirect(page_url + "#dosing")
    messages.success(
        request,
        f"Dose recorded: {dose.weekly_dose_mg} mg a week"
        + (f", hold {dose.hold_doses} dose(s)" if dose.hold_doses else "")
        + (f"; next INR {dose.next_inr_on.isoformat()}" if dose.next_inr_on else "")
        + ". Print the patient's letter.",
    )
    if next_url.startswith("/") and not next_url.startswith("//"):
        return HttpResponseRedirect(next_url)
    return HttpResponseRedirect(page_url + "#dosing")


def contact_add_view(model_admin, request: HttpRequest, object_id: str):
    patient = _patient(model_admin, request, object_id)
    page_url = reverse("admin:patients_patient_change", args=[patient.pk])
    if request.method != "POST":
        return HttpResponseRedirect(page_url + "#contacts")
    if not request.user.has_perm("patients.add_patientcontact"):
        raise PermissionDenied
    form = ContactForm(request.POST, prefix="contact")
    if not form.is_valid():
        messages.error(request, "The contact was not logged: see the form below.")
        return model_admin._redisplay(request, object_id, {"contact_form": form})
    contact = patient_contact_log(patient=patient, contacted_by=request.user, **form.cleaned_data)
    messages.success(request, f"Logged: {contact.get_channel_display()}, {contact.get_outcome_display().lower()}.")
    return HttpResponseRedirect(page_url + "#contacts")


def patient_contact_log(
    *, patient: Patient, channel: str, outcome: str, note: str = "", contacted_by, contacted_at: datetime | None = None
) -> PatientContact:
    """Log a contact with the patient (validated; audited through auditlog)."""
    contact = PatientContact(
        patient=patient,
        channel=channel,
        outcome=outcome,
        note=note or "",
        contacted_at=contacted_at or timezone.now(),
        contacted_by=contacted_by,
    )
    contact.full_clean()
    with transaction.atomic():
        contact.save()
    return contact


def _letter_dose(patient: Patient) -> WarfarinDose | None:
    return WarfarinDose.objects.filter(patient=patient).exclude(schedule={}).order_by("-starts_on", "-pk").first()


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


def dosing_letter_view(model_admin, request: HttpRequest, object_id: str):
    """The patient's dosing letter as a printable page."""
    patient = _patient(model_admin, request, object_id)
    dose = _letter_dose(patient)
    if dose is None:
        messages.error(request, "There is no dose with a tablet schedule to print yet: record the dose first.")
        return HttpResponseRedirect(reverse("admin:patients_patient_change", args=[patient.pk]) + "#dosing")
    letter = letters.dosing_letter(patient=patient, dose=dose, today=clinic_today(patient.clinic))
    response = TemplateResponse(
        request,
        "clinic/dosing_letter.html",
        {
            "letter": letter,
            "letter_colours": clinic_tablet_colours(patient.clinic),
            "pdf_url": reverse("admin:patients_patient_dosing_letter_pdf", args=[patient.pk]),
            "back_url": reverse("admin:patients_patient_change", args=[patient.pk]) + "#dosing",
        },
    )
    return _no_store(response)


def dosing_letter_pdf_view(model_admin, request: HttpRequest, object_id: str):
    """The patient's dosing letter as a PDF download."""
    patient = _patient(model_admin, request, object_id)
    dose = _letter_dose(patient)
    if dose is None:
        messages.error(request, "There is no dose with a tablet schedule to print yet: record the dose first.")
        return HttpResponseRedirect(reverse("admin:patients_patient_change", args=[patient.pk]) + "#dosing")
    today = clinic_today(patient.clinic)
    letter = letters.dosing_letter(patient=patient, dose=dose, today=today)
    response = HttpResponse(letters.dosing_letter_pdf(letter), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="dosing-letter-{today.isoformat()}.pdf"'
    return _no_store(response)


def patient_dosing_urls(model_admin) -> list:
    """The URLs of this part of the patient page, under the patient's admin URL."""
    wrap = model_admin.admin_site.admin_view

    def bind(view):
        def bound(request, object_id):
            return view(model_admin, request, object_id)

        return wrap(bound)

    return [
        path("<path:object_id>/dose/", bind(dose_decide_view), name="patients_patient_dose_decide"),
        path("<path:object_id>/contacts/add/", bind(contact_add_view), name="patients_patient_contact_add"),
        path("<path:object_id>/dosing-letter/", bind(dosing_letter_view), name="patients_patient_dosing_letter"),
        path(
            "<path:object_id>/dosing-letter.pdf",
            bind(dosing_letter_pdf_view),
            name="patients_patient_dosing_letter_pdf",
        ),
    ]
