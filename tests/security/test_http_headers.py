"""Response headers of the hardened settings: CSP everywhere (Swagger UI's one relaxation on its page only),
HSTS, cookies; and error reports that carry no request data."""

from __future__ import annotations

import sys

import pytest
from django.http import QueryDict
from django.test import Client, RequestFactory

from config.security import PhiSafeExceptionReporterFilter
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def directives(header: str) -> dict[str, list[str]]:
    parsed = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            parsed[words[0]] = words[1:]
    return parsed


def test_every_page_has_a_strict_content_security_policy() -> None:
    for url in ("/admin/login/", "/api/v1/patients/", "/healthz"):
        policy = directives(Client().get(url)["Content-Security-Policy"])
        assert policy["default-src"] == ["'self'"]
        assert policy["script-src"] == ["'self'"], url  # no inline script, no eval
        assert policy["style-src"] == ["'self'"], url
        assert policy["frame-ancestors"] == ["'none'"]
        assert policy["object-src"] == ["'none'"]


def test_swagger_ui_loads_its_script_from_a_url_and_only_its_page_allows_inline_styles(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    client = Client()
    client.force_login(UserFactory())
    page = client.get("/api/v1/docs/")
    policy = directives(page["Content-Security-Policy"])
    assert policy["style-src"] == ["'self'", "'unsafe-inline'"]
    assert policy["script-src"] == ["'self'"]
    html = page.content.decode()
    assert "<script>" not in html  # the start script is a separate request
    script = client.get("/api/v1/docs/?script=")
    assert script.status_code == 200
    assert "SwaggerUIBundle" in script.content.decode()


def test_https_responses_carry_hsts_and_secure_http_only_cookies(settings) -> None:
    settings.SECURE_SSL_REDIRECT = True
    client = Client()
    # plain HTTP through the proxy is redirected to HTTPS
    response = client.get("/admin/login/", HTTP_X_FORWARDED_PROTO="http")
    assert response.status_code == 301 and response["Location"].startswith("https://")
    # over HTTPS: HSTS for a year with subdomains and preload, and secure cookies
    response = client.get("/admin/login/", HTTP_X_FORWARDED_PROTO="https")
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    csrf = response.cookies["csrftoken"]
    assert csrf["secure"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


def test_the_session_cookie_is_secure_http_only_and_expires_after_15_idle_minutes(settings) -> None:
    assert settings.SESSION_COOKIE_SECURE and settings.SESSION_COOKIE_HTTPONLY
    assert settings.SESSION_COOKIE_AGE == 15 * 60 and settings.SESSION_SAVE_EVERY_REQUEST


def test_error_reports_hide_post_data_local_variables_and_secret_settings() -> None:
    request = RequestFactory().post("/admin/patients/patient/1/change/", {"given_name": "Alma", "mrn": "DEMO-1"})
    reporter = PhiSafeExceptionReporterFilter()
    post = reporter.get_post_parameters(request)
    assert set(post.values()) == {reporter.cleansed_substitute}

    def frame_with_patient_data():
        given_name = "Alma"  # noqa: F841
        return sys._getframe()

    frame_vars = dict(reporter.get_traceback_frame_variables(request, frame_with_patient_data()))
    assert frame_vars["given_name"] == reporter.cleansed_substitute
    assert reporter.get_cleansed_multivaluedict(request, QueryDict("name=Alma"))["name"] == reporter.cleansed_substitute

    safe = reporter.get_safe_settings()
    for name in ("SECRET_KEY", "DATABASES", "CELERY_BROKER_URL", "ANTICOAG_PSEUDONYM_KEY", "EMAIL_HOST_PASSWORD"):
        assert safe[name] == reporter.cleansed_substitute, name
