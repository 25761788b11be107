"""REST endpoints for what leaves the clinic: exports, the FHIR view of a patient, calendar feeds, tokens.

* ``GET /api/v1/exports/{dataset}.{csv|ndjson}`` and ``/exports/research/{dataset}.{csv|ndjson}``
  (pseudonymised): the data set's rows in your clinics, with the list endpoint's filters, streamed. Needs the
  export permission and the data set's view permission. Every export is logged (:class:`ExportLog`).
* ``GET /api/v1/patients/{id}/fhir/``: the patient as a FHIR R4 Bundle (:mod:`reporting.fhir`).
* ``GET/POST /api/v1/calendar-feeds/``, ``DELETE /calendar-feeds/{id}/`` (revokes): your calendar feeds.
* ``GET /api/v1/calendar/{token}.ics``: the feed itself; the secret in the URL is the credential.
* ``POST /api/v1/auth/token/``: username and password → your API token.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import django_filters
from django.core.exceptions import ImproperlyConfigured
from django.db.models import QuerySet
from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone
from django_filters.utils import translate_validation
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.hardening import token_expired
from config.rest import (
    MAX_ID,
    ClinicCursorPagination,
    DetailSerializer,
    IdFilter,
    IgnoreClientContentNegotiation,
    RolePermission,
    StrictBooleanFilter,
    StrictQueryParamsMixin,
    model_permission,
    valid_id_or_404,
)
from config.security import client_ip, lockout_response
from outcomes.dictionary import DATASETS as DICTIONARY_DATASETS
from outcomes.dictionary import HEADER as DICTIONARY_HEADER
from outcomes.dictionary import dictionary_rows
from patients.api import patient_list
from patients.audit import record_access

from .exports import DATASETS, MEDIA_TYPES, Dataset, export_start
from .fhir import patient_bundle
from .ical import (
    calendar_feed_create,
    calendar_feed_for_token,
    calendar_feed_read,
    calendar_feed_revoke,
    calendar_feed_url,
    nurse_calendar_ics,
)
from .models import CalendarFeed, ExportFormat

EXPORT_PERMISSION = "reporting.export_exportlog"

# ---------------------------------------------------------------------------------------------------------------
# Exports
# ---------------------------------------------------------------------------------------------------------------


def filterset_parameters(filterset_class) -> list[OpenApiParameter]:
    """The filter set as OpenAPI query parameters (exports are not list views, so no backend documents them)."""
    parameters = []
    for name, filter_ in filterset_class.base_filters.items():
        enum = None
        if isinstance(filter_, IdFilter):
            kind: Any = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
        elif isinstance(filter_, StrictBooleanFilter):
            kind = OpenApiTypes.BOOL
        elif isinstance(filter_, django_filters.IsoDateTimeFilter):
            kind = OpenApiTypes.DATETIME
        elif isinstance(filter_, django_filters.DateFilter):
            kind = OpenApiTypes.DATE
        elif isinstance(filter_, django_filters.ChoiceFilter):
            kind, enum = OpenApiTypes.STR, [value for value, _ in filter_.extra["choices"]]
        else:
            kind = OpenApiTypes.STR
        description = str(filter_.extra.get("help_text", ""))
        parameters.append(OpenApiParameter(name, kind, OpenApiParameter.QUERY, description=description, enum=enum))
    return parameters


def _columns_text(dataset: Dataset, *, pseudonymised: bool) -> str:
    return ", ".join(f"`{column.name}`" for column in dataset.columns_for(pseudonymised=pseudonymised))


class ExportApi(StrictQueryParamsMixin, APIView):
    """Base of the export endpoints: one subclass per data set and variant (see :func:`export_view`)."""

    dataset: Dataset
    pseudonymised = False
    permission_classes = [RolePermission]
    renderer_classes = [JSONRenderer]  # errors; the export itself is streamed as CSV or NDJSON
    content_negotiation_class = IgnoreClientContentNegotiation

    @property
    def required_permissions(self) -> list[str]:
        return [EXPORT_PERMISSION, model_permission(self.dataset.model, "view")]

    def allowed_query_params(self):
        return self.dataset.filterset_class.base_filters

    def get(self, request: Request, fmt: str) -> HttpResponse:
        dataset = self.dataset
        filterset = dataset.filterset_class(
            data=request.query_params, queryset=dataset.queryset(user=request.user), request=request
        )
        if not filterset.is_valid():
            raise translate_validation(filterset.errors)
        filters = {key: values[0] if len(values) == 1 else values for key, values in request.query_params.lists()}
        try:
            log, stream = export_start(
                user=request.user,
                dataset=dataset,
                fmt=fmt,
                pseudonymised=self.pseudonymised,
                filters=filters,
                queryset=filterset.qs,
            )
        except ImproperlyConfigured as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        response = StreamingHttpResponse(stream, content_type=f"{MEDIA_TYPES[fmt]}; charset=utf-8")
        prefix = "research-" if self.pseudonymised else ""
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="{prefix}{dataset.name}-{stamp}.{fmt}"'
        response["Cache-Control"] = "no-store"
        response["X-Export-Id"] = str(log.pk)
        return response


class ExportDictionaryApi(StrictQueryParamsMixin, APIView):
    """``GET /api/v1/exports/dictionary.csv``: the data dictionary of the outcome and event exports (column,
    type, unit, codes, definition, source), for both variants; ``?dataset=`` narrows it to one data set."""

    permission_classes = [RolePermission]
    required_permissions = [EXPORT_PERMISSION]
    content_negotiation_class = IgnoreClientContentNegotiation
    renderer_classes = [JSONRenderer]  # errors; the dictionary itself is CSV

    def allowed_query_params(self):
        return ("dataset",)

    @extend_schema(
        operation_id="exports_dictionary",
        tags=["exports"],
        summary="Data dictionary of the outcome and event exports",
        parameters=[
            OpenApiParameter(
                "dataset", OpenApiTypes.STR, OpenApiParameter.QUERY, enum=list(DICTIONARY_DATASETS),
                description="Only this data set (default: both).",
            )
        ],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV, UTF-8."),
            (400, "application/json"): OpenApiResponse(OpenApiTypes.OBJECT, description="Unknown data set."),
        },
    )  # fmt: skip
    def get(self, request: Request) -> HttpResponse:
        wanted = request.query_params.get("dataset")
        if wanted is not None and wanted not in DICTIONARY_DATASETS:
            raise ValidationError({"dataset": [f"Choose one of: {', '.join(DICTIONARY_DATASETS)}."]})
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(DICTIONARY_HEADER)
        writer.writerows(row for row in dictionary_rows() if wanted is None or row[0] == wanted)
        response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="outcomes-events-dictionary.csv"'
        return response


def export_view(name: str, *, pseudonymised: bool) -> type[ExportApi]:
    """The export endpoint of one data set (one operation each in the schema, with its own filters)."""
    dataset = DATASETS[name]
    variant = "research" if pseudonymised else "identified"
    description = (
        f"Streams every {dataset.name} row of your clinics (id order) as CSV (header line, CRLF) or NDJSON "
        f"(one JSON object a line). Same filters as the list endpoint; an unknown query parameter is a 400. "
        f"Needs the export permission. Logged: who, when, filters, rows.\n\nColumns: "
        f"{_columns_text(dataset, pseudonymised=pseudonymised)}."
    )
    if pseudonymised:
        description += (
            "\n\nPseudonymised for research: no names, MRN, date of birth, patient id or free text; "
            "`patient_key` is a keyed hash of clinic and MRN (stable across exports), ages are ten-year bands. "
            "503 when the server has no pseudonym key."
        )
    responses: dict[Any, Any] = {
        (200, MEDIA_TYPES[ExportFormat.CSV]): OpenApiResponse(OpenApiTypes.STR, description="CSV, UTF-8."),
        (200, MEDIA_TYPES[ExportFormat.NDJSON]): OpenApiResponse(OpenApiTypes.STR, description="NDJSON, UTF-8."),
    }
    if pseudonymised:
        responses[503] = OpenApiResponse(DetailSerializer, description="No pseudonym key configured.")
    schema = extend_schema(
        operation_id=f"exports_{'research_' if pseudonymised else ''}{name.replace('-', '_')}",
        tags=["exports"],
        summary=f"Export {dataset.name} ({variant})",
        description=description,
        parameters=[
            OpenApiParameter(
                "fmt", OpenApiTypes.STR, OpenApiParameter.PATH, enum=list(ExportFormat.values), description="Format."
            ),
            *filterset_parameters(dataset.filterset_class),
        ],
        responses=responses,
    )

    def get(self, request: Request, fmt: str) -> HttpResponse:  # one function per class: the schema annotates it
        return ExportApi.get(self, request, fmt)

    attributes = {
        "dataset": dataset,
        "pseudonymised": pseudonymised,
        "get": schema(get),
        "__doc__": description,
        "__module__": __name__,
    }
    return type(f"Export{variant.title()}{name.title().replace('-', '')}Api", (ExportApi,), attributes)


# ---------------------------------------------------------------------------------------------------------------
# FHIR
# ---------------------------------------------------------------------------------------------------------------


class FhirJsonRenderer(JSONRenderer):
    media_type = "application/fhir+json"
    format = "fhir"


FHIR_BUNDLE = {
    "type": "object",
    "description": "A FHIR R4 Bundle of type collection (Patient, Condition, Observation, MedicationRequest, "
    "ServiceRequest): see https://hl7.org/fhir/R4/bundle.html.",
    "properties": {
        "resourceType": {"type": "string", "enum": ["Bundle"]},
        "type": {"type": "string", "enum": ["collection"]},
        "timestamp": {"type": "string", "format": "date-time"},
        "entry": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"fullUrl": {"type": "string"}, "resource": {"type": "object"}},
                "required": ["fullUrl", "resource"],
            },
        },
    },
    "required": ["resourceType", "type", "entry"],
}


class PatientFhirApi(StrictQueryParamsMixin, APIView):
    """``GET /api/v1/patients/{id}/fhir/``: the patient as a FHIR R4 Bundle."""

    permission_classes = [RolePermission]
    required_permissions = [
        "patients.view_patient",
        "patients.view_cvtepisode",
        "anticoag.view_plan",
        "anticoag.view_inrreading",
        "scheduling.view_followup",
    ]
    renderer_classes = [FhirJsonRenderer]
    content_negotiation_class = IgnoreClientContentNegotiation

    @extend_schema(
        operation_id="patients_fhir",
        tags=["patients"],
        summary="The patient as a FHIR R4 Bundle",
        description=(
            "Patient (MRN identifier), a Condition per CVT episode (ICD-10 I67.6, O22.5/O87.3 when "
            "pregnancy-associated, SNOMED CT 95455008), an Observation per INR (LOINC 6301-6), a "
            "MedicationRequest per confirmed agent, a ServiceRequest per follow-up. No free-text notes."
        ),
        parameters=[OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Patient id.")],
        responses={200: OpenApiResponse(FHIR_BUNDLE, description="FHIR R4 Bundle (collection).")},
    )
    def get(self, request: Request, id: str) -> Response:
        patient = patient_list(user=request.user).select_related("clinic").filter(pk=valid_id_or_404(id)).first()
        if patient is None:
            raise NotFound()
        record_access(instance=patient, user=request.user, remote_addr=client_ip(request))
        return Response(patient_bundle(patient=patient))


# ---------------------------------------------------------------------------------------------------------------
# Calendar feeds
# ---------------------------------------------------------------------------------------------------------------


class CalendarFeedSerializer(serializers.ModelSerializer):
    class Meta:
        model = CalendarFeed
        fields = ["id", "label", "created_at", "revoked_at", "last_read_at"]
        read_only_fields = fields


class CalendarFeedCreateSerializer(serializers.Serializer):
    label = serializers.CharField(max_length=80, required=False, allow_blank=True, default="")


class CalendarFeedCreatedSerializer(CalendarFeedSerializer):
    url = serializers.CharField(help_text="The secret feed URL: shown only now. Anyone with it sees the feed.")
    token = serializers.CharField(help_text="The secret in the URL.")

    class Meta(CalendarFeedSerializer.Meta):
        fields = [*CalendarFeedSerializer.Meta.fields, "url", "token"]
        read_only_fields = fields


class CalendarFeedViewSet(
    StrictQueryParamsMixin,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Your calendar feeds (nurses): create one to get its secret URL, delete it to revoke it."""

    queryset = CalendarFeed.objects.all()
    serializer_class = CalendarFeedSerializer
    pagination_class = ClinicCursorPagination
    permission_classes = [RolePermission]

    def get_queryset(self) -> QuerySet[CalendarFeed]:
        return CalendarFeed.objects.filter(user=self.request.user)

    def get_object(self) -> CalendarFeed:
        self.kwargs["pk"] = valid_id_or_404(self.kwargs["pk"])
        return super().get_object()

    def allowed_query_params(self):
        return self.paginator.query_params if self.action == "list" else ()

    @extend_schema(
        request=CalendarFeedCreateSerializer,
        responses={201: CalendarFeedCreatedSerializer},
        description="A new secret feed URL of your open follow-ups (MRN and kind only). Shown once: keep it.",
    )
    def create(self, request: Request) -> Response:
        serializer = CalendarFeedCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        feed, token = calendar_feed_create(user=request.user, label=serializer.validated_data["label"])
        body = {**CalendarFeedSerializer(feed).data, "url": calendar_feed_url(token), "token": token}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(description="Revoke the feed: its URL answers 404 from now on (idempotent).")
    def destroy(self, request: Request, pk: str) -> Response:
        calendar_feed_revoke(feed=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class CalendarIcsApi(StrictQueryParamsMixin, APIView):
    """``GET /api/v1/calendar/{token}.ics``: no login — the secret token is the credential; unknown or
    revoked → 404."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    public_endpoint = True
    renderer_classes = [JSONRenderer]  # the 404; the calendar itself is text/calendar
    content_negotiation_class = IgnoreClientContentNegotiation

    @extend_schema(
        operation_id="calendar_feed_ics",
        tags=["calendar"],
        auth=[],
        summary="A nurse's open follow-ups (iCalendar)",
        description=(
            "All-day events of the feed owner's open follow-ups (her patients as primary nurse, in her clinics), "
            "summary `MRN <mrn>: <kind>` only. RFC 5545. 404 when the token is unknown or revoked."
        ),
        responses={(200, "text/calendar"): OpenApiResponse(OpenApiTypes.STR, description="iCalendar, UTF-8.")},
    )
    def get(self, request: Request, token: str) -> HttpResponse:
        feed = calendar_feed_for_token(token=token)
        if feed is None:
            raise NotFound()
        body = nurse_calendar_ics(feed=feed)
        calendar_feed_read(feed=feed)
        response = HttpResponse(body, content_type="text/calendar; charset=utf-8")
        response["Content-Disposition"] = 'inline; filename="follow-ups.ics"'
        response["Cache-Control"] = "private, no-store"
        response["X-Robots-Tag"] = "noindex, nofollow"
        return response


# ---------------------------------------------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------------------------------------------


class BoundedAuthTokenSerializer(AuthTokenSerializer):
    """DRF's username/password serializer with the user model's username length: a longer username is a
    field error before ``authenticate()`` (and django-axes, which stores it) sees it."""

    username = serializers.CharField(label="Username", write_only=True, max_length=150)
    password = serializers.CharField(
        label="Password", style={"input_type": "password"}, trim_whitespace=False, write_only=True, max_length=4096
    )


class AuthTokenApi(StrictQueryParamsMixin, ObtainAuthToken):
    """``POST /api/v1/auth/token/`` with ``username`` and ``password`` → ``{"token": …}``: the same token
    until it expires (``ANTICOAG_API_TOKEN_DAYS``), the user's password changes or an administrator deletes
    it; then a new one."""

    public_endpoint = True
    renderer_classes = [JSONRenderer]
    serializer_class = BoundedAuthTokenSerializer

    @extend_schema(
        operation_id="auth_token_create",
        tags=["auth"],
        auth=[],
        request=BoundedAuthTokenSerializer,
        responses={
            200: inline_serializer("AuthToken", fields={"token": serializers.CharField()}),
            429: OpenApiResponse(DetailSerializer, description="Too many failed logins: locked for a while."),
        },
    )
    def post(self, request: Request, *args, **kwargs) -> Response:
        # DRF's AuthTokenSerializer calls authenticate(request=…), so django-axes counts each failure per
        # username and address. Axes flags a lock-out on the request it was given (DRF's wrapper, which its
        # middleware never sees): answer it here, as the same JSON 429 as the middleware would.
        serializer = self.get_serializer(data=request.data)
        valid = serializer.is_valid()
        if getattr(request, "axes_locked_out", False):
            return lockout_response(request._request)
        if not valid:
            raise ValidationError(serializer.errors)
        user = serializer.validated_data["user"]
        token, _ = Token.objects.get_or_create(user=user)
        if token_expired(token):
            token.delete()
            token = Token.objects.create(user=user)
        return Response({"token": token.key})
