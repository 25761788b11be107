"""Procedures in the admin, on the patient page, in the API and as the patient's letter (HTML and PDF)."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from dateutil.relativedelta import relativedelta
from django.urls import reverse
from django.utils import timezone

from anticoag.procedure_models import Procedure, ProcedurePlanStatus
from anticoag.procedure_services import procedure_confirm, procedure_record
from scheduling.models import FollowUp, FollowUpKind
from tests.api.conftest import client_for
from tests.factories import ClinicFactory, EpisodeFactory, PatientFactory, clinician, nurse

pytestmark = pytest.mark.django_db

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world():
    clinic = ClinicFactory(name="Angers")
    doctor, ana = clinician(clinic), nurse(clinic)
    patient = PatientFactory(clinic=clinic, mrn="AN-7", family_name="Roux", given_name="Alice")
    monday = timezone.localdate() + timedelta(days=14 - timezone.localdate().weekday())
    EpisodeFactory(patient=patient, diagnosed_on=monday - relativedelta(months=2))
    return {"clinic": clinic, "doctor": doctor, "nurse": ana, "patient": patient, "monday": monday}


def confirmed_warfarin(world) -> Procedure:
    procedure = procedure_record(
        patient=world["patient"], scheduled_on=world["monday"], kind="endoscopy", bleed_risk="low", agent="warfarin"
    )
    procedure_confirm(procedure=procedure, user=world["doctor"], acknowledged_warnings=["recent_cvt"])
    procedure.refresh_from_db()
    return procedure


def test_the_admin_add_form_refuses_low_risk_for_a_lumbar_puncture_beside_the_field(client, world):
    client.force_login(world["nurse"])
    data = {"patient": world["patient"].pk, "scheduled_on": world["monday"].isoformat(), "kind": "lumbar_puncture",
            "bleed_risk": "low", "agent": "rivaroxaban", "requested_by": "Neurology", "status": "planned",
            "decisions-TOTAL_FORMS": "0", "decisions-INITIAL_FORMS": "0"}  # fmt: skip
    response = client.post(reverse("admin:anticoag_procedure_add"), data)
    assert response.status_code == 200
    assert "high bleed-risk procedure" in str(response.context["adminform"].form.errors["bleed_risk"])
    assert not Procedure.objects.exists()

    data["bleed_risk"] = "high"
    response = client.post(reverse("admin:anticoag_procedure_add"), data)
    assert response.status_code == 302
    procedure = Procedure.objects.get()
    assert procedure.plan_status == ProcedurePlanStatus.PROPOSED and procedure.recorded_by == world["nurse"]


def test_nurses_see_no_confirm_action_and_are_refused_the_confirm_page(client, world):
    procedure = procedure_record(
        patient=world["patient"], scheduled_on=world["monday"], kind="dental", bleed_risk="low", agent="apixaban"
    )
    client.force_login(world["nurse"])
    page = client.get(reverse("admin:patients_patient_change", args=[world["patient"].pk])).content.decode()
    assert "Dental procedure on" in page and "CVT within the last 3 months" in page
    assert "Confirm or change the plan" not in page
    assert client.get(reverse("admin:anticoag_procedure_confirm", args=[procedure.pk])).status_code == 403

    client.force_login(world["doctor"])
    page = client.get(reverse("admin:patients_patient_change", args=[world["patient"].pk])).content.decode()
    assert "Confirm or change the plan" in page
    confirm = reverse("admin:anticoag_procedure_confirm", args=[procedure.pk])
    response = client.post(confirm, {"skip_days": 1, "restart_after": 1, "change_reason": ""})
    assert response.status_code == 200 and "Acknowledge these warnings" in response.content.decode()
    response = client.post(confirm, {"skip_days": 1, "restart_after": 1, "acknowledged_warnings": ["recent_cvt"]})
    assert response.status_code == 302
    assert FollowUp.objects.filter(
        kind=FollowUpKind.PROCEDURE_RESTART, due_on=world["monday"] + timedelta(days=1)
    ).exists()


def test_the_letter_page_shows_the_dated_days_and_no_diagnosis(client, world):
    procedure = confirmed_warfarin(world)
    client.force_login(world["nurse"])
    response = client.get(reverse("clinic-procedure-letter", args=[procedure.pk]))
    html = response.content.decode()
    sunday = world["monday"] - timedelta(days=1)
    assert response["Cache-Control"] == "no-store"
    assert f"INR blood test: Sunday {sunday.day} {sunday:%B %Y}" in html
    assert html.count("DON&#x27;T TAKE") == 5 and html.count(">TAKE<") == 2
    assert "CVT" not in html and "thromb" not in html.lower() and "category" not in html.lower()


def test_the_letter_pdf_shows_the_dated_days(client, world, tmp_path):
    procedure = confirmed_warfarin(world)
    client.force_login(world["doctor"])
    response = client.get(reverse("clinic-procedure-letter-pdf", args=[procedure.pk]))
    assert response["Content-Type"] == "application/pdf" and response["Cache-Control"] == "no-store"
    path = tmp_path / "letter.pdf"
    path.write_bytes(response.content)

    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout
    last = world["monday"] - timedelta(days=6)
    monday = world["monday"]
    assert f"Your last dose of Warfarin before the procedure: {last:%A} {last.day} {last:%B %Y}" in text
    assert f"Start Warfarin again on {monday:%A} {monday.day} {monday:%B %Y}" in text
    assert text.count("DON'T TAKE") == 5
    assert "INR blood test" in text and "CVT" not in text
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-singlefile", str(path), str(SCREENSHOTS / "procedure-letter-pdf")],
                   check=True)  # fmt: skip
    assert (SCREENSHOTS / "procedure-letter-pdf.png").stat().st_size > 10_000


def test_an_unconfirmed_or_foreign_procedure_has_no_letter(client, world):
    unconfirmed = procedure_record(
        patient=world["patient"], scheduled_on=world["monday"], kind="dental", bleed_risk="low", agent="apixaban"
    )
    client.force_login(world["doctor"])
    assert client.get(reverse("clinic-procedure-letter", args=[unconfirmed.pk])).status_code == 404
    other = ClinicFactory(name="Tours")
    stranger = clinician(other)
    procedure = confirmed_warfarin(world)
    client.force_login(stranger)
    assert client.get(reverse("clinic-procedure-letter-pdf", args=[procedure.pk])).status_code == 404


def test_the_api_records_confirms_and_scopes_procedures(world):
    nurse_api, doctor_api = client_for(world["nurse"]), client_for(world["doctor"])
    body = {"patient": world["patient"].pk, "scheduled_on": world["monday"].isoformat(), "kind": "lumbar_puncture",
            "bleed_risk": "low", "agent": "rivaroxaban"}  # fmt: skip
    response = nurse_api.post("/api/v1/procedures/", body, format="json")
    assert response.status_code == 400 and "bleed_risk" in response.data
    response = nurse_api.post("/api/v1/procedures/", {**body, "bleed_risk": "high"}, format="json")
    assert response.status_code == 201, response.data
    pk = response.data["id"]
    assert response.data["proposal"]["restart_on"] == (world["monday"] + timedelta(days=2)).isoformat()
    assert nurse_api.post(f"/api/v1/procedures/{pk}/confirm/", {}, format="json").status_code == 403
    response = doctor_api.post(f"/api/v1/procedures/{pk}/confirm/", {}, format="json")
    assert response.status_code == 400 and "acknowledged_warnings" in response.data
    response = doctor_api.post(
        f"/api/v1/procedures/{pk}/confirm/", {"acknowledged_warnings": ["recent_cvt"]}, format="json"
    )
    assert response.status_code == 200 and response.data["plan_status"] == "confirmed"
    response = nurse_api.post(
        f"/api/v1/procedures/{pk}/reschedule/", {"scheduled_on": (world["monday"] + timedelta(days=7)).isoformat()},
        format="json",
    )  # fmt: skip
    assert response.status_code == 200
    assert FollowUp.objects.get(key=f"proc{pk}:{FollowUpKind.PROCEDURE_RESTART}").due_on == world["monday"] + timedelta(
        days=9
    )
    response = nurse_api.post(f"/api/v1/procedures/{pk}/status/", {"status": "cancelled"}, format="json")
    assert response.status_code == 200 and response.data["status"] == "cancelled"

    other = ClinicFactory(name="Tours")
    stranger = client_for(clinician(other))
    assert stranger.get(f"/api/v1/procedures/{pk}/").status_code == 404
    assert stranger.get("/api/v1/procedures/").data["results"] == []
    assert stranger.post("/api/v1/procedures/", {**body, "bleed_risk": "high"}, format="json").status_code == 400
