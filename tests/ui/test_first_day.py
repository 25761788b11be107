"""Issue 15, what a new clinic trips over, through Django's test client: the front door and the favicon,
actions shown only to those who may take them (and a refusal page that says why), the plan's text."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from anticoag.models import Plan
from patients.choices import Role
from tests.factories import ClinicFactory, EpisodeFactory, PatientFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def clinic():
    return ClinicFactory(name="Rennes")


@pytest.fixture
def ana(clinic):
    return UserFactory(username="ana", role=Role.NURSE, clinics=[clinic])


@pytest.fixture
def cole(clinic):
    return UserFactory(username="cole", role=Role.CLINICIAN, clinics=[clinic])


@pytest.fixture
def plan(clinic, ana, cole):
    """A proposed plan (not confirmed) of a patient of Ana's and Cole's."""
    patient = PatientFactory(clinic=clinic, mrn="RN-1", primary_nurse=ana, responsible_clinician=cole)
    episode = EpisodeFactory(patient=patient, diagnosed_on=timezone.localdate() - timedelta(days=20))
    return Plan.objects.get(episode=episode)


# --- 8. the front door and the favicon ----------------------------------------------------------------------


def test_the_site_root_and_view_site_lead_to_the_dashboard(client, ana):
    client.force_login(ana)
    answer = client.get("/")
    assert answer.status_code == 302 and answer["Location"] == reverse("admin:index")
    html = client.get(reverse("admin:index")).content.decode()
    assert 'href="/">View site</a>' in html
    assert client.get("/", follow=True).templates[0].name == "admin/index.html"


def test_every_page_has_a_favicon_that_is_there(client, ana):
    answer = client.get("/favicon.ico")
    assert answer.status_code == 200
    assert answer["Content-Type"] == "image/x-icon"
    assert b"".join(answer.streaming_content)[:4] == b"\x00\x00\x01\x00"  # an ICO file
    client.force_login(ana)
    assert 'rel="icon"' in client.get(reverse("admin:index")).content.decode()


# --- 7. actions only for those who may take them; a refusal says why -----------------------------------------


def test_a_nurse_sees_no_way_to_confirm_a_plan_and_a_clinician_does(client, ana, cole, plan):
    client.force_login(ana)
    dashboard = client.get(reverse("admin:index")).content.decode()
    plan_page = client.get(reverse("admin:anticoag_plan_change", args=[plan.pk])).content.decode()
    episode_page = client.get(reverse("admin:patients_cvtepisode_change", args=[plan.episode_id])).content.decode()
    patient_page = client.get(reverse("admin:patients_patient_change", args=[plan.episode.patient_id])).content
    confirm_url = reverse("admin:anticoag_plan_confirm", args=[plan.pk])
    assert "to confirm" not in dashboard and "awaiting a clinician" in dashboard
    assert confirm_url not in plan_page and "Confirm or override" not in plan_page
    assert "confirm or override" not in episode_page.lower()
    assert confirm_url.encode() not in patient_page

    client.force_login(cole)
    assert "✎ to confirm" in client.get(reverse("admin:index")).content.decode()
    assert confirm_url in client.get(reverse("admin:anticoag_plan_change", args=[plan.pk])).content.decode()


def test_a_refused_action_is_a_page_in_the_admins_style_that_says_why(client, ana, plan):
    client.force_login(ana)
    answer = client.get(reverse("admin:anticoag_plan_confirm", args=[plan.pk]))
    html = answer.content.decode()
    assert answer.status_code == 403
    assert "Only a clinician confirms or overrides a plan" in html
    assert "CVT anticoagulation clinic" in html  # the admin's header
    assert 'id="header"' in html and reverse("admin:index") in html


# --- 6. the plan's text ---------------------------------------------------------------------------------------


def test_the_plan_says_each_option_once_with_readable_sources_and_no_empty_headings(client, cole, plan):
    client.force_login(cole)
    plan_page = client.get(reverse("admin:anticoag_plan_change", args=[plan.pk])).content.decode()
    assert plan_page.count("Warfarin, INR target 2.5") == 1
    assert "Warfarin, INR 2.0" not in plan_page
    # a source reads as a short citation, with the full citation on hover
    assert ">Holbrook et al., Chest 2012</abbr>" in plan_page
    assert 'title="Holbrook et al., Chest 2012;141:e152S-e184S' in plan_page
    assert ">CHEST2012<" not in plan_page and "; SEED000<" not in plan_page

    confirm = client.get(reverse("admin:anticoag_plan_confirm", args=[plan.pk])).content.decode()
    assert plan.warnings_to_acknowledge == []
    assert "I have read and weighed these warnings" not in confirm

    episode_page = client.get(reverse("admin:patients_cvtepisode_change", args=[plan.episode_id])).content.decode()
    assert "<label>:</label>" not in episode_page
    assert "<label>Decision:</label>" in episode_page
