"""Acceptance (issue 16) in a real browser: a nurse records a 6-month review with mRS 2 on the patient page; a
clinician records a major bleed in the admin — the urgent alert reaches a real SMTP server through a real
Celery worker, the plan shows "review needed", and the quality report shows the event. Screenshots saved."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from dateutil.relativedelta import relativedelta
from django.conf import settings as django_settings
from django.utils import timezone
from playwright.sync_api import expect

from anticoag.models import Plan, PlanStatus
from outcomes.models import ClinicalEvent, OutcomeAssessment
from patients.choices import Role
from scheduling.models import FollowUp, FollowUpStatus, Reminder, ReminderKind, ReminderStatus
from tests.factories import ClinicFactory, EpisodeFactory, PatientFactory, UserFactory
from tests.scheduling.conftest import broker, celery_worker, smtp_server, wait_for  # noqa: F401  (real services)

from .clinic_data import confirm_warfarin, log_in_at_home

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def world():
    clinic = ClinicFactory(name="Rennes CVT clinic", time_zone="Europe/Paris", alert_email="urgent@clinic.invalid")
    ana = UserFactory(username="nurse.ana", first_name="Ana", last_name="Silva", role=Role.NURSE, clinics=[clinic])
    cole = UserFactory(username="dr.cole", first_name="Dana", last_name="Cole", role=Role.CLINICIAN, clinics=[clinic])
    UserFactory(username="analyst", role=Role.REPORTING, clinics=[clinic])
    today = timezone.localdate()
    claire = PatientFactory(
        clinic=clinic, mrn="RN-2001", family_name="Lefebvre", given_name="Claire", primary_nurse=ana,
        responsible_clinician=cole,
    )  # fmt: skip
    episode = EpisodeFactory(patient=claire, diagnosed_on=today - relativedelta(months=6) - timedelta(days=3))
    confirm_warfarin(Plan.objects.get(episode=episode), cole)
    yield {"clinic": clinic, "claire": claire, "episode": episode}
    redis.Redis.from_url(django_settings.CELERY_BROKER_URL).flushdb()


@pytest.mark.usefixtures("celery_worker")
def test_outcome_review_major_bleed_alert_review_needed_and_quality_report(
    page, live_server, world, screenshot, browser, request
):
    smtp = request.getfixturevalue("smtp_server")
    claire, episode = world["claire"], world["episode"]
    patient_url = f"{live_server.url}/admin/patients/patient/{claire.pk}/change/"

    # 1. The nurse records the 6-month review with mRS 2 on the patient page.
    log_in_at_home(page, live_server, "nurse.ana")
    page.goto(patient_url)
    section = page.locator("#outcomes")
    expect(section).to_be_visible()
    form = page.locator("#record-outcome")
    form.get_by_label("Review:", exact=True).select_option(
        label=f"Outcome review (mRS) at 6m — due {(episode.diagnosed_on + relativedelta(months=6)).isoformat()}"
    )
    form.get_by_label("2 — Slight disability", exact=False).check()
    form.get_by_label("Back at work or school (optional)").select_option("partly")
    form.get_by_role("button", name="Record review").click()
    expect(page.locator(".messagelist")).to_contain_text(
        "Outcome review at 6 months recorded: mRS 2 (Slight disability"
    )
    expect(section.locator("table").first).to_contain_text("Slight disability")
    screenshot(page, "outcomes-1-nurse-records-6-month-review")
    review = OutcomeAssessment.objects.get(episode=episode)
    assert (review.timepoint, review.mrs, review.back_to_work) == ("6m", 2, "partly")
    assert FollowUp.objects.get(key=f"ep{episode.pk}:outcome_review:6m").status == FollowUpStatus.DONE

    # 2. The clinician records a major bleed (hemoglobin fall 2.0 g/dL) in the admin.
    clinician_context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="en-GB")
    doctor = clinician_context.new_page()
    log_in_at_home(doctor, live_server, "dr.cole")
    doctor.goto(f"{live_server.url}/admin/patients/patient/{claire.pk}/change/#outcomes")
    doctor.get_by_role("link", name="Record an event").click()
    doctor.get_by_label("Kind").select_option("bleeding")
    doctor.get_by_label("Occurred on").fill(timezone.localdate().isoformat())
    doctor.get_by_label("Bleeding site").select_option("gastrointestinal")
    doctor.get_by_label("Hemoglobin fall (g/dL)").fill("2.0")
    doctor.get_by_role("button", name="Save", exact=True).click()
    expect(doctor.locator(".messagelist")).to_contain_text(
        "Classified: Major bleeding (ISTH). hemoglobin fall of 2.0 g/dL"
    )
    screenshot(doctor, "outcomes-2-clinician-records-major-bleed")
    event = ClinicalEvent.objects.get(patient=claire)
    assert event.isth_class == "major" and event.on_anticoagulation

    # The urgent alert reaches the SMTP server through the worker, without the hemoglobin value.
    def sent() -> bool:
        return Reminder.objects.filter(kind=ReminderKind.URGENT, status=ReminderStatus.SENT).exists()

    wait_for(sent, what="the urgent bleeding alert to be sent")
    alert = Reminder.objects.get(kind=ReminderKind.URGENT)
    [mail] = [m for m in smtp.messages if m.message_id == alert.message_id]
    assert mail.rcpt_tos == ["urgent@clinic.invalid"]
    assert "RN-2001: major bleeding recorded, plan review needed" in mail.text
    assert "Plan review after a bleeding event" in mail.text
    for secret in ("RN-2001", "Lefebvre", "Claire", "bleed", "2.0"):
        assert secret not in mail.subject
    for secret in ("Lefebvre", "Claire", "2.0 g/dL", "hemoglobin"):
        assert secret not in mail.text + mail.html

    # 3. The plan shows "review needed" on the patient page, the event with its deciding criterion.
    doctor.goto(patient_url)
    expect(doctor.locator("#plans")).to_contain_text("review needed")
    expect(doctor.locator("#outcomes")).to_contain_text(
        "Major bleeding (ISTH) — hemoglobin fall of 2.0 g/dL (≥ 2 g/dL)"
    )
    doctor.locator("#plans").scroll_into_view_if_needed()
    screenshot(doctor, "outcomes-3-plan-review-needed")
    assert Plan.objects.get(episode=episode).status == PlanStatus.REVIEW

    # 4. The quality report shows the event.
    doctor.goto(f"{live_server.url}/admin/outcomes/clinicalevent/quality-report/")
    clinic_group = doctor.locator(".quality-group").first
    expect(clinic_group).to_contain_text("Rennes CVT clinic — whole clinic")
    major = clinic_group.locator('tr[data-rate="major_bleeding"]')
    expect(major.locator("td").first).to_have_text("1")
    expect(clinic_group).to_contain_text("mRS 0–2 at 6 months")
    expect(clinic_group.locator("tr", has_text="mRS 0–2 at 6 months")).to_contain_text("1 of 1")
    screenshot(doctor, "outcomes-4-quality-report")
    clinician_context.close()
