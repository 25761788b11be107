"""REST endpoints for follow-ups and reminders: thin views over scoped selectors and the services.

* ``GET /api/v1/follow-ups/``, ``/follow-ups/{id}/``; ``POST /follow-ups/{id}/complete/`` →
  :func:`scheduling.follow_ups.follow_up_complete` (needs ``scheduling.change_followup``: clinicians, nurses).
* ``GET /api/v1/reminders/``, ``/reminders/{id}/``: the outbox, read-only, without the e-mail itself.
"""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from config.rest import ClinicFilterSet, ClinicScopedViewSet, DateTimeFilter, IdFilter
from patients.scoping import scope_to_user_clinics

from .follow_ups import follow_up_complete
from .models import FollowUp, FollowUpKind, FollowUpStatus, Recanalization, Reminder, ReminderKind, ReminderStatus

# ---------------------------------------------------------------------------------------------------------------
# Selectors
# ---------------------------------------------------------------------------------------------------------------


def follow_up_list(*, user) -> QuerySet[FollowUp]:
    """Follow-up items of the user's clinics."""
    return scope_to_user_clinics(FollowUp.objects.all(), user, "patient__clinic")


def reminder_list(*, user) -> QuerySet[Reminder]:
    """Reminders (the outbox) of the user's clinics, with the follow-ups they are about."""
    return scope_to_user_clinics(Reminder.objects.prefetch_related("follow_ups"), user, "clinic")


# ---------------------------------------------------------------------------------------------------------------
# Filters (shared with the exports)
# ---------------------------------------------------------------------------------------------------------------


class FollowUpFilter(ClinicFilterSet):
    clinic = IdFilter(field_name="patient__clinic_id", help_text="Clinic id.")
    nurse = IdFilter(field_name="patient__primary_nurse_id", help_text="The patient's primary nurse (user id).")
    patient = IdFilter(field_name="patient_id", help_text="Patient id.")
    episode = IdFilter(field_name="episode_id", help_text="CVT episode id.")
    status = django_filters.ChoiceFilter(choices=FollowUpStatus.choices, help_text="Item status.")
    kind = django_filters.ChoiceFilter(choices=FollowUpKind.choices, help_text="What is due.")
    due_from = django_filters.DateFilter(
        field_name="due_on", lookup_expr="gte", help_text="Due on or after this date (YYYY-MM-DD)."
    )
    due_to = django_filters.DateFilter(
        field_name="due_on", lookup_expr="lte", help_text="Due on or before this date (YYYY-MM-DD)."
    )
    updated_since = DateTimeFilter(
        field_name="updated_at", lookup_expr="gte", help_text="Changed at or after (ISO 8601)."
    )

    class Meta:
        model = FollowUp
        fields: list[str] = []


class ReminderFilter(ClinicFilterSet):
    clinic = IdFilter(field_name="clinic_id", help_text="Clinic id.")
    status = django_filters.ChoiceFilter(choices=ReminderStatus.choices, help_text="Delivery status.")
    kind = django_filters.ChoiceFilter(choices=ReminderKind.choices, help_text="Digest, urgent alert, escalation.")
    created_from = DateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="Created at or after (ISO 8601)."
    )
    created_to = DateTimeFilter(field_name="created_at", lookup_expr="lt", help_text="Created before (ISO 8601).")
    updated_since = DateTimeFilter(
        field_name="updated_at", lookup_expr="gte", help_text="Changed at or after (ISO 8601)."
    )

    class Meta:
        model = Reminder
        fields: list[str] = []


# ---------------------------------------------------------------------------------------------------------------
# Serializers
# ---------------------------------------------------------------------------------------------------------------


class FollowUpSerializer(serializers.ModelSerializer):
    # Declared: a read-only model field loses allow_blank, and the schema would then refuse "".
    recanalization = serializers.ChoiceField(choices=Recanalization.choices, allow_blank=True, read_only=True)

    class Meta:
        model = FollowUp
        fields = [
            "id",
            "patient",
            "episode",
            "kind",
            "due_on",
            "window_end_on",
            "status",
            "completed_on",
            "recanalization",
            "result_note",
            "rule",
            "source",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class FollowUpCompleteSerializer(serializers.Serializer):
    completed_on = serializers.DateField(help_text="The day it was done (YYYY-MM-DD; not in the future).")
    recanalization = serializers.ChoiceField(
        choices=Recanalization.choices,
        required=False,
        allow_blank=True,
        default="",
        help_text="Venous imaging only, and required there.",
    )
    result_note = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


FOLLOW_UP_COMPLETED = inline_serializer(
    "FollowUpCompleted",
    fields={
        "follow_up": FollowUpSerializer(),
        "follow_ons": FollowUpSerializer(many=True, help_text="Items scheduled because this one is done."),
    },
)


class ReminderSerializer(serializers.ModelSerializer):
    """The outbox row: status and delivery, never the e-mail's content."""

    follow_ups = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = Reminder
        fields = [
            "id",
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
            "sent_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


# ---------------------------------------------------------------------------------------------------------------
# Views
# ---------------------------------------------------------------------------------------------------------------


class FollowUpViewSet(ClinicScopedViewSet):
    """Follow-up items of your clinics: imaging, INR tests, labs, reviews, with their due dates."""

    queryset = FollowUp.objects.all()
    serializer_class = FollowUpSerializer
    filterset_class = FollowUpFilter
    required_permissions = {"complete": ["scheduling.view_followup", "scheduling.change_followup"]}

    def get_queryset(self) -> QuerySet[FollowUp]:
        return follow_up_list(user=self.request.user)

    @extend_schema(
        request=FollowUpCompleteSerializer,
        responses={200: FOLLOW_UP_COMPLETED},
        description=(
            "Mark the item done and schedule what follows from it (clinicians and nurses). Idempotent with the "
            "same date and result. 400 names the field: completed_on, recanalization, status (cancelled or "
            "already done differently)."
        ),
    )
    @action(detail=True, methods=["post"])
    def complete(self, request: Request, pk: str) -> Response:
        item = self.get_object()
        serializer = FollowUpCompleteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        follow_ons = follow_up_complete(follow_up=item, user=request.user, **serializer.validated_data)
        body = {
            "follow_up": FollowUpSerializer(item).data,
            "follow_ons": FollowUpSerializer(follow_ons, many=True).data,
        }
        return Response(body)


class ReminderViewSet(ClinicScopedViewSet):
    """The reminder outbox of your clinics (read-only): kind, recipient, delivery status; no e-mail content."""

    queryset = Reminder.objects.all()
    serializer_class = ReminderSerializer
    filterset_class = ReminderFilter

    def get_queryset(self) -> QuerySet[Reminder]:
        return reminder_list(user=self.request.user)
