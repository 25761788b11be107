"""Persisted plans: what the rules proposed for an episode, and what a clinician confirmed.

The rules (``anticoag.rules``) propose; a clinician confirms. ``Plan.proposal`` is a snapshot of the rules'
output (with its ``RULES_VERSION``), recomputed whenever the episode's facts change. ``PlanDecision`` rows
are the clinician's confirmations and overrides, append-only: a new proposal never erases one; it only
marks the plan "review needed" and records what changed.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from patients.models import CvtEpisode


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
