"""The clinic's quality report (reference §6 and §7): per clinic and per primary nurse over a period.

A fixed number of queries whatever the number of patients (one per kind of record, each over every patient
in scope), then the arithmetic of :mod:`outcomes.statistics` in Python. Definitions, as the page and the API
state them:

* **TTR**: rolling 12 months ending on the period's last day (readings drawn from the day after ``end`` − 12
  months to ``end``, clinic days), Rosendaal (reference §6, the clinic's TTR settings), leaving out the initiation phase:
  a patient's series counts from the reading that ends initiation (the second of the first two consecutive
  INRs in range over the patient's whole history). Median, IQR (type 7 quartiles), share ≥ 65 %, bands.
* **Follow-ups done late**: items due in the period and done; late when done after the end of their window
  (or their due date when they have none); how late: median and maximum days.
* **Lost to follow-up**: warfarin patients (latest confirmed decision names warfarin; course not ended on
  the last day) with no INR for more than 56 days at the end of the period (reference §6).
* **Venous imaging by 6 months**: episodes whose 6-month mark falls in the period, with venous imaging done
  by then.
* **Recanalization at first imaging**: the grade of each episode's first venous imaging done in the period.
* **mRS 0–2 at 6 months**: 6-month reviews done in the period.
* **Event rates per 100 patient-years on anticoagulation**, exact Poisson 95 % CI: events in the period
  recorded as on anticoagulation, over the days on anticoagulation in the period (from diagnosis to the
  confirmed end of each course, open while indefinite or unconfirmed, up to the day of death).
"""

from __future__ import annotations

import zoneinfo
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from dateutil.relativedelta import relativedelta
from django.contrib.auth import get_user_model
from django.db.models import OuterRef, Subquery

from anticoag import monitoring
from anticoag.inr import TARGET_HIGH, TARGET_LOW, monitoring_policy
from anticoag.models import Agent, InrReading, PlanDecision
from patients.models import Clinic, CvtEpisode, Patient
from scheduling.models import FollowUp, FollowUpKind, FollowUpStatus, Recanalization

from . import definitions, statistics
from .models import ClinicalEvent, EventKind, IsthClass, OutcomeAssessment, Timepoint

#: Rows of the rates table: code → (label, which events count).
RATE_ROWS: dict[str, str] = {
    "recurrent_cvt": "Recurrent CVT",
    "other_vte": "Other venous thromboembolism",
    "major_bleeding": "Major bleeding (ISTH2005; includes symptomatic ICH)",
    "crnm_bleeding": "Clinically relevant non-major bleeding (ISTH2015)",
    "sich": "Symptomatic intracranial hemorrhage (SECRET)",
    "death": "Death",
}


def event_rate_codes(kind: str, isth_class: str) -> list[str]:
    """The rate rows an event counts in."""
    codes = []
    if kind == EventKind.RECURRENT_CVT:
        codes.append("recurrent_cvt")
    elif kind == EventKind.OTHER_VTE:
        codes.append("other_vte")
    elif kind == EventKind.DEATH:
        codes.append("death")
    if kind in (EventKind.BLEEDING, EventKind.SYMPTOMATIC_ICH):
        if isth_class == IsthClass.MAJOR:
            codes.append("major_bleeding")
        elif isth_class == IsthClass.CRNM:
            codes.append("crnm_bleeding")
    if kind == EventKind.SYMPTOMATIC_ICH:
        codes.append("sich")
    return codes


@dataclass
class _PatientFacts:
    pk: int
    clinic_id: int
    nurse_id: int | None
    episodes: list[tuple[int, date, date | None, bool | None]]  # id, diagnosed_on, decision end, indefinite
    agent: str | None = None
    course_end_on: date | None = None
    died_on: date | None = None


def _zone(clinic: Clinic) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(clinic.time_zone)


def _end_of_day(day: date, zone: zoneinfo.ZoneInfo) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)


def _start_of_day(day: date, zone: zoneinfo.ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def _patients(clinic_ids: list[int], nurse_id: int | None) -> dict[int, _PatientFacts]:
    """Every patient in scope with the latest decision of each episode and of the patient (two queries)."""
    patients = Patient.objects.filter(clinic_id__in=clinic_ids)
    if nurse_id is not None:
        patients = patients.filter(primary_nurse_id=nurse_id)
    latest_of_patient = PlanDecision.objects.filter(plan__episode__patient=OuterRef("pk")).order_by(
        "-decided_at", "-pk"
    )
    facts = {
        pk: _PatientFacts(pk, clinic_id, nurse, [], agent, end_on)
        for pk, clinic_id, nurse, agent, end_on in patients.annotate(
            agent=Subquery(latest_of_patient.values("agent")[:1]),
            course_end_on=Subquery(latest_of_patient.values("end_on")[:1]),
        ).values_list("pk", "clinic_id", "primary_nurse_id", "agent", "course_end_on")
    }
    latest_of_episode = PlanDecision.objects.filter(plan__episode=OuterRef("pk")).order_by("-decided_at", "-pk")
    episodes = (
        CvtEpisode.objects.filter(patient_id__in=patients.values("pk"))
        .annotate(
            end_on=Subquery(latest_of_episode.values("end_on")[:1]),
            indefinite=Subquery(latest_of_episode.values("indefinite")[:1]),
        )
        .values_list("pk", "patient_id", "diagnosed_on", "end_on", "indefinite")
    )
    for pk, patient_id, diagnosed_on, end_on, indefinite in episodes:
        facts[patient_id].episodes.append((pk, diagnosed_on, end_on, indefinite))
    return facts


def _intervals(patient: _PatientFacts) -> list[tuple[date, date | None]]:
    intervals = [(d, None if indefinite else end_on) for _, d, end_on, indefinite in patient.episodes]
    if patient.died_on is not None:
        stop = patient.died_on + timedelta(days=1)
        intervals = [(lo, stop if hi is None else min(hi, stop)) for lo, hi in intervals if lo < stop]
    return statistics.merge_intervals(intervals)


class _Group:
    """The figures of one clinic or one nurse, accumulated patient by patient."""

    def __init__(self, scope: str, clinic: Clinic, nurse_id: int | None, nurse_name: str) -> None:
        self.scope, self.clinic, self.nurse_id, self.nurse_name = scope, clinic, nurse_id, nurse_name
        self.patients = 0
        self.ttrs: list[float] = []
        self.done = 0
        self.late_days: list[int] = []
        self.warfarin = 0
        self.lost = 0
        self.imaging_due = 0
        self.imaging_done = 0
        self.first_grades: dict[str, int] = {grade: 0 for grade in Recanalization.values}
        self.reviews_6m = 0
        self.mrs_0_2 = 0
        self.days_on_anticoagulation = 0
        self.events: dict[str, int] = {code: 0 for code in RATE_ROWS}

    def as_dict(self) -> dict[str, Any]:
        ttr = statistics.median_iqr(self.ttrs)
        bands = {label: 0 for label, _, _ in statistics.TTR_BANDS}
        for value in self.ttrs:
            bands[statistics.ttr_band(value)] += 1
        years = statistics.patient_years(self.days_on_anticoagulation)
        late = statistics.median_iqr(self.late_days)
        grades_total = sum(self.first_grades.values())
        return {
            "scope": self.scope,
            "clinic_id": self.clinic.pk,
            "clinic": self.clinic.name,
            "nurse_id": self.nurse_id,
            "nurse": self.nurse_name,
            "patients": self.patients,
            "ttr": {
                "patients": ttr["n"],
                "median": _round(ttr["median"]),
                "q1": _round(ttr["q1"]),
                "q3": _round(ttr["q3"]),
                "at_or_above_65": statistics.share(
                    sum(1 for v in self.ttrs if v >= statistics.TTR_TARGET_PERCENT), len(self.ttrs)
                ),
                "median_meets_target": None
                if ttr["median"] is None
                else ttr["median"] >= statistics.TTR_TARGET_PERCENT,
                "bands": bands,
            },
            "follow_ups_late": {
                **statistics.share(len(self.late_days), self.done),
                "days_late_median": late["median"],
                "days_late_max": max(self.late_days) if self.late_days else None,
            },
            "lost_to_follow_up": statistics.share(self.lost, self.warfarin),
            "imaging_by_6_months": statistics.share(self.imaging_done, self.imaging_due),
            "recanalization_first_imaging": {
                grade: statistics.share(count, grades_total) for grade, count in self.first_grades.items()
            },
            "mrs_0_2_at_6_months": statistics.share(self.mrs_0_2, self.reviews_6m),
            "patient_years_on_anticoagulation": round(years, 4),
            "event_rates": {code: statistics.event_rate(self.events[code], years).as_dict() for code in RATE_ROWS},
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _ttr_after_initiation(
    readings: list[tuple[datetime, float]], low: datetime, high: datetime, policy
) -> float | None:
    end = statistics.initiation_end([value for _, value in readings], TARGET_LOW, TARGET_HIGH)
    if end is None:
        return None
    points = [monitoring.InrPoint(at, value) for at, value in readings[end:] if low <= at < high]
    result = monitoring.rosendaal_ttr(
        points, TARGET_LOW, TARGET_HIGH, max_gap_days=policy.ttr_max_gap_days, inclusive=policy.ttr_inclusive
    )
    return result.ttr_percent


def quality_report(*, clinics: Iterable[Clinic], start: date, end: date, nurse_id: int | None = None) -> dict[str, Any]:
    """The report for ``clinics`` (already scoped to the user) from ``start`` to ``end`` (clinic days, both
    included): one group per clinic, then one per primary nurse of each clinic."""
    if end < start:
        raise ValueError("end before start")
    clinics = {clinic.pk: clinic for clinic in clinics}
    policy = monitoring_policy()
    facts = _patients(list(clinics), nurse_id)
    ids = list(facts)
    nurse_ids = {f.nurse_id for f in facts.values() if f.nurse_id is not None}
    names = {
        pk: (full.strip() or username)
        for pk, username, full in (
            (u.pk, u.username, f"{u.first_name} {u.last_name}")
            for u in get_user_model().objects.filter(pk__in=nurse_ids).only("pk", "username", "first_name", "last_name")
        )
    }
    groups: dict[tuple, _Group] = {}

    def groups_of(patient: _PatientFacts) -> list[_Group]:
        clinic = clinics[patient.clinic_id]
        keys = [("clinic", clinic.pk, None), ("nurse", clinic.pk, patient.nurse_id)]
        out = []
        for key in keys:
            if key not in groups:
                scope, _, nurse = key
                name = "" if scope == "clinic" else names.get(nurse, "no primary nurse")
                groups[key] = _Group(scope, clinic, nurse, name)
            out.append(groups[key])
        return out

    # Deaths (they end the time on anticoagulation) and events of the period.
    events = ClinicalEvent.objects.filter(patient_id__in=ids).values_list(
        "patient_id", "kind", "isth_class", "on_anticoagulation", "occurred_on"
    )
    period_events = []
    for patient_id, kind, isth_class, on_anticoagulation, occurred_on in events:
        if kind == EventKind.DEATH:
            facts[patient_id].died_on = occurred_on
        if start <= occurred_on <= end and on_anticoagulation:
            period_events.append((patient_id, kind, isth_class))

    for patient in facts.values():
        for group in groups_of(patient):
            group.patients += 1
            group.days_on_anticoagulation += statistics.days_within(_intervals(patient), start, end)
    for patient_id, kind, isth_class in period_events:
        for group in groups_of(facts[patient_id]):
            for code in event_rate_codes(kind, isth_class):
                group.events[code] += 1

    # INR: TTR after initiation over the rolling 12 months, and lost to follow-up, from one ordered query.
    ttr_from = end - relativedelta(months=12) + timedelta(days=1)  # 12 months, both ends included
    by_patient: dict[int, list[tuple[datetime, float]]] = defaultdict(list)
    latest_until = max(_end_of_day(end, _zone(c)) for c in clinics.values()) if clinics else None
    if latest_until is not None:
        readings = (
            InrReading.objects.filter(patient_id__in=ids, drawn_at__lt=latest_until)
            .order_by("patient_id", "drawn_at")
            .values_list("patient_id", "drawn_at", "value")
        )
        for patient_id, drawn_at, value in readings.iterator(chunk_size=5000):
            by_patient[patient_id].append((drawn_at, float(value)))
    for patient in facts.values():
        zone = _zone(clinics[patient.clinic_id])
        until = _end_of_day(end, zone)
        series = [r for r in by_patient.get(patient.pk, []) if r[0] < until]
        ttr = _ttr_after_initiation(series, _start_of_day(ttr_from, zone), until, policy) if series else None
        on_warfarin = patient.agent == Agent.WARFARIN and (
            patient.course_end_on is None or patient.course_end_on >= end
        )
        alive = patient.died_on is None or patient.died_on > end
        lost = (
            on_warfarin
            and alive
            and monitoring.is_lost_to_follow_up(
                series[-1][0] if series else None, until, max_gap_days=policy.ttr_max_gap_days
            )
        )
        for group in groups_of(patient):
            if ttr is not None:
                group.ttrs.append(ttr)
            if on_warfarin and alive:
                group.warfarin += 1
                group.lost += lost

    # Follow-ups done late, venous imaging by 6 months, recanalization at first imaging.
    done = FollowUp.objects.filter(
        patient_id__in=ids, status=FollowUpStatus.DONE, due_on__gte=start, due_on__lte=end
    ).values_list("patient_id", "due_on", "window_end_on", "completed_on")
    for patient_id, due_on, window_end_on, completed_on in done:
        for group in groups_of(facts[patient_id]):
            group.done += 1
            late = (completed_on - (window_end_on or due_on)).days
            if late > 0:
                group.late_days.append(late)
    imaging: dict[int, list[tuple[date, str]]] = defaultdict(list)
    for episode_id, completed_on, grade in FollowUp.objects.filter(
        patient_id__in=ids, kind=FollowUpKind.VENOUS_IMAGING, status=FollowUpStatus.DONE, episode__isnull=False
    ).values_list("episode_id", "completed_on", "recanalization"):
        imaging[episode_id].append((completed_on, grade))
    for patient in facts.values():
        for episode_id, diagnosed_on, _, _ in patient.episodes:
            scans = sorted(imaging.get(episode_id, []))
            six_months = diagnosed_on + relativedelta(months=6)
            for group in groups_of(patient):
                if start <= six_months <= end:
                    group.imaging_due += 1
                    group.imaging_done += any(on <= six_months for on, _ in scans)
                if scans and start <= scans[0][0] <= end and scans[0][1] in group.first_grades:
                    group.first_grades[scans[0][1]] += 1

    # mRS 0–2 at 6 months.
    for patient_id, mrs in OutcomeAssessment.objects.filter(
        patient_id__in=ids, timepoint=Timepoint.M6, assessed_on__gte=start, assessed_on__lte=end
    ).values_list("patient_id", "mrs"):
        for group in groups_of(facts[patient_id]):
            group.reviews_6m += 1
            group.mrs_0_2 += mrs <= definitions.MRS_INDEPENDENT_MAX

    ordered = sorted(
        groups.values(), key=lambda g: (g.clinic.name, g.scope != "clinic", g.nurse_name or "", g.nurse_id or 0)
    )
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "ttr_window": {"start": ttr_from.isoformat(), "end": end.isoformat()},
        "groups": [group.as_dict() for group in ordered],
        "definitions": DEFINITIONS,
        "ttr_bands": [label for label, _, _ in statistics.TTR_BANDS],
        "rate_rows": RATE_ROWS,
    }


#: What each figure means, as the page, the API and the CSV's companion state it.
DEFINITIONS: dict[str, str] = {
    "ttr": "Rosendaal TTR (ROSENDAAL1993, reference §6) over the 12 months ending on the last day, leaving out "
    "the initiation phase (until two consecutive INRs in range); median, IQR (quartiles by linear "
    "interpolation), share of patients at or above 65 % (reference §6 target), bands.",
    "follow_ups_late": "Follow-ups due in the period and done: share done after the end of their window (their "
    "due date when they have none), with the median and maximum days late.",
    "lost_to_follow_up": "Warfarin patients (latest confirmed decision) with no INR for more than 56 days at the "
    "end of the period (reference §6; target under 10 %).",
    "imaging_by_6_months": "Episodes whose 6-month mark falls in the period, with venous imaging done by then "
    "(reference §4 and §7).",
    "recanalization_first_imaging": "Grade (ACTION-CVT: complete, partial, none) of each episode's first venous "
    "imaging done in the period.",
    "mrs_0_2_at_6_months": "6-month outcome reviews done in the period with mRS 0–2 (reference §7).",
    "event_rates": "Events in the period recorded as on anticoagulation, per 100 patient-years on anticoagulation "
    "in the period (diagnosis to the confirmed end of the course; open while indefinite or unconfirmed; up to "
    "the day of death), with exact Poisson 95 % confidence intervals (reference §7).",
}


# ---------------------------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------------------------


def report_columns() -> list[str]:
    columns = [
        "scope",
        "clinic_id",
        "clinic",
        "nurse_id",
        "nurse",
        "period_start",
        "period_end",
        "patients",
        "ttr_patients",
        "ttr_median",
        "ttr_q1",
        "ttr_q3",
        "ttr_at_or_above_65_percent",
    ]
    columns += [f"ttr_band_{label}" for label, _, _ in statistics.TTR_BANDS]
    columns += [
        "follow_ups_done",
        "follow_ups_late",
        "follow_ups_late_percent",
        "days_late_median",
        "days_late_max",
        "warfarin_patients",
        "lost_to_follow_up",
        "lost_to_follow_up_percent",
        "imaging_due_by_6_months",
        "imaging_done_by_6_months",
        "imaging_by_6_months_percent",
    ]
    columns += [f"first_imaging_{grade}" for grade in Recanalization.values]
    columns += ["reviews_6_months", "mrs_0_2_at_6_months", "mrs_0_2_at_6_months_percent", "patient_years"]
    for code in RATE_ROWS:
        columns += [f"{code}_events", f"{code}_rate_per_100py", f"{code}_ci_low", f"{code}_ci_high"]
    return columns


def report_rows(report: dict[str, Any]) -> Iterable[list[Any]]:
    for g in report["groups"]:
        ttr = g["ttr"]
        row = [
            g["scope"],
            g["clinic_id"],
            g["clinic"],
            g["nurse_id"],
            g["nurse"],
            report["start"],
            report["end"],
            g["patients"],
            ttr["patients"],
            ttr["median"],
            ttr["q1"],
            ttr["q3"],
            ttr["at_or_above_65"]["percent"],
        ]
        row += [ttr["bands"][label] for label, _, _ in statistics.TTR_BANDS]
        late, lost, imaging, mrs = (
            g["follow_ups_late"],
            g["lost_to_follow_up"],
            g["imaging_by_6_months"],
            g["mrs_0_2_at_6_months"],
        )
        row += [
            late["of"],
            late["n"],
            late["percent"],
            late["days_late_median"],
            late["days_late_max"],
            lost["of"],
            lost["n"],
            lost["percent"],
            imaging["of"],
            imaging["n"],
            imaging["percent"],
        ]
        row += [g["recanalization_first_imaging"][grade]["n"] for grade in Recanalization.values]
        row += [mrs["of"], mrs["n"], mrs["percent"], g["patient_years_on_anticoagulation"]]
        for code in RATE_ROWS:
            rate = g["event_rates"][code]
            row += [rate["events"], rate["rate_per_100_patient_years"], rate["ci_low"], rate["ci_high"]]
        yield row
