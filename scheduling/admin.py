"""Admin for follow-ups (each patient's work list) and the reminder outbox (status, errors, resend).

Both are scoped to the user's clinics. The outbox shows no patient data beyond what the e-mails carry.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from patients.admin import ClinicScopedAdmin

from .models import FollowUp, Reminder, ReminderStatus


@admin.register(FollowUp)
class FollowUpAdmin(ClinicScopedAdmin):
    clinic_path = "patient__clinic"
    list_display = ["patient", "kind", "due_on", "window_end_on", "status", "completed_on"]
    list_select_related = ["patient"]
    # "Related only": the filter offers the clinics and nurses of the rows the user may see, not every user.
    list_filter = [
        ("patient__clinic", admin.RelatedOnlyFieldListFilter),
        "status",
        "kind",
        ("patient__primary_nurse", admin.RelatedOnlyFieldListFilter),
    ]
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


@admin.register(Reminder)
class ReminderAdmin(ClinicScopedAdmin):
    """The outbox. Rows are written by the sweep and the send task; staff only look, and resend."""

    list_display = ["idempotency_key", "kind", "recipient", "status", "attempts", "next_attempt_at", "sent_at"]
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
        "sent_at",
        "message_id",
        "last_error",
        "idempotency_key",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Reminder | None = None) -> bool:
        return False

    @admin.action(description="Resend the selected failed or sent reminders", permissions=["change"])
    def resend(self, request: HttpRequest, queryset: QuerySet[Reminder]) -> None:
        # Conditional UPDATE: rows pending or being sent right now are left alone. The attempt counter restarts
        # so a reminder that had given up gets its full set of retries; its Message-ID stays the same.
        count = queryset.filter(status__in=[ReminderStatus.FAILED, ReminderStatus.SENT]).update(
            status=ReminderStatus.PENDING,
            next_attempt_at=timezone.now(),
            lease_until=None,
            attempts=0,
            updated_at=timezone.now(),
        )
        skipped = queryset.count() - count
        self.message_user(request, f"{count} reminder(s) will be sent again by the next sweep.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"{skipped} reminder(s) were pending or sending and were left alone.")
