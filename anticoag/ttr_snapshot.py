"""The dashboard's quality figures kept in the database, so that no cold dashboard waits for them (issue 18).

:func:`anticoag.inr.clinic_ttr_reports` reads every reading of the period (900,000 for the network's six
months) and every plan decision: about 3 s for a network administrator's first dashboard of the day. Here the
same per-patient figures — the Rosendaal sums over the period and, for a warfarin patient, the last INR — are
stored per clinic (:class:`~anticoag.models.TtrSnapshot`, one row per patient) and kept current:

* **Stale patients.** PostgreSQL triggers (migration ``anticoag.0009``) add a patient to
  ``anticoag_ttrstalepatient`` on every INSERT, UPDATE or DELETE of their readings or plan decisions, and on a
  change of their clinic or active flag — the ORM, ``bulk_create``, an import's batches or raw SQL alike, in
  the writer's own transaction (the mark is visible exactly when the change is).
* **Reading** (:func:`snapshot_reports`), in one transaction per call, holding a per-clinic advisory lock:
  a clinic whose snapshot is missing or was computed for another period, day or TTR policy is recomputed
  whole (the first request of a clinic day — beat's ``clinic.refresh_quality`` does it first, see
  :func:`refresh_clinics`); otherwise only its stale patients are, and their marks removed. The marks are
  removed *before* the figures are computed: a change committed in between keeps its mark and is computed
  again next time, never lost.
* The reports are the same dictionaries as :func:`anticoag.inr.clinic_ttr_reports` (a test compares them
  after every kind of write).

PostgreSQL only; elsewhere (the SQLite demo) the figures are computed directly."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from patients.models import Clinic

from . import inr
from .models import Agent

#: First key of the advisory locks (the second is the clinic id): one refresher per clinic at a time.
LOCK_KEY = 18_0018

#: The rows of a snapshot: per patient of the given clinics (or only ``patients`` when not NULL), the TTR sums
#: over the clinic's period (the arithmetic of :data:`anticoag.inr._TTR_SQL`) and the warfarin patients' last
#: INR (the rule of :data:`anticoag.inr._WARFARIN_SQL`), joined into one row per patient.
_ROWS_SQL = f"""
WITH b AS (
    SELECT * FROM unnest(%(clinics)s::bigint[], %(lows)s::timestamptz[], %(highs)s::timestamptz[],
                         %(days)s::date[], %(untils)s::timestamptz[]) AS b(clinic_id, low, high, as_of_day, until)
), r AS (
    SELECT i.patient_id, p.clinic_id, i.value::float8 AS v,
           lag(i.value::float8) OVER w AS pv,
           (EXTRACT(EPOCH FROM i.drawn_at - lag(i.drawn_at) OVER w) / 86400)::float8 AS days
    FROM anticoag_inrreading i JOIN patients_patient p ON p.id = i.patient_id
         JOIN b ON b.clinic_id = p.clinic_id
    WHERE p.clinic_id = ANY(%(clinics)s::bigint[]) AND i.drawn_at >= %(low)s AND i.drawn_at < %(high)s
          AND i.drawn_at >= b.low AND i.drawn_at < b.high
          AND (%(patients)s::bigint[] IS NULL OR i.patient_id = ANY(%(patients)s::bigint[]))
    WINDOW w AS (PARTITION BY i.patient_id ORDER BY i.drawn_at)
), iv AS (
    SELECT patient_id, clinic_id, days, {inr.TTR_DAYS_IN_RANGE_SQL}
    FROM r
), t AS (
    SELECT patient_id, min(clinic_id) AS clinic_id, count(*) AS readings,
           COALESCE(sum(in_range), 0.0) AS in_range, COALESCE(sum(days) FILTER (WHERE used), 0.0) AS total
    FROM iv GROUP BY patient_id
), latest AS ({inr.LATEST_DECISIONS_SQL}
), w AS (
    SELECT p.id AS patient_id, p.clinic_id,
           (SELECT max(i.drawn_at) FROM anticoag_inrreading i WHERE i.patient_id = p.id AND i.drawn_at < b.until)
               AS last_inr_at
    FROM latest JOIN patients_patient p ON p.id = latest.patient_id JOIN b ON b.clinic_id = p.clinic_id
    WHERE p.active AND latest.agent = %(warfarin)s AND (latest.end_on IS NULL OR latest.end_on >= b.as_of_day)
)
INSERT INTO anticoag_ttrsnapshotrow
    (snapshot_id, patient_id, readings, days_in_range, days_total, on_warfarin, last_inr_at)
SELECT COALESCE(t.clinic_id, w.clinic_id), COALESCE(t.patient_id, w.patient_id), COALESCE(t.readings, 0),
       t.in_range, t.total, w.patient_id IS NOT NULL, w.last_inr_at
FROM t FULL JOIN w ON w.patient_id = t.patient_id
"""

#: The figures of the reports, per clinic, in one row each: the patients' TTR sums in patient order (as float
#: arrays: no row per patient crosses to Python), the number of warfarin patients and the MRNs of those lost
#: to follow-up (no INR, or none since the cutoff). Only patients still in the snapshot's clinic (one who moved
#: elsewhere is stale, and computed again under the new clinic).
_READ_SQL = """
SELECT r.snapshot_id,
       array_agg(r.days_in_range ORDER BY r.patient_id) FILTER (WHERE r.readings > 0),
       array_agg(r.days_total ORDER BY r.patient_id) FILTER (WHERE r.readings > 0),
       count(*) FILTER (WHERE r.on_warfarin),
       array_agg(p.mrn ORDER BY r.patient_id)
           FILTER (WHERE r.on_warfarin AND (r.last_inr_at IS NULL OR r.last_inr_at < c.cutoff))
FROM anticoag_ttrsnapshotrow r JOIN patients_patient p ON p.id = r.patient_id AND p.clinic_id = r.snapshot_id
     JOIN unnest(%(clinics)s::bigint[], %(cutoffs)s::timestamptz[]) AS c(clinic_id, cutoff)
          ON c.clinic_id = r.snapshot_id
GROUP BY r.snapshot_id
"""


def enabled() -> bool:
    return connection.vendor == "postgresql"


def _policy_key(policy) -> str:
    return f"gap={float(policy.ttr_max_gap_days)!r};inclusive={bool(policy.ttr_inclusive)};target={inr.TARGET_LOW}-{inr.TARGET_HIGH}"


def _compute_rows(cursor, bounds: dict[int, tuple], clinics: list[int], policy, patients: list[int] | None) -> None:
    cursor.execute(
        _ROWS_SQL,
        {
            "clinics": clinics,
            "lows": [bounds[c][0] for c in clinics],
            "highs": [bounds[c][1] for c in clinics],
            "days": [bounds[c][4] for c in clinics],
            "untils": [bounds[c][3] for c in clinics],
            "low": min(bounds[c][0] for c in clinics),
            "high": max(bounds[c][1] for c in clinics),
            "patients": patients,
            "gap": float(policy.ttr_max_gap_days),
            "inclusive": bool(policy.ttr_inclusive),
            "lo": float(inr.TARGET_LOW),
            "hi": float(inr.TARGET_HIGH),
            "warfarin": Agent.WARFARIN,
        },
    )


def snapshot_reports(
    *, periods: Sequence[tuple[Clinic, date | datetime, date | datetime, date | datetime]]
) -> dict[int, dict[str, Any]]:
    """:func:`anticoag.inr.clinic_ttr_reports` for ``periods`` (``(clinic, start, end, as_of)`` each), from the
    snapshots: a few small queries when they are current, the stale patients' figures computed again, a
    clinic's whole snapshot only when its period, day or policy changed."""
    if not periods:
        return {}
    policy = inr.monitoring_policy()
    key = _policy_key(policy)
    bounds = inr.report_bounds(periods)
    clinics = sorted(bounds)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(inr._REPORT_SETTINGS)
        cursor.execute("SELECT count(pg_advisory_xact_lock(%s, c)) FROM unnest(%s::int[]) AS c", [LOCK_KEY, clinics])
        cursor.execute(
            "SELECT clinic_id, period_start, period_end, as_of_day, until, policy FROM anticoag_ttrsnapshot "
            "WHERE clinic_id = ANY(%s::bigint[])",
            [clinics],
        )
        current = {
            row[0]
            for row in cursor.fetchall()
            if (row[1], row[2], row[3], row[4], row[5])
            == (bounds[row[0]][0], bounds[row[0]][1], bounds[row[0]][4], bounds[row[0]][3], key)
        }
        whole = [c for c in clinics if c not in current]
        if whole:
            # Marks first (see the module docstring), then the rows, then the figures.
            cursor.execute(
                "DELETE FROM anticoag_ttrstalepatient s USING patients_patient p "
                "WHERE p.id = s.patient_id AND p.clinic_id = ANY(%s::bigint[])",
                [whole],
            )
            cursor.execute("DELETE FROM anticoag_ttrsnapshotrow WHERE snapshot_id = ANY(%s::bigint[])", [whole])
            now = timezone.now()
            for c in whole:
                cursor.execute(
                    "INSERT INTO anticoag_ttrsnapshot "
                    "(clinic_id, period_start, period_end, as_of_day, until, policy, computed_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (clinic_id) DO UPDATE SET "
                    "period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end, "
                    "as_of_day = EXCLUDED.as_of_day, until = EXCLUDED.until, policy = EXCLUDED.policy, "
                    "computed_at = EXCLUDED.computed_at",
                    [c, bounds[c][0], bounds[c][1], bounds[c][4], bounds[c][3], key, now],
                )
            _compute_rows(cursor, bounds, whole, policy, None)
            # The planner's figures for the table it reads next (a whole network's rows were just written).
            cursor.execute("ANALYZE anticoag_ttrsnapshotrow")
        fresh = [c for c in clinics if c in current]
        if fresh:
            cursor.execute(
                "DELETE FROM anticoag_ttrstalepatient s USING patients_patient p "
                "WHERE p.id = s.patient_id AND p.clinic_id = ANY(%s::bigint[]) RETURNING s.patient_id",
                [fresh],
            )
            stale = sorted(row[0] for row in cursor.fetchall())
            if stale:
                # Every snapshot's rows of these patients go: one that moved clinic leaves its old clinic's.
                cursor.execute("DELETE FROM anticoag_ttrsnapshotrow WHERE patient_id = ANY(%s::bigint[])", [stale])
                _compute_rows(cursor, bounds, fresh, policy, stale)
        # Lost to follow-up (monitoring.is_lost_to_follow_up): no INR for more than the gap before the instant
        # the report is judged at, i.e. a last INR before that instant less the gap.
        gap = timedelta(days=float(policy.ttr_max_gap_days))
        cutoffs = [(bounds[c][2] if isinstance(bounds[c][2], datetime) else bounds[c][3]) - gap for c in clinics]
        cursor.execute(_READ_SQL, {"clinics": clinics, "cutoffs": cutoffs})
        figures = {row[0]: row[1:] for row in cursor.fetchall()}
    reports = {}
    for c in clinics:
        in_range, total, warfarin, lost = figures.get(c, (None, None, 0, None))
        ttrs = [round(100.0 * a / b, 3) if b > 0 else None for a, b in zip(in_range or (), total or (), strict=True)]
        low, high, as_of = bounds[c][:3]
        reports[c] = inr.report_figures(c, low, high, as_of, ttrs, warfarin, lost or [], policy)
    return reports
