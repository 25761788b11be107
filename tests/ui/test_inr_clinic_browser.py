"""Acceptance (issue 14) in Chromium: the INR clinic's day.

A nurse logs in and lands on Today, opens the patient whose INR is 1.7, accepts the suggested dose in one
action, downloads the dosing letter (its PDF, rendered to an image with pdftoppm, shows the days and the
tablets) and logs a call. A clinician overrides a dose with a reason. Screenshots of each step are saved under
test-output/screenshots/ (14-*.png).
"""

from __future__ import annotations

import re
import subprocess
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from anticoag.inr import clinic_today, dose_record, inr_reading_record
from anticoag.models import WarfarinDose
from patients.choices import Role
from patients.models import PatientContact
from tests.factories import ClinicFactory, PatientFactory, UserFactory

from .clinic_data import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def day():
    """Leeds: nurse Nina, Dr Carr; Mr Ahmed on 35 mg a week (5 mg a day), past initiation, INR 1.7 today."""
    clinic = ClinicFactory(
        name="Leeds anticoagulation clinic", time_zone="Europe/London", phone="0113 496 0000"
    )  # UK tablets by default: 0.5 (white), 1 (brown), 3 (blue), 5 mg (pink)
    nina = UserFactory(username="nurse.nina", first_name="Nina", last_name="Shah", role=Role.NURSE, clinics=[clinic])
    carr = UserFactory(username="dr.carr", first_name="Sam", last_name="Carr", role=Role.CLINICIAN, clinics=[clinic])
    patient = PatientFactory(
        clinic=clinic,
        mrn="LD-2001",
        given_name="Omar",
        family_name="Ahmed",
        primary_nurse=nina,
        responsible_clinician=carr,
        phone="07700 900456",
        preferred_contact="phone",
    )
    now = timezone.now()
    for days, value in ((42, "2.3"), (35, "2.4"), (28, "2.6")):
        reading = inr_reading_record(patient=patient, drawn_at=now - timedelta(days=days), value=value, source="lab")
        if days == 42:
            dose_record(
                patient=patient,
                weekly_dose_mg="35",
                starts_on=clinic_today(clinic) - timedelta(days=42),
                inr_reading=reading,
                decided_by=carr,
            )
    inr_reading_record(patient=patient, drawn_at=now - timedelta(hours=2), value="1.7", source="poc")
    return {"clinic": clinic, "nina": nina, "carr": carr, "patient": patient}


def log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/admin/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def test_a_nurse_doses_from_today_prints_the_letter_and_logs_a_call(page, live_server, day, screenshot, tmp_path):
    patient = day["patient"]

    # Log in → land on Today.
    log_in(page, live_server, "nurse.nina")
    page.wait_for_url(f"{live_server.url}/clinic/today/")
    row = page.locator(f"#awaiting-{patient.pk}")
    expect(row).to_contain_text("1.7")
    expect(row).to_contain_text("38.5 mg/week")
    expect(row).to_contain_text("+10.0 %")
    screenshot(page, "14-01-today")

    # Open the patient with the INR of 1.7.
    row.get_by_role("link", name="Ahmed, Omar").click()
    page.wait_for_url(re.compile(rf"/admin/patients/patient/{patient.pk}/change/"))
    dosing = page.locator("#dosing")
    expect(dosing).to_contain_text("Awaiting a dosing decision")
    expect(dosing.locator("#dose-suggestion")).to_contain_text("38.5 mg")
    expect(dosing.locator(".clinic-week")).to_contain_text("5.5 mg")
    dosing.scroll_into_view_if_needed()
    screenshot(page, "14-02-patient-dosing")

    # Accept the suggestion in one action.
    dosing.get_by_role("button", name="Accept the suggestion").click()
    expect(page.locator(".messagelist")).to_contain_text("Dose recorded: 38.5 mg a week")
    expect(page.locator("#dosing")).to_contain_text("Dose decided: 38.5 mg a week")
    dose = WarfarinDose.objects.filter(patient=patient).latest("pk")
    assert dose.weekly_dose_mg == Decimal("38.5") and dose.followed_suggestion and dose.decided_by == day["nina"]
    screenshot(page, "14-03-dose-accepted")

    # The printable letter, then its PDF download.
    page.get_by_role("link", name="Patient's dosing letter").click()
    expect(page.locator("h1")).to_have_text("Your warfarin tablets")
    expect(page.locator("body")).to_contain_text("Next INR test:")
    screenshot(page, "14-04-letter-page")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download as PDF").click()
    download = download_info.value
    assert download.suggested_filename.startswith("dosing-letter-") and download.suggested_filename.endswith(".pdf")
    pdf = tmp_path / "letter.pdf"
    download.save_as(pdf)
    subprocess.run(
        ["pdftoppm", "-png", "-r", "90", "-singlefile", str(pdf), str(screenshot.folder / "14-05-letter-pdf")],
        check=True,
    )
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True).stdout
    today = clinic_today(day["clinic"])
    assert f"{today.day} {today:%b}" in text and "5.5 mg" in text and "0.5 mg" in text
    assert f"Next INR test: {dose.next_inr_on:%A} {dose.next_inr_on.day} {dose.next_inr_on:%B %Y}" in text
    assert "0113 496 0000" in text and "1.7" not in text

    # Log a call.
    page.goto(f"{live_server.url}/admin/patients/patient/{patient.pk}/change/#contacts")
    contacts = page.locator("#contacts")
    expect(contacts).to_contain_text("07700 900456")
    contacts.get_by_label("Contact:", exact=True).select_option("call")
    contacts.get_by_label("Outcome").select_option("reached")
    contacts.get_by_label("Note").fill("Explained the new dose and the letter")
    contacts.get_by_role("button", name="Log contact").click()
    expect(page.locator(".messagelist")).to_contain_text("Logged: Call, reached the patient.")
    expect(page.locator("#contact-log")).to_contain_text("Explained the new dose and the letter")
    page.locator("#contacts").scroll_into_view_if_needed()
    screenshot(page, "14-06-call-logged")
    contact = PatientContact.objects.get(patient=patient)
    assert (contact.channel, contact.outcome, contact.contacted_by) == ("call", "reached", day["nina"])


def test_a_clinician_overrides_a_dose_with_a_reason(page, live_server, day, screenshot):
    patient = day["patient"]
    log_in(page, live_server, "dr.carr")
    page.wait_for_url(f"{live_server.url}/admin/")
    page.goto(f"{live_server.url}/admin/patients/patient/{patient.pk}/change/#dosing")
    dosing = page.locator("#dosing")
    dosing.locator("#dosing-change-summary").click()
    form = dosing.locator("#dose-change-form")
    form.get_by_label("Weekly dose (mg)").fill("42")
    form.get_by_role("button", name="Record this dose").click()

    # No reason: refused beside the field, nothing written.
    expect(page.locator("#dosing")).to_contain_text("Give a reason for departing from the suggestion (weekly dose)")
    assert WarfarinDose.objects.filter(patient=patient).count() == 1
    page.locator("#dosing").scroll_into_view_if_needed()
    screenshot(page, "14-07-override-needs-reason")

    form = page.locator("#dose-change-form")
    form.get_by_label("Weekly dose (mg)").fill("42")
    form.get_by_label("Reason for the change").fill("Missed several doses last week; INR expected to recover")
    form.get_by_role("button", name="Record this dose").click()
    expect(page.locator(".messagelist")).to_contain_text("Dose recorded: 42.0 mg a week")
    dose = WarfarinDose.objects.filter(patient=patient).latest("pk")
    assert dose.weekly_dose_mg == Decimal("42.0") and not dose.followed_suggestion
    assert dose.change_reason.startswith("Missed several doses") and dose.decided_by == day["carr"]
    assert dose.schedule["weekly_mg"] == "42"  # 6 mg a day: 1 × 5 mg + 1 × 1 mg
    expect(page.locator("#inr-history")).to_contain_text("42.0 mg/week")
    page.locator("#dosing").scroll_into_view_if_needed()
    screenshot(page, "14-08-clinician-override")
