"""The demo clinic has one procedure awaiting a clinician and one confirmed (with its follow-ups), idempotently."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from anticoag.procedure_models import Procedure, ProcedurePlanStatus
from scheduling.models import FollowUp, FollowUpKind

pytestmark = pytest.mark.django_db


def test_seed_demo_adds_two_procedures_once(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    for _ in range(2):
        call_command("seed_demo", stdout=io.StringIO())

    statuses = sorted(Procedure.objects.values_list("kind", "plan_status"))
    assert statuses == [("endoscopy", ProcedurePlanStatus.CONFIRMED), ("lumbar_puncture", ProcedurePlanStatus.PROPOSED)]
    confirmed = Procedure.objects.get(kind="endoscopy")
    kinds = set(FollowUp.objects.filter(key__startswith=f"proc{confirmed.pk}:").values_list("kind", flat=True))
    assert kinds == {FollowUpKind.PROCEDURE_INR_CHECK, FollowUpKind.PROCEDURE_RESTART}
