"""Clinic time: every date and time a person sees or types is in the clinic's time zone, never UTC.

* :class:`ClinicTimeZoneMiddleware` activates, for each request, the time zone of the user's clinic (the
  first one, by id, for a member of several; for an administrator on no clinic's staff, the first clinic's).
  Django then shows datetimes in templates and admin lists in that zone and reads typed datetimes in it.
* A member of clinics in different zones sees each record in *its* clinic's zone, with the zone named:
  :func:`clinic_datetime` for list columns and read-only fields, and the admin's change form runs inside
  the record's zone (:class:`patients.admin.ClinicScopedAdmin`).
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from datetime import datetime

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from .models import Clinic


def zone_of(clinic: Clinic | None) -> zoneinfo.ZoneInfo | None:
    """The clinic's zone, or None for no clinic or an unknown zone name (then the active zone stays)."""
    if clinic is None:
        return None
    try:
        return zoneinfo.ZoneInfo(clinic.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def clinic_datetime(value: datetime | None, clinic: Clinic | None, *, seconds: bool = False) -> str:
    """``2026-12-02 05:30 Europe/Paris``: the instant in the clinic's zone, the zone named ("—" for none)."""
    if value is None:
        return "—"
    zone = zone_of(clinic) or timezone.get_current_timezone()
    local = value.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M{':%S' if seconds else ''}} {zone.key}"


def user_time_zone(user) -> zoneinfo.ZoneInfo | None:
    """The zone to show ``user``: their first clinic's. One query, which also fills the clinic-id cache the
    scoping helpers use (:func:`patients.scoping.clinic_ids_for`), so most pages pay nothing for it."""
    if not user.is_authenticated or not user.is_active:
        return None
    rows = list(user.clinics.order_by("pk").values_list("pk", "time_zone"))
    if not user.is_superuser and getattr(user, "_clinic_ids_cache", None) is None:
        user._clinic_ids_cache = [pk for pk, _ in rows]
    if not rows and user.is_superuser:
        rows = list(Clinic.objects.order_by("pk").values_list("pk", "time_zone")[:1])
    for _, name in rows:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            continue
    return None


class ClinicTimeZoneMiddleware:
    """Activates the user's clinic's time zone for the request (after authentication)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        zone = user_time_zone(user) if user is not None else None
        if zone is None:
            return self.get_response(request)
        with timezone.override(zone):
            return self.get_response(request)


def _clinic_through(obj, path: str) -> Clinic | None:
    """Follow ``path`` ("patient__clinic") from ``obj`` to its clinic."""
    for name in path.split("__"):
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def aware_in_clinic_zone(value: datetime | None, clinic: Clinic | None) -> datetime | None:
    """A datetime a person typed, read as the wall clock of ``clinic`` (not of the zone active when the form
    parsed it): what a member of several clinics types for a patient of the other one means that clinic's time."""
    zone = zone_of(clinic)
    if value is None or zone is None:
        return value
    wall = timezone.make_naive(value, timezone.get_current_timezone())
    return timezone.make_aware(wall, zone)


class RecordTimeZoneAdminMixin:
    """For a ``ClinicScopedAdmin``: the change form shows and reads datetimes in the record's clinic's zone."""

    clinic_path = "clinic"

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        zone = None
        if object_id:
            from django.contrib.admin.utils import unquote

            obj = self.get_object(request, unquote(object_id))
            zone = zone_of(_clinic_through(obj, self.clinic_path)) if obj is not None else None
        if zone is None:
            return super().changeform_view(request, object_id, form_url, extra_context)
        with timezone.override(zone):
            response = super().changeform_view(request, object_id, form_url, extra_context)
            # A TemplateResponse renders later, after this block: render it while the record's zone is active.
            if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                response.render()
            return response

    def clinic_of(self, obj) -> Clinic | None:
        return _clinic_through(obj, self.clinic_path)
