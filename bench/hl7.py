"""Benchmark of the laboratory interface (issue 17): messages per second through the MLLP listener into
PostgreSQL, and the time from the ACK of a critical INR to its alert e-mail at the SMTP server.

Both run against a clinic of their own ("Bench HL7 clinic", its patients created once), so the network's data
and the other figures do not move; what the run stored (messages, readings, follow-ups, alerts) is deleted at the
end. The listener is the real one (:func:`interfaces.listener.start_in_thread`), the clients plain sockets, the
worker a ``celery worker`` subprocess and the SMTP server aiosmtpd.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .measure import Figure, _free_port

REPO = Path(__file__).resolve().parents[1]
CLINIC_NAME = "Bench HL7 clinic"
AUTHORITY = "BENCHHL7"
PATIENTS = 200


def _clinic():
    from interfaces.models import AssigningAuthority
    from patients.models import Clinic, Patient

    clinic, _ = Clinic.objects.get_or_create(
        name=CLINIC_NAME, defaults={"time_zone": "Europe/Paris", "alert_email": "hl7-alerts@bench.invalid"}
    )
    AssigningAuthority.objects.get_or_create(name=AUTHORITY, defaults={"clinic": clinic})
    have = set(Patient.objects.filter(clinic=clinic).values_list("mrn", flat=True))
    Patient.objects.bulk_create(
        [
            Patient(clinic=clinic, mrn=f"HL7B-{n:05d}", family_name="Bench", given_name=f"P{n}",
                    date_of_birth=date(1970, 1, 1) + timedelta(days=n), sex="female")
            for n in range(PATIENTS) if f"HL7B-{n:05d}" not in have
        ]
    )  # fmt: skip
    return clinic, list(Patient.objects.filter(clinic=clinic).order_by("mrn"))


def _message(control_id: str, patient, value: str, drawn) -> bytes:
    at = drawn.strftime("%Y%m%d%H%M%S+0000")
    text = "\r".join(
        [
            f"MSH|^~\\&|LIS|BENCHLAB|CVTCLINIC|CVTCLINIC|{at}||ORU^R01^ORU_R01|{control_id}|P|2.5.1",
            f"PID|1||{patient.mrn}^^^{AUTHORITY}^MR||Bench^P||{patient.date_of_birth:%Y%m%d}|F",
            f"OBR|1||{control_id}|6301-6^INR^LN|||{at}",
            f"OBX|1|NM|6301-6^INR^LN||{value}|{{INR}}|2.0-3.0||||F|||{at}",
        ]
    )
    return b"\x0b" + text.encode() + b"\r\x1c\r"


def _send(port: int, frames: list[bytes]) -> list[bytes]:
    acks = []
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        buffer = b""
        for frame in frames:
            sock.sendall(frame)
            while b"\x1c\r" not in buffer:
                buffer += sock.recv(65536)
            ack, _, buffer = buffer.partition(b"\x1c\r")
            acks.append(ack)
    return acks


def _clean(clinic) -> None:
    """Delete what the run stored for the bench clinic (its patients stay, for the next run)."""
    from anticoag.models import InrReading
    from interfaces.models import InboundMessage, LabObservation
    from scheduling.models import FollowUp, Reminder

    with transaction.atomic():
        LabObservation.objects.filter(patient__clinic=clinic).delete()
        InboundMessage.objects.filter(sending_facility="BENCHLAB").delete()
        reminders = Reminder.objects.filter(clinic=clinic)
        Reminder.follow_ups.through.objects.filter(reminder__in=reminders).delete()
        reminders.delete()
        FollowUp.objects.filter(patient__clinic=clinic).delete()
        InrReading.objects.filter(patient__clinic=clinic).delete()


def measure_throughput(*, messages: int, connections: int) -> list[Figure]:
    """``messages`` INR results (in range, each its own patient and time) over ``connections`` at once."""
    from interfaces.listener import start_in_thread

    logging.getLogger("interfaces.hl7").setLevel(logging.WARNING)
    clinic, patients = _clinic()
    _clean(clinic)
    base = timezone.now() - timedelta(days=60)
    run = int(time.time())
    frames = [
        _message(f"T{run}-{n}", patients[n % len(patients)], ("2.2", "2.5", "2.8")[n % 3], base + timedelta(minutes=n))
        for n in range(messages)
    ]
    listener = start_in_thread("127.0.0.1", 0)
    try:
        chunks = [frames[index::connections] for index in range(connections)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=connections) as pool:
            acks = [ack for chunk in pool.map(lambda c: _send(listener.port, c), chunks) for ack in chunk]
        seconds = time.perf_counter() - t0
    finally:
        listener.stop()
    accepted = sum(1 for ack in acks if b"MSA|AA|" in ack)
    from anticoag.models import InrReading

    stored = InrReading.objects.filter(patient__clinic=clinic).count()
    _clean(clinic)
    return [
        Figure(
            "hl7_messages_per_s", f"HL7 ORU^R01 through the MLLP listener into PostgreSQL, {connections} connections",
            round(accepted / seconds, 1) if seconds else None, "messages/s", "", None,
            {"messages": messages, "acked_aa": accepted, "readings_stored": stored, "seconds": round(seconds, 2),
             "db_threads": settings.HL7_DB_THREADS},
        )
    ]  # fmt: skip


class _TimedSink:
    """aiosmtpd handler noting when each message (by Message-ID) arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        import email

        message_id = email.message_from_bytes(envelope.original_content)["Message-ID"]
        with self.lock:
            self.arrived[message_id] = time.perf_counter()
        return "250 Message accepted for delivery"


def measure_alert_latency(*, alerts: int, database_url: str, timeout: float = 60) -> list[Figure]:
    """Critical INRs sent one at a time; for each, the time from its ACK to its alert e-mail at the SMTP server
    (the listener commits, the outbox enqueues on commit, a worker sends)."""
    from aiosmtpd.controller import Controller

    from config.celery import app as celery_app
    from interfaces.listener import start_in_thread
    from scheduling.models import Reminder

    logging.getLogger("interfaces.hl7").setLevel(logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    clinic, patients = _clinic()
    _clean(clinic)
    sink = _TimedSink()
    port = _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    env = dict(os.environ) | {
        "DATABASE_URL": database_url,
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(port),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "PYTHONUNBUFFERED": "1",
    }
    log = REPO / "var" / "bench-hl7-worker.log"
    log.parent.mkdir(exist_ok=True)
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=prefork", "--concurrency=1",
             "-Q", f"{settings.CELERY_TASK_DEFAULT_QUEUE},{settings.ANTICOAG_URGENT_QUEUE}", "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-n", f"benchhl7-{os.getpid()}@%h"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    listener = start_in_thread("127.0.0.1", 0)
    latencies: list[float] = []
    try:
        celery_app.control.purge()
        deadline = time.monotonic() + 60
        while not celery_app.control.ping(timeout=0.5):
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not start: " + log.read_text()[-500:])
        run = int(time.time())
        for n in range(alerts):
            frame = _message(f"C{run}-{n}", patients[n], "9.5", timezone.now() - timedelta(minutes=30))
            [ack] = _send(listener.port, [frame])
            acked = time.perf_counter()
            assert b"MSA|AA|" in ack, ack
            message_id = ""
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                if not message_id:
                    message_id = (
                        Reminder.objects.filter(clinic=clinic, inr_reading__patient=patients[n])
                        .exclude(message_id="")
                        .values_list("message_id", flat=True)
                        .first()
                        or ""
                    )
                with sink.lock:
                    arrived = sink.arrived.get(message_id) if message_id else None
                if arrived:
                    latencies.append(arrived - acked)
                    break
                time.sleep(0.01)
    finally:
        listener.stop()
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
        controller.stop()
        connection.close()
        _clean(clinic)
    p95 = statistics.quantiles(latencies, n=20)[-1] if len(latencies) >= 2 else (latencies or [None])[0]
    return [
        Figure(
            "hl7_critical_ack_to_email_p95", "critical INR over HL7: ACK → alert e-mail at the SMTP server, p95",
            round(p95 * 1000) if p95 is not None else None, "ms", "", None,
            {"alerts": alerts, "delivered": len(latencies),
             "median_ms": round(statistics.median(latencies) * 1000) if latencies else None,
             "max_ms": round(max(latencies) * 1000) if latencies else None},
        )
    ]  # fmt: skip
