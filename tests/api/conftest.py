"""Two clinics, each with its staff and one patient's records, and API clients that log in with a token."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from anticoag.models import InrReading
from outcomes.models import ClinicalEvent, OutcomeAssessment
from patients.choices import Role
from patients.models import PatientMedication
from reporting.ical import calendar_feed_create
from scheduling.models import FollowUp, Reminder, ReminderKind
from tests.factories import ClinicFactory, EpisodeFactory, PatientFactory, UserFactory


def make_clinic(tag: str) -> SimpleNamespace:
    """A clinic with a clinician, a nurse, a reporting analyst, a patient with an episode (its plan and
    follow-ups follow by themselves), two INR readings, a reminder and the nurse's calendar feed."""
    clinic = ClinicFactory(name=f"Clinic {tag}")
    clinician = UserFactory(username=f"clinician_{tag}", role=Role.CLINICIAN, clinics=[clinic])
    nurse = UserFactory(username=f"nurse_{tag}", role=Role.NURSE, clinics=[clinic])
    reporter = UserFactory(username=f"reporter_{tag}", role=Role.REPORTING, clinics=[clinic])
    patient = PatientFactory(
        clinic=clinic,
        mrn=f"MRN-{tag}",
        family_name=f"Family{tag}",
        given_name=f"Given{tag}",
        primary_nurse=nurse,
        responsible_clinician=clinician,
    )
    episode = EpisodeFactory(patient=patient, notes=f"secret note {tag}")
    now = timezone.now()
    readings = [
        InrReading.objects.create(patient=patient, drawn_at=now - timedelta(days=days), value=Decimal(value))
        for days, value in ((9, "1.80"), (2, "2.40"))
    ]
    follow_up = FollowUp.objects.filter(patient=patient).order_by("pk").first()
    assert follow_up is not None, "the plan should have scheduled follow-ups"
    reminder = Reminder.objects.create(
        clinic=clinic,
        kind=ReminderKind.DIGEST,
        recipient=f"nurse_{tag}@clinic.invalid",
        recipient_user=nurse,
        next_attempt_at=now,
        idempotency_key=f"test-digest-{tag}",
    )
    reminder.follow_ups.add(follow_up)
    # An outcome review and an event (issue 16), each with a free-text note the research exports must drop.
    OutcomeAssessment.objects.create(
        patient=patient, episode=episode, timepoint="other", assessed_on=episode.diagnosed_on, mrs=1,
        note=f"secret note {tag}",
    )  # fmt: skip
    ClinicalEvent.objects.create(
        patient=patient, episode=episode, kind="bleeding", bleeding_site="skin", occurred_on=episode.diagnosed_on,
        note=f"secret note {tag}",
    )  # fmt: skip
    feed, feed_token = calendar_feed_create(user=nurse, label="phone")
    medication = PatientMedication.objects.create(
        patient=patient, code="levetiracetam", started_on=episode.diagnosed_on
    )
    return SimpleNamespace(
        medication=medication,
        clinic=clinic,
        clinician=clinician,
        nurse=nurse,
        reporter=reporter,
        patient=patient,
        episode=episode,
        plan=episode.plan,
        readings=readings,
        follow_up=follow_up,
        reminder=reminder,
        feed=feed,
        feed_token=feed_token,
    )


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    """Six users a test: the production hasher's deliberate slowness is not what these tests measure."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def a(db) -> SimpleNamespace:
    return make_clinic("A")


@pytest.fixture
def b(db) -> SimpleNamespace:
    return make_clinic("B")


def client_for(user) -> APIClient:
    """An API client authenticated the way other systems are: with the user's token."""
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


@pytest.fixture
def pseudonym_key(settings) -> str:
    settings.ANTICOAG_PSEUDONYM_KEY = "test-pseudonym-key-0123456789abcdef0123456789"
    return settings.ANTICOAG_PSEUDONYM_KEY
