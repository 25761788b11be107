"""The reminder outbox: materialise reminder rows, sweep them onto the queue, send each one.

The database is the truth (architecture, data flow 4–6). A reminder row exists once (its idempotency key);
the sweep claims due rows with an *enqueue lease* and enqueues one task per row after commit; the send task
claims the row ``PENDING → SENDING`` by a conditional UPDATE (the row count says who won), sends outside any
transaction with a deterministic Message-ID, then marks it ``SENT``. Whatever Celery loses, a later sweep
finds again: a row whose enqueue lease ran out is enqueued again, a row stuck in ``SENDING`` past its send
lease is reclaimed. Delivery is at least once; a duplicate can only follow a crash between the SMTP
hand-off and the status update (of our worker, or of an SMTP server that stored the message and died before
its ``250``), and carries the same Message-ID.

Nothing is given up on a transient error (issue 19): a refused connection, a time-out or a 4xx answer retries
with capped backoff for as long as the reminder matters. Only a permanent refusal (a 5xx for the recipient or
the message, an invalid address) makes a row FAILED. A digest that a newer digest to the same nurse covers is
SUPERSEDED instead of sent late (its open items are in the newer one); urgent alerts and escalations never
are. Each re-enqueue of a row whose task is still waiting doubles its enqueue lease (up to a cap), so a slow
queue cannot multiply tasks; urgent alerts go to their own queue (``ANTICOAG_URGENT_QUEUE``) that a dedicated
worker serves, so they never wait behind routine mail.

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
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q, Subquery
from django.utils import timezone

from patients.choices import Role
from patients.models import Clinic

from . import calendar
from .emails import escalation_date_of, from_address, message_id_for, reminder_render
from .missed_tests import DNA_ESCALATED_RULE, DNA_ESCALATION_REASON
from .models import (
    FollowUp,
    FollowUpStatus,
    OutboxCounter,
    OutboxEvent,
    Reminder,
    ReminderKind,
    ReminderStatus,
)

logger = logging.getLogger(__name__)

KEY_MAX_LENGTH = Reminder._meta.get_field("idempotency_key").max_length
#: Keys and ids per ``IN (…)`` list / INSERT: well below PostgreSQL's 65535 parameters per statement.
CHUNK = 2000


# --- settings, read at run time ---------------------------------------------------------------------------


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def max_lost_sends() -> int:
    """Sends cut off by a dead worker before a row is FAILED: a message that kills its worker must not loop."""
    return _setting("ANTICOAG_REMINDER_MAX_LOST_SENDS", 3)


def _lease_doublings() -> int:
    """How often the enqueue lease doubles before it reaches its cap."""
    base = max(_setting("ANTICOAG_REMINDER_ENQUEUE_LEASE_SECONDS", 120), 1)
    cap = max(_setting("ANTICOAG_REMINDER_ENQUEUE_LEASE_MAX_SECONDS", 1800), base)
    doublings = 0
    while base * 2**doublings < cap:
        doublings += 1
    return doublings


def enqueue_lease(enqueues: int = 0) -> timedelta:
    """How long the sweep leaves a row alone after enqueueing it for the ``enqueues + 1``-th time.

    Base, 2 × base, 4 × base… capped: a row whose earlier task still waits in a slow queue is enqueued again
    ever more rarely, so the number of tasks per reminder grows with the logarithm of the queue's delay
    instead of linearly (a task lost by the broker still comes back, at the latest after the cap).
    """
    base = _setting("ANTICOAG_REMINDER_ENQUEUE_LEASE_SECONDS", 120)
    cap = max(_setting("ANTICOAG_REMINDER_ENQUEUE_LEASE_MAX_SECONDS", 1800), base)
    return timedelta(seconds=min(base * 2 ** min(enqueues, _lease_doublings()), cap))


def queue_for(kind: str) -> str:
    """Urgent alerts have their own queue, served by a worker of its own; everything else the default one."""
    if kind == ReminderKind.URGENT:
        return getattr(settings, "ANTICOAG_URGENT_QUEUE", "urgent")
    return getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery")


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


def escalation_key(*, clinic_id: int, recipient: str, on: date) -> str:
    """One escalation e-mail per recipient per clinic-local day: ``escalation:{clinic}:{date}:{address}``."""
    address = recipient.strip().lower()
    key = f"escalation:{clinic_id}:{on.isoformat()}:{address}"
    if len(key) > KEY_MAX_LENGTH:  # a very long address: keep the key unique, and within the column
        key = f"escalation:{clinic_id}:{on.isoformat()}:sha256-{hashlib.sha256(address.encode()).hexdigest()}"
    return key


def dna_escalation_key(*, follow_up_id: int, recipient: str) -> str:
    """The one escalation of a recall after a second missed INR test: ``escalation:dna:{item}:{address}``."""
    address = recipient.strip().lower()
    key = f"escalation:dna:{follow_up_id}:{address}"
    if len(key) > KEY_MAX_LENGTH:
        key = f"escalation:dna:{follow_up_id}:sha256-{hashlib.sha256(address.encode()).hexdigest()}"
    return key


# --- materialise ------------------------------------------------------------------------------------------


def outbox_count(*, kind: str, event: str, by: int = 1) -> None:
    """Add ``by`` to the running total of ``event`` for reminders of ``kind`` (the metrics' counters)."""
    if by <= 0:
        return
    if OutboxCounter.objects.filter(kind=kind, event=event).update(total=F("total") + by):
        return
    counter, created = OutboxCounter.objects.get_or_create(kind=kind, event=event, defaults={"total": by})
    if not created:  # another process created it meanwhile
        OutboxCounter.objects.filter(pk=counter.pk).update(total=F("total") + by)


def send_batch_size() -> int:
    """Routine reminders sent per task over one SMTP connection (urgent alerts go one by one, at once)."""
    return max(_setting("ANTICOAG_REMINDER_SEND_BATCH_SIZE", 20), 1)


def _enqueue(rows: Iterable[tuple[int, str]]) -> None:
    """Put the send tasks of ``(id, kind)`` rows on their kind's queue: one task per urgent alert, one task
    per batch of routine reminders (sent over one SMTP connection). Runs after commit; a broker failure only
    costs a delay."""
    from .tasks import send_reminder, send_reminders  # the tasks module imports this one

    urgent = [reminder_id for reminder_id, kind in rows if kind == ReminderKind.URGENT]
    routine = [reminder_id for reminder_id, kind in rows if kind != ReminderKind.URGENT]
    tasks = [send_reminder.s(reminder_id).set(queue=queue_for(ReminderKind.URGENT)) for reminder_id in urgent]
    tasks += [
        send_reminders.s(list(batch)).set(queue=queue_for(ReminderKind.DIGEST))
        for batch in _chunks(routine, send_batch_size())
    ]
    for task in tasks:
        try:
            task.delay()
        except Exception:
            # The rows keep their enqueue lease; the first sweep after it enqueues them again.
            logger.warning("Could not enqueue a send task; a later sweep retries", exc_info=True)
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
        "enqueues": 1 if urgent else 0,
    }
    with transaction.atomic():
        reminder, created = Reminder.objects.get_or_create(idempotency_key=key, defaults=defaults)
        if created:
            follow_ups = list(follow_ups)
            if follow_ups:
                reminder.follow_ups.add(*follow_ups)
            if urgent:
                transaction.on_commit(partial(_enqueue, [(reminder.pk, reminder.kind)]), robust=True)
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


#: An item stays in a recipient's escalation e-mails once a week while it is open.
ESCALATION_REPEAT_DAYS = 7


def _recently_escalated(due: dict[int, date], now: datetime) -> set[tuple[int, str]]:
    """(item id, recipient address in lower case) escalated less than a week before each clinic's today.
    One query, on the escalation rows of the last days only (the day itself comes from the key)."""
    # Rows are stamped with the wall clock; ``now`` may be earlier (a sweep for a given time): take the earlier.
    since = min(now, timezone.now()) - timedelta(days=ESCALATION_REPEAT_DAYS + 2)
    Through = Reminder.follow_ups.through
    recent: set[tuple[int, str]] = set()
    for item_id, clinic_id, recipient, key in Through.objects.filter(
        reminder__kind=ReminderKind.ESCALATION, reminder__clinic_id__in=due, reminder__created_at__gte=since
    ).values_list("followup_id", "reminder__clinic_id", "reminder__recipient", "reminder__idempotency_key"):
        on = escalation_date_of(key)
        if on is not None and (due[clinic_id] - on).days < ESCALATION_REPEAT_DAYS:
            recent.add((item_id, recipient.strip().lower()))
    return recent


def _escalation_rows(due: dict[int, date], now: datetime) -> list[tuple[Reminder, list[int]]]:
    """One e-mail per recipient and clinic-local day listing the open items overdue beyond the threshold:
    to each item's responsible clinician (when active and with an address) and to the clinic's alert address.

    An item is listed when it first passes the threshold, then again every :data:`ESCALATION_REPEAT_DAYS`
    days while it stays open (so a day the sweep did not run delays it by a day, never by a week). The key
    (``escalation:{clinic}:{day}:{address}``) makes the day's e-mail exist once, however often the sweep runs.
    """
    after_days = _setting("ANTICOAG_ESCALATE_AFTER_DAYS", 7)
    overdue = Q()
    for clinic_id, today in due.items():
        overdue |= Q(patient__clinic_id=clinic_id, due_on__lt=calendar.escalation_cutoff(today, after_days))
    recent = _recently_escalated(due, now)
    # (clinic id, address in lower case) → [address, user id, item ids]
    grouped: dict[tuple[int, str], list[Any]] = {}
    for item_id, clinic_id, alert_email, clinician_id, clinician_email, clinician_active in (
        _open_items()
        .filter(overdue)
        .order_by("due_on", "pk")
        .values_list(
            "pk",
            "patient__clinic_id",
            "patient__clinic__alert_email",
            "patient__responsible_clinician_id",
            "patient__responsible_clinician__email",
            "patient__responsible_clinician__is_active",
        )
    ):
        recipients: dict[str, tuple[str, int | None]] = {}
        if clinician_id and clinician_active and (clinician_email or "").strip():
            recipients[clinician_email.strip().lower()] = (clinician_email.strip(), clinician_id)
        if (alert_email or "").strip():
            recipients.setdefault(alert_email.strip().lower(), (alert_email.strip(), None))
        for lower, (address, user_id) in recipients.items():
            if (item_id, lower) in recent:
                continue
            row = grouped.setdefault((clinic_id, lower), [address, user_id, []])
            row[1] = row[1] or user_id
            row[2].append(item_id)
    return [
        (
            Reminder(
                clinic_id=clinic_id,
                kind=ReminderKind.ESCALATION,
                recipient=address,
                recipient_user_id=user_id,
                next_attempt_at=now,
                idempotency_key=escalation_key(clinic_id=clinic_id, recipient=address, on=due[clinic_id]),
            ),
            item_ids,
        )
        for (clinic_id, _), (address, user_id, item_ids) in grouped.items()
    ]


def dna_escalation_rows(due: dict[int, date], now: datetime) -> list[tuple[Reminder, list[int]]]:
    """A recall after a second missed INR test in a row (:mod:`scheduling.missed_tests`) escalates once, by
    the escalation e-mail, to the responsible clinician and the clinic's alert address (week 0 of the
    escalation keys: the weekly escalation of overdue items starts at week 1)."""
    rows: list[tuple[Reminder, list[int]]] = []
    for item_id, clinic_id, alert_email, clinician_id, clinician_email, clinician_active in (
        _open_items()
        .filter(rule=DNA_ESCALATED_RULE, patient__clinic_id__in=due)
        .values_list(
            "pk",
            "patient__clinic_id",
            "patient__clinic__alert_email",
            "patient__responsible_clinician_id",
            "patient__responsible_clinician__email",
            "patient__responsible_clinician__is_active",
        )
    ):
        recipients: dict[str, int | None] = {}
        if clinician_id and clinician_active and clinician_email:
            recipients[clinician_email.strip()] = clinician_id
        if alert_email and alert_email.strip().lower() not in {r.lower() for r in recipients}:
            recipients[alert_email.strip()] = None
        for recipient, user_id in recipients.items():
            reminder = Reminder(
                clinic_id=clinic_id,
                kind=ReminderKind.ESCALATION,
                reason=DNA_ESCALATION_REASON,
                recipient=recipient,
                recipient_user_id=user_id,
                next_attempt_at=now,
                idempotency_key=dna_escalation_key(follow_up_id=item_id, recipient=recipient),
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


#: PostgreSQL advisory lock held while a sweep materialises: concurrent sweeps take turns.
MATERIALISE_LOCK = 0x5CED_0019


def reminders_materialise_due(*, now: datetime) -> dict[str, int]:
    """Digests and escalations of every clinic whose local digest time has come today (idempotent).

    The counts are the rows this call inserted: concurrent sweeps materialise one after the other (an
    advisory lock on PostgreSQL), so the second one finds the first one's rows and counts none of them.
    """
    due = _due_clinics(now)
    if not due:
        return {"digests": 0, "escalations": 0}
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [MATERIALISE_LOCK])
        counts = _insert(_digest_rows(due, now) + _escalation_rows(due, now) + dna_escalation_rows(due, now))
    return {"digests": counts[ReminderKind.DIGEST], "escalations": counts[ReminderKind.ESCALATION]}


# --- the sweep --------------------------------------------------------------------------------------------


def reminders_reclaim(*, now: datetime) -> dict[str, int]:
    """SENDING rows whose send lease expired belonged to a dead worker: back to PENDING, ``lost_sends`` + 1.
    A row whose sends were cut off ``ANTICOAG_REMINDER_MAX_LOST_SENDS`` times is FAILED instead, so a
    message that kills its worker cannot loop for ever (it shows on /healthz and the dashboard)."""
    expired = Reminder.objects.filter(status=ReminderStatus.SENDING, lease_until__lt=now)
    error = "WorkerLost: the send lease expired before the outcome was recorded"
    failed_kinds: dict[str, int] = defaultdict(int)
    with transaction.atomic():
        poison = expired.filter(lost_sends__gte=max_lost_sends() - 1)
        if connection.features.has_select_for_update_skip_locked:
            poison = poison.select_for_update(skip_locked=True)
        rows = list(poison.values_list("pk", "kind"))
        if rows:
            expired.filter(pk__in=[pk for pk, _ in rows]).update(
                status=ReminderStatus.FAILED,
                lease_until=None,
                lost_sends=F("lost_sends") + 1,
                last_error=error,
                updated_at=timezone.now(),
            )
        for _, kind in rows:
            failed_kinds[kind] += 1
        for kind, count in failed_kinds.items():
            outbox_count(kind=kind, event=OutboxEvent.FAILED, by=count)
    reclaimed = expired.update(
        status=ReminderStatus.PENDING,
        lease_until=None,
        lost_sends=F("lost_sends") + 1,
        last_error=error,
        updated_at=timezone.now(),
    )
    return {"reclaimed": reclaimed, "failed": sum(failed_kinds.values())}


def _newer_digests() -> Any:
    """Digests to the same nurse of the same clinic, made after the outer row, and not given up."""
    return Reminder.objects.filter(
        kind=ReminderKind.DIGEST,
        clinic_id=OuterRef("clinic_id"),
        recipient_user_id=OuterRef("recipient_user_id"),
        created_at__gt=OuterRef("created_at"),
        status__in=[ReminderStatus.PENDING, ReminderStatus.SENDING, ReminderStatus.SENT],
    )


def reminders_supersede(*, now: datetime, reminder_id: int | None = None) -> int:
    """Mark PENDING digests that a newer digest to the same nurse covers SUPERSEDED (all of them, or only
    ``reminder_id``); returns how many. A digest lists every open item overdue, due today or this week, so
    the newer one lists whatever of the older one is still open: sending the older one late would only
    repeat it. Only digests never sent (an administrator's resend of a sent one is kept), and never an
    urgent alert or an escalation."""
    stale = Reminder.objects.filter(
        kind=ReminderKind.DIGEST, status=ReminderStatus.PENDING, recipient_user__isnull=False, sent_at__isnull=True
    ).filter(Exists(_newer_digests()))
    if reminder_id is not None:
        stale = stale.filter(pk=reminder_id)
    count = stale.update(
        status=ReminderStatus.SUPERSEDED,
        superseded_by=Subquery(_newer_digests().order_by("-created_at", "-pk").values("pk")[:1]),
        lease_until=None,
        updated_at=now,
    )
    outbox_count(kind=ReminderKind.DIGEST, event=OutboxEvent.SUPERSEDED, by=count)
    return count


def reminders_claim(*, now: datetime) -> list[int]:
    """Claim due PENDING rows in batches by setting an enqueue lease; enqueue each claimed id after commit.

    The rows stay PENDING: the lease only keeps other sweeps from enqueueing them again. It doubles with
    each enqueue since the row's last send attempt (``enqueue_lease``): a task still waiting in a slow queue
    is not joined by a new one every sweep. On PostgreSQL the batch is read ``FOR UPDATE SKIP LOCKED`` so
    concurrent sweeps take disjoint rows; elsewhere the conditional UPDATE keeps it correct (its row count
    tells whether someone else was faster).
    """
    batch = _setting("ANTICOAG_SWEEP_BATCH_SIZE", 500)
    doublings = _lease_doublings()
    claimable = Q(status=ReminderStatus.PENDING, next_attempt_at__lte=now) & (
        Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    )
    claimed: list[int] = []
    while True:
        with transaction.atomic():
            candidates = Reminder.objects.filter(claimable).order_by("next_attempt_at", "pk")
            if connection.features.has_select_for_update_skip_locked:
                candidates = candidates.select_for_update(skip_locked=True)
            rows = list(candidates.values_list("pk", "kind", "enqueues")[:batch])
            if not rows:
                break
            # One UPDATE per lease length (at most doublings + 1 of them), not one per row.
            by_lease: dict[int, list[tuple[int, str]]] = defaultdict(list)
            for pk, kind, enqueues in rows:
                by_lease[min(enqueues, doublings)].append((pk, kind))
            mine: list[tuple[int, str]] = []
            for step, group in sorted(by_lease.items()):
                lease = now + enqueue_lease(step)
                ids = [pk for pk, _ in group]
                updated = Reminder.objects.filter(claimable, pk__in=ids).update(
                    lease_until=lease, enqueues=F("enqueues") + 1, updated_at=timezone.now()
                )
                if updated != len(ids):  # someone else claimed some of them: keep those carrying our lease
                    won = set(Reminder.objects.filter(pk__in=ids, lease_until=lease).values_list("pk", flat=True))
                    group = [row for row in group if row[0] in won]
                mine.extend(group)
            # Runs when this transaction commits (at once if there is no outer one): the task must find the
            # row committed, and a rolled-back claim must not be enqueued.
            transaction.on_commit(partial(_enqueue, mine), robust=True)
        claimed.extend(pk for pk, _ in mine)
        if len(rows) < batch:
            break
    return claimed


def sweep(*, now: datetime | None = None) -> dict[str, int]:
    """One pass of the outbox: reclaim dead sends, materialise due digests and escalations, supersede
    digests that a newer one covers, claim and enqueue.

    Returns counts, each of rows *this* sweep changed (concurrent sweeps' counts add up): ``reclaimed``,
    ``failed`` (a row that kept killing its worker), ``digests`` and ``escalations`` (new rows),
    ``superseded``, ``claimed`` (rows enqueued). Its number of queries does not grow with the number of
    patients or items (set-based reads, bulk inserts, claims in batches).
    """
    now = now or timezone.now()
    counts = reminders_reclaim(now=now)
    counts |= reminders_materialise_due(now=now)
    counts["superseded"] = reminders_supersede(now=now)
    counts["claimed"] = len(reminders_claim(now=now))
    return counts


# --- sending ----------------------------------------------------------------------------------------------


class InvalidRecipient(ValueError):
    """The reminder's address is not an e-mail address: no retry can deliver it."""


def is_permanent(exc: BaseException) -> bool:
    """Only a refusal of *this* message is permanent: a 5xx for its recipient (every recipient, when there
    are several) or for its content, or an invalid address. A refused connection, a time-out, any 4xx, and
    a 5xx that is about the server or our own configuration (greeting, HELO, sender, authentication) may
    change without the reminder changing: those retry."""
    if isinstance(exc, InvalidRecipient):
        return True
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return bool(codes) and all(500 <= code < 600 for code in codes)
    if isinstance(exc, smtplib.SMTPDataError):
        return 500 <= exc.smtp_code < 600
    return False


def _describe(exc: BaseException) -> str:
    """The exception class and message: SMTP replies, never our e-mail's content."""
    return f"{type(exc).__name__}: {exc}"[:1000]


def _deliver(reminder: Reminder, message_id: str, smtp: Any = None) -> None:
    """Render and hand one reminder to the SMTP server, over ``smtp`` (an e-mail backend kept open by a
    batch) or a connection of its own."""
    try:
        validate_email(reminder.recipient)
    except ValidationError:
        raise InvalidRecipient("the recipient is not a valid e-mail address") from None
    rendered = reminder_render(reminder=reminder)
    message = EmailMultiAlternatives(
        subject=rendered.subject,
        body=rendered.text,
        from_email=from_address(),
        to=[reminder.recipient],
        headers={"Message-ID": message_id, "Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"},
        connection=smtp or get_connection(timeout=settings.EMAIL_TIMEOUT),
    )
    if smtp is not None:
        smtp.open()  # a no-op while the batch's connection is open; reconnects after an error closed it
    message.attach_alternative(rendered.html, "text/html")
    message.send(fail_silently=False)


def reminder_send(*, reminder_id: int, now: datetime | None = None, smtp: Any = None) -> str:
    """Send one reminder if it is ours to send. Returns ``sent``, ``retry``, ``failed``, ``superseded`` or
    ``skipped``.

    A digest that a newer digest covers is marked SUPERSEDED instead. Otherwise claims ``PENDING →
    SENDING`` with a send lease by a conditional UPDATE; a row count of 0 means another worker has it, it is
    not due yet, or it is done: ``skipped``. Then renders and sends *outside* any transaction (call it in
    autocommit mode), and marks the row SENT. A transient error puts it back to PENDING with capped
    exponential backoff, however many attempts it took; only a permanent refusal makes it FAILED.
    """
    started = now or timezone.now()
    if reminders_supersede(now=started, reminder_id=reminder_id):
        return "superseded"
    lease = started + send_lease()
    claimed = Reminder.objects.filter(
        pk=reminder_id, status=ReminderStatus.PENDING, next_attempt_at__lte=started
    ).update(
        status=ReminderStatus.SENDING,
        lease_until=lease,
        attempts=F("attempts") + 1,
        enqueues=0,
        updated_at=timezone.now(),
    )
    if not claimed:
        return "skipped"
    reminder = Reminder.objects.select_related("clinic", "inr_reading__patient").get(pk=reminder_id)
    message_id = message_id_for(reminder)
    try:
        _deliver(reminder, message_id, smtp)
    except Exception as exc:
        return _record_failure(reminder, exc, lease=lease, now=now)
    # The SMTP server has it: SENT is the truth now, whatever happened to the row meanwhile (a reclaim after
    # an overlong send must not cause a needless second copy).
    marked = (
        Reminder.objects.filter(pk=reminder_id)
        .exclude(status=ReminderStatus.SENT)
        .update(
            status=ReminderStatus.SENT,
            sent_at=now or timezone.now(),
            message_id=message_id,
            lease_until=None,
            updated_at=timezone.now(),
        )
    )
    outbox_count(kind=reminder.kind, event=OutboxEvent.SENT, by=marked)
    logger.info("Reminder %s sent (%s, attempt %s)", reminder_id, reminder.kind, reminder.attempts)
    return "sent"


def _record_failure(reminder: Reminder, exc: Exception, *, lease: datetime, now: datetime | None) -> str:
    error = _describe(exc)
    give_up = is_permanent(exc)
    if not isinstance(exc, OSError):  # smtplib errors are OSErrors; anything else is a defect to look at
        logger.exception("Reminder %s could not be rendered or sent", reminder.pk)
    changes: dict[str, Any] = {"lease_until": None, "last_error": error, "updated_at": timezone.now()}
    if give_up:
        changes["status"] = ReminderStatus.FAILED
    else:
        changes["status"] = ReminderStatus.PENDING
        changes["next_attempt_at"] = (now or timezone.now()) + retry_delay(reminder.attempts)
    # Only while the row is still ours (same lease): after a reclaim another worker owns it.
    recorded = Reminder.objects.filter(pk=reminder.pk, status=ReminderStatus.SENDING, lease_until=lease).update(
        **changes
    )
    outbox_count(kind=reminder.kind, event=OutboxEvent.FAILED if give_up else OutboxEvent.RETRIED, by=recorded)
    logger.warning("Reminder %s attempt %s: %s → %s", reminder.pk, reminder.attempts, error, changes["status"].upper())
    return "failed" if give_up else "retry"


def reminders_send_batch(*, reminder_ids: Sequence[int], now: datetime | None = None) -> dict[str, int]:
    """Send several reminders over one SMTP connection; returns how many had each outcome.

    Each reminder is still claimed, sent and marked on its own (``reminder_send``), so a failure costs only
    its own message: after any error the connection is closed and the next message opens a fresh one (a
    session that refused a message, or broke, is not trusted with the next).
    """
    smtp = get_connection(timeout=settings.EMAIL_TIMEOUT)
    outcomes: dict[str, int] = defaultdict(int)
    try:
        for reminder_id in reminder_ids:
            outcome = reminder_send(reminder_id=reminder_id, now=now, smtp=smtp)
            outcomes[outcome] += 1
            if outcome in ("retry", "failed"):
                smtp.close()
    finally:
        smtp.close()
    return dict(outcomes)
