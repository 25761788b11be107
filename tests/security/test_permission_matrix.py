"""The permission matrix (``patients.roles.PERMISSION_MATRIX``) is the single source: the README shows it, and the
admin and API tests below are generated from it (role × model × action → allowed or 403)."""

from __future__ import annotations

import io
import re
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from anticoag.models import WarfarinDose
from interfaces.models import InboundMessage
from outcomes.models import ClinicalEvent, OutcomeAssessment, SinusRecanalization
from patients.choices import Role
from patients.management.commands.permission_matrix import matrix_models
from patients.models import PatientContact
from patients.roles import ADD, CHANGE, DELETE, EXPORT, PERMISSION_MATRIX, REPORT, VIEW
from reporting.models import ExportLog
from tests.api.conftest import client_for, make_clinic
from tests.factories import LabResultFactory

ROOT = Path(__file__).resolve().parents[2]
ROLES = list(Role)
MODELS = matrix_models()

#: Models the matrix names that have no admin page of their own: edited inline on their parent's page.
INLINE_ONLY = {
    "patients.episoderiskfactor",
    "patients.deteriorationevent",
    "anticoag.plandecision",
    "anticoag.proceduredecision",
    "patients.patientmedication",
}
#: Where the admin is narrower than the matrix, on purpose (never wider): model → actions no role gets there.
ADMIN_NEVER = {
    "anticoag.plan": {ADD},  # plans are computed from the episode, never typed in
    "scheduling.reminder": {ADD},  # reminders are written by the sweep
    "reporting.exportlog": {ADD, CHANGE},  # the export log is an audit trail
    "reporting.calendarfeed": {DELETE},  # revoked by an admin action: the row records who had a feed
    "interfaces.inboundmessage": {ADD, DELETE},  # lab messages arrive through the listener and are kept
}


def allowed(role: str, model: str, action: str) -> bool:
    return action in PERMISSION_MATRIX[role].get(model, ())


def user_of(clinic, role: str):
    return {Role.CLINICIAN: clinic.clinician, Role.NURSE: clinic.nurse, Role.REPORTING: clinic.reporter}[role]


# --- the README ------------------------------------------------------------------------------------------


def test_the_readme_table_is_the_output_of_the_permission_matrix_command() -> None:
    out = io.StringIO()
    call_command("permission_matrix", "--markdown", stdout=out)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- permission-matrix:start[^\n]*-->\n(.*?)<!-- permission-matrix:end -->", readme, re.S)

    assert found, "README.md lost its permission-matrix markers"
    assert found.group(1) == out.getvalue(), "README's table differs: paste `manage.py permission_matrix --markdown`"


def test_every_model_of_the_matrix_has_an_admin_page_or_is_edited_inline() -> None:
    registered = {model._meta.label_lower for model in admin.site._registry}
    for label in MODELS:
        assert label in registered or label in INLINE_ONLY, label


def test_the_role_groups_hold_exactly_the_matrix(db) -> None:
    from django.contrib.auth.models import Group

    for role in ROLES:
        granted = {
            f"{p.content_type.app_label}.{p.codename}"
            for p in Group.objects.get(name=role).permissions.select_related("content_type")
        }
        expected = {
            f"{m.split('.')[0]}.{a}_{m.split('.')[1]}"
            for m, actions in PERMISSION_MATRIX[role].items()
            for a in actions
        }
        assert granted == expected, role


# --- the admin, generated ------------------------------------------------------------------------------------

ADMIN_MODELS = [label for label in MODELS if label not in INLINE_ONLY]


def admin_object(clinic, label: str, user):
    """A record of ``label`` in the user's clinic (the user's own, for per-user records)."""
    if label == "patients.labresult":
        return LabResultFactory(patient=clinic.patient)
    if label == "anticoag.warfarindose":
        return WarfarinDose.objects.create(
            patient=clinic.patient, starts_on=date(2026, 1, 5), weekly_dose_mg=Decimal(35)
        )
    if label == "patients.patientcontact":
        return PatientContact.objects.create(
            patient=clinic.patient, channel="call", outcome="reached", contacted_at=timezone.now()
        )
    if label == "reporting.exportlog":
        return ExportLog.objects.create(user=user, dataset="patients", format="csv")
    if label == "anticoag.procedure":
        return a_procedure(clinic)
    if label == "interfaces.inboundmessage":
        return InboundMessage.objects.create(
            control_id="PM1", message_type="ORU^R01", version="2.5.1", status="held", clinic=clinic.clinic
        )
    if label.startswith("outcomes."):
        return outcome_objects(clinic)[label]
    return {
        "patients.clinic": clinic.clinic,
        "patients.patient": clinic.patient,
        "patients.cvtepisode": clinic.episode,
        "anticoag.plan": clinic.plan,
        "anticoag.inrreading": clinic.readings[0],
        "scheduling.followup": clinic.follow_up,
        "scheduling.reminder": clinic.reminder,
        "reporting.calendarfeed": clinic.feed,
    }[label]


def a_procedure(clinic):
    """A procedure of the clinic's patient (one per clinic), a week after the episode's diagnosis."""
    from anticoag.procedure_models import Procedure
    from anticoag.procedure_services import procedure_record

    existing = Procedure.objects.filter(patient=clinic.patient).first()
    return existing or procedure_record(
        patient=clinic.patient,
        scheduled_on=clinic.episode.diagnosed_on + timedelta(days=7),
        kind="dental",
        bleed_risk="low",
        agent="warfarin",
    )


def outcome_objects(clinic) -> dict:
    """One record of each outcomes model in the clinic (made once per clinic)."""
    if not hasattr(clinic, "outcomes"):
        patient, episode = clinic.patient, clinic.episode
        clinic.outcomes = {
            "outcomes.outcomeassessment": OutcomeAssessment.objects.create(
                patient=patient, episode=episode, timepoint="other", assessed_on=episode.diagnosed_on, mrs=1
            ),
            "outcomes.sinusrecanalization": SinusRecanalization.objects.create(
                follow_up=clinic.follow_up, sinus="superior_sagittal", grade="partial"
            ),
            "outcomes.clinicalevent": ClinicalEvent.objects.create(
                patient=patient,
                episode=episode,
                kind="bleeding",
                occurred_on=episode.diagnosed_on,
                bleeding_site="skin",
            ),
        }
    return clinic.outcomes


def admin_url(label: str, view: str, *args) -> str:
    app, model = label.split(".")
    return reverse(f"admin:{app}_{model}_{view}", args=args)


@pytest.fixture
def clinic(db):
    return make_clinic("A")


@pytest.mark.parametrize("label", ADMIN_MODELS)
@pytest.mark.parametrize("role", ROLES)
def test_admin_list_add_and_change_follow_the_matrix(clinic, role: str, label: str) -> None:
    user = user_of(clinic, role)
    client = Client()
    client.force_login(user)
    obj = admin_object(clinic, label, user)
    never = ADMIN_NEVER.get(label, set())
    can_view = allowed(role, label, VIEW) or allowed(role, label, CHANGE)
    can_add = allowed(role, label, ADD) and ADD not in never
    can_change = allowed(role, label, CHANGE) and CHANGE not in never

    # the list, and the record's page (read-only without the change permission)
    assert client.get(admin_url(label, "changelist")).status_code == (200 if can_view else 403)
    assert client.get(admin_url(label, "change", obj.pk)).status_code == (200 if can_view else 403)
    # the add form
    assert client.get(admin_url(label, "add")).status_code == (200 if can_add else 403)
    # saving a change (an empty form: refused with errors when allowed, never saved; 403 when not)
    response = client.post(admin_url(label, "change", obj.pk), {})
    assert (response.status_code == 403) == (not can_change), response.status_code
    assert response.status_code < 500


@pytest.mark.parametrize("role", ROLES)
def test_admin_delete_follows_the_matrix(clinic, role: str) -> None:
    # Staff delete only an episode's risk factors (inline, on the episode page) and revoke their own calendar
    # feeds (an action): no registered model's delete page is open to any role.
    user = user_of(clinic, role)
    client = Client()
    client.force_login(user)
    for label in ADMIN_MODELS:
        obj = admin_object(clinic, label, user)
        expected = 200 if allowed(role, label, DELETE) and DELETE not in ADMIN_NEVER.get(label, set()) else 403
        assert client.get(admin_url(label, "delete", obj.pk)).status_code == expected, label


# --- the API, generated --------------------------------------------------------------------------------------

#: API collections and the model each one shows.
API_COLLECTIONS = {
    "/api/v1/patients/": "patients.patient",
    "/api/v1/episodes/": "patients.cvtepisode",
    "/api/v1/medications/": "patients.patientmedication",
    "/api/v1/plans/": "anticoag.plan",
    "/api/v1/inr-readings/": "anticoag.inrreading",
    "/api/v1/follow-ups/": "scheduling.followup",
    "/api/v1/reminders/": "scheduling.reminder",
    "/api/v1/calendar-feeds/": "reporting.calendarfeed",
    "/api/v1/procedures/": "anticoag.procedure",
    "/api/v1/outcome-assessments/": "outcomes.outcomeassessment",
    "/api/v1/clinical-events/": "outcomes.clinicalevent",
}


def detail_id(clinic, label: str) -> int:
    return {
        "patients.patient": clinic.patient.pk,
        "patients.cvtepisode": clinic.episode.pk,
        "patients.patientmedication": clinic.medication.pk,
        "anticoag.plan": clinic.plan.pk,
        "anticoag.inrreading": clinic.readings[0].pk,
        "scheduling.followup": clinic.follow_up.pk,
        "scheduling.reminder": clinic.reminder.pk,
        "reporting.calendarfeed": clinic.feed.pk,
        "anticoag.procedure": a_procedure(clinic).pk,
        "outcomes.outcomeassessment": outcome_objects(clinic)["outcomes.outcomeassessment"].pk,
        "outcomes.clinicalevent": outcome_objects(clinic)["outcomes.clinicalevent"].pk,
    }[label]


@pytest.mark.parametrize(("url", "label"), API_COLLECTIONS.items())
@pytest.mark.parametrize("role", ROLES)
def test_api_reading_needs_the_view_permission(clinic, role: str, url: str, label: str) -> None:
    client = client_for(user_of(clinic, role))
    expected = 200 if allowed(role, label, VIEW) else 403

    assert client.get(url).status_code == expected
    if label != "reporting.calendarfeed":  # a feed is listed, never read one by one (its URL is the secret)
        assert client.get(f"{url}{detail_id(clinic, label)}/").status_code == expected


def api_writes(clinic):
    """(method, url, body, format, model, the matrix actions it needs)."""
    return [
        ("post", f"/api/v1/plans/{clinic.plan.pk}/confirm/", {}, "json", "anticoag.plandecision", [ADD]),
        ("post", "/api/v1/inr-readings/", {}, "json", "anticoag.inrreading", [ADD]),
        ("post", "/api/v1/inr-readings/import/", {}, "multipart", "anticoag.inrreading", [ADD]),
        ("post", f"/api/v1/follow-ups/{clinic.follow_up.pk}/complete/", {}, "json", "scheduling.followup", [CHANGE]),
        ("post", "/api/v1/calendar-feeds/", {"label": "x"}, "json", "reporting.calendarfeed", [ADD]),
        ("delete", f"/api/v1/calendar-feeds/{clinic.feed.pk}/", None, None, "reporting.calendarfeed", [DELETE]),
        ("get", "/api/v1/exports/patients.csv", None, None, "reporting.exportlog", [EXPORT]),
        ("post", "/api/v1/procedures/", {}, "json", "anticoag.procedure", [ADD]),
        (
            "post",
            f"/api/v1/procedures/{a_procedure(clinic).pk}/confirm/",
            {},
            "json",
            "anticoag.proceduredecision",
            [ADD],
        ),
        ("post", f"/api/v1/procedures/{a_procedure(clinic).pk}/status/", {}, "json", "anticoag.procedure", [CHANGE]),
        ("post", "/api/v1/outcome-assessments/", {}, "json", "outcomes.outcomeassessment", [ADD]),
        ("post", "/api/v1/clinical-events/", {}, "json", "outcomes.clinicalevent", [ADD]),
        ("post", "/api/v1/recanalizations/", {}, "json", "outcomes.sinusrecanalization", [ADD]),
        ("get", "/api/v1/quality-report/", None, None, "outcomes.clinicalevent", [REPORT]),
    ]


@pytest.mark.parametrize("index", range(14))
@pytest.mark.parametrize("role", ROLES)
def test_api_writes_and_exports_follow_the_matrix(clinic, role: str, index: int) -> None:
    method, url, body, fmt, label, actions = api_writes(clinic)[index]
    client = client_for(user_of(clinic, role))
    may = all(allowed(role, label, action) for action in actions)

    kwargs = {"format": fmt} if fmt else {}
    response = getattr(client, method)(url, body, **kwargs) if body is not None else getattr(client, method)(url)

    assert (response.status_code == 403) == (not may), (response.status_code, getattr(response, "data", None))
    assert response.status_code < 500


@pytest.mark.parametrize("url", [u for u in API_COLLECTIONS if u != "/api/v1/calendar-feeds/"])
@pytest.mark.parametrize("role", ROLES)
def test_api_collections_offer_no_other_writes(clinic, role: str, url: str) -> None:
    # Patients, episodes, plans, readings, follow-ups, reminders, outcome reviews and events are written in the
    # admin (or by the actions above); their collections take no PUT/PATCH/DELETE, whatever the role's matrix says.
    client = client_for(user_of(clinic, role))
    label = API_COLLECTIONS[url]
    item = f"{url}{detail_id(clinic, label)}/"
    for method in ("put", "patch", "delete"):
        assert getattr(client, method)(item, {}, format="json").status_code in (403, 405)
