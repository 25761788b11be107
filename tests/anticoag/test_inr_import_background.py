"""Large INR imports run in the background (issue 13, finding 8): the request answers at once with a status URL,
a real Celery worker imports the stored upload all or nothing, and the status shows progress, then the result."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections
from django.urls import reverse
from django.utils import timezone

from anticoag import inr
from anticoag.imports import ImportStarted, inr_import_run, inr_import_start
from anticoag.models import InrImport, InrImportPhase, InrReading
from tests.api.conftest import client_for, make_clinic
from tests.factories import PatientFactory
from tests.scheduling import conftest as scheduling_fixtures
from tests.scheduling.conftest import wait_for

# The real Redis broker, SMTP server and Celery worker subprocesses of the reminder tests.
broker = scheduling_fixtures.broker
smtp_server = scheduling_fixtures.smtp_server
worker_process = scheduling_fixtures.worker_process

ROWS, PATIENTS = 3000, 10


def _csv(mrns: list[str], rows: int, *, bad_row: int | None = None) -> bytes:
    start = timezone.now() - timedelta(days=2)
    lines = ["mrn,drawn_at,inr"]
    for n in range(rows):
        drawn = (start - timedelta(minutes=10 * n)).isoformat(timespec="seconds")
        value = "25.0" if n == bad_row else f"{2 + (n % 10) / 10:.1f}"
        lines.append(f"{mrns[n % len(mrns)]},{drawn},{value}")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def clinic(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.ANTICOAG_INR_IMPORT_BACKGROUND_ROWS = 500
    a = make_clinic("A")
    a.mrns = [a.patient.mrn] + [PatientFactory(clinic=a.clinic).mrn for _ in range(PATIENTS - 1)]
    return a


@pytest.mark.django_db(transaction=True)
def test_a_large_import_runs_on_a_worker_and_the_status_url_shows_the_result(clinic, worker_process):
    worker_process.start(concurrency=1)
    before = InrReading.objects.count()
    api = client_for(clinic.nurse)
    upload = SimpleUploadedFile("big.csv", _csv(clinic.mrns, ROWS), content_type="text/csv")
    response = api.post("/api/v1/inr-readings/import/", {"clinic": clinic.clinic.pk, "file": upload})
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["rows_total"] == ROWS and body["finished"] is False
    status_url = response["Location"]
    assert status_url == reverse("api-inr-import-status", args=[body["id"]])

    seen: list[tuple[str, int]] = []

    def finished():
        answer = api.get(status_url).json()
        seen.append((answer["phase"], answer["rows_done"]))
        return answer if answer["finished"] else None

    result = wait_for(finished, timeout=180, interval=0.2, what="the background import")
    assert result["phase"] == "done", result
    assert result["imported"] == ROWS and result["patients"] == PATIENTS
    assert InrReading.objects.count() == before + ROWS
    print("phases seen while polling:", sorted(set(p for p, _ in seen)))

    # the admin shows it too
    from django.test import Client

    browser = Client()
    browser.force_login(clinic.nurse)
    page = browser.get(reverse("admin:anticoag_inrimport_change", args=[body["id"]]))
    assert page.status_code == 200 and f"{ROWS:,} rows: imported" in page.content.decode()
    # another clinic's staff get a 404 for it
    other = make_clinic("B")
    assert client_for(other.nurse).get(status_url).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_a_large_import_with_one_bad_row_imports_nothing_and_lists_the_row(clinic, worker_process):
    worker_process.start(concurrency=1)
    before = InrReading.objects.count()
    api = client_for(clinic.nurse)
    upload = SimpleUploadedFile("bad.csv", _csv(clinic.mrns, 800, bad_row=700), content_type="text/csv")
    response = api.post("/api/v1/inr-readings/import/", {"clinic": clinic.clinic.pk, "file": upload})
    assert response.status_code == 202
    url = response["Location"]
    result = wait_for(lambda: (a := api.get(url).json())["finished"] and a, timeout=120, what="the import")
    assert result["phase"] == "failed"
    assert [(e["row"], e["field"]) for e in result["errors"]] == [(702, "inr")]
    assert InrReading.objects.count() == before


@pytest.mark.django_db
def test_a_small_import_stays_synchronous(clinic):
    upload = SimpleUploadedFile("small.csv", _csv(clinic.mrns, 20), content_type="text/csv")
    response = client_for(clinic.nurse).post(
        "/api/v1/inr-readings/import/", {"clinic": clinic.clinic.pk, "file": upload}
    )
    assert response.status_code == 201 and response.json()["imported"] == 20
    assert not InrImport.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_progress_written_inside_the_import_transaction_is_visible_outside_it(clinic, monkeypatch):
    """The storing phase is one transaction; its progress must still reach the status URL while it runs."""
    started = inr_import_start(clinic=clinic.clinic, file=_csv(clinic.mrns, 1200), entered_by=clinic.nurse)
    assert isinstance(started, ImportStarted)
    monkeypatch.setattr(inr, "IMPORT_PROGRESS_EVERY", 100)
    observed: list[tuple[str, int]] = []
    original = inr.inr_readings_recorded_many
    outside = connections.create_connection("default")

    def spying(*, readings):
        patients = original(readings=readings)
        with outside.cursor() as cursor:  # a connection outside the import's transaction
            cursor.execute("SELECT phase, rows_done FROM anticoag_inrimport WHERE id = %s", [started.job.pk])
            observed.append(cursor.fetchone())
        return patients

    monkeypatch.setattr(inr, "inr_readings_recorded_many", spying)
    try:
        job = inr_import_run(import_id=started.job.pk)
    finally:
        outside.close()
    assert job.phase == InrImportPhase.DONE and job.imported == 1200
    assert observed and {phase for phase, _ in observed} <= {"storing", "announcing"}
    assert "announcing" in {phase for phase, _ in observed}
    assert max(done for _, done in observed) >= 1000  # the batches stored so far, seen from outside
    assert inr_import_run(import_id=started.job.pk) is None  # a second delivery of the task does nothing
