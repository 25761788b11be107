"""Clinic scoping: a member of staff sees only the records of the clinics they belong to.

One mechanism for every model: :func:`clinic_path_for` derives how a model reaches its clinic by walking its
forward foreign keys (and one-to-ones) to :class:`patients.models.Clinic`, shortest non-nullable path first,
so a model added later is scoped without anyone writing its path down. A model whose path is ambiguous or
runs elsewhere declares it with the class attribute ``clinic_scope_path`` (e.g. ``"patient__clinic"``).
Staff accounts reach their clinics through ``clinics`` (``Clinic.staff``); a model that reaches a clinic only
through a user (a calendar feed, an export log) is scoped through that user's clinics.

Every admin page, admin form field, list filter, autocomplete and API view goes through these selectors;
superusers (administrators) see everything.
"""

from __future__ import annotations

from collections import deque
from functools import cache
from typing import TypeVar

from django.apps import apps
from django.contrib.auth import get_user_model
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


def _walk(model: type[Model], *, through_users: bool, nullable: bool) -> str | None:
    """Breadth-first over forward foreign keys: the shortest lookup from ``model`` to the clinic."""
    clinic_model = apps.get_model("patients", "Clinic")
    user_model = get_user_model()
    queue: deque[tuple[type[Model], str]] = deque([(model, "")])
    seen = {model}
    while queue:
        current, prefix = queue.popleft()
        for field in current._meta.get_fields():
            if not (field.many_to_one or field.one_to_one) or not field.concrete or field.related_model is None:
                continue
            if field.null and not nullable:
                continue
            target = field.related_model
            path = f"{prefix}{field.name}"
            if target is clinic_model:
                return path
            if target is user_model:
                if through_users:
                    return f"{path}__clinics"
                continue
            if target not in seen:
                seen.add(target)
                queue.append((target, f"{path}__"))
    return None


@cache
def clinic_path_for(model: type[Model]) -> str | None:
    """The lookup from ``model`` to its clinic (``"pk"`` for the clinic itself), or None: not clinic data.

    Order: the model's own ``clinic_scope_path``; a clinic or a staff account; the shortest required foreign
    key path; the shortest path through optional keys; a path through a user (only when nothing else leads
    to a clinic: a plan decision's ``decided_by`` is not what makes it a clinic's record).
    """
    model = model._meta.concrete_model or model
    declared = getattr(model, "clinic_scope_path", None)
    if declared is not None:
        return declared
    if model is apps.get_model("patients", "Clinic"):
        return "pk"
    if model is get_user_model():
        return "clinics"
    return (
        _walk(model, through_users=False, nullable=False)
        or _walk(model, through_users=False, nullable=True)
        or _walk(model, through_users=True, nullable=True)
    )


def _multi_valued(model: type[Model], path: str) -> bool:
    """Whether the lookup crosses a to-many relation (a filter on it could repeat rows)."""
    current = model
    for name in path.split("__"):
        field = current._meta.get_field(name)
        if field.many_to_many or field.one_to_many:
            return True
        if field.related_model is None:
            return False
        current = field.related_model
    return False


def scope_to_user_clinics(queryset: QuerySet[M], user, clinic_path: str | None = None) -> QuerySet[M]:
    """Filter ``queryset`` to the user's clinics through ``clinic_path`` (derived from the model when omitted).

    A model that does not lead to a clinic is returned unfiltered: it holds no clinic's data (groups,
    content types); who may see it at all is a matter of permissions.
    """
    ids = clinic_ids_for(user)
    if ids is None:
        return queryset
    path = clinic_path or clinic_path_for(queryset.model)
    if path is None:
        return queryset
    if path == "pk":
        return queryset.filter(pk__in=ids)
    if _multi_valued(queryset.model, path):
        # A user on two clinics' staff would appear twice: filter by a subquery instead of a join.
        inner = queryset.model._default_manager.filter(**{f"{path}__in": ids}).values("pk")
        return queryset.filter(pk__in=inner)
    return queryset.filter(**{f"{path}__in": ids})


def object_visible_to(user, obj: Model) -> bool:
    """Whether one record lies in the user's clinics (or needs no clinic)."""
    model = type(obj)
    return scope_to_user_clinics(model._default_manager.filter(pk=obj.pk), user).exists()
