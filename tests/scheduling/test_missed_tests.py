"""Acceptance (issue 14): a missed INR test becomes "did not attend" after the clinic's days, appears on Today
as a recall, and escalates to the clinician on the second miss in a row — through a real Celery worker and
a real SMTP server, with the time controlled by the services' ``now``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from datetime import time as clock

import pytest
from django.test import Client

from scheduling import outbox
from scheduling.missed_tests import DNA_ESCALATED_RULE, DNA_RECALL_RULE, missed_inr_tests_mark
from scheduling.models import FollowUp, FollowUpKind, FollowUpStatus, Reminder, ReminderKind, ReminderStatus
from scheduling.tasks import missed_inr_tests_task
from tests.factories import ClinicFactory, PatientFactory, clinician, nurse

from .conftest import wait_for
from .factories import FollowUpFactory

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def test_a_missed_inr_test_is_recalled_then_escalated_on_the_second_miss(celery_worker, smtp_server):
    clinic = ClinicFactory(time_zone="UTC", digest_time=clock(0), alert_email="alerts@clinic.invalid", dna_after_days=5)
    anna, doctor = nurse(clinic), clinician(clinic)
    patient = PatientFactory(
        clinic=clinic,
        mrn="DNA-1",
        family_name="Quillfeather",
        phone="07700 900123",
        primary_nurse=anna,
        responsible_clinician=doctor,
    )
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    test = FollowUpFactory(patient=patient, kind=FollowUpKind.INR_TEST, due_on=start.date())

    # Five days after the due date it is still only overdue; the sixth day it is "did not attend".
    assert missed_inr_tests_mark(now=start + timedelta(days=5)) == {"missed": 0, "escalated": 0}
    assert missed_inr_tests_mark(now=start + timedelta(days=6)) == {"missed": 1, "escalated": 0}
    test.refresh_from_db()
    assert test.status == FollowUpStatus.MISSED and "Did not attend" in test.result_note
    recall = FollowUp.objects.get(patient=patient, status=FollowUpStatus.SCHEDULED)
    assert (recall.kind, recall.rule, recall.due_on) == (
        FollowUpKind.INR_TEST,
        DNA_RECALL_RULE,
        (start + timedelta(days=6)).date(),
    )
    assert missed_inr_tests_mark(now=start + timedelta(days=6)) == {"missed": 0, "escalated": 0}  # idempotent

    # A first miss does not escalate.
    outbox.sweep(now=start + timedelta(days=6))
    assert not Reminder.objects.filter(kind=ReminderKind.ESCALATION).exists()

    # The recall appears on Today (the nurse's whole clinic), marked as a recall. (Today reads the real
    # clock: the recall, due in the past, is listed as overdue.)
    browser = Client()
    browser.force_login(anna)
    html = browser.get("/clinic/today/?scope=clinic").content.decode()
    assert f'id="test-{recall.pk}"' in html and "Recall: did not attend" in html

    # The recall is missed too: a second miss in a row escalates to the clinician and the alert address.
    assert missed_inr_tests_mark(now=start + timedelta(days=12)) == {"missed": 1, "escalated": 1}
    second = FollowUp.objects.get(patient=patient, status=FollowUpStatus.SCHEDULED)
    assert second.rule == DNA_ESCALATED_RULE
    outbox.sweep(now=start + timedelta(days=12))

    def escalations_sent() -> bool:
        rows = Reminder.objects.filter(kind=ReminderKind.ESCALATION)
        return rows.count() == 2 and not rows.exclude(status=ReminderStatus.SENT).exists()

    wait_for(escalations_sent, what="the two DNA escalations to be sent")
    mails = [m for m in smtp_server.messages if m.subject == "Escalation: missed INR tests"]
    assert sorted(r for m in mails for r in m.rcpt_tos) == sorted([doctor.email, "alerts@clinic.invalid"])
    for mail in mails:
        assert "A second INR test in a row was not done" in mail.text
        assert "MRN DNA-1" in mail.text and f"/admin/scheduling/followup/{second.pk}/change/" in mail.text
        for secret in ["Quillfeather", patient.given_name, "07700", "DNA-1"]:
            assert secret not in mail.subject
        for secret in ["Quillfeather", patient.given_name, "07700 900123"]:
            assert secret not in mail.text + mail.html

    # Once only: later sweeps send nothing more for it.
    outbox.sweep(now=start + timedelta(days=12, hours=1))
    assert Reminder.objects.filter(kind=ReminderKind.ESCALATION).count() == 2


def test_a_reading_in_time_keeps_the_test_out_of_dna(celery_worker, smtp_server):
    clinic = ClinicFactory(time_zone="UTC", dna_after_days=5)
    patient = PatientFactory(clinic=clinic)
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    done = FollowUpFactory(patient=patient, due_on=start.date(), status=FollowUpStatus.DONE)
    assert missed_inr_tests_mark(now=start + timedelta(days=30)) == {"missed": 0, "escalated": 0}
    done.refresh_from_db()
    assert done.status == FollowUpStatus.DONE


def test_the_beat_task_marks_missed_tests_through_the_worker(celery_worker):
    clinic = ClinicFactory(time_zone="UTC", dna_after_days=3)
    item = FollowUpFactory(
        patient=PatientFactory(clinic=clinic), due_on=datetime.now(tz=UTC).date() - timedelta(days=10)
    )

    missed_inr_tests_task.delay()

    wait_for(
        lambda: FollowUp.objects.filter(pk=item.pk, status=FollowUpStatus.MISSED).exists(),
        what="the worker to mark the test missed",
    )
    assert FollowUp.objects.filter(key=f"dna-recall:{item.pk}", rule=DNA_RECALL_RULE).exists()
