"""The outbox as operators see it (issue 19): what waits and for how long, what failed, what was sent.

One source for every view of it: ``/healthz`` (authenticated detail), the metrics endpoint
(``config.metrics``), the administrators' banner on the dashboard and ``manage.py outbox_status``. Two
queries for the figures (the unsent rows, the failed rows, both on partial indexes), one for the counters.
No patient data: counts and ages only.

Decisions where the issue was silent:

* **pending** counts rows not yet handed to SMTP (PENDING and SENDING); its age is measured from the row's
  creation, which is when it became due (rows are made due at once).
* **failed** counts rows refused for good in the last ``ANTICOAG_OUTBOX_FAILED_WINDOW_HOURS`` (7 days):
  a failure nobody can fix by retrying (a wrong address) must not keep the clinic degraded for ever once the
  address is corrected; ``failed_total`` is every FAILED row.
* **urgent_undelivered** counts urgent alerts still unsent after a failed attempt or after
  ``ANTICOAG_OUTBOX_DEGRADED_URGENT_AGE_SECONDS``: the banner's "undelivered", without flagging an alert in
  the seconds it normally takes to go out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone

from .models import OutboxCounter, OutboxEvent, Reminder, ReminderKind, ReminderStatus

UNSENT = (ReminderStatus.PENDING, ReminderStatus.SENDING)


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


@dataclass(frozen=True)
class OutboxThresholds:
    """Past any of these the outbox is *degraded* (settings ``ANTICOAG_OUTBOX_DEGRADED_*``)."""

    pending: int
    pending_age_seconds: int
    urgent_age_seconds: int
    failed: int
    failed_window_hours: int

    @classmethod
    def from_settings(cls) -> OutboxThresholds:
        return cls(
            pending=_setting("ANTICOAG_OUTBOX_DEGRADED_PENDING", 5000),
            pending_age_seconds=_setting("ANTICOAG_OUTBOX_DEGRADED_PENDING_AGE_SECONDS", 3600),
            urgent_age_seconds=_setting("ANTICOAG_OUTBOX_DEGRADED_URGENT_AGE_SECONDS", 300),
            failed=_setting("ANTICOAG_OUTBOX_DEGRADED_FAILED", 0),
            failed_window_hours=_setting("ANTICOAG_OUTBOX_FAILED_WINDOW_HOURS", 7 * 24),
        )


@dataclass(frozen=True)
class OutboxFigures:
    """The outbox at one moment, and whether it is degraded (``problems`` says why, in words)."""

    pending: int
    oldest_pending_age_seconds: int
    urgent_pending: int
    urgent_oldest_pending_age_seconds: int
    urgent_undelivered: int
    failed: int
    failed_total: int
    thresholds: OutboxThresholds
    problems: list[str] = field(default_factory=list)

    @property
    def degraded(self) -> bool:
        return bool(self.problems)

    @property
    def status(self) -> str:
        return "degraded" if self.degraded else "ok"

    def as_dict(self) -> dict:
        figures = asdict(self)
        return {"status": self.status, **figures}


def _age(now: datetime, since: datetime | None) -> int:
    return max(int((now - since).total_seconds()), 0) if since else 0


def _problems(figures: dict, limits: OutboxThresholds) -> list[str]:
    problems = []
    if figures["urgent_undelivered"]:
        problems.append(f"{figures['urgent_undelivered']} urgent alert(s) not delivered")
    if figures["failed"] > limits.failed:
        problems.append(f"{figures['failed']} reminder(s) failed in the last {limits.failed_window_hours} h")
    if figures["oldest_pending_age_seconds"] > limits.pending_age_seconds:
        problems.append(f"the oldest unsent reminder has waited {figures['oldest_pending_age_seconds']} s")
    if figures["pending"] > limits.pending:
        problems.append(f"{figures['pending']} reminders waiting")
    return problems


def outbox_figures(*, now: datetime | None = None) -> OutboxFigures:
    """Pending, oldest pending age, urgent pending, failed, and the verdict against the thresholds."""
    now = now or timezone.now()
    limits = OutboxThresholds.from_settings()
    urgent = Q(kind=ReminderKind.URGENT)
    late = Q(attempts__gt=0) | Q(created_at__lt=now - timedelta(seconds=limits.urgent_age_seconds))
    unsent = Reminder.objects.filter(status__in=UNSENT).aggregate(
        pending=Count("pk"),
        oldest=Min("created_at"),
        urgent_pending=Count("pk", filter=urgent),
        urgent_oldest=Min("created_at", filter=urgent),
        urgent_undelivered=Count("pk", filter=urgent & late),
    )
    failed = Reminder.objects.filter(status=ReminderStatus.FAILED).aggregate(
        total=Count("pk"),
        recent=Count("pk", filter=Q(updated_at__gte=now - timedelta(hours=limits.failed_window_hours))),
    )
    figures = {
        "pending": unsent["pending"],
        "oldest_pending_age_seconds": _age(now, unsent["oldest"]),
        "urgent_pending": unsent["urgent_pending"],
        "urgent_oldest_pending_age_seconds": _age(now, unsent["urgent_oldest"]),
        "urgent_undelivered": unsent["urgent_undelivered"],
        "failed": failed["recent"],
        "failed_total": failed["total"],
    }
    return OutboxFigures(**figures, thresholds=limits, problems=_problems(figures, limits))


def outbox_counters() -> dict[tuple[str, str], int]:
    """Running totals since installation: (kind, event) → count, every kind and event present (0 if none)."""
    totals = {(kind, event): 0 for kind in ReminderKind.values for event in OutboxEvent.values}
    for kind, event, total in OutboxCounter.objects.values_list("kind", "event", "total"):
        totals[(kind, event)] = total
    return totals
