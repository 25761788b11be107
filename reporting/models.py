"""What leaves the clinic in bulk: the export log, and the nurses' secret calendar feeds.

This app sits on top of the others (``reporting → scheduling → anticoag → patients``): exports, the FHIR
view and the calendar read every app, and nothing depends on them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ExportDataset(models.TextChoices):
    PATIENTS = "patients", "Patients"
    EPISODES = "episodes", "CVT episodes"
    PLANS = "plans", "Plans"
    INR_READINGS = "inr-readings", "INR readings"
    FOLLOW_UPS = "follow-ups", "Follow-ups"
    OUTCOMES = "outcomes", "Outcome reviews"
    EVENTS = "events", "Clinical events"


class ExportFormat(models.TextChoices):
    CSV = "csv", "CSV"
    NDJSON = "ndjson", "NDJSON (one JSON object a line)"


class ExportLog(models.Model):
    """One export: who, when, which data set in which format, with which filters, and how many rows left.

    The row is written when the stream starts and completed (row count, end time) when it ends, including
    when the client goes away half way (``completed`` stays false then). Holding the ``export`` permission
    (``reporting.export_exportlog``) is what allows exporting at all; see ``patients.roles``.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    dataset = models.CharField(max_length=20, choices=ExportDataset.choices)
    format = models.CharField(max_length=8, choices=ExportFormat.choices)
    pseudonymised = models.BooleanField(default=False)
    filters = models.JSONField(default=dict, blank=True, help_text="The query parameters, as given.")
    clinic_ids = models.JSONField(null=True, blank=True, help_text="The clinics in scope (empty: all, superuser).")
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    row_count = models.PositiveBigIntegerField(default=0)
    completed = models.BooleanField(default=False, help_text="False: the stream was cut short.")

    class Meta:
        ordering = ["-started_at", "-pk"]
        default_permissions = ("view",)
        permissions = [("export_exportlog", "Can export data sets (CSV, NDJSON; identified or pseudonymised)")]

    def __str__(self) -> str:
        kind = "research " if self.pseudonymised else ""
        return f"{kind}{self.dataset}.{self.format} of {self.started_at:%Y-%m-%d %H:%M}"


class CalendarFeedQuerySet(models.QuerySet):
    def active(self) -> CalendarFeedQuerySet:
        return self.filter(revoked_at__isnull=True)


class CalendarFeed(models.Model):
    """A nurse's secret calendar URL (``/api/v1/calendar/<token>.ics``) listing her open follow-ups.

    Only the hash of the token is stored: the URL is shown once, when the feed is created. Revoking keeps the
    row (who had a feed, when it was last read) and makes the URL answer 404.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="calendar_feeds")
    label = models.CharField(max_length=80, blank=True, help_text="Where it is used, e.g. 'work phone'.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_read_at = models.DateTimeField(null=True, blank=True)

    objects = CalendarFeedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "calendar feed"

    def __str__(self) -> str:
        state = "revoked" if self.revoked_at else "active"
        return f"Calendar feed {self.pk} of {self.user} ({state})"
