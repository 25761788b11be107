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
    assert 'id="clinic-dashboard"' in client.get("/", follow=True).content.decode()


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


# --- 4. a clinician's "My work" -------------------------------------------------------------------------------


def test_a_clinicians_my_work_lists_plans_to_confirm_and_their_escalated_items(client, clinic, ana, cole, plan):
    from scheduling.models import FollowUp, FollowUpKind
    from tests.scheduling.factories import FollowUpFactory

    # given Cole's patient with a plan to confirm (fixture) and an item 12 days overdue, one 3 days overdue,
    # and another clinician's patient with an item 30 days overdue
    today = timezone.localdate()
    FollowUp.objects.filter(patient=plan.episode.patient).delete()
    late = FollowUpFactory(patient=plan.episode.patient, due_on=today - timedelta(days=12), kind=FollowUpKind.INR_TEST)
    FollowUpFactory(patient=plan.episode.patient, due_on=today - timedelta(days=3))
    other = UserFactory(username="dora", role=Role.CLINICIAN, clinics=[clinic])
    theirs = PatientFactory(clinic=clinic, mrn="RN-2", responsible_clinician=other)
    FollowUpFactory(patient=theirs, due_on=today - timedelta(days=30))
    client.force_login(cole)

    answer = client.get(reverse("admin:scheduling_followup_my_work"))

    html = answer.content.decode()
    assert answer.status_code == 200 and "no-store" in answer["Cache-Control"]
    assert "Plans to confirm or review (1)" in html and "RN-1" in html
    assert reverse("admin:anticoag_plan_confirm", args=[plan.pk]) in html
    assert "overdue by more than 7 days (1)" in html
    assert reverse("admin:scheduling_followup_change", args=[late.pk]) in html and "Overdue by 12 days" in html
    assert "RN-2" not in html
    # the work list's "My patients" is the clinician's patients too
    listing = client.get(reverse("admin:scheduling_followup_changelist") + "?mine=1").content.decode()
    assert "RN-1" in listing and "RN-2" not in listing


def test_a_nurses_my_work_is_still_her_work_list(client, ana):
    client.force_login(ana)
    answer = client.get(reverse("admin:scheduling_followup_my_work"))
    assert answer.status_code == 302 and "mine=1" in answer["Location"]


def test_the_refusal_pages_back_link_stays_on_the_site(client, ana, plan):
    client.force_login(ana)
    url = reverse("admin:anticoag_plan_confirm", args=[plan.pk])
    here = "http://testserver" + reverse("admin:index")
    assert f'href="{here}"' in client.get(url, HTTP_REFERER=here).content.decode()
    html = client.get(url, HTTP_REFERER="javascript:alert(1)").content.decode()
    assert "javascript:" not in html and "Back to the previous page" not in html
