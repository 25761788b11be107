"""REST endpoints for outcomes and events, and the quality report.

* ``GET/POST /api/v1/outcome-assessments/`` (``GET …/{id}/``): mRS reviews; POST records one through
  :func:`outcomes.services.outcome_assessment_record` (completes the scheduled review).
* ``GET/POST /api/v1/clinical-events/`` (``GET …/{id}/``): events; POST records one through
  :func:`outcomes.services.event_record` (ISTH class computed; a major bleed on anticoagulation alerts).
* ``POST /api/v1/recanalizations/``: venous imaging graded sinus by sinus.
* ``GET /api/v1/quality-report/`` (JSON) and ``/api/v1/quality-report.csv``: the clinic's quality report.

Everything is scoped to the user's clinics (another clinic's id answers 404, or 400 naming the field in a
POST body) and answers ``Cache-Control: no-store``.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.rest import (
    ClinicFilterSet,
    ClinicScopedViewSet,
    DateTimeFilter,
    IdFilter,
    IgnoreClientContentNegotiation,
    RolePermission,
    StrictQueryParamsMixin,
)
from patients.choices import Sinus
from patients.models import CvtEpisode, Patient
from patients.scoping import scope_to_user_clinics
from scheduling.models import FollowUp, Recanalization

from .models import (
    BLEEDING_SITE_CHOICES,
    BackToWork,
    ClinicalEvent,
    DeathCause,
    EventKind,
    IsthClass,
    OutcomeAssessment,
    Papilledema,
    SinusRecanalization,
    Timepoint,
    VisualFields,
    VteSite,
)
from .report_views import ReportPeriodForm, report_csv, report_for, user_clinics
from .services import event_record, outcome_assessment_record, recanalization_record

# ---------------------------------------------------------------------------------------------------------------
# Selectors and filters
# ---------------------------------------------------------------------------------------------------------------


def outcome_assessment_list(*, user) -> QuerySet[OutcomeAssessment]:
    return scope_to_user_clinics(OutcomeAssessment.objects.all(), user, "patient__clinic")


def clinical_event_list(*, user) -> QuerySet[ClinicalEvent]:
    return scope_to_user_clinics(ClinicalEvent.objects.all(), user, "patient__clinic")


class OutcomeAssessmentFilter(ClinicFilterSet):
    clinic = IdFilter(field_name="patient__clinic_id", help_text="Clinic id.")
    nurse = IdFilter(field_name="patient__primary_nurse_id", help_text="The patient's primary nurse (user id).")
    patient = IdFilter(field_name="patient_id", help_text="Patient id.")
    episode = IdFilter(field_name="episode_id", help_text="CVT episode id.")
    timepoint = django_filters.ChoiceFilter(choices=Timepoint.choices, help_text="Time point.")
    assessed_from = django_filters.DateFilter(field_name="assessed_on", lookup_expr="gte", help_text="From (date).")
    assessed_to = django_filters.DateFilter(field_name="assessed_on", lookup_expr="lte", help_text="To (date).")
    updated_since = DateTimeFilter(field_name="updated_at", lookup_expr="gte", help_text="Changed at or after.")

    class Meta:
        model = OutcomeAssessment
        fields: list[str] = []


class ClinicalEventFilter(ClinicFilterSet):
    clinic = IdFilter(field_name="patient__clinic_id", help_text="Clinic id.")
    nurse = IdFilter(field_name="patient__primary_nurse_id", help_text="The patient's primary nurse (user id).")
    patient = IdFilter(field_name="patient_id", help_text="Patient id.")
    kind = django_filters.ChoiceFilter(choices=EventKind.choices, help_text="Event kind.")
    isth_class = django_filters.ChoiceFilter(choices=IsthClass.choices, help_text="ISTH class of a bleed.")
    occurred_from = django_filters.DateFilter(field_name="occurred_on", lookup_expr="gte", help_text="From (date).")
    occurred_to = django_filters.DateFilter(field_name="occurred_on", lookup_expr="lte", help_text="To (date).")
    updated_since = DateTimeFilter(field_name="updated_at", lookup_expr="gte", help_text="Changed at or after.")

    class Meta:
        model = ClinicalEvent
        fields: list[str] = []


# ---------------------------------------------------------------------------------------------------------------
# Serializers
# ---------------------------------------------------------------------------------------------------------------


class NoStoreMixin:
    """Responses carry patient data: never cached."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        return response


def _blank_choice(choices) -> serializers.ChoiceField:
    """A read-only choice that may be empty (a read-only model field loses allow_blank, and the schema then
    refuses "")."""
    return serializers.ChoiceField(choices=choices, allow_blank=True, read_only=True)


class OutcomeAssessmentSerializer(serializers.ModelSerializer):
    mrs_words = serializers.CharField(read_only=True)
    papilledema = _blank_choice(Papilledema.choices)
    visual_fields = _blank_choice(VisualFields.choices)
    back_to_work = _blank_choice(BackToWork.choices)

    class Meta:
        model = OutcomeAssessment
        fields = [
            "id",
            "patient",
            "episode",
            "follow_up",
            "timepoint",
            "assessed_on",
            "mrs",
            "mrs_words",
            "seizures_since_last_review",
            "hit6_total",
            "papilledema",
            "visual_fields",
            "back_to_work",
            "entered_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class OutcomeAssessmentCreateSerializer(serializers.Serializer):
    episode = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    timepoint = serializers.ChoiceField(choices=Timepoint.choices)
    assessed_on = serializers.DateField()
    mrs = serializers.IntegerField(min_value=0, max_value=6, help_text="Modified Rankin Scale, 0–6.")
    seizures_since_last_review = serializers.BooleanField(default=False)
    hit6_total = serializers.IntegerField(min_value=36, max_value=78, required=False, allow_null=True, default=None)
    papilledema = serializers.ChoiceField(choices=Papilledema.choices, required=False, allow_blank=True, default="")
    visual_fields = serializers.ChoiceField(choices=VisualFields.choices, required=False, allow_blank=True, default="")
    back_to_work = serializers.ChoiceField(choices=BackToWork.choices, required=False, allow_blank=True, default="")
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class ClinicalEventSerializer(serializers.ModelSerializer):
    isth_criterion = serializers.CharField(read_only=True)
    bleeding_site = _blank_choice(BLEEDING_SITE_CHOICES)
    isth_class = _blank_choice(IsthClass.choices)
    vte_site = _blank_choice(VteSite.choices)
    death_cause = _blank_choice(DeathCause.choices)
    isth_criteria = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = ClinicalEvent
        fields = [
            "id",
            "patient",
            "episode",
            "kind",
            "occurred_on",
            "on_anticoagulation",
            "bleeding_site",
            "symptomatic",
            "hemoglobin_fall_g_dl",
            "units_transfused",
            "fatal",
            "medical_intervention",
            "hospitalization",
            "face_to_face_evaluation",
            "isth_class",
            "isth_criterion",
            "isth_criteria",
            "classification_source",
            "ich_new",
            "ich_growth_percent",
            "neurological_worsening",
            "vte_site",
            "death_cause",
            "new_episode",
            "entered_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ClinicalEventCreateSerializer(serializers.Serializer):
    patient = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    episode = serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False, allow_null=True, default=None)
    kind = serializers.ChoiceField(choices=EventKind.choices)
    occurred_on = serializers.DateField()
    on_anticoagulation = serializers.BooleanField(
        required=False, allow_null=True, default=None, help_text="Leave out: worked out from the confirmed plans."
    )
    bleeding_site = serializers.ChoiceField(choices=BLEEDING_SITE_CHOICES, required=False, allow_blank=True, default="")
    symptomatic = serializers.BooleanField(default=True)
    hemoglobin_fall_g_dl = serializers.DecimalField(
        max_digits=4, decimal_places=1, min_value=0, max_value=20, required=False, allow_null=True, default=None
    )
    units_transfused = serializers.IntegerField(min_value=0, max_value=100, default=0)
    fatal = serializers.BooleanField(default=False)
    medical_intervention = serializers.BooleanField(default=False)
    hospitalization = serializers.BooleanField(default=False)
    face_to_face_evaluation = serializers.BooleanField(default=False)
    ich_new = serializers.BooleanField(default=False)
    ich_growth_percent = serializers.DecimalField(
        max_digits=6, decimal_places=1, min_value=0, max_value=10000, required=False, allow_null=True, default=None
    )
    neurological_worsening = serializers.BooleanField(default=False)
    vte_site = serializers.ChoiceField(choices=VteSite.choices, required=False, allow_blank=True, default="")
    death_cause = serializers.ChoiceField(choices=DeathCause.choices, required=False, allow_blank=True, default="")
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class RecanalizationSerializer(serializers.Serializer):
    follow_up = serializers.IntegerField(min_value=1, max_value=2**63 - 1, help_text="The venous imaging item.")
    completed_on = serializers.DateField()
    sinuses = serializers.DictField(
        child=serializers.ChoiceField(choices=Recanalization.choices),
        allow_empty=False,
        help_text="Sinus code → complete, partial or none.",
    )
    result_note = serializers.CharField(max_length=400, required=False, allow_blank=True, default="")

    def validate_sinuses(self, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(Sinus.values))
        if unknown:
            raise serializers.ValidationError(f"Unknown sinus code(s): {', '.join(unknown)}.")
        return value


class SinusRecanalizationSerializer(serializers.ModelSerializer):
    class Meta:
        model = SinusRecanalization
        fields = ["id", "follow_up", "sinus", "grade"]
        read_only_fields = fields


# ---------------------------------------------------------------------------------------------------------------
# Views
# ---------------------------------------------------------------------------------------------------------------


def _scoped_or_400(queryset: QuerySet, user, path: str, pk: int | None, field: str):
    if pk is None:
        return None
    found = scope_to_user_clinics(queryset, user, path).filter(pk=pk).first()
    if found is None:  # unknown, or another clinic's: the same answer
        raise ValidationError({field: ["No such record in your clinics."]})
    return found


class OutcomeAssessmentViewSet(NoStoreMixin, mixins.CreateModelMixin, ClinicScopedViewSet):
    """Outcome reviews (mRS at 3, 6, 12 months) of your clinics; ``POST`` records one."""

    queryset = OutcomeAssessment.objects.all()
    serializer_class = OutcomeAssessmentSerializer
    filterset_class = OutcomeAssessmentFilter

    def get_queryset(self) -> QuerySet[OutcomeAssessment]:
        return outcome_assessment_list(user=self.request.user)

    def get_serializer_class(self):
        return OutcomeAssessmentCreateSerializer if self.action == "create" else OutcomeAssessmentSerializer

    @extend_schema(
        request=OutcomeAssessmentCreateSerializer,
        responses={201: OutcomeAssessmentSerializer},
        description="Record a review; completes its scheduled outcome review. 400 names the field.",
    )
    def create(self, request: Request) -> Response:
        serializer = OutcomeAssessmentCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        episode = _scoped_or_400(
            CvtEpisode.objects.all(), request.user, "patient__clinic", data.pop("episode"), "episode"
        )
        assessment = outcome_assessment_record(episode=episode, user=request.user, **data)
        return Response(OutcomeAssessmentSerializer(assessment).data, status=status.HTTP_201_CREATED)


class ClinicalEventViewSet(NoStoreMixin, mixins.CreateModelMixin, ClinicScopedViewSet):
    """Events of your clinics; ``POST`` records one (ISTH class computed from the facts)."""

    queryset = ClinicalEvent.objects.all()
    serializer_class = ClinicalEventSerializer
    filterset_class = ClinicalEventFilter

    def get_queryset(self) -> QuerySet[ClinicalEvent]:
        return clinical_event_list(user=self.request.user)

    def get_serializer_class(self):
        return ClinicalEventCreateSerializer if self.action == "create" else ClinicalEventSerializer

    @extend_schema(
        request=ClinicalEventCreateSerializer,
        responses={201: ClinicalEventSerializer},
        description=(
            "Record an event. A bleed's ISTH class and the criterion that decided it are computed; a major bleed "
            "or a symptomatic ICH on anticoagulation raises an urgent alert and marks the plan for review; a "
            "recurrent CVT opens a new episode. 400 names the field."
        ),
    )
    def create(self, request: Request) -> Response:
        serializer = ClinicalEventCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        patient = _scoped_or_400(Patient.objects.all(), request.user, "clinic", data.pop("patient"), "patient")
        episode = _scoped_or_400(
            CvtEpisode.objects.all(), request.user, "patient__clinic", data.pop("episode"), "episode"
        )
        event = event_record(event=ClinicalEvent(patient=patient, episode=episode, **data), user=request.user)
        return Response(ClinicalEventSerializer(event).data, status=status.HTTP_201_CREATED)


class RecanalizationApi(NoStoreMixin, StrictQueryParamsMixin, APIView):
    """``POST /api/v1/recanalizations/``: a venous imaging graded sinus by sinus."""

    permission_classes = [RolePermission]
    required_permissions = ["scheduling.change_followup", "outcomes.add_sinusrecanalization"]

    @extend_schema(
        request=RecanalizationSerializer,
        responses={200: SinusRecanalizationSerializer(many=True)},
        description=(
            "Marks the venous imaging done with the grade that follows from its sinuses (complete only when "
            "every sinus is); partial or none schedules the 6-month scan. 400 names the field."
        ),
    )
    def post(self, request: Request) -> Response:
        serializer = RecanalizationSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        item = _scoped_or_400(
            FollowUp.objects.select_related("episode"), request.user, "patient__clinic", data["follow_up"], "follow_up"
        )
        recanalization_record(
            follow_up=item,
            completed_on=data["completed_on"],
            per_sinus=data["sinuses"],
            result_note=data["result_note"],
            user=request.user,
        )
        rows = SinusRecanalization.objects.filter(follow_up=item).order_by("sinus")
        return Response(SinusRecanalizationSerializer(rows, many=True).data)


REPORT_PARAMETERS = [
    OpenApiParameter("start", OpenApiTypes.DATE, description="First day (default: 12 months before end)."),
    OpenApiParameter("end", OpenApiTypes.DATE, description="Last day (default: today)."),
    OpenApiParameter("clinic", OpenApiTypes.INT, description="One of your clinics (default: all)."),
    OpenApiParameter("nurse", OpenApiTypes.INT, description="Only this primary nurse's patients (user id)."),
]


class _ReportMixin(NoStoreMixin, StrictQueryParamsMixin):
    permission_classes = [RolePermission]
    required_permissions = ["outcomes.report_clinicalevent"]

    def allowed_query_params(self):
        return ("start", "end", "clinic", "nurse")

    def _form(self, request: Request) -> ReportPeriodForm:
        form = ReportPeriodForm(request.query_params, clinics=user_clinics(request.user))
        if not form.is_valid():
            raise ValidationError({name: list(msgs) for name, msgs in form.errors.items()})
        return form


class QualityReportApi(_ReportMixin, APIView):
    """``GET /api/v1/quality-report/``: the figures of the quality report page, per clinic and per nurse."""

    @extend_schema(
        parameters=REPORT_PARAMETERS,
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="Groups, their figures, definitions.")},
    )
    def get(self, request: Request) -> Response:
        return Response(report_for(self._form(request)))


class QualityReportCsvApi(_ReportMixin, APIView):
    """``GET /api/v1/quality-report.csv``: the same figures, one row per clinic and per nurse."""

    content_negotiation_class = IgnoreClientContentNegotiation
    renderer_classes = [JSONRenderer]  # errors; the report itself is CSV

    @extend_schema(
        parameters=REPORT_PARAMETERS,
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV, one row per group."),
            (400, "application/json"): OpenApiResponse(OpenApiTypes.OBJECT, description="Field → messages."),
        },
    )
    def get(self, request: Request) -> Any:
        body = report_csv(report_for(self._form(request)))
        response = HttpResponse(body, content_type="text/csv; charset=utf-8")
        response["Cache-Control"] = "no-store"
        return response
