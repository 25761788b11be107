"""Plan services: gather an episode's facts, ask the rules, store the proposal, record confirmations.

Keyword-only functions named ``<thing>_<action>``. They run inside the caller's transaction (or their own)
so facts and plan are never out of step in the database.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from anticoag import rules
from patients.models import Clinic, CvtEpisode

from .models import Agent, Plan, PlanDecision, PlanStatus

#: Sent after a plan's proposal or decision changed (``plan`` keyword). Scheduling listens to it.
plan_changed = Signal()

#: Thrombophilia tests that are unreliable when drawn on anticoagulants (reference §4, AHA2011 IIa-B).
TESTS_UNRELIABLE_ON_ANTICOAGULANTS = frozenset(
    {"protein_c_deficiency", "protein_s_deficiency", "antithrombin_deficiency"}
)

#: The parts of a proposal a clinician decides on; a change in any of them needs a new confirmation.
_COMPARED_PARTS = ("category", "duration", "oral_options", "doac_eligible", "acute_phase")


#: ``settings.ANTICOAG_RULES_POLICY`` keys a deployment may set (reference §3 rev 2: [verify] values are
#: configurable). The DOAC formulary is per clinic (``Clinic.offers_*``), not a setting.
_POLICY_SETTINGS = ("enoxaparin_mg_per_kg", "enoxaparin_verified", "apixaban_verified")


def rules_policy(*, clinic: Clinic | None = None) -> rules.RulesPolicy:
    """The policy the rules apply for ``clinic``: its DOAC formulary, and the deployment's configurable values
    (``settings.ANTICOAG_RULES_POLICY``, read at every call). A bad setting raises ``ImproperlyConfigured``."""
    overrides = getattr(settings, "ANTICOAG_RULES_POLICY", None) or {}
    unknown = sorted(set(overrides) - set(_POLICY_SETTINGS))
    if unknown:
        raise ImproperlyConfigured(
            f"ANTICOAG_RULES_POLICY: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(_POLICY_SETTINGS)}."
        )
    formulary = clinic.doac_formulary if clinic is not None else rules.DOAC_AGENTS
    try:
        return rules.RulesPolicy(doac_formulary=formulary, **overrides)
    except (TypeError, rules.FactsError) as err:
        raise ImproperlyConfigured(f"ANTICOAG_RULES_POLICY: {err}") from err


def current_medication_codes(*, patient, on: dt.date) -> frozenset[str]:
    """The codes of the patient's medicines current on ``on`` (reference §5a: the rules read the current ones)."""
    return frozenset(m.code for m in patient.medications.all() if m.current_on(on))


def episode_facts(*, episode: CvtEpisode, on: dt.date | None = None) -> rules.EpisodeFacts:
    """The facts of ``episode`` as the rules want them, using the latest creatinine, today's age and the
    medicines current today. Pregnancy is the ``pregnancy``/``puerperium`` code (reference §0, rev 2)."""
    on = on or timezone.localdate()
    patient = episode.patient
    latest_creatinine = (
        patient.lab_results.filter(serum_creatinine__isnull=False, drawn_on__lte=on)
        .order_by("-drawn_on", "-pk")
        .first()
    )
    factors = list(episode.risk_factors.all())
    return rules.EpisodeFacts(
        diagnosed_on=episode.diagnosed_on,
        age=patient.age_on(on),
        sex=patient.sex or None,
        weight_kg=float(patient.weight_kg) if patient.weight_kg is not None else None,
        serum_creatinine_mg_dl=latest_creatinine.creatinine_mg_dl if latest_creatinine else None,
        risk_factors=frozenset(f.code for f in factors),
        prior_cvt=episode.is_recurrence,
        prior_vte=episode.prior_vte,
        hemorrhage=episode.hemorrhage,
        subdural_hematoma=episode.subdural_hematoma,
        microbleeds=episode.microbleeds,
        anti_amyloid_therapy=episode.anti_amyloid_therapy,
        delivered_on=episode.delivered_on,
        expected_delivery_on=episode.expected_delivery_on,
        breastfeeding=episode.breastfeeding,
        deterioration=episode.deteriorations.exists(),
        # A protein C/S/antithrombin result noted after the diagnosis was drawn while anticoagulated.
        thrombophilia_tested_on_anticoagulant=any(
            f.code in TESTS_UNRELIABLE_ON_ANTICOAGULANTS and f.noted_on > episode.diagnosed_on for f in factors
        ),
        medications=current_medication_codes(patient=patient, on=on),
    )


def facts_as_json(facts: rules.EpisodeFacts) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in vars(facts).items():
        if isinstance(value, dt.date):
            value = value.isoformat()
        elif isinstance(value, frozenset):
            value = sorted(value)
        out[name] = value
    return out


def _decision_view(part: str, value: Any) -> Any:
    """The part of a proposal a clinician decides on, without its wording: a reworded message or a new
    explanatory key (a new rules version adds some) is not a change that needs a new confirmation; a different
    agent, dose, eligibility, category or end date is."""
    if not isinstance(value, (dict, list)):
        return value
    if part == "duration":
        keys = ("min_months", "max_months", "indefinite", "earliest_end_on", "latest_end_on", "earliest_end_text")
        return {k: value.get(k) for k in keys}
    if part == "oral_options":
        keys = ("agent", "dose_mg", "frequency", "eligible", "inr_low", "inr_high")
        return [{k: option[k] for k in keys if k in option} for option in value]
    if part == "doac_eligible":
        return {"eligible": value.get("eligible"), "reasons": sorted(r["code"] for r in value.get("reasons", []))}
    if part == "acute_phase":
        return {"agent": value.get("agent")}
    return value


def proposal_changes(*, before: dict, after: dict) -> list[dict]:
    """What differs between two proposals, part by part, in words a clinician reads."""
    changes: list[dict] = []
    for part in _COMPARED_PARTS:
        old, new = _decision_view(part, before.get(part)), _decision_view(part, after.get(part))
        if old != new:
            changes.append({"part": part, "before": old, "after": new})
    old_codes = {w["code"] for w in before.get("warnings", [])}
    new_codes = {w["code"] for w in after.get("warnings", [])}
    if added := sorted(new_codes - old_codes):
        changes.append({"part": "warnings", "added": added})
    if removed := sorted(old_codes - new_codes):
        changes.append({"part": "warnings", "removed": removed})
    return changes


def _status_for(plan: Plan) -> tuple[str, list[dict]]:
    decision = plan.current_decision
    if decision is None:
        return PlanStatus.PROPOSED, []
    changes = proposal_changes(before=decision.proposal, after=plan.proposal)
    # An event recorded since the confirmation (a major bleed: outcomes.services) asks for a review of its own,
    # whatever the proposal does; the next confirmation answers it.
    changes += [change for change in plan.changes if change.get("part") == "event"]
    return (PlanStatus.REVIEW if changes else PlanStatus.CONFIRMED), changes


#: What a recomputation did to a plan (``plan_recompute``; counted by ``manage.py replan``).
UNCHANGED, CHANGED, REVIEW_NEEDED = "unchanged", "changed", "review_needed"


@transaction.atomic
def plan_recompute(*, episode: CvtEpisode, on: dt.date | None = None) -> tuple[Plan, str]:
    """Recompute the episode's proposal and store it if it changed; say what happened.

    ``unchanged``: nothing a clinician decides on changed (the stored proposal may still be re-stamped with a
    new ``RULES_VERSION``); ``changed``: the proposal changed; ``review_needed``: the plan was confirmed and
    its proposal changed, so it now shows "review needed" with the diff. Confirmed decisions are never touched.
    """
    facts = episode_facts(episode=episode, on=on)
    policy = rules_policy(clinic=episode.patient.clinic)
    proposal = rules.recommend(facts, policy=policy).as_dict()
    plan = Plan.objects.select_for_update().filter(episode=episode).first()
    if plan is not None and plan.proposal == proposal and plan.rules_version == proposal["rules_version"]:
        return plan, UNCHANGED
    was_status = plan.status if plan is not None else None
    substantive = (
        plan is None
        or bool(proposal_changes(before=plan.proposal, after=proposal))
        or (plan.proposal.get("follow_ups") != proposal.get("follow_ups"))
    )
    if plan is None:
        plan = Plan(episode=episode)
    plan.facts = facts_as_json(facts)
    plan.proposal = proposal
    plan.rules_version = proposal["rules_version"]
    plan.computed_at = timezone.now()
    if plan.pk:
        plan.status, plan.changes = _status_for(plan)
    plan.save()
    plan_changed.send(sender=Plan, plan=plan)
    if plan.status == PlanStatus.REVIEW and was_status != PlanStatus.REVIEW:
        return plan, REVIEW_NEEDED
    return plan, CHANGED if substantive else UNCHANGED


def plan_refresh(*, episode: CvtEpisode, on: dt.date | None = None) -> Plan:
    """Recompute the episode's proposal; store it if it changed. Confirmed decisions are never touched."""
    plan, _ = plan_recompute(episode=episode, on=on)
    return plan


def _proposed_agents(proposal: dict) -> set[str]:
    agents = {option["agent"] for option in proposal.get("oral_options", [])}
    if not agents:  # pregnancy (LMWH throughout) or out of the adult scope: the acute agent (reference §0, §3)
        agents.add(proposal.get("acute_phase", {}).get("agent", Agent.LMWH))
    return agents


@transaction.atomic
def plan_confirm(
    *,
    plan: Plan,
    user,
    agent: str,
    indefinite: bool | None = None,
    duration_months: int | None = None,
    override_reason: str = "",
    acknowledged_warnings: list[str] | tuple[str, ...] = (),
) -> PlanDecision:
    """Record a clinician's confirmation. Overrides need a reason; caution warnings need acknowledging.

    ``indefinite``/``duration_months`` left as None take the proposal's duration (its minimum).
    """
    plan = Plan.objects.select_for_update().select_related("episode").get(pk=plan.pk)
    proposal = plan.proposal
    duration = proposal["duration"]
    errors: dict[str, str] = {}
    overridden: list[str] = []

    if agent not in Agent.values:
        errors["agent"] = f"Unknown agent '{agent}'; allowed: {', '.join(Agent.values)}."
    elif agent not in _proposed_agents(proposal):
        overridden.append("agent")

    if indefinite is None and duration_months is None:
        indefinite, duration_months = duration["indefinite"], duration["min_months"]
    if indefinite:
        duration_months = None
        if not duration["indefinite"]:
            overridden.append("duration")
    else:
        if not duration_months or duration_months < 1:
            errors["duration_months"] = "Give the number of months, or choose indefinite."
        elif duration["indefinite"]:
            overridden.append("duration")
        else:
            low, high = duration["min_months"], duration["max_months"] or duration["min_months"]
            if not low <= duration_months <= max(low, high):
                overridden.append("duration")

    if overridden and not override_reason.strip():
        errors["override_reason"] = f"A reason is required to override the proposal ({', '.join(overridden)})."

    required = {w["code"] for w in plan.warnings_to_acknowledge}
    missing = sorted(required - set(acknowledged_warnings))
    if missing:
        errors["acknowledged_warnings"] = f"Acknowledge these warnings before confirming: {', '.join(missing)}."
    if errors:
        raise ValidationError(errors)

    diagnosed_on = plan.episode.diagnosed_on
    end_on = None if indefinite else diagnosed_on + relativedelta(months=duration_months)
    if not indefinite and proposal["category"] == "pregnancy":
        if duration["earliest_end_on"]:
            # Pregnancy: also at least 6 weeks after delivery (reference §2 row 4).
            end_on = max(end_on, dt.date.fromisoformat(duration["earliest_end_on"]))
        elif duration.get("earliest_end_text"):
            # Pregnant, delivery date unknown: no end date that could fall before the delivery (§3 rev 2).
            end_on = None
    decision = PlanDecision.objects.create(
        plan=plan,
        proposal=proposal,
        rules_version=plan.rules_version,
        agent=agent,
        indefinite=bool(indefinite),
        duration_months=duration_months,
        end_on=end_on,
        overridden=overridden,
        override_reason=override_reason.strip(),
        acknowledged_warnings=sorted(set(acknowledged_warnings) & {w["code"] for w in proposal.get("warnings", [])}),
        decided_by=user,
        decided_at=timezone.now(),
    )
    plan.status, plan.changes = PlanStatus.CONFIRMED, []
    plan.save(update_fields=["status", "changes", "updated_at"])
    plan_changed.send(sender=Plan, plan=plan)
    return decision
