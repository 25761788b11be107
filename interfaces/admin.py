"""The lab messages and their hold queue in the admin, scoped to the user's clinics.

The list opens on the hold queue (held messages, oldest first). A held message's page shows what it carries and
offers two decisions: match it to a patient (its results are stored then, through the same services as on
arrival) or reject it with a reason. A message of no known clinic is seen by administrators only.
"""

from __future__ import annotations

import zoneinfo

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from patients.admin import ClinicScopedAdmin
from patients.models import Clinic, Patient
from patients.scoping import clinic_ids_for

from . import hl7v2
from .models import AssigningAuthority, InboundMessage, MessageStatus
from .services import held_message_match, held_message_reject


@admin.register(AssigningAuthority)
class AssigningAuthorityAdmin(ClinicScopedAdmin):
    clinic_path = "clinic"
    list_display = ["name", "clinic"]
    search_fields = ["name"]


class QueueFilter(admin.SimpleListFilter):
    """The list opens on the hold queue (held messages); "All messages" and each status are a click away."""

    title = "queue"
    parameter_name = "queue"

    def lookups(self, request, model_admin):
        return [
            ("held", "Hold queue"),
            ("all", "All messages"),
            *[(s.value, s.label) for s in MessageStatus if s != "held"],
        ]

    def choices(self, changelist):
        value = self.value() or "held"
        for lookup, title in self.lookup_choices:
            yield {
                "selected": value == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        value = self.value() or "held"
        return queryset if value == "all" else queryset.filter(status=value)


class MatchForm(forms.Form):
    clinic = forms.ModelChoiceField(queryset=Clinic.objects.none(), required=False)
    mrn = forms.CharField(label="MRN", max_length=40, help_text="The patient's MRN in the clinic.")
    identity_confirmed = forms.BooleanField(
        required=False,
        label="I checked the patient's identity",
        help_text="Required when the message's date of birth is missing or differs from the patient's record.",
    )

    def __init__(self, *args, message: InboundMessage, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.message = message
        if message.clinic_id:
            del self.fields["clinic"]
        else:
            ids = clinic_ids_for(user)
            self.fields["clinic"].queryset = Clinic.objects.all() if ids is None else Clinic.objects.filter(pk__in=ids)
            self.fields["clinic"].required = True

    def clean(self) -> dict:
        data = super().clean()
        clinic = self.message.clinic or data.get("clinic")
        mrn = (data.get("mrn") or "").strip()
        if clinic and mrn:
            patient = Patient.objects.filter(clinic=clinic, mrn__iexact=mrn).select_related("clinic").first()
            if patient is None:
                self.add_error("mrn", f"No patient with MRN {mrn!r} in {clinic.name}.")
            data["patient"] = patient
        return data


class RejectForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="Why these results are not stored.")


@admin.register(InboundMessage)
class InboundMessageAdmin(ClinicScopedAdmin):
    clinic_path = "clinic"
    log_access = True  # a message's page shows what it says of a patient: who looked is logged
    mrn_search_path = "patient__mrn"
    list_display = ["received_at", "status", "hold_reason", "sending_facility", "control_id", "patient", "clinic"]
    list_display_links = ["received_at", "control_id"]
    list_filter = [QueueFilter, "hold_reason", "clinic"]
    list_select_related = ["patient", "clinic"]
    search_fields = ["control_id", "=patient__mrn"]
    search_help_text = "Message control id, or exact MRN."
    date_hierarchy = "received_at"
    fields = [
        "status",
        "hold_reason",
        "decision",
        "received_at",
        "sending_application",
        "sending_facility",
        "control_id",
        "message_type",
        "version",
        "clinic",
        "patient",
        "contents",
        "resolved_by",
        "resolved_at",
        "rejection_reason",
        "ack_sent",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # messages arrive through the listener

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # the message log is the interface's record

    def save_model(self, request, obj, form, change) -> None:
        pass  # every field is read-only: decisions go through the match and reject pages

    @staticmethod
    def _in_hold_queue(request: HttpRequest) -> bool:
        return request.GET.get(QueueFilter.parameter_name, "held") == "held"

    def get_ordering(self, request: HttpRequest):
        # The hold queue is worked oldest first; the message log reads newest first.
        return ["received_at", "pk"] if self._in_hold_queue(request) else ["-received_at", "-pk"]

    def changelist_view(self, request: HttpRequest, extra_context=None):
        if self._in_hold_queue(request):
            extra_context = {**(extra_context or {}), "title": "Hold queue: lab messages to match to a patient"}
        return super().changelist_view(request, extra_context)

    @admin.display(description="ACK sent")
    def ack_sent(self, message: InboundMessage) -> str:
        return format_html("<pre>{}</pre>", message.ack.replace("\r", "\n"))

    @admin.display(description="Decision")
    def decision(self, message: InboundMessage) -> str:
        if message.status != MessageStatus.HELD or message.pk is None:
            return "—"
        match = reverse("admin:interfaces_inboundmessage_match", args=[message.pk])
        reject = reverse("admin:interfaces_inboundmessage_reject", args=[message.pk])
        return format_html(
            '<a class="button" href="{}">Match to a patient</a> <a class="button" href="{}">Reject</a>', match, reject
        )

    @staticmethod
    def _zone(message: InboundMessage) -> zoneinfo.ZoneInfo:
        """The message's clinic's time zone (a time without offset is that clinic's); else the server's."""
        return zoneinfo.ZoneInfo(message.clinic.time_zone if message.clinic_id else settings.TIME_ZONE)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="What the message says")
    def contents(self, message: InboundMessage) -> str:
        try:
            parsed = hl7v2.parse_message(message.raw)
        except hl7v2.MessageRefused as refusal:
            return f"Not readable any more: {refusal.text}"
        zone = self._zone(message)
        ids = format_html_join(
            ", ",
            "{} (authority {})",
            ((pid.value, " / ".join(pid.authorities) or "none") for pid in parsed.patient_ids),
        )
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (o.position, o.loinc.name, o.value.normalize(), o.loinc.stored_unit,
                 f"{o.observed_in(zone).astimezone(zone):%Y-%m-%d %H:%M} ({zone.key})", o.abnormal_flags or "", o.status)
                for o in parsed.observations
            ),
        )  # fmt: skip
        dob = parsed.date_of_birth.isoformat() if parsed.date_of_birth else "missing"
        return format_html(
            "<p>PID-3: {}<br>PID-7 (date of birth): {}</p><table><thead><tr><th>OBX</th><th>test</th>"
            "<th>value</th><th>time</th><th>flags</th><th>status</th></tr></thead><tbody>{}</tbody></table>",
            ids,
            dob,
            rows,
        )

    # --- match and reject ------------------------------------------------------------------------------

    def get_urls(self):
        urls = super().get_urls()
        match = self.admin_site.admin_view(self.match_view)
        reject = self.admin_site.admin_view(self.reject_view)
        return [
            path("<int:pk>/match/", match, name="interfaces_inboundmessage_match"),
            path("<int:pk>/reject/", reject, name="interfaces_inboundmessage_reject"),
            *urls,
        ]

    def _held_message(self, request: HttpRequest, pk: int) -> InboundMessage:
        message = get_object_or_404(self.get_queryset(request), pk=pk)  # another clinic's message: 404
        if not self.has_change_permission(request, message):
            raise PermissionDenied
        return message

    def _resolve(self, request: HttpRequest, message: InboundMessage, form, action: str):
        context = {
            **self.admin_site.each_context(request),
            "title": f"{action} lab message {message.control_id}",
            "form": form,
            "message": message,
            "contents": self.contents(message),
            "received": f"{message.received_at.astimezone(self._zone(message)):%Y-%m-%d %H:%M} ({self._zone(message).key})",
            "opts": self.model._meta,
            "action": action,
        }
        return TemplateResponse(request, "admin/interfaces/inboundmessage/resolve.html", context)

    def _done(self, message: InboundMessage) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:interfaces_inboundmessage_change", args=[message.pk]))

    def match_view(self, request: HttpRequest, pk: int):
        message = self._held_message(request, pk)
        form = MatchForm(request.POST or None, message=message, user=request.user)
        if request.method == "POST" and form.is_valid():
            try:
                rows = held_message_match(
                    message=message,
                    patient=form.cleaned_data["patient"],
                    user=request.user,
                    identity_confirmed=form.cleaned_data["identity_confirmed"],
                )
            except ValidationError as exc:
                errors = exc.message_dict if hasattr(exc, "error_dict") else {None: exc.messages}
                for field_name, field_errors in errors.items():
                    form.add_error(field_name if field_name in form.fields else None, field_errors)
            else:
                stored = sum(1 for row in rows if row.stored)
                messages.success(
                    request, f"Matched to MRN {form.cleaned_data['patient'].mrn}: {stored} result(s) stored."
                )
                return self._done(message)
        return self._resolve(request, message, form, "Match")

    def reject_view(self, request: HttpRequest, pk: int):
        message = self._held_message(request, pk)
        form = RejectForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                held_message_reject(message=message, user=request.user, reason=form.cleaned_data["reason"])
            except ValidationError as exc:
                form.add_error(None, exc.messages)
            else:
                messages.success(request, "The message was rejected; its results were not stored.")
                return self._done(message)
        return self._resolve(request, message, form, "Reject")
