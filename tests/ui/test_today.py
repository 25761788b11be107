"""Today: results awaiting a dosing decision (critical first, dosable in place), INR tests due and overdue,
recalls; per nurse and per clinic; a nurse's landing page; flat query counts at 10 and 200 patients."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from anticoag.inr import clinic_today
from anticoag.models import InrReading, WarfarinDose
from patients.choices import Role
from scheduling.models import FollowUp, FollowUpKind
from tests.factories import ClinicFactory, PatientFactory, UserFactory

pytestmark = pytest.mark.django_db

TODAY_URL = "/clinic/today/"


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def clinic():
    return ClinicFactory(name="Bristol", time_zone="Europe/London")


@pytest.fixture
def nina(clinic):
    return UserFactory(username="nina", role=Role.NURSE, clinics=[clinic])


def warfarin_patients(clinic, nurse, count: int, *, last_inr: str = "1.7", start: int = 0):
    """``count`` patients in maintenance on 35 mg/week with a latest INR awaiting a decision and an INR test
    due today; bulk-inserted (the page reads them, it does not need the signals)."""
    now = timezone.now()
    today = clinic_today(clinic)
    patients = [
        PatientFactory(clinic=clinic, primary_nurse=nurse, mrn=f"T-{start + i}", family_name=f"Fam{start + i}")
        for i in range(count)
    ]
    readings = []
    for patient in patients:
        for days, value in ((35, "2.4"), (28, "2.6"), (21, "2.5")):
            readings.append(InrReading(patient=patient, drawn_at=now - timedelta(days=days), value=Decimal(value)))
        readings.append(InrReading(patient=patient, drawn_at=now - timedelta(hours=2), value=Decimal(last_inr)))
    InrReading.objects.bulk_create(readings)
    answered = {r.patient_id: r for r in readings if r.value == Decimal("2.5")}
    WarfarinDose.objects.bulk_create(
        WarfarinDose(
            patient=p, starts_on=today - timedelta(days=21), weekly_dose_mg=Decimal(35), inr_reading=answered[p.pk]
        )
        for p in patients
    )
    FollowUp.objects.bulk_create(
        FollowUp(patient=p, kind=FollowUpKind.INR_TEST, due_on=today, rule="t", key=f"t-{p.pk}") for p in patients
    )
    return patients


def test_a_nurse_lands_on_today_after_login(client, nina):
    nina.set_password("pw-123456789")
    nina.save()
    response = client.post(
        reverse("admin:login"), {"username": "nina", "password": "pw-123456789", "next": reverse("admin:index")}
    )
    assert response.status_code == 302 and response["Location"] == TODAY_URL
    # Asking for a particular page still goes there.
    client.logout()
    response = client.post(
        reverse("admin:login") + "?next=/admin/patients/patient/",
        {"username": "nina", "password": "pw-123456789", "next": "/admin/patients/patient/"},
    )
    assert response["Location"] == "/admin/patients/patient/"


def test_critical_results_first_and_each_row_dosable_in_place(client, clinic, nina):
    [low] = warfarin_patients(clinic, nina, 1, last_inr="1.7")
    [high] = warfarin_patients(clinic, nina, 1, last_inr="6.2", start=1)
    client.force_login(nina)

    response = client.get(TODAY_URL)

    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    html = response.content.decode()
    assert html.index(f'id="awaiting-{high.pk}"') < html.index(f'id="awaiting-{low.pk}"')  # critical first
    assert "CRITICAL" in html and "38.5 mg/week" in html and "(+10.0 %)" in html
    assert "INR tests due today and overdue (2)" in html

    response = client.post(
        reverse("admin:patients_patient_dose_decide", args=[low.pk]), {"accept": "1", "next": TODAY_URL}
    )

    assert response.status_code == 302 and response["Location"] == TODAY_URL
    dose = WarfarinDose.objects.filter(patient=low).latest("pk")
    assert dose.weekly_dose_mg == Decimal("38.5") and dose.followed_suggestion and dose.decided_by == nina
    html = client.get(TODAY_URL).content.decode()
    assert f'id="awaiting-{low.pk}"' not in html and f'id="awaiting-{high.pk}"' in html


def test_mine_and_the_whole_clinic(client, clinic, nina):
    other_nurse = UserFactory(username="olga", role=Role.NURSE, clinics=[clinic])
    [mine] = warfarin_patients(clinic, nina, 1)
    [theirs] = warfarin_patients(clinic, other_nurse, 1, start=1)
    stranger_clinic = ClinicFactory(name="Cardiff")
    [stranger] = warfarin_patients(stranger_clinic, UserFactory(role=Role.NURSE, clinics=[stranger_clinic]), 1, start=2)
    client.force_login(nina)

    html = client.get(TODAY_URL).content.decode()  # a nurse's default: her patients
    assert mine.mrn in html and theirs.mrn not in html
    html = client.get(TODAY_URL + "?scope=clinic").content.decode()
    assert mine.mrn in html and theirs.mrn in html and stranger.mrn not in html


@pytest.mark.parametrize("path", [TODAY_URL + "?scope=clinic", "/admin/patients/patient/"])
def test_query_counts_are_flat(client, clinic, nina, path):
    warfarin_patients(clinic, nina, 10)
    client.force_login(nina)
    client.get(path)  # warm caches (content types, sessions)
    with CaptureQueriesContext(connection) as ten:
        response = client.get(path)
    assert response.status_code == 200
    warfarin_patients(clinic, nina, 190, start=10)
    with CaptureQueriesContext(connection) as two_hundred:
        response = client.get(path)
    assert response.status_code == 200
    html = response.content.decode()
    if path.startswith(TODAY_URL):
        assert html.count('<tr id="awaiting-') == 200
    else:  # the patients list's clinical columns
        assert "Latest INR" in html and "Next INR test" in html and "TTR (6 months)" in html
        assert html.count("▼ 1.7</span>") == 50  # one page
        assert html.count(f'<td class="field-next_inr">{clinic_today(clinic).isoformat()}</td>') == 50
        # Rosendaal: 14 days in range, then 2.5 → 1.7 over 21 days is in range for 0.5/0.8 of them: 27.1/35 days.
        assert html.count('<td class="field-ttr">78 %</td>') == 50
    assert len(two_hundred) == len(ten), [q["sql"][:120] for q in two_hundred.captured_queries]


def test_the_dashboard_shows_the_dna_rate_per_clinic(client, clinic, nina):
    today = clinic_today(clinic)
    patient = PatientFactory(clinic=clinic, primary_nurse=nina)
    for index, status in enumerate(["done", "done", "done", "missed"]):
        FollowUp.objects.create(
            patient=patient,
            kind=FollowUpKind.INR_TEST,
            due_on=today - timedelta(days=10 + index),
            status=status,
            rule="t",
            key=f"dna-rate-{index}",
        )
    for weekly, followed in (("38.5", True), ("40", False)):
        WarfarinDose.objects.create(
            patient=patient,
            starts_on=today - timedelta(days=5),
            weekly_dose_mg=Decimal(weekly),
            suggested_weekly_dose_mg=Decimal("38.5"),
            followed_suggestion=followed,
        )
    client.force_login(nina)
    html = client.get("/admin/").content.decode()
    assert 'id="dash-dna"' in html
    assert "<td>4</td><td>1</td>" in html and "25.0 %" in html
    assert "1 of 2 (50.0 %)" in html  # the deviation rate (reference §4)
