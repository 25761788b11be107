"""Suite-wide fixtures. The suite runs against the real services: a missing one fails the run, never skips."""

from __future__ import annotations

import pytest


def pytest_sessionstart(session: pytest.Session) -> None:
    """Fail fast, with a readable message, when PostgreSQL or Redis is not there."""
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    if engine != "django.db.backends.postgresql":
        pytest.exit(f"The suite runs on PostgreSQL; DATABASE_URL points at {engine}. Use `make test`.", returncode=3)

    import psycopg
    import redis

    db = settings.DATABASES["default"]
    try:
        psycopg.connect(
            host=db["HOST"] or None,
            port=db["PORT"] or None,
            user=db["USER"] or None,
            password=db["PASSWORD"] or None,
            dbname="postgres",
            connect_timeout=3,
        ).close()
    except psycopg.OperationalError as exc:
        pytest.exit(f"PostgreSQL is not reachable at {db['HOST']}:{db['PORT']}: {exc}", returncode=3)

    broker = settings.CELERY_BROKER_URL
    if not broker.startswith("redis://"):
        pytest.exit(f"The suite runs on Redis; CELERY_BROKER_URL is {broker!r}. Use `make test`.", returncode=3)
    try:
        redis.Redis.from_url(broker, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        pytest.exit(f"Redis is not reachable at {broker}: {exc}", returncode=3)


@pytest.fixture(autouse=True)
def _plain_static_storage(settings) -> None:
    """Production uses a hashed manifest built by collectstatic; tests render pages without running it."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
