"""Acceptance (issue 17): real TCP clients against the running listener, results in PostgreSQL."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection

from anticoag.models import InrReading
from interfaces.models import InboundMessage, LabObservation, MessageStatus
from tests.factories import PatientFactory

from .conftest import (
    CR,
    FS,
    VT,
    MllpClient,
    ack_code,
    ack_err,
    free_port,
    hours_ago,
    inr_message,
    obx,
    oru,
    wait_for,
)

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

REPO = Path(__file__).resolve().parents[2]


def _batch(patients, count: int, prefix: str) -> list[str]:
    """``count`` INR results in range, spread over the patients, each at its own time."""
    values = ["2.0", "2.3", "2.5", "2.8", "3.0"]
    messages = []
    for index in range(count):
        patient = patients[index % len(patients)]
        at = hours_ago(24 + index)  # a day or more ago: none is the patient's "latest" in a surprising way
        messages.append(inr_message(f"{prefix}{index:05d}", patient.mrn, values[index % len(values)], at))
    return messages


def _send_all(port: int, messages: list[str]) -> list[str]:
    with MllpClient(port) as client:
        return [client.send(message) for message in messages]


def _send_parallel(port: int, messages: list[str], connections: int) -> list[str]:
    chunks = [messages[index::connections] for index in range(connections)]
    with ThreadPoolExecutor(max_workers=connections) as pool:
        results = list(pool.map(lambda chunk: _send_all(port, chunk), chunks))
    acks: list[str] = [""] * len(messages)
    for index, chunk_acks in enumerate(results):
        acks[index::connections] = chunk_acks
    return acks


def test_a_thousand_messages_on_one_connection_then_the_same_batch_on_ten_connections(listener, lab_clinic):
    # given 20 patients of a clinic whose assigning authority the lab uses
    patients = [PatientFactory(clinic=lab_clinic, mrn=f"B{n:03d}") for n in range(20)]
    batch = _batch(patients, 1000, "ONE")

    # when the lab sends 1,000 results on one connection
    first = _send_all(listener.port, batch)

    # then every one is ACKed AA and stored once
    assert [ack_code(ack) for ack in first] == ["AA"] * 1000
    assert InboundMessage.objects.filter(status=MessageStatus.STORED).count() == 1000
    assert InrReading.objects.filter(patient__clinic=lab_clinic).count() == 1000
    assert LabObservation.objects.count() == 1000
    assert "MSA|AA|ONE00042" in first[42]

    # when the same batch is resent, over 10 connections at once
    again = _send_parallel(listener.port, batch, 10)

    # then nothing new is stored and each message gets exactly the ACK it got the first time
    assert again == first
    assert InboundMessage.objects.count() == 1000
    assert InrReading.objects.count() == 1000
    assert LabObservation.objects.count() == 1000


def test_ten_connections_in_parallel_each_message_stored_once(listener, lab_clinic):
    # given 10 patients and 300 new results, 30 of them sent twice on two different connections at once
    patients = [PatientFactory(clinic=lab_clinic, mrn=f"P{n:03d}") for n in range(10)]
    batch = _batch(patients, 300, "PAR")
    doubled = batch + batch[:30]

    # when 10 connections send them in parallel
    acks = _send_parallel(listener.port, doubled, 10)

    # then every message is ACKed AA, each twin gets its twin's ACK, and each result is stored once
    assert {ack_code(ack) for ack in acks} == {"AA"}
    assert acks[300:] == acks[:30]
    assert InboundMessage.objects.count() == 300
    assert InrReading.objects.count() == 300
    assert sorted(InboundMessage.objects.values_list("control_id", flat=True)) == [f"PAR{n:05d}" for n in range(300)]


def test_a_connection_cut_mid_message_stores_nothing_and_the_resend_stores_once(listener, lab_patient):
    message = inr_message("CUT1", lab_patient.mrn, "2.6", hours_ago(3)).encode()

    # given a connection that dies half-way through a message
    sock = socket.create_connection(("127.0.0.1", listener.port))
    sock.sendall(VT + message[: len(message) // 2])
    sock.close()

    # then nothing is stored, and the listener still serves the next connection
    with MllpClient(listener.port) as client:
        assert ack_code(client.send(inr_message("OTHER", lab_patient.mrn, "2.2", hours_ago(30)))) == "AA"
    assert not InboundMessage.objects.filter(control_id="CUT1").exists()
    assert InrReading.objects.filter(patient=lab_patient).count() == 1

    # when the lab resends the message, twice
    with MllpClient(listener.port) as client:
        first = client.send(message)
        second = client.send(message)

    # then it is stored once and both ACKs are the same
    assert ack_code(first) == "AA" and second == first
    assert InboundMessage.objects.filter(control_id="CUT1").count() == 1
    assert InrReading.objects.filter(patient=lab_patient, value=Decimal("2.6")).count() == 1


def _big(mrn: str) -> str:
    filler = "NTE|1||" + "X" * 1000
    return oru(control_id="BIG1", mrn=mrn, results=[obx(1, "6301-6", "2.5", at="20260101100000+0000")]) + "\r".join(
        [filler] * 5200
    )


MALFORMED = {
    "missing PID": (lambda mrn: oru(control_id="M1", mrn=mrn, pid=False, results=[obx(1, "6301-6", "2.5", at="20260101100000+0000")]), "AE", "PID^1^"),
    "no MSH-10": (lambda mrn: oru(control_id="", mrn=mrn, results=[obx(1, "6301-6", "2.5", at="20260101100000+0000")]), "AE", "MSH^1^10"),
    "an INR of 45": (lambda mrn: oru(control_id="M3", mrn=mrn, results=[obx(1, "6301-6", "45", at="20260101100000+0000")]), "AE", "OBX^1^5"),
    "wrong encoding characters": (lambda mrn: oru(control_id="M4", mrn=mrn, encoding="^~", results=[obx(1, "6301-6", "2.5", at="20260101100000+0000")]), "AE", "MSH^1^2"),
    "a 5 MB message": (_big, "AE", "MSH^1^"),
    "a message type we don't take": (lambda mrn: oru(control_id="M6", mrn=mrn, message_type="ADT^A01", results=[]), "AR", "MSH^1^9"),
    "an unsupported version": (lambda mrn: oru(control_id="M7", mrn=mrn, version="2.7", results=[]), "AR", "MSH^1^12"),
    "a creatinine in the wrong unit": (lambda mrn: oru(control_id="M8", mrn=mrn, results=[obx(1, "2160-0", "90", units="umol/L", at="20260101100000+0000")]), "AE", "OBX^1^6"),
    "a result without its time": (lambda mrn: oru(control_id="M9", mrn=mrn, results=[obx(1, "6301-6", "2.5")]), "AE", "OBX^1^14"),
}  # fmt: skip


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_messages_are_refused_with_the_field_and_the_listener_serves_on(listener, lab_patient, case):
    build, expected_code, location = MALFORMED[case]
    message = build(lab_patient.mrn)
    if case == "a 5 MB message":
        assert len(message.encode()) > 5_000_000

    # when the message is sent, followed by a good one on the same connection
    with MllpClient(listener.port) as client:
        ack = client.send(message)
        good_on_same = client.send(inr_message("GOOD1", lab_patient.mrn, "2.4", hours_ago(5)))
    # and a good one on a new connection
    with MllpClient(listener.port) as client:
        good_on_new = client.send(inr_message("GOOD2", lab_patient.mrn, "2.7", hours_ago(6)))

    # then it is refused with the field named, and nothing of it is stored
    assert ack_code(ack) == expected_code, ack
    err = ack_err(ack)
    assert err.startswith("ERR") and location in err, ack
    msa = next(segment for segment in ack.split("\r") if segment.startswith("MSA"))
    assert len(msa.split("|")) >= 4 and msa.split("|")[3], "MSA-3 carries the reason"
    assert not InboundMessage.objects.exclude(control_id__in=["GOOD1", "GOOD2"]).exists()
    # and the listener goes on serving, on the same connection and on the next
    assert ack_code(good_on_same) == "AA" and ack_code(good_on_new) == "AA"
    assert InrReading.objects.filter(patient=lab_patient).count() == 2


def test_an_inr_of_45_names_the_plausible_range_as_typed_entry_does(listener, lab_patient):
    with MllpClient(listener.port) as client:
        ack = client.send(inr_message("R45", lab_patient.mrn, "45", hours_ago(2)))

    assert "An INR above 20 is not plausible" in ack  # the model's own message, as in the admin and the API
    assert "OBX^1^5|102^Data type error^HL70357|E" in ack_err(ack)


def test_a_control_id_reused_for_another_message_is_refused(listener, lab_patient):
    with MllpClient(listener.port) as client:
        first = client.send(inr_message("SAME", lab_patient.mrn, "2.5", hours_ago(2)))
        other = client.send(inr_message("SAME", lab_patient.mrn, "3.5", hours_ago(4)))

    assert ack_code(first) == "AA"
    assert ack_code(other) == "AE" and "MSH^1^10" in ack_err(other)
    assert InrReading.objects.filter(patient=lab_patient).count() == 1


def test_every_message_and_ack_is_logged_without_patient_data(listener, lab_patient, caplog):
    caplog.set_level(logging.INFO, logger="interfaces.hl7")
    with MllpClient(listener.port) as client:
        client.send(inr_message("LOG1", lab_patient.mrn, "2.5", hours_ago(2)))
        client.send(inr_message("LOG2", "NOBODY-9", "2.5", hours_ago(2)))
        client.send(inr_message("LOG3", lab_patient.mrn, "45", hours_ago(2)))

    lines = [record.getMessage() for record in caplog.records if record.name == "interfaces.hl7"]
    outcomes = [line for line in lines if line.startswith("hl7 message ")]
    assert "hl7 message control_id=LOG1 sender=CITYLAB outcome=stored ack=AA" in outcomes
    assert "hl7 message control_id=LOG2 sender=CITYLAB outcome=held ack=AA" in outcomes
    assert "hl7 message control_id=LOG3 sender=CITYLAB outcome=refused ack=AE error=OBX-5/102" in outcomes
    for line in lines:
        for secret in (lab_patient.mrn, "NOBODY-9", "Testperson", "19800517", "45", lab_patient.family_name):
            assert secret not in line, line


def test_the_management_command_serves_mllp_and_stops_on_sigterm(lab_patient, tmp_path):
    """``manage.py hl7_listener --port N`` as a process of its own, on the test database."""
    db = connection.settings_dict
    port = free_port()
    env = dict(os.environ) | {
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "listener.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "hl7_listener", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: f"127.0.0.1:{port}" in log.read_text(), timeout=60, what="the listener to start")
        with MllpClient(port) as client:
            ack = client.send(inr_message("CMD1", lab_patient.mrn, "2.5", hours_ago(2)))
        assert ack_code(ack) == "AA"
        assert InrReading.objects.filter(patient=lab_patient).count() == 1
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0, log.read_text()
    assert "control_id=CMD1" in log.read_text()


def test_many_connections_are_served_at_once(listener, lab_patient):
    # given 30 connections open at the same time, none of them sending yet
    clients = [MllpClient(listener.port) for _ in range(30)]
    try:
        start = threading.Barrier(30)
        results: list[str] = [""] * 30

        def send(index: int) -> None:
            start.wait()
            results[index] = clients[index].send(
                inr_message(f"MANY{index}", lab_patient.mrn, "2.5", hours_ago(48 + index))
            )

        threads = [threading.Thread(target=send, args=(index,)) for index in range(30)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        for client in clients:
            client.close()
    assert [ack_code(ack) for ack in results] == ["AA"] * 30
    assert InrReading.objects.filter(patient=lab_patient).count() == 30


def test_data_outside_a_frame_is_skipped(listener, lab_patient):
    with MllpClient(listener.port) as client:
        client.send_raw(b"garbage" + FS + CR)
        ack = client.send(inr_message("AFTER", lab_patient.mrn, "2.5", hours_ago(2)))
    assert ack_code(ack) == "AA"


def test_time_without_offset_is_the_clinics(listener, lab_patient):
    # Europe/Paris in January is UTC+1: 10:00 local is 09:00 UTC
    message = oru(control_id="TZ1", mrn=lab_patient.mrn, results=[obx(1, "6301-6", "2.5", at="202601051000")])
    with_offset = oru(
        control_id="TZ2", mrn=lab_patient.mrn, results=[obx(1, "6301-6", "2.6", at="20260106100000-0500")]
    )
    with MllpClient(listener.port) as client:
        assert ack_code(client.send(message)) == "AA"
        assert ack_code(client.send(with_offset)) == "AA"

    readings = {str(r.value): r.drawn_at for r in InrReading.objects.filter(patient=lab_patient)}
    assert readings["2.50"].isoformat() == "2026-01-05T09:00:00+00:00"
    assert readings["2.60"].isoformat() == "2026-01-06T15:00:00+00:00"
