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
from tests.factories import ClinicFactory, PatientFactory, clinician, nurse

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
        return not Reminder.objects.filter(kind=ReminderKind.URGENT).exclude(status=ReminderStatus.SENT).exists()

    wait_for(alert_sent, what="the urgent INR alerts to be sent")
    [alert] = Reminder.objects.filter(kind=ReminderKind.URGENT, recipient_user__isnull=True)
    received = [m for m in smtp_server.messages if m.message_id == alert.message_id]
    assert len(received) == 1
    [mail] = received
    assert mail.rcpt_tos == ["urgent@clinic.invalid"]
    assert "INR-9" in mail.text
    assert "MRN INR-9: critical INR result." in mail.text
    # minimum necessary: no INR value anywhere, nothing identifying in the subject
    for secret in [value, "Quixotewright", patient.given_name, "INR-9"]:
        assert secret not in mail.subject
    for secret in [value, "Quixotewright", patient.given_name]:
        assert secret not in mail.text + mail.html


def test_a_critical_inr_also_alerts_the_primary_nurse_and_the_responsible_clinician(celery_worker, smtp_server):
    # given a patient with a primary nurse and a responsible clinician (and a colleague who is neither)
    clinic = ClinicFactory(alert_email="urgent@clinic.invalid")
    carer, doctor = nurse(clinic), clinician(clinic)
    nurse(clinic)
    patient = PatientFactory(clinic=clinic, mrn="INR-10", primary_nurse=carer, responsible_clinician=doctor)
    # when an INR of 5.6 (no bleeding: the 5.0-9.0 level) is recorded and two sweeps run
    inr_reading_record(
        patient=patient,
        drawn_at=timezone.now() - timedelta(hours=1),
        value=Decimal("5.6"),
        source=InrSource.POINT_OF_CARE,
    )
    outbox.sweep()
    outbox.sweep()

    def alerts_sent() -> bool:
        rows = Reminder.objects.filter(kind=ReminderKind.URGENT)
        return rows.count() == 3 and not rows.exclude(status=ReminderStatus.SENT).exists()

    wait_for(alerts_sent, what="three urgent INR alerts to be sent")
    # then each of the three addresses gets the alert once, naming the cause without the value
    # (the nurse may also get her daily digest, which lists the next day's INR test: not counted here)
    alert_ids = set(Reminder.objects.filter(kind=ReminderKind.URGENT).values_list("message_id", flat=True))
    urgent = [m for m in smtp_server.messages if m.message_id in alert_ids]
    received = sorted(((m.rcpt_tos[0], m) for m in urgent), key=lambda pair: pair[0])
    assert [to for to, _ in received] == sorted(["urgent@clinic.invalid", carer.email, doctor.email])
    for _, mail in received:
        assert "MRN INR-10: critical INR result." in mail.text
        assert "critical INR result" in mail.html
        assert "5.6" not in mail.text + mail.html + mail.subject
        assert "INR-10" not in mail.subject
    assert set(Reminder.objects.values_list("recipient_user", flat=True)) == {None, carer.pk, doctor.pk}
