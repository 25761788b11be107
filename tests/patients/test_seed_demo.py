"""The demo clinic: every risk category of the reference, every role, and idempotent."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from anticoag.models import Plan
from anticoag.rules import CATEGORIES
from patients.models import Clinic, CvtEpisode, Patient

pytestmark = pytest.mark.django_db


def test_seed_demo_covers_every_category_and_role_and_is_idempotent():
    call_command("seed_demo", stdout=StringIO())
    patients, episodes = Patient.objects.count(), CvtEpisode.objects.count()
    assert patients == 43  # the 40 of every category, and the 3 of rules revision 2 (anticoag.demo)
    categories = set(Plan.objects.values_list("proposal__category", flat=True))
    assert categories == set(CATEGORIES)
    roles = set(get_user_model().objects.filter(clinics__isnull=False).values_list("groups__name", flat=True))
    assert roles == {"clinician", "nurse", "reporting"}

    call_command("seed_demo", stdout=StringIO())
    assert (Patient.objects.count(), CvtEpisode.objects.count(), Clinic.objects.count()) == (patients, episodes, 1)


def test_the_demo_looks_like_a_clinic_in_mid_year():
    """Issue 15, item 10: months of INR history with realistic control, confirmed plans, a critical INR this
    week, items due today, a handful overdue, names that fit the patient."""
    from datetime import timedelta

    from anticoag.inr import clinic_today, clinic_ttr_report
    from anticoag.models import InrReading, PlanDecision
    from patients.management.commands.seed_demo import CLINIC_NAME, GIVEN
    from scheduling.models import FollowUp, FollowUpStatus, Reminder, ReminderKind

    call_command("seed_demo", stdout=StringIO())
    clinic = Clinic.objects.get(name=CLINIC_NAME)
    today = clinic_today(clinic)

    # months of INR history, and most plans confirmed (a few left for the clinician)
    readings = InrReading.objects.filter(patient__clinic=clinic)
    assert readings.count() > 200
    assert readings.order_by("drawn_at").first().drawn_at.date() < today - timedelta(days=150)
    decided = PlanDecision.objects.filter(plan__episode__patient__clinic=clinic).count()
    assert 30 <= decided < Plan.objects.count()
    # realistic control: a spread of TTRs, the median below 90 %, and lost-to-follow-up figures
    report = clinic_ttr_report(clinic=clinic, start=today - timedelta(days=182), end=today, as_of=today)
    ttrs = [row["ttr_percent"] for row in report["patients"] if row["ttr_percent"] is not None]
    assert len(ttrs) >= 12 and min(ttrs) < 50 and max(ttrs) > 80
    assert 60 < report["median_ttr_percent"] < 90
    assert report["warfarin_patients"] >= 12 and 1 <= report["lost_to_follow_up"] <= 3
    # one critical INR this week, alerted to the clinic, the nurse and the clinician
    critical = readings.filter(value__gte=5, drawn_at__gte=timezone.now() - timedelta(days=7))
    assert critical.count() == 1
    assert Reminder.objects.filter(kind=ReminderKind.URGENT, inr_reading__in=critical).count() == 3
    # a few items due today, a handful overdue, nothing overdue for long but the lost patients' INR tests
    open_items = FollowUp.objects.filter(patient__clinic=clinic, status=FollowUpStatus.SCHEDULED)
    assert open_items.filter(due_on=today).count() >= 3
    assert 1 <= open_items.filter(due_on__lt=today).count() <= 15
    assert open_items.filter(due_on__lt=today - timedelta(days=30)).exclude(kind="inr_test").count() == 0
    # a "did not attend": the long-overdue INR test is marked missed and its recall is due (issue 14's DNA)
    from scheduling.missed_tests import DNA_RECALL_RULE

    missed = FollowUp.objects.filter(patient__clinic=clinic, kind="inr_test", status=FollowUpStatus.MISSED)
    assert missed.count() >= 1
    assert open_items.filter(kind="inr_test", rule=DNA_RECALL_RULE, patient__in=missed.values("patient")).exists()
    # names that fit: every woman (every pregnant patient among them) has a woman's name
    for patient in Patient.objects.filter(clinic=clinic):
        assert patient.given_name in GIVEN[patient.sex], (patient.mrn, patient.sex, patient.given_name)
    assert all(
        p.given_name in GIVEN["female"]
        for p in Patient.objects.filter(episodes__risk_factors__code__in=["pregnancy", "puerperium"]).distinct()
    )

    # and running it again adds nothing
    count = readings.count()
    call_command("seed_demo", stdout=StringIO())
    assert readings.count() == count
