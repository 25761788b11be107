"""A seeded clinic for the quality report's tests: patients, episodes, confirmed decisions, INR readings,
follow-ups, outcome reviews and events, written with bulk inserts (no signals) so every fact is known.

The seed keeps its own plain records (``Seeded``) for the independent computation of the expected figures.
"""

from __future__ import annotations

import random
import zoneinfo
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from dateutil.relativedelta import relativedelta
from django.utils import timezone

from anticoag.models import InrReading, Plan, PlanDecision
from outcomes.models import ClinicalEvent, OutcomeAssessment
from patients.models import Clinic, CvtEpisode, Patient
from scheduling.models import FollowUp, FollowUpKind, FollowUpStatus
from tests.factories import ClinicFactory, clinician, nurse


@dataclass
class SeededPatient:
    pk: int
    nurse_id: int | None
    diagnosed_on: date
    agent: str
    end_on: date | None  # None: indefinite
    readings: list[tuple[datetime, Decimal]] = field(default_factory=list)
    scans: list[tuple[date, str, date, date]] = field(default_factory=list)  # completed, grade, due, window end
    done_items: list[tuple[date, date | None, date]] = field(default_factory=list)  # due, window end, completed
    review_6m: tuple[date, int] | None = None
    events: list[dict] = field(default_factory=list)
    died_on: date | None = None


@dataclass
class Seeded:
    clinic: Clinic
    zone: zoneinfo.ZoneInfo
    today: date
    nurses: list
    clinician: object
    patients: list[SeededPatient]


BLEEDS = [
    {"bleeding_site": "gastrointestinal", "hemoglobin_fall_g_dl": Decimal("2.0")},  # major by Hb
    {"bleeding_site": "gastrointestinal", "hemoglobin_fall_g_dl": Decimal("1.9"), "medical_intervention": True},
    {"bleeding_site": "genitourinary", "units_transfused": 2},  # major by units
    {"bleeding_site": "genitourinary", "units_transfused": 1, "hospitalization": True},  # CRNM
    {"bleeding_site": "intracranial"},  # major by site
    {"bleeding_site": "nasal_oral"},  # minor
    {"bleeding_site": "skin", "face_to_face_evaluation": True},  # CRNM
    {"bleeding_site": "retroperitoneal", "fatal": True},  # major, fatal
]


def _on_anticoagulation(patient: SeededPatient, day: date) -> bool:
    if patient.died_on is not None and day > patient.died_on:
        return False
    return patient.diagnosed_on <= day and (patient.end_on is None or day < patient.end_on)


def seed_clinic(*, patients: int, seed: int = 16, name: str = "Report clinic") -> Seeded:
    rng = random.Random(seed)
    clinic = ClinicFactory(name=name, time_zone="America/New_York")
    zone = zoneinfo.ZoneInfo(clinic.time_zone)
    today = timezone.now().astimezone(zone).date()
    nurses = [nurse(clinic, username=f"{name[:6].lower()}.n{i}") for i in range(2)]
    doctor = clinician(clinic, username=f"{name[:6].lower()}.dr")
    rows = Patient.objects.bulk_create(
        Patient(
            clinic=clinic,
            mrn=f"{name[:3].upper()}{i:04d}",
            family_name=f"Fam{i}",
            given_name=f"Giv{i}",
            date_of_birth=date(1970, 1, 1) + timedelta(days=i * 37),
            sex="female" if i % 2 else "male",
            primary_nurse=None if i % 5 == 4 else nurses[i % 2],
        )
        for i in range(patients)
    )
    seeded: list[SeededPatient] = []
    for p in rows:
        diagnosed_on = today - timedelta(days=rng.randint(20, 720))
        agent = "warfarin" if rng.random() < 0.7 else "dabigatran"
        end_on = None if rng.random() < 0.25 else diagnosed_on + relativedelta(months=rng.choice([3, 6, 12]))
        seeded.append(SeededPatient(p.pk, p.primary_nurse_id, diagnosed_on, agent, end_on))
    episodes = CvtEpisode.objects.bulk_create(
        CvtEpisode(patient_id=s.pk, diagnosed_on=s.diagnosed_on, sinuses=["superior_sagittal"]) for s in seeded
    )
    now = timezone.now()
    plans = Plan.objects.bulk_create(
        Plan(episode=e, facts={}, proposal={"category": "unprovoked"}, rules_version="test", computed_at=now)
        for e in episodes
    )
    PlanDecision.objects.bulk_create(
        PlanDecision(
            plan=plan,
            proposal={},
            rules_version="test",
            agent=s.agent,
            indefinite=s.end_on is None,
            end_on=s.end_on,
            decided_by=doctor,
            decided_at=now,
        )
        for plan, s in zip(plans, seeded, strict=True)
    )

    readings, follow_ups, reviews, events = [], [], [], []
    for i, (s, episode) in enumerate(zip(seeded, episodes, strict=True)):
        if s.agent == "warfarin":
            stop = min(s.end_on or today, today)
            if i % 7 == 3:  # some patients stopped coming: lost to follow-up
                stop = min(stop, today - timedelta(days=rng.randint(57, 120)))
            day = s.diagnosed_on + timedelta(days=5)
            while day <= stop:
                at = datetime.combine(day, time(9, rng.choice([0, 15, 30])), tzinfo=zone)
                value = Decimal(rng.choice(["1.4", "1.8", "2.0", "2.3", "2.6", "2.9", "3.0", "3.4", "4.1"]))
                s.readings.append((at, value))
                readings.append(InrReading(patient_id=s.pk, drawn_at=at, value=value))
                day += timedelta(days=rng.choice([3, 7, 14, 28, 60]))
        # venous imaging: due at 3 months, window to 6
        due = s.diagnosed_on + relativedelta(months=3)
        window_end = s.diagnosed_on + relativedelta(months=6)
        done_on = s.diagnosed_on + timedelta(days=rng.randint(70, 260))
        if rng.random() < 0.8 and done_on <= today:
            grade = rng.choice(["complete", "partial", "none"])
            s.scans.append((done_on, grade, due, window_end))
            s.done_items.append((due, window_end, done_on))
            follow_ups.append(
                FollowUp(
                    patient_id=s.pk,
                    episode=episode,
                    kind=FollowUpKind.VENOUS_IMAGING,
                    due_on=due,
                    window_end_on=window_end,
                    status=FollowUpStatus.DONE,
                    completed_on=done_on,
                    recanalization=grade,
                    rule="t",
                    key=f"seed:{s.pk}:vi",
                )
            )
        # an annual review with no window, done early or late
        due = s.diagnosed_on + timedelta(days=rng.randint(30, 400))
        done_on = due + timedelta(days=rng.randint(-5, 30))
        if done_on <= today:
            s.done_items.append((due, None, done_on))
            follow_ups.append(
                FollowUp(
                    patient_id=s.pk,
                    episode=episode,
                    kind=FollowUpKind.ANNUAL_REVIEW,
                    due_on=due,
                    status=FollowUpStatus.DONE,
                    completed_on=done_on,
                    rule="t",
                    key=f"seed:{s.pk}:ar",
                )
            )
        # the 6-month review
        six = s.diagnosed_on + relativedelta(months=6)
        assessed_on = six + timedelta(days=rng.randint(0, 20))
        if rng.random() < 0.85 and assessed_on <= today:
            mrs = rng.choice([0, 0, 1, 1, 2, 2, 3, 4, 5])
            s.review_6m = (assessed_on, mrs)
            reviews.append(
                OutcomeAssessment(patient_id=s.pk, episode=episode, timepoint="6m", assessed_on=assessed_on, mrs=mrs)
            )

    # Known events: deaths first (they end the time on anticoagulation), then the rest.
    def add_event(s: SeededPatient, episode, kind: str, day: date, **facts) -> None:
        if day > today or day < s.diagnosed_on:
            return
        event = ClinicalEvent(
            patient_id=s.pk,
            episode=episode,
            kind=kind,
            occurred_on=day,
            on_anticoagulation=_on_anticoagulation(s, day),
            **facts,
        )
        event.classify()
        events.append(event)
        s.events.append({"kind": kind, "day": day, "on": event.on_anticoagulation, "isth": event.isth_class})

    pairs = list(zip(seeded, episodes, strict=True))
    for n, (s, episode) in enumerate(pairs[7::29][:4]):
        s.died_on = min(today, s.diagnosed_on + timedelta(days=40 + 30 * n))
        add_event(s, episode, "death", s.died_on, death_cause="unknown")
    for n, (s, episode) in enumerate(pairs[3::11]):
        day = s.diagnosed_on + timedelta(days=rng.randint(1, 300))
        if s.died_on and day > s.died_on:
            continue
        add_event(s, episode, "bleeding", day, **BLEEDS[n % len(BLEEDS)])
    for s, episode in pairs[5::37]:
        add_event(s, episode, "recurrent_cvt", s.diagnosed_on + timedelta(days=rng.randint(10, 200)))
    for s, episode in pairs[9::31]:
        add_event(s, episode, "other_vte", s.diagnosed_on + timedelta(days=rng.randint(10, 200)), vte_site="pe")
    for s, episode in pairs[13::61]:
        add_event(
            s,
            episode,
            "sich",
            s.diagnosed_on + timedelta(days=rng.randint(2, 30)),
            bleeding_site="intracranial",
            ich_new=True,
            neurological_worsening=True,
        )

    InrReading.objects.bulk_create(readings, batch_size=2000)
    FollowUp.objects.bulk_create(follow_ups, batch_size=2000)
    OutcomeAssessment.objects.bulk_create(reviews)
    ClinicalEvent.objects.bulk_create(events)
    return Seeded(clinic, zone, today, nurses, doctor, seeded)
