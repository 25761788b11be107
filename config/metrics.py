"""``GET /metrics``: the reminder outbox in Prometheus' text format, for a clinic's monitoring (issue 19).

Protected: a staff login (the admin session), or ``Authorization: Bearer <ANTICOAG_METRICS_TOKEN>`` for a
scraper (empty: no token is accepted). Anyone else gets 401 (no token) or 403 (a wrong one). Counts and
ages only, no patient data.

Everything is read from the database at scrape time through a registry of its own (not the library's global
one): sends happen in worker processes, the scrape in any web process, so only the database knows the
totals. ``prometheus-client`` formats them.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from scheduling.models import OutboxEvent, ReminderKind
from scheduling.outbox_status import outbox_counters, outbox_figures

GAUGES = {
    "pending": "Reminders not yet handed to the SMTP server (pending or being sent).",
    "oldest_pending_age_seconds": "Age of the oldest unsent reminder, in seconds (0 when none waits).",
    "urgent_pending": "Urgent alerts not yet handed to the SMTP server.",
    "urgent_oldest_pending_age_seconds": "Age of the oldest unsent urgent alert, in seconds.",
    "urgent_undelivered": "Urgent alerts unsent after a failed attempt or past the urgent threshold.",
    "failed": "Reminders refused for good within the failure window (ANTICOAG_OUTBOX_FAILED_WINDOW_HOURS).",
    "failed_total": "Reminders refused for good, all time (FAILED rows).",
}
COUNTERS = {
    OutboxEvent.SENT: "Reminders handed to the SMTP server.",
    OutboxEvent.RETRIED: "Send attempts that met a transient error and will be retried.",
    OutboxEvent.FAILED: "Reminders refused for good (a 5xx for the recipient or message, an invalid address).",
    OutboxEvent.SUPERSEDED: "Digests not sent because a newer digest to the same nurse lists their items.",
}


def _bearer_token(request: HttpRequest) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def outbox_detail_allowed(request: HttpRequest) -> bool:
    """A logged-in staff member, or the configured bearer token (compared in constant time)."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return True
    expected = getattr(settings, "ANTICOAG_METRICS_TOKEN", "")
    offered = _bearer_token(request)
    return bool(expected and offered and hmac.compare_digest(offered.encode(), expected.encode()))


class OutboxCollector:
    """Gauges of the outbox now, and counters of what happened to reminders, per kind."""

    def collect(self) -> Iterator[Metric]:
        figures = outbox_figures()
        for name, documentation in GAUGES.items():
            yield GaugeMetricFamily(f"anticoag_outbox_{name}", documentation, value=getattr(figures, name))
        yield GaugeMetricFamily(
            "anticoag_outbox_degraded", "1 when the outbox is past a threshold (see /healthz).", value=figures.degraded
        )
        totals = outbox_counters()
        for event, documentation in COUNTERS.items():
            counter = CounterMetricFamily(f"anticoag_reminders_{event}", documentation, labels=["kind"])
            for kind in ReminderKind.values:
                counter.add_metric([kind], totals[(kind, event)])
            yield counter


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not outbox_detail_allowed(request):
        status = 403 if _bearer_token(request) or request.user.is_authenticated else 401
        response = HttpResponse("Authentication required.\n", status=status, content_type="text/plain")
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(OutboxCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
