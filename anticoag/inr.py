"""INR readings and warfarin doses: recording, advice, TTR and CSV import (reference §4 and §6, issue #4).

Keyword-only services named ``<thing>_<action>``. The maths is :mod:`anticoag.monitoring` (pure); this module
feeds it the patient's rows and stores what staff enter. It never imports ``scheduling``: it announces what
happened with the :data:`inr_recorded` and :data:`warfarin_dose_recorded` signals, and scheduling listens
(next INR test, critical-INR alert).

Both signals are sent **inside** the transaction that stored the rows, so the reading, its follow-up item and
its urgent alert row commit together or not at all: sending them after commit could lose a critical-INR
alert if the process died in between. (The outbox itself enqueues the e-mail only after commit.)
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from itertools import groupby
from typing import Any

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Max, OuterRef, Q, Subquery
from django.db.models.functions import Lower
from django.dispatch import Signal
from django.utils import timezone

from patients.dates import clinical_date_problem, earliest_clinical_date
from patients.models import Clinic, Patient

from . import monitoring, rules
from .models import INR_MAX, INR_MIN, Agent, InrReading, InrSource, PlanDecision, WarfarinDose

#: Sent after INR readings were stored (``patient``, ``readings``: the new or changed rows of that patient),
#: inside the storing transaction; once per patient for a CSV import. Scheduling listens.
inr_recorded = Signal()

#: Sent once after a CSV import stored the readings of many patients (``patients``; ``readings``: patient id →
#: its new rows), inside the storing transaction. Scheduling listens and schedules them all set-based.
inr_recorded_many = Signal()

#: Sent after a warfarin dose was recorded (``patient``, ``dose``), inside the storing transaction.
warfarin_dose_recorded = Signal()

#: Reference §3: warfarin, INR range 2.0-3.0, all categories.
TARGET_LOW, TARGET_HIGH = rules.INR_LOW, rules.INR_HIGH

#: How far back the advice looks. Phases need ≥ 3 months, the ladder a few readings: 12 months is plenty.
ADVICE_LOOKBACK_MONTHS = 12

#: Dose records read to find the latest dose *change* (a run of identical doses longer than this is old news).
DOSE_HISTORY_LIMIT = 50

#: CSV import limits: a device or lab export is far smaller; anything bigger is a mistake, not a workload.
IMPORT_MAX_BYTES = 20 * 1024 * 1024
IMPORT_MAX_ROWS = 100_000
IMPORT_BATCH_SIZE = 1000
#: Beyond this many per-row errors the report stops listing them (the file is plainly the wrong one).
IMPORT_MAX_REPORTED_ERRORS = 500
IMPORT_REQUIRED_COLUMNS = ("mrn", "drawn_at", "inr")
IMPORT_OPTIONAL_COLUMNS = ("source", "bleeding")

_TENTH = Decimal("0.1")


# ---------------------------------------------------------------------------------------------------------------
# Policy
# ---------------------------------------------------------------------------------------------------------------


def _policy_value(name: str, default: Any, value: Any) -> Any:
    """Settings hold plain data (dicts, lists); the policy holds rows and tuples."""
    if isinstance(default, monitoring.IntervalRow) and isinstance(value, Mapping):
        return dataclasses.replace(default, **value)  # a partial override, e.g. {"verified": True}
    if name == "nomogram" and isinstance(value, list | tuple):
        return tuple(monitoring.NomogramBand(**band) if isinstance(band, Mapping) else band for band in value)
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    return value


def monitoring_policy() -> monitoring.MonitoringPolicy:
    """The clinic's monitoring tables: the reference's defaults with ``settings.ANTICOAG_MONITORING_POLICY``
    applied (a dict of :class:`~anticoag.monitoring.MonitoringPolicy` field → value; interval rows as dicts
    of the fields to change, nomogram bands as dicts). Read at every call, so a settings change (or a test's
    ``settings`` fixture) takes effect without a restart. A bad setting raises ``ImproperlyConfigured``.
    """
    overrides = getattr(settings, "ANTICOAG_MONITORING_POLICY", None) or {}
    if not isinstance(overrides, Mapping):
        raise ImproperlyConfigured("ANTICOAG_MONITORING_POLICY must be a dict of MonitoringPolicy field → value.")
    known = {f.name for f in dataclasses.fields(monitoring.MonitoringPolicy)}
    values: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in known:
            raise ImproperlyConfigured(
                f"ANTICOAG_MONITORING_POLICY: unknown field {name!r}; allowed: {', '.join(sorted(known))}."
            )
        try:
            values[name] = _policy_value(name, getattr(monitoring.DEFAULT_POLICY, name), value)
        except (TypeError, ValueError) as exc:
            raise ImproperlyConfigured(f"ANTICOAG_MONITORING_POLICY[{name!r}]: {exc}") from exc
    try:
        return dataclasses.replace(monitoring.DEFAULT_POLICY, **values)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"ANTICOAG_MONITORING_POLICY: {exc}") from exc


# ---------------------------------------------------------------------------------------------------------------
# Time helpers: a clinic's calendar is its own time zone
# ---------------------------------------------------------------------------------------------------------------


def clinic_zone(clinic: Clinic) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(clinic.time_zone)


def clinic_today(clinic: Clinic) -> date:
    return timezone.localdate(timezone=clinic_zone(clinic))


def _start_of_day(day: date, zone: zoneinfo.ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone)


def _upper_bound(moment: date | datetime | None, zone: zoneinfo.ZoneInfo) -> datetime:
    """An exclusive upper instant: a date means "to the end of that clinic day", a datetime "up to it"."""
    if moment is None:
        return timezone.now() + timedelta(microseconds=1)
    if isinstance(moment, datetime):
        if timezone.is_naive(moment):
            raise ValueError("datetimes must be timezone-aware")
        return moment + timedelta(microseconds=1)
    return _start_of_day(moment + timedelta(days=1), zone)


def _lower_bound(moment: date | datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    if isinstance(moment, datetime):
        if timezone.is_naive(moment):
            raise ValueError("datetimes must be timezone-aware")
        return moment
    return _start_of_day(moment, zone)


def inr_reported(value: Decimal | float) -> Decimal:
    """The INR as the tables read it: rounded half-up to one decimal (monitoring's convention)."""
    return Decimal(str(value)).quantize(_TENTH, rounding=ROUND_HALF_UP)


def inr_position(value: Decimal | float) -> str:
    """``below``, ``in`` or ``above`` the 2.0-3.0 range, bounds inclusive, on the one-decimal INR."""
    reported = inr_reported(value)
    if reported < Decimal(str(TARGET_LOW)):
        return "below"
    if reported > Decimal(str(TARGET_HIGH)):
        return "above"
    return "in"


# ---------------------------------------------------------------------------------------------------------------
# Recording
# ---------------------------------------------------------------------------------------------------------------


def inr_readings_recorded(*, patient: Patient, readings: Sequence[InrReading]) -> None:
    """The hook every path that stores readings calls once per patient, inside its transaction (the API,
    the admin, the CSV import after ``bulk_create``, which skips ``post_save``)."""
    inr_recorded.send(sender=InrReading, patient=patient, readings=list(readings))


def inr_readings_recorded_many(*, readings: Sequence[InrReading]) -> int:
    """The CSV import's hook, once for the whole file inside its transaction: the readings (with their
    patients) grouped by patient, announced in one :data:`inr_recorded_many`. Returns the patient count."""
    by_patient: dict[int, list[InrReading]] = {}
    patients: dict[int, Patient] = {}
    for reading in readings:
        by_patient.setdefault(reading.patient_id, []).append(reading)
        patients.setdefault(reading.patient_id, reading.patient)
    inr_recorded_many.send(sender=InrReading, patients=list(patients.values()), readings=by_patient)
    return len(by_patient)


def _decimal(value: object, field_name: str) -> Decimal:
    if isinstance(value, bool):
        raise ValidationError({field_name: "Enter a number."})
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValidationError({field_name: f"{value!r} is not a number."}) from None
    if not number.is_finite():
        raise ValidationError({field_name: "Enter a finite number."})
    return number


def inr_reading_record(
    *,
    patient: Patient,
    drawn_at: datetime,
    value: Decimal | float | str,
    source: str,
    bleeding: bool = False,
    entered_by=None,
    note: str = "",
) -> InrReading:
    """Store one INR reading, or refuse it with a ``ValidationError`` naming the field (nothing written).

    Refused: an INR outside 0.5-20 or with more than two decimals (``value``), a time in the future or a
    second reading of the patient at the same time (``drawn_at``), an unknown ``source``.
    """
    if not isinstance(drawn_at, datetime) or timezone.is_naive(drawn_at):
        raise ValidationError({"drawn_at": "Give the date and time with its time zone offset."})
    reading = InrReading(
        patient=patient,
        drawn_at=drawn_at,
        value=_decimal(value, "value"),
        source=source,
        bleeding=bool(bleeding),
        entered_by=entered_by,
        note=note or "",
    )
    reading.full_clean()
    with transaction.atomic():
        try:
            with transaction.atomic():
                reading.save()
        except IntegrityError:  # a concurrent twin got in between full_clean and the INSERT
            raise ValidationError({"drawn_at": "This patient already has an INR at that time."}) from None
        inr_readings_recorded(patient=patient, readings=[reading])
    return reading


def _followed(weekly: Decimal, suggested: Decimal | None) -> bool:
    return suggested is not None and weekly.quantize(_TENTH) == suggested.quantize(_TENTH)


def dose_record(
    *,
    patient: Patient,
    weekly_dose_mg: Decimal | float | str,
    starts_on: date,
    inr_reading: InrReading | None = None,
    suggested_weekly_dose_mg: Decimal | float | str | None = None,
    hold_doses: int = 0,
    next_inr_on: date | None = None,
    decided_by,
    note: str = "",
    schedule: dict | None = None,
    change_reason: str = "",
    beyond_guardrail: bool = False,
) -> WarfarinDose:
    """Record the warfarin dose as given, and whether it followed the suggestion (same weekly dose to 0.1 mg).

    A clinician accepts or changes the suggestion; both are kept. ``next_inr_on``, when given, is the
    clinician's date for the next INR: scheduling moves the open INR test to it. ``schedule``,
    ``change_reason`` and ``beyond_guardrail`` are the dosing decision's (:func:`anticoag.dosing.dose_decide`).
    """
    weekly = _decimal(weekly_dose_mg, "weekly_dose_mg")
    suggested = None
    if suggested_weekly_dose_mg not in (None, ""):
        suggested = _decimal(suggested_weekly_dose_mg, "suggested_weekly_dose_mg")
    dose = WarfarinDose(
        patient=patient,
        weekly_dose_mg=weekly,
        starts_on=starts_on,
        inr_reading=inr_reading,
        suggested_weekly_dose_mg=suggested,
        followed_suggestion=_followed(weekly, suggested),
        hold_doses=hold_doses,
        next_inr_on=next_inr_on,
        decided_by=decided_by,
        note=note or "",
        schedule=schedule or {},
        change_reason=change_reason or "",
        beyond_guardrail=beyond_guardrail,
    )
    errors: dict[str, str] = {}
    if inr_reading is not None:
        if inr_reading.patient_id != patient.pk:
            errors["inr_reading"] = "This INR reading belongs to another patient."
        else:
            drawn_on = timezone.localdate(inr_reading.drawn_at, timezone=clinic_zone(patient.clinic))
            if isinstance(starts_on, date) and starts_on < drawn_on:
                errors["starts_on"] = f"The dose answers the INR of {drawn_on.isoformat()}: it cannot start before it."
            if isinstance(next_inr_on, date) and next_inr_on <= drawn_on:
                errors["next_inr_on"] = f"The next INR must come after the INR of {drawn_on.isoformat()}."
    try:
        dose.full_clean()
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            errors.setdefault(name, " ".join(messages))
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        dose.save()
        warfarin_dose_recorded.send(sender=WarfarinDose, patient=patient, dose=dose)
    return dose


def warfarin_dose_saved(*, dose: WarfarinDose) -> None:
    """For the admin: recompute ``followed_suggestion`` before saving, and announce the dose after."""
    dose.followed_suggestion = _followed(Decimal(str(dose.weekly_dose_mg)), dose.suggested_weekly_dose_mg)
    with transaction.atomic():
        dose.save()
        warfarin_dose_recorded.send(sender=WarfarinDose, patient=dose.patient, dose=dose)


# ---------------------------------------------------------------------------------------------------------------
# Advice
# ---------------------------------------------------------------------------------------------------------------


def _latest_dose_change(doses: Sequence[tuple[date, Decimal, int, int | None]]) -> date | None:
    """The start of the latest dose *change*, from dose records newest first: a hold, or a weekly dose that
    differs from the record before it. The first record ever (starting warfarin) is a change too."""
    for index, (starts_on, weekly, hold, _reading_id) in enumerate(doses):
        if hold:
            return starts_on
        if index + 1 < len(doses):
            if doses[index + 1][1] != weekly:
                return starts_on
        elif len(doses) < DOSE_HISTORY_LIMIT:
            return starts_on  # the first dose ever recorded
    return None


def inr_advice_for_patient(*, patient: Patient, as_of: date | datetime | None = None) -> dict[str, Any] | None:
    """Next INR test, dose suggestion, phase, TTR and alerts for a patient, as at ``as_of`` (default now).

    :func:`anticoag.monitoring.inr_advice` over the readings of the last 12 months up to ``as_of`` (a date
    means the end of that clinic day), target 2.0-3.0, the clinic's opt-in 12-week interval, the current
    weekly dose (the latest dose record, leaving out a record that answers the latest reading itself: the
    suggestion is *for* that reading), the latest dose change, and bleeding as noted on the latest reading.
    Returns ``InrAdvice.as_dict()`` plus the inputs used (``latest_reading_id``, ``latest_inr``,
    ``latest_drawn_on``, ``weekly_dose_mg``, ``dose_changed_on``, ``bleeding``, ``target_low``/``_high``,
    ``extended_interval_allowed``, ``readings_used``). ``None`` when the patient has no reading.
    """
    clinic = patient.clinic
    zone = clinic_zone(clinic)
    until = _upper_bound(as_of, zone)
    since = until - relativedelta(months=ADVICE_LOOKBACK_MONTHS)
    rows = list(
        InrReading.objects.filter(patient=patient, drawn_at__gte=since, drawn_at__lt=until)
        .order_by("drawn_at", "pk")
        .values_list("pk", "drawn_at", "value", "bleeding")
    )
    if not rows:
        return None
    until_day = (until - timedelta(microseconds=1)).astimezone(zone).date()
    doses = list(
        WarfarinDose.objects.filter(patient=patient, starts_on__lte=until_day)
        .order_by("-starts_on", "-pk")
        .values_list("starts_on", "weekly_dose_mg", "hold_doses", "inr_reading_id")[:DOSE_HISTORY_LIMIT]
    )
    return _advice(clinic, rows, doses, zone)


def inr_advice_for_patients(*, patients: Sequence[Patient]) -> dict[int, dict[str, Any]]:
    """:func:`inr_advice_for_patient` as at now for many patients (with their clinic) in two queries:
    patient id → advice (patients without a reading are absent). For the Today list."""
    if not patients:
        return {}
    now = timezone.now()
    since = now - relativedelta(months=ADVICE_LOOKBACK_MONTHS)
    by_id = {patient.pk: patient for patient in patients}
    rows: dict[int, list] = {pk: [] for pk in by_id}
    for patient_id, *row in (
        InrReading.objects.filter(patient_id__in=by_id, drawn_at__gte=since, drawn_at__lt=now)
        .order_by("drawn_at", "pk")
        .values_list("patient_id", "pk", "drawn_at", "value", "bleeding")
    ):
        rows[patient_id].append(tuple(row))
    doses: dict[int, list] = {pk: [] for pk in by_id}
    for patient_id, *dose in (
        WarfarinDose.objects.filter(patient_id__in=by_id, starts_on__lte=now.date() + timedelta(days=1))
        .order_by("patient_id", "-starts_on", "-pk")
        .values_list("patient_id", "starts_on", "weekly_dose_mg", "hold_doses", "inr_reading_id")
    ):
        doses[patient_id].append(tuple(dose))
    advice: dict[int, dict[str, Any]] = {}
    for pk, patient in by_id.items():
        if rows[pk]:
            zone = clinic_zone(patient.clinic)
            today = now.astimezone(zone).date()
            # Newest first, up to the clinic's today, at most DOSE_HISTORY_LIMIT: as inr_advice_for_patient reads.
            mine = [d for d in doses[pk] if d[0] <= today][:DOSE_HISTORY_LIMIT]
            advice[pk] = _advice(patient.clinic, rows[pk], mine, zone)
    return advice


def _advice(clinic: Clinic, rows: list, doses: list, zone: zoneinfo.ZoneInfo) -> dict[str, Any]:
    """The advice from a patient's readings (oldest first) and dose records (newest first)."""
    latest_id, latest_at, latest_value, latest_bleeding = rows[-1]
    points = [monitoring.InrPoint(drawn_at.astimezone(zone), float(value)) for _, drawn_at, value, _ in rows]
    base = next((d for d in doses if d[3] != latest_id), None)
    weekly = float(base[1]) if base is not None and base[1] > 0 else None
    dose_changed_on = _latest_dose_change(doses)
    policy = monitoring_policy()
    advice = monitoring.inr_advice(
        points,
        target_low=TARGET_LOW,
        target_high=TARGET_HIGH,
        weekly_dose_mg=weekly,
        extended_interval_allowed=clinic.extended_inr_interval,
        bleeding=latest_bleeding,
        dose_changed_at=dose_changed_on,
        policy=policy,
    )
    return {
        **advice.as_dict(),
        "latest_reading_id": latest_id,
        "latest_inr": str(latest_value),
        "latest_drawn_on": latest_at.astimezone(zone).date().isoformat(),
        "weekly_dose_mg": weekly,
        "dose_changed_on": dose_changed_on.isoformat() if dose_changed_on else None,
        "bleeding": latest_bleeding,
        "target_low": TARGET_LOW,
        "target_high": TARGET_HIGH,
        "extended_interval_allowed": clinic.extended_inr_interval,
        "readings_used": len(rows),
    }


# ---------------------------------------------------------------------------------------------------------------
# TTR
# ---------------------------------------------------------------------------------------------------------------


def _period(start: date | datetime, end: date | datetime, zone: zoneinfo.ZoneInfo) -> tuple[datetime, datetime]:
    low, high = _lower_bound(start, zone), _upper_bound(end, zone)
    if high <= low:
        raise ValidationError({"end": "The end of the period must not be before its start."})
    return low, high


def _ttr(points: Iterable[monitoring.InrPoint], policy: monitoring.MonitoringPolicy) -> monitoring.TtrResult:
    return monitoring.rosendaal_ttr(
        points, TARGET_LOW, TARGET_HIGH, max_gap_days=policy.ttr_max_gap_days, inclusive=policy.ttr_inclusive
    )


def patient_ttr(*, patient: Patient, start: date | datetime, end: date | datetime) -> monitoring.TtrResult:
    """Rosendaal TTR (reference §6) over the readings drawn from ``start`` to ``end`` inclusive (dates are
    clinic days). Intervals are not clipped at the period's edges: a reading before ``start`` is not used."""
    low, high = _period(start, end, clinic_zone(patient.clinic))
    rows = InrReading.objects.filter(patient=patient, drawn_at__gte=low, drawn_at__lt=high).values_list(
        "drawn_at", "value"
    )
    return _ttr((monitoring.InrPoint(drawn_at, float(value)) for drawn_at, value in rows), monitoring_policy())


def _warfarin_patients(clinic: Clinic, as_of_day: date, until: datetime) -> list[dict[str, Any]]:
    """Active patients whose latest confirmed decision (any episode) names warfarin and whose course has not
    ended by ``as_of``, each with the time of the last INR before ``until``. One query."""
    latest = PlanDecision.objects.filter(plan__episode__patient=OuterRef("pk")).order_by("-decided_at", "-pk")
    queryset = (
        Patient.objects.filter(clinic=clinic, active=True)
        .annotate(
            agent=Subquery(latest.values("agent")[:1]),
            course_end_on=Subquery(latest.values("end_on")[:1]),
            last_inr_at=Max("inr_readings__drawn_at", filter=Q(inr_readings__drawn_at__lt=until)),
        )
        .filter(agent=Agent.WARFARIN)
        .filter(Q(course_end_on__isnull=True) | Q(course_end_on__gte=as_of_day))
        .order_by("pk")
        .values_list("pk", "mrn", "last_inr_at")
    )
    if connection.vendor != "postgresql":
        return [{"pk": pk, "mrn": mrn, "last_inr_at": last} for pk, mrn, last in queryset]
    # The same query with the report's settings (its grouping sorts every reading of the clinic).
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(_REPORT_SETTINGS + sql, params)
        while cursor.description is None and cursor.nextset():
            pass
        return [{"pk": pk, "mrn": mrn, "last_inr_at": last} for pk, mrn, last in cursor.fetchall()]


def _clinic_ttrs_python(
    clinic: Clinic, low: datetime, high: datetime, policy: monitoring.MonitoringPolicy
) -> list[dict[str, Any]]:
    """Per-patient TTRs from ONE query ordered by patient and time, streamed and grouped in Python."""
    rows = (
        InrReading.objects.filter(patient__clinic=clinic, drawn_at__gte=low, drawn_at__lt=high)
        .order_by("patient_id", "drawn_at")
        .values_list("patient_id", "patient__mrn", "drawn_at", "value")
        .iterator(chunk_size=5000)
    )
    per_patient: list[dict[str, Any]] = []
    for patient_id, group in groupby(rows, key=lambda row: row[0]):
        readings = list(group)
        result = _ttr((monitoring.InrPoint(r[2], float(r[3])) for r in readings), policy)
        per_patient.append(
            {
                "patient_id": patient_id,
                "mrn": readings[0][1],
                "readings": len(readings),
                "ttr_percent": None if result.ttr_percent is None else round(result.ttr_percent, 3),
                "days_in_range": round(result.days_in_range, 3),
                "days_total": round(result.days_total, 3),
            }
        )
    return per_patient


#: Prefix of the report's queries (PostgreSQL), sent in the same round trip: sort a clinic's readings in memory
#: rather than on disk and skip JIT compilation (a tenth of a one-second query). SET LOCAL ends with the
#: transaction: the implicit one of the statement string in autocommit mode, else the caller's.
_REPORT_SETTINGS = "SET LOCAL work_mem = '64MB'; SET LOCAL jit = off; "

#: :func:`anticoag.monitoring.rosendaal_ttr` in SQL (PostgreSQL): consecutive readings of a patient by a window
#: function (a patient has one reading per instant: the unique constraint, so nothing to merge), the days of
#: each interval in exact microseconds, intervals longer than the gap left out of both sums, the in-range
#: fraction of a changing INR where the interpolated line crosses the bounds, a constant INR all or nothing.
#: The days in range of one interval (``days`` from the INR ``pv`` to ``v``), as ``in_range``: shared by
#: :data:`_TTR_SQL` and the dashboard's snapshot (:mod:`anticoag.ttr_snapshot`).
TTR_DAYS_IN_RANGE_SQL = """days <= %(gap)s AS used,
           CASE WHEN days IS NULL OR days > %(gap)s THEN 0.0
                WHEN pv = v THEN CASE WHEN (%(inclusive)s AND v BETWEEN %(lo)s AND %(hi)s)
                                        OR (NOT %(inclusive)s AND v > %(lo)s AND v < %(hi)s)
                                      THEN days ELSE 0.0 END
                ELSE GREATEST(0.0, LEAST(1.0, GREATEST((%(lo)s - pv) / (v - pv), (%(hi)s - pv) / (v - pv)))
                                   - GREATEST(0.0, LEAST((%(lo)s - pv) / (v - pv), (%(hi)s - pv) / (v - pv)))) * days
           END AS in_range"""

_TTR_SQL = f"""
WITH r AS (
    SELECT i.patient_id, p.mrn, i.value::float8 AS v,
           lag(i.value::float8) OVER w AS pv,
           (EXTRACT(EPOCH FROM i.drawn_at - lag(i.drawn_at) OVER w) / 86400)::float8 AS days
    FROM anticoag_inrreading i JOIN patients_patient p ON p.id = i.patient_id
    WHERE p.clinic_id = %(clinic)s AND i.drawn_at >= %(low)s AND i.drawn_at < %(high)s
    WINDOW w AS (PARTITION BY i.patient_id ORDER BY i.drawn_at)
), iv AS (
    SELECT patient_id, mrn, days, {TTR_DAYS_IN_RANGE_SQL}
    FROM r
)
SELECT patient_id, min(mrn), count(*),
       COALESCE(sum(in_range), 0.0), COALESCE(sum(days) FILTER (WHERE used), 0.0)
FROM iv GROUP BY patient_id ORDER BY patient_id
"""


def _clinic_ttrs_sql(
    clinic: Clinic, low: datetime, high: datetime, policy: monitoring.MonitoringPolicy
) -> list[dict[str, Any]]:
    """Per-patient TTRs computed by PostgreSQL in one query (same figures as :func:`_clinic_ttrs_python`)."""
    params = {
        "clinic": clinic.pk,
        "low": low,
        "high": high,
        "gap": float(policy.ttr_max_gap_days),
        "inclusive": bool(policy.ttr_inclusive),
        "lo": float(TARGET_LOW),
        "hi": float(TARGET_HIGH),
    }
    with connection.cursor() as cursor:
        cursor.execute(_REPORT_SETTINGS + _TTR_SQL, params)
        while cursor.description is None and cursor.nextset():
            pass
        rows = cursor.fetchall()
    return [
        {
            "patient_id": patient_id,
            "mrn": mrn,
            "readings": count,
            "ttr_percent": round(100.0 * in_range / total, 3) if total > 0 else None,
            "days_in_range": round(in_range, 3),
            "days_total": round(total, 3),
        }
        for patient_id, mrn, count, in_range, total in rows
    ]


def clinic_ttr_report(
    *, clinic: Clinic, start: date | datetime, end: date | datetime, as_of: date | datetime
) -> dict[str, Any]:
    """The clinic's quality indicators (reference §6) in two queries, whatever the number of patients.

    * TTR per patient over the readings drawn in the period (every patient of the clinic with readings
      there), then the median and the share ≥ 65 % (:func:`anticoag.monitoring.clinic_ttr_summary`).
      On PostgreSQL ONE query computes every patient's Rosendaal TTR with window functions
      (:data:`_TTR_SQL`, the same arithmetic as :func:`anticoag.monitoring.rosendaal_ttr`); elsewhere one
      query ordered by patient and time is streamed and grouped in Python. No per-patient query.
    * Lost to follow-up: warfarin patients (see :func:`_warfarin_patients`) with no INR for more than 56
      days at ``as_of`` (no INR at all counts as lost); target under 10 %.
    """
    zone = clinic_zone(clinic)
    low, high = _period(start, end, zone)
    policy = monitoring_policy()
    as_of_until = _upper_bound(as_of, zone)
    as_of_day = (as_of_until - timedelta(microseconds=1)).astimezone(zone).date()

    if connection.vendor == "postgresql":
        per_patient = _clinic_ttrs_sql(clinic, low, high, policy)
    else:
        per_patient = _clinic_ttrs_python(clinic, low, high, policy)
    on_warfarin = _warfarin_patients(clinic, as_of_day, as_of_until)
    return _report(clinic.pk, low, high, as_of, as_of_until, per_patient, on_warfarin, policy)


def _report(
    clinic_id: int,
    low: datetime,
    high: datetime,
    as_of: date | datetime,
    as_of_until: datetime,
    per_patient: list[dict[str, Any]],
    on_warfarin: list[dict[str, Any]],
    policy: monitoring.MonitoringPolicy,
) -> dict[str, Any]:
    as_of_instant = as_of if isinstance(as_of, datetime) else as_of_until
    lost = [
        p["mrn"]
        for p in on_warfarin
        if monitoring.is_lost_to_follow_up(p["last_inr_at"], as_of_instant, max_gap_days=policy.ttr_max_gap_days)
    ]
    return report_figures(
        clinic_id, low, high, as_of, [p["ttr_percent"] for p in per_patient], len(on_warfarin), lost, policy,
        patients=per_patient,
    )  # fmt: skip


def report_figures(
    clinic_id: int,
    low: datetime,
    high: datetime,
    as_of: date | datetime,
    ttrs: list[float | None],
    warfarin_patients: int,
    lost: list[str],
    policy: monitoring.MonitoringPolicy,
    *,
    patients: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The report from its figures: the patients' TTRs in patient order (``ttr_percents``), the number of
    warfarin patients and the MRNs of those lost to follow-up; ``patients`` (each patient's sums) when the
    caller has them (the dashboard's snapshot path does not read them)."""
    summary = monitoring.clinic_ttr_summary(ttrs)
    lost_share = round(100.0 * len(lost) / warfarin_patients, 1) if warfarin_patients else None
    report = {
        "clinic_id": clinic_id,
        "start": low.isoformat(),
        "end": high.isoformat(),
        "as_of": as_of.isoformat(),
        **summary,
        "ttr_target_percent": monitoring.TTR_QUALITY_TARGET_PERCENT,
        "ttr_method": {
            "method": "Rosendaal linear interpolation, continuous time",
            "bounds": "inclusive" if policy.ttr_inclusive else "exclusive",
            "max_gap_days": policy.ttr_max_gap_days,
            "target": [TARGET_LOW, TARGET_HIGH],
            "source": "ROSENDAAL1993",
        },
        "ttr_percents": ttrs,
        "warfarin_patients": warfarin_patients,
        "lost_to_follow_up": len(lost),
        "lost_to_follow_up_mrns": lost,
        "lost_to_follow_up_percent": lost_share,
        "lost_to_follow_up_meets_target": None if lost_share is None else lost_share < 10.0,
        "lost_to_follow_up_rule": f"no INR for more than {policy.ttr_max_gap_days:g} days (reference §6)",
    }
    if patients is not None:
        report["patients"] = patients
    return report


#: :data:`_TTR_SQL` for several clinics at once, each with its own period (``unnest`` of three arrays): one scan
#: of the readings instead of one per clinic (issue 18: the network dashboard read the table eight times).
_TTRS_SQL = (
    _TTR_SQL.replace(
        "WHERE p.clinic_id = %(clinic)s AND i.drawn_at >= %(low)s AND i.drawn_at < %(high)s",
        "JOIN unnest(%(clinics)s::int[], %(lows)s::timestamptz[], %(highs)s::timestamptz[]) AS b(clinic_id, low, high)\n"
        "         ON b.clinic_id = p.clinic_id\n"
        "    WHERE p.clinic_id = ANY(%(clinics)s) AND i.drawn_at >= %(low)s AND i.drawn_at < %(high)s\n"
        "          AND i.drawn_at >= b.low AND i.drawn_at < b.high",
    )
    .replace("SELECT i.patient_id, p.mrn,", "SELECT i.patient_id, p.clinic_id, p.mrn,")
    .replace("SELECT patient_id, mrn, days,", "SELECT patient_id, clinic_id, mrn, days,")
    .replace("SELECT patient_id, min(mrn),", "SELECT patient_id, min(clinic_id), min(mrn),")
)

#: :func:`_warfarin_patients` for several clinics at once, set-based: each patient's latest decision from one
#: ``DISTINCT ON`` over the clinics' decisions (instead of three correlated subqueries per patient) and the
#: last INR before ``until`` from one backward probe of the (patient, time) index per warfarin patient.
#: Each patient's latest plan decision (agent, end) in the clinics ``clinics`` (only ``patients`` when not NULL):
#: shared with the dashboard's snapshot (:mod:`anticoag.ttr_snapshot`).
LATEST_DECISIONS_SQL = """
    SELECT DISTINCT ON (e.patient_id) e.patient_id, d.agent, d.end_on
    FROM anticoag_plandecision d
         JOIN anticoag_plan pl ON pl.id = d.plan_id
         JOIN patients_cvtepisode e ON e.id = pl.episode_id
         JOIN patients_patient p ON p.id = e.patient_id
    WHERE p.clinic_id = ANY(%(clinics)s::bigint[])
          AND (%(patients)s::bigint[] IS NULL OR e.patient_id = ANY(%(patients)s::bigint[]))
    ORDER BY e.patient_id, d.decided_at DESC, d.id DESC"""

_WARFARIN_SQL = f"""
WITH b AS (
    SELECT * FROM unnest(%(clinics)s::int[], %(days)s::date[], %(untils)s::timestamptz[]) AS b(clinic_id, as_of_day, until)
), latest AS ({LATEST_DECISIONS_SQL}
)
SELECT p.id, p.clinic_id, p.mrn,
       (SELECT max(i.drawn_at) FROM anticoag_inrreading i WHERE i.patient_id = p.id AND i.drawn_at < b.until)
FROM latest JOIN patients_patient p ON p.id = latest.patient_id JOIN b ON b.clinic_id = p.clinic_id
WHERE p.active AND latest.agent = %(warfarin)s AND (latest.end_on IS NULL OR latest.end_on >= b.as_of_day)
ORDER BY p.id
"""


def report_bounds(
    periods: Sequence[tuple[Clinic, date | datetime, date | datetime, date | datetime]],
) -> dict[int, tuple[datetime, datetime, date | datetime, datetime, date]]:
    """Per clinic of ``(clinic, start, end, as_of)``: the period's instants (low, high) in the clinic's zone,
    ``as_of`` as given, the instant lost to follow-up is judged before (``until``) and that instant's day."""
    bounds = {}
    for clinic, start, end, as_of in periods:
        zone = clinic_zone(clinic)
        low, high = _period(start, end, zone)
        until = _upper_bound(as_of, zone)
        bounds[clinic.pk] = (low, high, as_of, until, (until - timedelta(microseconds=1)).astimezone(zone).date())
    return bounds


def clinic_ttr_reports(
    *, periods: Sequence[tuple[Clinic, date | datetime, date | datetime, date | datetime]], snapshot: bool = False
) -> dict[int, dict[str, Any]]:
    """:func:`clinic_ttr_report` for several clinics (``(clinic, start, end, as_of)`` each): clinic id → the
    same report. On PostgreSQL two queries for all of them (:data:`_TTRS_SQL`, :data:`_WARFARIN_SQL`), or,
    with ``snapshot``, the figures kept per clinic by :mod:`anticoag.ttr_snapshot` (the dashboard: one period
    per clinic, recomputed only where something changed); elsewhere the single-clinic report per clinic."""
    if snapshot and connection.vendor == "postgresql":
        from . import ttr_snapshot

        return ttr_snapshot.snapshot_reports(periods=periods)
    if connection.vendor != "postgresql":
        return {
            clinic.pk: clinic_ttr_report(clinic=clinic, start=start, end=end, as_of=as_of)
            for clinic, start, end, as_of in periods
        }
    if not periods:
        return {}
    policy = monitoring_policy()
    bounds = report_bounds(periods)
    clinics = list(bounds)
    ttr_params = {
        "clinics": clinics,
        "lows": [bounds[c][0] for c in clinics],
        "highs": [bounds[c][1] for c in clinics],
        "low": min(bounds[c][0] for c in clinics),
        "high": max(bounds[c][1] for c in clinics),
        "gap": float(policy.ttr_max_gap_days),
        "inclusive": bool(policy.ttr_inclusive),
        "lo": float(TARGET_LOW),
        "hi": float(TARGET_HIGH),
    }
    warfarin_params = {
        "clinics": clinics,
        "days": [bounds[c][4] for c in clinics],
        "untils": [bounds[c][3] for c in clinics],
        "warfarin": Agent.WARFARIN,
        "patients": None,
    }
    per_patient: dict[int, list[dict[str, Any]]] = {c: [] for c in clinics}
    on_warfarin: dict[int, list[dict[str, Any]]] = {c: [] for c in clinics}
    with connection.cursor() as cursor:
        cursor.execute(_REPORT_SETTINGS + _TTRS_SQL, ttr_params)
        while cursor.description is None and cursor.nextset():
            pass
        for patient_id, clinic_id, mrn, count, in_range, total in cursor.fetchall():
            per_patient[clinic_id].append(
                {
                    "patient_id": patient_id,
                    "mrn": mrn,
                    "readings": count,
                    "ttr_percent": round(100.0 * in_range / total, 3) if total > 0 else None,
                    "days_in_range": round(in_range, 3),
                    "days_total": round(total, 3),
                }
            )
        cursor.execute(_REPORT_SETTINGS + _WARFARIN_SQL, warfarin_params)
        while cursor.description is None and cursor.nextset():
            pass
        for pk, clinic_id, mrn, last in cursor.fetchall():
            on_warfarin[clinic_id].append({"pk": pk, "mrn": mrn, "last_inr_at": last})
    return {
        c: _report(c, bounds[c][0], bounds[c][1], bounds[c][2], bounds[c][3], per_patient[c], on_warfarin[c], policy)
        for c in clinics
    }


# ---------------------------------------------------------------------------------------------------------------
# CSV import
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class ImportResult:
    """The outcome of :func:`inr_import_csv`: either ``imported`` rows, or ``errors`` and nothing imported."""

    imported: int = 0
    patients: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class _Row:
    row: int
    mrn: str
    drawn_at: datetime | None = None
    value: Decimal | None = None
    source: str = InrSource.LAB
    bleeding: bool = False
    patient: Patient | None = None


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TRUE = {"1", "true", "yes", "y", "t", "x"}
_FALSE = {"", "0", "false", "no", "n", "f"}


def _source_aliases() -> dict[str, str]:
    aliases: dict[str, str] = {}
    for code, label in InrSource.choices:
        for name in (code, str(label), str(label).replace("-", " "), code.replace("_", " "), code.replace("_", "-")):
            aliases[name.strip().lower()] = code
    aliases.update({"point of care": InrSource.POINT_OF_CARE, "point-of-care": InrSource.POINT_OF_CARE})
    aliases.update({"self test": InrSource.SELF_TEST, "self-test": InrSource.SELF_TEST})
    return aliases


def _read_text(file: Any) -> str:
    """The file's text: UTF-8, with or without a byte-order mark. Raises ValueError with a message."""
    content = file.read() if hasattr(file, "read") else file
    if isinstance(content, str):
        return content.removeprefix("\ufeff")
    if not isinstance(content, bytes | bytearray):
        raise ValueError("Upload a CSV file.")
    if len(content) > IMPORT_MAX_BYTES:
        raise ValueError(f"The file is larger than {IMPORT_MAX_BYTES // (1024 * 1024)} MB.")
    try:
        return bytes(content).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"The file is not UTF-8 text (byte {exc.start}); save it as CSV UTF-8.") from None


def _parse_drawn_at(text: str, zone: zoneinfo.ZoneInfo) -> tuple[datetime | None, str | None, bool]:
    """(instant, error, is_date_only). A plain date means 00:00 in the clinic's time zone."""
    text = text.strip()
    if not text:
        return None, "Missing: give an ISO 8601 date-time with offset (2026-01-05T08:30+01:00) or a date.", False
    if _ISO_DATE.match(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return None, f"{text!r} is not a calendar date.", True
        # Checked before the day becomes an instant: year 1 in a zone west of UTC is not representable.
        problem = clinical_date_problem(day, may_be_future=True)
        return (None, problem, True) if problem else (_start_of_day(day, zone), None, True)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None, f"{text!r} is not an ISO 8601 date-time (2026-01-05T08:30:00+01:00) or date (2026-01-05).", False
    if timezone.is_naive(moment):
        return None, f"{text!r} has no UTC offset: add one (e.g. +01:00 or Z), or give only the date.", False
    if moment.date() < earliest_clinical_date():
        return None, f"{text!r} is before {earliest_clinical_date().year}: check the year.", False
    return moment, None, False


def _parse_inr(text: str) -> tuple[Decimal | None, str | None]:
    text = text.strip()
    if not text:
        return None, "Missing INR value."
    if "," in text and "." not in text:  # decimal comma, as semicolon-separated exports write it
        text = text.replace(",", ".")
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None, f"{text!r} is not a number."
    if not value.is_finite():
        return None, f"{text!r} is not a number."
    if not INR_MIN <= value <= INR_MAX:
        return None, f"INR {text} is outside the plausible range {INR_MIN}–{INR_MAX:.0f}: check the value."
    if value.as_tuple().exponent < -2:
        return None, f"INR {text} has more than two decimals."
    return value, None


def _delimiter(text: str) -> str:
    header = text.split("\n", 1)[0]
    return ";" if header.count(";") > header.count(",") else ","


#: Called as ``progress(phase, done, total)`` while an import runs ("validating" rows, "storing" readings).
ImportProgress = Callable[[str, int, int], None]
#: Rows between two progress reports.
IMPORT_PROGRESS_EVERY = 5000


def inr_import_csv(
    *, clinic: Clinic, file: Any, entered_by, progress: ImportProgress | None = None, name: str | None = None
) -> ImportResult:
    """Import INR readings of one clinic from CSV, all or nothing (issue #4).

    **Format.** UTF-8 with or without a byte-order mark. A header row is required; columns, in any order:
    ``mrn``, ``drawn_at``, ``inr`` and optionally ``source`` (``lab``/``poc``/``self_test`` or their labels;
    default ``lab``) and ``bleeding`` (``yes``/``no``, ``true``/``false``, ``1``/``0``; default no). Header
    names are case-insensitive; unknown columns are refused (a misspelt ``bleeding`` would otherwise be
    silently dropped). The delimiter is a comma, or a semicolon when the header has more semicolons than
    commas (spreadsheet exports in decimal-comma locales); an INR may then be written ``2,5``.
    ``drawn_at`` is ISO 8601 with a UTC offset (``2026-01-05T08:30:00+01:00``, ``...Z``) or a plain date
    (``2026-01-05``: 00:00 in the clinic's time zone). Blank lines are skipped.

    **Validation first.** Every row is checked (MRN unknown in this clinic, bad or future date, INR not a
    number or outside 0.5-20, unknown source or bleeding value, a duplicate of another row or of a stored
    reading — same patient, same instant); errors are ``{"row", "field", "message"}`` where ``row`` is the
    line number as a spreadsheet shows it (header = 1; ``None`` for the file as a whole). With any error
    nothing is imported.

    **Then one transaction.** ``bulk_create`` in batches of 1,000, then :func:`inr_readings_recorded_many`
    once for the file (``bulk_create`` sends no ``post_save``): scheduling updates every patient's next INR
    test in a fixed number of queries, whatever the number of patients. ``entered_by`` is set on every row and
    ``note`` says which file and row each reading came from (the audit log does not see bulk inserts).

    ``progress`` (the background import, :mod:`anticoag.imports`) hears how far each phase has got.
    """
    report = progress or (lambda phase, done, total: None)
    try:
        text = _read_text(file)
    except ValueError as exc:
        return ImportResult(errors=[{"row": None, "field": "file", "message": str(exc)}])
    if not text.strip():
        return ImportResult(errors=[{"row": None, "field": "file", "message": "The file is empty."}])

    zone = clinic_zone(clinic)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text), strict=True)
    errors: list[dict[str, Any]] = []

    def error(row: int | None, field_name: str, message: str) -> None:
        errors.append({"row": row, "field": field_name, "message": message})

    try:
        header = [name.strip().lower() for name in next(reader)]
        missing = [name for name in IMPORT_REQUIRED_COLUMNS if name not in header]
        unknown = [name for name in header if name not in IMPORT_REQUIRED_COLUMNS + IMPORT_OPTIONAL_COLUMNS]
        doubled = sorted({name for name in header if header.count(name) > 1})
        if missing:
            error(1, "header", f"Missing column(s) {', '.join(missing)}; the header must name mrn, drawn_at, inr.")
        if unknown:
            allowed = ", ".join(IMPORT_REQUIRED_COLUMNS + IMPORT_OPTIONAL_COLUMNS)
            error(1, "header", f"Unknown column(s) {', '.join(unknown)}; allowed: {allowed}.")
        if doubled:
            error(1, "header", f"Column(s) {', '.join(doubled)} appear more than once.")
        if errors:
            return ImportResult(errors=errors)
        column = {name: header.index(name) for name in header}
        sources = _source_aliases()
        now = timezone.now()
        today = clinic_today(clinic)
        rows: list[_Row] = []
        for line, cells in enumerate(reader, start=2):
            if line % IMPORT_PROGRESS_EVERY == 0:
                report("validating", line - 1, 0)
            if not any(cell.strip() for cell in cells):
                continue
            if len(rows) >= IMPORT_MAX_ROWS:
                error(line, "file", f"More than {IMPORT_MAX_ROWS:,} rows: split the file.")
                break
            if len(cells) != len(header):
                error(line, "row", f"Expected {len(header)} columns, found {len(cells)}.")
                continue
            nul = [name for name, index in column.items() if "\x00" in cells[index]]
            if nul:
                for name in nul:
                    error(line, name, "Contains a NUL character: not text. Check the file's encoding.")
                continue
            row = _Row(row=line, mrn=cells[column["mrn"]].strip())
            if not row.mrn:
                error(line, "mrn", "Missing MRN.")
            row.drawn_at, problem, date_only = _parse_drawn_at(cells[column["drawn_at"]], zone)
            if problem:
                error(line, "drawn_at", problem)
            elif (row.drawn_at.date() > today) if date_only else (row.drawn_at > now + timedelta(minutes=5)):
                error(line, "drawn_at", f"{cells[column['drawn_at']].strip()} is in the future.")
                row.drawn_at = None
            row.value, problem = _parse_inr(cells[column["inr"]])
            if problem:
                error(line, "inr", problem)
            if "source" in column:
                raw = cells[column["source"]].strip().lower()
                if raw:
                    if raw not in sources:
                        error(line, "source", f"Unknown source {raw!r}; allowed: {', '.join(InrSource.values)}.")
                    else:
                        row.source = sources[raw]
            if "bleeding" in column:
                raw = cells[column["bleeding"]].strip().lower()
                if raw in _TRUE:
                    row.bleeding = True
                elif raw not in _FALSE:
                    error(line, "bleeding", f"{raw!r} is not yes/no (also true/false, 1/0).")
            rows.append(row)
    except csv.Error as exc:
        error(reader.line_num or None, "file", f"Not readable as CSV: {exc}.")
        return ImportResult(errors=errors)
    if not rows and not errors:
        return ImportResult(errors=[{"row": None, "field": "file", "message": "The file has a header but no rows."}])

    # MRNs: one query for the file's MRNs in this clinic, case-insensitive like the MRN constraint.
    wanted = {row.mrn.lower() for row in rows if row.mrn}
    patients = {
        p.mrn_key: p
        for p in Patient.objects.filter(clinic=clinic)
        .annotate(mrn_key=Lower("mrn"))
        .filter(mrn_key__in=wanted)
        .select_related("clinic")
    }
    seen: dict[tuple[int, datetime], int] = {}
    for row in rows:
        if row.mrn:
            row.patient = patients.get(row.mrn.lower())
            if row.patient is None:
                error(row.row, "mrn", f"No patient with MRN {row.mrn!r} in {clinic.name}.")
        if row.patient is not None and row.drawn_at is not None:
            twin = seen.setdefault((row.patient.pk, row.drawn_at), row.row)
            if twin != row.row:
                error(row.row, "drawn_at", f"Same patient and time as row {twin}.")

    # Stored duplicates: one query over the file's patients and time span.
    if seen:
        instants = [instant for _, instant in seen]
        stored = InrReading.objects.filter(
            patient_id__in={pid for pid, _ in seen}, drawn_at__gte=min(instants), drawn_at__lte=max(instants)
        ).values_list("patient_id", "drawn_at")
        for key in stored:
            if key in seen:
                error(seen[key], "drawn_at", "This patient already has an INR at that time.")

    if errors:
        errors.sort(key=lambda e: (e["row"] is None, e["row"] or 0))
        if len(errors) > IMPORT_MAX_REPORTED_ERRORS:
            hidden = len(errors) - IMPORT_MAX_REPORTED_ERRORS
            errors = errors[:IMPORT_MAX_REPORTED_ERRORS]
            errors.append({"row": None, "field": "file", "message": f"… and {hidden} more errors not listed."})
        return ImportResult(errors=errors)

    name = str(name or getattr(file, "name", "") or "file")[-200:]
    readings = [
        InrReading(
            patient=row.patient,
            drawn_at=row.drawn_at,
            value=row.value,
            source=row.source,
            bleeding=row.bleeding,
            entered_by=entered_by,
            note=f"CSV import {name}, row {row.row}",
        )
        for row in rows
    ]
    report("storing", 0, len(readings))
    with transaction.atomic():
        try:
            with transaction.atomic():
                for start in range(0, len(readings), IMPORT_BATCH_SIZE):
                    InrReading.objects.bulk_create(readings[start : start + IMPORT_BATCH_SIZE])
                    report("storing", min(start + IMPORT_BATCH_SIZE, len(readings)), len(readings))
        except IntegrityError:
            # Someone stored a reading of one of these patients at one of these times since validation.
            message = "A reading at one of these times was stored meanwhile; nothing was imported. Import again."
            return ImportResult(errors=[{"row": None, "field": "drawn_at", "message": message}])
        # The post-import work for every patient of the file at once, set-based (issue 18).
        # One set-based step for every reading of the file: announced as a whole.
        report("announcing", len(readings), len(readings))
        patient_count = inr_readings_recorded_many(readings=readings)
    return ImportResult(imported=len(readings), patients=patient_count)
