"""``GET /healthz``: is the product able to work? Reports the database and the broker, never patient data.

A staff login or the metrics bearer token (``config.metrics.outbox_detail_allowed``) also gets the reminder
outbox's figures (issue 19), and the status turns ``degraded`` (503) when the outbox is past a threshold.
Anonymous callers (load balancers, the container health check) are not told about the outbox: a slow SMTP
relay must not take the web service out of rotation. They learn only up or down (issue 13):
``{"status": "ok"}`` with 200 or ``{"status": "degraded"}`` with 503, never which database or broker runs.
"""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.metrics import outbox_detail_allowed


def _database_state() -> dict[str, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "down"; the class name is enough for operators
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "up", "vendor": connection.vendor}


def _broker_state() -> dict[str, str]:
    from config.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
            transport = conn.transport_cls
    except Exception as exc:  # kombu raises transport-specific errors
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "up", "transport": str(transport)}


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, dict] = {"database": _database_state(), "broker": _broker_state()}
    healthy = all(check["status"] == "up" for check in checks.values())
    detail = outbox_detail_allowed(request)
    if healthy and detail:
        from scheduling.outbox_status import outbox_figures

        checks["outbox"] = outbox_figures().as_dict()
        healthy = checks["outbox"]["status"] == "ok"
    answer = {"status": "ok" if healthy else "degraded", **(checks if detail else {})}
    return JsonResponse(answer, status=200 if healthy else 503)
