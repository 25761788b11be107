"""Clinic scoping: a member of staff sees only the records of the clinics they belong to.

Every admin page and API view goes through these selectors; superusers (administrators) see everything.
"""

from __future__ import annotations

from typing import TypeVar

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Model, QuerySet

M = TypeVar("M", bound=Model)


def clinic_ids_for(user: AbstractBaseUser | AnonymousUser) -> list[int] | None:
    """The clinic ids the user may see, or None for "all" (superuser)."""
    if not user.is_authenticated or not user.is_active:
        return []
    if user.is_superuser:
        return None
    cached = getattr(user, "_clinic_ids_cache", None)
    if cached is None:
        cached = list(user.clinics.values_list("pk", flat=True))
        user._clinic_ids_cache = cached
    return cached


def scope_to_user_clinics(queryset: QuerySet[M], user, clinic_path: str) -> QuerySet[M]:
    """Filter ``queryset`` to the user's clinics through the lookup ``clinic_path`` (e.g. "patient__clinic")."""
    ids = clinic_ids_for(user)
    if ids is None:
        return queryset
    return queryset.filter(**{f"{clinic_path}__in": ids})
