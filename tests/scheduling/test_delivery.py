"""Acceptance (issue 5): reminders reach a real SMTP server through a real Celery worker and Redis, and
survive faults — every due reminder delivered, none twice (a duplicate only after a crash between the SMTP
hand-off and the status update, and then with the same Message-ID).

Transactional tests: the worker reads committed rows through its own connection.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from datetime import time as clock

import pytest
from django.db import connections
from django.utils import timezone

from scheduling import outbox
from scheduling.models import FollowUpKind, Reminder, ReminderKind, ReminderStatus
from tests.factories import ClinicFactory, PatientFactory, clinician, nurse

from .conftest import in_process_worker, queued_reminder_ids, wait_for
from .factories import FollowUpFactory, ReminderFactory

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def utc_today():
    return datetime.now(tz=UTC).date()


def clinic_with_digests(nurses: int, *, overdue_for_escalation: int = 0):
    """A UTC clinic whose digest time (00:00) has passed, with ``nurses`` nurses who each have items due."""
    clinic = ClinicFactory(time_zone="UTC", digest_time=clock(0), alert_email="alerts@clinic.invalid")
    today = utc_today()
    for _ in range(nurses):
        patient = PatientFactory(clinic=clinic, primary_nurse=nurse(clinic))
        FollowUpFactory(patient=patient, due_on=today, kind=FollowUpKind.VENOUS_IMAGING)
        FollowUpFactory(patient=patient, due_on=today + timedelta(days=3))
    doctor = clinician(clinic)
    for _ in range(overdue_for_escalation):
        patient = PatientFactory(clinic=clinic, responsible_clinician=doctor)
        FollowUpFactory(patient=patient, due_on=today - timedelta(days=10))
    return clinic


def all_sent() -> bool:
    return not Reminder.objects.exclude(status=ReminderStatus.SENT).exists()


def assert_each_delivered_once(smtp_server, *, allowed_duplicates: set[str] = frozenset()) -> None:
    """Every reminder row is SENT and reached the server; no Message-ID twice, except those allowed."""
    rows = list(Reminder.objects.all())
    assert rows and all(row.status == ReminderStatus.SENT for row in rows)
    received = Counter(smtp_server.handler.message_ids())
    assert set(received) == {row.message_id for row in rows}, "a reminder is missing, or a stranger arrived"
    duplicates = {message_id for message_id, count in received.items() if count > 1}
    assert duplicates <= allowed_duplicates
    for message_id in duplicates:  # a duplicate is the same e-mail again, not a different one
        copies = [m for m in smtp_server.messages if m.message_id == message_id]
        assert len({(c.subject, tuple(c.rcpt_tos), c.text, c.html) for c in copies}) == 1


def test_a_reminder_due_now_reaches_the_smtp_server_after_one_sweep_exactly_once(celery_worker, smtp_server):
    clinic = ClinicFactory(time_zone="UTC", digest_time=clock(0))
    anna = nurse(clinic)
    patient = PatientFactory(clinic=clinic, primary_nurse=anna, mrn="B-77", family_name="Zyxwvutsky")
    item = FollowUpFactory(patient=patient, due_on=utc_today(), kind=FollowUpKind.MICROBLEED_MRI)

    counts = outbox.sweep()

    assert (counts["digests"], counts["claimed"]) == (1, 1)
    wait_for(all_sent, what="the digest to be sent")
    [digest] = Reminder.objects.all()
    [received] = smtp_server.messages
    assert received.rcpt_tos == [anna.email]
    assert received.subject == f"Your follow-ups for {utc_today().isoformat()}"
    assert received.message_id == digest.message_id
    assert re.fullmatch(rf"<reminder-{digest.pk}-[0-9a-f]{{16}}@testserver>", received.message_id)
    assert received.message.get_content_type() == "multipart/alternative"
    link = f"http://testserver/admin/scheduling/followup/{item.pk}/change/"
    assert f"- MRN B-77: MRI with SWI/GRE (microbleeds), due {utc_today().isoformat()}" in received.text
    assert link in received.text
    assert "B-77" in received.html and f'href="{link}"' in received.html
    for secret in ["Zyxwvutsky", patient.given_name, "CVT", "thrombosis", "1980-05-17"]:
        assert secret not in received.text + received.html + received.subject
    assert (digest.attempts, digest.lease_until) == (1, None)

    # Later sweeps send nothing more.
    outbox.sweep()
    outbox.sweep(now=timezone.now() + timedelta(hours=1))
    time.sleep(0.5)
    assert len(smtp_server.messages) == 1


def test_an_urgent_alert_goes_at_once_without_waiting_for_the_sweep(celery_worker, smtp_server):
    clinic = ClinicFactory(alert_email="alerts@clinic.invalid")
    patient = PatientFactory(clinic=clinic, mrn="U-1")
    urgent = outbox.reminder_materialise(
        clinic=clinic,
        kind=ReminderKind.URGENT,
        recipient=clinic.alert_email,
        key="test:urgent:1",
        follow_ups=[FollowUpFactory(patient=patient, kind=FollowUpKind.URGENT_IMAGING)],
        reason="deterioration",
    )
    wait_for(all_sent, what="the urgent alert to be sent")
    [received] = [m for m in smtp_server.messages if m.message_id == Reminder.objects.get(pk=urgent.pk).message_id]
    assert received.subject == "Urgent: a patient needs attention"
    assert "MRN U-1: deterioration recorded, urgent imaging due" in received.text


def test_a_worker_killed_mid_batch_loses_nothing(worker_process, smtp_server):
    clinic_with_digests(8)
    smtp_server.handler.delay = 1.0  # a slow server, so the kill lands while messages are being handed over
    first_worker = worker_process.start(concurrency=2)

    assert outbox.sweep()["claimed"] == 8
    wait_for(lambda: len(smtp_server.messages) >= 3 and smtp_server.handler.in_data >= 1, what="sends to be under way")
    worker_process.kill(first_worker)  # SIGKILL, the worker and its pool processes
    in_flight = list(Reminder.objects.filter(status=ReminderStatus.SENDING))
    assert in_flight, "the kill should land mid-send"
    assert not all_sent()

    smtp_server.handler.delay = 0
    worker_process.start(concurrency=2)
    # Sweeps after the send lease reclaim the rows the dead worker held; lost tasks are enqueued again.
    later = timezone.now() + outbox.send_lease() + timedelta(seconds=1)

    def swept_until_sent() -> bool:
        outbox.sweep(now=later)
        return all_sent()

    wait_for(swept_until_sent, interval=0.2, what="every reminder to be sent after the restart")
    assert_each_delivered_once(smtp_server, allowed_duplicates={outbox.message_id_for(row) for row in in_flight})
    assert all(row.attempts >= 2 for row in Reminder.objects.filter(pk__in=[r.pk for r in in_flight]))


def test_a_flushed_broker_loses_nothing(broker, smtp_server):
    clinic_with_digests(5)
    assert outbox.sweep()["claimed"] == 5
    assert len(queued_reminder_ids(broker, "celery")) == 5
    broker.flushdb()  # the queued send tasks are gone

    with in_process_worker():
        assert outbox.sweep()["claimed"] == 0  # within the enqueue lease: nothing to do yet
        time.sleep(0.5)
        assert smtp_server.messages == []
        # After the enqueue lease the rows are enqueued again.
        assert outbox.sweep(now=timezone.now() + outbox.enqueue_lease() + timedelta(seconds=1))["claimed"] == 5
        wait_for(all_sent, what="every reminder to be sent after the flush")
    assert_each_delivered_once(smtp_server)


def test_an_smtp_outage_delays_delivery_records_the_errors_and_loses_nothing(celery_worker, smtp_server, settings):
    settings.ANTICOAG_REMINDER_RETRY_BASE_SECONDS = 1  # real time: retries within a second or two
    settings.ANTICOAG_REMINDER_RETRY_MAX_SECONDS = 1
    clinic_with_digests(3)
    smtp_server.stop()  # down: connection refused

    def sweep_until(condition) -> bool:
        outbox.sweep()
        return condition()

    outbox.sweep()
    wait_for(
        lambda: sweep_until(lambda: all(r.attempts >= 2 for r in Reminder.objects.all())),
        interval=0.3,
        what="two refused attempts",
    )
    assert all("ConnectionRefusedError" in r.last_error for r in Reminder.objects.all())
    assert not Reminder.objects.filter(status=ReminderStatus.SENT).exists()

    smtp_server.start()  # up, but refusing for now: 451
    smtp_server.handler.mode = "tempfail"
    wait_for(
        lambda: sweep_until(lambda: all("451" in r.last_error for r in Reminder.objects.all())),
        interval=0.3,
        what="temporary refusals",
    )
    assert smtp_server.messages == []

    smtp_server.handler.mode = "accept"  # back
    wait_for(lambda: sweep_until(all_sent), interval=0.3, what="delivery after the outage")
    assert_each_delivered_once(smtp_server)
    for row in Reminder.objects.all():
        assert row.attempts >= 4
        assert "451" in row.last_error  # the last error stays visible


def sweeps_at_once(count: int = 2) -> list[dict]:
    """Run ``count`` sweeps at the same moment, each in its own thread with its own database connection."""
    barrier = threading.Barrier(count)
    results: list[dict] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(outbox.sweep())
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(results) == count
    return results


def test_two_sweeps_at_once_enqueue_and_send_each_reminder_once(celery_worker, smtp_server):
    clinic = clinic_with_digests(6, overdue_for_escalation=2)
    claimed = 0
    for _ in range(3):
        ReminderFactory.create_batch(10, clinic=clinic, next_attempt_at=timezone.now() - timedelta(seconds=1))
        claimed += sum(result["claimed"] for result in sweeps_at_once())

    total = Reminder.objects.count()
    assert Reminder.objects.filter(kind=ReminderKind.DIGEST).count() == 6
    assert Reminder.objects.filter(kind=ReminderKind.ESCALATION).count() == 2  # (clinician, alerts), 2 items each
    assert claimed == total == 6 + 2 + 30  # each row enqueued by exactly one of the two sweeps
    wait_for(all_sent, what="every reminder to be sent")
    assert_each_delivered_once(smtp_server)
    assert all(row.attempts == 1 for row in Reminder.objects.all())
