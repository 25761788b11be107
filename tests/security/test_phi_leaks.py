"""PHI minimisation: realistic flows over the demo clinic leave no patient name or date of birth in any log
record, any e-mail (subject, body, links), any error report or any 500 page.

The flows: the reminder sweep (digests, escalations) and a critical-INR alert sent through a real SMTP server;
API reads, refused input and exports; admin pages, a refused form and a search; a forced server error with
ADMINS set, so its report is e-mailed too. Every log record of every logger is captured from DEBUG up.
"""

from __future__ import annotations

import io
import logging
import re
from datetime import datetime, time, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from anticoag.inr import clinic_zone, inr_reading_record
from anticoag.models import InrSource
from patients.models import Patient
from scheduling.models import Reminder, ReminderStatus
from scheduling.outbox import reminder_send, sweep
from tests.api.conftest import client_for
from tests.scheduling.conftest import smtp_server  # noqa: F401  (the real SMTP server fixture)

pytestmark = pytest.mark.django_db

MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def forbidden_patterns(patients: list[Patient]) -> dict[str, re.Pattern]:
    """Each demo patient's given and family name (whole words) and date of birth in the usual formats."""
    patterns: dict[str, re.Pattern] = {}
    for p in patients:
        for name in (p.given_name, p.family_name):
            patterns[name] = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)", re.IGNORECASE)
        dob = p.date_of_birth
        month = MONTHS[dob.month - 1]
        for text in (
            dob.isoformat(),
            f"{dob:%d.%m.%Y}",
            f"{dob:%d/%m/%Y}",
            f"{dob:%m/%d/%Y}",
            f"{dob:%Y%m%d}",
            f"{dob.day} {month} {dob.year}",
            f"{month} {dob.day}, {dob.year}",
            f"{month[:3]}. {dob.day}, {dob.year}",
        ):
            patterns[text] = re.compile(re.escape(text))
    return patterns


def leaks(text: str, patterns: dict[str, re.Pattern]) -> list[str]:
    return sorted(label for label, pattern in patterns.items() if pattern.search(text))


def formatted(record: logging.LogRecord) -> str:
    return logging.Formatter("%(name)s %(levelname)s %(message)s").format(record)


@pytest.fixture
def demo(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("seed_demo", stdout=io.StringIO())
    return list(Patient.objects.select_related("clinic"))


def test_no_patient_name_or_date_of_birth_in_logs_emails_or_error_reports(
    demo,
    smtp_server,  # noqa: F811  (the fixture imported above)
    caplog,
    settings,
    monkeypatch,
):
    from django.contrib.auth import get_user_model

    caplog.set_level(logging.DEBUG)
    for name in ("django", "django.request", "django.server", "celery", "scheduling", "anticoag", "axes"):
        caplog.set_level(logging.DEBUG, logger=name)
    settings.ADMINS = [("Operators", "ops@clinic.invalid")]
    settings.DEBUG_PROPAGATE_EXCEPTIONS = False
    users = {u.username: u for u in get_user_model().objects.all()}
    patient = demo[0]
    clinic = patient.clinic
    assert demo, "the demo clinic has patients"

    # --- a critical INR (urgent alert), then the sweep at the end of the clinic's day (digests, escalations)
    inr_reading_record(
        patient=patient,
        drawn_at=timezone.now() - timedelta(hours=1),
        value=Decimal("9.5"),
        source=InrSource.POINT_OF_CARE,
        bleeding=True,
        entered_by=users["nurse.ana"],
        note=f"{patient.given_name} called",  # free text may name the patient: it must not travel further
    )
    zone = clinic_zone(clinic)
    evening = datetime.combine(timezone.now().astimezone(zone).date(), time(23, 0), tzinfo=zone)
    counts = sweep(now=evening)
    for reminder_id in Reminder.objects.filter(status=ReminderStatus.PENDING).values_list("pk", flat=True):
        reminder_send(reminder_id=reminder_id, now=evening + timedelta(minutes=1))
    kinds = set(Reminder.objects.filter(status=ReminderStatus.SENT).values_list("kind", flat=True))
    assert counts["digests"] >= 1
    assert {"digest", "urgent"} <= kinds, kinds

    # --- the API: reads, a FHIR bundle, an export, refused input, an unknown record
    api = client_for(users["clinician"])
    assert api.get("/api/v1/patients/", {"page_size": 50}).status_code == 200
    assert api.get(f"/api/v1/patients/{patient.pk}/").status_code == 200
    assert api.get(f"/api/v1/patients/{patient.pk}/fhir/").status_code == 200
    export = api.get("/api/v1/exports/patients.csv")
    assert export.status_code == 200
    assert patient.family_name in b"".join(export.streaming_content).decode()  # the export itself carries it
    assert (
        api.get("/api/v1/patients/", {"mrn": patient.given_name, "birthday": str(patient.date_of_birth)}).status_code
        == 400
    )
    bad = api.post(
        "/api/v1/inr-readings/", {"patient": patient.pk, "drawn_at": "yesterday", "value": "99"}, format="json"
    )
    assert bad.status_code == 400
    assert api.get("/api/v1/patients/999999999/").status_code == 404
    assert client_for(users["reporting"]).post("/api/v1/inr-readings/", {}, format="json").status_code == 403

    # --- the admin: the patient page, a search by name, a refused INR form
    staff = Client()
    staff.force_login(users["nurse.ana"])
    page = reverse("admin:patients_patient_change", args=[patient.pk])
    assert staff.get(page).status_code == 200
    assert staff.get(reverse("admin:patients_patient_changelist"), {"q": patient.family_name}).status_code == 200
    refused = staff.post(
        reverse("admin:patients_patient_record_inr", args=[patient.pk]),
        {"inr-drawn_at": "2999-01-01T10:00", "inr-value": "abc", "inr-source": "poc", "inr-note": patient.family_name},
    )
    assert refused.status_code == 200
    assert staff.get(reverse("admin:index")).status_code == 200

    # --- a forced server error while saving the patient form: the report goes to ADMINS by e-mail
    from clinic.admin import PatientPageAdmin

    def broken_save(self, request, obj, form, change):
        raise RuntimeError("forced failure while saving")

    monkeypatch.setattr(PatientPageAdmin, "save_model", broken_save)
    crasher = Client(raise_request_exception=False)
    crasher.force_login(users["admin"])
    form = {
        "clinic": clinic.pk,
        "mrn": patient.mrn,
        "given_name": patient.given_name,
        "family_name": patient.family_name,
        "date_of_birth": patient.date_of_birth.isoformat(),
        "sex": patient.sex,
        "weight_kg": patient.weight_kg or "",
        "active": "on",
        "episodes-TOTAL_FORMS": "0",
        "episodes-INITIAL_FORMS": "0",
        "lab_results-TOTAL_FORMS": "0",
        "lab_results-INITIAL_FORMS": "0",
    }
    error = crasher.post(page, form)
    assert error.status_code == 500
    assert not leaks(error.content.decode(), forbidden_patterns([patient])), "the 500 page echoes patient data"

    # --- now scan everything that left the process
    patterns = forbidden_patterns(demo)
    records = caplog.records
    assert any("Reminder" in r.getMessage() for r in records), "the flows were logged"
    assert any(r.name == "django.request" and r.levelno == logging.ERROR for r in records), "the error was logged"
    for record in records:
        found = leaks(formatted(record), patterns)
        assert not found, f"log record {record.name}: {found}: {formatted(record)[:300]}"

    sent = smtp_server.messages
    assert len(sent) >= 2
    for received in sent:
        for part in received.message.walk():
            if part.is_multipart():
                continue
            found = leaks(part.get_content(), patterns)
            assert not found, f"e-mail {received.subject!r}: {found}"
        assert not leaks(received.subject, patterns)
        assert "MRN" not in received.subject and "DEMO-" not in received.subject
        for url in re.findall(r"https?://[^\s\"'<>]+", received.text):
            # a link names a page and ids: lower-case route words and numbers only
            path = url.split("://", 1)[1].partition("/")[2]
            assert re.fullmatch(r"[a-z0-9_\-/]*(\?[a-z0-9_=&\-]*)?(#[a-z0-9\-]*)?", path), url

    reports = [m for m in mail.outbox if "ops@clinic.invalid" in m.to] + [
        r for r in sent if "ops@clinic.invalid" in r.rcpt_tos
    ]
    assert reports, "the server error was reported to ADMINS"
    for report in reports:
        text = report.body if hasattr(report, "body") else report.message.as_string()
        assert "forced failure while saving" in text
        found = leaks(text, patterns)
        assert not found, f"error report: {found}"
