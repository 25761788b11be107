"""Issue 15, item 1: dates and times are the clinic's, on every page and export, in a zone that is not UTC.

A CSV row dated ``D`` (a plain date: 00:00 in the clinic's zone) and a time typed in the admin (05:30) show
the same clinic-local day and time on the INR list, the reading's own page, the patient page and the export;
the export says its zone. A member of two clinics sees each record in its own clinic's zone.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone

from anticoag.models import InrReading
from patients.choices import Role
from tests.api.conftest import client_for
from tests.factories import ClinicFactory, PatientFactory, UserFactory

pytestmark = pytest.mark.django_db

PARIS, CHICAGO = ZoneInfo("Europe/Paris"), ZoneInfo("America/Chicago")


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def upload(text: str) -> io.BytesIO:
    file = io.BytesIO(text.encode())
    file.name = "lab.csv"
    return file


def test_a_csv_date_and_a_typed_time_show_the_same_clinic_day_and_time_everywhere(client):
    # given a Paris clinic, a nurse and a clinician (who exports), and a patient
    paris = ClinicFactory(name="Paris", time_zone="Europe/Paris")
    nurse = UserFactory(username="nina", role=Role.NURSE, clinics=[paris])
    doctor = UserFactory(username="doc", role=Role.CLINICIAN, clinics=[paris])
    patient = PatientFactory(clinic=paris, mrn="PA-1", primary_nurse=nurse)
    csv_day = timezone.localdate(timezone=PARIS) - timedelta(days=5)
    typed_day = csv_day + timedelta(days=2)
    client.force_login(nurse)

    # when a lab file with a date-only row is imported, and a reading is typed in the admin at 05:30
    answer = client.post(
        reverse("admin:anticoag_inrreading_import"),
        {"clinic": paris.pk, "file": upload(f"mrn,drawn_at,inr\nPA-1,{csv_day.isoformat()},2.4\n")},
    )
    assert answer.status_code == 302, answer.content.decode()[:3000]
    answer = client.post(
        reverse("admin:anticoag_inrreading_add"),
        {"patient": patient.pk, "drawn_at_0": typed_day.isoformat(), "drawn_at_1": "05:30", "value": "2.6",
         "source": "poc", "note": ""},
    )  # fmt: skip
    assert answer.status_code == 302, answer.content.decode()[:3000]

    # then both are stored as the clinic's wall clock…
    imported = InrReading.objects.get(value="2.4")
    typed = InrReading.objects.get(value="2.6")
    assert imported.drawn_at == datetime(csv_day.year, csv_day.month, csv_day.day, tzinfo=PARIS)
    assert typed.drawn_at == datetime(typed_day.year, typed_day.month, typed_day.day, 5, 30, tzinfo=PARIS)
    csv_shown, typed_shown = f"{csv_day.isoformat()} 00:00", f"{typed_day.isoformat()} 05:30"

    # …and shown so on the INR list, with the zone named,
    listing = client.get(reverse("admin:anticoag_inrreading_changelist")).content.decode()
    assert f"{csv_shown} Europe/Paris" in listing and f"{typed_shown} Europe/Paris" in listing
    # on the reading's own page (its title and the form),
    page = client.get(reverse("admin:anticoag_inrreading_change", args=[typed.pk])).content.decode()
    assert f"INR of {typed_shown} Europe/Paris" in page
    assert f'value="{typed_day.isoformat()}"' in page and 'value="05:30:00"' in page
    page = client.get(reverse("admin:anticoag_inrreading_change", args=[imported.pk])).content.decode()
    assert f"INR of {csv_shown} Europe/Paris" in page
    # on the patient page (the timeline's days and the chart's points),
    patient_page = client.get(reverse("admin:patients_patient_change", args=[patient.pk])).content.decode()
    assert f'<time datetime="{csv_day.isoformat()}">' in patient_page
    assert f"{typed_shown}: INR 2.6" in patient_page
    # on the dashboard's "today"
    today = timezone.localdate(timezone=PARIS)
    assert f"today {today:%a} {today.day} {today:%b %Y}" in client.get(reverse("admin:index")).content.decode()

    # and in the export, which says its zone
    exported = client_for(doctor).get("/api/v1/exports/inr-readings.csv")
    rows = {row["value"]: row for row in csv.DictReader(io.StringIO(b"".join(exported.streaming_content).decode()))}
    assert rows["2.40"]["time_zone"] == rows["2.60"]["time_zone"] == "Europe/Paris"
    assert rows["2.40"]["drawn_at"].startswith(f"{csv_day.isoformat()} 00:00:00+0")
    assert rows["2.60"]["drawn_at"].startswith(f"{typed_day.isoformat()} 05:30:00+0")
    ndjson = client_for(doctor).get("/api/v1/exports/inr-readings.ndjson")
    rfc3339 = rows["2.40"]["drawn_at"].replace(" ", "T") + ":00"  # +01 → +01:00
    assert f'"drawn_at":"{rfc3339}"' in b"".join(ndjson.streaming_content).decode()


def test_a_member_of_two_clinics_sees_and_types_each_record_in_its_clinics_zone(client):
    # given a member of a Paris and a Chicago clinic (west of UTC), with one patient in each
    paris = ClinicFactory(name="Paris", time_zone="Europe/Paris")
    chicago = ClinicFactory(name="Chicago", time_zone="America/Chicago")
    nurse = UserFactory(username="nina", role=Role.NURSE, clinics=[paris, chicago])
    in_paris = PatientFactory(clinic=paris, mrn="PA-2")
    in_chicago = PatientFactory(clinic=chicago, mrn="CH-2")
    day = timezone.localdate(timezone=CHICAGO) - timedelta(days=3)
    client.force_login(nurse)

    # when she types 21:15 for each (the page is in her first clinic's zone, Paris)
    for patient, value in [(in_paris, "2.2"), (in_chicago, "2.8")]:
        answer = client.post(
            reverse("admin:anticoag_inrreading_add"),
            {"patient": patient.pk, "drawn_at_0": day.isoformat(), "drawn_at_1": "21:15", "value": value,
             "source": "lab", "note": ""},
        )  # fmt: skip
        assert answer.status_code == 302, answer.content.decode()[:3000]

    # then each means its clinic's 21:15, and each is listed in its own zone
    chicago_reading = InrReading.objects.get(patient=in_chicago)
    assert chicago_reading.drawn_at == datetime(day.year, day.month, day.day, 21, 15, tzinfo=CHICAGO)
    assert InrReading.objects.get(patient=in_paris).drawn_at == datetime(
        day.year, day.month, day.day, 21, 15, tzinfo=PARIS
    )
    listing = client.get(reverse("admin:anticoag_inrreading_changelist")).content.decode()
    assert f"{day.isoformat()} 21:15 Europe/Paris" in listing
    assert f"{day.isoformat()} 21:15 America/Chicago" in listing
    # the Chicago reading's page shows Chicago's wall clock in its form, and saving it unchanged keeps it
    url = reverse("admin:anticoag_inrreading_change", args=[chicago_reading.pk])
    page = client.get(url).content.decode()
    assert 'value="21:15:00"' in page and f"INR of {day.isoformat()} 21:15 America/Chicago" in page
    answer = client.post(
        url,
        {"patient": in_chicago.pk, "drawn_at_0": day.isoformat(), "drawn_at_1": "21:15:00", "value": "2.80",
         "source": "lab", "note": "checked"},
    )  # fmt: skip
    assert answer.status_code == 302, answer.content.decode()[:3000]
    chicago_reading.refresh_from_db()
    assert chicago_reading.drawn_at == datetime(day.year, day.month, day.day, 21, 15, tzinfo=CHICAGO)


def test_the_csv_and_ndjson_exports_agree_in_a_zone_west_of_utc():
    """The CSV export (formatted by PostgreSQL's COPY) and the NDJSON one (by Python) write the same clinic
    time with the same negative offset."""
    import json

    chicago = ClinicFactory(name="Chicago", time_zone="America/Chicago")
    doctor = UserFactory(username="doc", role=Role.CLINICIAN, clinics=[chicago])
    patient = PatientFactory(clinic=chicago, mrn="CH-3")
    drawn = datetime(2026, 1, 15, 23, 45, 12, 250000, tzinfo=CHICAGO)  # CST, −06:00, with microseconds
    InrReading.objects.create(patient=patient, drawn_at=drawn, value="2.5", source="lab")

    as_csv = client_for(doctor).get("/api/v1/exports/inr-readings.csv")
    [row] = list(csv.DictReader(io.StringIO(b"".join(as_csv.streaming_content).decode())))
    as_ndjson = client_for(doctor).get("/api/v1/exports/inr-readings.ndjson")
    [record] = [json.loads(line) for line in b"".join(as_ndjson.streaming_content).decode().splitlines()]

    # CSV as PostgreSQL writes a time, NDJSON as RFC 3339: the same clinic time and offset, the same instant
    assert row["drawn_at"] == "2026-01-15 23:45:12.25-06" and record["drawn_at"] == "2026-01-15T23:45:12.25-06:00"
    assert datetime.fromisoformat(row["drawn_at"]) == datetime.fromisoformat(record["drawn_at"]) == drawn
    assert row["time_zone"] == record["time_zone"] == "America/Chicago"
    assert datetime.fromisoformat(row["created_at"]) == datetime.fromisoformat(record["created_at"])
    assert row["created_at"][-3:] in {"-06", "-05"} and record["created_at"][-6:] in {"-06:00", "-05:00"}
