"""The reminder outbox: materialise reminder rows, sweep them onto the queue, send each one.

The database is the truth (architecture, data flow 4–6). A reminder row exists once (its idempotency key);
the sweep claims due rows with an *enqueue lease* and enqueues one task per row after commit; the send task
claims the row ``PENDING → SENDING`` by a conditional UPDATE (the row count says who won), sends outside any
transaction with a deterministic Message-ID, then marks it ``SENT``. Whatever Celery loses, a later sweep
finds again: a row whose enqueue lease ran out is enqueued again, a row stuck in ``SENDING`` past its send
lease is reclaimed. Delivery is at least once; a duplicate can only follow a crash between the SMTP
hand-off and the status update, and carries the same Message-ID.

Model codebases: healthchecks ``sendalerts.py`` (claim by conditional UPDATE, check the row count; we send
then mark, so at least once instead of at most once), Django-Styleguide-Example ``emails/services.py``
(thin task, status guard, enqueue on commit; but we never send inside the atomic block).
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfoNotFoundError

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from patients.choices import Role
from patients.models import Clinic

from . import calendar
from .emails import from_address, message_id_for, reminder_render
from .models import FollowUp, FollowUpStatus, Reminder, ReminderKind, ReminderStatus

logger = logging.getLogger(__name__)

KEY_MAX_LENGTH = Reminder._meta.get_field("idempotency_key").max_length
#: Keys and ids per ``IN (…)`` list / INSERT: well below PostgreSQL's 65535 parameters per statement.
CHUNK = 2000


# --- settings, read at run time ---------------------------------------------------------------------------


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def max_attempts() -> int:
    return _setting("ANTICOAG_REMINDER_MAX_ATTEMPTS", 8)


def enqueue_lease() -> timedelta:
    return timedelta(seconds=_setting("ANTICOAG_REMINDER_ENQUEUE_LEASE_SECONDS", 120))


def send_lease() -> timedelta:
    return timedelta(seconds=_setting("ANTICOAG_REMINDER_SEND_LEASE_SECONDS", 300))


def retry_delay(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: 1 min, 2, 4… capped at 1 h (by default)."""
    return calendar.retry_delay(
        attempts,
        base_seconds=_setting("ANTICOAG_REMINDER_RETRY_BASE_SECONDS", 60),
        max_seconds=_setting("ANTICOAG_REMINDER_RETRY_MAX_SECONDS", 3600),
    )


def _chunks(items: Sequence, size: int = CHUNK) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- keys -------------------------------------------------------------------------------------------------


def digest_key(*, clinic_id: int, user_id: int, on: date) -> str:
    return f"digest:{clinic_id}:{user_id}:{on.isoformat()}"


def escalation_key(*, follow_up_id: int, week: int, recipient: str) -> str:
    key = f"escalation:{follow_up_id}:w{week}:{recipient.lower()}"
    if len(key) > KEY_MAX_LENGTH:  # a very long address: keep the key unique, and within the column
        key = f"escalation:{follow_up_id}:w{week}:sha256-{hashlib.sha256(recipient.lower().encode()).hexdigest()}"
    return key


# --- materialise ------------------------------------------------------------------------------------------


def _enqueue(reminder_ids: Iterable[int]) -> None:
    """Put one send task per id on the queue. Runs after commit; a broker failure only costs a delay."""
    from .tasks import send_reminder  # the tasks module imports this one

    for reminder_id in reminder_ids:
        try:
            send_reminder.delay(reminder_id)
        except Exception:
            # The rows keep their enqueue lease; the first sweep after it enqueues them again.
            logger.warning("Could not enqueue reminder %s; a later sweep retries", reminder_id, exc_info=True)
            return


def reminder_materialise(
    *,
    clinic: Clinic,
    kind: str,
    recipient: str,
    key: str,
    recipient_user: Any = None,
    follow_ups: Iterable[FollowUp] = (),
    inr_reading: Any = None,
    reason: str = "",
    now: datetime | None = None,
) -> Reminder:
    """Get or create the reminder with idempotency key ``key``; PENDING and due at ``now`` when new.

    Safe under concurrency: two callers with the same key end with one row (the loser of the INSERT race
    reads the winner's row). A new URGENT reminder is enqueued as soon as the surrounding transaction
    commits, with an enqueue lease, so the sweep does not enqueue it a second time meanwhile; the sweep
    remains the safety net if that message is lost.
    """
    if kind not in ReminderKind.values:
        raise ValueError(f"Unknown reminder kind {kind!r}; expected one of {', '.join(ReminderKind.values)}.")
    if not key or len(key) > KEY_MAX_LENGTH:
        raise ValueError(f"The idempotency key must have 1 to {KEY_MAX_LENGTH} characters.")
    recipient = (recipient or "").strip()
    if not recipient:
        raise ValueError("A reminder needs a recipient address.")
    now = now or timezone.now()
    urgent = kind == ReminderKind.URGENT
    defaults = {
        "clinic": clinic,
        "kind": kind,
        "recipient": recipient,
        "recipient_user": recipient_user,
        "inr_reading": inr_reading,
        "reason": reason,
        "status": ReminderStatus.PENDING,
        "next_attempt_at": now,
        "lease_until": now + enqueue_lease() if urgent else None,
    }
    with transaction.atomic():
        reminder, created = Reminder.objects.get_or_create(idempotency_key=key, defaults=defaults)
        if created:
            follow_ups = list(follow_ups)
            if follow_ups:
                reminder.follow_ups.add(*follow_ups)
            if urgent:
                transaction.on_commit(partial(_enqueue, [reminder.pk]), robust=True)
    return reminder


def _due_clinics(now: datetime) -> dict[int, date]:
    """Clinic id → the local date whose digest is due at ``now`` (clinics before their digest time: absent)."""
    due: dict[int, date] = {}
    for clinic_id, tz_name, digest_time in Clinic.objects.values_list("pk", "time_zone", "digest_time"):
        try:
            on = calendar.digest_due(now, tz_name, digest_time)
        except (ZoneInfoNotFoundError, ValueError):
            logger.error("Clinic %s has an invalid time zone %r; no digests for it", clinic_id, tz_name)
            continue
        if on is not None:
            due[clinic_id] = on
    return due


def _open_items() -> Any:
    return FollowUp.objects.filter(status=FollowUpStatus.SCHEDULED, patient__active=True)


def _digest_rows(due: dict[int, date], now: datetime) -> list[tuple[Reminder, list[int]]]:
    """One digest per nurse (on the clinic's staff, with an address) with open items in the window."""
    Staff = Clinic.staff.through
    nurses = {
        (clinic_id, user_id): email
        for clinic_id, user_id, email in Staff.objects.filter(
            clinic_id__in=due, user__groups__name=Role.NURSE, user__is_active=True
        )
        .exclude(user__email="")
        .values_list("clinic_id", "user_id", "user__email")
        .distinct()
    }
    if not nurses:
        return []
    window = Q()
    for clinic_id, today in due.items():
        window |= Q(patient__clinic_id=clinic_id, due_on__lte=calendar.digest_window(today).week_end)
    items: dict[tuple[int, int], list[int]] = defaultdict(list)
    for item_id, clinic_id, nurse_id in (
        _open_items()
        .filter(window, patient__primary_nurse__isnull=False)
        .values_list("pk", "patient__clinic_id", "patient__primary_nurse_id")
    ):
        if (clinic_id, nurse_id) in nurses:
            items[(clinic_id, nurse_id)].append(item_id)
    return [
        (
            Reminder(
                clinic_id=clinic_id,
                kind=ReminderKind.DIGEST,
                recipient=nurses[(clinic_id, nurse_id)],
                recipient_user_id=nurse_id,
                next_attempt_at=now,
                idempotency_key=digest_key(clinic_id=clinic_id, user_id=nurse_id, on=due[clinic_id]),
            ),
            item_ids,
        )
        for (clinic_id, nurse_id), item_ids in items.items()
    ]


def _escalation_rows(due: dict[int, date], now: datetime) -> list[tuple[Reminder, list[int]]]:
    """Per open item overdue beyond the threshold: one e-mail per escalation week to the responsible
    clinician (when active and with an address) and to the clinic's alert address."""
    after_days = _setting("ANTICOAG_ESCALATE_AFTER_DAYS", 7)
    overdue = Q()
    for clinic_id, today in due.items():
        overdue |= Q(patient__clinic_id=clinic_id, due_on__lt=calendar.escalation_cutoff(today, after_days))
    rows: list[tuple[Reminder, list[int]]] = []
    for item_id, due_on, clinic_id, alert_email, clinician_id, clinician_email, clinician_active in (
        _open_items()
        .filter(overdue)
        .values_list(
            "pk",
            "due_on",
            "patient__clinic_id",
            "patient__clinic__alert_email",
            "patient__responsible_clinician_id",
            "patient__responsible_clinician__email",
            "patient__responsible_clinician__is_active",
        )
    ):
        week = calendar.escalation_week(due_on, due[clinic_id], after_days)
        if week < 1:
            continue
        recipients: dict[str, int | None] = {}
        if clinician_id and clinician_active and clinician_email:
            recipients[clinician_email.strip()] = clinician_id
        if alert_email and alert_email.strip().lower() not in {r.lower() for r in recipients}:
            recipients[alert_email.strip()] = None
        for recipient, user_id in recipients.items():
            reminder = Reminder(
                clinic_id=clinic_id,
                kind=ReminderKind.ESCALATION,
                recipient=recipient,
                recipient_user_id=user_id,
                next_attempt_at=now,
                idempotency_key=escalation_key(follow_up_id=item_id, week=week, recipient=recipient),
            )
            rows.append((reminder, [item_id]))
    return rows


def _insert(rows: list[tuple[Reminder, list[int]]]) -> dict[str, int]:
    """Insert the rows whose key is new, and their items, in a constant number of statements."""
    counts = {ReminderKind.DIGEST.value: 0, ReminderKind.ESCALATION.value: 0}
    if not rows:
        return counts
    keys = [reminder.idempotency_key for reminder, _ in rows]
    existing: set[str] = set()
    for chunk in _chunks(keys):
        existing.update(Reminder.objects.filter(idempotency_key__in=chunk).values_list("idempotency_key", flat=True))
    # Sorted, so that two sweeps inserting the same keys wait on each other instead of deadlocking.
    new = sorted((row for row in rows if row[0].idempotency_key not in existing), key=lambda r: r[0].idempotency_key)
    if not new:
        return counts
    # A concurrent sweep may insert the same keys: the unique index makes one of us skip them.
    Reminder.objects.bulk_create([reminder for reminder, _ in new], ignore_conflicts=True, batch_size=CHUNK // 4)
    new_keys = [reminder.idempotency_key for reminder, _ in new]
    ids_by_key: dict[str, int] = {}
    for chunk in _chunks(new_keys):
        ids_by_key.update(Reminder.objects.filter(idempotency_key__in=chunk).values_list("idempotency_key", "pk"))
    Through = Reminder.follow_ups.through
    links = [
        Through(reminder_id=ids_by_key[reminder.idempotency_key], followup_id=item_id)
        for reminder, item_ids in new
        for item_id in sorted(item_ids)
    ]
    Through.objects.bulk_create(links, ignore_conflicts=True, batch_size=CHUNK * 5)
    for reminder, _ in new:
        counts[reminder.kind] += 1
    return counts


def reminders_materialise_due(*, now: datetime) -> dict[str, int]:
    """Digests and escalations of every clinic whose local digest time has come today (idempotent)."""
    due = _due_clinics(now)
    if not due:
        return {"digests": 0, "escalations": 0}
    with transaction.atomic():
        counts = _insert(_digest_rows(due, now) + _escalation_rows(due, now))
    return {"digests": counts[ReminderKind.DIGEST], "escalations": counts[ReminderKind.ESCALATION]}


# --- the sweep --------------------------------------------------------------------------------------------


def reminders_reclaim(*, now: datetime) -> dict[str, int]:
    """SENDING rows whose send lease expired belonged to a dead worker: back to PENDING (or FAILED when
    their attempts are used up, so a message that kills its worker cannot loop for ever)."""
    expired = Reminder.objects.filter(status=ReminderStatus.SENDING, lease_until__lt=now)
    error = "WorkerLost: the send lease expired before the outcome was recorded"
    failed = expired.filter(attempts__gte=max_attempts()).update(
        status=ReminderStatus.FAILED, lease_until=None, last_error=error, updated_at=timezone.now()
    )
    reclaimed = expired.update(
        status=ReminderStatus.PENDING, lease_until=None, last_error=error, updated_at=timezone.now()
    )
    return {"reclaimed": reclaimed, "failed": failed}


def reminders_claim(*, now: datetime) -> list[int]:
    """Claim due PENDING rows in batches by setting an enqueue lease; enqueue each claimed id after commit.

    The rows stay PENDING: the lease only keeps other sweeps from enqueueing them again. On PostgreSQL the
    batch is read ``FOR UPDATE SKIP LOCKED`` so concurrent sweeps take disjoint rows; elsewhere the
    conditional UPDATE keeps it correct (its row count tells whether someone else was faster).
    """
    batch = _setting("ANTICOAG_SWEEP_BATCH_SIZE", 500)
    lease = now + enqueue_lease()
    claimable = Q(status=ReminderStatus.PENDING, next_attempt_at__lte=now) & (
        Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    )
    claimed: list[int] = []
    while True:
        with transaction.atomic():
            candidates = Reminder.objects.filter(claimable).order_by("next_attempt_at", "pk")
            if connection.features.has_select_for_update_skip_locked:
                candidates = candidates.select_for_update(skip_locked=True)
            ids = list(candidates.values_list("pk", flat=True)[:batch])
            if not ids:
                break
            updated = Reminder.objects.filter(claimable, pk__in=ids).update(
                lease_until=lease, updated_at=timezone.now()
            )
            mine = ids
            if updated != len(ids):  # someone else claimed some of them: keep those carrying our lease
                mine = list(Reminder.objects.filter(pk__in=ids, lease_until=lease).values_list("pk", flat=True))
            # Runs when this transaction commits (at once if there is no outer one): the task must find the
            # row committed, and a rolled-back claim must not be enqueued.
            transaction.on_commit(partial(_enqueue, mine), robust=True)
        claimed.extend(mine)
        if len(ids) < batch:
            break
    return claimed


def sweep(*, now: datetime | None = None) -> dict[str, int]:
    """One pass of the outbox: reclaim dead sends, materialise due digests and escalations, claim and enqueue.

    Returns counts: ``reclaimed``, ``failed`` (gave up while reclaiming), ``digests`` and ``escalations``
    (new rows), ``claimed`` (rows enqueued). Its number of queries does not grow with the number of
    patients or items (set-based reads, bulk inserts, claims in batches).
    """
    now = now or timezone.now()
    counts = reminders_reclaim(now=now)
    counts |= reminders_materialise_due(now=now)
    counts["claimed"] = len(reminders_claim(now=now))
    return counts


# --- sending ----------------------------------------------------------------------------------------------


def is_permanent(exc: BaseException) -> bool:
    """A 5xx answer (or every recipient refused with a 5xx) will not change on retry; the rest may."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return bool(codes) and all(500 <= code < 600 for code in codes)
    if isinstance(exc, smtplib.SMTPResponseException):
        return 500 <= exc.smtp_code < 600
    return False


def _describe(exc: BaseException) -> str:
    """The exception class and message: SMTP replies, never our e-mail's content."""
    return f"{type(exc).__name__}: {exc}"[:1000]


def _deliver(reminder: Reminder, message_id: str) -> None:
    rendered = reminder_render(reminder=reminder)
    message = EmailMultiAlternatives(
        subject=rendered.subject,
        body=rendered.text,
        from_email=from_address(),
        to=[reminder.recipient],
        headers={"Message-ID": message_id, "Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"},
        connection=get_connection(timeout=settings.EMAIL_TIMEOUT),
    )
    message.attach_alternative(rendered.html, "text/html")
    message.send(fail_silently=False)


def reminder_send(*, reminder_id: int, now: datetime | None = None) -> str:
    """Send one reminder if it is ours to send. Returns ``sent``, ``retry``, ``failed`` or ``skipped``.

    Claims ``PENDING → SENDING`` with a send lease by a conditional UPDATE; a row count of 0 means another
    worker has it, it is not due yet, or it is done: ``skipped``. Then renders and sends *outside* any
    transaction (call it in autocommit mode), and marks the row SENT. A transient error puts it back to
    PENDING with exponential backoff; a permanent one, or the last attempt, makes it FAILED.
    """
    started = now or timezone.now()
    lease = started + send_lease()
    claimed = Reminder.objects.filter(
        pk=reminder_id, status=ReminderStatus.PENDING, next_attempt_at__lte=started
    ).update(status=ReminderStatus.SENDING, lease_until=lease, attempts=F("attempts") + 1, updated_at=timezone.now())
    if not claimed:
        return "skipped"
    reminder = Reminder.objects.select_related("clinic", "inr_reading__patient").get(pk=reminder_id)
    message_id = message_id_for(reminder)
    try:
        _deliver(reminder, message_id)
    except Exception as exc:
        return _record_failure(reminder, exc, lease=lease, now=now)
    # The SMTP server has it: SENT is the truth now, whatever happened to the row meanwhile (a reclaim after
    # an overlong send must not cause a needless second copy).
    Reminder.objects.filter(pk=reminder_id).exclude(status=ReminderStatus.SENT).update(
        status=ReminderStatus.SENT,
        sent_at=now or timezone.now(),
        message_id=message_id,
        lease_until=None,
        updated_at=timezone.now(),
    )
    logger.info("Reminder %s sent (%s, attempt %s)", reminder_id, reminder.kind, reminder.attempts)
    return "sent"


def _record_failure(reminder: Reminder, exc: Exception, *, lease: datetime, now: datetime | None) -> str:
    error = _describe(exc)
    give_up = is_permanent(exc) or reminder.attempts >= max_attempts()
    if not isinstance(exc, OSError):  # smtplib errors are OSErrors; anything else is a defect to look at
        logger.exception("Reminder %s could not be rendered or sent", reminder.pk)
    changes: dict[str, Any] = {"lease_until": None, "last_error": error, "updated_at": timezone.now()}
    if give_up:
        changes["status"] = ReminderStatus.FAILED
    else:
        changes["status"] = ReminderStatus.PENDING
        changes["next_attempt_at"] = (now or timezone.now()) + retry_delay(reminder.attempts)
    # Only while the row is still ours (same lease): after a reclaim another worker owns it.
    Reminder.objects.filter(pk=reminder.pk, status=ReminderStatus.SENDING, lease_until=lease).update(**changes)
    logger.warning("Reminder %s attempt %s: %s → %s", reminder.pk, reminder.attempts, error, changes["status"].upper())
    return "failed" if give_up else "retry"
