"""Paging and refusals: cursor pages in id order, and every bad input a 400 naming the field, never a 500."""

from __future__ import annotations

import pytest

from tests.api.conftest import client_for
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


def test_lists_page_by_cursor_in_id_order(a):
    more = [PatientFactory(clinic=a.clinic, mrn=f"P{n}") for n in range(4)]
    client = client_for(a.reporter)
    seen, url = [], "/api/v1/patients/?page_size=2"
    while url:
        page = client.get(url).json()
        assert len(page["results"]) <= 2
        seen += [row["id"] for row in page["results"]]
        url = page["next"]
    assert seen == sorted([a.patient.pk, *(p.pk for p in more)])


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "cD1hYmM="}, "cursor"),  # base64 of "p=abc": a position that is not an id
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "501"}, "page_size"),
        ({"page_size": "ten"}, "page_size"),
        ({"clinic": "-1"}, "clinic"),
        ({"clinic": "1.5"}, "clinic"),
        ({"active": "yes please"}, "active"),
        ({"updated_since": "last week"}, "updated_since"),
        ({"updated_since": "0001-01-01T00:00:00+01:00"}, "updated_since"),
        ({"mrn": "A\x00B"}, "mrn"),
        ({"family_name": "Smith"}, "family_name"),
    ],
)
def test_a_bad_query_parameter_is_a_400_naming_it(a, params, field):
    response = client_for(a.reporter).get("/api/v1/patients/", params)
    assert response.status_code == 400, response.content
    assert list(response.json()) == [field]


def test_an_unknown_query_parameter_is_named_with_the_allowed_ones(a):
    response = client_for(a.reporter).get("/api/v1/inr-readings/", {"drawn_after": "2026-01-01", "cursor": ""})
    assert response.status_code == 400
    message = response.json()["drawn_after"][0]
    for allowed in ("clinic", "nurse", "patient", "drawn_from", "drawn_to", "cursor", "page_size"):
        assert allowed in message


def test_a_detail_view_takes_no_query_parameters(a):
    response = client_for(a.reporter).get(f"/api/v1/patients/{a.patient.pk}/", {"expand": "all"})
    assert response.status_code == 400
    assert "Allowed here: none" in response.json()["expand"][0]


@pytest.mark.parametrize("record_id", ["abc", "-1", "1.5", "9" * 30, "0x10"])
def test_a_malformed_id_is_a_json_404(a, record_id):
    response = client_for(a.reporter).get(f"/api/v1/patients/{record_id}/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"


def test_an_unknown_api_url_is_a_json_404(a):
    response = client_for(a.reporter).get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_malformed_json_is_a_400(a):
    response = client_for(a.clinician).post(
        f"/api/v1/plans/{a.plan.pk}/confirm/", data="{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"agent": 5}, "agent"),
        ({"agent": "warfarin", "duration_months": "long"}, "duration_months"),
        ({"agent": "warfarin", "duration_months": 10**9}, "duration_months"),
        ({"agent": "warfarin", "acknowledged_warnings": "all"}, "acknowledged_warnings"),
        ({"agent": "warfarin", "indefinite": "perhaps"}, "indefinite"),
        ({}, "agent"),
    ],
)
def test_wrong_types_in_a_body_are_a_400_naming_the_field(a, body, field):
    response = client_for(a.clinician).post(f"/api/v1/plans/{a.plan.pk}/confirm/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()


@pytest.mark.parametrize(
    ("drawn_at", "message"),
    [
        ("1850-01-01T08:00:00+00:00", "before 1900"),
        ("2026-01-05T08:00:00+23:00", None),  # a legal ISO offset PostgreSQL would refuse: taken as UTC
        ("9999-12-31T23:00:00-10:00", "ISO 8601"),
    ],
)
def test_dates_of_readings_that_the_database_cannot_hold_are_refused_or_normalised(a, drawn_at, message):
    response = client_for(a.nurse).post(
        "/api/v1/inr-readings/", {"patient": a.patient.pk, "drawn_at": drawn_at, "value": "2.5"}, format="json"
    )
    if message is None:
        assert response.status_code == 201, response.json()
        assert response.json()["drawn_at"] == "2026-01-04T09:00:00+00:00"
    else:
        assert response.status_code == 400
        assert message in response.json()["drawn_at"][0]


@pytest.mark.parametrize(
    "url",
    ["/api/v1/patients/", "/api/v1/episodes/", "/api/v1/plans/", "/api/v1/inr-readings/", "/api/v1/follow-ups/",
     "/api/v1/reminders/"],
)  # fmt: skip
def test_a_list_page_costs_the_same_queries_whatever_its_length(a, url):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.factories import EpisodeFactory, RiskFactorFactory

    client = client_for(a.clinician)
    client.get(url)  # warm up the permission caches of this client's first request

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    before = queries()
    for n in range(3):  # more rows of every kind, with nested parts (risk factors, decisions, follow-ups)
        episode = EpisodeFactory(patient__clinic=a.clinic, patient__mrn=f"MORE{n}")
        RiskFactorFactory(episode=episode)
        a.reminder.follow_ups.add(*episode.patient.follow_ups.all())
    assert queries() == before
