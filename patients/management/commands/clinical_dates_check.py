"""``manage.py clinical_dates_check``: list stored clinical dates outside the sane range (issue 13).

Rows written before the date checks existed, or by SQL, may hold a date before ``ANTICOAG_EARLIEST_CLINICAL_YEAR``
or (for facts that happened) in the future. Every date field that carries a clinical-date validator is
checked, in every installed model, so a new model's dates are covered by declaring the validator. Prints one
line per problem (``app.Model pk field value``) and exits 1 when there is any, 0 otherwise; it changes nothing:
correct the rows in the admin, which shows them.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import models
from django.db.models import Q
from django.utils import timezone

from patients.dates import (
    CLOCK_SKEW,
    earliest_clinical_date,
    earliest_clinical_moment,
    validate_clinical_date,
    validate_clinical_date_may_be_future,
)


def clinical_date_fields() -> list[tuple[type[models.Model], models.Field, bool]]:
    """(model, field, may_be_future) for every date or date-time field with a clinical-date validator."""
    found = []
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if not isinstance(field, models.DateField):
                continue
            if validate_clinical_date in field.validators:
                found.append((model, field, False))
            elif validate_clinical_date_may_be_future in field.validators:
                found.append((model, field, True))
    return found


class Command(BaseCommand):
    help = "List stored clinical dates before the earliest clinical year or in the future; exit 1 if any."

    def handle(self, *args, **options) -> None:
        problems = 0
        for model, field, may_be_future in clinical_date_fields():
            if isinstance(field, models.DateTimeField):
                low: datetime | object = earliest_clinical_moment()
                high = timezone.now() + CLOCK_SKEW
            else:
                low, high = earliest_clinical_date(), timezone.localdate() + timedelta(days=0)
            condition = Q(**{f"{field.name}__lt": low})
            if not may_be_future:
                condition |= Q(**{f"{field.name}__gt": high})
            # values_list of the raw column: a year-1 date-time is read as text, never converted to a zone.
            rows = model._default_manager.filter(condition).order_by("pk")
            for pk, value in rows.values_list("pk", field.name).iterator():
                problems += 1
                shown = value.isoformat() if hasattr(value, "isoformat") else value
                self.stdout.write(f"{model._meta.label} {pk} {field.name} {shown}")
        if problems:
            self.stdout.write(
                f"{problems} clinical date(s) out of range (before {earliest_clinical_date().year} or future)."
            )
            sys.exit(1)
        self.stdout.write("No clinical date out of range.")
