"""Issue 13, findings 4–7: bad input is a 400 or a field error (never a 500), manual follow-ups get a unique key,
API tokens expire and die with a password change or a lock-out, audit history is for administrators, patient
data is never cached, empty filters are refused, one address cannot spray usernames, /healthz says little."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from auditlog.models import LogEntry
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from scheduling.models import FollowUp
from tests.api.conftest import client_for, make_clinic

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery"


@pytest.fixture
def a(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return make_clinic("A")


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- finding 4: 500s on bad input -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/inr-readings/", "/api/v1/plans/{plan}/confirm/"])
def test_json_nested_5000_deep_is_a_400(a, path):
    response = client_for(a.clinician).post(path.format(plan=a.plan.pk), _nested(5000), content_type="application/json")
    assert response.status_code == 400
    assert "nested deeper" in response.json()["detail"]


def test_json_larger_than_the_limit_is_a_400(a, settings):
    settings.ANTICOAG_API_JSON_MAX_BYTES = 1000
    body = '{"note": "' + "x" * 2000 + '"}'
    response = client_for(a.clinician).post("/api/v1/inr-readings/", body, content_type="application/json")
    assert response.status_code == 400 and "larger than" in response.json()["detail"]


def test_json_within_the_limits_still_works(a):
    response = client_for(a.nurse).post(
        "/api/v1/inr-readings/",
        {"patient": a.patient.pk, "drawn_at": timezone.now().isoformat(), "value": "2.5"},
        format="json",
    )
    assert response.status_code == 201, response.content


def test_a_username_over_the_column_length_is_refused_on_the_token_endpoint(a):
    response = APIClient().post("/api/v1/auth/token/", {"username": "u" * 300, "password": "x"}, format="json")
    assert response.status_code == 400
    assert "username" in response.json()


def test_a_username_over_the_column_length_is_refused_on_the_admin_login(a):
    response = Client().post("/admin/login/?next=/admin/", {"username": "u" * 300, "password": "x"})
    assert response.status_code == 200
    assert "username" in response.context["form"].errors


@pytest.mark.parametrize("term", ["\x00", "MRN\x00A"])
def test_admin_autocomplete_with_a_nul_term_is_refused_not_a_500(a, client, term):
    client.force_login(a.nurse)
    response = client.get(
        reverse("admin:autocomplete"),
        {"app_label": "scheduling", "model_name": "followup", "field_name": "patient", "term": term},
    )
    assert response.status_code == 400


def test_admin_search_terms_lose_control_characters(a, client):
    from patients.admin import clean_search_term

    assert clean_search_term("MRN\x00-A\x07") == "MRN-A"
    assert len(clean_search_term("x" * 1000)) == 100


def test_a_nul_in_an_api_query_parameter_is_a_400_naming_it(a):
    response = client_for(a.clinician).get("/api/v1/patients/", {"mrn": "A\x00"})
    assert response.status_code == 400
    assert "mrn" in response.json()


def test_a_nul_in_a_json_text_field_is_a_field_error(a):
    response = client_for(a.nurse).post(
        "/api/v1/inr-readings/",
        {"patient": a.patient.pk, "drawn_at": timezone.now().isoformat(), "value": "2.5", "note": "a\x00b"},
        format="json",
    )
    assert response.status_code == 400 and "note" in response.json()


def test_a_nul_in_an_admin_form_is_a_field_error(a, client):
    client.force_login(a.nurse)
    response = client.post(
        reverse("admin:scheduling_followup_add"),
        {"patient": a.patient.pk, "kind": "annual_review", "due_on": "2026-01-01", "status": "scheduled"}
        | {"result_note": "x\x00y"},
    )
    assert response.status_code == 200
    assert "result_note" in response.context["adminform"].form.errors


# --- finding 5: manual follow-ups ---------------------------------------------------------------------------


def test_follow_ups_added_by_hand_each_get_their_own_key(a, client):
    client.force_login(a.nurse)
    url = reverse("admin:scheduling_followup_add")
    for due in ("2026-01-01", "2026-02-01"):
        response = client.post(
            url, {"patient": a.patient.pk, "kind": "annual_review", "due_on": due, "status": "scheduled"}
        )
        assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    keys = list(FollowUp.objects.filter(rule="").values_list("key", flat=True))
    assert len(keys) == 2 and len(set(keys)) == 2 and all(k.startswith("manual:") for k in keys)


# --- finding 6: tokens ----------------------------------------------------------------------------------------


def _token_for(user) -> str:
    response = APIClient().post("/api/v1/auth/token/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 200, response.content
    return response.json()["token"]


def _get(token: str, path: str = "/api/v1/patients/"):
    return APIClient().get(path, HTTP_AUTHORIZATION=f"Token {token}")


def test_a_token_expires_after_the_configured_days_and_a_new_one_is_issued(a, settings):
    settings.ANTICOAG_API_TOKEN_DAYS = 30
    token = _token_for(a.nurse)
    assert _get(token).status_code == 200
    with time_machine.travel(timezone.now() + timedelta(days=31)):
        assert _get(token).status_code == 401
        assert not Token.objects.filter(key=token).exists()
        fresh = _token_for(a.nurse)
        assert fresh != token and _get(fresh).status_code == 200


def test_a_password_change_deletes_the_users_tokens(a):
    token = _token_for(a.nurse)
    a.nurse.set_password("another-horse-battery")
    a.nurse.save()
    assert _get(token).status_code == 401
    assert not Token.objects.filter(user=a.nurse).exists()


def test_a_locked_out_user_cannot_use_a_token(a):
    token = _token_for(a.nurse)
    for _ in range(5):
        APIClient().post(
            "/api/v1/auth/token/", {"username": a.nurse.username, "password": "wrong"}, REMOTE_ADDR="9.9.9.9"
        )
    assert _get(token).status_code == 401


# --- finding 7 ---------------------------------------------------------------------------------------------------


def test_audit_history_is_for_administrators_and_a_missing_id_is_404(a, client, admin_user):
    url = reverse("admin:patients_patient_auditlog", args=[a.patient.pk])
    for user in (a.nurse, a.reporter, a.clinician):
        client.force_login(user)
        assert client.get(url).status_code == 403, user.username
    client.force_login(admin_user)
    assert client.get(url).status_code == 200
    assert LogEntry.objects.filter(object_pk=str(a.patient.pk)).exists()
    assert client.get(reverse("admin:patients_patient_auditlog", args=[999999])).status_code == 404


@pytest.mark.parametrize(
    "path", ["/api/v1/patients/", "/api/v1/patients/{patient}/", "/api/v1/patients/{patient}/fhir/"]
)
def test_patient_data_from_the_api_is_never_stored_by_a_cache(a, path):
    response = client_for(a.clinician).get(path.format(patient=a.patient.pk))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]


def test_admin_patient_page_is_never_stored_by_a_cache(a, client):
    client.force_login(a.nurse)
    response = client.get(reverse("admin:patients_patient_change", args=[a.patient.pk]))
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]


@pytest.mark.parametrize("param", ["updated_since", "patient", "cursor"])
def test_an_empty_filter_value_is_a_400_naming_it(a, param):
    response = client_for(a.clinician).get("/api/v1/patients/", {param: ""})
    assert response.status_code == 400
    assert param in response.json()


def test_one_address_spraying_many_usernames_is_locked_out(a, settings):
    settings.ANTICOAG_LOGIN_ADDRESS_FAILURE_LIMIT = 6
    for n in range(6):  # six usernames, one failure each: no username reaches its own limit of five
        APIClient().post("/api/v1/auth/token/", {"username": f"guess{n}", "password": "x"}, REMOTE_ADDR="7.7.7.7")
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": a.nurse.username, "password": PASSWORD}, REMOTE_ADDR="7.7.7.7"
    )
    assert response.status_code == 429
    other = APIClient().post(
        "/api/v1/auth/token/", {"username": a.nurse.username, "password": PASSWORD}, REMOTE_ADDR="7.7.7.8"
    )
    assert other.status_code == 200
