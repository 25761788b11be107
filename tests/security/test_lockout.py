"""Login throttling (django-axes): the admin login and the API token endpoint lock a username at one address
after ANTICOAG_LOGIN_FAILURE_LIMIT failures, for the cool-off time; an administrator can unlock at once."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from axes.models import AccessAttempt
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from tests.factories import UserFactory

PASSWORD = "correct-horse-battery"
LOGIN = "/admin/login/?next=/admin/"
TOKEN = "/api/v1/auth/token/"

pytestmark = pytest.mark.django_db


def admin_login(client: Client, username: str, password: str, ip: str = "10.0.0.1"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=ip)


def token_login(username: str, password: str, ip: str = "10.0.0.1"):
    return APIClient().post(TOKEN, {"username": username, "password": password}, format="json", REMOTE_ADDR=ip)


def test_the_defaults_are_five_failures_and_fifteen_minutes() -> None:
    assert settings.AXES_FAILURE_LIMIT == 5
    assert timedelta(minutes=15) == settings.AXES_COOLOFF_TIME
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]


def test_admin_login_locks_after_five_failures_and_shows_a_page() -> None:
    # given a member of staff
    UserFactory(username="ana")
    client = Client()
    # when four wrong passwords are tried, the login form answers as usual
    for _ in range(4):
        response = admin_login(client, "ana", "wrong-password")
        assert response.status_code == 200
        assert b"Please enter the correct username and password" in response.content
    # then the fifth failure locks the account at this address: a clear page, not a 500
    response = admin_login(client, "ana", "wrong-password")
    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    assert b"15 minutes" in response.content
    # and even the right password is refused while locked
    response = admin_login(client, "ana", PASSWORD)
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    # while the same user from another address, and another user from this one, may still log in
    assert admin_login(Client(), "ana", PASSWORD, ip="10.0.0.2").status_code == 302
    UserFactory(username="ben")
    assert admin_login(Client(), "ben", PASSWORD).status_code == 302


def test_lockout_ends_after_the_cool_off() -> None:
    UserFactory(username="ana")
    for _ in range(5):
        admin_login(Client(), "ana", "wrong-password")
    assert admin_login(Client(), "ana", PASSWORD).status_code == 429

    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert admin_login(Client(), "ana", PASSWORD).status_code == 302


def test_a_success_resets_the_count() -> None:
    UserFactory(username="ana")
    for _ in range(4):
        admin_login(Client(), "ana", "wrong-password")
    assert admin_login(Client(), "ana", PASSWORD).status_code == 302
    for _ in range(4):
        admin_login(Client(), "ana", "wrong-password")
    assert admin_login(Client(), "ana", PASSWORD).status_code == 302


def test_api_token_endpoint_locks_after_five_failures_with_json() -> None:
    UserFactory(username="ana")
    for _ in range(4):
        response = token_login("ana", "wrong-password")
        assert response.status_code == 400
    response = token_login("ana", "wrong-password")
    assert response.status_code == 429
    assert response["Content-Type"] == "application/json"
    assert "Too many failed logins" in response.json()["detail"]
    # the right password is refused too, and no token is handed out
    response = token_login("ana", PASSWORD)
    assert response.status_code == 429
    assert "token" not in response.json()
    # another address is not locked
    assert "token" in token_login("ana", PASSWORD, ip="10.0.0.2").json()


def test_failures_on_the_admin_and_the_api_count_together() -> None:
    UserFactory(username="ana")
    for _ in range(3):
        admin_login(Client(), "ana", "wrong-password")
    for _ in range(2):
        token_login("ana", "wrong-password")
    assert token_login("ana", PASSWORD).status_code == 429
    assert admin_login(Client(), "ana", PASSWORD).status_code == 429


def test_an_administrator_unlocks_with_the_management_command() -> None:
    UserFactory(username="ana")
    for _ in range(5):
        token_login("ana", "wrong-password")
    assert token_login("ana", PASSWORD).status_code == 429
    assert AccessAttempt.objects.filter(username="ana").exists()

    call_command("axes_reset_username", "ana")

    assert not AccessAttempt.objects.filter(username="ana").exists()
    assert token_login("ana", PASSWORD).status_code == 200
    assert admin_login(Client(), "ana", PASSWORD).status_code == 302


def test_an_administrator_unlocks_in_the_admin() -> None:
    UserFactory(username="ana")
    for _ in range(5):
        admin_login(Client(), "ana", "wrong-password")
    admin = UserFactory(username="root", is_superuser=True)
    client = Client()
    client.force_login(admin)
    attempt = AccessAttempt.objects.get(username="ana")

    # the attempts are listed in the admin, and deleting them unlocks
    listing = client.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200
    assert b"ana" in listing.content
    response = client.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"},
    )
    assert response.status_code == 302

    assert not AccessAttempt.objects.exists()
    assert admin_login(Client(), "ana", PASSWORD).status_code == 302


def test_the_client_address_behind_the_proxy_is_the_one_counted(settings) -> None:
    # behind one trusted proxy, the address it appended is counted, not the proxy's own
    settings.ANTICOAG_TRUSTED_PROXY_COUNT = 1
    UserFactory(username="ana")
    for _ in range(5):
        Client().post(
            LOGIN,
            {"username": "ana", "password": "wrong"},
            REMOTE_ADDR="172.16.0.1",
            HTTP_X_FORWARDED_FOR="spoofed, 203.0.113.9",
        )
    assert AccessAttempt.objects.get().ip_address == "203.0.113.9"
    # another client behind the same proxy is not locked out
    response = Client().post(
        LOGIN, {"username": "ana", "password": PASSWORD}, REMOTE_ADDR="172.16.0.1", HTTP_X_FORWARDED_FOR="198.51.100.7"
    )
    assert response.status_code == 302
