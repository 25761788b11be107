"""The patients list's clinical columns: latest INR, next INR test, agent, TTR and plan status.

The first four come from correlated subqueries on the list's own query; TTR (Rosendaal, reference §6, over the
last :data:`TTR_MONTHS` months) is computed for the page's patients from one query of their readings. The
list's query count does not grow with the number of patients (tested at 10 and 200).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from dateutil.relativedelta import relativedelta
from django.contrib import admin
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone
from django.utils.html import format_html

from anticoag import monitoring
from anticoag.inr import TARGET_HIGH, TARGET_LOW, clinic_zone, inr_position, monitoring_policy
from anticoag.models import InrReading, Plan, PlanDecision
from scheduling.models import FollowUp, FollowUpKind, FollowUpStatus

#: TTR over this many months (as the dashboard's TTR distribution).
TTR_MONTHS = 6

COLUMNS = ["latest_inr", "next_inr", "agent", "ttr", "plan_status"]


def patient_list_annotate(queryset: QuerySet) -> QuerySet:
    """The columns' values as annotations of the patients' query (one query in all)."""
    latest = InrReading.objects.filter(patient=OuterRef("pk")).order_by("-drawn_at", "-pk")
    return queryset.annotate(
        latest_inr_value=Subquery(latest.values("value")[:1]),
        latest_inr_at=Subquery(latest.values("drawn_at")[:1]),
        next_inr_on=Subquery(
            FollowUp.objects.filter(patient=OuterRef("pk"), kind=FollowUpKind.INR_TEST, status=FollowUpStatus.SCHEDULED)
            .order_by("due_on", "pk")
            .values("due_on")[:1]
        ),
        current_agent=Subquery(
            PlanDecision.objects.filter(plan__episode__patient=OuterRef("pk"))
            .order_by("-decided_at", "-pk")
            .values("agent")[:1]
        ),
        plan_status=Subquery(
            Plan.objects.filter(episode__patient=OuterRef("pk"))
            .order_by("-episode__diagnosed_on", "-pk")
            .values("status")[:1]
        ),
    )


def patients_ttr(patients: list[Any]) -> dict[int, float | None]:
    """Patient id → Rosendaal TTR % over the last :data:`TTR_MONTHS` months, from one query."""
    if not patients:
        return {}
    since = timezone.now() - relativedelta(months=TTR_MONTHS)
    points: dict[int, list[monitoring.InrPoint]] = defaultdict(list)
    zones = {p.pk: clinic_zone(p.clinic) for p in patients}
    for patient_id, drawn_at, value in (
        InrReading.objects.filter(patient_id__in=zones, drawn_at__gte=since)
        .order_by("patient_id", "drawn_at", "pk")
        .values_list("patient_id", "drawn_at", "value")
    ):
        points[patient_id].append(monitoring.InrPoint(drawn_at.astimezone(zones[patient_id]), float(value)))
    policy = monitoring_policy()
    result: dict[int, float | None] = {}
    for patient_id in zones:
        if len(points[patient_id]) < 2:
            result[patient_id] = None
            continue
        ttr = monitoring.rosendaal_ttr(
            points[patient_id],
            TARGET_LOW,
            TARGET_HIGH,
            max_gap_days=policy.ttr_max_gap_days,
            inclusive=policy.ttr_inclusive,
        )
        result[patient_id] = ttr.ttr_percent
    return result


class PatientListColumns:
    """Mixin for the patients' model admin: the clinical columns of the list."""

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.url_name == "patients_patient_changelist":
            queryset = patient_list_annotate(queryset)
        return queryset

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        # The page's patients are read once here; the template iterates the same cached objects.
        page = list(changelist.result_list)
        ttrs = patients_ttr(page)
        for patient in page:
            patient.ttr_percent = ttrs.get(patient.pk)
        return changelist

    @admin.display(description="Latest INR")
    def latest_inr(self, patient) -> str:
        value = getattr(patient, "latest_inr_value", None)
        if value is None:
            return "—"
        position = inr_position(value)
        symbol = {"above": "▲ ", "below": "▼ ", "in": ""}[position]
        drawn_on = patient.latest_inr_at.astimezone(clinic_zone(patient.clinic)).date()
        return format_html(
            '<span class="clinic-inr clinic-inr-{}">{}{}</span> <small>{}</small>',
            position,
            symbol,
            value.normalize() if value == value.quantize(value.__class__("0.1")) else value,
            drawn_on.isoformat(),
        )

    @admin.display(description="Next INR test", ordering="next_inr_on")
    def next_inr(self, patient) -> str:
        due = getattr(patient, "next_inr_on", None)
        return due.isoformat() if due else "—"

    @admin.display(description="Agent")
    def agent(self, patient) -> str:
        from anticoag.models import Agent

        code = getattr(patient, "current_agent", None)
        return Agent(code).label if code in Agent.values else "—"

    @admin.display(description="TTR (6 months)")
    def ttr(self, patient) -> str:
        value = getattr(patient, "ttr_percent", None)
        return "—" if value is None else f"{value:.0f} %"

    @admin.display(description="Plan")
    def plan_status(self, patient) -> str:
        from anticoag.models import PlanStatus

        code = getattr(patient, "plan_status", None)
        return PlanStatus(code).label if code in PlanStatus.values else "—"
