"""Rules revision 2 in the database: re-planning, pregnancy as one fact, current medicines, the formulary.

Real PostgreSQL, the real admin and API; given / when / then.
"""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from auditlog.models import LogEntry
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from anticoag import rules
from anticoag.models import Plan, PlanDecision, PlanStatus
from anticoag.replan import replan_plans
from anticoag.services import plan_confirm
from patients.models import Clinic, CvtEpisode, EpisodeRiskFactor, Patient, PatientMedication
from scheduling.models import FollowUp, FollowUpKind, FollowUpStatus
from tests.api.conftest import client_for, make_clinic
from tests.factories import (
    ClinicFactory,
    EpisodeFactory,
    LabResultFactory,
    PatientFactory,
    clinician,
)

pytestmark = pytest.mark.django_db


def seed() -> Clinic:
    call_command("seed_demo", stdout=io.StringIO())
    return Clinic.objects.get(name="Demo CVT Clinic")


def replan() -> str:
    out = io.StringIO()
    call_command("replan", stdout=out)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------------------
# The demo and `manage.py replan`
# ---------------------------------------------------------------------------------------------------------


def test_the_demo_shows_the_new_rows() -> None:
    clinic = seed()
    pregnant = Patient.objects.get(clinic=clinic, mrn="DEMO-R2-01")
    on_carbamazepine = Patient.objects.get(clinic=clinic, mrn="DEMO-R2-02")
    on_rivaroxaban = Patient.objects.get(clinic=clinic, mrn="DEMO-R2-03")
    # names that fit their sex
    assert (pregnant.sex, pregnant.given_name) == ("female", "Mira")
    assert (on_carbamazepine.sex, on_carbamazepine.given_name) == ("male", "Tomas")
    assert (on_rivaroxaban.sex, on_rivaroxaban.given_name) == ("female", "Sofia")
    # a pregnant patient on LMWH: no oral agent, the end computed from the expected delivery date
    plan = Plan.objects.get(episode__patient=pregnant)
    assert plan.proposal["oral_options"] == []
    assert plan.current_decision.agent == "lmwh"
    assert "pregnancy_lmwh_only" in {w["code"] for w in plan.proposal["warnings"]}
    expected = pregnant.episodes.get().expected_delivery_on
    assert plan.proposal["duration"]["earliest_end_on"] >= (expected + timedelta(weeks=6)).isoformat()
    # carbamazepine: no DOAC; warfarin confirmed
    plan = Plan.objects.get(episode__patient=on_carbamazepine)
    assert [o["agent"] for o in plan.proposal["oral_options"]] == ["warfarin"]
    assert "strong_inducer" in {r["code"] for r in plan.proposal["doac_eligible"]["reasons"]}
    assert plan.current_decision.agent == "warfarin"
    # rivaroxaban confirmed
    assert Plan.objects.get(episode__patient=on_rivaroxaban).current_decision.agent == "rivaroxaban"


def _as_confirmed_under_revision_1(plan: Plan) -> None:
    """What a plan confirmed under rules 2026.11.1 looked like: no rivaroxaban or apixaban, another version."""
    old = dict(plan.proposal, rules_version="2026.11.1")
    old["oral_options"] = [o for o in old["oral_options"] if o["agent"] not in ("rivaroxaban", "apixaban")]
    Plan.objects.filter(pk=plan.pk).update(proposal=old, rules_version="2026.11.1", status=PlanStatus.CONFIRMED)
    decision = plan.current_decision
    PlanDecision.objects.filter(pk=decision.pk).update(proposal=old, rules_version="2026.11.1")


def test_replan_over_the_demo_counts_is_idempotent_audits_and_keeps_decisions() -> None:
    # Given the demo clinic, where every plan with a clinician's decision was confirmed under revision 1
    clinic = seed()
    confirmed = list(Plan.objects.filter(episode__patient__clinic=clinic, decisions__isnull=False).distinct())
    assert len(confirmed) >= 3
    for plan in confirmed:
        _as_confirmed_under_revision_1(plan)
    with_doacs = [p for p in confirmed if any(o["agent"] == "rivaroxaban" for o in p.proposal["oral_options"])]
    decisions = {p.pk: p.current_decision.pk for p in confirmed}
    log_before = LogEntry.objects.filter(content_type__model="plan").count()

    # When replan runs
    first = replan()

    # Then it prints the counts: the plans that now offer two more DOACs need review, with the diff
    total = CvtEpisode.objects.filter(patient__clinic=clinic, patient__active=True).count()
    summary = first.strip().splitlines()[-1]
    assert summary.startswith(f"rules {rules.RULES_VERSION}: ")
    numbers = [int(word) for word in summary.replace(",", "").split() if word.isdigit()]
    unchanged, changed, review = numbers[:3]
    assert unchanged + changed + review == total
    assert review == len(with_doacs) > 0
    assert first.count("review needed: plan") == review
    assert "rivaroxaban" in first
    for plan in with_doacs:
        plan.refresh_from_db()
        assert plan.status == PlanStatus.REVIEW
        assert "oral_options" in {c["part"] for c in plan.changes}
    # And every plan is at the new rules version, every decision is kept as the clinician made it
    assert set(Plan.objects.filter(episode__patient__clinic=clinic).values_list("rules_version", flat=True)) == {
        rules.RULES_VERSION
    }
    for plan in confirmed:
        plan.refresh_from_db()
        assert plan.current_decision.pk == decisions[plan.pk]
        assert plan.current_decision.rules_version == "2026.11.1"
    # And the audit log shows the recomputed plans
    assert LogEntry.objects.filter(content_type__model="plan").count() >= log_before + review

    # When it runs again, nothing changes
    log_after = LogEntry.objects.count()
    second = replan()
    assert (
        second.strip().splitlines()[-1]
        == f"rules {rules.RULES_VERSION}: {total} unchanged, 0 changed, 0 now need review"
    )
    assert LogEntry.objects.count() == log_after


def test_replan_names_an_episode_whose_facts_contradict_each_other() -> None:
    # Given an episode whose pregnancy code was removed behind the forms' back, leaving its delivery date
    episode = EpisodeFactory(pregnant=True)
    CvtEpisode.objects.filter(pk=episode.pk).update(delivered_on=episode.diagnosed_on)
    EpisodeRiskFactor.objects.filter(episode=episode).delete()
    # When replan runs, it reports the episode instead of failing
    counts = replan_plans()
    assert counts["refused"] == 1


def test_post_migrate_replans_plans_of_another_rules_version() -> None:
    episode = EpisodeFactory()
    Plan.objects.filter(episode=episode).update(rules_version="2026.11.1")
    from anticoag.replan import replan_outdated

    assert replan_outdated() is not None
    assert Plan.objects.get(episode=episode).rules_version == rules.RULES_VERSION
    assert replan_outdated() is None  # once


# ---------------------------------------------------------------------------------------------------------
# Pregnancy as one fact: the data migration
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_turns_the_flag_into_the_code_and_audits_it() -> None:
    executor = MigrationExecutor(connection)
    before, after = (
        [("patients", "0004_clinic_tablets_contacts")],
        [("patients", "0005_pregnancy_one_fact_and_medicines")],
    )
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    Clinic_, Patient_ = old.get_model("patients", "Clinic"), old.get_model("patients", "Patient")
    Episode_, Factor_ = old.get_model("patients", "CvtEpisode"), old.get_model("patients", "EpisodeRiskFactor")
    clinic = Clinic_.objects.create(name="Old clinic", alert_email="a@clinic.invalid")
    patient = Patient_.objects.create(
        clinic=clinic, mrn="OLD-1", family_name="F", given_name="G", date_of_birth="1990-01-01", sex="female"
    )
    today = timezone.localdate()
    flag_only = Episode_.objects.create(patient=patient, diagnosed_on=today - timedelta(days=30), pregnant=True)
    delivered = Episode_.objects.create(
        patient=patient, diagnosed_on=today - timedelta(days=20), pregnant=True, delivered_on=today - timedelta(days=40)
    )
    coded = Episode_.objects.create(patient=patient, diagnosed_on=today - timedelta(days=10), pregnant=True)
    Factor_.objects.create(episode=coded, code="puerperium", noted_on=today)
    breastfeeding_only = Episode_.objects.create(
        patient=patient, diagnosed_on=today - timedelta(days=5), breastfeeding=True
    )
    plain = Episode_.objects.create(patient=patient, diagnosed_on=today - timedelta(days=3))

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    codes = {e: set(EpisodeRiskFactor.objects.filter(episode_id=e.pk).values_list("code", flat=True)) for e in
             (flag_only, delivered, coded, breastfeeding_only, plain)}  # fmt: skip
    assert codes[flag_only] == {"pregnancy"}
    assert codes[delivered] == {"puerperium"}  # delivered 20 days before the diagnosis: a CVT after delivery
    assert codes[coded] == {"puerperium"}  # kept as it was
    assert codes[breastfeeding_only] == {"puerperium"}
    assert codes[plain] == set()
    entries = LogEntry.objects.filter(
        content_type__model="episoderiskfactor", additional_data__reason__icontains="migration patients.0003"
    )
    assert entries.count() == 3
    assert all(entry.actor is None for entry in entries)


# ---------------------------------------------------------------------------------------------------------
# Pregnancy as one fact: the admin refuses contradictions naming the field
# ---------------------------------------------------------------------------------------------------------


def _episode_form(patient: Patient, **extra) -> dict:
    form = {
        "patient": patient.pk,
        "diagnosed_on": (timezone.localdate() - timedelta(days=5)).isoformat(),
        "microbleeds": "0",
        "risk_factors-TOTAL_FORMS": "0",
        "risk_factors-INITIAL_FORMS": "0",
        "deteriorations-TOTAL_FORMS": "0",
        "deteriorations-INITIAL_FORMS": "0",
        "plan-TOTAL_FORMS": "0",
        "plan-INITIAL_FORMS": "0",
    }
    form.update(extra)
    return form


def test_admin_refuses_a_delivery_date_without_a_pregnancy_code_and_accepts_it_with_one(admin_client: Client):
    patient = PatientFactory(sex="female")
    url = reverse("admin:patients_cvtepisode_add")
    delivered = (timezone.localdate() - timedelta(days=10)).isoformat()
    # When the episode is saved with a delivery date and no code: refused, naming the field, nothing written
    response = admin_client.post(url, _episode_form(patient, delivered_on=delivered))
    assert response.status_code == 200
    assert (
        "delivered_on: A delivery date needs the pregnancy or puerperium risk factor code" in response.content.decode()
    )
    assert not CvtEpisode.objects.filter(patient=patient).exists()
    # When the puerperium code is submitted with it: saved, and the plan knows the patient delivered
    with_code = _episode_form(
        patient,
        delivered_on=delivered,
        breastfeeding="on",
        **{
            "risk_factors-TOTAL_FORMS": "1",
            "risk_factors-0-code": "puerperium",
            "risk_factors-0-noted_on": timezone.localdate().isoformat(),
        },
    )
    response = admin_client.post(url, with_code)
    assert response.status_code == 302, response.content.decode()[:3000]
    plan = Plan.objects.get(episode__patient=patient)
    assert plan.proposal["category"] == "pregnancy"
    assert [o["agent"] for o in plan.proposal["oral_options"]] == ["warfarin"]  # breastfeeding: no DOAC


# ---------------------------------------------------------------------------------------------------------
# Current medicines: the rules read them, the INR follows them, the API shows them
# ---------------------------------------------------------------------------------------------------------


def _warfarin_patient():
    clinic = ClinicFactory()
    doctor = clinician(clinic)
    episode = EpisodeFactory(patient__clinic=clinic, patient__date_of_birth=timezone.localdate().replace(year=1970))
    LabResultFactory(patient=episode.patient, drawn_on=episode.diagnosed_on)
    plan = Plan.objects.get(episode=episode)
    plan_confirm(plan=plan, user=doctor, agent="warfarin")
    return episode.patient, doctor


def test_starting_and_stopping_an_inr_moving_medicine_schedules_an_inr_test_once():
    # Given a patient confirmed on warfarin
    patient, _ = _warfarin_patient()
    today = timezone.localdate()
    # When metronidazole is started today
    medication = PatientMedication.objects.create(patient=patient, code="metronidazole", started_on=today)
    # Then an INR test is due within 7 days (3-7 days, warfarin_interaction [verify])
    (item,) = FollowUp.objects.filter(patient=patient, key__startswith="med:")
    assert item.kind == FollowUpKind.INR_TEST
    assert (item.due_on, item.window_end_on) == (today + timedelta(days=3), today + timedelta(days=7))
    assert "[verify]" in item.source
    # And the plan now warns about it
    assert "warfarin_interaction" in {
        w["code"] for w in Plan.objects.get(episode__patient=patient).proposal["warnings"]
    }
    # When it is saved again nothing new is scheduled (idempotent)
    medication.note = "7 days"
    medication.save()
    assert FollowUp.objects.filter(patient=patient, key__startswith="med:").count() == 1
    # When it is stopped, one more INR test
    medication.stopped_on = today
    medication.save()
    assert (
        FollowUp.objects.filter(patient=patient, key__startswith="med:", status=FollowUpStatus.SCHEDULED).count() == 2
    )
    # And the stopped medicine no longer counts
    medication.refresh_from_db()
    assert "warfarin_interaction" not in {
        w["code"] for w in Plan.objects.get(episode__patient=patient).proposal["warnings"]
    }


def test_a_medicine_that_does_not_move_the_inr_schedules_nothing():
    patient, _ = _warfarin_patient()
    PatientMedication.objects.create(patient=patient, code="levetiracetam", started_on=timezone.localdate())
    assert not FollowUp.objects.filter(patient=patient, key__startswith="med:").exists()


def test_a_patient_on_a_doac_gets_no_inr_test_for_an_inr_moving_medicine():
    clinic = ClinicFactory()
    episode = EpisodeFactory(patient__clinic=clinic)
    LabResultFactory(patient=episode.patient, drawn_on=episode.diagnosed_on)
    plan_confirm(plan=Plan.objects.get(episode=episode), user=clinician(clinic), agent="rivaroxaban")
    PatientMedication.objects.create(patient=episode.patient, code="amiodarone", started_on=timezone.localdate())
    assert not FollowUp.objects.filter(patient=episode.patient, key__startswith="med:").exists()


def test_carbamazepine_makes_the_plan_drop_every_doac():
    episode = EpisodeFactory(patient__date_of_birth=timezone.localdate().replace(year=1970))
    LabResultFactory(patient=episode.patient, drawn_on=episode.diagnosed_on)
    assert "rivaroxaban" in {o["agent"] for o in Plan.objects.get(episode=episode).proposal["oral_options"]}
    PatientMedication.objects.create(patient=episode.patient, code="carbamazepine", started_on=episode.diagnosed_on)
    proposal = Plan.objects.get(episode=episode).proposal
    assert [o["agent"] for o in proposal["oral_options"]] == ["warfarin"]


def test_a_medicine_that_stops_before_it_starts_is_refused_naming_the_field():
    patient = PatientFactory()
    today = timezone.localdate()
    medication = PatientMedication(
        patient=patient, code="aspirin", started_on=today, stopped_on=today - timedelta(days=1)
    )
    with pytest.raises(ValidationError) as caught:
        medication.full_clean()
    assert "stopped_on" in caught.value.message_dict


def test_medicines_api_is_scoped_to_the_clinic_and_changes_are_audited():
    a, b = make_clinic("A"), make_clinic("B")
    client = client_for(a.clinician)
    listed = client.get("/api/v1/medications/").json()["results"]
    assert [row["id"] for row in listed] == [a.medication.pk]
    assert listed[0]["code"] == "levetiracetam" and listed[0]["current"] is True
    assert client.get(f"/api/v1/medications/{b.medication.pk}/").status_code == 404
    assert client.get("/api/v1/medications/?colour=red").status_code == 400
    a.medication.stopped_on = timezone.localdate()
    a.medication.save()
    assert client.get("/api/v1/medications/?current=true").json()["results"] == []
    entry = LogEntry.objects.get_for_object(a.medication).filter(action=LogEntry.Action.UPDATE).get()
    assert "stopped_on" in entry.changes_dict


def test_the_patient_page_has_the_medicines_inline(admin_client: Client):
    a = make_clinic("A")
    page = admin_client.get(reverse("admin:patients_patient_change", args=[a.patient.pk])).content.decode()
    assert "medications-TOTAL_FORMS" in page and "Levetiracetam" in page
    # and the summary lists the current ones with their effect
    assert 'id="current-medicines"' in page
    assert "antiseizure, no relevant interaction" in page


# ---------------------------------------------------------------------------------------------------------
# The clinic's DOAC formulary
# ---------------------------------------------------------------------------------------------------------


def test_the_clinic_formulary_limits_the_proposed_doacs_and_a_change_recomputes_the_plans(admin_client: Client):
    clinic = ClinicFactory(offers_apixaban=False)
    episode = EpisodeFactory(patient__clinic=clinic, patient__weight_kg=Decimal("70.0"))
    LabResultFactory(patient=episode.patient, drawn_on=episode.diagnosed_on)
    plan = Plan.objects.get(episode=episode)
    assert [o["agent"] for o in plan.proposal["oral_options"]] == ["warfarin", "dabigatran", "rivaroxaban"]
    # When the clinic takes dabigatran off its formulary in the admin
    url = reverse("admin:patients_clinic_change", args=[clinic.pk])
    form = {
        "name": clinic.name,
        "time_zone": clinic.time_zone,
        "alert_email": clinic.alert_email,
        "digest_time": "07:00",
        "tablet_strengths": clinic.tablet_strengths,
        "tablet_colours": clinic.tablet_colours,
        "dose_guardrail_percent": clinic.dose_guardrail_percent,
        "dna_after_days": clinic.dna_after_days,
        "offers_rivaroxaban": "on",
    }
    response = admin_client.post(url, form, follow=True)
    assert response.status_code == 200
    assert "DOAC formulary changed: plans recomputed" in response.content.decode()
    plan.refresh_from_db()
    assert [o["agent"] for o in plan.proposal["oral_options"]] == ["warfarin", "rivaroxaban"]
    assert plan.proposal["doac_formulary"] == ["rivaroxaban"]


def test_a_pregnant_patient_confirmed_on_lmwh_has_no_end_date_before_delivery():
    clinic = ClinicFactory()
    episode = EpisodeFactory(patient__clinic=clinic, pregnant=True)
    plan = Plan.objects.get(episode=episode)
    assert plan.proposal["duration"]["earliest_end_text"] == "6 weeks after delivery (date pending)"
    decision = plan_confirm(plan=plan, user=clinician(clinic), agent="lmwh")
    assert decision.end_on is None and decision.indefinite is False
    assert decision.overridden == []
    # And once the delivery is recorded the end is 6 weeks after it at the earliest
    episode.delivered_on = timezone.localdate()
    episode.save()
    plan.refresh_from_db()
    assert plan.proposal["duration"]["earliest_end_on"] >= (timezone.localdate() + timedelta(weeks=6)).isoformat()
