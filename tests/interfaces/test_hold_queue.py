"""The hold queue: a message whose patient matches nobody (or whose date of birth disagrees) is kept whole,
ACKed AA, shown to its clinic's staff in the admin, and matched to a patient (its results stored then) or
rejected with a reason. Another clinic never sees it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from anticoag.models import InrReading
from interfaces.models import AssigningAuthority, HoldReason, InboundMessage, MessageStatus
from patients.choices import Role
from scheduling.models import FollowUp, FollowUpKind
from tests.factories import ClinicFactory, UserFactory

from .conftest import AUTHORITY, MllpClient, ack_code, hl7_time, hours_ago, inr_message, obx, oru

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _send(port: int, message: str) -> str:
    with MllpClient(port) as client:
        return client.send(message)


@pytest.fixture
def staff(lab_clinic):
    other = ClinicFactory(name="Other clinic")
    return {
        "nurse": UserFactory(username="hold_nurse", role=Role.NURSE, clinics=[lab_clinic]),
        "reporter": UserFactory(username="hold_reporter", role=Role.REPORTING, clinics=[lab_clinic]),
        "outsider": UserFactory(username="hold_outsider", role=Role.NURSE, clinics=[other]),
        "other_clinic": other,
    }


def test_unknown_patients_and_wrong_birth_dates_are_held_whole_and_acked_aa(listener, lab_patient):
    # when results arrive for an unknown MRN, a wrong date of birth, no date of birth, and an unknown authority
    acks = [
        _send(listener.port, inr_message("H1", "NOBODY", "2.5", hours_ago(2))),
        _send(listener.port, inr_message("H2", lab_patient.mrn, "2.5", hours_ago(3), dob="19800518")),
        _send(listener.port, inr_message("H3", lab_patient.mrn, "2.5", hours_ago(4), dob="")),
        _send(listener.port, inr_message("H4", lab_patient.mrn, "2.5", hours_ago(5), authority="ELSEWHERE")),
    ]

    # then each is ours (AA), kept whole in the hold queue, and no result is stored
    assert [ack_code(ack) for ack in acks] == ["AA"] * 4
    held = {m.control_id: m for m in InboundMessage.objects.filter(status=MessageStatus.HELD)}
    assert {key: m.hold_reason for key, m in held.items()} == {
        "H1": HoldReason.UNKNOWN_PATIENT,
        "H2": HoldReason.DOB_MISMATCH,
        "H3": HoldReason.DOB_MISSING,
        "H4": HoldReason.UNKNOWN_AUTHORITY,
    }
    assert held["H1"].clinic == lab_patient.clinic and held["H4"].clinic is None
    assert "OBX|1|NM|6301-6" in held["H2"].raw
    assert not InrReading.objects.exists()


def test_a_held_message_is_still_refused_when_its_values_are_implausible(listener, lab_patient):
    ack = _send(listener.port, inr_message("H45", "NOBODY", "45", hours_ago(2)))
    assert ack_code(ack) == "AE"
    assert not InboundMessage.objects.exists()


def test_the_hold_queue_is_scoped_to_the_users_clinics(listener, lab_patient, staff):
    _send(listener.port, inr_message("SCOPE1", "NOBODY", "2.5", hours_ago(2)))
    message = InboundMessage.objects.get(control_id="SCOPE1")
    queue = reverse("admin:interfaces_inboundmessage_changelist")

    nurse = _client(staff["nurse"])
    opened = nurse.get(queue)
    assert "SCOPE1" in opened.content.decode() and "Hold queue" in opened.content.decode()
    _send(listener.port, inr_message("STORED1", lab_patient.mrn, "2.5", hours_ago(3)))
    assert "STORED1" not in nurse.get(queue).content.decode()  # the queue holds held messages only
    assert "STORED1" in nurse.get(queue + "?queue=all").content.decode()
    page = nurse.get(reverse("admin:interfaces_inboundmessage_change", args=[message.pk]))
    assert page.status_code == 200 and "NOBODY" in page.content.decode()
    assert "no-store" in page["Cache-Control"]
    assert "(Europe/Paris)" in page.content.decode()  # the result's time as the clinic reads it

    outsider = _client(staff["outsider"])
    assert "SCOPE1" not in outsider.get(queue).content.decode()
    assert outsider.get(reverse("admin:interfaces_inboundmessage_change", args=[message.pk])).status_code in (302, 404)
    assert outsider.get(reverse("admin:interfaces_inboundmessage_match", args=[message.pk])).status_code == 404
    assert (
        outsider.post(reverse("admin:interfaces_inboundmessage_reject", args=[message.pk]), {"reason": "x"}).status_code
        == 404
    )

    # the reporting role reads the queue but cannot decide
    reporter = _client(staff["reporter"])
    assert reporter.get(queue).status_code == 200
    assert reporter.get(reverse("admin:interfaces_inboundmessage_match", args=[message.pk])).status_code == 403
    assert InboundMessage.objects.get(pk=message.pk).status == MessageStatus.HELD


def test_matching_stores_the_results_then_with_the_identity_checked(listener, lab_patient, staff):
    # given a message held because its date of birth differs from the patient's
    sent = inr_message("MATCH1", lab_patient.mrn, "2.7", hours_ago(2), dob="19800518")
    _send(listener.port, sent)
    message = InboundMessage.objects.get(control_id="MATCH1")
    url = reverse("admin:interfaces_inboundmessage_match", args=[message.pk])
    nurse = _client(staff["nurse"])

    # when the nurse matches it without confirming the identity, it is refused, naming the birth dates
    response = nurse.post(url, {"mrn": lab_patient.mrn})
    assert response.status_code == 200
    assert "1980-05-18" in response.content.decode() and "confirm" in response.content.decode()
    assert not InrReading.objects.exists()
    # an MRN of nobody is refused too
    assert "No patient with MRN" in nurse.post(url, {"mrn": "NOPE", "identity_confirmed": "on"}).content.decode()

    # when she confirms it
    response = nurse.post(url, {"mrn": lab_patient.mrn.lower(), "identity_confirmed": "on"})

    # then the results are stored as on arrival (next INR test too), and the message is matched by her
    assert response.status_code == 302
    [reading] = InrReading.objects.filter(patient=lab_patient)
    assert reading.value == Decimal("2.7")
    assert FollowUp.objects.filter(patient=lab_patient, kind=FollowUpKind.INR_TEST).exists()
    message.refresh_from_db()
    assert (message.status, message.patient, message.resolved_by) == (
        MessageStatus.MATCHED,
        lab_patient,
        staff["nurse"],
    )
    # and a second match changes nothing
    assert "no longer held" in nurse.post(url, {"mrn": lab_patient.mrn, "identity_confirmed": "on"}).content.decode()
    assert InrReading.objects.count() == 1
    # a resend of the message gets the ACK it got (AA), and stores nothing again
    assert ack_code(_send(listener.port, sent)) == "AA"
    assert InrReading.objects.count() == 1


def test_an_unknown_mrn_is_matched_to_the_patient_a_person_chooses(listener, lab_patient, staff):
    _send(listener.port, inr_message("NEWMRN", "OLD-NUMBER-7", "2.4", hours_ago(2)))
    message = InboundMessage.objects.get(control_id="NEWMRN")
    response = _client(staff["nurse"]).post(
        reverse("admin:interfaces_inboundmessage_match", args=[message.pk]), {"mrn": lab_patient.mrn}
    )
    assert response.status_code == 302  # same date of birth: no identity confirmation needed
    assert InrReading.objects.get(patient=lab_patient).value == Decimal("2.4")


def test_rejecting_needs_a_reason_and_stores_nothing(listener, lab_patient, staff):
    _send(listener.port, inr_message("REJ1", "NOBODY", "2.5", hours_ago(2)))
    message = InboundMessage.objects.get(control_id="REJ1")
    url = reverse("admin:interfaces_inboundmessage_reject", args=[message.pk])
    nurse = _client(staff["nurse"])

    assert nurse.post(url, {"reason": "  "}).status_code == 200
    assert InboundMessage.objects.get(pk=message.pk).status == MessageStatus.HELD

    assert nurse.post(url, {"reason": "Not our patient: the lab will redirect it."}).status_code == 302
    message.refresh_from_db()
    assert message.status == MessageStatus.REJECTED
    assert message.rejection_reason == "Not our patient: the lab will redirect it."
    assert not InrReading.objects.exists()


def test_a_single_clinic_listener_takes_a_pid3_without_authority(lab_patient, settings):
    from interfaces.listener import start_in_thread

    settings.HL7_CLINIC = lab_patient.clinic.name
    running = start_in_thread("127.0.0.1", 0)
    try:
        message = oru(
            control_id="SINGLE1",
            mrn=lab_patient.mrn,
            authority=None,
            results=[obx(1, "6301-6", "2.3", at=hl7_time(hours_ago(2)))],
        )
        assert ack_code(_send(running.port, message)) == "AA"
    finally:
        running.stop()
    assert InrReading.objects.get(patient=lab_patient).value == Decimal("2.3")


def test_without_a_single_clinic_a_pid3_without_authority_is_held(listener, lab_patient):
    message = oru(
        control_id="BARE1",
        mrn=lab_patient.mrn,
        authority=None,
        results=[obx(1, "6301-6", "2.3", at=hl7_time(hours_ago(2)))],
    )
    assert ack_code(_send(listener.port, message)) == "AA"
    assert InboundMessage.objects.get(control_id="BARE1").hold_reason == HoldReason.UNKNOWN_AUTHORITY
    assert AssigningAuthority.objects.get().name == AUTHORITY
