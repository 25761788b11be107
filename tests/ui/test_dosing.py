"""The dosing decision on the patient page, the patient's dosing letter (page and PDF) and the contact log.

The PDF is rendered to an image with Debian's pdftoppm and its text read with pdftotext (poppler-utils).
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from auditlog.models import LogEntry
from django.urls import reverse
from django.utils import timezone

from anticoag.dosing import dose_decide, dose_suggestion_for_patient
from anticoag.inr import clinic_today, dose_record, inr_reading_record
from anticoag.models import WarfarinDose
from patients.choices import Role
from patients.models import PatientContact
from tests.factories import ClinicFactory, PatientFactory, UserFactory

pytestmark = pytest.mark.django_db

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def clinic():
    return ClinicFactory(name="Leeds", phone="0113 496 0000", time_zone="Europe/London")


@pytest.fixture
def nina(clinic):
    return UserFactory(username="nina", role=Role.NURSE, clinics=[clinic])


@pytest.fixture
def carl(clinic):
    return UserFactory(username="carl", role=Role.CLINICIAN, clinics=[clinic])


@pytest.fixture
def patient(clinic, nina, carl):
    """Maintenance on 35 mg a week (5 mg a day); INR 1.7 today → nomogram +10 % = 38.5 mg."""
    patient = PatientFactory(clinic=clinic, mrn="LD-7", primary_nurse=nina, responsible_clinician=carl)
    # Two INRs in range first: past initiation, so the maintenance nomogram applies (reference §4).
    for days, value in ((35, "2.4"), (28, "2.6")):
        inr_reading_record(patient=patient, drawn_at=timezone.now() - timedelta(days=days), value=value, source="lab")
    first = inr_reading_record(patient=patient, drawn_at=timezone.now() - timedelta(days=21), value="2.5", source="lab")
    dose_record(
        patient=patient,
        weekly_dose_mg="35",
        starts_on=clinic_today(clinic) - timedelta(days=21),
        inr_reading=first,
        decided_by=carl,
    )
    inr_reading_record(patient=patient, drawn_at=timezone.now() - timedelta(hours=1), value="1.7", source="lab")
    return patient


def page_url(patient) -> str:
    return reverse("admin:patients_patient_change", args=[patient.pk])


def test_suggestion_in_tablets(patient):
    s = dose_suggestion_for_patient(patient=patient)
    assert s["current_weekly_mg"] == Decimal("35.0")
    assert s["nomogram_weekly_mg"] == 38.5
    assert s["suggested_weekly_mg"] == Decimal("38.5")
    assert s["change_percent"] == Decimal("10.0")
    assert s["schedule"]["exact"] is True
    # UK tablets (0.5, 1, 3, 5 mg): 5.5 mg a day = one 5 mg and one 0.5 mg tablet.
    assert {d["dose_mg"] for d in s["schedule"]["days"]} == {"5.5"}
    assert s["schedule"]["days"][0]["tablets"] == [
        {"strength_mg": "5", "count": "1"},
        {"strength_mg": "0.5", "count": "1"},
    ]
    assert s["decided"] is None


def test_nurse_accepts_in_one_action_and_the_page_shows_it(client, patient, nina):
    client.force_login(nina)
    html = client.get(page_url(patient)).content.decode()
    assert "Awaiting a dosing decision" in html and "38.5 mg" in html and "+10.0 %" in html

    response = client.post(reverse("admin:patients_patient_dose_decide", args=[patient.pk]), {"accept": "1"})

    assert response.status_code == 302
    dose = WarfarinDose.objects.filter(patient=patient).latest("pk")
    assert dose.weekly_dose_mg == Decimal("38.5")
    assert dose.followed_suggestion and dose.change_reason == "" and not dose.beyond_guardrail
    assert dose.decided_by == nina
    assert dose.schedule["weekly_mg"] == "38.5" and len(dose.schedule["days"]) == 7
    assert LogEntry.objects.get_for_object(dose).exists()  # audited
    html = client.get(page_url(patient)).content.decode()
    assert "Dose decided: 38.5 mg a week by nina" in html
    assert 'id="inr-history"' in html and "38.5 mg/week" in html


def test_a_departure_needs_a_reason_and_nothing_is_written_without_it(client, patient, nina):
    client.force_login(nina)
    url = reverse("admin:patients_patient_dose_decide", args=[patient.pk])
    next_on = clinic_today(patient.clinic) + timedelta(days=7)
    data = {"dose-weekly_dose_mg": "37", "dose-hold_doses": "0", "dose-next_inr_on": next_on.isoformat()}

    response = client.post(url, data)

    assert response.status_code == 200
    assert "Give a reason for departing from the suggestion (weekly dose" in response.content.decode()
    assert WarfarinDose.objects.filter(patient=patient).count() == 1

    response = client.post(url, {**data, "dose-change_reason": "Patient prefers fewer half tablets"})
    assert response.status_code == 302
    dose = WarfarinDose.objects.filter(patient=patient).latest("pk")
    assert dose.weekly_dose_mg == Decimal("37.0") and not dose.followed_suggestion
    assert dose.change_reason == "Patient prefers fewer half tablets"


def test_a_dose_the_tablets_cannot_make_is_refused_naming_the_field(client, patient, clinic, carl):
    clinic.tablet_strengths = "5"
    clinic.save()
    client.force_login(carl)
    url = reverse("admin:patients_patient_dose_decide", args=[patient.pk])
    next_on = clinic_today(patient.clinic) + timedelta(days=7)
    response = client.post(
        url,
        {
            "dose-weekly_dose_mg": "38.5",
            "dose-hold_doses": "0",
            "dose-next_inr_on": next_on.isoformat(),
            "dose-change_reason": "x",
        },
    )
    assert response.status_code == 200
    assert "cannot be made with the clinic&#x27;s tablets; the nearest is 40 mg" in response.content.decode()
    response = client.post(url, {"dose-weekly_dose_mg": "abc"})
    assert response.status_code == 200  # a form error, not a 500
    assert WarfarinDose.objects.filter(patient=patient).count() == 1


def test_beyond_the_guardrail_needs_a_clinician(patient, nina, carl):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        dose_decide(patient=patient, decided_by=nina, weekly_dose_mg="45", reason="big change")
    assert "needs a clinician" in refused.value.message_dict["weekly_dose_mg"][0]
    dose = dose_decide(
        patient=patient, decided_by=carl, weekly_dose_mg="45", reason="bleeding risk low", may_exceed_guardrail=True
    )
    assert dose.beyond_guardrail and dose.change_reason == "bleeding risk low"


def test_the_guardrail_setting_limits_the_suggestion(patient, clinic):
    clinic.dose_guardrail_percent = 5
    clinic.save()
    s = dose_suggestion_for_patient(patient=patient)
    assert s["guardrail_applied"] is True
    assert s["suggested_weekly_mg"] <= Decimal("36.75")


def _pdf_text_and_image(pdf: bytes, tmp_path: Path, name: str) -> str:
    assert shutil.which("pdftoppm") and shutil.which("pdftotext"), "poppler-utils missing: make test installs it"
    source = tmp_path / f"{name}.pdf"
    source.write_bytes(pdf)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    subprocess.run(["pdftoppm", "-png", "-r", "80", "-singlefile", str(source), str(SCREENSHOTS / name)], check=True)
    image = SCREENSHOTS / f"{name}.png"
    assert image.stat().st_size > 10_000  # a drawn page, not a blank one
    return subprocess.run(["pdftotext", "-layout", str(source), "-"], check=True, capture_output=True, text=True).stdout


def test_the_dosing_letter_pdf_shows_the_days_tablets_next_test_and_phone(client, patient, nina, tmp_path):
    client.force_login(nina)
    client.post(reverse("admin:patients_patient_dose_decide", args=[patient.pk]), {"accept": "1"})
    dose = WarfarinDose.objects.filter(patient=patient).latest("pk")

    response = client.get(reverse("admin:patients_patient_dosing_letter_pdf", args=[patient.pk]))

    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert "no-store" in response["Cache-Control"]
    assert response["Content-Disposition"].startswith("attachment;")
    text = _pdf_text_and_image(response.content, tmp_path, "dosing-letter-unit")
    assert "Your warfarin tablets" in text
    assert "5.5 mg" in text
    assert "Next INR test: " + f"{dose.next_inr_on:%A} {dose.next_inr_on.day} {dose.next_inr_on:%B %Y}" in text
    assert "0113 496 0000" in text
    today = clinic_today(patient.clinic)
    assert f"{today.day} {today:%b}" in text  # the calendar starts today
    assert "5 mg" in text and "0.5 mg" in text  # the tablets' strengths beside their drawings
    # Only what the patient needs: no INR value, no diagnosis.
    assert "1.7" not in text and "thrombosis" not in text.lower() and "CVT" not in text

    html = client.get(reverse("admin:patients_patient_dosing_letter", args=[patient.pk]))
    assert "no-store" in html["Cache-Control"]
    body = html.content.decode()
    assert "1 × 5 mg (pink)" in body and "1 × 0.5 mg (white)" in body and "INR test" in body


def test_the_letter_without_a_scheduled_dose_redirects_with_a_message(client, patient, nina):
    WarfarinDose.objects.filter(patient=patient).update(schedule={})
    client.force_login(nina)
    response = client.get(reverse("admin:patients_patient_dosing_letter_pdf", args=[patient.pk]))
    assert response.status_code == 302


def test_another_clinics_patient_is_404(client, patient):
    other = ClinicFactory(name="York")
    stranger = UserFactory(username="ola", role=Role.NURSE, clinics=[other])
    client.force_login(stranger)
    assert client.get(reverse("admin:patients_patient_dosing_letter_pdf", args=[patient.pk])).status_code in (
        302,
        404,
    )
    assert (
        client.post(reverse("admin:patients_patient_dose_decide", args=[patient.pk]), {"accept": "1"}).status_code
        == 404
    )
    assert WarfarinDose.objects.filter(patient=patient).count() == 1


def test_contact_log(client, patient, nina):
    client.force_login(nina)
    url = reverse("admin:patients_patient_contact_add", args=[patient.pk])
    response = client.post(url, {"contact-channel": "call", "contact-outcome": "nonsense"})
    assert response.status_code == 200 and not PatientContact.objects.exists()

    response = client.post(
        url, {"contact-channel": "call", "contact-outcome": "reached", "contact-note": "Told the new dose"}
    )

    assert response.status_code == 302
    contact = PatientContact.objects.get()
    assert (contact.channel, contact.outcome, contact.contacted_by) == ("call", "reached", nina)
    assert LogEntry.objects.get_for_object(contact).exists()
    html = client.get(page_url(patient)).content.decode()
    assert "Told the new dose" in html and "Reached the patient" in html


def test_the_letter_calendar_holds_the_first_doses_and_marks_the_test_day():
    from datetime import date

    from anticoag.tablets import UK_STRENGTHS, Tablets, weekly_schedule
    from clinic.letters import dated_days

    schedule = weekly_schedule(weekly_mg="31", tablets=Tablets(UK_STRENGTHS)).as_dict()  # 4 mg Mon, 4.5 mg else
    monday = date(2026, 12, 7)
    days = dated_days(
        start=monday,
        end=monday + timedelta(days=6),
        schedule=schedule,
        colours={"3": "blue", "1": "brown", "0.5": "white"},
        hold_doses=2,
        marks={monday + timedelta(days=6): "INR test"},
    )
    assert [d.text for d in days] == ["No warfarin (hold)"] * 2 + ["4.5 mg"] * 5
    assert days[0].tablets == () and days[-1].mark == "INR test"
    assert [(t.strength, t.count, t.colour) for t in days[2].tablets] == [
        ("3", Decimal("1"), "blue"),
        ("0.5", Decimal("3"), "white"),
    ]
