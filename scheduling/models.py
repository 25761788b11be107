"""Follow-up items and the reminder outbox.

The database is the truth (architecture: reliability model). A follow-up item is a thing a nurse must see
done by a date; a reminder is an e-mail that must reach someone. Celery only moves work along: a lost
broker message, a flushed Redis or a killed worker delays a reminder, never loses it, because the row stays
``pending`` (or ``sending`` past its lease) until an SMTP server accepted it.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from anticoag.models import InrReading
from patients.dates import validate_clinical_date, validate_clinical_date_may_be_future
from patients.models import Clinic, CvtEpisode, Patient


class FollowUpKind(models.TextChoices):
    VENOUS_IMAGING = "venous_imaging", "Venous imaging (CT/MR venography)"
    MICROBLEED_MRI = "microbleed_mri", "MRI with SWI/GRE (microbleeds)"
    URGENT_IMAGING = "urgent_imaging", "Urgent repeat CT/MRI"
    INR_TEST = "inr_test", "INR test"
    RENAL_FUNCTION = "renal_function", "Renal function (creatinine, hemoglobin)"
    END_OF_THERAPY_REVIEW = "end_of_therapy_review", "End-of-therapy review"
    ANNUAL_REVIEW = "annual_review", "Annual review"
    CANCER_REVIEW = "cancer_review", "Six-monthly review (active cancer)"
    THROMBOPHILIA_TESTING = "thrombophilia_testing", "Thrombophilia testing (protein C, S, antithrombin)"
    PROCEDURE_INR_CHECK = "procedure_inr_check", "INR check before a procedure"
    PROCEDURE_RESTART = "procedure_restart", "Restart anticoagulation after a procedure"
    OUTCOME_REVIEW = "outcome_review", "Outcome review (mRS)"
    EVENT_REVIEW = "event_review", "Plan review after a bleeding event"


class FollowUpStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    DONE = "done", "Done"
    CANCELLED = "cancelled", "Cancelled"
    MISSED = "missed", "Missed"


class Recanalization(models.TextChoices):
    """Result of venous imaging."""

    COMPLETE = "complete", "Complete recanalization"
    PARTIAL = "partial", "Partial recanalization"
    NONE = "none", "No recanalization"


def open_due_on() -> models.Case:
    """An open item's due date, NULL for a closed one: the expression ``followup_open_due_on_idx`` indexes.

    PostgreSQL keeps statistics of an indexed expression, not of a partial index's rows. Items done in the
    past and items open in the future make "open and due by Friday" look like a third of the table to the
    planner when it is a handful; filtered on this expression it sees the open items' own dates (issue 18:
    the network dashboard's work table went from a scan of every patient to an index lookup)."""
    return models.Case(
        models.When(status=FollowUpStatus.SCHEDULED, then=models.F("due_on")), output_field=models.DateField()
    )


class FollowUp(models.Model):
    """Something due for a patient by a date: imaging, an INR test, labs, a review.

    ``key`` makes generation idempotent: the rule that creates an item names it the same way every time
    (for example ``ep42:venous_imaging``), so regenerating updates open items and never duplicates them.
    """

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="follow_ups")
    episode = models.ForeignKey(CvtEpisode, on_delete=models.CASCADE, null=True, blank=True, related_name="follow_ups")
    kind = models.CharField(max_length=32, choices=FollowUpKind.choices)
    due_on = models.DateField(db_index=True, validators=[validate_clinical_date_may_be_future])
    window_end_on = models.DateField(null=True, blank=True, validators=[validate_clinical_date_may_be_future])
    status = models.CharField(max_length=12, choices=FollowUpStatus.choices, default=FollowUpStatus.SCHEDULED)
    completed_on = models.DateField(null=True, blank=True, validators=[validate_clinical_date])
    recanalization = models.CharField(max_length=10, choices=Recanalization.choices, blank=True)
    result_note = models.CharField(max_length=500, blank=True)
    rule = models.CharField(max_length=80, help_text="The rule that created the item.")
    source = models.CharField(max_length=300, blank=True, help_text="Guideline source of the rule.")
    key = models.CharField(max_length=120, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["due_on", "pk"]
        verbose_name = "follow-up"
        indexes = [
            # The sweep and the work lists read open items by date: keep that index small.
            models.Index(fields=["due_on"], name="followup_open_due_idx", condition=Q(status=FollowUpStatus.SCHEDULED)),
            models.Index(fields=["patient", "status", "due_on"], name="followup_patient_idx"),
            models.Index(open_due_on(), name="followup_open_due_on_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} due {self.due_on.isoformat()}"

    def save(self, *args, **kwargs) -> None:
        # An item added by hand (admin, API) has no rule to name it: a generated key keeps the column unique
        # without an empty string that only the first manual item could hold.
        if not self.key:
            self.key = f"manual:{uuid.uuid4().hex}"
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "key"}
        super().save(*args, **kwargs)


class ReminderKind(models.TextChoices):
    DIGEST = "digest", "Daily digest"
    URGENT = "urgent", "Urgent alert"
    ESCALATION = "escalation", "Escalation"


class ReminderStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed (refused for good)"
    SUPERSEDED = "superseded", "Superseded by a newer digest"


class Reminder(models.Model):
    """An e-mail in the outbox. ``idempotency_key`` makes it exist once, however often it is materialised.

    Life: PENDING → (claimed) SENDING → SENT; on a transient error (connection refused, time-out, a 4xx
    answer) back to PENDING with ``attempts`` + 1 and ``next_attempt_at`` later, for as long as it takes;
    FAILED only on a permanent refusal (a 5xx for the recipient or the message, an invalid address). A digest
    that a newer digest to the same nurse covers becomes SUPERSEDED instead of going out late; an urgent
    alert never does. A SENDING row whose ``lease_until`` has passed belonged to a worker that died: the next
    sweep makes it PENDING again (``lost_sends`` + 1; a row that keeps killing its worker ends FAILED).
    """

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="reminders")
    kind = models.CharField(max_length=12, choices=ReminderKind.choices)
    recipient = models.EmailField()
    recipient_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    follow_ups = models.ManyToManyField(FollowUp, blank=True, related_name="reminders")
    inr_reading = models.ForeignKey(
        InrReading,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="alerts",
        help_text="The reading an urgent INR alert is about.",
    )
    reason = models.CharField(max_length=40, blank=True, help_text="Alert code, e.g. inr_critical.")
    status = models.CharField(max_length=10, choices=ReminderStatus.choices, default=ReminderStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    lease_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    message_id = models.CharField(max_length=200, blank=True)
    last_error = models.TextField(blank=True)
    idempotency_key = models.CharField(max_length=160, unique=True)
    # db_default as well: rows written by plain SQL (the benchmark's bulk INSERT) get the same zero.
    enqueues = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Send tasks the sweep put on the queue since the last send attempt."
    )
    lost_sends = models.PositiveSmallIntegerField(
        default=0, db_default=0, help_text="Sends cut off by a dead worker (the send lease expired)."
    )
    superseded_by = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The newer digest that lists this one's items.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            # Partial indexes on the work still to do: the sweep's claim queries touch only these rows.
            models.Index(
                fields=["next_attempt_at"], name="reminder_pending_idx", condition=Q(status=ReminderStatus.PENDING)
            ),
            models.Index(
                fields=["lease_until"], name="reminder_sending_idx", condition=Q(status=ReminderStatus.SENDING)
            ),
            # The outbox figures (/healthz, metrics, the dashboard banner) count failed rows by age.
            models.Index(fields=["updated_at"], name="reminder_failed_idx", condition=Q(status=ReminderStatus.FAILED)),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} to {self.recipient} ({self.get_status_display()})"


class OutboxEvent(models.TextChoices):
    SENT = "sent", "Sent"
    RETRIED = "retried", "Retried after a transient error"
    FAILED = "failed", "Failed (refused for good)"
    SUPERSEDED = "superseded", "Superseded by a newer digest"


class OutboxCounter(models.Model):
    """A running total of one outbox event for one kind of reminder (the metrics endpoint's counters).

    Kept in the database, not in a process: sends happen in any worker, the metrics are read by any web
    process, and a restart must not lose them. One row per (kind, event), incremented by a single UPDATE.
    Delivery state, not clinical data: not audited.
    """

    kind = models.CharField(max_length=12, choices=ReminderKind.choices)
    event = models.CharField(max_length=12, choices=OutboxEvent.choices)
    total = models.PositiveBigIntegerField(default=0)

    class Meta:
        verbose_name = "outbox counter"
        constraints = [models.UniqueConstraint(fields=["kind", "event"], name="outbox_counter_unique")]

    def __str__(self) -> str:
        return f"{self.kind} {self.event}: {self.total}"
