"""Finding 2: a date of year 1 (or 1800) is refused on the way in, in the import, the API and the admin; one
already stored breaks no page; ``manage.py clinical_dates_check`` finds it."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from anticoag.inr import inr_import_csv
from anticoag.models import InrReading
from patients.models import Patient
from tests.api.conftest import client_for, make_clinic, pseudonym_key  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture
def a(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return make_clinic("A")


@pytest.mark.parametrize("drawn_at", ["0001-01-01", "1800-01-01", "1899-12-31T10:00:00+01:00"])
def test_the_csv_import_refuses_a_date_before_1900(a, drawn_at):
    upload = SimpleUploadedFile("inr.csv", f"mrn,drawn_at,inr\nMRN-A,{drawn_at},2.5\n".encode())
    result = inr_import_csv(clinic=a.clinic, file=upload, entered_by=a.nurse)
    assert not result.ok
    assert result.errors[0]["field"] == "drawn_at" and "before 1900" in result.errors[0]["message"]
    assert not InrReading.objects.filter(drawn_at__year__lt=1900).exists()


def test_the_csv_import_refuses_a_nul_byte_with_a_field_error(a):
    upload = SimpleUploadedFile("inr.csv", b"mrn,drawn_at,inr\nMRN-\x00A,2026-01-05,2.5\n")
    result = inr_import_csv(clinic=a.clinic, file=upload, entered_by=a.nurse)
    assert [(e["row"], e["field"]) for e in result.errors] == [(2, "mrn")]


def test_the_api_refuses_an_inr_of_year_1(a):
    response = client_for(a.nurse).post(
        "/api/v1/inr-readings/",
        {"patient": a.patient.pk, "drawn_at": "0001-01-01T00:00:00Z", "value": "2.5"},
        format="json",
    )
    assert response.status_code == 400
    assert "drawn_at" in response.json()


def test_the_admin_refuses_a_date_of_birth_of_year_1(a, client):
    client.force_login(a.clinician)
    url = reverse("admin:patients_patient_change", args=[a.patient.pk])
    page = client.get(url)
    form = page.context["adminform"].form
    data = {name: form.initial.get(name) or "" for name in form.fields}
    data |= {"date_of_birth": "0001-01-01", "clinic": a.clinic.pk, "primary_nurse": a.nurse.pk}
    data |= {"responsible_clinician": a.clinician.pk, "active": "on"}
    for prefix in ("episodes", "lab_results"):
        data |= {f"{prefix}-TOTAL_FORMS": 0, f"{prefix}-INITIAL_FORMS": 0}
    response = client.post(url, {k: v for k, v in data.items() if v is not None})
    assert response.status_code == 200
    assert "date_of_birth" in response.context["adminform"].form.errors
    assert Patient.objects.get(pk=a.patient.pk).date_of_birth.year > 1900


@pytest.fixture
def stored_year_one(a):
    """Rows written before the checks existed (or by SQL): the update bypasses validation on purpose."""
    reading = a.readings[0]
    # As the old import stored "0001-01-01" for a clinic east of UTC: 00:00 local is still year 0 (1 BC) in
    # UTC, a value PostgreSQL keeps but Python's datetime cannot hold. A clinic west of UTC shows the rest.
    with connection.cursor() as cursor:
        cursor.execute("UPDATE anticoag_inrreading SET drawn_at = '0001-01-01 00:00:00+01' WHERE id = %s", [reading.pk])
    InrReading.objects.filter(pk=a.readings[1].pk).update(drawn_at=datetime(1, 1, 1, 12, tzinfo=UTC))
    Patient.objects.filter(pk=a.patient.pk).update(date_of_birth=date(1, 1, 1))
    type(a.clinic).objects.filter(pk=a.clinic.pk).update(time_zone="America/New_York")
    return reading


@pytest.mark.usefixtures("pseudonym_key")
def test_no_page_fails_on_a_stored_year_one_row(a, stored_year_one, client, admin_user, settings):
    settings.TIME_ZONE = "America/Los_Angeles"
    api = client_for(a.clinician)
    answers = {
        "api list": api.get("/api/v1/inr-readings/"),
        "api reading": api.get(f"/api/v1/inr-readings/{stored_year_one.pk}/"),
        "api patient": api.get(f"/api/v1/patients/{a.patient.pk}/"),
        "fhir": api.get(f"/api/v1/patients/{a.patient.pk}/fhir/"),
        "ndjson": api.get("/api/v1/exports/inr-readings.ndjson"),
        "csv": api.get("/api/v1/exports/inr-readings.csv"),
        "patients ndjson": api.get("/api/v1/exports/patients.ndjson"),
        "research": api.get("/api/v1/exports/research/patients.csv"),
    }
    client.force_login(admin_user)
    for name, url in {
        "admin list": reverse("admin:anticoag_inrreading_changelist"),
        "admin change": reverse("admin:anticoag_inrreading_change", args=[stored_year_one.pk]),
        "admin delete": reverse("admin:anticoag_inrreading_delete", args=[stored_year_one.pk]),
        "admin change 2": reverse("admin:anticoag_inrreading_change", args=[a.readings[1].pk]),
        "follow-ups": reverse("admin:scheduling_followup_changelist"),
        "patient page": reverse("admin:patients_patient_change", args=[a.patient.pk]),
        "patient list": reverse("admin:patients_patient_changelist"),
        "episode add": reverse("admin:patients_cvtepisode_add") + f"?patient={a.patient.pk}",
        "dashboard": reverse("admin:index"),
    }.items():
        answers[name] = client.get(url)
    for name, response in answers.items():
        if hasattr(response, "streaming_content"):
            b"".join(response.streaming_content)
        assert response.status_code < 500, name
        assert response.status_code in (200, 302), (name, response.status_code)


def test_clinical_dates_check_lists_the_stored_rows(a, stored_year_one):
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_code:
        call_command("clinical_dates_check", stdout=out)
    assert exit_code.value.code == 1
    text = out.getvalue()
    assert f"anticoag.InrReading {stored_year_one.pk} drawn_at" in text
    assert f"patients.Patient {a.patient.pk} date_of_birth" in text
