"""Who may call the API at all: anonymous callers are turned away everywhere, tokens and sessions work."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.api.conftest import client_for

pytestmark = pytest.mark.django_db

DATASETS = ("patients", "episodes", "plans", "inr-readings", "follow-ups", "outcomes", "events")

#: Every operation that needs a login: (method, path with {id}/{fmt} placeholders as in the schema).
PROTECTED = [
    ("GET", "/api/v1/patients/"),
    ("GET", "/api/v1/patients/{id}/"),
    ("GET", "/api/v1/patients/{id}/fhir/"),
    ("GET", "/api/v1/episodes/"),
    ("GET", "/api/v1/episodes/{id}/"),
    ("GET", "/api/v1/medications/"),
    ("GET", "/api/v1/medications/{id}/"),
    ("GET", "/api/v1/plans/"),
    ("GET", "/api/v1/plans/{id}/"),
    ("POST", "/api/v1/plans/{id}/confirm/"),
    ("GET", "/api/v1/inr-readings/"),
    ("POST", "/api/v1/inr-readings/"),
    ("GET", "/api/v1/inr-readings/{id}/"),
    ("POST", "/api/v1/inr-readings/import/"),
    ("GET", "/api/v1/inr-imports/{id}/"),
    ("GET", "/api/v1/follow-ups/"),
    ("GET", "/api/v1/follow-ups/{id}/"),
    ("POST", "/api/v1/follow-ups/{id}/complete/"),
    ("GET", "/api/v1/reminders/"),
    ("GET", "/api/v1/reminders/{id}/"),
    ("GET", "/api/v1/calendar-feeds/"),
    ("POST", "/api/v1/calendar-feeds/"),
    ("DELETE", "/api/v1/calendar-feeds/{id}/"),
    ("GET", "/api/v1/procedures/"),
    ("POST", "/api/v1/procedures/"),
    ("GET", "/api/v1/procedures/{id}/"),
    ("POST", "/api/v1/procedures/{id}/confirm/"),
    ("POST", "/api/v1/procedures/{id}/reschedule/"),
    ("POST", "/api/v1/procedures/{id}/status/"),
    *[("GET", f"/api/v1/exports/{dataset}.{{fmt}}") for dataset in DATASETS],
    *[("GET", f"/api/v1/exports/research/{dataset}.{{fmt}}") for dataset in DATASETS],
    ("GET", "/api/v1/exports/dictionary.csv"),
    ("GET", "/api/v1/outcome-assessments/"),
    ("POST", "/api/v1/outcome-assessments/"),
    ("GET", "/api/v1/outcome-assessments/{id}/"),
    ("GET", "/api/v1/clinical-events/"),
    ("POST", "/api/v1/clinical-events/"),
    ("GET", "/api/v1/clinical-events/{id}/"),
    ("POST", "/api/v1/recanalizations/"),
    ("GET", "/api/v1/quality-report/"),
    ("GET", "/api/v1/quality-report.csv"),
]
#: Public by design: the token endpoint is how one logs in; a calendar feed's secret URL is its credential.
PUBLIC = [("POST", "/api/v1/auth/token/"), ("GET", "/api/v1/calendar/{token}.ics")]
#: The schema and its docs page are not operations of the schema, and need a login too.
DOCUMENTATION = ["/api/v1/schema/", "/api/v1/docs/"]


def concrete(path: str, record_id: int = 1, fmt: str = "csv") -> str:
    return path.replace("{id}", str(record_id)).replace("{fmt}", fmt)


def call(client: APIClient, method: str, url: str):
    return getattr(client, method.lower())(url, {} if method != "GET" else None, format="json")


def test_the_lists_above_are_every_operation_of_the_schema(a):
    schema = client_for(a.reporter).get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    operations = {(method.upper(), path) for path, item in schema["paths"].items() for method in item}
    assert operations == set(PROTECTED) | set(PUBLIC)


#: Each protected operation once, the exports in both formats.
CALLS = [(method, path, fmt) for method, path in PROTECTED for fmt in (("csv", "ndjson") if "{fmt}" in path else ("",))]


@pytest.mark.parametrize(("method", "path", "fmt"), CALLS, ids=[f"{m} {p.replace('{fmt}', f)}" for m, p, f in CALLS])
def test_anonymous_callers_are_refused_everywhere(a, anonymous, method, path, fmt):
    # given a record that exists (clinic A's patient id serves every {id})
    response = call(anonymous, method, concrete(path, a.patient.pk, fmt))
    # then 401, with the scheme to use, and nothing about the record
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == "Token"
    assert b"MRN-A" not in response.content


@pytest.mark.parametrize("url", DOCUMENTATION)
def test_the_schema_and_the_docs_need_a_login_too(anonymous, url):
    assert anonymous.get(url).status_code in (401, 403)


def test_a_wrong_token_is_refused(a):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")
    assert client.get("/api/v1/patients/").status_code == 401


def test_an_inactive_users_token_stops_working(a):
    client = client_for(a.nurse)
    assert client.get("/api/v1/patients/").status_code == 200
    a.nurse.is_active = False
    a.nurse.save()
    assert client.get("/api/v1/patients/").status_code == 401


def test_a_token_is_had_for_username_and_password_and_then_works(a, anonymous):
    # when the nurse asks for a token with her password
    response = anonymous.post(
        "/api/v1/auth/token/", {"username": a.nurse.username, "password": "correct-horse-battery"}, format="json"
    )
    assert response.status_code == 200
    token = response.json()["token"]
    # then it opens the API
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert [p["mrn"] for p in client.get("/api/v1/patients/").json()["results"]] == ["MRN-A"]


def test_a_wrong_password_gets_no_token(a, anonymous):
    response = anonymous.post("/api/v1/auth/token/", {"username": a.nurse.username, "password": "wrong"}, format="json")
    assert response.status_code == 400
    assert "non_field_errors" in response.json()


def test_an_unknown_calendar_token_is_a_404_without_login(anonymous, a):
    assert anonymous.get("/api/v1/calendar/not-a-real-token-at-all.ics").status_code == 404
    assert anonymous.get(f"/api/v1/calendar/{a.feed_token}.ics").status_code == 200


def test_the_admin_session_works_for_the_api_and_the_docs(a):
    # given a member of staff logged in to the admin (a session, no token)
    client = APIClient()
    client.force_login(a.clinician)
    # then the API, the schema and the interactive docs answer her
    assert client.get("/api/v1/patients/").status_code == 200
    assert client.get("/api/v1/schema/").status_code == 200
    page = client.get("/api/v1/docs/")
    assert page.status_code == 200
    # and the docs load Swagger UI from our own static files: clinics run offline, no CDN
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn." not in html and "unpkg" not in html


def test_writes_with_a_session_need_the_csrf_token(a):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(a.clinician)
    response = client.post(f"/api/v1/plans/{a.plan.pk}/confirm/", {"agent": "warfarin"}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
