"""Elective procedures of anticoagulated patients and the dated stop/restart plan (clinical reference §8).

``Procedure.proposal`` is a snapshot of the pure planner's output (:mod:`anticoag.procedures`), recomputed
whenever the procedure changes. ``ProcedureDecision`` rows are a clinician's confirmations, append-only; the
decision keeps the *intervals* (days without before, restart after, INR check), so a moved procedure moves its
dated plan and its follow-ups with it. Imported by ``anticoag.models``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from anticoag.procedures import AGENTS, PROCEDURE_KINDS
from patients.models import CvtEpisode, Patient


class ProcedureKind(models.TextChoices):
    """What the procedure is (§8: neuraxial procedures and lumbar punctures are high bleed-risk)."""

    LUMBAR_PUNCTURE = "lumbar_puncture", PROCEDURE_KINDS["lumbar_puncture"]
    NEURAXIAL = "neuraxial_anaesthesia", PROCEDURE_KINDS["neuraxial_anaesthesia"]
    DENTAL = "dental", PROCEDURE_KINDS["dental"]
    ENDOSCOPY = "endoscopy", PROCEDURE_KINDS["endoscopy"]
    SURGERY = "surgery", PROCEDURE_KINDS["surgery"]
    OTHER = "other", PROCEDURE_KINDS["other"]


class BleedRisk(models.TextChoices):
    """The procedure's bleed risk, as the clinician judges it (the §8 columns)."""

    LOW = "low", "Low bleed risk"
    HIGH = "high", "High bleed risk"


class ProcedureAgent(models.TextChoices):
    """The anticoagulant to interrupt (the §8 rows)."""

    WARFARIN = "warfarin", "Warfarin"
    DABIGATRAN = "dabigatran", "Dabigatran"
    RIVAROXABAN = "rivaroxaban", "Rivaroxaban"
    APIXABAN = "apixaban", "Apixaban"


assert set(ProcedureAgent.values) == set(AGENTS)
assert set(ProcedureKind.values) == set(PROCEDURE_KINDS)


class ProcedureStatus(models.TextChoices):
    """Whether the procedure is still to come, was called off, or has happened."""

    PLANNED = "planned", "Planned"
    CANCELLED = "cancelled", "Cancelled"
    DONE = "done", "Done"


class ProcedurePlanStatus(models.TextChoices):
    """Where the stop/restart plan stands: proposed, confirmed by a clinician, or changed since (review)."""

    PROPOSED = "proposed", "Proposed, awaiting a clinician"
    CONFIRMED = "confirmed", "Confirmed"
    REVIEW = "review", "Changed since confirmation: review needed"


class Procedure(models.Model):
    """An elective procedure of a patient, and the proposal for stopping and restarting anticoagulation."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="procedures")
    episode = models.ForeignKey(
        CvtEpisode,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="procedures",
        help_text="The CVT episode the time since diagnosis is counted from (the latest one before the procedure).",
    )
    scheduled_on = models.DateField("procedure date")
    kind = models.CharField(max_length=32, choices=ProcedureKind.choices)
    bleed_risk = models.CharField(
        max_length=8,
        choices=BleedRisk.choices,
        help_text="Chosen by the clinician; a lumbar puncture or a neuraxial procedure is always high.",
    )
    agent = models.CharField("anticoagulant", max_length=16, choices=ProcedureAgent.choices)
    requested_by = models.CharField(
        "who asked", max_length=200, blank=True, help_text="Who asked for the procedure (service, physician)."
    )
    status = models.CharField(max_length=12, choices=ProcedureStatus.choices, default=ProcedureStatus.PLANNED)
    facts = models.JSONField(default=dict, blank=True, help_text="The planner's input.")
    proposal = models.JSONField(default=dict, blank=True, help_text="The planner's proposal, as computed.")
    confirmed_plan = models.JSONField(
        default=dict, blank=True, help_text="The dated plan with the confirmed intervals (empty until confirmed)."
    )
    plan_status = models.CharField(
        max_length=12, choices=ProcedurePlanStatus.choices, default=ProcedurePlanStatus.PROPOSED
    )
    changes = models.JSONField(default=list, blank=True, help_text="What changed since the last confirmation.")
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-scheduled_on", "-pk"]
        indexes = [models.Index(fields=["patient", "-scheduled_on"], name="procedure_patient_date_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.scheduled_on.isoformat()}"

    @property
    def current_decision(self) -> ProcedureDecision | None:
        return self.decisions.order_by("-decided_at", "-pk").first()

    @property
    def warnings_to_acknowledge(self) -> list[dict]:
        return [w for w in self.proposal.get("warnings", []) if w["severity"] == "caution"]


class ProcedureDecision(models.Model):
    """A clinician's confirmation of a procedure plan: the intervals, what differs from the proposal and why."""

    procedure = models.ForeignKey(Procedure, on_delete=models.CASCADE, related_name="decisions")
    proposal = models.JSONField(help_text="The proposal as it stood when confirmed.")
    skip_days = models.PositiveSmallIntegerField("days without before the procedure")
    restart_after = models.PositiveSmallIntegerField("restart, days after the procedure")
    inr_check = models.BooleanField("INR check the day before", default=False)
    changed = models.JSONField(default=list, blank=True, help_text="Which parts differ from the proposal.")
    change_reason = models.TextField(blank=True)
    acknowledged_warnings = models.JSONField(default=list, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decided_at = models.DateTimeField()

    class Meta:
        ordering = ["-decided_at", "-pk"]

    def __str__(self) -> str:
        return f"Procedure plan confirmed {self.decided_at:%Y-%m-%d}"
