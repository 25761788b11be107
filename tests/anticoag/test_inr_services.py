"""INR services: recording (refusals name their field), advice, doses, TTR, the next INR test and alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from anticoag.inr import (
    clinic_ttr_report,
    clinic_ttr_reports,
    dose_record,
    inr_advice_for_patient,
    inr_reading_record,
    inr_readings_recorded,
    inr_recorded,
    monitoring_policy,
    patient_ttr,
)
from anticoag.models import InrReading, WarfarinDose
from anticoag.services import plan_confirm
from scheduling.models import FollowUp, FollowUpKind, FollowUpStatus, Reminder, ReminderKind
from tests.factories import ClinicFactory, EpisodeFactory, PatientFactory, clinician

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinic():
    return ClinicFactory(time_zone="Europe/Paris")


@pytest.fixture
def doctor(clinic):
    return clinician(clinic)


@pytest.fixture
def patient(clinic):
    return PatientFactory(clinic=clinic)


def ago(days: float, hour: int = 9) -> datetime:
    """An aware instant ``days`` before now, at ``hour`` UTC (whole days stay whole days apart)."""
    now = timezone.now().astimezone(UTC)
    return (now - timedelta(days=days)).replace(hour=hour, minute=0, second=0, microsecond=0)


def just_now() -> datetime:
    return timezone.now() - timedelta(minutes=2)


def record(patient, when, value, **kwargs) -> InrReading:
    return inr_reading_record(patient=patient, drawn_at=when, value=value, source=kwargs.pop("source", "lab"), **kwargs)


def local_date(reading):
    """The reading's calendar date in its clinic's time zone (what the schedule counts from)."""
    return timezone.localdate(reading.drawn_at, timezone=ZoneInfo(reading.patient.clinic.time_zone))


# --- refusals --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "drawn_days_ago", "source", "field"),
    [
        ("-1", 1, "lab", "value"),
        ("25", 1, "lab", "value"),
        ("0.4", 1, "lab", "value"),
        ("2.555", 1, "lab", "value"),
        ("abc", 1, "lab", "value"),
        ("2.5", -2, "lab", "drawn_at"),  # the day after tomorrow
        ("2.5", 1, "fax", "source"),
    ],
)
def test_refused_readings_name_the_field_and_write_nothing(patient, value, drawn_days_ago, source, field):
    with pytest.raises(ValidationError) as caught:
        record(patient, ago(drawn_days_ago), value, source=source)
    assert field in caught.value.message_dict
    assert not InrReading.objects.exists()
    assert not FollowUp.objects.exists()


def test_a_duplicate_reading_is_refused_on_drawn_at(patient):
    when = ago(1)
    record(patient, when, "2.5")
    with pytest.raises(ValidationError) as caught:
        record(patient, when, "2.7")
    assert "already has an INR at that time" in " ".join(caught.value.message_dict["drawn_at"])
    assert InrReading.objects.count() == 1


def test_a_naive_time_is_refused(patient):
    with pytest.raises(ValidationError) as caught:
        record(patient, datetime(2026, 1, 5, 9, 0), "2.5")  # naive on purpose
    assert "drawn_at" in caught.value.message_dict


def test_recording_announces_the_reading_once(patient):
    heard = []

    def listener(sender, patient, readings, **kwargs):
        heard.append((patient.pk, [r.pk for r in readings]))

    inr_recorded.connect(listener)
    try:
        reading = record(patient, ago(1), "2.5", bleeding=False, note="finger prick")
    finally:
        inr_recorded.disconnect(listener)
    assert heard == [(patient.pk, [reading.pk])]
    assert reading.note == "finger prick"


# --- the next INR test ---------------------------------------------------------------------------------------


def test_the_next_inr_test_follows_the_advice_and_moves_with_the_next_reading(patient):
    # given a first INR of 1.8 three days ago (initiation: every 2–3 days)
    first = record(patient, ago(3), "1.8")
    [item] = FollowUp.objects.filter(kind=FollowUpKind.INR_TEST)
    drawn_on = local_date(first)
    assert item.key == f"inr:{patient.pk}:{first.pk}"
    assert (item.due_on, item.window_end_on) == (drawn_on + timedelta(days=2), drawn_on + timedelta(days=3))
    assert item.source == "CHEST2012 practice"
    assert item.status == FollowUpStatus.SCHEDULED
    # when the next INR (2.4) comes in today
    second = record(patient, just_now(), "2.4")
    # then the first test is done (completed by that reading), and the next is due from the new reading
    item.refresh_from_db()
    assert (item.status, item.completed_on) == (FollowUpStatus.DONE, local_date(second))
    new = FollowUp.objects.get(kind=FollowUpKind.INR_TEST, status=FollowUpStatus.SCHEDULED)
    assert new.key == f"inr:{patient.pk}:{second.pk}"
    assert new.due_on == local_date(second) + timedelta(days=2)  # still initiation: one INR in range
    # when the same readings are announced again, nothing changes
    inr_readings_recorded(patient=patient, readings=[second])
    assert FollowUp.objects.filter(kind=FollowUpKind.INR_TEST).count() == 2


def test_stable_patients_step_out_to_twelve_weeks_only_where_the_clinic_opted_in(patient, clinic):
    # given in-range INRs every 4 weeks for 4 months (stable)
    for weeks in (16, 12, 8, 4, 0):
        record(patient, ago(weeks * 7 + 1), "2.5")
    assert inr_advice_for_patient(patient=patient)["phase"] == "stable"
    assert inr_advice_for_patient(patient=patient)["next_test_rule"]["code"] == "in_range_after_initiation"
    clinic.extended_inr_interval = True
    clinic.save()
    patient.refresh_from_db()
    advice = inr_advice_for_patient(patient=patient)
    assert advice["next_test_rule"]["code"] == "stable_extended"
    assert advice["extended_interval_allowed"] is True


def test_advice_uses_the_current_weekly_dose_and_the_settings_policy(patient, doctor, settings):
    # given maintenance (two INRs in range) and 35 mg/week, then an INR of 1.7
    record(patient, ago(20), "2.4")
    record(patient, ago(13), "2.6")
    dose_record(patient=patient, weekly_dose_mg="35", starts_on=ago(30).date(), decided_by=doctor)
    record(patient, ago(6), "1.7")
    advice = inr_advice_for_patient(patient=patient)
    # then the nomogram suggests +10 %: 38.5 mg/week, marked [verify] (unverified source)
    assert advice["dose_change_percent"] == 10
    assert advice["suggested_weekly_dose_mg"] == 38.5
    assert advice["weekly_dose_mg"] == 35.0
    assert advice["dose_rule"]["verified"] is False
    # when the clinic changes a table row in settings, the advice follows at once (read at call time)
    settings.ANTICOAG_MONITORING_POLICY = {"within_7_days_row": {"earliest_days": 5, "latest_days": 5}}
    assert inr_advice_for_patient(patient=patient)["next_test_rule"]["code"] == "within_7_days"
    advice = inr_advice_for_patient(patient=patient)
    assert advice["next_test_on"] == (ago(6).date() + timedelta(days=5)).isoformat()
    assert monitoring_policy().within_7_days_row.earliest_days == 5


def test_a_bad_policy_setting_is_refused_loudly(settings):
    settings.ANTICOAG_MONITORING_POLICY = {"no_such_field": 1}
    with pytest.raises(ImproperlyConfigured):
        monitoring_policy()
    settings.ANTICOAG_MONITORING_POLICY = {"ttr_max_gap_days": -1}
    with pytest.raises(ImproperlyConfigured):
        monitoring_policy()


def test_no_readings_no_advice(patient):
    assert inr_advice_for_patient(patient=patient) is None


# --- critical INR --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "bleeding", "reason"),
    [("5.0", False, "inr_high"), ("9.5", False, "inr_critical"), ("2.5", True, "inr_critical")],
)
def test_a_critical_inr_puts_one_urgent_alert_in_the_outbox(patient, clinic, value, bleeding, reason):
    # when a critical reading is recorded
    reading = record(patient, just_now(), value, bleeding=bleeding)
    # then one urgent reminder for the clinic's alert address waits, naming the reading and the reason
    alert = Reminder.objects.get()
    assert alert.kind == ReminderKind.URGENT
    assert alert.recipient == clinic.alert_email
    assert alert.reason == reason
    assert alert.inr_reading == reading
    assert alert.idempotency_key == f"urgent:inr:{reading.pk}"
    # when the reading is announced again (re-saved), there is still one
    inr_readings_recorded(patient=patient, readings=[reading])
    assert Reminder.objects.count() == 1


def test_a_non_critical_inr_alerts_nobody(patient):
    record(patient, just_now(), "4.9")
    assert not Reminder.objects.exists()


# --- doses -----------------------------------------------------------------------------------------------------


def test_a_dose_records_whether_it_followed_the_suggestion(patient, doctor):
    reading = record(patient, ago(2), "1.7")
    followed = dose_record(
        patient=patient,
        weekly_dose_mg="38.5",
        suggested_weekly_dose_mg=38.5,
        starts_on=ago(2).date(),
        inr_reading=reading,
        decided_by=doctor,
    )
    changed = dose_record(
        patient=patient,
        weekly_dose_mg="37.5",
        suggested_weekly_dose_mg="38.5",
        starts_on=ago(1).date(),
        decided_by=doctor,
    )
    assert (followed.followed_suggestion, changed.followed_suggestion) == (True, False)
    assert WarfarinDose.objects.count() == 2


def test_a_dose_for_another_patients_reading_is_refused(patient, doctor, clinic):
    other = PatientFactory(clinic=clinic)
    reading = record(other, ago(2), "2.5")
    with pytest.raises(ValidationError) as caught:
        dose_record(patient=patient, weekly_dose_mg=35, starts_on=ago(1).date(), inr_reading=reading, decided_by=doctor)
    assert "inr_reading" in caught.value.message_dict
    with pytest.raises(ValidationError) as caught:
        dose_record(patient=patient, weekly_dose_mg=-5, starts_on=ago(1).date(), decided_by=doctor)
    assert "weekly_dose_mg" in caught.value.message_dict
    assert not WarfarinDose.objects.exists()


def test_the_clinicians_next_inr_date_wins_over_the_advice(patient, doctor):
    reading = record(patient, ago(1), "1.8")
    chosen = ago(1).date() + timedelta(days=4)
    dose_record(
        patient=patient,
        weekly_dose_mg=35,
        starts_on=ago(1).date(),
        inr_reading=reading,
        next_inr_on=chosen,
        decided_by=doctor,
    )
    item = FollowUp.objects.get(kind=FollowUpKind.INR_TEST, status=FollowUpStatus.SCHEDULED)
    assert item.due_on == chosen
    inr_readings_recorded(patient=patient, readings=[reading])  # re-announced: the clinician's date stays
    item.refresh_from_db()
    assert item.due_on == chosen


# --- TTR -------------------------------------------------------------------------------------------------------


def test_patient_ttr_on_the_reference_worked_example(patient):
    for day, value in ((40, "1.5"), (30, "2.5"), (20, "3.5"), (10, "2.8")):
        record(patient, ago(day), value)
    result = patient_ttr(patient=patient, start=ago(45).date(), end=timezone.localdate())
    assert result.ttr_percent == pytest.approx(300 / 7)
    assert result.days_total == pytest.approx(30)
    # a period that starts after the first reading leaves it out
    assert patient_ttr(patient=patient, start=ago(35), end=ago(0)).days_total == pytest.approx(20)
    with pytest.raises(ValidationError):
        patient_ttr(patient=patient, start=ago(1).date(), end=ago(5).date())


def _warfarin(clinic, doctor, **patient_kwargs):
    episode = EpisodeFactory(patient__clinic=clinic, **{f"patient__{k}": v for k, v in patient_kwargs.items()})
    plan_confirm(plan=episode.plan, user=doctor, agent="warfarin")
    return episode.patient


def test_clinic_ttr_report_on_a_hand_computed_case(clinic, doctor):
    # given: A = the worked example (42.857 %); B = always in range (100 %); C = one reading (no TTR)
    a, b, c = (_warfarin(clinic, doctor) for _ in range(3))
    for day, value in ((40, "1.5"), (30, "2.5"), (20, "3.5"), (10, "2.8")):
        record(a, ago(day), value)
    for day in (40, 26, 12):
        record(b, ago(day), "2.5")
    record(c, ago(70), "2.5")  # C's last INR is 70 days old: lost to follow-up
    d = _warfarin(clinic, doctor)  # D on warfarin, never tested: lost
    PatientFactory(clinic=clinic)  # E not on warfarin: not counted
    other_clinic_patient = PatientFactory()
    record(other_clinic_patient, ago(20), "9.0")
    # when the report covers the last 80 days
    report = clinic_ttr_report(
        clinic=clinic, start=ago(80).date(), end=timezone.localdate(), as_of=timezone.localdate()
    )
    # then
    assert report["patients_with_ttr"] == 2
    assert report["patients_without_ttr"] == 1
    assert report["median_ttr_percent"] == pytest.approx((300 / 7 + 100) / 2, abs=1e-3)
    assert report["share_at_or_above_65_percent"] == 50.0
    assert report["median_meets_target"] is True
    assert report["warfarin_patients"] == 4
    assert sorted(report["lost_to_follow_up_mrns"]) == sorted([c.mrn, d.mrn])
    assert report["lost_to_follow_up_percent"] == 50.0
    assert report["lost_to_follow_up_meets_target"] is False
    by_mrn = {p["mrn"]: p for p in report["patients"]}
    assert by_mrn[a.mrn]["ttr_percent"] == pytest.approx(42.857, abs=1e-3)
    assert other_clinic_patient.mrn not in by_mrn


def _clinic_of_size(doctor_clinic, doctor, patients: int) -> None:
    for _ in range(patients):
        p = _warfarin(doctor_clinic, doctor)
        for day in (30, 20, 10):
            InrReading.objects.create(patient=p, drawn_at=ago(day), value=Decimal("2.5"))


def test_clinic_ttr_report_query_count_does_not_grow_with_the_clinic(doctor, clinic):
    small, large = clinic, ClinicFactory()
    large_doctor = clinician(large)
    _clinic_of_size(small, doctor, 2)
    _clinic_of_size(large, large_doctor, 12)
    counts = []
    for each in (small, large):
        with CaptureQueriesContext(connection) as queries:
            report = clinic_ttr_report(
                clinic=each, start=ago(40).date(), end=timezone.localdate(), as_of=timezone.localdate()
            )
        counts.append(len(queries))
        assert report["patients_with_ttr"] in (2, 12)
    assert counts[0] == counts[1] <= 3, counts


def test_the_reports_of_several_clinics_at_once_equal_each_clinics_own(clinic, doctor):
    # given two clinics in different time zones, each with patients in range, out of range and lost
    a, b = (_warfarin(clinic, doctor) for _ in range(2))
    for day, value in ((40, "1.5"), (30, "2.5"), (20, "3.5"), (10, "2.8")):
        record(a, ago(day), value)
    record(b, ago(70), "2.5")
    other = ClinicFactory(time_zone="Pacific/Auckland")
    other_doctor = clinician(other)
    c = _warfarin(other, other_doctor)
    for day, value in ((35, "2.1"), (5, "4.1")):
        record(c, ago(day), value)
    _warfarin(other, other_doctor)  # never tested: lost
    PatientFactory(clinic=other)  # not on warfarin
    periods = [(each, ago(80).date(), timezone.localdate(), timezone.localdate()) for each in (clinic, other)]
    # when both are computed together (two queries) and one by one
    with CaptureQueriesContext(connection) as queries:
        together = clinic_ttr_reports(periods=periods)
    one_by_one = {
        each.pk: clinic_ttr_report(clinic=each, start=start, end=end, as_of=as_of)
        for each, start, end, as_of in periods
    }
    # then they are the same reports
    assert len(queries) <= 2
    assert together == one_by_one
    assert together[clinic.pk]["warfarin_patients"] == 2 and together[other.pk]["lost_to_follow_up"] == 1
