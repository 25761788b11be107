"""Audit: changes to clinical data, exports and every view of a patient's record are attributable to a user;
administrators (only) read the log in the admin, filterable by user, model, action and date."""

from __future__ import annotations

import pytest
from auditlog.models import LogEntry
from auditlog.registry import auditlog
from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import reverse

from patients.roles import PERMISSION_MATRIX
from reporting.models import ExportLog
from tests.api.conftest import client_for, make_clinic
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

#: Models in the matrix that are not clinical data, and why they are not audited by auditlog.
NOT_CLINICAL = {
    "patients.clinic": "audited too (staff membership), listed here only because it is not patient data",
    "scheduling.reminder": "the e-mail outbox: delivery state, not clinical data",
    "reporting.exportlog": "is itself the audit trail of exports",
    "reporting.calendarfeed": "a nurse's feed credential, not clinical data",
}


@pytest.fixture
def clinic(db):
    return make_clinic("A")


def accesses(instance, user) -> int:
    return LogEntry.objects.filter(
        action=LogEntry.Action.ACCESS,
        content_type=ContentType.objects.get_for_model(instance),
        object_id=instance.pk,
        actor=user,
    ).count()


def test_every_clinical_model_of_the_matrix_is_audited() -> None:
    clinical = {label for grants in PERMISSION_MATRIX.values() for label in grants} - set(NOT_CLINICAL)
    for label in sorted(clinical):
        assert auditlog.contains(apps.get_model(label)), f"{label} changes are not audited"
    assert auditlog.contains(apps.get_model("patients.clinic"))


def test_a_change_through_the_api_names_the_token_user(clinic) -> None:
    # (admin edits: tests/patients/test_audit.py) a token is resolved inside the view, after the audit
    # middleware ran: the entry must still name the user
    response = client_for(clinic.nurse).post(
        "/api/v1/inr-readings/",
        {"patient": clinic.patient.pk, "drawn_at": "2026-01-05T08:00:00Z", "value": "2.5"},
        format="json",
    )
    assert response.status_code == 201, response.data

    entry = LogEntry.objects.get(
        content_type__model="inrreading", object_id=response.data["id"], action=LogEntry.Action.CREATE
    )
    assert entry.actor == clinic.nurse


@pytest.mark.parametrize("page", ["patient", "episode"])
def test_viewing_a_patient_record_in_the_admin_is_logged(clinic, page: str) -> None:
    client = Client()
    client.force_login(clinic.nurse)
    obj = clinic.patient if page == "patient" else clinic.episode
    url = reverse(f"admin:patients_{obj._meta.model_name}_change", args=[obj.pk])

    assert client.get(url).status_code == 200
    assert client.get(url).status_code == 200

    assert accesses(obj, clinic.nurse) == 2


@pytest.mark.parametrize("kind", ["patient", "episode", "fhir"])
def test_viewing_a_patient_record_through_the_api_is_logged_with_the_token_user(clinic, kind: str) -> None:
    client = client_for(clinic.clinician)
    url, obj = {
        "patient": (f"/api/v1/patients/{clinic.patient.pk}/", clinic.patient),
        "episode": (f"/api/v1/episodes/{clinic.episode.pk}/", clinic.episode),
        "fhir": (f"/api/v1/patients/{clinic.patient.pk}/fhir/", clinic.patient),
    }[kind]

    assert client.get(url).status_code == 200

    assert accesses(obj, clinic.clinician) == 1
    entry = LogEntry.objects.get(action=LogEntry.Action.ACCESS)
    assert entry.remote_addr == "127.0.0.1"


def test_a_refused_or_missing_record_logs_no_access(clinic) -> None:
    other = make_clinic("B")
    assert client_for(clinic.clinician).get(f"/api/v1/patients/{other.patient.pk}/").status_code == 404
    assert not LogEntry.objects.filter(action=LogEntry.Action.ACCESS).exists()


def test_an_export_is_logged_with_user_time_filters_and_rows(clinic) -> None:
    client = client_for(clinic.reporter)
    response = client.get("/api/v1/exports/patients.csv", {"active": "true"})
    b"".join(response.streaming_content)

    log = ExportLog.objects.get()
    assert log.user == clinic.reporter
    assert log.started_at is not None and log.finished_at is not None
    assert log.filters == {"active": "true"}
    assert log.row_count == 1
    assert log.completed


def test_the_audit_view_is_for_administrators_only(clinic) -> None:
    url = reverse("admin:auditlog_logentry_changelist")
    for user in (clinic.clinician, clinic.nurse, clinic.reporter):
        client = Client()
        client.force_login(user)
        assert client.get(url).status_code == 403

    admin = UserFactory(username="root", is_superuser=True)
    client = Client()
    client.force_login(admin)
    client.get(reverse("admin:patients_patient_change", args=[clinic.patient.pk]))
    response = client.get(url)
    assert response.status_code == 200
    # filterable by action, model, user and date
    for name in ("action", "resource_type", "actor__id__exact", "timestamp"):
        assert name in response.content.decode()
    filtered = client.get(url, {"action__exact": LogEntry.Action.ACCESS, "actor__id__exact": admin.pk})
    assert filtered.status_code == 200
    assert filtered.context["cl"].result_count == 1


def test_the_patient_page_links_to_its_audit_log_for_administrators(clinic) -> None:
    admin = UserFactory(username="root", is_superuser=True)
    client = Client()
    client.force_login(admin)
    page = client.get(reverse("admin:patients_patient_change", args=[clinic.patient.pk]))
    link = page.context["patient_page"]["audit_log_url"]
    assert "Audit log" in page.content.decode()

    log = client.get(link)
    assert log.status_code == 200
    entries = list(log.context["cl"].result_list)
    assert entries and all(e.object_id == clinic.patient.pk for e in entries)
    assert any(e.action == LogEntry.Action.ACCESS and e.actor == admin for e in entries)

    # staff do not get the link
    client.force_login(clinic.nurse)
    page = client.get(reverse("admin:patients_patient_change", args=[clinic.patient.pk]))
    assert "audit_log_url" not in page.context["patient_page"]
