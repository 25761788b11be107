"""Follow-up items from plans, completions, deteriorations and DOAC labs (reference §4, issue #5)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from dateutil.relativedelta import relativedelta
from django.core.exceptions import ValidationError
from django.utils import timezone

from anticoag.models import Plan
from anticoag.services import plan_confirm
from patients.models import DeteriorationEvent
from scheduling.follow_ups import (
    AUTO_CANCEL_NOTE,
    NO_THIRD_SCAN_NOTE,
    follow_up_complete,
    follow_ups_sync_for_plan,
)
from scheduling.models import FollowUp, FollowUpKind, FollowUpStatus, Reminder, ReminderKind
from tests.factories import ClinicFactory, EpisodeFactory, LabResultFactory, RiskFactorFactory, clinician

pytestmark = pytest.mark.django_db

DIAGNOSED = date(2025, 3, 10)


def items_of(episode) -> dict[str, FollowUp]:
    """The plan's items (the 3-, 6- and 12-month outcome reviews are tested with the outcomes)."""
    return {f.key.removeprefix(f"ep{episode.pk}:"): f for f in plan_items().filter(episode=episode)}


def plan_items():
    return FollowUp.objects.exclude(kind=FollowUpKind.OUTCOME_REVIEW)


def plan_of(episode) -> Plan:
    return Plan.objects.select_related("episode").get(episode=episode)


@pytest.fixture
def clinic():
    return ClinicFactory()


@pytest.fixture
def doctor(clinic):
    return clinician(clinic)


@pytest.fixture
def episode(clinic):
    """An unprovoked CVT (6–12 months), no decision yet."""
    return EpisodeFactory(patient__clinic=clinic, diagnosed_on=DIAGNOSED)


# --- from the plan --------------------------------------------------------------------------------------------


def test_a_new_plan_schedules_its_follow_ups_with_the_reference_dates(episode):
    # given an unprovoked episode diagnosed on 10 March 2025 (6–12 months: earliest end 10 September)
    # when its plan is computed (on save) — then the items of reference §4 exist with their dates
    items = items_of(episode)
    assert set(items) == {"venous_imaging", "end_of_therapy_review", "thrombophilia_testing"}
    imaging = items["venous_imaging"]
    assert (imaging.due_on, imaging.window_end_on) == (date(2025, 6, 10), date(2025, 9, 10))
    assert imaging.kind == FollowUpKind.VENOUS_IMAGING
    assert "AHA2011" in imaging.source
    review = items["end_of_therapy_review"]
    assert (review.due_on, review.window_end_on) == (date(2025, 8, 27), date(2025, 9, 10))
    testing = items["thrombophilia_testing"]
    assert (testing.due_on, testing.window_end_on) == (date(2025, 9, 24), date(2025, 10, 8))
    assert all(f.status == FollowUpStatus.SCHEDULED for f in items.values())
    assert all(f.patient_id == episode.patient_id for f in items.values())


def test_microbleeds_add_an_mri_and_regenerating_twice_duplicates_nothing(episode):
    # given microbleeds are recorded
    episode.microbleeds = 2
    episode.save()
    plan = plan_of(episode)
    before = sorted(FollowUp.objects.values_list("pk", "key", "due_on"))
    # when the schedule is regenerated twice more
    first = follow_ups_sync_for_plan(plan=plan)
    second = follow_ups_sync_for_plan(plan=plan)
    # then nothing new exists and both runs return the same items
    assert sorted(FollowUp.objects.values_list("pk", "key", "due_on")) == before
    assert [f.pk for f in first] == [f.pk for f in second]
    mri = items_of(episode)["microbleed_mri"]
    assert (mri.due_on, mri.window_end_on, mri.source) == (date(2025, 6, 10), date(2025, 9, 10), "SEED001")


def test_a_confirmed_end_date_replaces_the_proposals_review_and_testing_dates(episode, doctor):
    # given the clinician confirms 12 months (within 6–12: no override)
    decision = plan_confirm(plan=plan_of(episode), user=doctor, agent="warfarin", indefinite=False, duration_months=12)
    assert decision.end_on == date(2026, 3, 10)
    # then the end-of-therapy review is 14 days before that end, and testing 2–4 weeks after it
    items = items_of(episode)
    review, testing = items["end_of_therapy_review"], items["thrombophilia_testing"]
    assert (review.due_on, review.window_end_on) == (date(2026, 2, 24), date(2026, 3, 10))
    assert (testing.due_on, testing.window_end_on) == (date(2026, 3, 24), date(2026, 4, 7))
    assert review.rule == "decision:end_of_therapy_review"
    assert plan_items().filter(episode=episode).count() == 3


def test_changed_facts_move_open_items_but_never_done_ones(episode, doctor):
    # given the 3-month imaging is done
    imaging = items_of(episode)["venous_imaging"]
    follow_up_complete(follow_up=imaging, completed_on=date(2025, 6, 12), recanalization="complete")
    # when the diagnosis date is corrected a month earlier
    episode.diagnosed_on = date(2025, 2, 10)
    episode.save()
    # then the done imaging keeps its dates and result, the open review moves
    items = items_of(episode)
    assert items["venous_imaging"].status == FollowUpStatus.DONE
    assert items["venous_imaging"].due_on == date(2025, 6, 10)
    assert items["venous_imaging"].recanalization == "complete"
    assert items["end_of_therapy_review"].due_on == date(2025, 7, 27)  # 10 Aug − 14 days
    assert plan_items().filter(episode=episode).count() == 3


def test_a_course_that_becomes_indefinite_cancels_the_end_of_therapy_items_with_a_reason(
    episode, django_capture_on_commit_callbacks
):
    # when antithrombin deficiency is found (severe thrombophilia: indefinite), no decision yet
    RiskFactorFactory(episode=episode, code="antithrombin_deficiency")
    # then the end-of-therapy review and the testing are cancelled, saying why; a yearly review appears
    items = items_of(episode)
    for kind in ("end_of_therapy_review", "thrombophilia_testing"):
        assert items[kind].status == FollowUpStatus.CANCELLED
        assert items[kind].result_note.startswith(AUTO_CANCEL_NOTE)
        assert "indefinite" in items[kind].result_note
    assert items["annual_review"].due_on == date(2026, 3, 10)
    assert items["annual_review"].status == FollowUpStatus.SCHEDULED
    # when the result is withdrawn (a data-entry error), the cancelled items come back, the yearly one goes
    with django_capture_on_commit_callbacks(execute=True):  # a delete recomputes the plan after commit
        episode.risk_factors.all().delete()
    items = items_of(episode)
    assert items["end_of_therapy_review"].status == FollowUpStatus.SCHEDULED
    assert items["end_of_therapy_review"].result_note == ""
    assert items["annual_review"].status == FollowUpStatus.CANCELLED


def test_a_confirmed_finite_course_keeps_its_review_until_a_clinician_confirms_again(episode, doctor):
    # given a confirmed 6-month course
    plan_confirm(plan=plan_of(episode), user=doctor, agent="warfarin")
    # when new facts make the proposal indefinite
    RiskFactorFactory(episode=episode, code="antithrombin_deficiency", noted_on=timezone.localdate())
    # then the confirmed course still has its end-of-therapy review (the plan waits for review)
    items = items_of(episode)
    assert items["end_of_therapy_review"].status == FollowUpStatus.SCHEDULED
    assert "annual_review" not in items
    # when the clinician confirms indefinite anticoagulation
    plan_confirm(
        plan=plan_of(episode), user=doctor, agent="warfarin", acknowledged_warnings=["thrombophilia_test_on_anticoag"]
    )
    items = items_of(episode)
    assert items["end_of_therapy_review"].status == FollowUpStatus.CANCELLED
    assert items["annual_review"].status == FollowUpStatus.SCHEDULED


def test_a_cancellation_by_a_person_is_never_undone(episode):
    review = items_of(episode)["end_of_therapy_review"]
    review.status, review.result_note = FollowUpStatus.CANCELLED, "Patient moved away."
    review.save()
    follow_ups_sync_for_plan(plan=plan_of(episode))
    review.refresh_from_db()
    assert (review.status, review.result_note) == (FollowUpStatus.CANCELLED, "Patient moved away.")


# --- completing items -----------------------------------------------------------------------------------------


def test_partial_recanalization_at_three_months_schedules_the_six_month_scan_once(episode, doctor):
    imaging = items_of(episode)["venous_imaging"]
    # when the 3-month scan shows partial recanalization
    follow_ons = follow_up_complete(
        follow_up=imaging, completed_on=date(2025, 6, 11), recanalization="partial", user=doctor
    )
    # then it is done, with its result, and a repeat is due 6 months after diagnosis
    imaging.refresh_from_db()
    assert (imaging.status, imaging.completed_on, imaging.recanalization) == ("done", date(2025, 6, 11), "partial")
    assert [f.key for f in follow_ons] == [f"ep{episode.pk}:venous_imaging:6m"]
    assert follow_ons[0].due_on == date(2025, 9, 10)
    assert follow_ons[0].kind == FollowUpKind.VENOUS_IMAGING
    # when the same completion is recorded again, nothing new appears
    again = follow_up_complete(follow_up=imaging, completed_on=date(2025, 6, 11), recanalization="partial")
    assert [f.pk for f in again] == [f.pk for f in follow_ons]
    assert FollowUp.objects.filter(kind=FollowUpKind.VENOUS_IMAGING).count() == 2
    # and a different second completion is refused, naming the status
    with pytest.raises(ValidationError) as caught:
        follow_up_complete(follow_up=imaging, completed_on=date(2025, 6, 11), recanalization="complete")
    assert "status" in caught.value.message_dict


def test_no_third_scan_after_six_months(episode):
    first = items_of(episode)["venous_imaging"]
    [repeat] = follow_up_complete(follow_up=first, completed_on=date(2025, 6, 11), recanalization="none")
    # when the 6-month scan still shows no recanalization
    follow_ons = follow_up_complete(follow_up=repeat, completed_on=date(2025, 9, 12), recanalization="none")
    # then nothing more is scheduled, and the item says why (CSBP2024)
    assert follow_ons == []
    repeat.refresh_from_db()
    assert NO_THIRD_SCAN_NOTE in repeat.result_note
    assert FollowUp.objects.filter(kind=FollowUpKind.VENOUS_IMAGING).count() == 2


def test_complete_recanalization_schedules_nothing(episode):
    imaging = items_of(episode)["venous_imaging"]
    assert follow_up_complete(follow_up=imaging, completed_on=date(2025, 6, 11), recanalization="complete") == []


def test_microbleed_mri_and_reviews_repeat_while_followed(episode):
    episode.microbleeds = 1
    episode.save()
    mri = items_of(episode)["microbleed_mri"]
    [second] = follow_up_complete(follow_up=mri, completed_on=date(2025, 6, 20))
    assert (second.key, second.due_on) == (f"ep{episode.pk}:microbleed_mri:2", date(2025, 12, 20))
    [third] = follow_up_complete(follow_up=second, completed_on=date(2025, 12, 22))
    assert (third.key, third.due_on) == (f"ep{episode.pk}:microbleed_mri:3", date(2026, 6, 22))
    # when the microbleeds are no longer followed (corrected to none), the open repeat is cancelled
    episode.microbleeds = 0
    episode.save()
    third.refresh_from_db()
    assert third.status == FollowUpStatus.CANCELLED
    second.refresh_from_db()
    assert second.status == FollowUpStatus.DONE


def test_annual_review_repeats_after_twelve_months(episode):
    RiskFactorFactory(episode=episode, code="antithrombin_deficiency")
    review = items_of(episode)["annual_review"]
    [following] = follow_up_complete(follow_up=review, completed_on=date(2026, 3, 12))
    assert (following.key, following.due_on) == (f"ep{episode.pk}:annual_review:2", date(2027, 3, 12))


def test_cancer_review_repeats_after_six_months(episode):
    RiskFactorFactory(episode=episode, code="active_cancer")
    review = items_of(episode)["cancer_review"]
    assert review.due_on == date(2025, 9, 10)
    [following] = follow_up_complete(follow_up=review, completed_on=date(2025, 9, 15))
    assert following.due_on == date(2026, 3, 15)


@pytest.mark.parametrize(
    ("kind", "completed_on", "recanalization", "field"),
    [
        ("venous_imaging", "tomorrow", "complete", "completed_on"),
        ("venous_imaging", "2025-06-11", "", "recanalization"),
        ("venous_imaging", "2025-06-11", "mostly", "recanalization"),
        ("end_of_therapy_review", "2025-08-27", "partial", "recanalization"),
        ("venous_imaging", "2025-01-01", "complete", "completed_on"),  # before the diagnosis
    ],
)
def test_refused_completions_name_the_field_and_change_nothing(episode, kind, completed_on, recanalization, field):
    item = items_of(episode)[kind]
    day = timezone.localdate() + timedelta(days=2) if completed_on == "tomorrow" else date.fromisoformat(completed_on)
    with pytest.raises(ValidationError) as caught:
        follow_up_complete(follow_up=item, completed_on=day, recanalization=recanalization)
    assert field in caught.value.message_dict
    item.refresh_from_db()
    assert item.status == FollowUpStatus.SCHEDULED
    assert plan_items().count() == 3


# --- deterioration --------------------------------------------------------------------------------------------


def test_deterioration_schedules_urgent_imaging_and_alerts_the_clinic_once(episode, clinic):
    today = timezone.localdate()
    # when a deterioration is recorded
    event = DeteriorationEvent.objects.create(episode=episode, occurred_on=today, note="new seizure")
    # then urgent imaging is due today, and one urgent alert waits in the outbox for the alert address
    item = FollowUp.objects.get(key=f"det{event.pk}:urgent_imaging")
    assert (item.kind, item.due_on, item.status) == (FollowUpKind.URGENT_IMAGING, today, FollowUpStatus.SCHEDULED)
    reminder = Reminder.objects.get(idempotency_key=f"urgent:det:{event.pk}")
    assert (reminder.kind, reminder.recipient, reminder.reason) == (
        ReminderKind.URGENT,
        clinic.alert_email,
        "deterioration",
    )
    assert list(reminder.follow_ups.all()) == [item]
    # when the event is saved again, nothing is doubled
    event.note = "new seizure, GCS 13"
    event.save()
    assert FollowUp.objects.filter(kind=FollowUpKind.URGENT_IMAGING).count() == 1
    assert Reminder.objects.filter(kind=ReminderKind.URGENT).count() == 1


# --- DOAC renal monitoring ------------------------------------------------------------------------------------


@pytest.fixture
def dabigatran_patient(clinic, doctor):
    """45-year-old woman, 70 kg, creatinine 0.9 mg/dL 10 days ago (CrCl ≈ 87), confirmed on dabigatran."""
    episode = EpisodeFactory(patient__clinic=clinic, patient__date_of_birth=date(1980, 1, 1))
    LabResultFactory(
        patient=episode.patient, serum_creatinine=Decimal("0.90"), drawn_on=timezone.localdate() - timedelta(days=10)
    )
    plan_confirm(plan=plan_of(episode), user=doctor, agent="dabigatran")
    return episode.patient


def test_a_finished_dabigatran_course_gets_no_renal_schedule(clinic, doctor):
    episode = EpisodeFactory(patient__clinic=clinic, diagnosed_on=timezone.localdate() - relativedelta(months=8))
    plan_confirm(plan=plan_of(episode), user=doctor, agent="dabigatran")  # 6 months: ended 2 months ago
    LabResultFactory(patient=episode.patient, serum_creatinine=Decimal("3.00"), drawn_on=timezone.localdate())
    assert not FollowUp.objects.filter(kind=FollowUpKind.RENAL_FUNCTION).exists()
    assert not Reminder.objects.exists()


def test_confirming_dabigatran_schedules_the_yearly_renal_check_from_the_latest_creatinine(dabigatran_patient):
    lab = dabigatran_patient.lab_results.get()
    item = FollowUp.objects.get(kind=FollowUpKind.RENAL_FUNCTION)
    assert item.key == f"renal:{dabigatran_patient.pk}:{lab.pk}"
    assert item.due_on == lab.drawn_on + relativedelta(months=12)
    assert "EHRA" in item.source and "[verify]" in item.source
    assert not Reminder.objects.exists()


def test_a_low_crcl_on_dabigatran_moves_the_schedule_to_three_months_and_alerts(dabigatran_patient, clinic):
    old = FollowUp.objects.get(kind=FollowUpKind.RENAL_FUNCTION)
    # when creatinine 3.0 mg/dL comes back (CrCl ≈ 26 mL/min)
    today = timezone.localdate()
    lab = LabResultFactory(patient=dabigatran_patient, serum_creatinine=Decimal("3.00"), drawn_on=today)
    # then the previous renal item is done, the next is due in 3 months, and an urgent alert is waiting
    old.refresh_from_db()
    assert (old.status, old.completed_on) == (FollowUpStatus.DONE, today)
    new = FollowUp.objects.get(kind=FollowUpKind.RENAL_FUNCTION, status=FollowUpStatus.SCHEDULED)
    assert (new.key, new.due_on) == (f"renal:{dabigatran_patient.pk}:{lab.pk}", today + relativedelta(months=3))
    alert = Reminder.objects.get()
    assert (alert.idempotency_key, alert.kind, alert.reason) == (
        f"urgent:renal:{lab.pk}",
        "urgent",
        "renal_doac_contraindicated",
    )
    assert alert.recipient == clinic.alert_email
    # when the lab is saved again, nothing is doubled
    lab.hemoglobin_g_dl = Decimal("12.0")
    lab.save()
    assert Reminder.objects.count() == 1
    assert FollowUp.objects.filter(kind=FollowUpKind.RENAL_FUNCTION).count() == 2


def test_an_older_creatinine_entered_late_changes_nothing(dabigatran_patient):
    before = list(FollowUp.objects.values_list("key", "due_on", "status"))
    LabResultFactory(
        patient=dabigatran_patient, serum_creatinine=Decimal("3.00"), drawn_on=timezone.localdate() - timedelta(days=40)
    )
    assert list(FollowUp.objects.values_list("key", "due_on", "status")) == before
    assert not Reminder.objects.exists()


def test_warfarin_patients_get_no_renal_schedule(clinic, doctor):
    episode = EpisodeFactory(patient__clinic=clinic)
    plan_confirm(plan=plan_of(episode), user=doctor, agent="warfarin")
    LabResultFactory(patient=episode.patient, serum_creatinine=Decimal("3.00"), drawn_on=timezone.localdate())
    assert not FollowUp.objects.filter(kind=FollowUpKind.RENAL_FUNCTION).exists()
    assert not Reminder.objects.exists()


@pytest.mark.django_db
def test_open_items_due_dates_are_an_indexed_expression_the_planner_estimates_well():
    """The dashboard's work table filters on open_due_on(), the expression followup_open_due_on_idx indexes.
    With items done in the past and items open in the future (a clinic's usual table), PostgreSQL estimates
    "open and due by the end of the week" from the expression's own statistics (here: none) where the
    plain due date and status make it a sizeable share of the table: the estimate that decided between reading
    a handful of items by index and scanning every patient of the network."""
    import json

    from django.db import connection

    from scheduling.models import open_due_on
    from tests.factories import PatientFactory

    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'followup_open_due_on_idx'")
        [(definition,)] = cursor.fetchall()
    assert "CASE" in definition and "THEN due_on" in definition and "'scheduled'" in definition
    patient = PatientFactory()
    today, week_end = date(2026, 12, 2), date(2026, 12, 9)
    items = [
        FollowUp(patient=patient, kind=FollowUpKind.INR_TEST, due_on=today - timedelta(days=1 + i % 300),
                 status=FollowUpStatus.DONE, rule="test", key=f"done{i}")
        for i in range(3000)
    ] + [
        FollowUp(patient=patient, kind=FollowUpKind.INR_TEST, due_on=week_end + timedelta(days=1 + i % 300),
                 rule="test", key=f"open{i}")
        for i in range(300)
    ]  # fmt: skip
    FollowUp.objects.bulk_create(items)

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE scheduling_followup")
    open_items = FollowUp.objects.filter(status=FollowUpStatus.SCHEDULED)
    plain = open_items.filter(due_on__lte=week_end)
    expression = open_items.alias(open_due_on=open_due_on()).filter(open_due_on__lte=week_end)
    assert not plain.exists() and not expression.exists()

    def rows_estimated(queryset) -> float:
        sql, params = queryset.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            plan = cursor.fetchone()[0]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        return plan[0]["Plan"]["Plan Rows"]

    assert rows_estimated(expression) <= 5 < 50 <= rows_estimated(plain)
