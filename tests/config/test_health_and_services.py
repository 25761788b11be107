"""The health check, and proof that the suite runs on the real PostgreSQL and Redis."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings
from django.db import connection


@pytest.mark.django_db
def test_the_suite_runs_on_postgresql():
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        assert cursor.fetchone()[0].startswith("PostgreSQL")


def test_the_broker_is_a_real_redis():
    assert settings.CELERY_BROKER_URL.startswith("redis://")
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    assert client.ping() is True
    assert "redis_version" in client.info("server")


@pytest.mark.django_db
def test_healthz_tells_an_anonymous_caller_only_up_or_down(client):
    """Finding 7: the anonymous answer names no database or broker product."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "postgresql" not in response.content.decode() and "redis" not in response.content.decode().lower()


@pytest.mark.django_db
def test_healthz_reports_database_and_broker_up_to_staff(client, admin_user):
    client.force_login(admin_user)
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == {"status": "up", "vendor": "postgresql"}
    assert body["broker"]["status"] == "up"


@pytest.mark.django_db
def test_healthz_reports_a_dead_broker_as_503(client, admin_user, monkeypatch):
    # Celery reads CELERY_BROKER_URL from the environment before its configuration: point it at a port
    # nothing listens on.
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    assert client.get("/healthz").json() == {"status": "degraded"}
    client.force_login(admin_user)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"]["status"] == "down"
