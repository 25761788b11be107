"""The permission matrix through the API: clinicians confirm, nurses complete, reporting reads and exports."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.utils import timezone

from anticoag.models import InrReading, PlanDecision
from patients.choices import Role
from reporting.models import CalendarFeed, ExportLog
from scheduling.models import FollowUp, FollowUpKind, FollowUpStatus
from tests.api.conftest import client_for
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def reading_body(patient) -> dict:
    return {"patient": patient.pk, "drawn_at": (timezone.now() - timedelta(hours=1)).isoformat(), "value": "2.5"}


def an_open_follow_up(a) -> FollowUp:
    return FollowUp.objects.create(
        patient=a.patient,
        episode=a.episode,
        kind=FollowUpKind.ANNUAL_REVIEW,
        due_on=timezone.localdate(),
        rule="test",
        key="test-annual-review",
    )


def test_a_clinician_confirms_a_plan_and_the_decision_is_recorded(a):
    response = client_for(a.clinician).post(
        f"/api/v1/plans/{a.plan.pk}/confirm/", {"agent": "dabigatran"}, format="json"
    )
    assert response.status_code == 201, response.json()
    decision = PlanDecision.objects.get(plan=a.plan)
    assert response.json()["id"] == decision.pk
    assert decision.decided_by == a.clinician
    plan = client_for(a.clinician).get(f"/api/v1/plans/{a.plan.pk}/").json()
    assert plan["status"] == "confirmed"
    assert plan["decision"]["agent"] == "dabigatran"


def test_a_refused_confirmation_is_a_400_naming_the_field(a):
    client = client_for(a.clinician)
    # an override of the duration without a reason: the service refuses, naming override_reason
    response = client.post(
        f"/api/v1/plans/{a.plan.pk}/confirm/", {"agent": "warfarin", "duration_months": 60}, format="json"
    )
    assert response.status_code == 400
    assert "override_reason" in response.json()
    # an agent that does not exist: the serializer refuses, naming agent
    assert "agent" in client.post(f"/api/v1/plans/{a.plan.pk}/confirm/", {"agent": "aspirin"}, format="json").json()
    assert not PlanDecision.objects.exists()


def test_a_nurse_cannot_confirm_a_plan(a):
    response = client_for(a.nurse).post(f"/api/v1/plans/{a.plan.pk}/confirm/", {"agent": "warfarin"}, format="json")
    assert response.status_code == 403
    assert not PlanDecision.objects.exists()


def test_a_nurse_completes_a_follow_up(a):
    item = an_open_follow_up(a)
    response = client_for(a.nurse).post(
        f"/api/v1/follow-ups/{item.pk}/complete/", {"completed_on": timezone.localdate().isoformat()}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["follow_up"]["status"] == "done"
    assert isinstance(response.json()["follow_ons"], list)
    item.refresh_from_db()
    assert item.status == FollowUpStatus.DONE


def test_a_refused_completion_is_a_400_naming_the_field(a):
    item = an_open_follow_up(a)
    client = client_for(a.nurse)
    tomorrow = (timezone.localdate() + timedelta(days=2)).isoformat()
    url = f"/api/v1/follow-ups/{item.pk}/complete/"
    assert "completed_on" in client.post(url, {"completed_on": tomorrow}, format="json").json()
    assert "completed_on" in client.post(url, {"completed_on": "yesterday"}, format="json").json()
    assert (
        "recanalization"
        in client.post(
            url, {"completed_on": timezone.localdate().isoformat(), "recanalization": "partial"}, format="json"
        ).json()
    )


def test_reporting_reads_but_writes_nothing(a):
    client = client_for(a.reporter)
    item = an_open_follow_up(a)
    upload = io.BytesIO(b"mrn,drawn_at,inr\nMRN-A,2026-01-05 08:30,2.5\n")
    upload.name = "inr.csv"
    writes = [
        client.post(f"/api/v1/plans/{a.plan.pk}/confirm/", {"agent": "warfarin"}, format="json"),
        client.post(f"/api/v1/follow-ups/{item.pk}/complete/", {"completed_on": "2026-01-05"}, format="json"),
        client.post("/api/v1/inr-readings/", reading_body(a.patient), format="json"),
        client.post("/api/v1/inr-readings/import/", {"clinic": a.clinic.pk, "file": upload}),
        client.post("/api/v1/calendar-feeds/", {}, format="json"),
        client.delete(f"/api/v1/calendar-feeds/{a.feed.pk}/"),
    ]
    assert [response.status_code for response in writes] == [403] * len(writes)
    assert not PlanDecision.objects.exists()
    assert InrReading.objects.count() == 2
    # …while every read answers
    for url in ("patients", "episodes", "plans", "inr-readings", "follow-ups", "reminders"):
        assert client.get(f"/api/v1/{url}/").status_code == 200
    assert client.get(f"/api/v1/patients/{a.patient.pk}/fhir/").status_code == 200


def test_read_only_endpoints_offer_no_writes_even_to_clinicians(a):
    client = client_for(a.clinician)
    assert client.post("/api/v1/patients/", {"mrn": "X"}, format="json").status_code == 405
    assert client.delete(f"/api/v1/patients/{a.patient.pk}/").status_code == 405
    assert client.patch(f"/api/v1/follow-ups/{a.follow_up.pk}/", {"status": "done"}, format="json").status_code == 405


def test_a_user_without_a_role_reads_nothing(a):
    stranger = UserFactory(username="no_role", clinics=[a.clinic])
    client = client_for(stranger)
    for url in ("patients", "episodes", "plans", "inr-readings", "follow-ups", "reminders"):
        assert client.get(f"/api/v1/{url}/").status_code == 403


@pytest.mark.parametrize("prefix", ["", "research/"])
def test_exporting_needs_the_export_permission(a, pseudonym_key, prefix):
    # nurses have no export permission: refused, and nothing logged
    response = client_for(a.nurse).get(f"/api/v1/exports/{prefix}inr-readings.csv")
    assert response.status_code == 403
    assert not ExportLog.objects.exists()
    # the reporting role and clinicians may
    assert client_for(a.reporter).get(f"/api/v1/exports/{prefix}inr-readings.csv").status_code == 200
    assert client_for(a.clinician).get(f"/api/v1/exports/{prefix}inr-readings.csv").status_code == 200


def test_every_export_is_logged_with_who_what_filters_and_rows(a, pseudonym_key):
    client = client_for(a.reporter)
    since = (timezone.now() - timedelta(days=5)).isoformat()
    response = client.get("/api/v1/exports/research/inr-readings.ndjson", {"drawn_from": since})
    # the row is there as soon as the stream starts…
    log = ExportLog.objects.get()
    assert (log.user, log.dataset, log.format, log.pseudonymised) == (a.reporter, "inr-readings", "ndjson", True)
    assert log.filters == {"drawn_from": since}
    assert log.clinic_ids == [a.clinic.pk]
    assert response["X-Export-Id"] == str(log.pk)
    assert log.finished_at is None and not log.completed
    # …and holds the row count once it has ended
    lines = b"".join(response.streaming_content).splitlines()
    log.refresh_from_db()
    assert len(lines) == log.row_count == 1  # one of the two readings was drawn in the last five days
    assert log.completed and log.finished_at is not None


def test_an_export_the_client_abandons_is_logged_as_cut_short(a, monkeypatch):
    import reporting.exports
    from reporting.exports import DATASETS, export_start

    # given an export streamed a row at a time
    monkeypatch.setattr(reporting.exports, "WRITE_CHUNK_ROWS", 1)
    dataset = DATASETS["inr-readings"]
    log, stream = export_start(
        user=a.reporter,
        dataset=dataset,
        fmt="csv",
        pseudonymised=False,
        filters={},
        queryset=dataset.queryset(user=a.reporter),
    )
    # when the client takes the header and one row, then goes away (the WSGI server closes the iterable)
    next(stream), next(stream)
    stream.close()
    # then the log says one row went out and the export did not complete
    log.refresh_from_db()
    assert log.row_count == 1
    assert not log.completed and log.finished_at is not None


def test_a_nurse_creates_and_revokes_her_calendar_feed(a, anonymous):
    client = client_for(a.nurse)
    created = client.post("/api/v1/calendar-feeds/", {"label": "work phone"}, format="json")
    assert created.status_code == 201
    url, feed_id = created.json()["url"], created.json()["id"]
    assert url.endswith(".ics") and created.json()["token"] in url
    path = url.removeprefix("http://testserver")
    assert anonymous.get(path).status_code == 200
    # the token is not stored, only its hash
    assert created.json()["token"] not in str(CalendarFeed.objects.filter(pk=feed_id).values().get())
    assert "token" not in client.get("/api/v1/calendar-feeds/").json()["results"][0]
    # revoked: the URL answers 404 from now on
    assert client.delete(f"/api/v1/calendar-feeds/{feed_id}/").status_code == 204
    assert anonymous.get(path).status_code == 404


def test_a_clinician_gets_no_calendar_feed(a):
    assert client_for(a.clinician).post("/api/v1/calendar-feeds/", {}, format="json").status_code == 403


def test_a_feed_stops_when_its_owner_loses_the_nurse_role(a, anonymous):
    url = f"/api/v1/calendar/{a.feed_token}.ics"
    assert anonymous.get(url).status_code == 200
    a.nurse.groups.clear()
    assert anonymous.get(url).status_code == 404


def test_reporting_role_has_only_read_export_and_report_in_the_matrix():
    from patients.roles import EXPORT, PERMISSION_MATRIX, REPORT, VIEW

    for model, actions in PERMISSION_MATRIX[Role.REPORTING].items():
        assert set(actions) <= {VIEW, EXPORT, REPORT}, model
    assert EXPORT in PERMISSION_MATRIX[Role.REPORTING]["reporting.exportlog"]
    assert EXPORT in PERMISSION_MATRIX[Role.CLINICIAN]["reporting.exportlog"]
    assert "reporting.exportlog" not in PERMISSION_MATRIX[Role.NURSE]
