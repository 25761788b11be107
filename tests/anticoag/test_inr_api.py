"""The INR API: 201 on success, 400 naming the field on every refusal (never 500), 401/403 for outsiders."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from anticoag.models import InrReading
from patients.choices import Role
from tests.factories import ClinicFactory, PatientFactory, UserFactory, nurse

pytestmark = pytest.mark.django_db

CREATE = "/api/v1/inr-readings/"
IMPORT = "/api/v1/inr-readings/import/"


@pytest.fixture
def clinic():
    return ClinicFactory()


@pytest.fixture
def patient(clinic):
    return PatientFactory(clinic=clinic, mrn="P1")


@pytest.fixture
def api(clinic):
    client = APIClient()
    client.force_login(nurse(clinic))
    return client


def when(days: float = 1) -> str:
    return (timezone.now() - timedelta(days=days)).isoformat()


def body(for_patient, **overrides):
    return {"patient": for_patient.pk, "drawn_at": when(), "value": "2.5", "source": "lab", **overrides}


def upload(text: str, name: str = "inr.csv") -> io.BytesIO:
    file = io.BytesIO(text.encode())
    file.name = name
    return file


# --- record one ----------------------------------------------------------------------------------------------


def test_recording_a_reading_returns_it_with_the_advice(api, patient):
    response = api.post(CREATE, body(patient, value="1.7", bleeding=False), format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    reading = InrReading.objects.get()
    assert data["id"] == reading.pk and data["value"] == "1.70"
    assert reading.entered_by is not None
    assert data["advice"]["phase"] == "initiation"
    assert data["advice"]["next_test_on"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"value": "-1"}, "value"),
        ({"value": "25"}, "value"),
        ({"value": "2.555"}, "value"),
        ({"value": "two"}, "value"),
        ({"value": None}, "value"),
        ({"drawn_at": "2099-01-01T10:00:00+00:00"}, "drawn_at"),
        ({"drawn_at": "2026-01-05T10:00:00"}, "drawn_at"),  # no offset
        ({"drawn_at": "yesterday"}, "drawn_at"),
        ({"drawn_at": 12}, "drawn_at"),
        ({"source": "fax"}, "source"),
        ({"bleeding": "sometimes"}, "bleeding"),
        ({"patient": "abc"}, "patient"),
        ({"patient": 999999}, "patient"),
        ({"note": "x" * 501}, "note"),
    ],
)
def test_each_refused_reading_is_a_400_naming_the_field(api, patient, overrides, field):
    response = api.post(CREATE, body(patient, **overrides), format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert not InrReading.objects.exists()


def test_a_duplicate_is_a_400_on_drawn_at(api, patient):
    payload = body(patient)
    assert api.post(CREATE, payload, format="json").status_code == 201
    response = api.post(CREATE, payload, format="json")
    assert response.status_code == 400
    assert "already has an INR" in response.json()["drawn_at"][0]
    assert InrReading.objects.count() == 1


@pytest.mark.parametrize("raw", ["", "{", "[]", '"text"', "null", '{"patient": []}'])
def test_malformed_bodies_are_400_never_500(api, raw):
    response = api.post(CREATE, raw, content_type="application/json")
    assert response.status_code == 400


def test_a_patient_of_another_clinic_is_not_reachable(api):
    stranger = PatientFactory()  # another clinic
    response = api.post(CREATE, body(stranger), format="json")
    assert response.status_code == 400
    assert "patient" in response.json()
    assert not InrReading.objects.exists()


def test_anonymous_users_are_refused(patient, clinic):
    client = APIClient()
    assert client.post(CREATE, body(patient), format="json").status_code in (401, 403)
    assert client.post(IMPORT, {"clinic": clinic.pk, "file": upload("mrn,drawn_at,inr\n")}).status_code in (401, 403)
    assert not InrReading.objects.exists()


def test_staff_without_the_add_permission_are_refused(patient, clinic):
    client = APIClient()
    client.force_login(UserFactory(role=Role.REPORTING, clinics=[clinic]))
    assert client.post(CREATE, body(patient), format="json").status_code == 403
    text = f"mrn,drawn_at,inr\nP1,{when()},2.5\n"
    assert client.post(IMPORT, {"clinic": clinic.pk, "file": upload(text)}).status_code == 403
    assert not InrReading.objects.exists()


# --- import --------------------------------------------------------------------------------------------------


def test_a_clean_import_returns_201_with_the_count(api, clinic, patient):
    text = f"mrn,drawn_at,inr\nP1,{when(3)},2.5\nP1,{when(1)},2.7\n"
    response = api.post(IMPORT, {"clinic": clinic.pk, "file": upload(text)})
    assert response.status_code == 201, response.json()
    assert response.json()["imported"] == 2
    assert InrReading.objects.count() == 2


def test_an_import_with_a_bad_row_returns_400_with_the_row_and_imports_nothing(api, clinic, patient):
    text = f"mrn,drawn_at,inr\nP1,{when(3)},2.5\nP1,{when(1)},25\n"
    response = api.post(IMPORT, {"clinic": clinic.pk, "file": upload(text)})
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert (error["row"], error["field"]) == (3, "inr")
    assert not InrReading.objects.exists()


def test_importing_into_a_clinic_you_do_not_belong_to_is_forbidden(api, patient):
    other = ClinicFactory()
    PatientFactory(clinic=other, mrn="P1")
    text = f"mrn,drawn_at,inr\nP1,{when()},2.5\n"
    assert api.post(IMPORT, {"clinic": other.pk, "file": upload(text)}).status_code == 403
    assert api.post(IMPORT, {"clinic": 999999, "file": upload(text)}).status_code == 403
    assert not InrReading.objects.exists()


@pytest.mark.parametrize(
    ("data", "field"),
    [({"clinic": "x"}, "clinic"), ({}, "clinic"), ("nofile", "file")],
)
def test_import_requests_missing_parts_are_400_naming_them(api, clinic, data, field):
    payload = {"clinic": clinic.pk} if data == "nofile" else data
    response = api.post(IMPORT, payload)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == field
