"""A member of clinic A can neither read nor infer clinic B's records, through any endpoint.

For each endpoint: lists hold only A's rows, whatever the filter; a record of B answers exactly like a record
that does not exist (same status, same body); exports, the FHIR view and the calendar carry nothing of B.
"""

from __future__ import annotations

import json

import pytest

from reporting.models import ExportLog
from tests.api.conftest import client_for

pytestmark = pytest.mark.django_db

MISSING = 999_999_999

LISTS = {
    "/api/v1/patients/": lambda c: c.patient.pk,
    "/api/v1/episodes/": lambda c: c.episode.pk,
    "/api/v1/plans/": lambda c: c.plan.pk,
    "/api/v1/inr-readings/": lambda c: c.readings[0].pk,
    "/api/v1/follow-ups/": lambda c: c.follow_up.pk,
    "/api/v1/reminders/": lambda c: c.reminder.pk,
}
#: Filters that name clinic B's things: each must come back empty for A, never with B's rows, never an error
#: that would tell B's ids apart from ids that do not exist.
FILTERS_NAMING_B = {
    "/api/v1/patients/": lambda b: [{"clinic": b.clinic.pk}, {"nurse": b.nurse.pk}, {"mrn": b.patient.mrn}],
    "/api/v1/episodes/": lambda b: [{"clinic": b.clinic.pk}, {"patient": b.patient.pk}, {"nurse": b.nurse.pk}],
    "/api/v1/plans/": lambda b: [{"clinic": b.clinic.pk}, {"patient": b.patient.pk}, {"episode": b.episode.pk}],
    "/api/v1/inr-readings/": lambda b: [{"clinic": b.clinic.pk}, {"patient": b.patient.pk}, {"nurse": b.nurse.pk}],
    "/api/v1/follow-ups/": lambda b: [{"clinic": b.clinic.pk}, {"patient": b.patient.pk}, {"episode": b.episode.pk}],
    "/api/v1/reminders/": lambda b: [{"clinic": b.clinic.pk}],
}


def ids(response) -> set[int]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


@pytest.mark.parametrize("url", list(LISTS))
def test_lists_hold_only_the_users_clinic(a, b, url):
    for user in (a.clinician, a.nurse, a.reporter):
        listed = ids(client_for(user).get(url))
        assert LISTS[url](a) in listed
        assert LISTS[url](b) not in listed
    # and the other way round
    assert LISTS[url](a) not in ids(client_for(b.reporter).get(url))


@pytest.mark.parametrize("url", list(FILTERS_NAMING_B))
def test_filters_naming_another_clinics_records_find_nothing(a, b, url):
    client = client_for(a.reporter)
    for params in FILTERS_NAMING_B[url](b):
        # the same answer as for an id that does not exist: empty, not an error
        assert ids(client.get(url, params)) == set()
        missing = {key: (MISSING if isinstance(value, int) else "NO-SUCH-MRN") for key, value in params.items()}
        assert client.get(url, params).json() == client.get(url, missing).json()


@pytest.mark.parametrize("url", list(LISTS))
def test_a_record_of_another_clinic_is_a_404_like_a_missing_one(a, b, url):
    client = client_for(a.clinician)
    theirs = client.get(f"{url}{LISTS[url](b)}/")
    missing = client.get(f"{url}{MISSING}/")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()
    assert client.get(f"{url}{LISTS[url](a)}/").status_code == 200


def test_confirming_another_clinics_plan_is_a_404(a, b):
    client = client_for(a.clinician)
    response = client.post(f"/api/v1/plans/{b.plan.pk}/confirm/", {"agent": "warfarin"}, format="json")
    assert response.status_code == 404
    assert not b.plan.decisions.exists()


def test_completing_another_clinics_follow_up_is_a_404(a, b):
    client = client_for(a.nurse)
    response = client.post(
        f"/api/v1/follow-ups/{b.follow_up.pk}/complete/", {"completed_on": "2020-01-01"}, format="json"
    )
    assert response.status_code == 404
    b.follow_up.refresh_from_db()
    assert b.follow_up.status == "scheduled"


def test_recording_an_inr_for_another_clinics_patient_is_refused_like_an_unknown_patient(a, b):
    client = client_for(a.nurse)
    body = {"drawn_at": "2026-01-05T08:30:00+01:00", "value": "2.5"}
    theirs = client.post("/api/v1/inr-readings/", {**body, "patient": b.patient.pk}, format="json")
    missing = client.post("/api/v1/inr-readings/", {**body, "patient": MISSING}, format="json")
    assert theirs.status_code == missing.status_code == 400
    assert theirs.json() == missing.json()


def test_importing_into_another_clinic_is_refused_like_an_unknown_clinic(a, b):
    from io import BytesIO

    def upload(clinic_id):
        file = BytesIO(b"mrn,drawn_at,inr\nMRN-B,2026-01-05 08:30,2.5\n")
        file.name = "inr.csv"
        return client_for(a.nurse).post("/api/v1/inr-readings/import/", {"clinic": clinic_id, "file": file})

    theirs, missing = upload(b.clinic.pk), upload(MISSING)
    assert theirs.status_code == missing.status_code == 403
    assert theirs.json() == missing.json()


@pytest.mark.parametrize("dataset", ["patients", "episodes", "plans", "inr-readings", "follow-ups"])
@pytest.mark.parametrize("prefix", ["", "research/"])
def test_exports_carry_nothing_of_another_clinic(a, b, pseudonym_key, dataset, prefix):
    client = client_for(a.reporter)

    def export(**params):
        response = client.get(f"/api/v1/exports/{prefix}{dataset}.ndjson", params)
        assert response.status_code == 200
        return [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]

    rows = export()
    assert rows, "clinic A's own rows are exported"
    assert {row["clinic_id"] for row in rows} == {a.clinic.pk}
    text = json.dumps(rows)
    assert "MRN-B" not in text and "FamilyB" not in text and "secret note B" not in text
    # filtering on B's clinic exports nothing (and logs the attempt)
    assert export(clinic=b.clinic.pk) == []
    assert ExportLog.objects.filter(user=a.reporter, filters={"clinic": str(b.clinic.pk)}, row_count=0).exists()


def test_the_fhir_view_of_another_clinics_patient_is_a_404_like_a_missing_one(a, b):
    client = client_for(a.clinician)
    theirs = client.get(f"/api/v1/patients/{b.patient.pk}/fhir/")
    missing = client.get(f"/api/v1/patients/{MISSING}/fhir/")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.content == missing.content
    assert b"MRN-A" in client.get(f"/api/v1/patients/{a.patient.pk}/fhir/").content


def test_a_nurses_calendar_lists_only_her_clinics_patients(a, b, anonymous):
    # given nurse A is (wrongly) named primary nurse of a patient of clinic B, where she does not work
    b.patient.primary_nurse = a.nurse
    b.patient.save()
    # when her feed is read
    response = anonymous.get(f"/api/v1/calendar/{a.feed_token}.ics")
    # then it lists clinic A's follow-ups only
    body = response.content.decode()
    assert response.status_code == 200
    assert "MRN-A" in body
    assert "MRN-B" not in body


def test_another_users_calendar_feed_cannot_be_seen_or_revoked(a, b):
    client = client_for(a.nurse)
    assert b.feed.pk not in ids(client.get("/api/v1/calendar-feeds/"))
    assert client.delete(f"/api/v1/calendar-feeds/{b.feed.pk}/").status_code == 404
    b.feed.refresh_from_db()
    assert b.feed.revoked_at is None
