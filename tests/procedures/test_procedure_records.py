"""Procedure records: saving proposes the plan, a clinician confirms or changes it, and the confirmed plan's
follow-ups (INR check, restart reminder) are scheduled, moved and removed through scheduling (reference §8)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import time_machine
from dateutil.relativedelta import relativedelta
from django.core.exceptions import ValidationError
from django.utils import timezone

from anticoag.procedure_models import Procedure, ProcedureDecision, ProcedurePlanStatus
from anticoag.procedure_services import procedure_confirm, procedure_propose, procedure_record, procedure_set_status
from clinic.dashboard import clinic_days, due_q, open_follow_ups
from scheduling.follow_ups import follow_up_complete
from scheduling.models import FollowUp, FollowUpKind, FollowUpStatus
from tests.factories import ClinicFactory, EpisodeFactory, LabResultFactory, PatientFactory, clinician

pytestmark = pytest.mark.django_db


def next_monday(after: date) -> date:
    return after + timedelta(days=7 - after.weekday())


@pytest.fixture
def world():
    clinic = ClinicFactory(name="Rennes", time_zone="Europe/Paris")
    doctor = clinician(clinic)
    patient = PatientFactory(clinic=clinic, mrn="RN-1")
    monday = next_monday(timezone.localdate() + timedelta(days=7))
    episode = EpisodeFactory(patient=patient, diagnosed_on=monday - relativedelta(months=2))
    return {"clinic": clinic, "doctor": doctor, "patient": patient, "monday": monday, "episode": episode}


def procedure_items(procedure: Procedure) -> list[FollowUp]:
    return list(FollowUp.objects.filter(key__startswith=f"proc{procedure.pk}:").order_by("kind", "pk"))


def lumbar_puncture(world, **kwargs) -> Procedure:
    values = {"scheduled_on": world["monday"], "kind": "lumbar_puncture", "bleed_risk": "high", "agent": "rivaroxaban"}
    values.update(kwargs)
    return procedure_record(patient=world["patient"], requested_by="Neurology", user=world["doctor"], **values)


def test_saving_proposes_the_plan_and_schedules_nothing_until_a_clinician_confirms(world):
    procedure = lumbar_puncture(world)

    assert procedure.plan_status == ProcedurePlanStatus.PROPOSED
    assert procedure.episode == world["episode"]
    assert procedure.proposal["last_dose_on"] == (world["monday"] - timedelta(days=3)).isoformat()
    assert procedure.proposal["restart_on"] == (world["monday"] + timedelta(days=2)).isoformat()
    assert [w["code"] for w in procedure.warnings_to_acknowledge] == ["recent_cvt"]
    assert procedure.proposal["months_since_diagnosis"] == 2.0
    assert procedure_items(procedure) == []


def test_confirming_needs_the_acknowledgement_then_schedules_the_restart_reminder_once(world):
    procedure = lumbar_puncture(world)
    with pytest.raises(ValidationError) as caught:
        procedure_confirm(procedure=procedure, user=world["doctor"])
    assert "acknowledged_warnings" in caught.value.message_dict
    assert not ProcedureDecision.objects.exists()

    for _ in range(2):  # confirming again creates nothing new
        procedure_confirm(procedure=procedure, user=world["doctor"], acknowledged_warnings=["recent_cvt"])

    procedure.refresh_from_db()
    assert procedure.plan_status == ProcedurePlanStatus.CONFIRMED
    items = procedure_items(procedure)
    assert [(i.kind, i.due_on, i.status) for i in items] == [
        (FollowUpKind.PROCEDURE_RESTART, world["monday"] + timedelta(days=2), FollowUpStatus.SCHEDULED)
    ]
    assert items[0].source == "PAUSE"


def test_a_change_needs_a_reason_and_a_restart_within_the_range_is_no_change(world):
    procedure = lumbar_puncture(world)
    with pytest.raises(ValidationError) as caught:
        procedure_confirm(procedure=procedure, user=world["doctor"], skip_days=3, acknowledged_warnings=["recent_cvt"])
    assert caught.value.message_dict["change_reason"] == ["A reason is required to change the proposal (skip_days)."]
    decision = procedure_confirm(
        procedure=procedure, user=world["doctor"], restart_after=3, acknowledged_warnings=["recent_cvt"]
    )
    assert decision.changed == []
    decision = procedure_confirm(
        procedure=procedure,
        user=world["doctor"],
        skip_days=3,
        restart_after=3,
        change_reason="Neurosurgeon asks for one more day.",
        acknowledged_warnings=["recent_cvt"],
    )
    assert decision.changed == ["skip_days"]
    procedure.refresh_from_db()
    assert procedure.confirmed_plan["last_dose_on"] == (world["monday"] - timedelta(days=4)).isoformat()
    assert [i.due_on for i in procedure_items(procedure)] == [world["monday"] + timedelta(days=3)]


def test_warfarin_schedules_the_inr_check_the_day_before_and_the_restart_that_evening(world):
    procedure = procedure_record(
        patient=world["patient"], scheduled_on=world["monday"], kind="dental", bleed_risk="low", agent="warfarin"
    )
    procedure_confirm(procedure=procedure, user=world["doctor"], acknowledged_warnings=["recent_cvt"])

    by_kind = {i.kind: i for i in procedure_items(procedure)}
    assert by_kind[FollowUpKind.PROCEDURE_INR_CHECK].due_on == world["monday"] - timedelta(days=1)  # a Sunday
    assert by_kind[FollowUpKind.PROCEDURE_RESTART].due_on == world["monday"]
    assert by_kind[FollowUpKind.PROCEDURE_INR_CHECK].source == "CHEST2022 [verify]"


def test_the_follow_ups_are_due_on_their_days_in_the_clinic_work_lists(world):
    procedure = procedure_record(
        patient=world["patient"], scheduled_on=world["monday"], kind="dental", bleed_risk="low", agent="warfarin"
    )
    procedure_confirm(procedure=procedure, user=world["doctor"], acknowledged_warnings=["recent_cvt"])
    sunday = world["monday"] - timedelta(days=1)

    def due_today(on: date) -> set[str]:
        noon_paris = timezone.make_aware(timezone.datetime.combine(on, timezone.datetime.min.time())) + timedelta(
            hours=11
        )
        with time_machine.travel(noon_paris, tick=False):
            days = clinic_days([world["clinic"]])
            items = open_follow_ups().filter(due_q("today", days), key__startswith=f"proc{procedure.pk}:")
            return {i.kind for i in items}

    assert due_today(sunday - timedelta(days=1)) == set()
    assert due_today(sunday) == {FollowUpKind.PROCEDURE_INR_CHECK}
    assert due_today(world["monday"]) == {FollowUpKind.PROCEDURE_RESTART}


def test_a_moved_procedure_moves_its_open_follow_ups(world):
    procedure = lumbar_puncture(world)
    procedure_confirm(procedure=procedure, user=world["doctor"], acknowledged_warnings=["recent_cvt"])
    before = procedure_items(procedure)

    procedure.scheduled_on = world["monday"] + timedelta(days=7)  # still within 3 months: same proposal shape
    procedure_propose(procedure=procedure)

    after = procedure_items(procedure)
    assert [i.pk for i in after] == [i.pk for i in before]
    assert after[0].due_on == world["monday"] + timedelta(days=9)
    procedure.refresh_from_db()
    assert procedure.plan_status == ProcedurePlanStatus.CONFIRMED
    assert procedure.confirmed_plan["restart_on"] == (world["monday"] + timedelta(days=9)).isoformat()


def test_moving_past_three_months_needs_a_review_but_keeps_the_confirmed_intervals(world):
    procedure = lumbar_puncture(world)
    procedure_confirm(procedure=procedure, user=world["doctor"], acknowledged_warnings=["recent_cvt"])
    later = world["episode"].diagnosed_on + relativedelta(months=3)

    procedure.scheduled_on = later
    procedure_propose(procedure=procedure)

    procedure.refresh_from_db()
    assert "recent_cvt" not in [w["code"] for w in procedure.proposal["warnings"]]
    assert procedure.plan_status == ProcedurePlanStatus.CONFIRMED  # only a *new* caution needs a review
    assert procedure_items(procedure)[0].due_on == later + timedelta(days=2)


def test_a_cancelled_procedure_removes_its_open_follow_ups_and_keeps_the_done_ones(world):
    procedure = procedure_record(
        patient=world["patient"], scheduled_on=world["monday"], kind="dental", bleed_risk="low", agent="warfarin"
    )
    procedure_confirm(procedure=procedure, user=world["doctor"], acknowledged_warnings=["recent_cvt"])
    check = FollowUp.objects.get(key=f"proc{procedure.pk}:{FollowUpKind.PROCEDURE_INR_CHECK}")
    with time_machine.travel(
        timezone.make_aware(timezone.datetime.combine(check.due_on, timezone.datetime.min.time())) + timedelta(hours=12)
    ):
        follow_up_complete(follow_up=check, completed_on=check.due_on, user=world["doctor"])

    procedure_set_status(procedure=procedure, status="cancelled")

    statuses = {i.kind: (i.status, i.result_note) for i in procedure_items(procedure)}
    assert statuses[FollowUpKind.PROCEDURE_INR_CHECK][0] == FollowUpStatus.DONE
    status, note = statuses[FollowUpKind.PROCEDURE_RESTART]
    assert status == FollowUpStatus.CANCELLED and "the procedure was cancelled" in note
    assert not open_follow_ups().filter(key__startswith=f"proc{procedure.pk}:").exists()

    procedure_set_status(procedure=procedure, status="planned")  # planned again: the reminder comes back
    assert [i.kind for i in open_follow_ups().filter(key__startswith=f"proc{procedure.pk}:")] == [
        FollowUpKind.PROCEDURE_RESTART
    ]


def test_a_done_inr_check_stays_when_the_procedure_moves_and_a_new_one_is_due(world):
    procedure = procedure_record(
        patient=world["patient"], scheduled_on=world["monday"], kind="dental", bleed_risk="low", agent="warfarin"
    )
    procedure_confirm(procedure=procedure, user=world["doctor"], acknowledged_warnings=["recent_cvt"])
    check = FollowUp.objects.get(key=f"proc{procedure.pk}:{FollowUpKind.PROCEDURE_INR_CHECK}")
    with time_machine.travel(
        timezone.make_aware(timezone.datetime.combine(check.due_on, timezone.datetime.min.time())) + timedelta(hours=12)
    ):
        follow_up_complete(follow_up=check, completed_on=check.due_on, user=world["doctor"])

    procedure.scheduled_on = world["monday"] + timedelta(days=14)
    procedure_propose(procedure=procedure)

    checks = [i for i in procedure_items(procedure) if i.kind == FollowUpKind.PROCEDURE_INR_CHECK]
    assert [(i.status, i.due_on) for i in checks] == [
        (FollowUpStatus.DONE, world["monday"] - timedelta(days=1)),
        (FollowUpStatus.SCHEDULED, world["monday"] + timedelta(days=13)),
    ]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"bleed_risk": "low"}, "bleed_risk"),  # a lumbar puncture is high bleed-risk
        ({"agent": "dabigatran"}, "agent"),  # no creatinine on file: CrCl unknown
        ({"agent": "edoxaban"}, "agent"),
        ({"scheduled_on": date(2000, 1, 1)}, "scheduled_on"),  # before any CVT episode
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(world, changes, field):
    with pytest.raises(ValidationError) as caught:
        lumbar_puncture(world, **changes)
    assert field in caught.value.message_dict
    assert not Procedure.objects.exists()


def test_dabigatran_uses_the_latest_creatinine_clearance(world):
    # 46 years, 70 kg, woman: creatinine 1.6 mg/dL → CrCl (140-46)·70/(72·1.6)·0.85 = 48.6 → the CrCl < 50 row
    LabResultFactory(
        patient=world["patient"], drawn_on=timezone.localdate() - timedelta(days=3), serum_creatinine="1.60"
    )
    procedure = lumbar_puncture(world, agent="dabigatran")
    assert procedure.proposal["row"] == "dabigatran, CrCl < 50, high bleed risk"
    assert procedure.proposal["days_without"] == 4


def test_a_move_that_brings_a_new_caution_needs_a_review(world):
    procedure = lumbar_puncture(world, scheduled_on=world["episode"].diagnosed_on + relativedelta(months=3, days=5))
    assert procedure.warnings_to_acknowledge == []
    procedure_confirm(procedure=procedure, user=world["doctor"])

    procedure.scheduled_on = world["monday"]  # 2 months after the diagnosis: recent CVT
    procedure_propose(procedure=procedure)

    procedure.refresh_from_db()
    assert procedure.plan_status == ProcedurePlanStatus.REVIEW
    assert procedure.changes == [{"part": "warnings", "added": ["recent_cvt"]}]
    assert procedure_items(procedure)[0].due_on == world["monday"] + timedelta(days=2)  # still follows the decision
