"""Issue 19 without a worker: superseded digests, the growing enqueue lease, invalid addresses, the outbox's
figures on /healthz, /metrics, ``outbox_status`` and the administrators' banner, urgent alerts on their own
queue of the real Redis broker.

Sweeps and sends take an explicit ``now``; everything runs on the real PostgreSQL (and Redis, SMTP server
where named).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta

import pytest
from django.core.management import call_command

from scheduling import outbox
from scheduling.models import FollowUp, FollowUpStatus, OutboxCounter, Reminder, ReminderKind, ReminderStatus
from scheduling.outbox_status import outbox_figures
from tests.factories import ClinicFactory, PatientFactory, UserFactory, clinician, nurse

from .conftest import queued_reminder_ids
from .factories import FollowUpFactory, ReminderFactory

pytestmark = pytest.mark.services

NOW = datetime(2026, 6, 10, 8, 0, tzinfo=UTC)
TOKEN = "test-metrics-token-0123456789"


@pytest.fixture
def clinic():
    return ClinicFactory(time_zone="UTC", digest_time=time(7), alert_email="alerts@clinic.invalid")


def nurse_with_open_item(clinic, *, due_in_days: int = 1):
    anna = nurse(clinic)
    patient = PatientFactory(clinic=clinic, primary_nurse=anna)
    FollowUpFactory(patient=patient, due_on=NOW.date() + timedelta(days=due_in_days))
    return anna


# --- superseded digests --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_digest_that_a_newer_digest_covers_is_superseded_not_sent_late(clinic, smtp_server):
    anna = nurse_with_open_item(clinic, due_in_days=3)
    ben = nurse_with_open_item(clinic, due_in_days=3)
    smtp_server.handler.mode = "tempfail"
    assert outbox.sweep(now=NOW)["digests"] == 2
    yesterday = {d.recipient_user_id: d for d in Reminder.objects.filter(kind=ReminderKind.DIGEST)}
    for digest in yesterday.values():
        assert outbox.reminder_send(reminder_id=digest.pk, now=NOW) == "retry"
    # Ben's item is done before the next morning: he gets no new digest, so his old one still matters.
    assert FollowUp.objects.filter(patient__primary_nurse=ben).update(status=FollowUpStatus.DONE) == 1

    counts = outbox.sweep(now=NOW + timedelta(days=1))

    assert (counts["digests"], counts["superseded"]) == (1, 1)
    old = Reminder.objects.get(pk=yesterday[anna.pk].pk)
    new = Reminder.objects.get(kind=ReminderKind.DIGEST, recipient_user=anna, status=ReminderStatus.PENDING)
    assert (old.status, old.superseded_by_id) == (ReminderStatus.SUPERSEDED, new.pk)
    assert Reminder.objects.get(pk=yesterday[ben.pk].pk).status == ReminderStatus.PENDING
    assert OutboxCounter.objects.get(kind=ReminderKind.DIGEST, event="superseded").total == 1
    smtp_server.handler.mode = "accept"
    assert outbox.reminder_send(reminder_id=old.pk, now=NOW + timedelta(days=1)) == "skipped"
    assert outbox.reminder_send(reminder_id=new.pk, now=NOW + timedelta(days=1)) == "sent"
    assert [m.rcpt_tos for m in smtp_server.messages] == [[anna.email]]


@pytest.mark.django_db
def test_the_send_task_supersedes_a_digest_the_sweep_has_not_seen_yet(clinic):
    anna = nurse_with_open_item(clinic)
    old = ReminderFactory(
        clinic=clinic, kind=ReminderKind.DIGEST, recipient_user=anna, idempotency_key="digest:x:1:2026-06-09"
    )
    newer = ReminderFactory(
        clinic=clinic, kind=ReminderKind.DIGEST, recipient_user=anna, idempotency_key="digest:x:1:2026-06-10"
    )
    assert outbox.reminder_send(reminder_id=old.pk) == "superseded"
    old.refresh_from_db()
    assert (old.status, old.superseded_by_id, old.attempts) == (ReminderStatus.SUPERSEDED, newer.pk, 0)


@pytest.mark.django_db
def test_urgent_alerts_and_escalations_are_never_superseded(clinic):
    doctor = clinician(clinic)
    for kind in (ReminderKind.URGENT, ReminderKind.ESCALATION):
        ReminderFactory(clinic=clinic, kind=kind, recipient_user=doctor, next_attempt_at=NOW - timedelta(days=1))
        ReminderFactory(clinic=clinic, kind=kind, recipient_user=doctor, next_attempt_at=NOW)
    assert outbox.reminders_supersede(now=NOW) == 0
    assert not Reminder.objects.filter(status=ReminderStatus.SUPERSEDED).exists()


@pytest.mark.django_db
def test_an_invalid_address_fails_at_once_without_calling_the_smtp_server(clinic, smtp_server):
    broken = ReminderFactory(clinic=clinic, recipient="not-an-address", next_attempt_at=NOW)
    assert outbox.reminder_send(reminder_id=broken.pk, now=NOW) == "failed"
    broken.refresh_from_db()
    assert broken.status == ReminderStatus.FAILED
    assert broken.last_error.startswith("InvalidRecipient")
    assert smtp_server.messages == []


# --- bounded re-enqueueing ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_enqueue_lease_doubles_with_each_re_enqueue_up_to_its_cap_and_restarts_at_a_send(clinic, smtp_server):
    row = ReminderFactory(clinic=clinic, next_attempt_at=NOW)
    now, leases = NOW, []
    for _ in range(7):  # nobody runs the tasks: each lease runs out and the row is enqueued again
        assert outbox.reminders_claim(now=now) == [row.pk]
        row.refresh_from_db()
        leases.append(row.lease_until - now)
        assert outbox.reminders_claim(now=row.lease_until) == []  # never before the lease has run out
        now = row.lease_until + timedelta(seconds=1)
    assert [lease.total_seconds() / 60 for lease in leases] == [2, 4, 8, 16, 30, 30, 30]
    assert row.enqueues == 7

    smtp_server.handler.mode = "tempfail"
    assert outbox.reminder_send(reminder_id=row.pk, now=now) == "retry"
    row.refresh_from_db()
    assert row.enqueues == 0  # its task ran: the next enqueue gets the base lease again
    assert outbox.reminders_claim(now=row.next_attempt_at) == [row.pk]
    row.refresh_from_db()
    assert row.lease_until - row.next_attempt_at == outbox.enqueue_lease()


# --- urgent alerts on their own queue ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_urgent_alerts_go_to_their_own_queue_and_everything_else_to_the_default_one(clinic, broker):
    for _ in range(3):
        nurse_with_open_item(clinic)
    urgent = outbox.reminder_materialise(
        clinic=clinic, kind=ReminderKind.URGENT, recipient=clinic.alert_email, key="t:urgent:1", reason="x"
    )
    escalation = ReminderFactory(clinic=clinic, kind=ReminderKind.ESCALATION, next_attempt_at=NOW)
    outbox.sweep(now=NOW)

    digests = Reminder.objects.filter(kind=ReminderKind.DIGEST).values_list("pk", flat=True)
    assert queued_reminder_ids(broker, "urgent") == [urgent.pk]
    assert len(digests) == 3
    assert queued_reminder_ids(broker, "celery") == sorted([*digests, escalation.pk])


# --- the outbox's figures ---------------------------------------------------------------------------------


@pytest.fixture
def troubled_outbox(clinic):
    """Two digests waiting (one for 2 hours), an urgent alert retrying, one failure yesterday, one 10 days ago."""
    ReminderFactory(clinic=clinic, kind=ReminderKind.DIGEST, status=ReminderStatus.PENDING)
    old = ReminderFactory(clinic=clinic, kind=ReminderKind.DIGEST, status=ReminderStatus.PENDING)
    urgent = ReminderFactory(clinic=clinic, kind=ReminderKind.URGENT, status=ReminderStatus.PENDING, attempts=2)
    recent = ReminderFactory(clinic=clinic, status=ReminderStatus.FAILED)
    ancient = ReminderFactory(clinic=clinic, status=ReminderStatus.FAILED)
    ReminderFactory(clinic=clinic, status=ReminderStatus.SENT)
    now = datetime.now(tz=UTC)
    Reminder.objects.filter(pk=old.pk).update(created_at=now - timedelta(hours=2))
    Reminder.objects.filter(pk=urgent.pk).update(created_at=now - timedelta(minutes=3))
    Reminder.objects.filter(pk=recent.pk).update(updated_at=now - timedelta(days=1))
    Reminder.objects.filter(pk=ancient.pk).update(updated_at=now - timedelta(days=10))
    OutboxCounter.objects.create(kind=ReminderKind.URGENT, event="retried", total=2)
    OutboxCounter.objects.create(kind=ReminderKind.DIGEST, event="sent", total=41)


@pytest.mark.django_db
def test_the_figures_count_what_waits_and_what_failed_and_say_why_they_are_degraded(troubled_outbox):
    figures = outbox_figures()
    assert (figures.pending, figures.urgent_pending, figures.urgent_undelivered) == (3, 1, 1)
    assert (figures.failed, figures.failed_total) == (1, 2)
    assert 2 * 3600 - 5 <= figures.oldest_pending_age_seconds <= 2 * 3600 + 60
    assert 3 * 60 - 5 <= figures.urgent_oldest_pending_age_seconds <= 3 * 60 + 60
    assert figures.degraded
    assert figures.problems == [
        "1 urgent alert(s) not delivered",
        "1 reminder(s) failed in the last 168 h",
        f"the oldest unsent reminder has waited {figures.oldest_pending_age_seconds} s",
    ]


@pytest.mark.django_db
def test_each_threshold_is_a_setting(troubled_outbox, settings):
    settings.ANTICOAG_OUTBOX_DEGRADED_FAILED = 1
    settings.ANTICOAG_OUTBOX_DEGRADED_PENDING_AGE_SECONDS = 3 * 3600
    settings.ANTICOAG_OUTBOX_DEGRADED_PENDING = 2
    Reminder.objects.filter(kind=ReminderKind.URGENT).update(attempts=0)  # not tried yet, 3 minutes old
    assert outbox_figures().problems == ["3 reminders waiting"]
    settings.ANTICOAG_OUTBOX_DEGRADED_URGENT_AGE_SECONDS = 60
    assert outbox_figures().problems == ["1 urgent alert(s) not delivered", "3 reminders waiting"]
    settings.ANTICOAG_OUTBOX_DEGRADED_URGENT_AGE_SECONDS = 600
    settings.ANTICOAG_OUTBOX_DEGRADED_PENDING = 3
    assert not outbox_figures().degraded


@pytest.mark.django_db
def test_an_empty_outbox_is_ok():
    figures = outbox_figures()
    assert (figures.pending, figures.oldest_pending_age_seconds, figures.failed, figures.status) == (0, 0, 0, "ok")


@pytest.mark.django_db
def test_healthz_shows_the_outbox_to_staff_only_and_turns_degraded(troubled_outbox, client, settings):
    settings.ANTICOAG_METRICS_TOKEN = TOKEN
    anonymous = client.get("/healthz")
    assert anonymous.status_code == 200  # the web service is up: a slow relay must not take it out of rotation
    assert "outbox" not in anonymous.json()

    client.force_login(UserFactory())
    detail = client.get("/healthz")
    assert detail.status_code == 503
    body = detail.json()
    assert body["status"] == "degraded"
    outbox_part = body["outbox"]
    assert outbox_part["status"] == "degraded"
    assert (outbox_part["pending"], outbox_part["failed"], outbox_part["urgent_pending"]) == (3, 1, 1)
    assert outbox_part["oldest_pending_age_seconds"] >= 7195
    assert outbox_part["thresholds"]["pending_age_seconds"] == 3600

    client.logout()
    with_token = client.get("/healthz", headers={"Authorization": f"Bearer {TOKEN}"})
    assert with_token.json()["outbox"]["failed"] == 1
    assert "outbox" not in client.get("/healthz", headers={"Authorization": "Bearer wrong"}).json()


@pytest.mark.django_db
def test_healthz_is_ok_for_staff_when_the_outbox_is_healthy(client):
    client.force_login(UserFactory())
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["outbox"]["status"] == "ok"


@pytest.mark.django_db
def test_metrics_need_staff_or_the_token_and_export_gauges_and_counters(troubled_outbox, client, settings):
    settings.ANTICOAG_METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 403
    non_staff = UserFactory(is_staff=False)
    client.force_login(non_staff)
    assert client.get("/metrics").status_code == 403
    client.logout()

    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    lines = set(response.content.decode().splitlines())
    for expected in [
        "anticoag_outbox_pending 3.0",
        "anticoag_outbox_urgent_pending 1.0",
        "anticoag_outbox_urgent_undelivered 1.0",
        "anticoag_outbox_failed 1.0",
        "anticoag_outbox_failed_total 2.0",
        "anticoag_outbox_degraded 1.0",
        'anticoag_reminders_sent_total{kind="digest"} 41.0',
        'anticoag_reminders_sent_total{kind="urgent"} 0.0',
        'anticoag_reminders_retried_total{kind="urgent"} 2.0',
        'anticoag_reminders_failed_total{kind="escalation"} 0.0',
        'anticoag_reminders_superseded_total{kind="digest"} 0.0',
        "# TYPE anticoag_reminders_sent_total counter",
        "# TYPE anticoag_outbox_oldest_pending_age_seconds gauge",
    ]:
        assert expected in lines, expected

    client.force_login(UserFactory())  # a staff login works as well
    assert client.get("/metrics").status_code == 200


@pytest.mark.django_db
def test_metrics_without_a_configured_token_accept_no_token(client, settings):
    settings.ANTICOAG_METRICS_TOKEN = ""
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401


@pytest.mark.django_db
def test_outbox_status_prints_the_figures_and_exits_non_zero_when_degraded(troubled_outbox, capsys):
    with pytest.raises(SystemExit) as exit_:
        call_command("outbox_status")
    assert exit_.value.code == 1
    out, err = capsys.readouterr()
    assert "status: degraded" in out
    assert "pending: 3" in out and "failed: 1" in out and "urgent_pending: 1" in out
    assert "total digest sent: 41" in out
    assert "degraded: 1 urgent alert(s) not delivered" in err


@pytest.mark.django_db
def test_outbox_status_exits_zero_when_healthy_and_speaks_json(capsys):
    call_command("outbox_status", "--json")
    body = json.loads(capsys.readouterr().out)
    assert (body["status"], body["pending"], body["totals"]["urgent.sent"]) == ("ok", 0, 0)


# --- the administrators' banner -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_dashboard_banner_shows_administrators_undelivered_urgent_alerts_and_failures(
    troubled_outbox, client, admin_user, clinic
):
    client.force_login(admin_user)
    page = client.get("/admin/").content.decode()
    assert 'id="outbox-alarm"' in page
    assert "1 urgent alert not delivered" in page
    assert "1 reminder refused for good" in page
    assert "/admin/scheduling/reminder/?status__exact=failed" in page

    client.force_login(nurse(clinic))  # staff who are not administrators do not get it
    assert 'id="outbox-alarm"' not in client.get("/admin/").content.decode()


@pytest.mark.django_db
def test_no_banner_when_delivery_is_fine(client, admin_user, clinic):
    ReminderFactory(clinic=clinic, status=ReminderStatus.SENT)
    ReminderFactory(clinic=clinic, kind=ReminderKind.URGENT)  # just made: it goes out in a moment
    client.force_login(admin_user)
    assert 'id="outbox-alarm"' not in client.get("/admin/").content.decode()
