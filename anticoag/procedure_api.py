"""REST endpoints for procedures (reference §8): thin views over a scoped selector and the services.

* ``GET /api/v1/procedures/``, ``/procedures/{id}/``: procedures with the proposal and the confirmed plan.
* ``POST /api/v1/procedures/`` records one (``anticoag.add_procedure``: clinicians and nurses) and proposes its plan.
* ``POST /procedures/{id}/reschedule/`` (new date) and ``/procedures/{id}/status/`` (planned, cancelled, done)
  (``anticoag.change_procedure``); the follow-ups move or go with them.
* ``POST /procedures/{id}/confirm/`` (``anticoag.add_proceduredecision``: clinicians only).

A procedure or patient of another clinic is a 404 / a 400 ``patient`` exactly like one that does not exist.
Every refusal is a 400 naming the field.
"""

from __future__ import annotations

import django_filters
from auditlog.context import set_actor
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from config.rest import ClinicFilterSet, ClinicScopedViewSet, IdFilter
from patients.models import Patient
from patients.scoping import scope_to_user_clinics

from .procedure_models import BleedRisk, Procedure, ProcedureAgent, ProcedureKind, ProcedureStatus
from .procedure_services import procedure_confirm, procedure_propose, procedure_record, procedure_set_status


def procedure_list(*, user) -> QuerySet[Procedure]:
    """Procedures of the user's clinics."""
    return scope_to_user_clinics(Procedure.objects.all(), user, "patient__clinic")


class ProcedureFilter(ClinicFilterSet):
    clinic = IdFilter(field_name="patient__clinic_id", help_text="Clinic id.")
    patient = IdFilter(field_name="patient_id", help_text="Patient id.")
    status = django_filters.ChoiceFilter(choices=ProcedureStatus.choices, help_text="Procedure status.")
    scheduled_from = django_filters.DateFilter(field_name="scheduled_on", lookup_expr="gte", help_text="On or after.")
    scheduled_to = django_filters.DateFilter(field_name="scheduled_on", lookup_expr="lte", help_text="On or before.")

    class Meta:
        model = Procedure
        fields: list[str] = []


class ProcedureSerializer(serializers.ModelSerializer):
    class Meta:
        model = Procedure
        fields = [
            "id",
            "patient",
            "episode",
            "scheduled_on",
            "kind",
            "bleed_risk",
            "agent",
            "requested_by",
            "status",
            "plan_status",
            "proposal",
            "confirmed_plan",
            "changes",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ProcedureCreateSerializer(serializers.Serializer):
    patient = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    scheduled_on = serializers.DateField()
    kind = serializers.ChoiceField(choices=ProcedureKind.choices)
    bleed_risk = serializers.ChoiceField(choices=BleedRisk.choices)
    agent = serializers.ChoiceField(choices=ProcedureAgent.choices)
    requested_by = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)


class ProcedureConfirmSerializer(serializers.Serializer):
    skip_days = serializers.IntegerField(required=False, min_value=0, max_value=14)
    restart_after = serializers.IntegerField(required=False, min_value=0, max_value=14)
    inr_check = serializers.BooleanField(required=False)
    change_reason = serializers.CharField(required=False, allow_blank=True, default="")
    acknowledged_warnings = serializers.ListField(child=serializers.CharField(), required=False, default=list)


class RescheduleSerializer(serializers.Serializer):
    scheduled_on = serializers.DateField()


class StatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=ProcedureStatus.choices)


class ProcedureViewSet(ClinicScopedViewSet):
    """Procedures of your clinics and their dated stop/restart plans (decision support: a clinician confirms)."""

    queryset = Procedure.objects.all()
    serializer_class = ProcedureSerializer
    filterset_class = ProcedureFilter
    required_permissions = {
        "create": ["anticoag.add_procedure"],
        "reschedule": ["anticoag.view_procedure", "anticoag.change_procedure"],
        "set_status": ["anticoag.view_procedure", "anticoag.change_procedure"],
        "confirm": ["anticoag.view_procedure", "anticoag.add_proceduredecision"],
    }

    def get_queryset(self) -> QuerySet[Procedure]:
        return procedure_list(user=self.request.user)

    @extend_schema(request=ProcedureCreateSerializer, responses={201: ProcedureSerializer})
    def create(self, request: Request) -> Response:
        serializer = ProcedureCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        patients = scope_to_user_clinics(Patient.objects.all(), request.user, "clinic")
        patient = patients.filter(pk=data.pop("patient")).first()
        if patient is None:
            raise serializers.ValidationError({"patient": ["Unknown patient."]})
        with set_actor(request.user):
            procedure = procedure_record(patient=patient, user=request.user, **data)
        return Response(ProcedureSerializer(procedure).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ProcedureConfirmSerializer, responses={200: ProcedureSerializer})
    @action(detail=True, methods=["post"])
    def confirm(self, request: Request, pk: str) -> Response:
        procedure = self.get_object()
        serializer = ProcedureConfirmSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with set_actor(request.user):
            procedure_confirm(procedure=procedure, user=request.user, **serializer.validated_data)
        procedure.refresh_from_db()
        return Response(ProcedureSerializer(procedure).data)

    @extend_schema(request=RescheduleSerializer, responses={200: ProcedureSerializer})
    @action(detail=True, methods=["post"])
    def reschedule(self, request: Request, pk: str) -> Response:
        procedure = self.get_object()
        serializer = RescheduleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        procedure.scheduled_on = serializer.validated_data["scheduled_on"]
        with set_actor(request.user):
            procedure_propose(procedure=procedure)
        return Response(ProcedureSerializer(procedure).data)

    @extend_schema(request=StatusSerializer, responses={200: ProcedureSerializer})
    @action(detail=True, methods=["post"], url_path="status")
    def set_status(self, request: Request, pk: str) -> Response:
        procedure = self.get_object()
        serializer = StatusSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with set_actor(request.user):
            procedure_set_status(procedure=procedure, status=serializer.validated_data["status"])
        return Response(ProcedureSerializer(procedure).data)
