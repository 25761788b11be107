"""Procedure services: gather the planner's facts, store the proposal, record a clinician's confirmation.

Keyword-only functions named ``<thing>_<action>``. Every refusal is a ``ValidationError`` naming the field
of the procedure (or of the confirmation form), raised before anything is written. After every change the
``procedure_changed`` signal tells scheduling to bring the procedure's follow-ups in line.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from anticoag import procedures, rules
from patients.models import CvtEpisode, Patient

from .procedure_models import Procedure, ProcedureDecision, ProcedurePlanStatus
from .services import episode_facts

#: Sent after a procedure's plan, decision or status changed (``procedure`` keyword). Scheduling listens.
procedure_changed = Signal()

#: Planner input fields → the procedure field a person would correct.
_FIELD_OF = {
    "procedure_on": "scheduled_on",
    "procedure_kind": "kind",
    "crcl_ml_min": "agent",
    "months_since_diagnosis": "scheduled_on",
    "category": "patient",
}

#: The parts of a proposal a clinician decides on; a change in one needs a new confirmation.
_COMPARED = ("proposed_intervals", "row", "restart_range_days")


def _episode_for(patient: Patient, on: dt.date) -> CvtEpisode | None:
    """The latest CVT episode diagnosed on or before the procedure date."""
    return (
        CvtEpisode.objects.filter(patient=patient, diagnosed_on__lte=on)
        .select_related("patient")
        .order_by("-diagnosed_on", "-pk")
        .first()
    )


def procedure_facts(*, procedure: Procedure) -> procedures.ProcedureFacts:
    """The planner's facts: the latest CrCl (Cockcroft-Gault, today's age), the months since the diagnosis of the
    latest episode before the procedure, that episode's §2 category and whether it has a severe thrombophilia."""
    patient = procedure.patient
    errors: dict[str, str] = {}
    if not procedure.scheduled_on:
        raise ValidationError({"scheduled_on": "Give the procedure date."})
    episode = _episode_for(patient, procedure.scheduled_on)
    if episode is None:
        raise ValidationError({"scheduled_on": "The patient has no CVT episode diagnosed on or before this date."})
    facts = episode_facts(episode=episode)
    recommendation_row = rules.category_row(facts)
    crcl = rules.recommend(facts).creatinine_clearance_ml_min
    severe = bool(facts.codes_of(rules.RiskClass.SEVERE_THROMBOPHILIA)) or (
        len(facts.codes_of(rules.RiskClass.MILD_THROMBOPHILIA)) >= 2
    )
    try:
        result = procedures.ProcedureFacts(
            agent=procedure.agent,
            procedure_on=procedure.scheduled_on,
            bleed_risk=procedure.bleed_risk,
            months_since_diagnosis=procedures.months_between(episode.diagnosed_on, procedure.scheduled_on),
            category=recommendation_row.category,
            crcl_ml_min=crcl,
            procedure_kind=procedure.kind or "other",
            severe_thrombophilia=severe,
        )
    except procedures.ProcedureInputError as err:
        message = err.message
        if err.field == "crcl_ml_min":
            message = (
                "Dabigatran: the creatinine clearance is unknown (it needs the weight, the sex and a creatinine "
                "result); record a creatinine first."
            )
        errors[_FIELD_OF.get(err.field, err.field)] = message[0].upper() + message[1:]
        raise ValidationError(errors) from None
    procedure.episode = episode
    return result


def _facts_json(facts: procedures.ProcedureFacts) -> dict[str, Any]:
    out = dict(vars(facts))
    out["procedure_on"] = facts.procedure_on.isoformat()
    return out


def _decision_plan(procedure: Procedure, facts: procedures.ProcedureFacts, decision: ProcedureDecision) -> dict:
    intervals = procedures.Intervals(
        skip_days=decision.skip_days, restart_after=decision.restart_after, inr_check=decision.inr_check
    )
    return procedures.procedure_plan(facts, intervals).as_dict()


def _changes(before: dict, after: dict) -> list[dict]:
    changes = [
        {"part": part, "before": before.get(part), "after": after.get(part)}
        for part in _COMPARED
        if before.get(part) != after.get(part)
    ]
    old = {w["code"] for w in before.get("warnings", []) if w["severity"] == "caution"}
    new = {w["code"] for w in after.get("warnings", []) if w["severity"] == "caution"}
    if added := sorted(new - old):
        changes.append({"part": "warnings", "added": added})
    return changes


def procedure_validate(*, procedure: Procedure) -> procedures.ProcedureFacts:
    """Model validation plus the planner's: a ``ValidationError`` by field, nothing written."""
    procedure.full_clean(exclude=["episode", "facts", "proposal", "confirmed_plan", "changes"])
    return procedure_facts(procedure=procedure)


@transaction.atomic
def procedure_propose(*, procedure: Procedure) -> Procedure:
    """Save the procedure with a fresh proposal; keep the confirmed intervals and move their dates with it."""
    facts = procedure_validate(procedure=procedure)
    procedure.facts = _facts_json(facts)
    procedure.proposal = procedures.procedure_plan(facts).as_dict()
    decision = procedure.current_decision if procedure.pk else None
    if decision is None:
        procedure.plan_status, procedure.changes, procedure.confirmed_plan = ProcedurePlanStatus.PROPOSED, [], {}
    else:
        procedure.confirmed_plan = _decision_plan(procedure, facts, decision)
        procedure.changes = _changes(decision.proposal, procedure.proposal)
        procedure.plan_status = ProcedurePlanStatus.REVIEW if procedure.changes else ProcedurePlanStatus.CONFIRMED
    procedure.save()
    procedure_changed.send(sender=Procedure, procedure=procedure)
    return procedure


def procedure_record(
    *,
    patient: Patient,
    scheduled_on: dt.date,
    kind: str,
    bleed_risk: str,
    agent: str,
    requested_by: str = "",
    user=None,
) -> Procedure:
    """Record a new procedure and propose its plan."""
    procedure = Procedure(
        patient=patient,
        scheduled_on=scheduled_on,
        kind=kind,
        bleed_risk=bleed_risk,
        agent=agent,
        requested_by=requested_by,
        recorded_by=user,
    )
    return procedure_propose(procedure=procedure)


@transaction.atomic
def procedure_confirm(
    *,
    procedure: Procedure,
    user,
    skip_days: int | None = None,
    restart_after: int | None = None,
    inr_check: bool | None = None,
    change_reason: str = "",
    acknowledged_warnings: list[str] | tuple[str, ...] = (),
) -> ProcedureDecision:
    """A clinician confirms the proposal or changes it. A change needs a reason; caution warnings an
    acknowledgement. Intervals left as None take the proposal's. A restart within the §8 range is not a change."""
    procedure = Procedure.objects.select_for_update().select_related("patient").get(pk=procedure.pk)
    proposal = procedure.proposal
    proposed = proposal["proposed_intervals"]
    low, high = proposal["restart_range_days"]
    skip_days = proposed["skip_days"] if skip_days is None else skip_days
    restart_after = proposed["restart_after"] if restart_after is None else restart_after
    inr_check = proposed["inr_check"] if inr_check is None else inr_check
    errors: dict[str, str] = {}
    changed: list[str] = []
    if procedure.status == "cancelled":
        errors["status"] = "The procedure is cancelled; there is no plan to confirm."
    if not 0 <= skip_days <= 14:
        errors["skip_days"] = "Give 0 to 14 days without before the procedure."
    elif skip_days != proposed["skip_days"]:
        changed.append("skip_days")
    if not 0 <= restart_after <= 14:
        errors["restart_after"] = "Give 0 to 14 days after the procedure."
    elif not low <= restart_after <= high:
        changed.append("restart_after")
    if inr_check != proposed["inr_check"]:
        changed.append("inr_check")
    if changed and not change_reason.strip():
        errors["change_reason"] = f"A reason is required to change the proposal ({', '.join(changed)})."
    required = {w["code"] for w in procedure.warnings_to_acknowledge}
    if missing := sorted(required - set(acknowledged_warnings)):
        errors["acknowledged_warnings"] = f"Acknowledge these warnings before confirming: {', '.join(missing)}."
    if errors:
        raise ValidationError(errors)
    decision = ProcedureDecision.objects.create(
        procedure=procedure,
        proposal=proposal,
        skip_days=skip_days,
        restart_after=restart_after,
        inr_check=inr_check,
        changed=changed,
        change_reason=change_reason.strip(),
        acknowledged_warnings=sorted(set(acknowledged_warnings) & required),
        decided_by=user,
        decided_at=timezone.now(),
    )
    procedure_propose(procedure=procedure)
    return decision


def procedure_set_status(*, procedure: Procedure, status: str) -> Procedure:
    """Mark a procedure planned, cancelled or done; the follow-ups follow (a cancelled one loses its open items)."""
    procedure.status = status
    return procedure_propose(procedure=procedure)
