"""Acceptance (issue 4): a critical INR reaches the clinic's alert address through a real SMTP server
within one sweep, with no INR value and nothing identifying in the e-mail beyond the MRN."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from anticoag.inr import inr_reading_record
from anticoag.models import InrSource
from scheduling import outbox
from scheduling.models import Reminder, ReminderKind, ReminderStatus
from tests.factories import ClinicFactory, PatientFactory, nurse

from .conftest import wait_for

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(("value", "bleeding"), [("9.5", False), ("5.0", False), ("2.4", True)])
def test_a_critical_inr_alerts_the_clinic_within_one_sweep(celery_worker, smtp_server, value, bleeding):
    # given a warfarin patient of a clinic
    clinic = ClinicFactory(alert_email="urgent@clinic.invalid")
    patient = PatientFactory(clinic=clinic, mrn="INR-9", family_name="Quixotewright", primary_nurse=nurse(clinic))
    # when a critical reading is recorded and one sweep runs
    inr_reading_record(
        patient=patient,
        drawn_at=timezone.now() - timedelta(hours=1),
        value=Decimal(value),
        source=InrSource.POINT_OF_CARE,
        bleeding=bleeding,
    )
    outbox.sweep()

    # then exactly one urgent alert reaches the SMTP server, for the clinic's alert address
    def alert_sent() -> bool:
        return Reminder.objects.filter(kind=ReminderKind.URGENT, status=ReminderStatus.SENT).exists()

    wait_for(alert_sent, what="the urgent INR alert to be sent")
    [alert] = Reminder.objects.filter(kind=ReminderKind.URGENT)
    received = [m for m in smtp_server.messages if m.message_id == alert.message_id]
    assert len(received) == 1
    [mail] = received
    assert mail.rcpt_tos == ["urgent@clinic.invalid"]
    assert "INR-9" in mail.text
    # minimum necessary: no INR value anywhere, nothing identifying in the subject
    for secret in [value, "Quixotewright", patient.given_name, "INR-9"]:
        assert secret not in mail.subject
    for secret in [value, "Quixotewright", patient.given_name]:
        assert secret not in mail.text + mail.html
