"""Selectors for the staff pages (issue #7): the clinic dashboard on the admin home, a nurse's work list and
the patient page.

Read-only. Every selector is scoped to the user's clinics and runs a fixed number of queries whatever the
amount of data (``tests/ui/test_query_counts.py`` holds them to it). Dependencies point one way: this module
reads patients, anticoag and scheduling; nothing below it imports it.

Decisions where the issue was silent:

* **Due today / this week / overdue** are the nurses' digest sections (``scheduling.calendar.digest_window``):
  overdue = due before today, this week = the 7 days after today; "today" is each clinic's own day in its
  time zone. Open items of inactive patients are left out, as in the digest. Rows are per primary nurse
  (patients without one under "No primary nurse").
* **An urgent alert is open** while what it is about has not been dealt with: a critical-INR alert until a
  later INR of that patient is recorded; a deterioration alert (urgent imaging) or a renal alert while one of
  its follow-up items is still scheduled. Only alerts of the last :data:`URGENT_ALERT_DAYS` days are listed
  (older open items still count as overdue above). Reminders have no "acknowledged" flag: dealing with the
  cause is the acknowledgement, and nothing has to be clicked away.
* **TTR distribution**: the per-patient Rosendaal TTR of the last :data:`TTR_PERIOD_MONTHS` months from
  :func:`anticoag.inr.clinic_ttr_report`, in 10-point bins; **lost to follow-up** comes from the same report
  (warfarin patients with no INR for more than 56 days, reference §6).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from dateutil.relativedelta import relativedelta
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.fields.json import KeyTextTransform
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from anticoag.inr import clinic_today, clinic_ttr_reports, clinic_zone, inr_advice_for_patient, inr_position
from anticoag.models import InrReading, Plan, PlanDecision, PlanStatus, WarfarinDose
from patients.models import Clinic, CvtEpisode, Patient
from patients.scoping import clinic_ids_for, scope_to_user_clinics
from scheduling import calendar
from scheduling.follow_ups import IMAGING_KINDS
from scheduling.models import FollowUp, FollowUpKind, FollowUpStatus, Reminder, ReminderKind, open_due_on
from scheduling.outbox_status import outbox_figures

from .dashboard_dna import dna_rates

#: Urgent alerts older than this are not listed on the dashboard.
URGENT_ALERT_DAYS = 30
#: Rows shown per dashboard list; the list's own page has the rest.
LIST_LIMIT = 20
#: The TTR distribution covers this many months up to today.
TTR_PERIOD_MONTHS = 6
#: The TTR section reads every INR of the last six months in the user's clinics: seconds at network scale
#: (issue 9: 2,000,000 readings). It is cached per clinic set and clinic day for up to this long, and
#: recomputed at once when a reading, a plan decision or a patient is added or saved (the cache key holds the
#: latest of each); a reading edited or deleted in place shows within this time.
QUALITY_CACHE_SECONDS = 300
#: The patient page: INR readings and doses of this many months are charted and listed.
PATIENT_HISTORY_MONTHS = 12
#: The patient page shows at most this many readings, follow-ups and timeline entries.
PATIENT_ROWS_LIMIT = 300
TIMELINE_LIMIT = 150

#: Words for the urgent alert codes (anticoag.monitoring, scheduling.follow_ups).
ALERT_LABELS = {
    "inr_critical": "Critical INR (above 9.0, or bleeding)",
    "inr_high": "INR 5.0–9.0: hold warfarin, retest in 1–3 days",
    "deterioration": "Neurological deterioration: urgent repeat CT/MRI",
    "renal_doac_contraindicated": "CrCl 30 mL/min or less on a DOAC",
}

SECTIONS = ("overdue", "today", "week")
SECTION_LABELS = {"overdue": "Overdue", "today": "Due today", "week": "Due in the next 7 days"}


# ---------------------------------------------------------------------------------------------------------------
# Clinics and their days
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClinicDay:
    """A clinic with its own today (in its time zone) and the end of its 7-day window."""

    clinic: Clinic
    today: date
    week_end: date


def user_clinics(user) -> list[Clinic]:
    """The clinics the user works in (all for an administrator). One query."""
    ids = clinic_ids_for(user)
    clinics = Clinic.objects.order_by("name")
    if ids is not None:
        clinics = clinics.filter(pk__in=ids)
    return list(clinics)


def clinic_days(clinics: list[Clinic]) -> list[ClinicDay]:
    days = []
    for clinic in clinics:
        window = calendar.digest_window(clinic_today(clinic))
        days.append(ClinicDay(clinic=clinic, today=window.today, week_end=window.week_end))
    return days


def due_q(section: str, days: list[ClinicDay], prefix: str = "") -> Q:
    """Follow-ups in a digest ``section`` ("overdue", "today", "week", or "due" for all three) by each
    clinic's own today. ``prefix`` reaches the follow-up from another model. Needs at least one clinic."""
    condition = Q()
    for day in days:
        if section == "overdue":
            dates = Q(**{f"{prefix}due_on__lt": day.today})
        elif section == "today":
            dates = Q(**{f"{prefix}due_on": day.today})
        elif section == "week":
            dates = Q(**{f"{prefix}due_on__gt": day.today, f"{prefix}due_on__lte": day.week_end})
        elif section == "due":
            dates = Q(**{f"{prefix}due_on__lte": day.week_end})
        else:
            raise ValueError(f"unknown section {section!r}")
        condition |= Q(**{f"{prefix}patient__clinic_id": day.clinic.pk}) & dates
    return condition


def open_follow_ups() -> QuerySet[FollowUp]:
    """Scheduled items of active patients: what the work lists (and the digest) show."""
    return FollowUp.objects.filter(status=FollowUpStatus.SCHEDULED, patient__active=True)


def section_of(due_on: date, today: date) -> str | None:
    return calendar.digest_window(today).section(due_on)


def overdue_text(due_on: date, today: date) -> str:
    """An open item's lateness in words, so it reads without colour: "Overdue by 3 days", "Due today"."""
    days = (today - due_on).days
    if days > 0:
        return f"Overdue by {days} day{'s' if days != 1 else ''}"
    if days == 0:
        return "Due today"
    return f"Due in {-days} day{'s' if days != -1 else ''}"


def _follow_up_list_url(**params: Any) -> str:
    return reverse("admin:scheduling_followup_changelist") + "?" + urlencode(params)


# ---------------------------------------------------------------------------------------------------------------
# The dashboard
# ---------------------------------------------------------------------------------------------------------------


def work_by_nurse(*, days: list[ClinicDay]) -> dict[str, Any]:
    """Open items overdue, due today and due in the next 7 days, per primary nurse. One query."""
    if not days:
        return {"rows": [], "totals": dict.fromkeys(SECTIONS, 0)}
    conditions = {section: due_q(section, days) for section in SECTIONS}
    rows = (
        open_follow_ups()
        # The first filter is implied by the second; on the indexed expression of open items' due dates it
        # lets the planner see how few they are (scheduling.models.open_due_on) and read them by index.
        .alias(open_due_on=open_due_on())
        .filter(open_due_on__lte=max(day.week_end for day in days))
        .filter(due_q("due", days))
        .values(
            "patient__primary_nurse_id",
            "patient__primary_nurse__username",
            "patient__primary_nurse__first_name",
            "patient__primary_nurse__last_name",
        )
        .annotate(**{section: Count("pk", filter=condition) for section, condition in conditions.items()})
        .order_by()
    )
    result = []
    for row in rows:
        nurse_id = row["patient__primary_nurse_id"]
        if nurse_id is None:
            name, params = "No primary nurse", {"patient__primary_nurse__isnull": "True"}
        else:
            full = f"{row['patient__primary_nurse__first_name']} {row['patient__primary_nurse__last_name']}".strip()
            name, params = (
                full or row["patient__primary_nurse__username"],
                {"patient__primary_nurse__id__exact": nurse_id},
            )
        result.append(
            {
                "nurse_id": nurse_id,
                "name": name,
                "counts": [
                    {
                        "section": s,
                        "label": SECTION_LABELS[s],
                        "count": row[s],
                        "url": _follow_up_list_url(due=s, **params),
                    }
                    for s in SECTIONS
                ],
                "overdue": row["overdue"],
            }
        )
    result.sort(key=lambda r: (r["nurse_id"] is None, r["name"].lower()))
    totals = {section: sum(row[section] for row in rows) for section in SECTIONS}
    return {"rows": result, "totals": totals}


def open_urgent_alerts(*, user, now: datetime | None = None, limit: int = LIST_LIMIT) -> dict[str, Any]:
    """Urgent alerts of the last 30 days whose cause is not dealt with yet (see the module docstring).
    Two queries (the alerts, then their follow-ups with patients)."""
    now = now or timezone.now()
    later_inr = InrReading.objects.filter(
        patient_id=OuterRef("inr_reading__patient_id"), drawn_at__gt=OuterRef("inr_reading__drawn_at")
    )
    open_item = FollowUp.objects.filter(reminders=OuterRef("pk"), status=FollowUpStatus.SCHEDULED)
    alerts = (
        scope_to_user_clinics(Reminder.objects.all(), user, "clinic")
        .filter(kind=ReminderKind.URGENT, created_at__gte=now - timedelta(days=URGENT_ALERT_DAYS))
        # One row per event: the alert address's copy (the care team's copies of it have a recipient user).
        .filter(recipient_user__isnull=True)
        .annotate(superseded=Exists(later_inr), has_open_item=Exists(open_item))
        .filter(Q(inr_reading__isnull=False, superseded=False) | Q(inr_reading__isnull=True, has_open_item=True))
        .select_related("clinic", "inr_reading__patient")
        .prefetch_related(
            Prefetch(
                "follow_ups",
                queryset=FollowUp.objects.filter(status=FollowUpStatus.SCHEDULED).select_related("patient"),
                to_attr="open_items",
            )
        )
        .order_by("-created_at", "-pk")[: limit + 1]
    )
    rows = []
    for alert in alerts:
        reading = alert.inr_reading
        patient = reading.patient if reading else (alert.open_items[0].patient if alert.open_items else None)
        if reading is not None:
            drawn_on = timezone.localtime(reading.drawn_at, clinic_zone(alert.clinic)).date()
            detail = f"INR {inr_shown(reading.value)} drawn {drawn_on.isoformat()}"
        else:
            detail = "; ".join(f"{item.get_kind_display()} due {item.due_on.isoformat()}" for item in alert.open_items)
        rows.append(
            {
                "reminder": alert,
                "label": ALERT_LABELS.get(alert.reason, alert.reason or "Urgent alert"),
                "patient": patient,
                "patient_url": reverse("admin:patients_patient_change", args=[patient.pk]) if patient else "",
                "detail": detail,
                "raised_at": alert.created_at,
                "delivery": alert.get_status_display(),
            }
        )
    return {"rows": rows[:limit], "more": len(rows) > limit, "days": URGENT_ALERT_DAYS}


def quality_periods(days: list[ClinicDay]) -> list[tuple]:
    """The dashboard's TTR period per clinic: the last :data:`TTR_PERIOD_MONTHS` months to the clinic's today,
    lost to follow-up judged at the end of today."""
    return [(d.clinic, d.today - relativedelta(months=TTR_PERIOD_MONTHS), d.today, d.today) for d in days]


def refresh_quality_snapshots(clinics: list[Clinic] | None = None) -> int:
    """Beat's ``clinic.refresh_quality``: bring every clinic's quality snapshot (:mod:`anticoag.ttr_snapshot`)
    to its current day and changes, so that the day's first dashboard finds it ready: one transaction, one
    scan of the readings for all the clinics whose day changed. A clinic already current costs a few small
    queries. Returns the clinics visited."""
    from anticoag import ttr_snapshot

    if not ttr_snapshot.enabled():  # no snapshots on SQLite: the dashboard computes the figures itself
        return 0
    clinics = list(Clinic.objects.order_by("pk")) if clinics is None else clinics
    if clinics:
        clinic_ttr_reports(periods=quality_periods(clinic_days(clinics)), snapshot=True)
    return len(clinics)


def ttr_and_lost(*, days: list[ClinicDay], limit: int = LIST_LIMIT) -> dict[str, Any]:
    """The clinics' TTR distribution (last 6 months) and the warfarin patients lost to follow-up.

    :func:`anticoag.inr.clinic_ttr_reports` for all the clinics, from the quality snapshots on PostgreSQL
    (:mod:`anticoag.ttr_snapshot`: only what changed is computed again), then one query for the lost
    patients' pages."""
    bins = [0] * 10
    ttrs: list[float] = []
    clinics: list[dict[str, Any]] = []
    lost_keys: list[tuple[int, str]] = []
    warfarin_patients = lost_total = 0
    reports = clinic_ttr_reports(periods=quality_periods(days), snapshot=True)
    for day in days:
        report = reports[day.clinic.pk]
        for ttr in report["ttr_percents"]:
            if ttr is not None:
                ttrs.append(ttr)
                bins[min(int(ttr // 10), 9)] += 1
        warfarin_patients += report["warfarin_patients"]
        lost_total += report["lost_to_follow_up"]
        lost_keys += [(day.clinic.pk, mrn) for mrn in report["lost_to_follow_up_mrns"]]
        clinics.append(
            {
                "clinic": day.clinic,
                "median": report["median_ttr_percent"],
                "meets_target": report["median_meets_target"],
                "share_at_or_above_65": report["share_at_or_above_65_percent"],
                "patients_with_ttr": report["patients_with_ttr"],
                "lost": report["lost_to_follow_up"],
                "lost_percent": report["lost_to_follow_up_percent"],
                "lost_meets_target": report["lost_to_follow_up_meets_target"],
                "warfarin_patients": report["warfarin_patients"],
            }
        )
    lost_patients: list[Patient] = []
    if lost_keys:
        shown = lost_keys[:limit]
        condition = Q()
        for clinic_id, mrn in shown:
            condition |= Q(clinic_id=clinic_id, mrn=mrn)
        last_inr = InrReading.objects.filter(patient=OuterRef("pk")).order_by("-drawn_at").values("drawn_at")[:1]
        lost_patients = list(
            Patient.objects.filter(condition)
            .select_related("primary_nurse")
            .annotate(last_inr_at=Subquery(last_inr))
            .order_by("last_inr_at", "mrn")
        )
    labels = [f"{low}–{low + 10} %" for low in range(0, 100, 10)]
    histogram = [{"label": label, "count": count} for label, count in zip(labels, bins, strict=True)]
    return {
        "histogram": histogram,
        "histogram_text": "; ".join(f"{row['label']}: {row['count']} patient(s)" for row in histogram),
        "chart": {"labels": labels, "counts": bins, "target": 65},
        "patients_with_ttr": len(ttrs),
        "clinics": clinics,
        "months": TTR_PERIOD_MONTHS,
        "lost_patients": lost_patients,
        "lost_total": lost_total,
        "lost_more": lost_total > len(lost_patients),
        "warfarin_patients": warfarin_patients,
    }


def _quality_version() -> tuple:
    """The latest INR reading, plan decision and patient change: one query on three indexed maxima."""
    tables = (InrReading._meta.db_table, PlanDecision._meta.db_table, Patient._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT MAX(id) FROM {tables[0]}), (SELECT MAX(id) FROM {tables[1]}), "
            f"(SELECT MAX(updated_at) FROM {tables[2]})"
        )
        return tuple(str(value) for value in cursor.fetchone())


def cached_ttr_and_lost(*, days: list[ClinicDay]) -> dict[str, Any]:
    """:func:`ttr_and_lost`, cached (see ``QUALITY_CACHE_SECONDS``)."""
    parts = [f"{day.clinic.pk}@{day.today.isoformat()}" for day in days] + list(_quality_version())
    key = "dashboard-quality:" + hashlib.sha256("|".join(parts).encode()).hexdigest()
    quality = cache.get(key)
    if quality is None:
        quality = ttr_and_lost(days=days)
        cache.set(key, quality, QUALITY_CACHE_SECONDS)
    return quality


def pending_plans(*, user, limit: int = LIST_LIMIT) -> dict[str, Any]:
    """Plans proposed or needing review, oldest first. One query."""
    plans = list(
        scope_to_user_clinics(Plan.objects.all(), user, "episode__patient__clinic")
        .filter(status__in=[PlanStatus.PROPOSED, PlanStatus.REVIEW])
        .select_related("episode__patient")
        # Only the category of the (large) proposal JSON: no facts, proposal or changes decoded per row.
        .defer("facts", "proposal", "changes")
        .annotate(proposal_category=KeyTextTransform("category", "proposal"))
        .order_by("computed_at", "pk")[: limit + 1]
    )
    for plan in plans:
        plan.category_label = (plan.proposal_category or "").replace("_", " ")
    return {
        "rows": plans[:limit],
        "more": len(plans) > limit,
        "list_url": reverse("admin:anticoag_plan_changelist") + "?status__in=proposed,review",
    }


def clinic_dashboard(*, user) -> dict[str, Any]:
    """Everything the admin home shows, each part only for users who may see its records."""
    clinics = user_clinics(user)
    days = clinic_days(clinics)
    dashboard: dict[str, Any] = {"clinics": clinics, "days": days}
    if user.has_perm("scheduling.view_followup"):
        dashboard["work"] = work_by_nurse(days=days)
        dashboard["my_work_url"] = reverse("admin:scheduling_followup_my_work")
    if user.has_perm("scheduling.view_reminder"):
        dashboard["alerts"] = open_urgent_alerts(user=user)
    if user.has_perm("anticoag.view_inrreading"):
        dashboard["quality"] = cached_ttr_and_lost(days=days)
    if user.has_perm("anticoag.view_plan"):
        dashboard["plans"] = pending_plans(user=user)
    if user.is_superuser:
        dashboard["outbox_alarm"] = outbox_alarm()
    if user.has_perm("scheduling.view_followup"):
        dashboard["dna"] = dna_rates(days=days)  # clinic/dashboard_dna.py
    return dashboard


def outbox_alarm() -> dict[str, Any] | None:
    """The administrators' banner (issue 19): urgent alerts not delivered, or reminders refused for good.
    None when neither; all clinics (administrators see them all). Two queries."""
    figures = outbox_figures()
    if not (figures.urgent_undelivered or figures.failed):
        return None
    outbox_url = reverse("admin:scheduling_reminder_changelist")
    return {
        "urgent_undelivered": figures.urgent_undelivered,
        "failed": figures.failed,
        "failed_window_days": max(figures.thresholds.failed_window_hours // 24, 1),
        "urgent_url": outbox_url + "?" + urlencode({"kind__exact": ReminderKind.URGENT, "status__exact": "pending"}),
        "failed_url": outbox_url + "?" + urlencode({"status__exact": "failed"}),
    }


# ---------------------------------------------------------------------------------------------------------------
# The patient page
# ---------------------------------------------------------------------------------------------------------------


def inr_shown(value: Decimal) -> str:
    """The INR as staff write it: one decimal unless the second one says something (2.60 → 2.6, 3.04)."""
    tenth = value.quantize(Decimal("0.1"))
    return str(tenth if tenth == value else value)


def inr_words(value: Decimal) -> tuple[str, str]:
    """(symbol and words, position) so an INR reads without colour: ("▲ above range", "above")."""
    position = inr_position(value)
    return {"above": "▲ above range", "below": "▼ below range", "in": "in range"}[position], position


def _dose_changes(doses: list[WarfarinDose]) -> list[tuple[WarfarinDose, str]]:
    """Doses (oldest first) that changed something: the first one, a hold, or a different weekly dose."""
    changes = []
    previous: WarfarinDose | None = None
    for dose in doses:
        if previous is None:
            what = f"Warfarin {dose.weekly_dose_mg:g} mg/week"
        elif dose.hold_doses or dose.weekly_dose_mg != previous.weekly_dose_mg:
            what = f"Dose {previous.weekly_dose_mg:g} → {dose.weekly_dose_mg:g} mg/week"
        else:
            what = ""
        if dose.hold_doses:
            what += f", hold {dose.hold_doses} dose{'s' if dose.hold_doses != 1 else ''}"
        if what:
            changes.append((dose, what))
        previous = dose
    return changes


def patient_page(*, patient: Patient) -> dict[str, Any]:
    """The patient's clinical picture: summary (latest INR, TTR, next test), INR chart data, plans with their
    decisions, open follow-ups and a timeline. Seven queries, whatever the patient's history."""
    clinic = patient.clinic
    zone = clinic_zone(clinic)
    today = clinic_today(clinic)
    since = timezone.now() - relativedelta(months=PATIENT_HISTORY_MONTHS)

    advice = inr_advice_for_patient(patient=patient)  # two queries
    readings = list(
        InrReading.objects.filter(patient=patient, drawn_at__gte=since).order_by("-drawn_at", "-pk")[
            :PATIENT_ROWS_LIMIT
        ]
    )[::-1]
    doses = list(
        WarfarinDose.objects.filter(patient=patient, starts_on__gte=since.astimezone(zone).date()).order_by(
            "starts_on", "pk"
        )[:PATIENT_ROWS_LIMIT]
    )
    episodes = list(
        CvtEpisode.objects.filter(patient=patient)
        .select_related("plan")
        .prefetch_related(
            Prefetch(
                "plan__decisions",
                queryset=PlanDecision.objects.select_related("decided_by").order_by("-decided_at", "-pk"),
            )
        )
        .order_by("-diagnosed_on", "-pk")
    )
    follow_ups = list(FollowUp.objects.filter(patient=patient).order_by("-due_on", "-pk")[:PATIENT_ROWS_LIMIT])

    # --- INR chart ----------------------------------------------------------------------------------------
    points = []
    for reading in readings:
        words, position = inr_words(reading.value)
        local = reading.drawn_at.astimezone(zone)
        points.append(
            {
                "x": int(reading.drawn_at.timestamp() * 1000),
                # The clinic's wall clock (no offset): the chart places it on the browser's calendar as is, so
                # a reading sits on its clinic day whatever the zone of the computer showing the page.
                "t": f"{local:%Y-%m-%dT%H:%M:%S}",
                "y": float(reading.value),
                "position": position,
                "label": f"{local:%Y-%m-%d %H:%M}: INR {inr_shown(reading.value)} ({words})"
                + (", bleeding reported" if reading.bleeding else ""),
            }
        )
    changes = _dose_changes(doses)
    markers = [
        {
            "x": int(datetime.combine(dose.starts_on, datetime.min.time(), tzinfo=zone).timestamp() * 1000),
            "t": f"{dose.starts_on.isoformat()}T00:00:00",
            "label": f"{dose.starts_on.isoformat()}: {what}",
        }
        for dose, what in changes
    ]
    above = sum(1 for p in points if p["position"] == "above")
    below = sum(1 for p in points if p["position"] == "below")
    chart_summary = (
        f"INR chart: {len(points)} reading(s) in the last {PATIENT_HISTORY_MONTHS} months"
        + (f", {above} above and {below} below the target range 2.0–3.0 (shaded)" if points else "")
        + (f"; {len(markers)} dose change(s) marked by dashed vertical lines" if markers else "")
        + ". The readings are listed in the timeline below."
    )
    chart = {"points": points, "doses": markers, "band": [2.0, 3.0]}

    # --- Summary ------------------------------------------------------------------------------------------
    open_items = sorted((f for f in follow_ups if f.status == FollowUpStatus.SCHEDULED), key=lambda f: (f.due_on, f.pk))
    next_inr = next((f for f in open_items if f.kind == FollowUpKind.INR_TEST), None)
    latest = readings[-1] if readings else None
    summary = {
        "latest": latest,
        "latest_value": inr_shown(latest.value) if latest else "",
        "latest_words": inr_words(latest.value)[0] if latest else "",
        "latest_position": inr_words(latest.value)[1] if latest else "",
        "latest_on": latest.drawn_at.astimezone(zone).date() if latest else None,
        "ttr_percent": advice["ttr_percent"] if advice else None,
        "ttr_days": advice["days_total"] if advice else None,
        "phase": advice["phase"] if advice else None,
        "next_inr_on": next_inr.due_on
        if next_inr
        else (date.fromisoformat(advice["next_test_on"]) if advice else None),
        "next_inr_scheduled": next_inr is not None,
        "next_inr_text": overdue_text(next_inr.due_on, today) if next_inr else "",
        "next_inr_overdue": bool(next_inr and next_inr.due_on < today),
        "weekly_dose_mg": doses[-1].weekly_dose_mg if doses else None,
        "alerts": advice["alerts"] if advice else [],
        "advice": advice,
    }

    # --- Plans --------------------------------------------------------------------------------------------
    plans = []
    for episode in episodes:
        plan = getattr(episode, "plan", None)  # select_related: no query; None when not computed yet
        decisions = list(plan.decisions.all()) if plan else []
        plans.append({"episode": episode, "plan": plan, "decision": decisions[0] if decisions else None})

    # --- Open follow-ups ----------------------------------------------------------------------------------
    open_rows = [
        {
            "item": item,
            "imaging": item.kind in IMAGING_KINDS,
            "needs_recanalization": item.kind == FollowUpKind.VENOUS_IMAGING,
            "overdue": item.due_on < today,
            "when": overdue_text(item.due_on, today),
        }
        for item in open_items
    ]

    # --- Timeline (newest first) --------------------------------------------------------------------------
    entries: list[dict[str, Any]] = []
    for episode in episodes:
        entries.append(
            {"on": episode.diagnosed_on, "kind": "Episode", "text": "CVT diagnosed", "flag": "", "tone": "episode"}
        )
    for row in plans:
        plan, decision = row["plan"], row["decision"]
        if plan is None:
            continue
        entries.append(
            {
                "on": plan.computed_at.astimezone(zone).date(),
                "kind": "Plan",
                "text": f"Plan proposed: {plan.category.replace('_', ' ')} (rules {plan.rules_version})",
                "flag": plan.get_status_display() if plan.status != PlanStatus.CONFIRMED else "",
                "tone": "plan",
            }
        )
        for decision in plan.decisions.all():
            overridden = f"; overridden: {', '.join(decision.overridden)}" if decision.overridden else ""
            entries.append(
                {
                    "on": decision.decided_at.astimezone(zone).date(),
                    "kind": "Decision",
                    "text": f"{decision.get_agent_display()} confirmed by {decision.decided_by}{overridden}",
                    "flag": "",
                    "tone": "plan",
                }
            )
    for reading in readings:
        words, position = inr_words(reading.value)
        entries.append(
            {
                "on": reading.drawn_at.astimezone(zone).date(),
                "kind": "INR",
                "text": f"INR {inr_shown(reading.value)} ({reading.get_source_display().lower()})"
                + (", bleeding reported" if reading.bleeding else ""),
                "flag": words,
                "tone": position,
            }
        )
    for dose, what in changes:
        entries.append({"on": dose.starts_on, "kind": "Dose", "text": what, "flag": "", "tone": "dose"})
    for item in follow_ups:
        if item.status == FollowUpStatus.DONE and item.completed_on:
            result = f" ({item.get_recanalization_display().lower()})" if item.recanalization else ""
            entries.append(
                {"on": item.completed_on, "kind": "Follow-up", "text": f"{item.get_kind_display()} done{result}",
                 "flag": "", "tone": "done"}
            )  # fmt: skip
        elif item.status == FollowUpStatus.SCHEDULED:
            late = item.due_on < today
            entries.append(
                {"on": item.due_on, "kind": "Follow-up", "text": f"{item.get_kind_display()} due",
                 "flag": overdue_text(item.due_on, today) if late else "", "tone": "overdue" if late else "due"}
            )  # fmt: skip
        else:
            entries.append(
                {"on": item.due_on, "kind": "Follow-up", "text": f"{item.get_kind_display()} {item.get_status_display().lower()}",
                 "flag": "", "tone": "muted"}
            )  # fmt: skip
    order = {"Episode": 0, "Plan": 1, "Decision": 2, "INR": 3, "Dose": 4, "Follow-up": 5}
    entries.sort(key=lambda e: (e["on"], order[e["kind"]]), reverse=True)

    return {
        "today": today,
        "summary": summary,
        "chart": chart,
        "chart_summary": chart_summary,
        "plans": plans,
        "open_follow_ups": open_rows,
        "timeline": entries[:TIMELINE_LIMIT],
        "timeline_more": len(entries) > TIMELINE_LIMIT,
        "history_months": PATIENT_HISTORY_MONTHS,
        "lists": {
            "inr": reverse("admin:anticoag_inrreading_changelist") + "?" + urlencode({"q": patient.mrn}),
            "follow_ups": reverse("admin:scheduling_followup_changelist") + "?" + urlencode({"q": patient.mrn}),
        },
    }
