"""Admin for INR readings and doses: scoped lists, out-of-range marks, the advice, entry and CSV import."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone

from anticoag.admin import inr_label
from anticoag.inr import inr_reading_record
from anticoag.models import InrReading, WarfarinDose
from scheduling.models import FollowUp, FollowUpKind, Reminder
from tests.factories import ClinicFactory, PatientFactory, clinician, nurse

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinic():
    return ClinicFactory()


@pytest.fixture
def patient(clinic):
    return PatientFactory(clinic=clinic, mrn="ADM1")


@pytest.fixture
def staff_client(client, clinic):
    client.force_login(nurse(clinic))
    return client


def reading(patient, days, value, **kwargs):
    return inr_reading_record(
        patient=patient, drawn_at=timezone.now() - timedelta(days=days), value=value, source="lab", **kwargs
    )


@pytest.mark.parametrize(
    ("value", "label"),
    [
        ("3.8", "▲ 3.8 (above range)"),
        ("1.6", "▼ 1.6 (below range)"),
        ("2.5", "2.5 (in range)"),
        ("3.04", "3.04 (in range)"),
        ("3.05", "▲ 3.05 (above range)"),
        ("5.2", "▲ 5.2 (above range, critical)"),
    ],
)
def test_out_of_range_values_are_marked_in_words_not_only_colour(value, label):
    assert inr_label(Decimal(value)) == label


def test_the_list_shows_only_the_clinics_readings_with_marks_and_the_import_button(staff_client, patient):
    reading(patient, 2, "3.8")
    reading(PatientFactory(mrn="ELSEWHERE"), 2, "2.2")  # another clinic
    response = staff_client.get(reverse("admin:anticoag_inrreading_changelist"))
    page = response.content.decode()
    assert response.status_code == 200
    assert "▲ 3.8 (above range)" in page
    assert "ELSEWHERE" not in page
    assert reverse("admin:anticoag_inrreading_import") in page
    found = staff_client.get(reverse("admin:anticoag_inrreading_changelist"), {"q": "ADM1"})
    assert "▲ 3.8" in found.content.decode()
    assert (
        "▲"
        in staff_client.get(reverse("admin:anticoag_inrreading_changelist"), {"inr_range": "above"}).content.decode()
    )


def test_the_change_page_shows_the_advice_with_sources_and_verify_marks(staff_client, patient):
    reading(patient, 20, "2.4")
    reading(patient, 13, "2.6")
    latest = reading(patient, 6, "3.6")
    response = staff_client.get(reverse("admin:anticoag_inrreading_change", args=[latest.pk]))
    page = response.content.decode()
    assert response.status_code == 200
    next_on = timezone.localdate(latest.drawn_at, timezone=ZoneInfo(patient.clinic.time_zone)) + timedelta(days=7)
    assert "Next INR test" in page
    # 3.6–4.9: within 7 days, unverified row; the short citation carries the full one on hover
    assert ">VA practice</abbr> (Witt 2016) [verify]" in page
    assert "Weekly dose -10 %" in page
    assert "[verify]" in page
    assert f"{next_on.isoformat()}: INR &lt; 1.5, or 3.6-4.9" in page


def test_adding_a_reading_in_the_admin_records_who_and_schedules_and_alerts(staff_client, patient, clinic):
    drawn = timezone.now() - timedelta(hours=3)
    response = staff_client.post(
        reverse("admin:anticoag_inrreading_add"),
        {
            "patient": patient.pk,
            "drawn_at_0": drawn.date().isoformat(),
            "drawn_at_1": drawn.strftime("%H:%M:%S"),
            "value": "9.5",
            "source": "poc",
            "note": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    saved = InrReading.objects.get()
    assert saved.entered_by.username.startswith("user")
    assert FollowUp.objects.filter(kind=FollowUpKind.INR_TEST, key=f"inr:{patient.pk}:{saved.pk}").exists()
    alert = Reminder.objects.get()
    assert (alert.recipient, alert.reason) == (clinic.alert_email, "inr_critical")


def test_admin_refuses_an_implausible_value_naming_it(staff_client, patient):
    drawn = timezone.now() - timedelta(hours=3)
    response = staff_client.post(
        reverse("admin:anticoag_inrreading_add"),
        {
            "patient": patient.pk,
            "drawn_at_0": drawn.date().isoformat(),
            "drawn_at_1": "08:00:00",
            "value": "25",
            "source": "lab",
        },
    )
    assert response.status_code == 200
    assert "An INR above 20 is not plausible" in response.content.decode()
    assert not InrReading.objects.exists()


def upload(text):
    file = io.BytesIO(text.encode())
    file.name = "lab.csv"
    return file


def test_the_csv_import_view_shows_the_bad_rows_and_imports_nothing(staff_client, patient, clinic):
    url = reverse("admin:anticoag_inrreading_import")
    assert staff_client.get(url).status_code == 200
    stamp = (timezone.now() - timedelta(days=2)).isoformat()
    text = f"mrn,drawn_at,inr\nADM1,{stamp},2.5\nNOPE,{stamp},2.5\n"
    response = staff_client.post(url, {"clinic": clinic.pk, "file": upload(text)})
    page = response.content.decode()
    assert response.status_code == 200
    assert 'id="import-errors"' in page
    assert "<td>3</td><td>mrn</td>" in page
    assert "Nothing was imported" in page
    assert not InrReading.objects.exists()


def test_the_csv_import_view_imports_a_clean_file_and_says_how_many(staff_client, patient, clinic):
    stamp = (timezone.now() - timedelta(days=2)).isoformat()
    text = f"mrn,drawn_at,inr\nADM1,{stamp},2.5\n"
    response = staff_client.post(
        reverse("admin:anticoag_inrreading_import"), {"clinic": clinic.pk, "file": upload(text)}, follow=True
    )
    assert "Imported 1 INR readings for 1 patient(s)." in response.content.decode()
    assert InrReading.objects.count() == 1


def test_a_clinic_outside_yours_cannot_be_chosen_for_import(staff_client, patient):
    other = ClinicFactory()
    stamp = (timezone.now() - timedelta(days=2)).isoformat()
    response = staff_client.post(
        reverse("admin:anticoag_inrreading_import"),
        {"clinic": other.pk, "file": upload(f"mrn,drawn_at,inr\nADM1,{stamp},2.5\n")},
    )
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not InrReading.objects.exists()


def test_recording_a_dose_from_a_reading_prefills_the_advice_and_records_the_decision(client, clinic, patient):
    doctor = clinician(clinic)
    client.force_login(doctor)
    reading(patient, 20, "2.4")
    reading(patient, 13, "2.6")
    WarfarinDose.objects.create(patient=patient, starts_on=timezone.localdate() - timedelta(days=30), weekly_dose_mg=35)
    low = reading(patient, 1, "1.7")
    add = reverse("admin:anticoag_warfarindose_add")
    form = client.get(add, {"patient": patient.pk, "inr_reading": low.pk})
    assert form.status_code == 200
    assert form.context["adminform"].form.initial["suggested_weekly_dose_mg"] == 38.5
    response = client.post(
        add,
        {
            "patient": patient.pk,
            "inr_reading": low.pk,
            "starts_on": timezone.localdate().isoformat(),
            "weekly_dose_mg": "37.5",
            "tablet_strength_mg": "5.0",
            "hold_doses": "0",
            "suggested_weekly_dose_mg": "38.5",
            "next_inr_on": (timezone.localdate() + timedelta(days=6)).isoformat(),
            "note": "rounded to whole tablets",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    dose = WarfarinDose.objects.get(inr_reading=low)
    assert (dose.decided_by, dose.followed_suggestion) == (doctor, False)
    item = FollowUp.objects.get(kind=FollowUpKind.INR_TEST, status="scheduled")
    assert item.due_on == timezone.localdate() + timedelta(days=6)
