"""Outcome reviews, per-sinus recanalization and events through the services, on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from dateutil.relativedelta import relativedelta
from django.core.exceptions import ValidationError
from django.utils import timezone

from anticoag.models import PlanStatus
from anticoag.services import plan_confirm
from outcomes.models import ClinicalEvent, EventKind, OutcomeAssessment, SinusRecanalization
from outcomes.services import event_record, outcome_assessment_record, recanalization_record
from patients.models import CvtEpisode
from scheduling.follow_ups import follow_up_complete, follow_ups_sync_for_plan
from scheduling.models import FollowUp, FollowUpKind, FollowUpStatus, Reminder, ReminderKind
from tests.factories import ClinicFactory, EpisodeFactory, PatientFactory, clinician, nurse

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinic():
    return ClinicFactory(alert_email="alerts@clinic.invalid")


@pytest.fixture
def episode(clinic):
    patient = PatientFactory(clinic=clinic, mrn="OUT-1", primary_nurse=nurse(clinic))
    return EpisodeFactory(
        patient=patient,
        diagnosed_on=timezone.localdate() - relativedelta(months=7),
        sinuses=["superior_sagittal", "transverse_left"],
    )


def reviews(episode) -> list[FollowUp]:
    return list(FollowUp.objects.filter(episode=episode, kind=FollowUpKind.OUTCOME_REVIEW).order_by("due_on"))


# --- scheduled reviews ------------------------------------------------------------------------------------


def test_outcome_reviews_are_scheduled_at_3_6_and_12_months_once(episode) -> None:
    items = reviews(episode)
    assert [i.due_on for i in items] == [episode.diagnosed_on + relativedelta(months=m) for m in (3, 6, 12)]
    assert [i.key for i in items] == [f"ep{episode.pk}:outcome_review:{m}m" for m in (3, 6, 12)]
    assert all(i.source == "Reference §7 (ISCVT; SECRET)" for i in items)
    # regenerating creates nothing new
    follow_ups_sync_for_plan(plan=episode.plan)
    follow_ups_sync_for_plan(plan=episode.plan)
    assert len(reviews(episode)) == 3


def test_a_changed_diagnosis_date_moves_open_reviews(episode) -> None:
    episode.diagnosed_on -= timedelta(days=10)
    episode.save()
    assert [i.due_on for i in reviews(episode)] == [episode.diagnosed_on + relativedelta(months=m) for m in (3, 6, 12)]


def test_recording_the_6_month_review_completes_its_follow_up(episode, clinic) -> None:
    user = nurse(clinic, username="nurse.rec")
    day = episode.diagnosed_on + relativedelta(months=6)
    review = outcome_assessment_record(episode=episode, timepoint="6m", assessed_on=day, mrs=2, user=user)
    item = FollowUp.objects.get(key=f"ep{episode.pk}:outcome_review:6m")
    assert item.status == FollowUpStatus.DONE and item.completed_on == day
    assert review.follow_up == item and review.entered_by == user
    assert "mRS 2 (Slight disability" in item.result_note
    assert review.mrs_words.startswith("Slight disability")
    # a second 6-month review of the episode is refused, naming the time point
    with pytest.raises(ValidationError) as caught:
        outcome_assessment_record(episode=episode, timepoint="6m", assessed_on=day, mrs=1)
    assert "timepoint" in caught.value.message_dict


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"mrs": 7}, "mrs"),
        ({"mrs": 2, "hit6_total": 35}, "hit6_total"),
        ({"mrs": 2, "hit6_total": 79}, "hit6_total"),
        ({"mrs": 2, "assessed_on": "future"}, "assessed_on"),
        ({"mrs": 2, "assessed_on": "before"}, "assessed_on"),
        ({"mrs": 2, "papilledema": "maybe"}, "papilledema"),
    ],
)
def test_bad_reviews_are_refused_naming_the_field_and_nothing_is_saved(episode, values, field) -> None:
    day = {"future": timezone.localdate() + timedelta(days=2), "before": episode.diagnosed_on - timedelta(days=1)}
    values = dict(values)
    assessed_on = day.get(values.pop("assessed_on", None), timezone.localdate())
    with pytest.raises(ValidationError) as caught:
        outcome_assessment_record(episode=episode, timepoint="3m", assessed_on=assessed_on, **values)
    assert field in caught.value.message_dict
    assert OutcomeAssessment.objects.count() == 0
    assert FollowUp.objects.get(key=f"ep{episode.pk}:outcome_review:3m").status == FollowUpStatus.SCHEDULED


def test_an_outcome_review_cannot_be_ticked_done_without_its_result(episode) -> None:
    item = reviews(episode)[0]
    with pytest.raises(ValidationError) as caught:
        follow_up_complete(follow_up=item, completed_on=timezone.localdate())
    assert "status" in caught.value.message_dict


# --- recanalization per sinus ---------------------------------------------------------------------------------


def venous_imaging(episode) -> FollowUp:
    return FollowUp.objects.get(key=f"ep{episode.pk}:venous_imaging")


def test_partial_recanalization_by_sinus_keeps_the_6_month_scan(episode) -> None:
    item = venous_imaging(episode)
    day = episode.diagnosed_on + relativedelta(months=3)
    _, follow_ons = recanalization_record(
        follow_up=item, completed_on=day, per_sinus={"superior_sagittal": "complete", "transverse_left": "none"}
    )
    item.refresh_from_db()
    assert item.recanalization == "partial" and item.status == FollowUpStatus.DONE
    assert [f.due_on for f in follow_ons] == [episode.diagnosed_on + relativedelta(months=6)]
    assert dict(SinusRecanalization.objects.filter(follow_up=item).values_list("sinus", "grade")) == {
        "superior_sagittal": "complete",
        "transverse_left": "none",
    }


def test_complete_recanalization_of_every_sinus_schedules_nothing(episode) -> None:
    _, follow_ons = recanalization_record(
        follow_up=venous_imaging(episode),
        completed_on=episode.diagnosed_on + relativedelta(months=3),
        per_sinus={"superior_sagittal": "complete", "transverse_left": "complete"},
    )
    assert follow_ons == []
    assert venous_imaging(episode).recanalization == "complete"


def test_a_sinus_the_episode_does_not_record_is_refused(episode) -> None:
    with pytest.raises(ValidationError) as caught:
        recanalization_record(
            follow_up=venous_imaging(episode), completed_on=timezone.localdate(), per_sinus={"straight": "none"}
        )
    assert "sinuses" in caught.value.message_dict
    assert venous_imaging(episode).status == FollowUpStatus.SCHEDULED


# --- events -------------------------------------------------------------------------------------------------


@pytest.fixture
def confirmed(episode, clinic):
    doctor = clinician(clinic, username="dr.events")
    plan_confirm(plan=episode.plan, user=doctor, agent="warfarin", indefinite=True, override_reason="test")
    episode.plan.refresh_from_db()
    assert episode.plan.status == PlanStatus.CONFIRMED
    return doctor


def bleed(episode, **kwargs) -> ClinicalEvent:
    values = {"kind": EventKind.BLEEDING, "occurred_on": timezone.localdate(), "bleeding_site": "gastrointestinal"}
    return ClinicalEvent(patient=episode.patient, **{**values, **kwargs})


def test_a_major_bleed_on_anticoagulation_alerts_and_marks_the_plan_for_review(episode, confirmed) -> None:
    event = event_record(event=bleed(episode, hemoglobin_fall_g_dl=Decimal("2.0")), user=confirmed)
    assert event.on_anticoagulation is True
    assert event.isth_class == "major" and event.isth_criterion == "hemoglobin fall of 2.0 g/dL (≥ 2 g/dL)"
    [alert] = Reminder.objects.filter(kind=ReminderKind.URGENT)
    assert alert.reason == "major_bleeding" and alert.recipient == "alerts@clinic.invalid"
    [item] = alert.follow_ups.all()
    assert item.kind == FollowUpKind.EVENT_REVIEW and item.patient == episode.patient
    plan = episode.plan
    plan.refresh_from_db()
    assert plan.status == PlanStatus.REVIEW
    assert plan.changes[-1]["part"] == "event" and "Major bleeding" in plan.changes[-1]["text"]
    # saving the event again changes nothing more
    event_record(event=event, user=confirmed)
    assert Reminder.objects.filter(kind=ReminderKind.URGENT).count() == 1
    plan.refresh_from_db()
    assert len([c for c in plan.changes if c["part"] == "event"]) == 1
    # a recomputed proposal keeps the review; a new confirmation answers it
    episode.save()
    plan.refresh_from_db()
    assert plan.status == PlanStatus.REVIEW
    plan_confirm(plan=plan, user=confirmed, agent="warfarin", indefinite=True, override_reason="reviewed")
    plan.refresh_from_db()
    assert plan.status == PlanStatus.CONFIRMED and plan.changes == []


def test_a_non_major_bleed_raises_no_alert(episode, confirmed) -> None:
    event = event_record(
        event=bleed(episode, hemoglobin_fall_g_dl=Decimal("1.9"), units_transfused=1, hospitalization=True)
    )
    assert event.isth_class == "crnm"
    assert not Reminder.objects.filter(kind=ReminderKind.URGENT).exists()
    episode.plan.refresh_from_db()
    assert episode.plan.status == PlanStatus.CONFIRMED


def test_a_major_bleed_after_the_course_ended_raises_no_alert(episode, clinic) -> None:
    doctor = clinician(clinic, username="dr.finite")
    plan_confirm(
        plan=episode.plan, user=doctor, agent="warfarin", indefinite=False, duration_months=3, override_reason="t"
    )
    event = event_record(event=bleed(episode, units_transfused=2))
    assert event.isth_class == "major" and event.on_anticoagulation is False
    assert not Reminder.objects.filter(kind=ReminderKind.URGENT).exists()


def test_a_symptomatic_ich_must_meet_the_secret_definition(episode, confirmed) -> None:
    with pytest.raises(ValidationError) as caught:
        event_record(
            event=ClinicalEvent(
                patient=episode.patient,
                kind=EventKind.SYMPTOMATIC_ICH,
                occurred_on=timezone.localdate(),
                ich_growth_percent=Decimal("33"),
            )
        )
    assert "ich_new" in caught.value.message_dict
    assert not ClinicalEvent.objects.exists()
    event = event_record(
        event=ClinicalEvent(
            patient=episode.patient,
            kind=EventKind.SYMPTOMATIC_ICH,
            occurred_on=timezone.localdate(),
            ich_growth_percent=Decimal("40"),
            neurological_worsening=True,
        )
    )
    assert event.bleeding_site == "intracranial" and event.isth_class == "major"
    assert Reminder.objects.get(kind=ReminderKind.URGENT).reason == "symptomatic_ich"


def test_a_recurrent_cvt_opens_a_new_episode_which_is_a_recurrence(episode, confirmed) -> None:
    event = event_record(
        event=ClinicalEvent(patient=episode.patient, kind=EventKind.RECURRENT_CVT, occurred_on=timezone.localdate())
    )
    new = event.new_episode
    assert new is not None and new.diagnosed_on == event.occurred_on and new.is_recurrence
    assert new.plan.proposal["category"] == "recurrent"
    event_record(event=event)
    assert CvtEpisode.objects.filter(patient=episode.patient).count() == 2


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"kind": EventKind.BLEEDING}, "bleeding_site"),
        ({"kind": EventKind.OTHER_VTE}, "vte_site"),
        ({"kind": EventKind.DEATH}, "death_cause"),
        ({"kind": EventKind.DEATH, "death_cause": "unknown", "bleeding_site": "skin"}, "bleeding_site"),
        ({"kind": EventKind.BLEEDING, "bleeding_site": "skin", "occurred_on": "future"}, "occurred_on"),
    ],
)
def test_bad_events_are_refused_naming_the_field(episode, values, field) -> None:
    values = dict(values)
    day = timezone.localdate() + timedelta(days=3) if values.pop("occurred_on", None) else timezone.localdate()
    with pytest.raises(ValidationError) as caught:
        event_record(event=ClinicalEvent(patient=episode.patient, occurred_on=day, **values))
    assert field in caught.value.message_dict
    assert not ClinicalEvent.objects.exists()


def test_one_death_per_patient(episode) -> None:
    event_record(
        event=ClinicalEvent(
            patient=episode.patient, kind=EventKind.DEATH, occurred_on=timezone.localdate(), death_cause="unknown"
        )
    )
    with pytest.raises(ValidationError) as caught:
        event_record(
            event=ClinicalEvent(
                patient=episode.patient, kind=EventKind.DEATH, occurred_on=timezone.localdate(), death_cause="cvt"
            )
        )
    assert "kind" in caught.value.message_dict


def test_a_death_ends_the_care_no_follow_up_or_reminder_names_the_patient_again(episode, clinic) -> None:
    from auditlog.models import LogEntry

    from scheduling.outbox import sweep

    # given a patient with scheduled follow-ups (outcome reviews, venous imaging), one of them overdue
    plan_confirm(plan=episode.plan, user=clinician(clinic), agent="warfarin")
    follow_ups_sync_for_plan(plan=episode.plan)
    open_items = list(FollowUp.objects.filter(patient=episode.patient, status=FollowUpStatus.SCHEDULED))
    assert open_items
    FollowUp.objects.filter(pk=open_items[0].pk).update(due_on=timezone.localdate() - timedelta(days=3))
    done = FollowUp.objects.filter(pk=open_items[-1].pk)
    # when the death is recorded
    died_on = timezone.localdate() - timedelta(days=1)
    event_record(
        event=ClinicalEvent(patient=episode.patient, kind=EventKind.DEATH, occurred_on=died_on, death_cause="cvt")
    )
    # then the patient is inactive and every scheduled item is cancelled with the reason, audited
    episode.patient.refresh_from_db()
    assert episode.patient.active is False
    items = FollowUp.objects.filter(patient=episode.patient)
    assert not items.filter(status=FollowUpStatus.SCHEDULED).exists()
    assert all(f"died on {died_on.isoformat()}" in item.result_note for item in items)
    assert LogEntry.objects.get_for_object(done.get()).filter(changes__icontains="cancelled").exists()
    # and the nurse's next digest lists another patient's due item, none of theirs
    alive = EpisodeFactory(
        patient=PatientFactory(clinic=clinic, primary_nurse=episode.patient.primary_nurse),
        diagnosed_on=timezone.localdate() - relativedelta(months=7),
    )
    plan_confirm(plan=alive.plan, user=clinician(clinic), agent="warfarin")
    follow_ups_sync_for_plan(plan=alive.plan)
    alive_item = FollowUp.objects.filter(patient=alive.patient, status=FollowUpStatus.SCHEDULED).first()
    FollowUp.objects.filter(pk=alive_item.pk).update(due_on=timezone.localdate())
    sweep(now=timezone.now().replace(hour=12))
    listed = set(FollowUp.objects.filter(reminders__isnull=False).values_list("patient_id", flat=True))
    assert alive.patient_id in listed and episode.patient_id not in listed


def test_the_demo_clinic_has_outcome_data_idempotently() -> None:
    from io import StringIO

    from django.core.management import call_command

    call_command("seed_demo", stdout=StringIO())
    counts = (OutcomeAssessment.objects.count(), ClinicalEvent.objects.count(), SinusRecanalization.objects.count())
    assert all(counts), counts
    assert not Reminder.objects.filter(reason__in=["major_bleeding", "symptomatic_ich"]).exists()
    call_command("seed_demo", stdout=StringIO())
    assert (
        OutcomeAssessment.objects.count(),
        ClinicalEvent.objects.count(),
        SinusRecanalization.objects.count(),
    ) == counts


def test_a_due_outcome_review_is_in_the_nurses_digest() -> None:
    from datetime import UTC, date, datetime

    from scheduling import outbox
    from scheduling.emails import reminder_render

    clinic = ClinicFactory(time_zone="Europe/Paris")
    ana = nurse(clinic, username="nurse.digest")
    patient = PatientFactory(clinic=clinic, mrn="DIG-1", primary_nurse=ana)
    EpisodeFactory(patient=patient, diagnosed_on=date(2026, 3, 10))
    # 07:00 in Paris on the day the 3-month review is due
    outbox.sweep(now=datetime(2026, 6, 10, 5, 0, tzinfo=UTC))
    digest = Reminder.objects.get(kind=ReminderKind.DIGEST, recipient_user=ana)
    assert FollowUp.objects.get(key__endswith=":outcome_review:3m") in digest.follow_ups.all()
    mail = reminder_render(reminder=digest)
    assert "DIG-1" in mail.text and "Outcome review (mRS)" in mail.text
