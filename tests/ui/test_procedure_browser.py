"""Procedures in a real browser (reference §8, issue acceptance): a clinician records a lumbar puncture for a
rivaroxaban patient diagnosed 2 months ago, sees the recent-CVT caution and confirms; the restart reminder is due
on its day in the nurse's work list; the letter's PDF shows the dated days. Screenshots in test-output/."""

from __future__ import annotations

import subprocess
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from dateutil.relativedelta import relativedelta
from django.utils import timezone
from playwright.sync_api import expect

from anticoag.procedure_models import Procedure, ProcedurePlanStatus
from patients.choices import Role
from scheduling.models import FollowUp, FollowUpKind, FollowUpStatus
from tests.factories import ClinicFactory, EpisodeFactory, PatientFactory, UserFactory

from .clinic_data import log_in_at_home

pytestmark = pytest.mark.django_db(transaction=True)
PARIS = ZoneInfo("Europe/Paris")


def test_a_clinician_plans_a_lumbar_puncture_for_a_rivaroxaban_patient(page, live_server, screenshot, tmp_path):
    clinic = ClinicFactory(name="Lyon CVT clinic", time_zone="Europe/Paris")
    UserFactory(username="dr.cole", first_name="Dana", last_name="Cole", role=Role.CLINICIAN, clinics=[clinic])
    ana = UserFactory(username="nurse.ana", first_name="Ana", last_name="Silva", role=Role.NURSE, clinics=[clinic])
    today = timezone.localdate()
    patient = PatientFactory(clinic=clinic, mrn="LY-2001", family_name="Petit", given_name="Inès", primary_nurse=ana)
    monday = today + timedelta(days=7 + (7 - today.weekday()) % 7 or 7)
    EpisodeFactory(patient=patient, diagnosed_on=today - relativedelta(months=2))

    # The clinician records the lumbar puncture from the patient page
    log_in_at_home(page, live_server, "dr.cole")
    page.goto(f"{live_server.url}/admin/patients/patient/{patient.pk}/change/")
    expect(page.locator("#procedures")).to_contain_text("No procedure recorded.")
    page.locator("#procedures").get_by_role("link", name="Record a procedure").click()
    page.get_by_label("Procedure date:").fill(monday.isoformat())
    page.get_by_label("Kind:").select_option("lumbar_puncture")
    page.get_by_label("Bleed risk:").select_option("low")
    page.get_by_label("Anticoagulant:").select_option("rivaroxaban")
    page.get_by_label("Who asked:").fill("Neurology, Dr Moreau")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".errornote")).to_be_visible()  # "low" refused beside the field
    expect(page.get_by_text("a lumbar puncture is a high bleed-risk procedure")).to_be_visible()
    page.get_by_label("Bleed risk:").select_option("high")
    page.get_by_role("button", name="Save", exact=True).click()
    procedure = Procedure.objects.get()

    # ... sees the proposal and the recent-CVT caution on the patient page
    page.goto(f"{live_server.url}/admin/patients/patient/{patient.pk}/change/#procedures")
    section = page.locator("#procedures")
    expect(section.locator(".procedure-caution")).to_contain_text("CVT within the last 3 months")
    expect(section).to_contain_text("Proposed, awaiting a clinician")
    last_dose, restart = monday - timedelta(days=3), monday + timedelta(days=2)
    expect(section.get_by_text(f"last dose {last_dose.isoformat()}")).to_be_visible()
    section.screenshot(path=str(screenshot.folder / "procedure-01-proposal.png"))

    # ... and confirms, acknowledging the caution (refused without it)
    section.get_by_role("link", name="Confirm or change the plan").click()
    page.get_by_role("button", name="Confirm procedure plan").click()
    expect(page.get_by_text("Acknowledge these warnings before confirming: recent_cvt")).to_be_visible()
    page.locator("input[name='acknowledged_warnings'][value='recent_cvt']").check()
    screenshot(page, "procedure-02-confirm")
    page.get_by_role("button", name="Confirm procedure plan").click()
    expect(page.get_by_text("Procedure plan confirmed; its follow-ups are scheduled.")).to_be_visible()
    expect(page.locator("#procedures")).to_contain_text("✓ Confirmed")
    screenshot(page, "procedure-03-confirmed")
    procedure.refresh_from_db()
    assert procedure.plan_status == ProcedurePlanStatus.CONFIRMED

    restart_item = FollowUp.objects.get(kind=FollowUpKind.PROCEDURE_RESTART, patient=patient)
    assert (restart_item.due_on, restart_item.status) == (restart, FollowUpStatus.SCHEDULED)

    # The letter: a printable page, and the PDF with the dated days
    page.locator("#procedures").get_by_role("link", name="Patient letter").click()
    expect(page.get_by_role("heading", name="Your anticoagulant around your procedure")).to_be_visible()
    screenshot(page, "procedure-04-letter")
    pdf = page.request.get(f"{live_server.url}/clinic/procedures/{procedure.pk}/letter.pdf")
    assert pdf.ok and pdf.headers["content-type"] == "application/pdf"
    path = tmp_path / "letter.pdf"
    path.write_bytes(pdf.body())
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout
    for day in range(-3, 3):
        on = monday + timedelta(days=day)
        assert f"{on:%A} {on.day} {on:%B %Y}" in text, on
    assert text.count("DON'T TAKE") == 4  # two days before, the day of the procedure and the day after
    assert f"Start Rivaroxaban again on {restart:%A} {restart.day} {restart:%B %Y}" in text
    subprocess.run(["pdftoppm", "-png", "-r", "70", "-singlefile", str(path),
                    str(screenshot.folder / "procedure-05-letter-pdf")], check=True)  # fmt: skip

    # On the restart day the nurse's Today and work list show the reminder as due today
    page.context.clear_cookies()
    with time_machine.travel(datetime.combine(restart, time(8, 30), tzinfo=PARIS), tick=True):
        log_in_at_home(page, live_server, "nurse.ana")
        page.goto(f"{live_server.url}/clinic/today/")
        step = page.locator("#procedure-steps").get_by_role("row", name="Restart anticoagulation after a procedure")
        expect(step).to_contain_text("LY-2001")
        expect(step).to_contain_text("due today")
        screenshot(page, "procedure-06a-nurse-today-on-restart-day")
        page.goto(f"{live_server.url}/admin/")
        page.get_by_role("link", name="My work: my patients").click()
        row = page.get_by_role("row", name="Restart anticoagulation after a procedure")
        expect(row).to_contain_text("LY-2001")
        expect(row).to_contain_text("Due today")
        screenshot(page, "procedure-06-nurse-work-on-restart-day")
