"""Browser fixtures: Playwright for Python driving Debian's Chromium (``/usr/bin/chromium``, installed by the
Makefile; no browser is ever downloaded) against pytest-django's live server.

A browser that cannot start FAILS the tests that need it, it never skips them: the staff UI is only tested
when a real browser runs it. Screenshots go to ``test-output/screenshots/`` (git-ignored).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """One headless Chromium for the session. Playwright's sync API keeps an event loop in this thread, so
    the test's own ORM calls need Django's async-safety check relaxed (they are plain synchronous calls)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package (apt-get).")
    from playwright.sync_api import Error, sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    manager = sync_playwright().start()
    try:
        try:
            chromium = manager.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        except Error as exc:
            pytest.fail(f"Chromium at {CHROMIUM} did not start: {exc}")
        yield chromium
        chromium.close()
    finally:
        manager.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def live_settings(settings, live_server):
    """Plain-HTTP cookies for the live server (production settings insist on HTTPS)."""
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    settings.SECURE_SSL_REDIRECT = False
    settings.SECURE_HSTS_SECONDS = 0
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "localhost", "127.0.0.1"]
    return settings


@pytest.fixture
def page(browser, live_settings) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="en-GB")
    context.set_default_timeout(15_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    # A script, style or image the Content-Security-Policy blocked is a console error, not a page error.
    tab.on(
        "console",
        lambda msg: (
            errors.append(msg.text) if "Content Security Policy" in msg.text or "Refused to" in msg.text else None
        ),
    )
    yield tab
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def screenshot():
    """``screenshot(page, "name")`` saves test-output/screenshots/name.png (full page) and returns its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(tab, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        tab.screenshot(path=str(path), full_page=True)
        return path

    take.folder = SCREENSHOTS
    return take
