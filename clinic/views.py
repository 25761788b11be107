"""Staff pages in the admin (issue #7): forms and views behind the patient page and the work list actions.

The admin classes in :mod:`clinic.admin` route to these. Every write goes through the services the API
uses (:func:`anticoag.inr.inr_reading_record`, :func:`scheduling.follow_ups.follow_up_complete`,
:func:`clinic.work_list.follow_up_reschedule`), so a refusal names the same field with the same words,
and the forms show it next to that field.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from anticoag.admin import inr_label
from anticoag.inr import clinic_today, clinic_zone, inr_reading_record
from anticoag.models import InrSource
from patients.models import Patient
from scheduling.follow_ups import IMAGING_KINDS, follow_up_complete
from scheduling.models import FollowUp, FollowUpKind, Recanalization

from .work_list import follow_up_reschedule

#: A bulk action handles at most this many items at once (the intermediate page lists them all).
BULK_LIMIT = 200

DATE_INPUT = {"type": "date"}


def add_service_errors(form: forms.Form, error: ValidationError, *, rename: dict[str, str] | None = None) -> None:
    """Put a service's ``ValidationError`` on the form: a field it names gets the message beside it."""
    rename = rename or {}
    for name, messages_ in error.message_dict.items():
        field = rename.get(name, name)
        for message in messages_:
            form.add_error(field if field in form.fields else None, message)


# ---------------------------------------------------------------------------------------------------------------
# Patient page: record an INR, record a follow-up result
# ---------------------------------------------------------------------------------------------------------------


class RecordInrForm(forms.Form):
    """One INR reading, entered on the patient page. The time is the clinic's wall clock."""

    drawn_at = forms.DateTimeField(
        label="Drawn at",
        help_text="Date and time of the blood draw, clinic time.",
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    value = forms.CharField(
        label="INR",
        max_length=8,
        help_text="For example 2.4 (0.5–20).",
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off", "size": 6}),
    )
    source = forms.ChoiceField(label="Source", choices=InrSource.choices, initial=InrSource.POINT_OF_CARE)
    bleeding = forms.BooleanField(label="Bleeding reported", required=False)
    note = forms.CharField(label="Note", required=False, max_length=500, widget=forms.TextInput(attrs={"size": 30}))

    def clean_value(self) -> str:
        # A decimal comma, as typed on many keyboards; the service checks the number itself.
        return self.cleaned_data["value"].strip().replace(",", ".")


def record_inr_form(*, patient: Patient, data=None) -> RecordInrForm:
    now = timezone.now().astimezone(clinic_zone(patient.clinic))
    return RecordInrForm(data, prefix="inr", initial={"drawn_at": now.strftime("%Y-%m-%dT%H:%M")})


def record_inr(*, request: HttpRequest, patient: Patient) -> tuple[RecordInrForm, Any]:
    """Validate and store the reading; returns (form, reading or None). Errors are on the form's fields."""
    zone = clinic_zone(patient.clinic)
    with timezone.override(zone):  # the typed time is clinic time
        form = record_inr_form(patient=patient, data=request.POST)
        valid = form.is_valid()
    if not valid:
        return form, None
    data = form.cleaned_data
    try:
        reading = inr_reading_record(
            patient=patient,
            drawn_at=data["drawn_at"],
            value=data["value"],
            source=data["source"],
            bleeding=data["bleeding"],
            entered_by=request.user,
            note=data["note"],
        )
    except ValidationError as exc:
        add_service_errors(form, exc)
        return form, None
    return form, reading


def inr_recorded_message(reading, next_item: FollowUp | None) -> str:
    drawn = timezone.localtime(reading.drawn_at, clinic_zone(reading.patient.clinic))
    text = f"INR {inr_label(reading.value)} of {drawn:%Y-%m-%d %H:%M} recorded."
    if next_item is not None:
        text += f" Next INR test due {next_item.due_on.isoformat()}."
    return text


class CompleteFollowUpForm(forms.Form):
    """The result of one follow-up item, recorded in place on the patient page."""

    completed_on = forms.DateField(label="Done on", widget=forms.DateInput(attrs=DATE_INPUT, format="%Y-%m-%d"))
    recanalization = forms.ChoiceField(
        label="Recanalization", choices=[("", "—"), *Recanalization.choices], required=False
    )
    result_note = forms.CharField(label="Note", required=False, max_length=400)

    def __init__(self, *args, item: FollowUp, today: date, **kwargs) -> None:
        kwargs.setdefault("prefix", f"fu{item.pk}")
        kwargs.setdefault("initial", {"completed_on": today})
        super().__init__(*args, **kwargs)
        self.item = item
        if item.kind not in IMAGING_KINDS:
            del self.fields["recanalization"]
        elif item.kind == FollowUpKind.VENOUS_IMAGING:
            self.fields["recanalization"].required = True
            self.fields["recanalization"].choices = [("", "— choose —"), *Recanalization.choices]


def complete_follow_up(*, request: HttpRequest, item: FollowUp, today: date) -> tuple[CompleteFollowUpForm, list]:
    """Validate and mark done; returns (form, follow-ons or None)."""
    form = CompleteFollowUpForm(request.POST, item=item, today=today)
    if not form.is_valid():
        return form, None
    try:
        created = follow_up_complete(
            follow_up=item,
            completed_on=form.cleaned_data["completed_on"],
            recanalization=form.cleaned_data.get("recanalization", ""),
            result_note=form.cleaned_data["result_note"],
            user=request.user,
        )
    except ValidationError as exc:
        add_service_errors(form, exc)
        return form, None
    return form, created


def done_message(item: FollowUp, created: list[FollowUp]) -> str:
    result = f" ({item.get_recanalization_display().lower()})" if item.recanalization else ""
    text = f"{item.get_kind_display()} for {item.patient} marked done on {item.completed_on.isoformat()}{result}."
    if created:
        text += " Scheduled next: " + "; ".join(f"{c.get_kind_display()} due {c.due_on.isoformat()}" for c in created)
        text += "."
    return text


# ---------------------------------------------------------------------------------------------------------------
# Work list bulk actions: mark done with result, reschedule with reason (intermediate pages)
# ---------------------------------------------------------------------------------------------------------------


class BulkDoneForm(forms.Form):
    completed_on = forms.DateField(label="Done on", widget=forms.DateInput(attrs=DATE_INPUT, format="%Y-%m-%d"))
    result_note = forms.CharField(label="Note (for every item)", required=False, max_length=400)

    def __init__(self, *args, items: list[FollowUp], today: date, **kwargs) -> None:
        kwargs.setdefault("initial", {"completed_on": today})
        super().__init__(*args, **kwargs)
        self.items = items
        for item in items:
            if item.kind in IMAGING_KINDS:
                required = item.kind == FollowUpKind.VENOUS_IMAGING
                self.fields[f"recanalization_{item.pk}"] = forms.ChoiceField(
                    label=f"Recanalization: {item.patient} ({item.get_kind_display()}, due {item.due_on.isoformat()})",
                    choices=[("", "— choose —" if required else "—"), *Recanalization.choices],
                    required=required,
                )

    def recanalization_for(self, item: FollowUp) -> str:
        return self.cleaned_data.get(f"recanalization_{item.pk}", "")

    def item_fields(self):
        return [self[name] for name in self.fields if name.startswith("recanalization_")]


class RescheduleForm(forms.Form):
    due_on = forms.DateField(label="New due date", widget=forms.DateInput(attrs=DATE_INPUT, format="%Y-%m-%d"))
    reason = forms.CharField(
        label="Reason",
        max_length=300,
        help_text="Recorded in the item's note and the audit log.",
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
    )


class _Refused(Exception):
    """Raised inside the bulk transaction to undo every item when one was refused."""


def _apply_all(items: list[FollowUp], apply) -> dict[int, dict[str, list[str]]]:
    """Apply to every item or to none: returns the refusals per item id (empty when all went through)."""
    errors: dict[int, dict[str, list[str]]] = {}
    try:
        with transaction.atomic():
            for item in items:
                try:
                    with transaction.atomic():
                        apply(item)
                except ValidationError as exc:
                    errors[item.pk] = exc.message_dict
            if errors:
                raise _Refused
    except _Refused:
        pass
    return errors


def _bulk_page(
    request: HttpRequest, model_admin, *, template: str, title: str, action: str, items, form, errors
) -> HttpResponse:
    rows = [
        {
            "item": item,
            "errors": [f"{k.replace('_', ' ')}: {m}" for k, ms in errors.get(item.pk, {}).items() for m in ms],
        }
        for item in items
    ]
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": model_admin.model._meta,
        "rows": rows,
        "form": form,
        "action": action,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "refused": bool(errors),
    }
    return TemplateResponse(request, template, context)


def _selected(model_admin, request: HttpRequest, queryset) -> list[FollowUp] | None:
    items = list(
        queryset.select_related("patient__clinic", "patient__primary_nurse").order_by("due_on", "pk")[: BULK_LIMIT + 1]
    )
    if len(items) > BULK_LIMIT:
        model_admin.message_user(request, f"Select at most {BULK_LIMIT} items at once.", messages.ERROR)
        return None
    return items


def bulk_mark_done(model_admin, request: HttpRequest, queryset) -> HttpResponse | None:
    """Admin action: an intermediate page with the date, one recanalization per imaging item and a note."""
    items = _selected(model_admin, request, queryset)
    if items is None:
        return None
    today = clinic_today(items[0].patient.clinic) if items else timezone.localdate()
    form = BulkDoneForm(request.POST if "apply" in request.POST else None, items=items, today=today)
    errors: dict[int, dict[str, list[str]]] = {}
    if form.is_bound and form.is_valid():
        done: list[tuple[FollowUp, list]] = []

        def apply(item: FollowUp) -> None:
            created = follow_up_complete(
                follow_up=item,
                completed_on=form.cleaned_data["completed_on"],
                recanalization=form.recanalization_for(item),
                result_note=form.cleaned_data["result_note"],
                user=request.user,
            )
            done.append((item, created))

        errors = _apply_all(items, apply)
        if not errors:
            follow_ons = sum(len(created) for _, created in done)
            text = f"{len(done)} item(s) marked done on {form.cleaned_data['completed_on'].isoformat()}."
            if follow_ons:
                text += f" {follow_ons} follow-on item(s) scheduled."
            model_admin.message_user(request, text, messages.SUCCESS)
            return None
    return _bulk_page(
        request,
        model_admin,
        template="admin/scheduling/followup/bulk_done.html",
        title="Mark follow-ups done",
        action="mark_done",
        items=items,
        form=form,
        errors=errors,
    )


def bulk_reschedule(model_admin, request: HttpRequest, queryset) -> HttpResponse | None:
    """Admin action: an intermediate page with the new date and the reason (required)."""
    items = _selected(model_admin, request, queryset)
    if items is None:
        return None
    form = RescheduleForm(request.POST if "apply" in request.POST else None)
    errors: dict[int, dict[str, list[str]]] = {}
    if form.is_bound and form.is_valid():
        errors = _apply_all(
            items,
            lambda item: follow_up_reschedule(
                follow_up=item,
                due_on=form.cleaned_data["due_on"],
                reason=form.cleaned_data["reason"],
                user=request.user,
            ),
        )
        if not errors:
            text = f"{len(items)} item(s) rescheduled to {form.cleaned_data['due_on'].isoformat()}; reason recorded."
            model_admin.message_user(request, text, messages.SUCCESS)
            return None
    return _bulk_page(
        request,
        model_admin,
        template="admin/scheduling/followup/bulk_reschedule.html",
        title="Reschedule follow-ups",
        action="reschedule",
        items=items,
        form=form,
        errors=errors,
    )
