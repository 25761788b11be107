"""Issue 15 in a real browser: the demo clinic's dashboard, the INR chart on a real time scale (in a browser
whose own zone is not the clinic's), and the escalation and critical-INR e-mails as a mail client shows them.
Screenshots: test-output/screenshots/15-*.png."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from io import StringIO

import pytest
import redis
from django.conf import settings as django_settings
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import expect

from anticoag.inr import inr_reading_record
from anticoag.models import InrReading
from patients.management.commands.seed_demo import DEMO_PASSWORD
from scheduling import outbox
from scheduling.emails import reminder_render
from scheduling.models import Reminder, ReminderKind
from tests.factories import ClinicFactory, PatientFactory, clinician, nurse
from tests.scheduling.factories import FollowUpFactory

pytestmark = pytest.mark.django_db(transaction=True)

CHART = """() => {
  const chart = Chart.getChart("inr-chart"), x = chart.scales.x, y = chart.scales.y;
  const midnight = (ms) => { const d = new Date(ms); return new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime(); };
  const day = (ms) => { const d = new Date(ms), p = (n) => String(n).padStart(2, "0");
                        return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()); };
  const meta = chart.getDatasetMeta(0);
  return {
    type: x.type,
    xTicks: x.ticks.map((t) => ({ value: t.value, label: t.label, midnight: t.value === midnight(t.value) })),
    yTicks: y.ticks.map((t) => ({ value: t.value, label: t.label })),
    points: chart.data.datasets[0].data.map((p, i) => ({
      clinicDay: p.t.slice(0, 10), shownDay: day(p.x), px: meta.data[i].x,
      dayStartPx: x.getPixelForValue(midnight(p.x)), dayEndPx: x.getPixelForValue(midnight(p.x) + 86400000 + 3600000),
    })),
  };
}"""


@pytest.fixture
def demo():
    call_command("seed_demo", stdout=StringIO())
    yield
    redis.Redis.from_url(django_settings.CELERY_BROKER_URL).flushdb()  # alerts enqueued on commit


def open_tab(browser, timezone_id: str):
    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="en-GB", timezone_id=timezone_id)
    context.set_default_timeout(20_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return context, tab, errors


def log_in(tab, live_server, username: str) -> None:
    tab.goto(f"{live_server.url}/")  # the front door leads to the login, then the dashboard
    tab.get_by_label("Username").fill(username)
    tab.get_by_label("Password").fill(DEMO_PASSWORD)
    tab.get_by_role("button", name="Log in").click()
    tab.wait_for_url(f"{live_server.url}/admin/")


def test_the_demo_dashboard_and_a_patients_inr_chart(browser, live_settings, live_server, demo, screenshot):
    # a browser in Chicago looking at a Paris clinic: the chart still puts each reading on its clinic day
    context, tab, errors = open_tab(browser, "America/Chicago")
    log_in(tab, live_server, "clinician")

    # the dashboard: a TTR distribution, lost-to-follow-up figures, items due today, the critical INR
    tab.wait_for_function("() => !!(window.Chart && Chart.getChart('ttr-chart'))")
    expect(tab.locator("#dash-ttr")).to_contain_text("median TTR")
    expect(tab.locator("#dash-lost")).to_contain_text(re.compile(r"\b[1-9] of \d+ warfarin patients"))
    due_today = tab.locator("#dash-work tfoot td").nth(1).inner_text()
    assert int(due_today) >= 3
    expect(tab.locator("#dash-alerts")).to_contain_text("INR 6.4")
    screenshot(tab, "15-dashboard-demo")

    # the patient with the critical INR: the chart on a time scale
    critical = InrReading.objects.get(value=Decimal("6.4"))
    tab.goto(f"{live_server.url}/admin/patients/patient/{critical.patient_id}/change/")
    tab.wait_for_function("() => !!(window.Chart && Chart.getChart('inr-chart'))")
    chart = tab.evaluate(CHART)
    assert chart["type"] == "time"
    # x ticks on (browser-local) midnights, labelled as dates; gridlines at whole days
    assert chart["xTicks"] and all(t["midnight"] for t in chart["xTicks"])
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d|[A-Z][a-z]{2} \d{4}", t["label"]) for t in chart["xTicks"])
    # y ticks in half-INR steps, one decimal ("6.5", never "6.10")
    assert all(abs(t["value"] * 2 - round(t["value"] * 2)) < 1e-9 for t in chart["yTicks"])
    assert all(re.fullmatch(r"\d+\.\d", t["label"]) for t in chart["yTicks"])
    assert max(t["value"] for t in chart["yTicks"]) >= 6.5
    # every point on its clinic day, within that day's gridlines
    assert len(chart["points"]) > 5
    for point in chart["points"]:
        assert point["shownDay"] == point["clinicDay"]
        assert point["dayStartPx"] <= point["px"] <= point["dayEndPx"], point
    screenshot(tab, "15-patient-page-demo")
    tab.locator("#inr-chart-section").screenshot(path=str(screenshot.folder / "15-inr-chart-demo.png"))
    context.close()
    assert not errors, errors


def test_the_escalation_and_critical_inr_emails_as_rendered(browser, live_settings, screenshot):
    # given a Paris clinic with a clinician responsible for patients with overdue items, and a critical INR
    clinic = ClinicFactory(name="Mail clinic", time_zone="Europe/Paris", digest_time=time(7))
    doctor, carer = clinician(clinic), nurse(clinic)
    today = date(2026, 6, 10)
    for n, overdue in enumerate([9, 15, 23]):
        patient = PatientFactory(clinic=clinic, mrn=f"ESC-{n + 1}", responsible_clinician=doctor, primary_nurse=carer)
        FollowUpFactory(patient=patient, due_on=today - timedelta(days=overdue))
    outbox.reminders_materialise_due(now=datetime(2026, 6, 10, 9, 0, tzinfo=UTC))
    escalation = Reminder.objects.get(kind=ReminderKind.ESCALATION, recipient=doctor.email)
    patient = PatientFactory(clinic=clinic, mrn="CRIT-1", primary_nurse=carer, responsible_clinician=doctor)
    inr_reading_record(patient=patient, drawn_at=timezone.now() - timedelta(hours=1), value="9.6", source="poc")
    critical = Reminder.objects.get(kind=ReminderKind.URGENT, recipient=carer.email)
    redis.Redis.from_url(django_settings.CELERY_BROKER_URL).flushdb()

    context = browser.new_context(viewport={"width": 900, "height": 700})
    tab = context.new_page()
    for reminder, name in [(escalation, "15-email-escalation"), (critical, "15-email-critical-inr")]:
        rendered = reminder_render(reminder=reminder)
        tab.set_content(f"<p style='font:12px monospace'>Subject: {rendered.subject}</p>{rendered.html}")
        screenshot(tab, name)
        text = tab.locator("body").inner_text()
        if reminder.kind == ReminderKind.ESCALATION:
            assert rendered.subject == "Escalation: overdue follow-ups"
            assert "These 3 follow-ups are overdue" in text and "23 days" in text
            assert all(f"ESC-{n}" in text for n in (1, 2, 3))
        else:
            assert "MRN CRIT-1: critical INR result." in text
            assert "9.6" not in text and "CRIT-1" not in rendered.subject
    context.close()
