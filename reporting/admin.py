"""Admin for the export log (read-only: it is an audit trail) and the calendar feeds (create, revoke).

A member of staff sees and manages only her own feeds; an administrator sees everyone's. The secret URL of
a new feed is shown once, in the confirmation message: only its hash is stored.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from patients.admin import ClinicScopedAdmin

from .ical import calendar_feed_create, calendar_feed_revoke, calendar_feed_url
from .models import CalendarFeed, ExportLog


@admin.register(ExportLog)
class ExportLogAdmin(ClinicScopedAdmin):
    list_display = ["started_at", "user", "dataset", "format", "pseudonymised", "row_count", "completed"]
    list_filter = ["dataset", "format", "pseudonymised", "completed"]
    list_select_related = ["user"]
    date_hierarchy = "started_at"
    search_fields = ["user__username"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class CalendarFeedForm(forms.ModelForm):
    class Meta:
        model = CalendarFeed
        fields = ["user", "label"]


@admin.register(CalendarFeed)
class CalendarFeedAdmin(ClinicScopedAdmin):
    form = CalendarFeedForm
    list_display = ["pk", "user", "label", "created_at", "revoked_at", "last_read_at"]
    list_filter = ["revoked_at"]
    list_select_related = ["user"]
    readonly_fields = ["created_at", "revoked_at", "last_read_at"]
    actions = ["revoke"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[CalendarFeed]:
        feeds = super().get_queryset(request)
        return feeds if request.user.is_superuser else feeds.filter(user=request.user)

    def get_fields(self, request: HttpRequest, obj=None) -> list[str]:
        if obj is None:
            return ["user", "label"] if request.user.is_superuser else ["label"]
        return ["user", "label", "created_at", "revoked_at", "last_read_at"]

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        return [*self.readonly_fields, "user"] if obj is not None else list(self.readonly_fields)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return (
            False if obj is not None and not request.user.is_superuser else super().has_change_permission(request, obj)
        )

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # revoke instead: the row records who had a feed

    def save_model(self, request: HttpRequest, obj: CalendarFeed, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        owner = obj.user if request.user.is_superuser and obj.user_id else request.user
        feed, token = calendar_feed_create(user=owner, label=obj.label)
        obj.pk, obj.user, obj.token_hash, obj.created_at = feed.pk, feed.user, feed.token_hash, feed.created_at
        obj._state.adding = False
        messages.warning(
            request,
            f"Calendar feed created. Its secret URL (shown only now): {calendar_feed_url(token)}",
        )

    @admin.action(description="Revoke the selected feeds", permissions=["delete_feed"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[CalendarFeed]) -> None:
        for feed in queryset.filter(revoked_at__isnull=True):
            calendar_feed_revoke(feed=feed)
        messages.success(request, "The selected feeds are revoked.")

    def has_delete_feed_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("reporting.delete_calendarfeed")
