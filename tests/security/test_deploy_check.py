"""`manage.py check --deploy` with production values: no warning at all (the settings' security defaults)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def production_env(**overrides: str) -> dict[str, str]:
    """What an operator sets (see .env.example), with the suite's own database and broker."""
    db = settings.DATABASES["default"]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DJANGO_DEBUG": "0",
        # Long and varied, as `openssl rand` gives: Django's W009 refuses short or repetitive keys.
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "DJANGO_ALLOWED_HOSTS": "clinic.example.org",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "https://clinic.example.org",
        "SITE_URL": "https://clinic.example.org",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "ANTICOAG_PSEUDONYM_KEY": secrets.token_hex(32),
        "EMAIL_HOST": "smtp.example.org",
        "DJANGO_TRUSTED_PROXY_COUNT": "1",
    }
    env.update(overrides)
    return env


def run_check(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_at_warning_level_with_production_values() -> None:
    result = run_check(production_env())

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_fails_on_a_weak_setting() -> None:
    # The check is not vacuous: switching HSTS off in production is a warning, and the run fails.
    result = run_check(production_env(DJANGO_HSTS_SECONDS="0"))

    assert result.returncode != 0
    assert "security.W004" in result.stdout + result.stderr


def test_production_settings_carry_the_promised_values() -> None:
    code = (
        "from django.conf import settings as s; "
        "print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, s.CSRF_COOKIE_SECURE, "
        "s.SECURE_HSTS_SECONDS >= 31536000, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SESSION_COOKIE_AGE, "
        "s.SESSION_SAVE_EVERY_REQUEST, s.SECURE_PROXY_SSL_HEADER, "
        "[v.get('OPTIONS', {}).get('min_length') for v in s.AUTH_PASSWORD_VALIDATORS if 'MinimumLength' in v['NAME']], "
        "s.CONTENT_SECURITY_POLICY['DIRECTIVES']['default-src'], s.AUTHENTICATION_BACKENDS[0])"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "True True True True True True 900 True ('HTTP_X_FORWARDED_PROTO', 'https') [12] [\"'self'\"] "
        "axes.backends.AxesStandaloneBackend"
    )
