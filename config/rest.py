"""The API's house rules, shared by every app's ``api.py``.

* :class:`RolePermission`: authenticated, and the role's model permission for the method (``view`` to read,
  which DRF's ``DjangoModelPermissions`` does not ask for). A view may name other permissions per action.
* :class:`ClinicScopedViewSet`: list and retrieve over a queryset scoped to the user's clinics
  (:mod:`patients.scoping`); a record of another clinic is a 404, the same answer as one that does not exist.
* :class:`StrictQueryParamsMixin`: a query parameter the operation does not know is a 400 naming it and the
  allowed ones (a typo in a filter must not silently return everything).
* :class:`ClinicCursorPagination`: cursor pagination in id order (unique and indexed); a bad cursor or page
  size is a 400 naming ``cursor`` / ``page_size``, never a 404 or a 500.
* :func:`exception_handler`: a Django ``ValidationError`` raised by a service becomes a 400 naming the fields.
* :class:`ClinicAutoSchema`: documents the error answers every operation can give (400/401/403/404/415).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC
from typing import Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError as DjangoValidationError
from django_filters.fields import IsoDateTimeField
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.contrib.django_filters import DjangoFilterExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import extend_schema_field
from rest_framework import mixins, serializers, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import exception_handler as drf_exception_handler

#: Largest id PostgreSQL's bigint holds: a larger number in a filter or a path is refused, not sent to the DB.
MAX_ID = 2**63 - 1
_ID_RE = re.compile(r"^[0-9]{1,18}$")

_METHOD_ACTIONS = {
    "GET": "view",
    "HEAD": "view",
    "OPTIONS": "view",
    "POST": "add",
    "PUT": "change",
    "PATCH": "change",
    "DELETE": "delete",
}


def field_errors(exc: DjangoValidationError) -> dict[str, list[str]]:
    """A Django ``ValidationError`` as DRF's shape: field → messages (``__all__`` → ``non_field_errors``)."""
    if not hasattr(exc, "error_dict"):
        return {"non_field_errors": exc.messages}
    return {("non_field_errors" if name == "__all__" else name): msgs for name, msgs in exc.message_dict.items()}


def exception_handler(exc: Exception, context: dict[str, Any]):
    """DRF's handler, plus: a service's Django ``ValidationError`` is a 400 naming the fields."""
    if isinstance(exc, DjangoValidationError):
        exc = ValidationError(field_errors(exc))
    return drf_exception_handler(exc, context)


# ---------------------------------------------------------------------------------------------------------------
# Permissions
# ---------------------------------------------------------------------------------------------------------------


def model_permission(model, action: str) -> str:
    return f"{model._meta.app_label}.{action}_{model._meta.model_name}"


class RolePermission(BasePermission):
    """Authenticated, and holding the permissions the view requires for this request.

    A view says what it requires with ``required_permissions`` (a list, or a dict action → list); otherwise
    the model permission of its queryset for the method (``view`` for GET/HEAD/OPTIONS). A view with neither
    only requires authentication.
    """

    def has_permission(self, request: Request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        if not hasattr(view, request.method.lower()):
            return True  # the view answers 405 Method Not Allowed, whoever asks
        return user.has_perms(required_permissions(request, view))


def required_permissions(request: Request, view) -> list[str]:
    explicit = getattr(view, "required_permissions", None)
    if isinstance(explicit, dict):
        action = getattr(view, "action", None) or request.method.lower()
        if action in explicit:
            return list(explicit[action])
    elif explicit is not None:
        return list(explicit)
    model = getattr(getattr(view, "queryset", None), "model", None) or getattr(view, "model", None)
    action = _METHOD_ACTIONS.get(request.method)
    if model is None or action is None:
        return []
    return [model_permission(model, action)]


# ---------------------------------------------------------------------------------------------------------------
# Query parameters, filters, pagination
# ---------------------------------------------------------------------------------------------------------------


class StrictQueryParamsMixin:
    """Refuse query parameters the operation does not know: 400 ``{name: ["Unknown query parameter…"]}``,
    and known ones given without a value (``?updated_since=``): 400 naming them.

    Checked after authentication and permissions, so an anonymous caller learns nothing about parameters.
    """

    def allowed_query_params(self) -> Iterable[str]:
        return ()

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        allowed = set(self.allowed_query_params())
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            listed = ", ".join(sorted(allowed)) or "none"
            raise ValidationError({name: [f"Unknown query parameter. Allowed here: {listed}."] for name in unknown})
        # "?updated_since=" is not "no filter": a client that meant one must not silently get everything.
        empty = sorted(name for name, values in request.query_params.lists() if any(not v.strip() for v in values))
        if empty:
            raise ValidationError({name: ["Empty value: give a value or leave the parameter out."] for name in empty})


class IdField(forms.IntegerField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": MAX_ID})
class IdFilter(django_filters.NumberFilter):
    """A record id: a whole number from 1 to 2^63 − 1 (anything else is a 400, not a database error).

    Filters by id never validate against a table: an id of another clinic simply matches nothing, so a filter
    cannot tell whether a record of another clinic exists.
    """

    field_class = IdField


class UtcDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, turned into UTC here: an offset PostgreSQL does not take (beyond ±15:59) or a
    moment outside years 1–9999 in UTC is a 400, not a database error."""

    default_error_messages = {"range": "Give a date-time between years 1 and 9999 with an offset within ±15:59."}

    def clean(self, value):
        value = super().clean(value)
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except (OverflowError, ValueError) as exc:
            raise forms.ValidationError(self.error_messages["range"], code="range") from exc


class DateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 date-time (a naive one is in the server's time zone), compared in UTC."""

    field_class = UtcDateTimeField


class StrictBooleanField(forms.ChoiceField):
    CHOICES = (("true", "true"), ("false", "false"))

    def __init__(self, *args, **kwargs):
        kwargs["choices"] = self.CHOICES
        super().__init__(*args, **kwargs)

    def clean(self, value):
        value = super().clean(value)
        return None if value in (None, "") else value == "true"


class StrictBooleanFilter(django_filters.BooleanFilter):
    """``true`` or ``false``; anything else is a 400 (django-filter's default would silently ignore it)."""

    field_class = StrictBooleanField


class ClinicFilterSet(django_filters.FilterSet):
    """Base of the API's filter sets, which lists and exports share. Only declared filters (``Meta.fields``
    empty), each validated by its form field: an invalid value is a 400 naming the filter, never ignored."""


class StrictDjangoFilterBackend(DjangoFilterBackend):
    raise_exception = True


class StrictFilterSchema(DjangoFilterExtension):
    """drf-spectacular's django-filter support, keeping each filter's help text as its description."""

    target_class = StrictDjangoFilterBackend
    priority = 1

    def resolve_filter_field(self, auto_schema, model, filterset_class, field_name, filter_field):
        parameters = super().resolve_filter_field(auto_schema, model, filterset_class, field_name, filter_field)
        help_text = filter_field.extra.get("help_text")
        for parameter in parameters:
            if help_text and not parameter.get("description"):
                parameter["description"] = str(help_text)
        return parameters


class ClinicCursorPagination(CursorPagination):
    """Cursor pagination in id order: unique and indexed, so a page is one index range scan, never a count."""

    ordering = "id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            raise ValidationError({"page_size": [f"Give a whole number from 1 to {self.max_page_size}."]})
        return size

    def decode_cursor(self, request: Request):
        try:
            cursor = super().decode_cursor(request)
        except NotFound as exc:
            raise ValidationError({"cursor": ["Invalid cursor: use the next/previous links as given."]}) from exc
        if cursor is not None and cursor.position is not None and not _ID_RE.match(str(cursor.position)):
            raise ValidationError({"cursor": ["Invalid cursor: use the next/previous links as given."]})
        return cursor

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size}
        return parameters

    @property
    def query_params(self) -> tuple[str, str]:
        return (self.cursor_query_param, self.page_size_query_param)


# ---------------------------------------------------------------------------------------------------------------
# Views
# ---------------------------------------------------------------------------------------------------------------


def valid_id_or_404(value: Any) -> int:
    """A path id: digits only and within bigint, or 404 (the URL names nothing), never a database error."""
    if not _ID_RE.match(str(value)):
        raise NotFound()
    return int(value)


class ClinicScopedViewSet(
    StrictQueryParamsMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Read-only list and retrieve. ``get_queryset`` must return a selector's queryset scoped to the user's
    clinics (:mod:`patients.scoping`); ``queryset`` only names the model (for permissions and the schema)."""

    filter_backends = [StrictDjangoFilterBackend]
    pagination_class = ClinicCursorPagination
    permission_classes = [RolePermission]

    def get_queryset(self):
        raise NotImplementedError(f"{type(self).__name__} must scope its queryset with a selector.")

    def get_object(self):
        lookup = self.lookup_url_kwarg or self.lookup_field
        self.kwargs[lookup] = valid_id_or_404(self.kwargs[lookup])
        return super().get_object()

    def allowed_query_params(self) -> Iterable[str]:
        if self.action != "list":
            return ()
        allowed = set(self.paginator.query_params) if self.paginator else set()
        if self.filterset_class is not None:
            allowed |= set(self.filterset_class.base_filters)
        return allowed


class IgnoreClientContentNegotiation(BaseContentNegotiation):
    """For views that answer one fixed format (CSV, NDJSON, iCalendar, FHIR): the Accept header is not asked."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


# ---------------------------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------------------------

VALIDATION_ERROR_SCHEMA = {
    "type": "object",
    "description": (
        "Keys name the refused fields or query parameters (``non_field_errors`` for the rest); values are the "
        "messages. An unknown query parameter is named with the allowed ones in its message."
    ),
    "additionalProperties": {},
    "example": {"drawn_at": ["Give the UTC offset (e.g. +01:00 or Z): a time without one is ambiguous."]},
}
DETAIL_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


class ClinicAutoSchema(AutoSchema):
    """Adds the error answers any operation can give, with their shapes, unless the view documents them."""

    def _component(self, name: str, schema: dict) -> dict:
        component = ResolvedComponent(name=name, type=ResolvedComponent.SCHEMA, object=name, schema=schema)
        self.registry.register_on_missing(component)
        return component.ref

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        validation = self._component("ValidationError", VALIDATION_ERROR_SCHEMA)
        detail = self._component("ErrorDetail", DETAIL_SCHEMA)
        errors: dict[str, tuple[dict, str]] = {
            "400": (validation, "Refused input: the keys name the fields or query parameters."),
        }
        if not self._is_public():
            errors["401"] = (detail, "Not authenticated.")
            errors["403"] = (detail, "Authenticated, but the role lacks the permission.")
        if "{" in self.path:
            errors["404"] = (detail, "No such record in your clinics (or not a record id), or no such URL.")
        if self.method in ("POST", "PUT", "PATCH"):
            errors["415"] = (detail, "Unsupported request media type.")
        for code, (schema, description) in errors.items():
            if code not in responses:
                responses[code] = {
                    "content": {media: {"schema": schema} for media in self._error_media_types()},
                    "description": description,
                }
        return responses

    def _error_media_types(self) -> list[str]:
        return self.map_renderers("media_type")

    def _is_public(self) -> bool:
        return bool(getattr(self.view, "public_endpoint", False))
