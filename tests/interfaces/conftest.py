"""Real parts for the laboratory interface: the listener running on a free port (its own event loop in a thread,
the same code as ``manage.py hl7_listener``), a plain-socket MLLP client, and messages built like a lab's.

The SMTP server, broker and Celery worker fixtures are the reminder tests' (tests/scheduling/conftest.py).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from interfaces.listener import RunningListener, start_in_thread
from interfaces.models import AssigningAuthority
from tests.factories import ClinicFactory, PatientFactory
from tests.scheduling.conftest import (  # noqa: F401  (fixtures, re-exported for this directory)
    _fast_password_hashing,
    broker,
    celery_worker,
    free_port,
    smtp_server,
    wait_for,
)

VT, FS, CR = b"\x0b", b"\x1c", b"\r"
AUTHORITY = "CVTA"


def hl7_time(moment: datetime, *, offset: bool = True) -> str:
    """An HL7 DTM in UTC with its offset, or the clinic-local wall time without one."""
    if offset:
        return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")
    return moment.strftime("%Y%m%d%H%M%S")


def obx(
    set_id: int,
    code: str,
    value: str,
    *,
    units: str = "",
    at: str = "",
    status: str = "F",
    flags: str = "",
    value_type: str = "NM",
) -> str:
    names = {"6301-6": "INR", "34714-6": "INR", "46418-0": "INR POC", "2160-0": "Creat", "14682-9": "Creat"}
    names |= {"718-7": "Hgb", "777-3": "Plt", "5902-2": "PT"}
    return f"OBX|{set_id}|{value_type}|{code}^{names.get(code, code)}^LN||{value}|{units}|2.0-3.0|{flags}|||{status}|||{at}"


def oru(
    *,
    control_id: str,
    mrn: str,
    results: list[str],
    authority: str | None = AUTHORITY,
    dob: str = "19800517",
    facility: str = "CITYLAB",
    version: str = "2.5.1",
    message_type: str = "ORU^R01^ORU_R01",
    pid: bool = True,
    encoding: str = "^~\\&",
    drawn: str = "",
) -> str:
    identifier = f"{mrn}^^^{authority}^MR" if authority else f"{mrn}^^^^MR"
    segments = [
        f"MSH|{encoding}|LIS|{facility}|CVTCLINIC|CVTCLINIC|20260101120000+0000||{message_type}|{control_id}|P|{version}"
    ]
    if pid:
        segments.append(f"PID|1||{identifier}||Testperson^Alex||{dob}|F")
    segments.append(f"OBR|1||F{control_id}|6301-6^INR^LN|||{drawn}")
    segments += results
    return "\r".join(segments) + "\r"


def inr_message(control_id: str, mrn: str, value: str, at: datetime, **kwargs) -> str:
    return oru(control_id=control_id, mrn=mrn, results=[obx(1, "6301-6", value, at=hl7_time(at))], **kwargs)


class MllpClient:
    """A plain TCP client speaking MLLP: frame, send, read the ACK frame."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 120) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_ack(self) -> str:
        while FS + CR not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the listener closed the connection")
            self.buffer += chunk
        frame, _, self.buffer = self.buffer.partition(FS + CR)
        assert frame.startswith(VT), frame[:20]
        return frame[1:].decode("utf-8")

    def send(self, message: str | bytes) -> str:
        data = message.encode("utf-8") if isinstance(message, str) else message
        self.send_raw(VT + data + FS + CR)
        return self.read_ack()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> MllpClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def ack_code(ack: str) -> str:
    msa = next(segment for segment in ack.split("\r") if segment.startswith("MSA"))
    return msa.split("|")[1]


def ack_err(ack: str) -> str:
    return next((segment for segment in ack.split("\r") if segment.startswith("ERR")), "")


@pytest.fixture
def listener(transactional_db) -> Iterator[RunningListener]:
    running = start_in_thread("127.0.0.1", 0)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def lab_clinic(transactional_db):
    clinic = ClinicFactory(name="Lab clinic", time_zone="Europe/Paris", alert_email="alerts@clinic.invalid")
    AssigningAuthority.objects.create(clinic=clinic, name=AUTHORITY)
    return clinic


@pytest.fixture
def lab_patient(lab_clinic):
    return PatientFactory(clinic=lab_clinic, mrn="LAB-001")


def hours_ago(hours: float) -> datetime:
    return timezone.now().replace(microsecond=0) - timedelta(hours=hours)
