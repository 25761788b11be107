"""Persisted plans: computed on save, confirmed by a clinician, never silently discarded."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from anticoag.models import Plan, PlanDecision, PlanStatus
from anticoag.rules import RULES_VERSION
from anticoag.services import plan_confirm
from patients.models import DeteriorationEvent
from tests.factories import ClinicFactory, EpisodeFactory, LabResultFactory, RiskFactorFactory, clinician

pytestmark = pytest.mark.django_db


def test_saving_an_episode_computes_and_stores_its_plan():
    # given / when an episode is recorded with no risk factor
    episode = EpisodeFactory()
    # then its plan exists, as the rules said, with the rules version
    plan = Plan.objects.get(episode=episode)
    assert plan.rules_version == RULES_VERSION
    assert plan.proposal["category"] == "unprovoked"
    assert plan.status == PlanStatus.PROPOSED
    assert plan.facts["diagnosed_on"] == episode.diagnosed_on.isoformat()


def test_adding_a_risk_factor_recomputes_the_plan():
    episode = EpisodeFactory()
    RiskFactorFactory(episode=episode, code="antiphospholipid_syndrome")
    plan = Plan.objects.get(episode=episode)
    assert plan.proposal["category"] == "severe_thrombophilia"
    assert plan.proposal["duration"]["indefinite"] is True
    assert "aps_vka_only" in {w["code"] for w in plan.proposal["warnings"]}


def test_a_second_episode_is_a_recurrence_with_indefinite_duration():
    first = EpisodeFactory(diagnosed_on=timezone.localdate() - timedelta(days=800))
    second = EpisodeFactory(patient=first.patient)
    assert second.plan.proposal["category"] == "recurrent"
    assert first.__class__.objects.get(pk=first.pk).plan.proposal["category"] == "unprovoked"


def test_confirmation_needs_every_caution_warning_acknowledged():
    # given a plan with a subdural hematoma (a caution warning)
    clinic = ClinicFactory()
    doctor = clinician(clinic)
    episode = EpisodeFactory(patient__clinic=clinic, subdural_hematoma=True)
    plan = episode.plan
    # when the clinician confirms without acknowledging it
    with pytest.raises(ValidationError) as caught:
        plan_confirm(plan=plan, user=doctor, agent="warfarin")
    # then it is refused, naming the warning, and nothing is recorded
    assert "subdural_caution" in caught.value.message_dict["acknowledged_warnings"][0]
    assert PlanDecision.objects.count() == 0
    # when acknowledged, the plan counts as confirmed
    decision = plan_confirm(plan=plan, user=doctor, agent="warfarin", acknowledged_warnings=["subdural_caution"])
    plan.refresh_from_db()
    assert plan.status == PlanStatus.CONFIRMED
    assert decision.overridden == []
    assert decision.duration_months == 6  # unprovoked: 6–12 months, the minimum by default
    assert decision.end_on is not None


def test_an_override_needs_a_reason_and_is_recorded():
    clinic = ClinicFactory()
    doctor = clinician(clinic)
    episode = EpisodeFactory(patient__clinic=clinic)
    RiskFactorFactory(episode=episode, code="dehydration")  # transient: 3–6 months
    plan = Plan.objects.get(episode=episode)
    with pytest.raises(ValidationError) as caught:
        plan_confirm(plan=plan, user=doctor, agent="warfarin", indefinite=False, duration_months=12)
    assert "override_reason" in caught.value.message_dict
    decision = plan_confirm(
        plan=plan,
        user=doctor,
        agent="warfarin",
        indefinite=False,
        duration_months=12,
        override_reason="Extensive thrombosis; patient preference after discussion.",
    )
    assert decision.overridden == ["duration"]
    assert decision.end_on == episode.diagnosed_on.replace(year=episode.diagnosed_on.year + 1)


def test_changed_facts_after_confirmation_need_review_and_keep_the_decision():
    # given a confirmed plan for a transient CVT
    clinic = ClinicFactory()
    doctor = clinician(clinic)
    episode = EpisodeFactory(patient__clinic=clinic)
    RiskFactorFactory(episode=episode, code="dehydration")
    decision = plan_confirm(plan=Plan.objects.get(episode=episode), user=doctor, agent="warfarin")
    # when a thrombophilia result arrives
    RiskFactorFactory(episode=episode, code="protein_c_deficiency", noted_on=timezone.localdate())
    # then the proposal changes, the plan asks for review, and the confirmed choice is still there
    plan = Plan.objects.get(episode=episode)
    assert plan.status == PlanStatus.REVIEW
    assert plan.proposal["category"] == "severe_thrombophilia"
    parts = {c["part"] for c in plan.changes}
    assert {"category", "duration"} <= parts
    assert plan.current_decision == decision
    assert decision.proposal["category"] == "transient"
    # the result was noted after diagnosis: drawn on anticoagulants
    assert "thrombophilia_test_on_anticoag" in {w["code"] for w in plan.proposal["warnings"]}


def test_creatinine_and_deterioration_feed_the_plan():
    episode = EpisodeFactory(patient__weight_kg=70, patient__date_of_birth=date(1960, 1, 1))
    assert episode.plan.proposal["creatinine_clearance_ml_min"] is None
    LabResultFactory(patient=episode.patient, serum_creatinine="1.00")
    DeteriorationEvent.objects.create(episode=episode, occurred_on=timezone.localdate(), note="seizure")
    plan = Plan.objects.get(episode=episode)
    assert plan.proposal["creatinine_clearance_ml_min"] is not None
    assert "deterioration" in {w["code"] for w in plan.proposal["warnings"]}


def test_the_admin_shows_the_plan_with_sources_and_confirms_it(client):
    clinic = ClinicFactory()
    doctor = clinician(clinic)
    episode = EpisodeFactory(patient__clinic=clinic, hemorrhage=True)
    client.force_login(doctor)
    page = client.get(reverse("admin:patients_cvtepisode_change", args=[episode.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "hemorrhage_not_contraindication" in html
    assert "AHA2011" in html
    plan = episode.plan
    confirm_url = reverse("admin:anticoag_plan_confirm", args=[plan.pk])
    assert client.get(confirm_url).status_code == 200
    refused = client.post(confirm_url, {"agent": "warfarin", "duration_months": "3"})
    assert refused.status_code == 200
    assert "A reason is required" in refused.content.decode()
    accepted = client.post(confirm_url, {"agent": "warfarin", "duration_months": "6"})
    assert accepted.status_code == 302
    plan.refresh_from_db()
    assert plan.status == PlanStatus.CONFIRMED
    assert plan.current_decision.decided_by == doctor
    # the episode page shows the history of confirmations
    page = client.get(reverse("admin:patients_cvtepisode_change", args=[episode.pk]))
    assert f"by {doctor.get_username()}: Warfarin" in page.content.decode()
