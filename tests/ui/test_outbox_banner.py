"""The administrators' outbox banner in a real browser (issue 19): an administrator logs in, sees that an
urgent alert is undelivered and a reminder was refused for good, and follows the link to the failed rows."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from scheduling.models import ReminderKind, ReminderStatus
from tests.factories import ClinicFactory
from tests.scheduling.factories import ReminderFactory

from .clinic_data import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_administrator_sees_undelivered_alerts_and_failures_and_opens_them(page, live_server, screenshot):
    get_user_model().objects.create_superuser("admin.outbox", "admin@clinic.invalid", PASSWORD)
    clinic = ClinicFactory(name="Outbox clinic")
    ReminderFactory(
        clinic=clinic,
        kind=ReminderKind.URGENT,
        status=ReminderStatus.PENDING,
        attempts=3,
        last_error="SMTPRecipientsRefused: 451 try again later",
    )
    ReminderFactory(
        clinic=clinic,
        kind=ReminderKind.DIGEST,
        status=ReminderStatus.FAILED,
        recipient="moved.away@clinic.invalid",
        attempts=1,
        last_error="SMTPRecipientsRefused: 550 5.1.1 No such user here",
    )

    page.goto(f"{live_server.url}/admin/")
    page.get_by_label("Username").fill("admin.outbox")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/admin/")

    banner = page.get_by_role("alert")
    expect(banner).to_contain_text("E-mail delivery needs attention")
    expect(banner.get_by_role("link", name="1 urgent alert not delivered")).to_be_visible()
    screenshot(page, "19-outbox-banner")

    banner.get_by_role("link", name="1 reminder refused for good").click()
    expect(page.get_by_text("moved.away@clinic.invalid")).to_be_visible()
    assert "status__exact=failed" in page.url
