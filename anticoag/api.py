"""REST endpoints for plans and INR readings: thin views over scoped selectors and the services.

* ``GET /api/v1/plans/``, ``/plans/{id}/``; ``POST /plans/{id}/confirm/`` → :func:`anticoag.services.plan_confirm`
  (needs ``anticoag.add_plandecision``: clinicians).
* ``GET /api/v1/inr-readings/``, ``/inr-readings/{id}/``; ``POST /inr-readings/`` records one reading and
  answers with the advice; ``POST /inr-readings/import/`` imports a CSV, all or nothing (:mod:`anticoag.inr`).

Every refusal is a 400 that names the field. Reading needs the view permission, recording the add permission
(403 without). A plan or reading of another clinic is a 404 — as is a patient of another clinic named in a
new reading, which answers 400 ``patient`` exactly like an unknown id, so ids reveal nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import django_filters
from auditlog.context import set_actor
from django.db.models import Prefetch, QuerySet
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ParseError, PermissionDenied, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.rest import (
    ClinicFilterSet,
    ClinicScopedViewSet,
    DateTimeFilter,
    IdFilter,
    RolePermission,
    StrictBooleanFilter,
    StrictQueryParamsMixin,
    valid_id_or_404,
)
from patients.models import Clinic, Patient
from patients.scoping import clinic_ids_for, scope_to_user_clinics

from .imports import ImportStarted, inr_import_start, inr_import_status
from .inr import inr_advice_for_patient, inr_reading_record
from .models import (
    INR_MAX,
    INR_MIN,
    Agent,
    InrImport,
    InrImportPhase,
    InrReading,
    InrSource,
    Plan,
    PlanDecision,
    PlanStatus,
)
from .services import plan_confirm

ADD_PERMISSION = "anticoag.add_inrreading"
#: Readings dated earlier are typing errors (and year 1 minus an offset is a year PostgreSQL keeps but Python
#: cannot read back).
EARLIEST_YEAR = 1900

# ---------------------------------------------------------------------------------------------------------------
# Selectors
# ---------------------------------------------------------------------------------------------------------------


def plan_list(*, user) -> QuerySet[Plan]:
    """Plans of the user's clinics, each with its decisions newest first (``decisions_newest_first``)."""
    decisions = Prefetch(
        "decisions", queryset=PlanDecision.objects.order_by("-decided_at", "-pk"), to_attr="decisions_newest_first"
    )
    plans = Plan.objects.select_related("episode").prefetch_related(decisions)
    return scope_to_user_clinics(plans, user, "episode__patient__clinic")


def inr_reading_list(*, user) -> QuerySet[InrReading]:
    """INR readings of the user's clinics."""
    return scope_to_user_clinics(InrReading.objects.all(), user, "patient__clinic")


# ---------------------------------------------------------------------------------------------------------------
# Filters (shared with the exports)
# ---------------------------------------------------------------------------------------------------------------


class PlanFilter(ClinicFilterSet):
    clinic = IdFilter(field_name="episode__patient__clinic_id", help_text="Clinic id.")
    nurse = IdFilter(
        field_name="episode__patient__primary_nurse_id", help_text="The patient's primary nurse (user id)."
    )
    patient = IdFilter(field_name="episode__patient_id", help_text="Patient id.")
    episode = IdFilter(field_name="episode_id", help_text="CVT episode id.")
    status = django_filters.ChoiceFilter(choices=PlanStatus.choices, help_text="Plan status.")
    computed_from = DateTimeFilter(
        field_name="computed_at", lookup_expr="gte", help_text="Proposal computed at or after (ISO 8601)."
    )
    computed_to = DateTimeFilter(
        field_name="computed_at", lookup_expr="lt", help_text="Proposal computed before (ISO 8601)."
    )
    updated_since = DateTimeFilter(
        field_name="updated_at", lookup_expr="gte", help_text="Changed at or after (ISO 8601)."
    )

    class Meta:
        model = Plan
        fields: list[str] = []


class InrReadingFilter(ClinicFilterSet):
    clinic = IdFilter(field_name="patient__clinic_id", help_text="Clinic id.")
    nurse = IdFilter(field_name="patient__primary_nurse_id", help_text="The patient's primary nurse (user id).")
    patient = IdFilter(field_name="patient_id", help_text="Patient id.")
    drawn_from = DateTimeFilter(
        field_name="drawn_at", lookup_expr="gte", help_text="Drawn at or after (ISO 8601 date-time)."
    )
    drawn_to = DateTimeFilter(field_name="drawn_at", lookup_expr="lt", help_text="Drawn before (ISO 8601 date-time).")
    source = django_filters.ChoiceFilter(choices=InrSource.choices, help_text="Where the value comes from.")
    bleeding = StrictBooleanFilter(help_text="Bleeding reported with the reading.")
    created_since = DateTimeFilter(
        field_name="created_at",
        lookup_expr="gte",
        help_text="Recorded at or after (ISO 8601). Readings carry no change time: corrections are in the audit log.",
    )

    class Meta:
        model = InrReading
        fields: list[str] = []


# ---------------------------------------------------------------------------------------------------------------
# Serializers
# ---------------------------------------------------------------------------------------------------------------


class PlanDecisionSerializer(serializers.ModelSerializer):
    overridden = serializers.ListField(child=serializers.CharField(), read_only=True)
    acknowledged_warnings = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = PlanDecision
        fields = [
            "id",
            "plan",
            "agent",
            "indefinite",
            "duration_months",
            "end_on",
            "overridden",
            "override_reason",
            "acknowledged_warnings",
            "rules_version",
            "decided_by",
            "decided_at",
        ]
        read_only_fields = fields


class PlanSerializer(serializers.ModelSerializer):
    patient = serializers.IntegerField(source="episode.patient_id", read_only=True)
    category = serializers.CharField(read_only=True, help_text="The rules' risk category.")
    facts = serializers.JSONField(read_only=True, help_text="The facts the proposal was computed from.")
    proposal = serializers.JSONField(read_only=True, help_text="The rules' recommendation, with its sources.")
    changes = serializers.JSONField(read_only=True, help_text="What changed since the confirmed proposal.")
    decision = serializers.SerializerMethodField(help_text="The clinician's current decision, if any.")

    class Meta:
        model = Plan
        fields = [
            "id",
            "episode",
            "patient",
            "status",
            "category",
            "rules_version",
            "computed_at",
            "facts",
            "proposal",
            "changes",
            "decision",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(PlanDecisionSerializer(allow_null=True))
    def get_decision(self, plan: Plan) -> dict[str, Any] | None:
        decisions = getattr(plan, "decisions_newest_first", None)
        current = (decisions[0] if decisions else None) if decisions is not None else plan.current_decision
        return PlanDecisionSerializer(current).data if current is not None else None


class PlanConfirmSerializer(serializers.Serializer):
    agent = serializers.ChoiceField(choices=Agent.choices)
    indefinite = serializers.BooleanField(
        required=False, allow_null=True, default=None, help_text="Leave out (with duration_months) for the proposal's."
    )
    duration_months = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=1, max_value=600, help_text="Finite courses."
    )
    override_reason = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=2000, help_text="Required to override."
    )
    acknowledged_warnings = serializers.ListField(
        child=serializers.CharField(max_length=80),
        required=False,
        default=list,
        max_length=50,
        help_text="Codes of the caution warnings you acknowledge.",
    )


class AwareDateTimeField(serializers.Field):
    """An ISO 8601 date-time that must carry its UTC offset: a clinic's wall time is ambiguous otherwise."""

    default_error_messages = {
        "invalid": "Give an ISO 8601 date-time, e.g. 2026-01-05T08:30:00+01:00.",
        "naive": "Give the UTC offset (e.g. +01:00 or Z): a time without one is ambiguous.",
        "implausible": "A date before 1900 is not plausible: check the year.",
    }

    def to_internal_value(self, data: Any) -> datetime:
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            value = datetime.fromisoformat(data.strip())
        except ValueError:
            self.fail("invalid")
        if timezone.is_naive(value):
            self.fail("naive")
        try:
            value = value.astimezone(UTC)  # PostgreSQL refuses offsets beyond ±15:59
        except (OverflowError, ValueError):
            self.fail("invalid")
        if value.year < EARLIEST_YEAR:  # also keeps out years that PostgreSQL stores but Python cannot read back
            self.fail("implausible")
        return value

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


extend_schema_field(OpenApiTypes.DATETIME)(AwareDateTimeField)


class InrReadingSerializer(serializers.ModelSerializer):
    class Meta:
        model = InrReading
        fields = ["id", "patient", "drawn_at", "value", "source", "bleeding", "note", "entered_by", "created_at"]
        read_only_fields = fields


class InrReadingCreateSerializer(serializers.Serializer):
    patient = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    drawn_at = AwareDateTimeField()
    value = serializers.DecimalField(max_digits=4, decimal_places=2, min_value=INR_MIN, max_value=INR_MAX)
    source = serializers.ChoiceField(choices=InrSource.choices, default=InrSource.LAB)
    bleeding = serializers.BooleanField(default=False)
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class InrReadingCreatedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    patient = serializers.IntegerField()
    drawn_at = serializers.DateTimeField()
    value = serializers.DecimalField(max_digits=4, decimal_places=2)
    source = serializers.ChoiceField(choices=InrSource.choices)
    bleeding = serializers.BooleanField()
    advice = serializers.JSONField(allow_null=True, help_text="Next test, dose suggestion, phase, TTR, alerts.")


# ---------------------------------------------------------------------------------------------------------------
# Views
# ---------------------------------------------------------------------------------------------------------------


class PlanViewSet(ClinicScopedViewSet):
    """Plans of your clinics: the rules' proposal, its status and the clinician's current decision."""

    queryset = Plan.objects.all()
    serializer_class = PlanSerializer
    filterset_class = PlanFilter
    required_permissions = {"confirm": ["anticoag.view_plan", "anticoag.add_plandecision"]}

    def get_queryset(self) -> QuerySet[Plan]:
        return plan_list(user=self.request.user)

    @extend_schema(
        request=PlanConfirmSerializer,
        responses={201: PlanDecisionSerializer},
        description=(
            "Confirm the plan, or override its agent or duration with a reason (clinicians only). Caution "
            "warnings must be acknowledged. 400 names the field: agent, duration_months, override_reason, "
            "acknowledged_warnings."
        ),
    )
    @action(detail=True, methods=["post"])
    def confirm(self, request: Request, pk: str) -> Response:
        plan = self.get_object()
        serializer = PlanConfirmSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with set_actor(request.user):  # token requests pass the audit middleware anonymous
            decision = plan_confirm(plan=plan, user=request.user, **serializer.validated_data)
        return Response(PlanDecisionSerializer(decision).data, status=status.HTTP_201_CREATED)


class InrReadingViewSet(mixins.CreateModelMixin, ClinicScopedViewSet):
    """INR readings of your clinics; ``POST`` records one and answers with the patient's advice."""

    queryset = InrReading.objects.all()
    serializer_class = InrReadingSerializer
    filterset_class = InrReadingFilter

    def get_queryset(self) -> QuerySet[InrReading]:
        return inr_reading_list(user=self.request.user)

    def get_serializer_class(self):
        return InrReadingCreateSerializer if self.action == "create" else InrReadingSerializer

    @extend_schema(
        request=InrReadingCreateSerializer,
        responses={201: InrReadingCreatedSerializer},
        description=(
            "Record one reading (needs anticoag.add_inrreading). 400 names the field; a patient outside your "
            "clinics is refused like an unknown one (400 patient)."
        ),
    )
    def create(self, request: Request) -> Response:
        serializer = InrReadingCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        patients = scope_to_user_clinics(Patient.objects.select_related("clinic"), request.user, "clinic")
        patient = patients.filter(pk=data["patient"]).first()
        if patient is None:  # unknown, or of another clinic: the same answer, so ids reveal nothing
            return Response({"patient": ["No such patient in your clinics."]}, status=status.HTTP_400_BAD_REQUEST)
        with set_actor(request.user):
            reading = inr_reading_record(
                patient=patient,
                drawn_at=data["drawn_at"],
                value=data["value"],
                source=data["source"],
                bleeding=data["bleeding"],
                entered_by=request.user,
                note=data["note"],
            )
        body = {
            "id": reading.pk,
            "patient": patient.pk,
            "drawn_at": reading.drawn_at.isoformat(),
            "value": str(reading.value),
            "source": reading.source,
            "bleeding": reading.bleeding,
            "advice": inr_advice_for_patient(patient=patient),
        }
        return Response(body, status=status.HTTP_201_CREATED)


IMPORT_STATUS = inline_serializer(
    "InrImportStatus",
    fields={
        "id": serializers.IntegerField(),
        "clinic": serializers.IntegerField(),
        "phase": serializers.ChoiceField(choices=InrImportPhase.choices),
        "finished": serializers.BooleanField(),
        "rows_total": serializers.IntegerField(),
        "rows_done": serializers.IntegerField(),
        "created_at": serializers.DateTimeField(),
        "started_at": serializers.DateTimeField(allow_null=True),
        "finished_at": serializers.DateTimeField(allow_null=True),
        "imported": serializers.IntegerField(required=False),
        "patients": serializers.IntegerField(required=False),
        "errors": serializers.ListField(child=serializers.DictField(), required=False),
        "status_url": serializers.URLField(required=False),
    },
)

IMPORT_ERROR = inline_serializer(
    "InrImportErrors",
    fields={
        "errors": serializers.ListField(
            child=inline_serializer(
                "InrImportError",
                fields={
                    "row": serializers.IntegerField(allow_null=True),
                    "field": serializers.CharField(allow_null=True),
                    "message": serializers.CharField(),
                },
            )
        )
    },
)


class InrImportApi(StrictQueryParamsMixin, APIView):
    """``POST /api/v1/inr-readings/import/`` (multipart: ``clinic`` id, ``file``): all or nothing.

    201 ``{"imported": n, "patients": n}``, or 400 ``{"errors": [{"row", "field", "message"}]}`` and nothing
    imported. The user must have ``anticoag.add_inrreading`` and belong to the clinic (403 otherwise, the same
    for a clinic that does not exist). CSV format: :func:`anticoag.inr.inr_import_csv`.
    """

    permission_classes = [RolePermission]
    required_permissions = [ADD_PERMISSION]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        operation_id="inr_readings_import",
        request={
            "multipart/form-data": inline_serializer(
                "InrImportUpload",
                fields={"clinic": serializers.IntegerField(), "file": serializers.FileField()},
            )
        },
        responses={
            201: inline_serializer(
                "InrImportResult",
                fields={"imported": serializers.IntegerField(), "patients": serializers.IntegerField()},
            ),
            202: OpenApiResponse(
                IMPORT_STATUS,
                description="A large file: stored and being imported in the background; poll status_url.",
            ),
            400: OpenApiResponse(IMPORT_ERROR, description="Nothing imported: every refused row, with its field."),
        },
    )
    def post(self, request: Request) -> Response:
        raw_clinic = request.data.get("clinic")
        try:
            clinic_id = int(raw_clinic)
        except (TypeError, ValueError):
            return self._bad("clinic", "Give the clinic id.")
        allowed = clinic_ids_for(request.user)
        clinic = Clinic.objects.filter(pk=clinic_id).first() if 0 < clinic_id < 2**63 else None
        if clinic is None or (allowed is not None and clinic_id not in allowed):
            raise PermissionDenied("You do not belong to that clinic.")
        upload = request.FILES.get("file")
        if upload is None:
            return self._bad("file", "Attach the CSV file as 'file'.")
        with set_actor(request.user):
            result = inr_import_start(clinic=clinic, file=upload, entered_by=request.user)
        if isinstance(result, ImportStarted):
            url = reverse("api-inr-import-status", args=[result.job.pk])
            body = {**inr_import_status(result.job), "status_url": request.build_absolute_uri(url)}
            return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": url})
        if not result.ok:
            return Response({"errors": result.errors}, status=status.HTTP_400_BAD_REQUEST)
        return Response({"imported": result.imported, "patients": result.patients}, status=status.HTTP_201_CREATED)

    def handle_exception(self, exc: Exception) -> Response:
        """Refusals before the import (unknown query parameter, unreadable upload) in the import's own shape."""
        if isinstance(exc, ValidationError) and isinstance(exc.detail, dict):
            errors = [
                {"row": None, "field": name, "message": " ".join(str(m) for m in messages)}
                for name, messages in exc.detail.items()
            ]
            return Response({"errors": errors}, status=status.HTTP_400_BAD_REQUEST)
        if isinstance(exc, ParseError):
            return self._bad(None, str(exc.detail))
        return super().handle_exception(exc)

    @staticmethod
    def _bad(field: str | None, message: str) -> Response:
        return Response(
            {"errors": [{"row": None, "field": field, "message": message}]}, status=status.HTTP_400_BAD_REQUEST
        )


class InrImportStatusApi(StrictQueryParamsMixin, APIView):
    """``GET /api/v1/inr-imports/{id}/``: a background import's phase and progress, then its result (the
    number imported, or every refused row). Scoped to the user's clinics (another clinic's import is a 404);
    needs the permission to add INR readings, like the import itself."""

    permission_classes = [RolePermission]
    required_permissions = [ADD_PERMISSION]

    @extend_schema(
        operation_id="inr_imports_retrieve",
        tags=["inr-readings"],
        parameters=[OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Import id.")],
        responses={200: IMPORT_STATUS},
    )
    def get(self, request: Request, id: str) -> Response:
        pk = valid_id_or_404(id)
        jobs = scope_to_user_clinics(InrImport.objects.all(), request.user)
        job = jobs.filter(pk=pk).first()
        if job is None:
            raise NotFound()
        return Response(inr_import_status(job))
