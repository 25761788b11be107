"""Input and access hardening (issue 13), in one place for the whole site.

* :class:`RefuseNulMiddleware` — a NUL character in a query parameter is a 400 naming the parameter
  (PostgreSQL refuses NUL in text; form fields already refuse it with a field error, DRF's too).
* :class:`NoStoreMiddleware` — ``Cache-Control: no-store`` on every admin and API answer (they carry patient
  data) and on every page shown to a logged-in user.
* :class:`LimitedJSONParser` — the API's JSON parser with a size and a nesting limit: a 400, never a
  ``RecursionError``.
* :class:`ExpiringTokenAuthentication` — API tokens expire (``ANTICOAG_API_TOKEN_DAYS``) and are refused
  while their user is locked out; :func:`tokens_deleted_on_password_change` revokes them on a new password.
* :class:`ClinicAxesHandler` — django-axes' lock-out per username and address, plus per address across
  usernames (``ANTICOAG_LOGIN_ADDRESS_FAILURE_LIMIT``): spraying many usernames from one address is throttled.
"""

from __future__ import annotations

import codecs
from datetime import UTC, date, datetime, timedelta

import psycopg
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_ip_address, get_failure_limit
from axes.models import AccessAttempt
from django.conf import settings
from django.db.backends.postgresql.psycopg_any import BaseTzLoader
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.utils import timezone
from django.utils.cache import patch_cache_control
from psycopg.types.datetime import DateLoader, TimestampLoader
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed, ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils import json

NUL = "\x00"


class RefuseNulMiddleware:
    """A query parameter (name or value) with a NUL character: 400 naming it, before any view runs."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        bad = sorted({name for name, values in request.GET.lists() if NUL in name or any(NUL in v for v in values)})
        if bad:
            names = [name.replace(NUL, "\\0") for name in bad]
            if request.path.startswith("/api/"):
                return JsonResponse({name: ["Contains a NUL character."] for name in names}, status=400)
            return HttpResponseBadRequest(
                f"Query parameter {', '.join(names)} contains a NUL character.", content_type="text/plain"
            )
        return self.get_response(request)


class NoStoreMiddleware:
    """No cache (browser, proxy) keeps an answer that may carry patient data."""

    PREFIXES = ("/api/", "/admin/")

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if "no-store" in response.get("Cache-Control", ""):
            return response  # the view said so already, perhaps with more (a feed's "private, no-store")
        if request.path.startswith(self.PREFIXES) or (user is not None and user.is_authenticated):
            patch_cache_control(response, no_store=True, no_cache=True, must_revalidate=True, private=True)
            patch_cache_control(response, max_age=0)
        return response


def _json_depth_exceeds(text: str, limit: int) -> bool:
    """Whether arrays/objects nest deeper than ``limit`` (brackets inside strings do not count)."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


class LimitedJSONParser(JSONParser):
    """DRF's JSON parser, refusing bodies over ``ANTICOAG_API_JSON_MAX_BYTES`` or nested deeper than
    ``ANTICOAG_API_JSON_MAX_DEPTH`` with a 400 (DRF's own would raise RecursionError, a 500)."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        limit = settings.ANTICOAG_API_JSON_MAX_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise ParseError(f"JSON parse error - the body is larger than {limit} bytes.")
        try:
            text = codecs.decode(raw, encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"JSON parse error - not {encoding} text.") from exc
        depth = settings.ANTICOAG_API_JSON_MAX_DEPTH
        if _json_depth_exceeds(text, depth):
            raise ParseError(f"JSON parse error - nested deeper than {depth} levels.")
        try:
            parse_constant = json.strict_constant if self.strict else None
            return json.loads(text, parse_constant=parse_constant)
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc


def user_locked_out(username: str) -> bool:
    """Whether a lock-out of this username (from any address) is running now."""
    since = timezone.now() - settings.AXES_COOLOFF_TIME
    failures = AccessAttempt.objects.filter(username=username, attempt_time__gte=since).aggregate(
        total=Sum("failures_since_start")
    )["total"]
    return (failures or 0) >= settings.AXES_FAILURE_LIMIT


def token_expired(token) -> bool:
    return token.created < timezone.now() - timedelta(days=settings.ANTICOAG_API_TOKEN_DAYS)


class ExpiringTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <key>``, valid ``ANTICOAG_API_TOKEN_DAYS`` days from issue, and not while the
    user is locked out after failed logins. An expired token is deleted: ask for a new one."""

    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if token_expired(token):
            token.delete()
            raise AuthenticationFailed("Token expired: request a new one at /api/v1/auth/token/.")
        if user_locked_out(user.get_username()):
            raise AuthenticationFailed("Account locked after failed logins: try again later.")
        return user, token


def tokens_deleted_on_password_change(sender, instance, update_fields=None, **kwargs) -> None:
    """``pre_save`` of the user model: a new password revokes every API token of the user."""
    if instance.pk is None or (update_fields is not None and "password" not in update_fields):
        return
    from rest_framework.authtoken.models import Token

    stored = type(instance)._default_manager.filter(pk=instance.pk).values_list("password", flat=True).first()
    if stored is not None and stored != instance.password:
        Token.objects.filter(user_id=instance.pk).delete()


class ClinicAxesHandler(AxesDatabaseHandler):
    """Axes' database handler; an address with ``ANTICOAG_LOGIN_ADDRESS_FAILURE_LIMIT`` failed logins
    within the cool-off, whatever the usernames, counts as locked out like a username would."""

    def get_failures(self, request, credentials=None) -> int:
        failures = super().get_failures(request, credentials)
        address = getattr(request, "axes_ip_address", None) or get_client_ip_address(request)
        since = timezone.now() - settings.AXES_COOLOFF_TIME
        from_address = AccessAttempt.objects.filter(ip_address=address, attempt_time__gte=since).aggregate(
            total=Sum("failures_since_start")
        )["total"]
        if (from_address or 0) >= settings.ANTICOAG_LOGIN_ADDRESS_FAILURE_LIMIT:
            return max(failures, get_failure_limit(request, credentials))
        return failures


def refuse_long_username(username: str | None) -> str | None:
    """The refusal of a username longer than the user model allows, or None (checked before django-axes
    stores the attempt in a column of its own length)."""
    from django.contrib.auth import get_user_model

    model = get_user_model()
    limit = model._meta.get_field(model.USERNAME_FIELD).max_length or 150
    if username is not None and len(username) > limit:
        return f"Ensure this field has no more than {limit} characters."
    return None


# ---------------------------------------------------------------------------------------------------------------
# Stored dates Python cannot hold. PostgreSQL keeps years before 1 (BC) and after 9999; a row written before the
# date checks existed (an import of "0001-01-01" in a clinic east of UTC is 1 BC in UTC) made every page that
# read it fail in the driver. Such values are read as the nearest representable moment, a day inside Python's
# range so that showing it in any time zone works; ``manage.py clinical_dates_check`` lists them for correction,
# and the date checks refuse to save them unchanged.
# ---------------------------------------------------------------------------------------------------------------

SAFE_MIN_MOMENT = datetime(1, 1, 2, tzinfo=UTC)
SAFE_MAX_MOMENT = datetime(9999, 12, 30, tzinfo=UTC)


class SafeTimestamptzLoader(BaseTzLoader):
    """Django's time-zone loader (``timezone`` set per connection), clamping what Python cannot hold."""

    def load(self, data):
        try:
            value = super().load(data)
        except psycopg.DataError as exc:
            value = SAFE_MIN_MOMENT if "small" in str(exc) else SAFE_MAX_MOMENT
            return value if self.timezone is None else value.astimezone(self.timezone)
        if value.tzinfo is None:
            return min(max(value, SAFE_MIN_MOMENT.replace(tzinfo=None)), SAFE_MAX_MOMENT.replace(tzinfo=None))
        return min(max(value, SAFE_MIN_MOMENT), SAFE_MAX_MOMENT)


class SafeTimestampLoader(TimestampLoader):
    """Naive date-times (date truncations in a time zone, e.g. the admin's date drill-down), clamped."""

    def load(self, data):
        try:
            value = super().load(data)
        except psycopg.DataError as exc:
            value = SAFE_MIN_MOMENT if "small" in str(exc) else SAFE_MAX_MOMENT
            return value.replace(tzinfo=None)
        return min(max(value, SAFE_MIN_MOMENT.replace(tzinfo=None)), SAFE_MAX_MOMENT.replace(tzinfo=None))


class SafeDateLoader(DateLoader):
    def load(self, data):
        try:
            return super().load(data)
        except psycopg.DataError as exc:
            return date.min if "small" in str(exc) else date.max


def safe_date_loaders(sender, connection, **kwargs) -> None:
    """``connection_created``: read out-of-range dates and date-times without failing (PostgreSQL only)."""
    if connection.vendor != "postgresql":
        return
    adapters = connection.connection.adapters
    loader = type("SafeTzLoader", (SafeTimestamptzLoader,), {"timezone": connection.timezone})
    adapters.register_loader("timestamptz", loader)
    adapters.register_loader("timestamp", SafeTimestampLoader)
    adapters.register_loader("date", SafeDateLoader)


def schema_query_strings_not_empty(result, generator, request, public):
    """drf-spectacular post-processing: a string query parameter must not be empty (``?mrn=`` is a 400, see
    :class:`config.rest.StrictQueryParamsMixin`), so the schema says ``minLength: 1``."""
    for item in result.get("paths", {}).values():
        for operation in item.values():
            for parameter in operation.get("parameters", []) if isinstance(operation, dict) else []:
                schema = parameter.get("schema", {})
                if parameter.get("in") == "query" and schema.get("type") == "string" and "enum" not in schema:
                    schema.setdefault("minLength", 1)
    return result
