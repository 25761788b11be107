"""Persisted plans: what the rules proposed for an episode, and what a clinician confirmed.

The rules (``anticoag.rules``) propose; a clinician confirms. ``Plan.proposal`` is a snapshot of the rules'
output (with its ``RULES_VERSION``), recomputed whenever the episode's facts change. ``PlanDecision`` rows
are the clinician's confirmations and overrides, append-only: a new proposal never erases one; it only
marks the plan "review needed" and records what changed.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from patients.clinic_time import clinic_datetime
from patients.dates import validate_clinical_date, validate_clinical_date_may_be_future
from patients.models import CvtEpisode, Patient


class PlanStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed, awaiting confirmation"
    CONFIRMED = "confirmed", "Confirmed"
    REVIEW = "review", "Facts changed since confirmation: review needed"


class Agent(models.TextChoices):
    """Anticoagulants a plan can name (reference §3)."""

    WARFARIN = "warfarin", "Warfarin (INR 2.0–3.0)"
    DABIGATRAN = "dabigatran", "Dabigatran"
    LMWH = "lmwh", "Low-molecular-weight heparin"
    UFH = "ufh", "Unfractionated heparin"
    # Reference §3 rev 2: the DOACs of 2024, and the non-heparin agents for VITT / HIT.
    RIVAROXABAN = "rivaroxaban", "Rivaroxaban"
    APIXABAN = "apixaban", "Apixaban"
    ARGATROBAN = "argatroban", "Argatroban (non-heparin)"
    FONDAPARINUX = "fondaparinux", "Fondaparinux (non-heparin)"


class Plan(models.Model):
    """The current treatment plan of one CVT episode."""

    episode = models.OneToOneField(CvtEpisode, on_delete=models.CASCADE, related_name="plan")
    facts = models.JSONField(help_text="The facts the proposal was computed from.")
    proposal = models.JSONField(help_text="The rules' recommendation, as computed.")
    rules_version = models.CharField(max_length=20)
    computed_at = models.DateTimeField()
    status = models.CharField(max_length=12, choices=PlanStatus.choices, default=PlanStatus.PROPOSED, db_index=True)
    changes = models.JSONField(
        default=list, blank=True, help_text="What changed between the confirmed proposal and the current one."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-computed_at"]
        indexes = [
            # The dashboard's "plans awaiting confirmation", oldest first: read in order from this partial
            # index instead of sorting every open plan (issue 9: 20,000 open plans in the network).
            models.Index(
                fields=["computed_at", "id"],
                name="plan_open_computed_idx",
                condition=Q(status__in=["proposed", "review"]),
            ),
        ]

    def __str__(self) -> str:
        return f"Plan for {self.episode}"

    @property
    def category(self) -> str:
        return self.proposal.get("category", "")

    @property
    def warnings_to_acknowledge(self) -> list[dict]:
        from anticoag.rules import ACKNOWLEDGE_SEVERITIES

        return [w for w in self.proposal.get("warnings", []) if w["severity"] in ACKNOWLEDGE_SEVERITIES]

    @property
    def current_decision(self) -> PlanDecision | None:
        return self.decisions.order_by("-decided_at", "-pk").first()


class PlanDecision(models.Model):
    """A clinician's confirmation of a plan, with overrides (agent, duration) and their reason."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="decisions")
    proposal = models.JSONField(help_text="The proposal as it stood when confirmed.")
    rules_version = models.CharField(max_length=20)
    agent = models.CharField(max_length=12, choices=Agent.choices)
    indefinite = models.BooleanField(default=False)
    duration_months = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Months of oral anticoagulation from diagnosis (finite courses)."
    )
    end_on = models.DateField(null=True, blank=True, help_text="Planned end of anticoagulation.")
    overridden = models.JSONField(default=list, blank=True, help_text="Which parts differ from the proposal.")
    override_reason = models.TextField(blank=True)
    acknowledged_warnings = models.JSONField(default=list, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decided_at = models.DateTimeField()

    class Meta:
        ordering = ["-decided_at", "-pk"]
        get_latest_by = "decided_at"

    def __str__(self) -> str:
        return f"{self.get_agent_display()} confirmed {self.decided_at:%Y-%m-%d}"


class InrSource(models.TextChoices):
    LAB = "lab", "Laboratory"
    POINT_OF_CARE = "poc", "Point of care"
    SELF_TEST = "self_test", "Patient self-test"


#: Plausible INR values (reference §4 and the INR issue): anything outside is a typing or unit error.
INR_MIN, INR_MAX = Decimal("0.5"), Decimal("20.0")


def validate_not_future_datetime(value) -> None:
    if value and value > timezone.now() + timedelta(minutes=5):  # five minutes of clock skew between devices
        raise ValidationError(f"{value.isoformat(timespec='minutes')} is in the future.", code="future")


class InrReading(models.Model):
    """One INR measurement of a warfarin patient."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="inr_readings")
    drawn_at = models.DateTimeField(validators=[validate_clinical_date])
    value = models.DecimalField(
        "INR",
        max_digits=4,
        decimal_places=2,
        validators=[
            MinValueValidator(INR_MIN, "An INR below 0.5 is not plausible: check the value."),
            MaxValueValidator(INR_MAX, "An INR above 20 is not plausible: check the value."),
        ],
    )
    source = models.CharField(max_length=10, choices=InrSource.choices, default=InrSource.LAB)
    bleeding = models.BooleanField("bleeding reported", default=False)
    entered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["patient", "-drawn_at"]
        verbose_name = "INR reading"
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "drawn_at"],
                name="inr_once_per_patient_and_time",
                violation_error_message="This patient already has an INR at that time.",
            ),
            models.CheckConstraint(
                condition=Q(value__gte=INR_MIN) & Q(value__lte=INR_MAX),
                name="inr_value_plausible",
                violation_error_message="The INR must be between 0.5 and 20.",
            ),
        ]
        indexes = [models.Index(fields=["patient", "drawn_at"], name="inr_patient_drawn_idx")]

    def __str__(self) -> str:
        # In the patient's clinic's zone, named: the title of the reading's page and of its history.
        clinic = self.patient.clinic if self.patient_id else None
        return f"INR of {clinic_datetime(self.drawn_at, clinic)}"

    def clean(self) -> None:
        super().clean()
        if self.patient_id and self.drawn_at:
            clash = InrReading.objects.filter(patient_id=self.patient_id, drawn_at=self.drawn_at).exclude(pk=self.pk)
            if clash.exists():
                raise ValidationError({"drawn_at": "This patient already has an INR at that time."})


class WarfarinDose(models.Model):
    """A warfarin dose as given: the weekly dose from a date, and the suggestion it answered, if any."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="warfarin_doses")
    starts_on = models.DateField(validators=[validate_clinical_date_may_be_future])
    weekly_dose_mg = models.DecimalField(
        "weekly dose (mg)",
        max_digits=5,
        decimal_places=1,
        validators=[MinValueValidator(Decimal("0.0")), MaxValueValidator(Decimal("175.0"))],
    )
    tablet_strength_mg = models.DecimalField(
        "tablet strength (mg)",
        max_digits=3,
        decimal_places=1,
        default=Decimal("5.0"),
        validators=[MinValueValidator(Decimal("0.5")), MaxValueValidator(Decimal("10.0"))],
    )
    hold_doses = models.PositiveSmallIntegerField(default=0, help_text="Doses withheld before this dose starts.")
    inr_reading = models.ForeignKey(
        InrReading,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="dose_decisions",
        help_text="The INR this dose answers.",
    )
    suggested_weekly_dose_mg = models.DecimalField(max_digits=5, decimal_places=1, null=True, blank=True)
    followed_suggestion = models.BooleanField(default=False)
    next_inr_on = models.DateField(
        "next INR test", null=True, blank=True, validators=[validate_clinical_date_may_be_future]
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    note = models.CharField(max_length=500, blank=True)
    # The dosing decision (issue 14; reference §4 "Warfarin tablets", rev 2): the week in tablets as given to
    # the patient (anticoag.tablets.WeeklySchedule.as_dict()), why it departs from the suggestion, and whether
    # it went beyond the clinic's guardrail.
    schedule = models.JSONField(
        default=dict, db_default={}, blank=True, help_text="The week in tablets, as given to the patient."
    )
    change_reason = models.CharField(
        "reason for departing from the suggestion", max_length=500, blank=True, db_default=""
    )
    beyond_guardrail = models.BooleanField(default=False, db_default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["patient", "-starts_on", "-pk"]
        indexes = [models.Index(fields=["patient", "-starts_on"], name="dose_patient_start_idx")]

    def __str__(self) -> str:
        return f"{self.weekly_dose_mg} mg/week from {self.starts_on.isoformat()}"


from .procedure_models import Procedure, ProcedureDecision  # noqa: E402,F401  (§8 procedures; own module)


class InrImportPhase(models.TextChoices):
    QUEUED = "queued", "Queued"
    VALIDATING = "validating", "Checking rows"
    STORING = "storing", "Storing readings"
    ANNOUNCING = "announcing", "Scheduling next tests and alerts"
    DONE = "done", "Imported"
    FAILED = "failed", "Refused: nothing imported"


class InrImport(models.Model):
    """A large INR CSV import, run in the background against the stored upload (issue 13).

    Above ``ANTICOAG_INR_IMPORT_BACKGROUND_ROWS`` data rows the request stores the file here and answers at
    once; a Celery task runs :func:`anticoag.inr.inr_import_csv` on ``content`` — all or nothing, as a small
    import — and writes its progress (``rows_done`` of ``rows_total`` in each phase) and then its result.
    The admin and ``GET /api/v1/inr-imports/{id}/`` show both.
    """

    clinic = models.ForeignKey("patients.Clinic", on_delete=models.PROTECT, related_name="inr_imports")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    file_name = models.CharField(max_length=200, blank=True)
    content = models.BinaryField(help_text="The uploaded file as received (it carries MRNs: shown to nobody).")
    phase = models.CharField(max_length=12, choices=InrImportPhase.choices, default=InrImportPhase.QUEUED)
    rows_total = models.PositiveIntegerField(default=0, help_text="Data rows in the file.")
    rows_done = models.PositiveIntegerField(default=0, help_text="Rows through the current phase.")
    imported = models.PositiveIntegerField(default=0)
    patients = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text="Refused rows: row, field, message.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "INR import"

    def __str__(self) -> str:
        return f"INR import {self.pk} ({self.get_phase_display()})"

    @property
    def finished(self) -> bool:
        return self.phase in (InrImportPhase.DONE, InrImportPhase.FAILED)


class TtrSnapshot(models.Model):
    """A clinic's quality figures for the dashboard's period, kept in the database (issue 18: the network
    dashboard read 900,000 readings on a cold cache).

    One per clinic: the period it covers (``period_start``–``period_end``), the day and instant the
    lost-to-follow-up rule is judged at, and the TTR policy it was computed with; a different period, day or
    policy recomputes it whole (:mod:`anticoag.ttr_snapshot`). Rows are per patient. PostgreSQL triggers
    (migration 0009) mark a patient stale on every write to the readings, the plan decisions or the patient's
    clinic or active flag — ORM, bulk or raw SQL alike — and the next read recomputes just those patients.
    Derived data: not audited, never edited, not shown in the admin."""

    clinic = models.OneToOneField(
        "patients.Clinic", on_delete=models.CASCADE, primary_key=True, related_name="+", db_constraint=False
    )
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    as_of_day = models.DateField()
    until = models.DateTimeField()
    policy = models.CharField(max_length=100)
    computed_at = models.DateTimeField()

    class Meta:
        verbose_name = "TTR snapshot"

    def __str__(self) -> str:
        return f"TTR snapshot of clinic {self.clinic_id} ({self.as_of_day})"


class TtrSnapshotRow(models.Model):
    """One patient's part of a :class:`TtrSnapshot`: TTR sums over the period (``readings`` 0 and no sums
    when the patient had no reading there) and, for a warfarin patient, the last INR before ``until``."""

    snapshot = models.ForeignKey(TtrSnapshot, on_delete=models.CASCADE, related_name="rows")
    patient = models.ForeignKey("patients.Patient", on_delete=models.CASCADE, related_name="+", db_constraint=False)
    readings = models.PositiveIntegerField(default=0)
    days_in_range = models.FloatField(null=True)
    days_total = models.FloatField(null=True)
    on_warfarin = models.BooleanField(default=False)
    last_inr_at = models.DateTimeField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["snapshot", "patient"], name="ttr_snapshot_row_unique")]

    def __str__(self) -> str:
        return f"TTR snapshot row of patient {self.patient_id}"


class TtrStalePatient(models.Model):
    """A patient whose snapshot rows no longer hold (written by the triggers, read and emptied by
    :mod:`anticoag.ttr_snapshot` in the same transaction as it recomputes them)."""

    patient_id = models.BigIntegerField(primary_key=True)

    def __str__(self) -> str:
        return f"stale patient {self.patient_id}"
