"""Acceptance (issue 19) with the real worker, Redis and SMTP server: a long SMTP outage loses nothing, a
permanent refusal is visible at once, slow delivery does not multiply tasks, concurrent sweeps count right,
and urgent alerts have a worker of their own.

Time is controlled with time_machine: the sweeps, the in-process worker (a thread of this process) and the
database rows all see the travelled clock, while real seconds pass only for the work itself.

Transactional tests: the worker reads committed rows through its own connection.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from celery.signals import after_task_publish
from django.core.management import call_command
from django.db import connections
from django.utils import timezone

from scheduling import outbox
from scheduling.models import OutboxCounter, Reminder, ReminderKind, ReminderStatus
from tests.factories import ClinicFactory, PatientFactory, UserFactory, clinician, nurse

from .conftest import queued_reminder_ids, wait_for
from .factories import FollowUpFactory

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

START = datetime(2026, 3, 10, 6, 0, tzinfo=UTC)  # an hour before the clinic's 07:00 digests
SWEEP_EVERY = timedelta(minutes=30)
TOKEN = "test-metrics-token-0123456789"
OLD_ATTEMPT_BUDGET = 8  # what gave up after about two hours before issue 19
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"

UNSENT = [ReminderStatus.PENDING, ReminderStatus.SENDING]


def settled() -> bool:
    """Nothing due is left unattempted: every row is sent, superseded, failed, or waiting for its backoff."""
    return not Reminder.objects.filter(status__in=UNSENT, next_attempt_at__lte=timezone.now()).exists()


def clinic_with_work(nurses: int):
    """A UTC clinic (digests at 07:00) whose nurses have items due the next days, and one escalation."""
    clinic = ClinicFactory(time_zone="UTC", digest_time=clock(7), alert_email="alerts@clinic.invalid")
    today = START.date()
    for _ in range(nurses):
        patient = PatientFactory(clinic=clinic, primary_nurse=nurse(clinic))
        FollowUpFactory(patient=patient, due_on=today + timedelta(days=2))
    doctor = clinician(clinic)
    FollowUpFactory(patient=PatientFactory(clinic=clinic, responsible_clinician=doctor), due_on=today - timedelta(9))
    return clinic


def urgent_alert(clinic, key: str = "test:urgent:outage"):
    patient = PatientFactory(clinic=clinic)
    return outbox.reminder_materialise(
        clinic=clinic,
        kind=ReminderKind.URGENT,
        recipient=clinic.alert_email,
        key=key,
        follow_ups=[FollowUpFactory(patient=patient, due_on=START.date())],
        reason="deterioration",
    )


def test_an_smtp_outage_longer_than_the_old_retry_budget_loses_nothing(celery_worker, smtp_server):
    with time_machine.travel(START, tick=True) as traveller:
        clinic = clinic_with_work(nurses=3)
        smtp_server.stop()  # down: connection refused
        alert = urgent_alert(clinic)

        # 26 hours: refused connections for 13, then "451 try again later" for 13; a sweep every 30 minutes.
        outage_end = START + timedelta(hours=26)
        while timezone.now() < outage_end:
            traveller.shift(SWEEP_EVERY)
            if smtp_server.controller is None and timezone.now() >= START + timedelta(hours=13):
                smtp_server.handler.mode = "tempfail"
                smtp_server.start()
            outbox.sweep()
            wait_for(settled, what="the due reminders to be attempted")
        assert smtp_server.messages == []
        assert not Reminder.objects.filter(status=ReminderStatus.FAILED).exists()
        assert Reminder.objects.get(pk=alert.pk).attempts > OLD_ATTEMPT_BUDGET

        smtp_server.handler.mode = "accept"  # back
        for _ in range(4):  # the capped backoff (1 hour) brings every row back within two sweeps
            traveller.shift(SWEEP_EVERY)
            outbox.sweep()
            wait_for(settled, what="the due reminders to be sent")

    rows = list(Reminder.objects.select_related("superseded_by"))
    by_status = Counter(row.status for row in rows)
    assert set(by_status) == {ReminderStatus.SENT, ReminderStatus.SUPERSEDED}, by_status
    # The first morning's digests were covered by the second morning's, which went out instead.
    superseded = [row for row in rows if row.status == ReminderStatus.SUPERSEDED]
    assert len(superseded) == 3
    for row in superseded:
        assert row.kind == ReminderKind.DIGEST
        assert row.superseded_by.status == ReminderStatus.SENT
        assert row.superseded_by.recipient_user_id == row.recipient_user_id
    # Everything else reached the server exactly once: the urgent alert, the escalations, the new digests.
    sent = [row for row in rows if row.status == ReminderStatus.SENT]
    received = Counter(smtp_server.handler.message_ids())
    assert received == Counter(row.message_id for row in sent)
    assert Counter(row.kind for row in sent) == {
        ReminderKind.DIGEST: 3,
        ReminderKind.ESCALATION: 2,
        ReminderKind.URGENT: 1,
    }
    alert.refresh_from_db()
    assert alert.status == ReminderStatus.SENT
    assert alert.attempts > OLD_ATTEMPT_BUDGET
    assert "451" in alert.last_error  # the last error stays visible in the admin
    totals = {(c.kind, c.event): c.total for c in OutboxCounter.objects.all()}
    assert totals[(ReminderKind.URGENT, "sent")] == 1
    assert totals[(ReminderKind.DIGEST, "superseded")] == 3
    assert totals[(ReminderKind.URGENT, "retried")] == alert.attempts - 1
    assert (ReminderKind.URGENT, "failed") not in totals


def test_a_permanent_refusal_fails_at_once_and_shows_on_healthz_metrics_and_the_banner(
    celery_worker, smtp_server, client, admin_user, settings
):
    settings.ANTICOAG_METRICS_TOKEN = TOKEN
    clinic = ClinicFactory(alert_email="alerts@clinic.invalid")
    smtp_server.handler.mode = "reject"  # 550 for the recipient
    alert = urgent_alert(clinic)

    wait_for(lambda: Reminder.objects.get(pk=alert.pk).status == ReminderStatus.FAILED, what="the 550 to fail it")
    alert.refresh_from_db()
    assert alert.attempts == 1
    assert "550" in alert.last_error

    client.force_login(UserFactory())
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.json()["outbox"]["failed"] == 1
    assert "1 reminder(s) failed in the last 168 h" in health.json()["outbox"]["problems"]
    client.logout()

    metrics = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).content.decode().splitlines()
    assert 'anticoag_reminders_failed_total{kind="urgent"} 1.0' in metrics
    assert "anticoag_outbox_failed 1.0" in metrics

    client.force_login(admin_user)
    page = client.get("/admin/").content.decode()
    assert 'id="outbox-alarm"' in page and "1 reminder refused for good" in page


def test_an_urgent_alert_retrying_is_shown_as_undelivered(celery_worker, smtp_server, client, admin_user):
    clinic = ClinicFactory(alert_email="alerts@clinic.invalid")
    smtp_server.handler.mode = "tempfail"
    alert = urgent_alert(clinic)
    wait_for(lambda: Reminder.objects.get(pk=alert.pk).attempts == 1, what="the first attempt")
    wait_for(lambda: Reminder.objects.get(pk=alert.pk).status == ReminderStatus.PENDING, what="the retry")
    client.force_login(admin_user)
    page = client.get("/admin/").content.decode()
    assert "1 urgent alert not delivered" in page
    assert client.get("/healthz").json()["outbox"]["urgent_undelivered"] == 1


# --- bounded re-enqueueing ---------------------------------------------------------------------------------


def enqueue_bound(wait: timedelta) -> int:
    """Most send tasks the sweep can enqueue for a row that waits ``wait`` before its send: its k-th enqueue
    comes at the earliest after the leases of the k before it (base, 2 × base … capped)."""
    count, earliest = 0, timedelta(0)
    while earliest <= wait:
        earliest += outbox.enqueue_lease(count)
        count += 1
    return count


def deliver_slowly(smtp_server, *, reminders: int = 30) -> dict:
    """Sweeps every 5 minutes while the SMTP server lets two messages through per sweep: ``reminders``
    digests take far longer than the 2-minute enqueue lease. Returns the send requests published per
    reminder (a ``send_reminder`` task, or its place in a ``send_reminders`` batch: "tasks" below) and each
    reminder's wait (created → sent), after checking that each reached the server exactly once."""
    published: Counter[int] = Counter()
    messages: list[str] = []

    def count(sender=None, body=None, **kwargs) -> None:
        messages.append(sender)
        if sender == "scheduling.send_reminder":
            published[body[0][0]] += 1
        elif sender == "scheduling.send_reminders":  # a batch: each of its reminders is one send request
            published.update(body[0][0])

    after_task_publish.connect(count, weak=False, dispatch_uid="test-count-send-tasks")
    smtp_server.handler.gate = threading.Semaphore(0)
    try:
        with time_machine.travel(START + timedelta(hours=1, minutes=1), tick=True) as traveller:
            clinic = ClinicFactory(time_zone="UTC", digest_time=clock(7))
            for _ in range(reminders):
                FollowUpFactory(patient=PatientFactory(clinic=clinic, primary_nurse=nurse(clinic)))
            sweeps = 0
            while sweeps == 0 or Reminder.objects.exclude(status=ReminderStatus.SENT).exists():
                outbox.sweep()
                sweeps += 1
                target = min(Reminder.objects.filter(status=ReminderStatus.SENT).count() + 2, reminders)
                smtp_server.handler.gate.release(2)
                wait_for(
                    lambda n=target: Reminder.objects.filter(status=ReminderStatus.SENT).count() >= n,
                    what="two more messages",
                )
                traveller.shift(timedelta(minutes=5))
                assert sweeps < 40, "delivery stalled"
    finally:
        after_task_publish.disconnect(dispatch_uid="test-count-send-tasks")
        smtp_server.handler.gate = None

    rows = list(Reminder.objects.all())
    assert len(rows) == reminders
    assert Counter(smtp_server.handler.message_ids()) == Counter(row.message_id for row in rows)  # each once
    waits = {row.pk: row.sent_at - row.created_at for row in rows}
    total = sum(published.values())
    return {
        "published": published,
        "waits": waits,
        "summary": {
            "reminders": reminders,
            "sweeps": sweeps,
            "tasks": total,
            "tasks_per_reminder": round(total / reminders, 2),
            "celery_messages_published": len(messages),
            "max_tasks_one_reminder": max(published.values()),
            "longest_wait_minutes": round(max(waits.values()).total_seconds() / 60, 1),
            "bound_for_longest_wait": enqueue_bound(max(waits.values())),
        },
    }


def record(name: str, summary: dict) -> None:
    OUTPUT.mkdir(exist_ok=True)
    path = OUTPUT / "outbox-tasks-per-reminder.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results[name] = summary
    path.write_text(json.dumps(results, indent=2))
    print(f"tasks per delivered reminder ({name}):", summary)


def test_slow_delivery_does_not_multiply_tasks(celery_worker, smtp_server, settings):
    """Each row's tasks stay within ``enqueue_bound`` of its wait: the lease doubles with each re-enqueue."""
    settings.ANTICOAG_REMINDER_SEND_LEASE_SECONDS = 24 * 3600  # a message waits at the gate across sweeps
    run = deliver_slowly(smtp_server)
    for pk, tasks in run["published"].items():
        assert 1 <= tasks <= enqueue_bound(run["waits"][pk]), (tasks, run["waits"][pk])
    summary = run["summary"]
    assert summary["longest_wait_minutes"] >= 70
    assert summary["max_tasks_one_reminder"] <= 6  # the bound for a wait of up to 70 minutes with 2 min / 30 min
    record("growing lease (2 min doubling to 30 min)", summary)


def test_with_a_fixed_lease_slow_delivery_multiplies_tasks(celery_worker, smtp_server, settings):
    """The same run with the lease's cap at its base (the behaviour before issue 19): every sweep enqueues
    every waiting row again, so tasks grow with the wait, one per sweep. This is what the bound prevents."""
    settings.ANTICOAG_REMINDER_SEND_LEASE_SECONDS = 24 * 3600
    settings.ANTICOAG_REMINDER_ENQUEUE_LEASE_MAX_SECONDS = settings.ANTICOAG_REMINDER_ENQUEUE_LEASE_SECONDS
    run = deliver_slowly(smtp_server)
    for pk, tasks in run["published"].items():
        # One per sweep it waited through (but the last, when it was already at the SMTP server's gate).
        assert tasks >= int(run["waits"][pk] / timedelta(minutes=5))
    assert run["summary"]["max_tasks_one_reminder"] >= 14
    record("fixed lease (2 min)", run["summary"])


# --- concurrent sweeps -------------------------------------------------------------------------------------


def test_two_concurrent_sweeps_print_counts_that_add_up_to_the_rows_that_exist(broker):
    clinic = ClinicFactory(time_zone="UTC", digest_time=clock(0))
    for _ in range(110):
        FollowUpFactory(patient=PatientFactory(clinic=clinic, primary_nurse=nurse(clinic)))
    start = threading.Barrier(2)
    printed: list[str] = []

    def run_sweep() -> None:
        out = StringIO()
        try:
            start.wait(timeout=30)
            call_command("sweep", stdout=out)
        finally:
            connections.close_all()
        printed.append(out.getvalue())

    threads = [threading.Thread(target=run_sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    counts = [dict(word.split("=") for word in line.split()) for line in printed]
    assert len(counts) == 2, printed
    digests = Reminder.objects.filter(kind=ReminderKind.DIGEST).count()
    assert digests == 110
    assert sum(int(c["digests"]) for c in counts) == digests, printed
    assert sum(int(c["claimed"]) for c in counts) == Reminder.objects.count(), printed
    # and each row enqueued once, not twice
    assert queued_reminder_ids(broker, "celery") == sorted(Reminder.objects.values_list("pk", flat=True))


# --- batches per SMTP connection -----------------------------------------------------------------------------


def test_routine_reminders_go_in_batches_over_one_connection_and_a_refusal_costs_only_its_own(
    celery_worker, smtp_server, settings, broker
):
    settings.ANTICOAG_REMINDER_SEND_BATCH_SIZE = 20
    clinic = clinic_with_work(nurses=6)
    with time_machine.travel(START + timedelta(hours=2), tick=True):
        refused = nurse(clinic, email="moved.away@clinic.invalid")
        FollowUpFactory(patient=PatientFactory(clinic=clinic, primary_nurse=refused), due_on=START.date())
        smtp_server.handler.refuse = {refused.email}
        published: list[str] = []
        after_task_publish.connect(
            lambda sender=None, **kwargs: published.append(sender), weak=False, dispatch_uid="test-batch-tasks"
        )
        try:
            counts = outbox.sweep()
        finally:
            after_task_publish.disconnect(dispatch_uid="test-batch-tasks")
        assert (counts["digests"], counts["escalations"], counts["claimed"]) == (7, 2, 9)
        assert published == ["scheduling.send_reminders"]  # one task for the nine
        wait_for(settled, what="the batch to be sent")

    rows = {row.recipient: row for row in Reminder.objects.all()}
    assert rows[refused.email].status == ReminderStatus.FAILED  # a 550 for its recipient only
    assert "550" in rows[refused.email].last_error
    sent = [row for row in rows.values() if row.status == ReminderStatus.SENT]
    assert len(sent) == 8
    assert Counter(smtp_server.handler.message_ids()) == Counter(row.message_id for row in sent)
    assert all(row.attempts == 1 for row in rows.values())
    # The eight messages over at most two connections (a fresh one after the 550).
    connections_used = {received.peer for received in smtp_server.messages}
    assert 1 <= len(connections_used) <= 2


# --- urgent alerts have a worker of their own ---------------------------------------------------------------


def test_a_worker_of_the_urgent_queue_sends_urgent_alerts_while_routine_mail_waits(worker_process, smtp_server):
    clinic = clinic_with_work(nurses=5)
    with time_machine.travel(START + timedelta(hours=2)):
        assert outbox.sweep()["digests"] == 5  # enqueued on the default queue; nobody consumes it
    alert = urgent_alert(clinic, key="test:urgent:own-worker")
    worker_process.start(concurrency=1, queues="urgent")

    wait_for(lambda: Reminder.objects.get(pk=alert.pk).status == ReminderStatus.SENT, what="the urgent alert")
    assert [m.message_id for m in smtp_server.messages] == [Reminder.objects.get(pk=alert.pk).message_id]
    assert not Reminder.objects.filter(kind=ReminderKind.DIGEST).exclude(status=ReminderStatus.PENDING).exists()
