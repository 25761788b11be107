"""The outbox services on the real PostgreSQL and a real SMTP server, without a worker.

Sweeps take an explicit ``now``; sends are called directly (the worker path is in test_delivery.py).
"""

from __future__ import annotations

import re
import smtplib
import threading
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from anticoag.models import InrReading
from scheduling import outbox
from scheduling.models import FollowUpKind, FollowUpStatus, Reminder, ReminderKind, ReminderStatus
from tests.factories import ClinicFactory, PatientFactory, UserFactory, clinician, nurse

from .conftest import free_port
from .factories import FollowUpFactory, ReminderFactory

pytestmark = pytest.mark.services

# 2026-06-10 in Paris (CEST, +2): the 07:00 digest is due from 05:00 UTC.
NOW = datetime(2026, 6, 10, 8, 0, tzinfo=UTC)
TODAY = date(2026, 6, 10)
FORBIDDEN = ["CVT", "thrombosis", "Thrombosis", "venous thrombosis", "1980-05-17", "17/05/1980"]


def days(n: int) -> date:
    return TODAY + timedelta(days=n)


def digests() -> list[Reminder]:
    return list(Reminder.objects.filter(kind=ReminderKind.DIGEST).order_by("idempotency_key"))


@pytest.fixture
def clinic():
    return ClinicFactory(time_zone="Europe/Paris", digest_time=time(7), alert_email="alerts@clinic.invalid")


# --- materialise -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_materialise_is_idempotent_and_links_its_items(clinic):
    item = FollowUpFactory(patient=PatientFactory(clinic=clinic))
    first = outbox.reminder_materialise(
        clinic=clinic, kind=ReminderKind.URGENT, recipient=" a@clinic.invalid ", key="k1", follow_ups=[item], now=NOW
    )
    again = outbox.reminder_materialise(
        clinic=clinic, kind=ReminderKind.URGENT, recipient="other@clinic.invalid", key="k1", now=NOW + timedelta(1)
    )
    assert again.pk == first.pk
    assert Reminder.objects.filter(idempotency_key="k1").count() == 1
    first.refresh_from_db()
    assert (first.status, first.recipient, first.next_attempt_at) == (ReminderStatus.PENDING, "a@clinic.invalid", NOW)
    assert list(first.follow_ups.all()) == [item]


@pytest.mark.django_db
def test_materialise_refuses_bad_input(clinic):
    with pytest.raises(ValueError, match="kind"):
        outbox.reminder_materialise(clinic=clinic, kind="sms", recipient="a@clinic.invalid", key="k")
    with pytest.raises(ValueError, match="key"):
        outbox.reminder_materialise(clinic=clinic, kind=ReminderKind.URGENT, recipient="a@clinic.invalid", key="")
    with pytest.raises(ValueError, match="recipient"):
        outbox.reminder_materialise(clinic=clinic, kind=ReminderKind.URGENT, recipient=" ", key="k")


@pytest.mark.django_db
def test_a_new_urgent_reminder_is_enqueued_on_commit_and_only_then(clinic, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        urgent = outbox.reminder_materialise(
            clinic=clinic, kind=ReminderKind.URGENT, recipient="a@clinic.invalid", key="u1", now=NOW
        )
        outbox.reminder_materialise(clinic=clinic, kind=ReminderKind.URGENT, recipient="a@clinic.invalid", key="u1")
        outbox.reminder_materialise(
            clinic=clinic, kind=ReminderKind.DIGEST, recipient="a@clinic.invalid", key="d1", now=NOW
        )
    assert len(callbacks) == 1  # the new urgent one; not its repeat, not the digest (the sweep sends those)
    # Its enqueue lease keeps the sweep from enqueueing it a second time meanwhile.
    assert urgent.lease_until == NOW + outbox.enqueue_lease()
    assert outbox.reminders_claim(now=NOW) == [Reminder.objects.get(idempotency_key="d1").pk]


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_materialisations_of_one_key_make_one_row():
    clinic = ClinicFactory()
    barrier = threading.Barrier(2)
    results, errors = [], []

    def materialise() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(
                outbox.reminder_materialise(
                    clinic=clinic, kind=ReminderKind.DIGEST, recipient="a@clinic.invalid", key="race"
                ).pk
            )
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=materialise) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert errors == []
    assert len(results) == 2 and results[0] == results[1]
    assert Reminder.objects.filter(idempotency_key="race").count() == 1


# --- digests ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_sweep_makes_one_digest_per_nurse_with_open_items_in_the_window(clinic):
    anna, ben, no_mail = nurse(clinic), nurse(clinic), nurse(clinic, email="")
    outsider = nurse(ClinicFactory())  # a nurse of another clinic named as primary nurse here
    doctor = clinician(clinic)
    mine = PatientFactory(clinic=clinic, primary_nurse=anna)
    wanted = [
        FollowUpFactory(patient=mine, due_on=days(-30)),  # overdue
        FollowUpFactory(patient=mine, due_on=days(0), kind=FollowUpKind.VENOUS_IMAGING),  # today
        FollowUpFactory(patient=mine, due_on=days(7)),  # this week (last day)
    ]
    FollowUpFactory(patient=mine, due_on=days(8))  # beyond the window
    FollowUpFactory(patient=mine, due_on=days(0), status=FollowUpStatus.DONE)
    FollowUpFactory(patient=mine, due_on=days(0), status=FollowUpStatus.CANCELLED)
    FollowUpFactory(patient=PatientFactory(clinic=clinic, primary_nurse=anna, active=False), due_on=days(0))
    FollowUpFactory(patient=PatientFactory(clinic=clinic, primary_nurse=no_mail), due_on=days(0))
    FollowUpFactory(patient=PatientFactory(clinic=clinic, primary_nurse=outsider), due_on=days(0))
    FollowUpFactory(patient=PatientFactory(clinic=clinic, primary_nurse=doctor), due_on=days(0))
    FollowUpFactory(patient=PatientFactory(clinic=clinic), due_on=days(0))  # no primary nurse
    PatientFactory(clinic=clinic, primary_nurse=ben)  # Ben: nothing due, no e-mail

    counts = outbox.sweep(now=NOW)

    assert counts["digests"] == 1
    [digest] = digests()
    assert digest.idempotency_key == f"digest:{clinic.pk}:{anna.pk}:2026-06-10"
    assert (digest.recipient, digest.recipient_user, digest.status) == (anna.email, anna, ReminderStatus.PENDING)
    assert set(digest.follow_ups.all()) == set(wanted)
    assert counts["escalations"] == 1  # the item 30 days overdue, to the alert address (no clinician)
    assert counts["claimed"] == 2
    assert digest.lease_until == NOW + outbox.enqueue_lease()


@pytest.mark.django_db
def test_no_digest_before_the_clinics_local_digest_time(clinic):
    FollowUpFactory(patient=PatientFactory(clinic=clinic, primary_nurse=nurse(clinic)), due_on=days(0))
    # 06:59 in Paris.
    assert outbox.sweep(now=datetime(2026, 6, 10, 4, 59, tzinfo=UTC))["digests"] == 0
    assert digests() == []
    assert outbox.sweep(now=datetime(2026, 6, 10, 5, 0, tzinfo=UTC))["digests"] == 1


@pytest.mark.django_db
def test_repeated_sweeps_make_nothing_new_and_enqueue_again_only_after_the_lease(clinic):
    FollowUpFactory(patient=PatientFactory(clinic=clinic, primary_nurse=nurse(clinic)), due_on=days(0))
    first = outbox.sweep(now=NOW)
    assert (first["digests"], first["claimed"]) == (1, 1)
    assert outbox.sweep(now=NOW + timedelta(minutes=1))["claimed"] == 0  # enqueue lease still running
    # Nobody sent it (the broker lost the task): after the lease the sweep enqueues it again.
    assert outbox.sweep(now=NOW + outbox.enqueue_lease() + timedelta(seconds=1))["claimed"] == 1
    for minutes in (5, 60, 600):  # later that day: the same digest, not a new one
        assert outbox.sweep(now=NOW + timedelta(minutes=minutes))["digests"] == 0
    assert len(digests()) == 1


@pytest.mark.django_db
def test_a_nurse_in_two_clinics_gets_a_digest_per_clinic(clinic):
    other = ClinicFactory(time_zone="America/New_York", digest_time=time(7))
    anna = nurse(clinic)
    other.staff.add(anna)
    FollowUpFactory(patient=PatientFactory(clinic=clinic, primary_nurse=anna), due_on=days(0))
    FollowUpFactory(patient=PatientFactory(clinic=other, primary_nurse=anna), due_on=days(0))
    # 08:00 UTC: 10:00 in Paris, 04:00 in New York.
    assert outbox.sweep(now=NOW)["digests"] == 1
    # 11:00 UTC: 07:00 in New York.
    assert outbox.sweep(now=NOW.replace(hour=11))["digests"] == 1
    assert [d.idempotency_key for d in digests()] == sorted(
        [f"digest:{clinic.pk}:{anna.pk}:2026-06-10", f"digest:{other.pk}:{anna.pk}:2026-06-10"]
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("tz_name", "change_day", "digest_time", "first_due_utc"),
    [
        # Fall back: 02:30 happens twice in Paris on 2026-10-25 (00:30 and 01:30 UTC): one digest, at the first.
        ("Europe/Paris", date(2026, 10, 25), time(2, 30), datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
        ("Europe/Paris", date(2026, 10, 25), time(7), datetime(2026, 10, 25, 6, 0, tzinfo=UTC)),
        # Spring forward: 02:30 does not exist in Paris on 2026-03-29: the digest goes at 03:00 CEST.
        ("Europe/Paris", date(2026, 3, 29), time(2, 30), datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
        ("America/New_York", date(2026, 11, 1), time(1, 30), datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),
    ],
)
def test_sweeping_every_five_minutes_through_a_change_night_makes_one_digest_per_local_date(
    tz_name, change_day, digest_time, first_due_utc
):
    clinic = ClinicFactory(time_zone=tz_name, digest_time=digest_time)
    anna = nurse(clinic)
    FollowUpFactory(patient=PatientFactory(clinic=clinic, primary_nurse=anna), due_on=change_day)
    start = datetime.combine(change_day - timedelta(days=1), time(18), tzinfo=UTC)
    created_at: dict[str, datetime] = {}
    for step in range(16 * 12):  # 16 hours, every 5 minutes
        now = start + timedelta(minutes=5 * step)
        before = {d.idempotency_key for d in digests()}
        assert outbox.sweep(now=now)["digests"] <= 1
        for key in {d.idempotency_key for d in digests()} - before:
            created_at[key] = now
    day_before = change_day - timedelta(days=1)
    assert set(created_at) == {
        f"digest:{clinic.pk}:{anna.pk}:{day_before.isoformat()}",  # still the day before, locally, at 18:00 UTC
        f"digest:{clinic.pk}:{anna.pk}:{change_day.isoformat()}",
    }
    assert created_at[f"digest:{clinic.pk}:{anna.pk}:{change_day.isoformat()}"] == first_due_utc


# --- escalations -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_overdue_item_escalates_once_a_week_to_the_clinician_and_the_alert_address(clinic, smtp_server):
    doctor = clinician(clinic)
    patient = PatientFactory(clinic=clinic, responsible_clinician=doctor)
    due_on = date(2026, 6, 1)
    item = FollowUpFactory(patient=patient, due_on=due_on)
    quiet = FollowUpFactory(patient=patient, due_on=due_on + timedelta(days=20))  # never overdue enough

    sent: list[str] = []
    for day in range(23):  # overdue by 0 … 22 days; escalated on days 8, 15 and 22
        now = datetime.combine(due_on + timedelta(days=day), time(8), tzinfo=UTC)
        outbox.sweep(now=now)
        outbox.sweep(now=now + timedelta(hours=3))  # a second sweep the same day adds nothing
        for reminder in Reminder.objects.filter(kind=ReminderKind.ESCALATION, status=ReminderStatus.PENDING):
            sent.append(outbox.reminder_send(reminder_id=reminder.pk, now=now))

    escalations = Reminder.objects.filter(kind=ReminderKind.ESCALATION)
    assert sorted(escalations.values_list("idempotency_key", flat=True)) == sorted(
        f"escalation:{clinic.pk}:{(due_on + timedelta(days=day)).isoformat()}:{address}"
        for day in (8, 15, 22)
        for address in (doctor.email, "alerts@clinic.invalid")
    )
    assert all(list(r.follow_ups.all()) == [item] for r in escalations)
    assert not quiet.reminders.exists()
    assert sent == ["sent"] * 6
    per_recipient: dict[str, int] = {}
    for received in smtp_server.messages:
        assert received.subject == "Escalation: overdue follow-ups"
        assert f"MRN {patient.mrn}" in received.text and "2026-06-01" in received.text
        per_recipient[received.rcpt_tos[0]] = per_recipient.get(received.rcpt_tos[0], 0) + 1
    assert per_recipient == {doctor.email: 3, "alerts@clinic.invalid": 3}


@pytest.mark.django_db
def test_a_days_escalations_are_one_email_per_recipient_listing_every_item(clinic, smtp_server):
    # given 51 items overdue beyond the threshold, of patients with the same responsible clinician
    doctor = clinician(clinic)
    other_doctor = clinician(clinic)
    items = [
        FollowUpFactory(
            patient=PatientFactory(
                clinic=clinic, responsible_clinician=doctor, family_name="Quixotewright", given_name="Philomena"
            ),
            due_on=days(-10 - n % 20),
        )
        for n in range(50)
    ]
    theirs = FollowUpFactory(patient=PatientFactory(clinic=clinic, responsible_clinician=other_doctor), due_on=days(-9))

    # when the day's sweeps run (twice) and everything is sent
    first = outbox.sweep(now=NOW)
    again = outbox.sweep(now=NOW + timedelta(hours=2))
    for reminder in Reminder.objects.filter(kind=ReminderKind.ESCALATION):
        assert outbox.reminder_send(reminder_id=reminder.pk, now=NOW) == "sent"

    # then one e-mail per recipient: each clinician their patients' items, the alert address all of them
    assert (first["escalations"], again["escalations"]) == (3, 0)
    by_recipient = {r.recipient: r for r in Reminder.objects.filter(kind=ReminderKind.ESCALATION)}
    assert set(by_recipient[doctor.email].follow_ups.all()) == set(items)
    assert set(by_recipient[other_doctor.email].follow_ups.all()) == {theirs}
    assert set(by_recipient["alerts@clinic.invalid"].follow_ups.all()) == {*items, theirs}
    assert by_recipient[doctor.email].idempotency_key == f"escalation:{clinic.pk}:2026-06-10:{doctor.email.lower()}"
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == sorted(
        [doctor.email, other_doctor.email, "alerts@clinic.invalid"]
    )
    [mail] = [m for m in smtp_server.messages if m.rcpt_tos == ["alerts@clinic.invalid"]]
    assert mail.text.count("- MRN ") == 51
    assert "These 51 follow-ups are overdue" in mail.text
    assert "(9 days overdue)" in mail.text
    for secret in ["Quixotewright", "Philomena"]:
        assert secret not in mail.text + mail.html + mail.subject


@pytest.mark.django_db
def test_escalation_stops_when_the_item_is_done_and_honours_the_threshold(clinic, settings):
    settings.ANTICOAG_ESCALATE_AFTER_DAYS = 3
    patient = PatientFactory(clinic=clinic)  # no clinician: the alert address only
    item = FollowUpFactory(patient=patient, due_on=date(2026, 6, 1))
    outbox.sweep(now=datetime(2026, 6, 4, 8, tzinfo=UTC))  # 3 days overdue: not yet
    assert not Reminder.objects.filter(kind=ReminderKind.ESCALATION).exists()
    outbox.sweep(now=datetime(2026, 6, 5, 8, tzinfo=UTC))  # 4 days: escalated
    assert list(Reminder.objects.values_list("idempotency_key", flat=True)) == [
        f"escalation:{clinic.pk}:2026-06-05:alerts@clinic.invalid"
    ]
    assert list(Reminder.objects.get().follow_ups.all()) == [item]
    item.status = FollowUpStatus.DONE
    item.save()
    outbox.sweep(now=datetime(2026, 6, 20, 8, tzinfo=UTC))
    assert Reminder.objects.filter(kind=ReminderKind.ESCALATION).count() == 1


# --- the sweep's cost --------------------------------------------------------------------------------------


def _population(clinic, *, nurses: int, patients_per_nurse: int, items_per_patient: int) -> None:
    doctor = clinician(clinic)
    for _ in range(nurses):
        carer = nurse(clinic)
        for _ in range(patients_per_nurse):
            patient = PatientFactory(clinic=clinic, primary_nurse=carer, responsible_clinician=doctor)
            for offset in [3, -10, -2, -20, 0][:items_per_patient]:  # upcoming, overdue, and escalating
                FollowUpFactory(patient=patient, due_on=days(offset))
    ReminderFactory.create_batch(nurses, clinic=clinic, next_attempt_at=NOW - timedelta(hours=1))
    for _ in range(nurses):
        ReminderFactory(
            clinic=clinic,
            status=ReminderStatus.SENDING,
            next_attempt_at=NOW - timedelta(minutes=10),
            lease_until=NOW - timedelta(minutes=1),
        )


@pytest.mark.django_db
def test_the_sweeps_query_count_does_not_grow_with_the_data(django_assert_max_num_queries):
    def measure(name: str, **size) -> tuple[int, dict]:
        clinic = ClinicFactory(name=name, time_zone="Europe/Paris", digest_time=time(7))
        _population(clinic, **size)
        with CaptureQueriesContext(connection) as queries:
            counts = outbox.sweep(now=NOW)
        Reminder.objects.all().delete()  # the next size starts from an empty outbox
        clinic.patients.update(active=False)
        return len(queries), counts

    small, small_counts = measure("Small", nurses=1, patients_per_nurse=2, items_per_patient=2)
    large, large_counts = measure("Large", nurses=6, patients_per_nurse=8, items_per_patient=4)

    assert small_counts["digests"] == 1 and large_counts["digests"] == 6
    # one escalation per recipient (the clinician and the alert address), however many items
    assert large_counts["escalations"] == small_counts["escalations"] == 2
    assert large_counts["claimed"] > small_counts["claimed"] > 0
    assert large_counts["reclaimed"] == 6
    assert large == small
    clinic = ClinicFactory(name="Again", time_zone="Europe/Paris", digest_time=time(7))
    _population(clinic, nurses=10, patients_per_nurse=10, items_per_patient=3)
    with django_assert_max_num_queries(small):
        outbox.sweep(now=NOW)


@pytest.mark.django_db
def test_the_sweep_claims_in_batches_until_nothing_is_left(clinic, settings):
    settings.ANTICOAG_SWEEP_BATCH_SIZE = 2
    rows = ReminderFactory.create_batch(5, clinic=clinic, next_attempt_at=NOW - timedelta(minutes=1))
    ReminderFactory(clinic=clinic, next_attempt_at=NOW + timedelta(minutes=1))  # not due yet
    assert sorted(outbox.reminders_claim(now=NOW)) == sorted(r.pk for r in rows)
    assert outbox.reminders_claim(now=NOW) == []


# --- reclaim -----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_send_whose_lease_expired_is_reclaimed_and_enqueued_again(clinic):
    stuck = ReminderFactory(
        clinic=clinic,
        status=ReminderStatus.SENDING,
        attempts=1,
        next_attempt_at=NOW - timedelta(minutes=5),
        lease_until=NOW + timedelta(seconds=30),
    )
    assert outbox.sweep(now=NOW)["reclaimed"] == 0  # lease still running: the worker may be alive
    counts = outbox.sweep(now=NOW + timedelta(minutes=1))
    assert (counts["reclaimed"], counts["claimed"]) == (1, 1)
    stuck.refresh_from_db()
    assert stuck.status == ReminderStatus.PENDING
    assert stuck.attempts == 1
    assert "lease expired" in stuck.last_error
    assert stuck.lease_until == NOW + timedelta(minutes=1) + outbox.enqueue_lease()


@pytest.mark.django_db
def test_a_reminder_that_keeps_killing_its_worker_gives_up(clinic, settings):
    settings.ANTICOAG_REMINDER_MAX_LOST_SENDS = 3
    poison = ReminderFactory(clinic=clinic, status=ReminderStatus.SENDING, attempts=3, lost_sends=2, lease_until=NOW)
    counts = outbox.sweep(now=NOW + timedelta(seconds=1))
    poison.refresh_from_db()
    assert (counts["failed"], counts["reclaimed"], poison.status) == (1, 0, ReminderStatus.FAILED)
    assert poison.lost_sends == 3


@pytest.mark.django_db
def test_many_transient_attempts_do_not_count_as_lost_sends(clinic, settings):
    """A row that retried through a long outage and then loses its worker once is reclaimed, not failed."""
    settings.ANTICOAG_REMINDER_MAX_LOST_SENDS = 3
    survivor = ReminderFactory(clinic=clinic, status=ReminderStatus.SENDING, attempts=40, lease_until=NOW)
    counts = outbox.sweep(now=NOW + timedelta(seconds=1))
    survivor.refresh_from_db()
    assert (counts["failed"], counts["reclaimed"], survivor.status) == (0, 1, ReminderStatus.PENDING)
    assert survivor.lost_sends == 1


# --- sending -----------------------------------------------------------------------------------------------


@pytest.fixture
def urgent_inr(clinic):
    """An urgent alert about a critical INR reading (the INR value must never appear in the e-mail)."""
    patient = PatientFactory(
        clinic=clinic, mrn="MRN-4711", family_name="Zyxwvutsky", given_name="Qwertina", date_of_birth=date(1980, 5, 17)
    )
    reading = InrReading.objects.create(patient=patient, drawn_at=NOW - timedelta(hours=2), value=Decimal("9.70"))
    return outbox.reminder_materialise(
        clinic=clinic,
        kind=ReminderKind.URGENT,
        recipient="alerts@clinic.invalid",
        key=f"test:urgent:inr:{reading.pk}",
        inr_reading=reading,
        reason="inr_critical",
        now=NOW,
    )


@pytest.mark.django_db
def test_send_delivers_once_with_a_deterministic_message_id_and_no_clinical_detail(urgent_inr, smtp_server):
    assert outbox.reminder_send(reminder_id=urgent_inr.pk, now=NOW) == "sent"
    assert outbox.reminder_send(reminder_id=urgent_inr.pk, now=NOW) == "skipped"
    urgent_inr.refresh_from_db()
    [received] = smtp_server.messages
    assert urgent_inr.status == ReminderStatus.SENT
    assert (urgent_inr.attempts, urgent_inr.sent_at, urgent_inr.lease_until) == (1, NOW, None)
    assert re.fullmatch(rf"<reminder-{urgent_inr.pk}-[0-9a-f]{{16}}@testserver>", urgent_inr.message_id)
    assert received.message_id == urgent_inr.message_id
    assert received.rcpt_tos == ["alerts@clinic.invalid"]
    assert received.subject == "Urgent: a patient needs attention"
    assert received.message["Auto-Submitted"] == "auto-generated"
    assert "CVT" not in received.message["From"]
    patient = urgent_inr.inr_reading.patient
    for body in (received.text, received.html):
        assert "MRN-4711" in body
        assert "critical INR result" in body
        assert f"http://testserver/admin/patients/patient/{patient.pk}/change/" in body
        for secret in [*FORBIDDEN, "9.7", "9,7", "Zyxwvutsky", "Qwertina"]:
            assert secret not in body
    for secret in [*FORBIDDEN, "MRN", "4711", "INR"]:
        assert secret not in received.subject


@pytest.mark.django_db
def test_a_temporary_smtp_refusal_backs_off_and_the_retry_goes_through(urgent_inr, smtp_server):
    smtp_server.handler.mode = "tempfail"
    assert outbox.reminder_send(reminder_id=urgent_inr.pk, now=NOW) == "retry"
    urgent_inr.refresh_from_db()
    assert (urgent_inr.status, urgent_inr.attempts) == (ReminderStatus.PENDING, 1)
    assert urgent_inr.next_attempt_at == NOW + timedelta(minutes=1)
    assert urgent_inr.last_error.startswith("SMTPRecipientsRefused") and "451" in urgent_inr.last_error
    assert "MRN" not in urgent_inr.last_error

    assert outbox.reminder_send(reminder_id=urgent_inr.pk, now=NOW + timedelta(seconds=30)) == "skipped"
    later = NOW + timedelta(minutes=1)
    assert outbox.reminder_send(reminder_id=urgent_inr.pk, now=later) == "retry"
    urgent_inr.refresh_from_db()
    assert (urgent_inr.attempts, urgent_inr.next_attempt_at) == (2, later + timedelta(minutes=2))

    smtp_server.handler.mode = "accept"
    assert outbox.sweep(now=later + timedelta(minutes=2))["claimed"] == 1  # due again: the sweep enqueues it
    assert outbox.reminder_send(reminder_id=urgent_inr.pk, now=later + timedelta(minutes=2)) == "sent"
    urgent_inr.refresh_from_db()
    assert (urgent_inr.status, urgent_inr.attempts) == (ReminderStatus.SENT, 3)
    assert "451" in urgent_inr.last_error  # the history stays visible in the admin
    assert len(smtp_server.messages) == 1


@pytest.mark.django_db
def test_an_unreachable_smtp_server_is_a_transient_error(urgent_inr, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nothing listens there
    assert outbox.reminder_send(reminder_id=urgent_inr.pk, now=NOW) == "retry"
    urgent_inr.refresh_from_db()
    assert urgent_inr.status == ReminderStatus.PENDING
    assert urgent_inr.last_error.startswith("ConnectionRefusedError")


@pytest.mark.django_db
def test_a_permanent_refusal_fails_at_once(urgent_inr, smtp_server):
    smtp_server.handler.mode = "reject"
    assert outbox.reminder_send(reminder_id=urgent_inr.pk, now=NOW) == "failed"
    urgent_inr.refresh_from_db()
    assert (urgent_inr.status, urgent_inr.attempts) == (ReminderStatus.FAILED, 1)
    assert "550" in urgent_inr.last_error
    assert outbox.sweep(now=NOW + timedelta(days=1))["claimed"] == 0


@pytest.mark.django_db
def test_transient_errors_never_give_up_and_the_backoff_is_capped(urgent_inr, smtp_server):
    smtp_server.handler.mode = "tempfail"
    now = NOW
    results = []
    for _ in range(20):  # far beyond the old budget of 8 attempts (about 2 hours)
        results.append(outbox.reminder_send(reminder_id=urgent_inr.pk, now=now))
        urgent_inr.refresh_from_db()
        now = urgent_inr.next_attempt_at
    assert results == ["retry"] * 20
    assert (urgent_inr.status, urgent_inr.attempts) == (ReminderStatus.PENDING, 20)
    # 1, 2, 4 … 32 minutes, then the one-hour cap.
    assert now - NOW == timedelta(minutes=1 + 2 + 4 + 8 + 16 + 32) + timedelta(hours=14)
    smtp_server.handler.mode = "accept"
    assert outbox.reminder_send(reminder_id=urgent_inr.pk, now=now) == "sent"
    assert len(smtp_server.messages) == 1


@pytest.mark.parametrize(
    ("exc", "permanent"),
    [
        (smtplib.SMTPRecipientsRefused({"a@x": (550, b"no")}), True),
        (smtplib.SMTPRecipientsRefused({"a@x": (451, b"later")}), False),
        (smtplib.SMTPRecipientsRefused({"a@x": (550, b"no"), "b@x": (451, b"later")}), False),
        (smtplib.SMTPDataError(554, b"rejected"), True),
        (smtplib.SMTPDataError(452, b"full"), False),
        (smtplib.SMTPServerDisconnected("gone"), False),
        # A 5xx about the server or our own configuration is not about this reminder: retry.
        (smtplib.SMTPConnectError(554, b"no service"), False),
        (smtplib.SMTPSenderRefused(550, b"sender rejected", "no-reply@clinic.invalid"), False),
        (smtplib.SMTPAuthenticationError(535, b"bad credentials"), False),
        (smtplib.SMTPDataError(421, b"closing"), False),
        (outbox.InvalidRecipient("not an address"), True),
        (ConnectionRefusedError(), False),
        (TimeoutError(), False),
    ],
)
def test_which_errors_are_permanent(exc, permanent):
    assert outbox.is_permanent(exc) is permanent


@pytest.mark.django_db
def test_the_digest_email_lists_mrn_kind_due_date_and_link_by_section(clinic, smtp_server):
    anna = nurse(clinic)
    patient = PatientFactory(clinic=clinic, primary_nurse=anna, mrn="A-1", family_name="Zyxwvutsky")
    overdue = FollowUpFactory(patient=patient, due_on=days(-2), kind=FollowUpKind.RENAL_FUNCTION)
    today = FollowUpFactory(patient=patient, due_on=days(0), kind=FollowUpKind.VENOUS_IMAGING)
    week = FollowUpFactory(patient=patient, due_on=days(5), kind=FollowUpKind.INR_TEST)
    outbox.sweep(now=NOW)
    [digest] = digests()
    assert outbox.reminder_send(reminder_id=digest.pk, now=NOW) == "sent"
    [received] = smtp_server.messages
    assert received.subject == "Your follow-ups for 2026-06-10"
    assert received.message.get_content_type() == "multipart/alternative"
    text = received.text
    assert text.index("Overdue (1)") < text.index("Due today (1)") < text.index("Due in the next 7 days (1)")
    for item, line in [
        (overdue, "- MRN A-1: Renal function (creatinine, hemoglobin), due 2026-06-08"),
        (today, "- MRN A-1: Venous imaging (CT/MR venography), due 2026-06-10"),
        (week, "- MRN A-1: INR test, due 2026-06-15"),
    ]:
        assert line in text
        assert f"http://testserver/admin/scheduling/followup/{item.pk}/change/" in text
        assert f'href="http://testserver/admin/scheduling/followup/{item.pk}/change/"' in received.html
    for secret in [*FORBIDDEN, "Zyxwvutsky", patient.given_name]:
        assert secret not in text and secret not in received.html and secret not in received.subject


@pytest.mark.django_db
def test_the_management_command_runs_one_sweep(clinic, capsys):
    FollowUpFactory(patient=PatientFactory(clinic=clinic, primary_nurse=nurse(clinic)), due_on=date.today())  # noqa: DTZ011
    ReminderFactory(clinic=clinic)
    call_command("sweep")
    output = capsys.readouterr().out
    assert "claimed=" in output and "digests=" in output
    assert Reminder.objects.exclude(lease_until=None).exists()


@pytest.mark.django_db
def test_staff_without_a_nurse_role_get_no_digest(clinic):
    plain = UserFactory(clinics=[clinic])
    FollowUpFactory(patient=PatientFactory(clinic=clinic, primary_nurse=plain), due_on=days(0))
    assert outbox.sweep(now=NOW)["digests"] == 0
