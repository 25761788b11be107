"""REST endpoints for patients and CVT episodes (read-only): thin views over scoped selectors.

``GET /api/v1/patients/`` and ``/episodes/`` (filters below, cursor-paginated), ``…/{id}/``. Every queryset is
scoped to the user's clinics (:func:`patients.scoping.scope_to_user_clinics`); a record of another clinic is
a 404. Writes happen in the admin (and through the services it calls), where the forms and audit live.
"""

from __future__ import annotations

import django_filters
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from rest_framework import serializers
from rest_framework.response import Response

from anticoag.rules import PREGNANCY_CODES
from config.rest import ClinicFilterSet, ClinicScopedViewSet, DateTimeFilter, IdFilter, StrictBooleanFilter
from config.security import client_ip

from .audit import record_access
from .models import CvtEpisode, EpisodeRiskFactor, Patient, PatientMedication
from .scoping import scope_to_user_clinics

# ---------------------------------------------------------------------------------------------------------------
# Selectors
# ---------------------------------------------------------------------------------------------------------------


def patient_list(*, user) -> QuerySet[Patient]:
    """The patients of the user's clinics."""
    return scope_to_user_clinics(Patient.objects.all(), user, "clinic")


def episode_list(*, user) -> QuerySet[CvtEpisode]:
    """The CVT episodes of the user's clinics, with their risk factors."""
    episodes = CvtEpisode.objects.prefetch_related("risk_factors")
    return scope_to_user_clinics(episodes, user, "patient__clinic")


def medication_list(*, user) -> QuerySet[PatientMedication]:
    """The recorded medicines (reference §5a) of the patients of the user's clinics."""
    return scope_to_user_clinics(PatientMedication.objects.all(), user, "patient__clinic")


# ---------------------------------------------------------------------------------------------------------------
# Filters (shared with the exports of the same data sets)
# ---------------------------------------------------------------------------------------------------------------

UPDATED_SINCE_HELP = "Changed at or after this ISO 8601 date-time (e.g. 2026-01-05T00:00:00Z)."


class PatientFilter(ClinicFilterSet):
    clinic = IdFilter(field_name="clinic_id", help_text="Clinic id.")
    nurse = IdFilter(field_name="primary_nurse_id", help_text="Primary nurse (user id).")
    clinician = IdFilter(field_name="responsible_clinician_id", help_text="Responsible clinician (user id).")
    active = StrictBooleanFilter(help_text="Active patients (true) or former ones (false).")
    mrn = django_filters.CharFilter(field_name="mrn", lookup_expr="iexact", help_text="Exact MRN (any case).")
    updated_since = DateTimeFilter(field_name="updated_at", lookup_expr="gte", help_text=UPDATED_SINCE_HELP)

    class Meta:
        model = Patient
        fields: list[str] = []


class EpisodeFilter(ClinicFilterSet):
    clinic = IdFilter(field_name="patient__clinic_id", help_text="Clinic id.")
    nurse = IdFilter(field_name="patient__primary_nurse_id", help_text="The patient's primary nurse (user id).")
    patient = IdFilter(field_name="patient_id", help_text="Patient id.")
    diagnosed_from = django_filters.DateFilter(
        field_name="diagnosed_on", lookup_expr="gte", help_text="Diagnosed on or after this date (YYYY-MM-DD)."
    )
    diagnosed_to = django_filters.DateFilter(
        field_name="diagnosed_on", lookup_expr="lte", help_text="Diagnosed on or before this date (YYYY-MM-DD)."
    )
    pregnant = StrictBooleanFilter(
        method="filter_pregnant",
        help_text="Pregnancy-associated episodes (true: a pregnancy or puerperium code) or the others (false).",
    )
    updated_since = DateTimeFilter(field_name="updated_at", lookup_expr="gte", help_text=UPDATED_SINCE_HELP)

    class Meta:
        model = CvtEpisode
        fields: list[str] = []

    def filter_pregnant(self, queryset: QuerySet[CvtEpisode], name: str, value: bool | None) -> QuerySet[CvtEpisode]:
        if value is None:
            return queryset
        # One fact (rules revision 2): the pregnancy or puerperium code, not a separate flag.
        coded = EpisodeRiskFactor.objects.filter(episode_id=OuterRef("pk"), code__in=sorted(PREGNANCY_CODES))
        return queryset.filter(Exists(coded)) if value else queryset.exclude(Exists(coded))


class MedicationFilter(ClinicFilterSet):
    clinic = IdFilter(field_name="patient__clinic_id", help_text="Clinic id.")
    patient = IdFilter(field_name="patient_id", help_text="Patient id.")
    code = django_filters.ChoiceFilter(field_name="code", choices=PatientMedication._meta.get_field("code").choices)
    current = StrictBooleanFilter(method="filter_current", help_text="Current today (true) or stopped (false).")
    updated_since = DateTimeFilter(field_name="updated_at", lookup_expr="gte", help_text=UPDATED_SINCE_HELP)

    class Meta:
        model = PatientMedication
        fields: list[str] = []

    def filter_current(self, queryset, name: str, value: bool | None):
        if value is None:
            return queryset
        today = timezone.localdate()
        current = Q(started_on__lte=today) & (Q(stopped_on__isnull=True) | Q(stopped_on__gt=today))
        return queryset.filter(current) if value else queryset.exclude(current)


# ---------------------------------------------------------------------------------------------------------------
# Serializers
# ---------------------------------------------------------------------------------------------------------------


class PatientSerializer(serializers.ModelSerializer):
    class Meta:
        model = Patient
        fields = [
            "id",
            "clinic",
            "mrn",
            "family_name",
            "given_name",
            "date_of_birth",
            "sex",
            "weight_kg",
            "primary_nurse",
            "responsible_clinician",
            "active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class RiskFactorSerializer(serializers.ModelSerializer):
    label = serializers.CharField(source="get_code_display", read_only=True)

    class Meta:
        model = EpisodeRiskFactor
        fields = ["code", "label", "noted_on"]
        read_only_fields = fields


class EpisodeSerializer(serializers.ModelSerializer):
    sinuses = serializers.ListField(child=serializers.CharField(), read_only=True)
    risk_factors = RiskFactorSerializer(many=True, read_only=True)
    pregnant = serializers.BooleanField(
        source="pregnancy_associated", read_only=True, help_text="A pregnancy or puerperium risk factor code."
    )

    class Meta:
        model = CvtEpisode
        fields = [
            "id",
            "patient",
            "diagnosed_on",
            "sinuses",
            "hemorrhage",
            "subdural_hematoma",
            "microbleeds",
            "anti_amyloid_therapy",
            "pregnant",
            "delivered_on",
            "expected_delivery_on",
            "breastfeeding",
            "prior_cvt",
            "prior_vte",
            "notes",
            "risk_factors",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class MedicationSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="get_code_display", read_only=True)
    current = serializers.SerializerMethodField(help_text="Current today (clinic server's day).")

    class Meta:
        model = PatientMedication
        fields = ["id", "patient", "code", "name", "started_on", "stopped_on", "current", "note", "updated_at"]
        read_only_fields = fields

    def get_current(self, obj: PatientMedication) -> bool:
        return obj.current_on(timezone.localdate())


# ---------------------------------------------------------------------------------------------------------------
# Views
# ---------------------------------------------------------------------------------------------------------------


class AccessLoggedRetrieveMixin:
    """``retrieve`` (one patient's record) is logged as an access by the requesting user."""

    def retrieve(self, request, *args, **kwargs):
        instance = self.get_object()
        record_access(instance=instance, user=request.user, remote_addr=client_ip(request))
        return Response(self.get_serializer(instance).data)


class PatientViewSet(AccessLoggedRetrieveMixin, ClinicScopedViewSet):
    """Patients of your clinics. Filter by clinic, primary nurse, clinician, MRN, active, updated since."""

    queryset = Patient.objects.all()
    serializer_class = PatientSerializer
    filterset_class = PatientFilter

    def get_queryset(self) -> QuerySet[Patient]:
        return patient_list(user=self.request.user)


class EpisodeViewSet(AccessLoggedRetrieveMixin, ClinicScopedViewSet):
    """CVT episodes of your clinics, with their risk factors (read-only, nested)."""

    queryset = CvtEpisode.objects.all()
    serializer_class = EpisodeSerializer
    filterset_class = EpisodeFilter

    def get_queryset(self) -> QuerySet[CvtEpisode]:
        return episode_list(user=self.request.user)


class MedicationViewSet(ClinicScopedViewSet):
    """The medicines recorded for the patients of your clinics (reference §5a), with start and stop dates.
    Filter by clinic, patient, code, current. Recorded in the admin (the patient's page)."""

    queryset = PatientMedication.objects.all()
    serializer_class = MedicationSerializer
    filterset_class = MedicationFilter

    def get_queryset(self) -> QuerySet[PatientMedication]:
        return medication_list(user=self.request.user)
