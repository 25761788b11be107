"""The dashboard's DNA rate: INR tests missed ("did not attend", :mod:`scheduling.missed_tests`) per clinic."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Count, Q

from anticoag.models import WarfarinDose
from scheduling.missed_tests import DNA_ESCALATED_RULE, DNA_RECALL_RULE
from scheduling.models import FollowUp, FollowUpKind, FollowUpStatus

#: The rate is over the INR tests due in the last this-many days.
DNA_PERIOD_DAYS = 90


def dna_rates(*, days: list) -> dict[str, Any]:
    """Per clinic (``days``: :class:`clinic.dashboard.ClinicDay`): INR tests due in the period and closed
    (done or missed), how many were missed, the rate, and the open recalls; and the dose decisions' deviation
    rate. Two queries."""
    if not days:
        return {}
    condition = Q()
    for day in days:
        condition |= Q(
            patient__clinic_id=day.clinic.pk,
            due_on__gt=day.today - timedelta(days=DNA_PERIOD_DAYS),
            due_on__lte=day.today,
        )
    counts = {
        row["patient__clinic_id"]: row
        for row in FollowUp.objects.filter(condition, kind=FollowUpKind.INR_TEST)
        .values("patient__clinic_id")
        .annotate(
            closed=Count("pk", filter=Q(status__in=[FollowUpStatus.DONE, FollowUpStatus.MISSED])),
            missed=Count("pk", filter=Q(status=FollowUpStatus.MISSED)),
            recalls=Count(
                "pk",
                filter=Q(status=FollowUpStatus.SCHEDULED, rule__in=[DNA_RECALL_RULE, DNA_ESCALATED_RULE]),
            ),
        )
    }
    # Reference §4 (rev 2): "the clinic can report its deviation rate" — dose decisions that departed from
    # a suggestion, among those made with one, over the same period.
    since = min(day.today for day in days) - timedelta(days=DNA_PERIOD_DAYS)
    deviations = {
        row["patient__clinic_id"]: row
        for row in WarfarinDose.objects.filter(
            patient__clinic_id__in=[day.clinic.pk for day in days],
            suggested_weekly_dose_mg__isnull=False,
            starts_on__gt=since,
        )
        .values("patient__clinic_id")
        .annotate(decided=Count("pk"), departed=Count("pk", filter=Q(followed_suggestion=False)))
    }
    clinics = []
    for day in days:
        row = counts.get(day.clinic.pk, {"closed": 0, "missed": 0, "recalls": 0})
        deviation = deviations.get(day.clinic.pk, {"decided": 0, "departed": 0})
        clinics.append(
            {
                "clinic": day.clinic,
                "closed": row["closed"],
                "missed": row["missed"],
                "recalls": row["recalls"],
                "rate": (100 * row["missed"] / row["closed"]) if row["closed"] else None,
                "decided": deviation["decided"],
                "departed": deviation["departed"],
                "deviation_rate": (100 * deviation["departed"] / deviation["decided"])
                if deviation["decided"]
                else None,
            }
        )
    after = sorted({day.clinic.dna_after_days for day in days})
    return {
        "days": DNA_PERIOD_DAYS,
        "clinics": clinics,
        "after_days_text": " or ".join(f"{n} days" for n in after),
    }
