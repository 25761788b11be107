"""The staff pages in the admin: follow-ups (each patient's work list), the reminder outbox (status, errors,
resend), the patient page and the admin home's dashboard. The models live in ``scheduling`` and ``patients``;
the pages live here because they read all three apps.

Both are scoped to the user's clinics. The outbox shows no patient data beyond what the e-mails carry.

Issue #7 adds the staff pages that read all three apps: "My work" (``followup/my-work/``: the logged-in
nurse's patients' items overdue or due within 7 days, with the bulk actions "mark done with result" and
"reschedule with reason"), and the patient page (the Patient admin's change view, extended with the clinical
picture, an INR form and in-place follow-up results). The dashboard on the admin home is
``admin/clinic/index.html`` (set as the admin site's index template below) with ``{% clinic_dashboard %}``
(``clinic.templatetags.clinic_staff``).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode

from anticoag.admin import render_proposal
from anticoag.inr import clinic_today
from anticoag.patient_page import current_medicines_context
from outcomes.patient_page import outcomes_page_context
from patients.admin import ClinicScopedAdmin, PatientAdmin
from patients.choices import Role
from patients.clinic_time import RecordTimeZoneAdminMixin, clinic_datetime
from patients.models import Patient
from scheduling.models import FollowUp, FollowUpKind, FollowUpStatus, Reminder, ReminderStatus

from . import dashboard, patient_list, views
from .patient_dosing import patient_dosing_context, patient_dosing_urls
from .patient_list import PatientListColumns
from .procedure_page import procedure_patient_page_context
from .work_list import clinician_work


class MineFilter(admin.SimpleListFilter):
    """ "My patients": items of the patients whose primary nurse or responsible clinician is the logged-in user."""

    title = "whose patients"
    parameter_name = "mine"

    def lookups(self, request, model_admin):
        return [("1", "My patients")]

    def queryset(self, request, queryset):
        if self.value() == "1":  # a nurse's patients, or a clinician's (they are responsible for them)
            user = request.user
            return queryset.filter(Q(patient__primary_nurse=user) | Q(patient__responsible_clinician=user))
        return queryset


class DueFilter(admin.SimpleListFilter):
    """Open items by when they are due, each clinic's today in its own time zone (the digest's sections)."""

    title = "due"
    parameter_name = "due"

    def lookups(self, request, model_admin):
        return [
            ("due", "Overdue, today and next 7 days"),
            ("overdue", "Overdue"),
            ("today", "Due today"),
            ("week", "Due in the next 7 days"),
        ]

    def queryset(self, request, queryset):
        if self.value() not in {"due", "overdue", "today", "week"}:
            return queryset
        days = dashboard.clinic_days(dashboard.user_clinics(request.user))
        if not days:
            return queryset.none()
        return queryset.filter(
            dashboard.due_q(self.value(), days), status=FollowUpStatus.SCHEDULED, patient__active=True
        )


@admin.register(FollowUp)
class FollowUpAdmin(ClinicScopedAdmin):
    """Every follow-up, and each nurse's work list ("My work": her patients' items overdue or due within 7 days)
    with bulk actions: mark done with the result, reschedule with a reason."""

    clinic_path = "patient__clinic"
    list_display = ["due_marker", "kind", "patient_link", "patient_name", "window_end_on", "status", "completed_on"]
    list_display_links = ["kind"]
    list_select_related = ["patient__clinic", "patient__primary_nurse"]
    # "Related only": the filter offers the clinics and nurses of the rows the user may see, not every user.
    list_filter = [
        MineFilter,
        DueFilter,
        ("patient__clinic", admin.RelatedOnlyFieldListFilter),
        "status",
        "kind",
        ("patient__primary_nurse", admin.RelatedOnlyFieldListFilter),
    ]
    actions = ["mark_done", "reschedule"]
    mrn_search_path = "patient__mrn"
    search_fields = ["=patient__mrn"]
    search_help_text = "Exact MRN."
    date_hierarchy = "due_on"
    autocomplete_fields = ["patient"]
    raw_id_fields = ["episode"]
    readonly_fields = ["rule", "source", "key", "created_at", "updated_at"]
    show_full_result_count = False
    list_per_page = 100
    fieldsets = [
        (None, {"fields": ["patient", "episode", "kind", ("due_on", "window_end_on"), "status"]}),
        ("Result", {"fields": ["completed_on", "recanalization", "result_note"]}),
        ("Origin", {"fields": ["rule", "source", "key", "created_at", "updated_at"]}),
    ]

    @admin.display(description="Due", ordering="due_on")
    def due_marker(self, item: FollowUp) -> str:
        """The date, and for an open item its lateness in words (not only in colour)."""
        if item.status != FollowUpStatus.SCHEDULED:
            return item.due_on.isoformat()
        today = clinic_today(item.patient.clinic)
        words = dashboard.overdue_text(item.due_on, today)
        if item.due_on < today:
            return format_html('<span class="clinic-overdue">⚠ {} — {}</span>', item.due_on.isoformat(), words)
        return format_html("{} <small>({})</small>", item.due_on.isoformat(), words)

    @admin.display(description="Patient", ordering="patient__mrn")
    def patient_link(self, item: FollowUp) -> str:
        url = reverse("admin:patients_patient_change", args=[item.patient_id])
        return format_html('<a href="{}">{}</a>', url, item.patient)

    @admin.display(description="Name", ordering="patient__family_name")
    def patient_name(self, item: FollowUp) -> str:
        return f"{item.patient.family_name}, {item.patient.given_name}"

    @admin.action(description="Mark done with result…", permissions=["change"])
    def mark_done(self, request: HttpRequest, queryset: QuerySet[FollowUp]):
        return views.bulk_mark_done(self, request, queryset)

    @admin.action(description="Reschedule with reason…", permissions=["change"])
    def reschedule(self, request: HttpRequest, queryset: QuerySet[FollowUp]):
        return views.bulk_reschedule(self, request, queryset)

    def get_urls(self):
        view = self.admin_site.admin_view(self.my_work_view)
        return [path("my-work/", view, name="scheduling_followup_my_work"), *super().get_urls()]

    def my_work_view(self, request: HttpRequest):
        """ "My work". A nurse: her patients' items, overdue and due within 7 days, oldest first (the list).
        A clinician (who confirms plans): plans to confirm or review and their patients' escalated items."""
        if not self.has_view_permission(request):
            raise PermissionDenied("Your role does not include the follow-up lists.")
        query = urlencode({"mine": "1", "due": "due"})
        list_url = reverse("admin:scheduling_followup_changelist") + "?" + query
        if not request.user.has_perm("anticoag.add_plandecision"):
            return HttpResponseRedirect(list_url)
        context = {
            **self.admin_site.each_context(request),
            "title": "My work",
            "opts": self.model._meta,
            "work": clinician_work(user=request.user),
            "list_url": list_url,
        }
        return TemplateResponse(request, "admin/scheduling/followup/my_work_clinician.html", context)


@admin.register(Reminder)
class ReminderAdmin(RecordTimeZoneAdminMixin, ClinicScopedAdmin):
    """The outbox. Rows are written by the sweep and the send task; staff only look, and resend."""

    list_display = ["idempotency_key", "kind", "recipient", "status", "attempts", "next_attempt_local", "sent_local"]
    list_filter = ["status", "kind", ("clinic", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["recipient"]
    search_help_text = "Recipient address (or part of it)."
    list_select_related = ["clinic"]
    show_full_result_count = False
    actions = ["resend"]
    fields = [
        "clinic",
        "kind",
        "reason",
        "recipient",
        "recipient_user",
        "follow_ups",
        "inr_reading",
        "status",
        "attempts",
        "next_attempt_at",
        "lease_until",
        "enqueues",
        "lost_sends",
        "superseded_by",
        "sent_at",
        "message_id",
        "last_error",
        "idempotency_key",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields

    @admin.display(description="Next attempt (clinic time)", ordering="next_attempt_at")
    def next_attempt_local(self, reminder: Reminder) -> str:
        return clinic_datetime(reminder.next_attempt_at, reminder.clinic)

    @admin.display(description="Sent (clinic time)", ordering="sent_at")
    def sent_local(self, reminder: Reminder) -> str:
        return clinic_datetime(reminder.sent_at, reminder.clinic)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Reminder | None = None) -> bool:
        return False

    @admin.action(description="Resend the selected failed, superseded or sent reminders", permissions=["change"])
    def resend(self, request: HttpRequest, queryset: QuerySet[Reminder]) -> None:
        # Conditional UPDATE: rows pending or being sent right now are left alone. The counters restart (a
        # resend is a fresh start); its Message-ID stays the same. A never-sent digest that a newer digest
        # covers is superseded again by the next sweep.
        count = queryset.filter(
            status__in=[ReminderStatus.FAILED, ReminderStatus.SENT, ReminderStatus.SUPERSEDED]
        ).update(
            status=ReminderStatus.PENDING,
            next_attempt_at=timezone.now(),
            lease_until=None,
            attempts=0,
            enqueues=0,
            lost_sends=0,
            superseded_by=None,
            updated_at=timezone.now(),
        )
        skipped = queryset.count() - count
        self.message_user(request, f"{count} reminder(s) will be sent again by the next sweep.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"{skipped} reminder(s) were pending or sending and were left alone.")


# =============================================================================================================
# The patient page (issue #7): the patient's form, with above it the clinical picture — summary, INR chart,
# plans, open follow-ups with their result forms, an INR form, and a timeline. It lives here because it reads
# all three apps (scheduling → anticoag → patients); the Patient admin of ``patients`` is extended, not copied.
# =============================================================================================================


class PatientPageAdmin(PatientListColumns, PatientAdmin):
    change_form_template = "admin/patients/patient/change_form.html"
    list_display = [*PatientAdmin.list_display, *patient_list.COLUMNS]  # clinic/patient_list.py

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The page reads the clinic (its time zone) and the primary nurse: fetch them with the patient.
        return super().get_queryset(request).select_related("clinic", "primary_nurse")

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/record-inr/", wrap(self.record_inr_view), name="patients_patient_record_inr"),
            path(
                "<path:object_id>/follow-ups/<int:follow_up_id>/done/",
                wrap(self.complete_follow_up_view),
                name="patients_patient_follow_up_done",
            ),
            *patient_dosing_urls(self),
            *super().get_urls(),
        ]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and obj.pk is not None and not add:
            context.update(self.patient_page_context(request, obj, context))
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def patient_page_context(self, request: HttpRequest, patient: Patient, context: dict) -> dict:
        page = dashboard.patient_page(patient=patient)
        today = page["today"]
        bound = context.get("follow_up_form")
        can_complete = request.user.has_perm("scheduling.change_followup")
        for row in page["open_follow_ups"]:
            item = row["item"]
            if can_complete and item.kind != FollowUpKind.OUTCOME_REVIEW:  # recorded in the outcomes section
                row["form"] = bound if bound is not None and bound.item.pk == item.pk else None
                row["form"] = row["form"] or views.CompleteFollowUpForm(item=item, today=today)
                row["action"] = reverse("admin:patients_patient_follow_up_done", args=[patient.pk, item.pk])
        can_confirm = request.user.has_perm("anticoag.add_plandecision")
        here = reverse("admin:patients_patient_change", args=[patient.pk])
        for row in page["plans"]:
            if row["plan"] is not None:
                row["proposal_table"] = render_proposal(row["plan"].proposal)
                row["plan_url"] = reverse("admin:anticoag_plan_change", args=[row["plan"].pk])
                if can_confirm:
                    confirm = reverse("admin:anticoag_plan_confirm", args=[row["plan"].pk])
                    row["confirm_url"] = confirm + "?" + urlencode({"next": here})
        if request.user.has_perm("anticoag.add_inrreading"):
            page["inr_form"] = context.get("inr_form") or views.record_inr_form(patient=patient)
            page["inr_action"] = reverse("admin:patients_patient_record_inr", args=[patient.pk])
        if request.user.is_superuser:
            content_type = ContentType.objects.get_for_model(Patient)
            page["audit_log_url"] = (
                reverse("admin:auditlog_logentry_changelist")
                + "?"
                + urlencode({"content_type__id__exact": content_type.pk, "object_id": patient.pk})
            )
        page["procedures_section"] = procedure_patient_page_context(request=request, patient=patient)
        page["current_medicines"] = current_medicines_context(patient=patient)  # rules revision 2 (§5a)
        page["outcomes"] = outcomes_page_context(request=request, patient=patient, context=context)
        # The page's INR advice, read once for the summary and the dose suggestion.
        dosing = patient_dosing_context(request, patient, context, advice=page["summary"]["advice"])
        return {"patient_page": page, "patient_obj": patient, **dosing}

    def _patient_or_404(self, request: HttpRequest, object_id: str) -> Patient:
        return get_object_or_404(self.get_queryset(request), pk=unquote(object_id))

    def _redisplay(self, request: HttpRequest, object_id: str, extra_context: dict):
        """The patient page again, with the refused form and its errors by field (the POST is not replayed)."""
        request.method = "GET"
        return self.change_view(request, object_id, extra_context=extra_context)

    def record_inr_view(self, request: HttpRequest, object_id: str):
        patient = self._patient_or_404(request, object_id)
        page_url = reverse("admin:patients_patient_change", args=[patient.pk])
        if request.method != "POST":
            return HttpResponseRedirect(page_url + "#record-inr")
        if not request.user.has_perm("anticoag.add_inrreading"):
            raise PermissionDenied("Your role does not allow recording an INR.")
        form, reading = views.record_inr(request=request, patient=patient)
        if reading is None:
            messages.error(request, "The INR was not recorded: see the form below.")
            return self._redisplay(request, object_id, {"inr_form": form})
        next_item = (
            FollowUp.objects.filter(patient=patient, kind=FollowUpKind.INR_TEST, status=FollowUpStatus.SCHEDULED)
            .order_by("due_on")
            .first()
        )
        messages.success(request, views.inr_recorded_message(reading, next_item))
        return HttpResponseRedirect(page_url + "#inr-chart-section")

    def complete_follow_up_view(self, request: HttpRequest, object_id: str, follow_up_id: int):
        patient = self._patient_or_404(request, object_id)
        page_url = reverse("admin:patients_patient_change", args=[patient.pk])
        item = get_object_or_404(
            FollowUp.objects.select_related("patient", "episode"), pk=follow_up_id, patient=patient
        )
        if request.method != "POST":
            return HttpResponseRedirect(page_url + "#open-follow-ups")
        if not request.user.has_perm("scheduling.change_followup"):
            raise PermissionDenied("Your role does not allow recording follow-up results.")
        form, created = views.complete_follow_up(request=request, item=item, today=clinic_today(patient.clinic))
        if created is None:
            messages.error(request, f"{item.get_kind_display()} was not marked done: see the form below.")
            return self._redisplay(request, object_id, {"follow_up_form": form})
        messages.success(request, views.done_message(item, created))
        return HttpResponseRedirect(page_url + "#open-follow-ups")


admin.site.unregister(Patient)
admin.site.register(Patient, PatientPageAdmin)
# The admin home is the clinic dashboard. A named template rather than an ``admin/index.html`` override, so
# it does not depend on this app's place in INSTALLED_APPS relative to django.contrib.admin.
admin.site.index_template = "admin/clinic/index.html"


# A nurse lands on Today after logging in (unless the login was for a particular page).
_admin_login = admin.site.login


def login_landing_on_today(request: HttpRequest, extra_context: dict | None = None):
    """The admin's login; a nurse who logged in without asking for a particular page goes to Today."""
    response = _admin_login(request, extra_context)
    wanted = request.POST.get("next") or request.GET.get("next") or ""
    if (
        request.method == "POST"
        and response.status_code == 302
        and request.user.is_authenticated
        and wanted in ("", reverse("admin:index"))
        and request.user.groups.filter(name=Role.NURSE).exists()
    ):
        return HttpResponseRedirect(reverse("clinic:today"))
    return response


admin.site.login = login_landing_on_today
