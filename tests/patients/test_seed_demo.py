"""The demo clinic: every risk category of the reference, every role, and idempotent."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from anticoag.models import Plan
from anticoag.rules import CATEGORIES
from patients.models import Clinic, CvtEpisode, Patient

pytestmark = pytest.mark.django_db


def test_seed_demo_covers_every_category_and_role_and_is_idempotent():
    call_command("seed_demo", stdout=StringIO())
    patients, episodes = Patient.objects.count(), CvtEpisode.objects.count()
    assert patients == 40
    categories = set(Plan.objects.values_list("proposal__category", flat=True))
    assert categories == set(CATEGORIES)
    roles = set(get_user_model().objects.filter(clinics__isnull=False).values_list("groups__name", flat=True))
    assert roles == {"clinician", "nurse", "reporting"}

    call_command("seed_demo", stdout=StringIO())
    assert (Patient.objects.count(), CvtEpisode.objects.count(), Clinic.objects.count()) == (patients, episodes, 1)
