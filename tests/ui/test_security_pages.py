"""The Content-Security-Policy in a real browser: the API docs (Swagger UI) work under it, and a locked-out
login shows its page. The ``page`` fixture fails a test on any script error or CSP violation."""

from __future__ import annotations

import pytest

from tests.factories import UserFactory
from tests.ui.clinic_data import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def log_in(page, live_server, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{live_server.url}/admin/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_swagger_ui_renders_under_the_content_security_policy(page, live_server):
    UserFactory(username="analyst", password=PASSWORD)
    log_in(page, live_server, "analyst")
    page.wait_for_url(f"{live_server.url}/admin/")

    page.goto(f"{live_server.url}/api/v1/docs/")

    page.get_by_text("CVT anticoagulation clinic API").first.wait_for()
    page.locator(".opblock").first.wait_for()
    assert page.locator(".opblock").count() > 10


def test_a_locked_out_login_shows_a_clear_page_in_the_browser(page, live_server):
    UserFactory(username="ana.lock", password=PASSWORD)
    for _ in range(5):
        log_in(page, live_server, "ana.lock", "wrong-password")

    page.get_by_role("heading", name="Login locked").wait_for()
    assert "Too many failed logins" in page.content()
    # the right password is refused while locked
    log_in(page, live_server, "ana.lock")
    page.get_by_role("heading", name="Login locked").wait_for()
