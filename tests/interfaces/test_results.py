"""What a stored message does: the same path as a typed result (advice, follow-ups, alerts, renal schedule),
corrections that replace, preliminaries that wait, and a critical INR that reaches the alert address by e-mail."""

from __future__ import annotations

import zoneinfo
from datetime import timedelta
from decimal import Decimal

import pytest
from auditlog.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from anticoag.models import Agent, InrReading, InrSource, Plan, PlanDecision
from interfaces.models import InboundMessage, LabObservation
from patients.models import LabResult
from scheduling.models import FollowUp, FollowUpKind, Reminder, ReminderKind, ReminderStatus
from tests.factories import EpisodeFactory, UserFactory

from .conftest import MllpClient, ack_code, ack_err, hl7_time, hours_ago, inr_message, obx, oru, wait_for

PARIS = zoneinfo.ZoneInfo("Europe/Paris")

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def test_an_inr_gets_the_same_advice_and_next_test_as_a_typed_one(listener, lab_patient):
    with MllpClient(listener.port) as client:
        ack = client.send(inr_message("ADV1", lab_patient.mrn, "2.5", hours_ago(2)))

    assert ack_code(ack) == "AA"
    [reading] = InrReading.objects.filter(patient=lab_patient)
    assert reading.value == Decimal("2.5") and reading.source == InrSource.LAB
    assert "CITYLAB" in reading.note and "ADV1" in reading.note
    # the next INR test is scheduled from the advice, exactly as for a reading typed in the admin
    test = FollowUp.objects.get(patient=lab_patient, kind=FollowUpKind.INR_TEST)
    assert test.key == f"inr:{lab_patient.pk}:{reading.pk}"
    [observation] = LabObservation.objects.all()
    assert observation.inr_reading == reading and observation.result_status == "F"


def test_the_point_of_care_code_is_recorded_as_point_of_care(listener, lab_patient):
    message = oru(control_id="POC1", mrn=lab_patient.mrn, results=[obx(1, "46418-0", "2.2", at=hl7_time(hours_ago(1)))])
    with MllpClient(listener.port) as client:
        assert ack_code(client.send(message)) == "AA"
    assert InrReading.objects.get(patient=lab_patient).source == InrSource.POINT_OF_CARE


def test_a_correction_replaces_the_reading_it_corrects_and_is_audited(listener, lab_patient):
    at = hl7_time(hours_ago(30))
    final = oru(control_id="C1", mrn=lab_patient.mrn, results=[obx(1, "6301-6", "2.5", at=at, status="F")])
    corrected = oru(control_id="C2", mrn=lab_patient.mrn, results=[obx(1, "6301-6", "3.4", at=at, status="C")])
    with MllpClient(listener.port) as client:
        assert ack_code(client.send(final)) == "AA"
        assert ack_code(client.send(corrected)) == "AA"
        assert ack_code(client.send(corrected)) == "AA"  # resent: nothing more

    [reading] = InrReading.objects.filter(patient=lab_patient)
    assert reading.value == Decimal("3.4")
    old, new = LabObservation.objects.order_by("pk")
    assert (old.current, new.current, new.replaces_id) == (False, True, old.pk)
    entries = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(InrReading), object_id=reading.pk
    ).order_by("pk")
    assert [entry.action for entry in entries] == [LogEntry.Action.CREATE, LogEntry.Action.UPDATE]
    assert [Decimal(v) for v in entries[1].changes_dict["value"]] == [Decimal("2.5"), Decimal("3.4")]


def test_a_second_final_with_another_value_is_refused_a_repeat_is_not(listener, lab_patient):
    at = hl7_time(hours_ago(30))
    with MllpClient(listener.port) as client:
        assert (
            ack_code(client.send(oru(control_id="D1", mrn=lab_patient.mrn, results=[obx(1, "6301-6", "2.5", at=at)])))
            == "AA"
        )
        same = client.send(oru(control_id="D2", mrn=lab_patient.mrn, results=[obx(1, "6301-6", "2.5", at=at)]))
        other = client.send(oru(control_id="D3", mrn=lab_patient.mrn, results=[obx(1, "6301-6", "2.9", at=at)]))

    assert ack_code(same) == "AA"
    assert ack_code(other) == "AE" and "OBX^1^5|205" in ack_err(other) and "correction" in other
    assert InrReading.objects.filter(patient=lab_patient).count() == 1


def test_a_preliminary_result_is_kept_not_stored_until_the_final(listener, lab_patient):
    at = hl7_time(hours_ago(5))
    with MllpClient(listener.port) as client:
        assert (
            ack_code(
                client.send(
                    oru(control_id="P1", mrn=lab_patient.mrn, results=[obx(1, "6301-6", "2.1", at=at, status="P")])
                )
            )
            == "AA"
        )
        assert not InrReading.objects.filter(patient=lab_patient).exists()
        assert (
            ack_code(
                client.send(
                    oru(control_id="P2", mrn=lab_patient.mrn, results=[obx(1, "6301-6", "2.2", at=at, status="F")])
                )
            )
            == "AA"
        )

    assert list(InrReading.objects.filter(patient=lab_patient).values_list("value", flat=True)) == [Decimal("2.2")]
    assert list(LabObservation.objects.order_by("pk").values_list("stored", flat=True)) == [False, True]


def test_a_message_is_stored_whole_or_not_at_all(listener, lab_patient):
    # a good INR and an implausible hemoglobin in one message: nothing of it is stored
    at = hl7_time(hours_ago(4))
    message = oru(
        control_id="W1",
        mrn=lab_patient.mrn,
        results=[obx(1, "6301-6", "2.5", at=at), obx(2, "718-7", "95", units="g/dL", at=at)],
    )
    with MllpClient(listener.port) as client:
        ack = client.send(message)

    assert ack_code(ack) == "AE" and "OBX^2^5" in ack_err(ack)
    assert not InrReading.objects.exists() and not LabResult.objects.exists() and not InboundMessage.objects.exists()


def test_creatinine_hemoglobin_and_platelets_with_their_units(listener, lab_patient):
    at = hl7_time(hours_ago(4))
    message = oru(
        control_id="LAB1",
        mrn=lab_patient.mrn,
        results=[
            obx(1, "14682-9", "88", units="umol/L", at=at, flags="N"),
            obx(2, "718-7", "131", units="g/L", at=at, flags="L"),
            obx(3, "777-3", "250", units="10*9/L", at=at),
            obx(4, "5902-2", "12.5", units="s", at=at),  # prothrombin time: not a result this clinic tracks
        ],
    )
    with MllpClient(listener.port) as client:
        assert ack_code(client.send(message)) == "AA"

    creatinine, hemoglobin = LabResult.objects.filter(patient=lab_patient).order_by("pk")
    assert (creatinine.serum_creatinine, creatinine.creatinine_unit) == (Decimal("88.00"), "umol_l")
    assert hemoglobin.hemoglobin_g_dl == Decimal("13.1")
    assert creatinine.drawn_on == hemoglobin.drawn_on == timezone.localdate(hours_ago(4), timezone=PARIS)
    platelets = LabObservation.objects.get(kind="platelets")
    assert platelets.value == Decimal("250") and platelets.lab_result is None
    assert list(LabObservation.objects.values_list("abnormal_flags", flat=True).order_by("position")) == ["N", "L", ""]


def test_a_creatinine_of_a_dabigatran_patient_starts_the_renal_schedule(listener, lab_patient):
    # given a patient whose confirmed plan names dabigatran
    episode = EpisodeFactory(patient=lab_patient)
    plan = Plan.objects.get(episode=episode)
    PlanDecision.objects.create(
        plan=plan,
        proposal=plan.proposal,
        rules_version=plan.rules_version,
        agent=Agent.DABIGATRAN,
        decided_by=UserFactory(),
        decided_at=timezone.now() - timedelta(days=1),
    )
    # when the lab sends a creatinine
    message = oru(
        control_id="REN1",
        mrn=lab_patient.mrn,
        results=[obx(1, "2160-0", "1.0", units="mg/dL", at=hl7_time(hours_ago(3)))],
    )
    with MllpClient(listener.port) as client:
        assert ack_code(client.send(message)) == "AA"

    # then the renal follow-up is scheduled from it, as for a typed lab result
    lab = LabResult.objects.get(patient=lab_patient)
    assert FollowUp.objects.filter(
        patient=lab_patient, kind=FollowUpKind.RENAL_FUNCTION, key=f"renal:{lab_patient.pk}:{lab.pk}"
    ).exists()


def test_a_critical_inr_over_hl7_reaches_the_alert_address_by_email(listener, lab_patient, celery_worker, smtp_server):
    # when the lab sends an INR of 9.5 drawn an hour ago
    with MllpClient(listener.port) as client:
        ack = client.send(inr_message("CRIT1", lab_patient.mrn, "9.5", hours_ago(1)))
    assert ack_code(ack) == "AA"

    # then the urgent alert is e-mailed to the clinic's alert address by the worker, through SMTP
    def sent() -> bool:
        return Reminder.objects.filter(kind=ReminderKind.URGENT, status=ReminderStatus.SENT).exists()

    wait_for(sent, what="the urgent alert, enqueued when the message committed (no sweep needed)")
    [alert] = Reminder.objects.filter(kind=ReminderKind.URGENT)
    [mail] = [m for m in smtp_server.messages if m.message_id == alert.message_id]
    assert mail.rcpt_tos == ["alerts@clinic.invalid"]
    assert lab_patient.mrn in mail.text
    assert "9.5" not in mail.text + mail.html + mail.subject
    assert lab_patient.mrn not in mail.subject
