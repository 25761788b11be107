"""Celery tasks: thin wrappers over ``scheduling.outbox`` (the services hold the logic and are tested directly).

No ETA/countdown anywhere (architecture): with the Redis broker a delayed task is redelivered after the
visibility timeout and a restart loses it. The database row, its ``next_attempt_at`` and its leases decide
when a reminder goes; the sweep (beat, every few minutes) is what brings it back onto the queue.
"""

from __future__ import annotations

from celery import shared_task

from .missed_tests import missed_inr_tests_mark
from .outbox import reminder_send, reminders_send_batch, sweep


@shared_task(name="scheduling.send_reminder", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def send_reminder(reminder_id: int) -> str:
    """Send one reminder if it is still ours to send (idempotent: a second delivery of the task is skipped).

    ``acks_late`` + ``reject_on_worker_lost``: a worker killed mid-task leaves the message to be delivered
    again. No ``autoretry_for``: a retry would be a countdown task. A database or SMTP outage leaves the row
    PENDING (with its backoff) or SENDING (until its lease runs out), and the sweep enqueues it again.
    """
    return reminder_send(reminder_id=reminder_id)


@shared_task(name="scheduling.send_reminders", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def send_reminders(reminder_ids: list[int]) -> dict[str, int]:
    """Send a batch of routine reminders over one SMTP connection, each claimed and marked on its own (a
    redelivered batch skips what is already sent; see ``send_reminder`` for the rest)."""
    return reminders_send_batch(reminder_ids=reminder_ids)


@shared_task(name="scheduling.sweep", ignore_result=True)
def sweep_task() -> dict[str, int]:
    """Beat's entry point: one pass of the outbox (see ``scheduling.outbox.sweep``)."""
    return sweep()


@shared_task(name="scheduling.missed_inr_tests", ignore_result=True)
def missed_inr_tests_task() -> dict[str, int]:
    """Beat's entry point: INR tests not done in time become "did not attend" and are recalled
    (see ``scheduling.missed_tests.missed_inr_tests_mark``)."""
    return missed_inr_tests_mark()
