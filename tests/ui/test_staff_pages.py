"""The staff pages through Django's test client: scoping, permissions, the work-list actions, the alerts'
rule, the indexed MRN search and the capped count (the browser tests cover the same pages end to end)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from auditlog.models import LogEntry
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from anticoag.inr import inr_reading_record
from anticoag.models import InrReading, Plan
from clinic.dashboard import open_urgent_alerts
from clinic.work_list import follow_up_reschedule
from patients.admin import CappedCountPaginator
from patients.choices import Role
from patients.models import DeteriorationEvent
from scheduling.follow_ups import CLINICIAN_INR_RULE
from scheduling.models import FollowUp, FollowUpKind, FollowUpStatus
from tests.factories import ClinicFactory, EpisodeFactory, PatientFactory, UserFactory
from tests.scheduling.factories import FollowUpFactory

from .clinic_data import confirm_warfarin

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def clinic():
    return ClinicFactory(name="Nantes")


@pytest.fixture
def ana(clinic):
    return UserFactory(username="ana", role=Role.NURSE, clinics=[clinic])


@pytest.fixture
def cole(clinic):
    return UserFactory(username="cole", role=Role.CLINICIAN, clinics=[clinic])


@pytest.fixture
def marie(clinic, ana, cole):
    patient = PatientFactory(clinic=clinic, mrn="NT-1", primary_nurse=ana)
    episode = EpisodeFactory(patient=patient, diagnosed_on=timezone.localdate() - timedelta(days=100))
    confirm_warfarin(Plan.objects.get(episode=episode), cole)
    return patient


def page_url(patient) -> str:
    return reverse("admin:patients_patient_change", args=[patient.pk])


# --- Dashboard ----------------------------------------------------------------------------------------------


def test_the_dashboard_shows_only_the_users_clinics(client, ana, marie):
    other = ClinicFactory(name="Brest")
    stranger = PatientFactory(clinic=other, mrn="BR-9")
    EpisodeFactory(patient=stranger)  # a plan to confirm, in another clinic
    inr_reading_record(patient=stranger, drawn_at=timezone.now(), value="9.5", source="lab")  # an urgent alert there
    client.force_login(ana)

    html = client.get("/admin/").content.decode()

    assert "Follow-ups due, per nurse" in html and "Open urgent alerts" in html
    assert "BR-9" not in html and "Brest" not in html
    assert "Nantes: today" in html


def test_the_dashboard_shows_only_what_the_role_may_see(client, clinic):
    outsider = UserFactory(username="nobody", clinics=[clinic])  # staff, no role, no permission
    client.force_login(outsider)
    html = client.get("/admin/").content.decode()
    assert "Follow-ups due, per nurse" not in html and "Plans awaiting a clinician" not in html
    assert "Time in therapeutic range" not in html


def test_an_inr_alert_stays_open_until_a_later_inr_is_recorded(ana, marie):
    inr_reading_record(patient=marie, drawn_at=timezone.now() - timedelta(hours=5), value="9.4", source="lab")
    assert [row["patient"] for row in open_urgent_alerts(user=ana)["rows"]] == [marie]

    inr_reading_record(patient=marie, drawn_at=timezone.now() - timedelta(hours=1), value="4.1", source="lab")

    assert open_urgent_alerts(user=ana)["rows"] == []


def test_a_deterioration_alert_stays_open_until_the_urgent_imaging_is_done(ana, marie):
    episode = marie.episodes.get()
    DeteriorationEvent.objects.create(episode=episode, occurred_on=timezone.localdate(), note="New seizure")
    rows = open_urgent_alerts(user=ana)["rows"]
    assert [(row["patient"], row["label"]) for row in rows] == [
        (marie, "Neurological deterioration: urgent repeat CT/MRI")
    ]
    FollowUp.objects.filter(kind=FollowUpKind.URGENT_IMAGING).update(
        status=FollowUpStatus.DONE, completed_on=timezone.localdate()
    )
    assert open_urgent_alerts(user=ana)["rows"] == []


# --- Patient page ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["ana", "cole"])
def test_the_patient_page_s_navigation_names_every_section_and_each_link_finds_its_section(
    client, marie, role, request
):
    import re

    client.force_login(request.getfixturevalue(role))
    html = client.get(page_url(marie)).content.decode()
    nav = re.search(r'<nav class="clinic-page-nav".*?</nav>', html, re.S).group(0)
    targets = re.findall(r'href="#([\w-]+)"', nav)
    assert {"dosing", "plans", "procedures", "open-follow-ups", "outcomes", "timeline"} <= set(targets)
    for target in targets:
        assert f'id="{target}"' in html, target


def test_the_patient_page_of_another_clinic_is_not_found(client, ana):
    stranger = PatientFactory(clinic=ClinicFactory(name="Brest"))
    client.force_login(ana)
    assert client.get(page_url(stranger)).status_code == 302  # the admin's "does not exist" redirect
    response = client.post(reverse("admin:patients_patient_record_inr", args=[stranger.pk]), {"inr-value": "2.5"})
    assert response.status_code == 404
    assert not InrReading.objects.exists()


def test_recording_an_inr_names_the_refused_field_and_stores_nothing(client, ana, marie):
    client.force_login(ana)
    url = reverse("admin:patients_patient_record_inr", args=[marie.pk])
    now = timezone.localtime(timezone.now(), ZoneInfo(marie.clinic.time_zone))
    future = now + timedelta(days=2)

    response = client.post(
        url, {"inr-drawn_at": now.strftime("%Y-%m-%dT%H:%M"), "inr-value": "abc", "inr-source": "lab"}
    )
    assert response.status_code == 200
    assert list(response.context["patient_page"]["inr_form"].errors) == ["value"]
    assert "is not a number" in response.content.decode()

    response = client.post(
        url, {"inr-drawn_at": future.strftime("%Y-%m-%dT%H:%M"), "inr-value": "2.5", "inr-source": "lab"}
    )
    assert list(response.context["patient_page"]["inr_form"].errors) == ["drawn_at"]
    assert "is in the future" in response.content.decode()
    assert not InrReading.objects.filter(patient=marie).exists()


def test_recording_an_inr_reads_the_clinic_time_and_a_decimal_comma(client, ana, marie, clinic):
    clinic.time_zone = "America/New_York"
    clinic.save()
    client.force_login(ana)
    when = (timezone.now() - timedelta(hours=2)).astimezone(timezone.get_fixed_timezone(0))
    local = when.astimezone(ZoneInfo("America/New_York"))
    response = client.post(
        reverse("admin:patients_patient_record_inr", args=[marie.pk]),
        {"inr-drawn_at": local.strftime("%Y-%m-%dT%H:%M"), "inr-value": "3,2", "inr-source": "poc"},
    )
    assert response.status_code == 302
    reading = InrReading.objects.get(patient=marie)
    assert reading.value == Decimal("3.2") and reading.entered_by == ana and reading.source == "poc"
    assert abs(reading.drawn_at - when.replace(second=0, microsecond=0)) < timedelta(seconds=1)


def test_the_reporting_role_sees_the_page_without_forms_and_cannot_post(client, clinic, marie):
    analyst = UserFactory(username="rep", role=Role.REPORTING, clinics=[clinic])
    client.force_login(analyst)
    html = client.get(page_url(marie)).content.decode()
    assert "Timeline" in html and 'id="record-inr"' not in html and "Mark done" not in html
    response = client.post(reverse("admin:patients_patient_record_inr", args=[marie.pk]), {"inr-value": "2.5"})
    assert response.status_code == 403


def test_a_follow_up_of_another_patient_cannot_be_completed_through_this_page(client, ana, marie, clinic):
    other = FollowUpFactory(patient=PatientFactory(clinic=clinic))
    client.force_login(ana)
    url = reverse("admin:patients_patient_follow_up_done", args=[marie.pk, other.pk])
    assert client.post(url, {f"fu{other.pk}-completed_on": timezone.localdate().isoformat()}).status_code == 404
    other.refresh_from_db()
    assert other.status == FollowUpStatus.SCHEDULED


def test_confirming_from_the_patient_page_returns_there_but_never_to_another_site(client, cole, clinic):
    paul = PatientFactory(clinic=clinic, mrn="NT-2")
    plan = Plan.objects.get(episode=EpisodeFactory(patient=paul))
    client.force_login(cole)
    confirm = reverse("admin:anticoag_plan_confirm", args=[plan.pk])
    data = {"agent": "warfarin", "duration_months": 6, "acknowledged_warnings": []}
    response = client.post(confirm + "?next=https://evil.example/", data)
    assert response.status_code == 302 and response["Location"] == reverse("admin:anticoag_plan_change", args=[plan.pk])


# --- Work list ------------------------------------------------------------------------------------------------


def _action(client, action: str, items, query: str = "?mine=1&due=due", **data):
    return client.post(
        reverse("admin:scheduling_followup_changelist") + query,
        {"action": action, "_selected_action": [item.pk for item in items], **data},
    )


def test_my_work_lists_my_open_items_with_their_lateness_in_words(client, ana, clinic):
    mine = FollowUpFactory(patient=PatientFactory(clinic=clinic, mrn="MINE", primary_nurse=ana),
                           due_on=timezone.localdate() - timedelta(days=3))  # fmt: skip
    FollowUpFactory(patient=PatientFactory(clinic=clinic, mrn="NOT-MINE"), due_on=timezone.localdate())
    FollowUpFactory(patient=mine.patient, due_on=timezone.localdate() + timedelta(days=30))  # beyond the week
    client.force_login(ana)
    response = client.get(reverse("admin:scheduling_followup_my_work"), follow=True)
    html = response.content.decode()
    assert "MINE" in html and "NOT-MINE" not in html
    assert "Overdue by 3 days" in html
    assert len(response.context["cl"].result_list) == 1


def test_bulk_done_asks_each_imaging_item_for_its_result_and_is_all_or_nothing(client, ana, clinic):
    patient = PatientFactory(clinic=clinic, primary_nurse=ana)
    episode = EpisodeFactory(patient=patient, diagnosed_on=timezone.localdate() - timedelta(days=100))
    imaging = FollowUp.objects.get(patient=patient, kind=FollowUpKind.VENOUS_IMAGING)
    inr = FollowUpFactory(patient=patient, episode=episode, due_on=timezone.localdate())
    cancelled = FollowUpFactory(patient=patient, status=FollowUpStatus.CANCELLED, due_on=timezone.localdate())
    client.force_login(ana)
    today = timezone.localdate().isoformat()

    page = _action(client, "mark_done", [imaging, inr])  # first the intermediate form
    assert page.status_code == 200 and f"recanalization_{imaging.pk}" in page.content.decode()
    assert f"recanalization_{inr.pk}" not in page.content.decode()

    refused = _action(client, "mark_done", [imaging, inr], apply="1", completed_on=today)  # no result given
    assert "This field is required" in refused.content.decode()
    refused = _action(client, "mark_done", [imaging, inr, cancelled], query="", apply="1", completed_on=today,
                      **{f"recanalization_{imaging.pk}": "none"})  # fmt: skip
    assert "Nothing was changed" in refused.content.decode() and "cancelled" in refused.content.decode()
    imaging.refresh_from_db()
    assert imaging.status == FollowUpStatus.SCHEDULED  # rolled back with the refused item

    done = _action(client, "mark_done", [imaging, inr], apply="1", completed_on=today, result_note="Seen in clinic",
                   **{f"recanalization_{imaging.pk}": "none"})  # fmt: skip
    assert done.status_code == 302
    imaging.refresh_from_db()
    inr.refresh_from_db()
    assert (imaging.status, imaging.recanalization, inr.status) == (FollowUpStatus.DONE, "none", FollowUpStatus.DONE)
    assert imaging.result_note.startswith("Seen in clinic")
    assert FollowUp.objects.filter(patient=patient, key__endswith=":venous_imaging:6m").exists()  # the 6-month scan


def test_bulk_reschedule_needs_a_reason_and_records_it(client, ana, clinic):
    item = FollowUpFactory(patient=PatientFactory(clinic=clinic, primary_nurse=ana), due_on=timezone.localdate())
    client.force_login(ana)
    new = timezone.localdate() + timedelta(days=5)

    refused = _action(client, "reschedule", [item], apply="1", due_on=new.isoformat(), reason="")
    assert refused.status_code == 200 and "This field is required" in refused.content.decode()
    done = _action(client, "reschedule", [item], apply="1", due_on=new.isoformat(), reason="Lab closed")
    assert done.status_code == 302
    item.refresh_from_db()
    assert item.due_on == new and "Lab closed" in item.result_note and "by ana" in item.result_note
    entry = LogEntry.objects.get_for_object(item).latest("timestamp")
    assert entry.actor == ana and "due_on" in entry.changes_dict


def test_reschedule_refuses_by_field(marie):
    item = FollowUpFactory(patient=marie, due_on=timezone.localdate(), window_end_on=timezone.localdate())
    with pytest.raises(ValidationError) as refused:
        follow_up_reschedule(follow_up=item, due_on=timezone.localdate() - timedelta(days=1), reason=" ")
    assert set(refused.value.message_dict) == {"due_on", "reason"}
    done = FollowUpFactory(patient=marie, status=FollowUpStatus.DONE, completed_on=timezone.localdate())
    with pytest.raises(ValidationError) as refused:
        follow_up_reschedule(follow_up=done, due_on=timezone.localdate() + timedelta(days=3), reason="x")
    assert set(refused.value.message_dict) == {"status"}

    moved = follow_up_reschedule(follow_up=item, due_on=timezone.localdate() + timedelta(days=9), reason="Holiday")
    assert moved.window_end_on == moved.due_on  # a window end before the new date moves with it
    assert moved.rule == CLINICIAN_INR_RULE  # an INR test moved by hand is the clinician's date now


# --- Scale: indexed MRN search, capped count ------------------------------------------------------------------


def test_the_mrn_search_is_an_indexed_exact_match(client, cole, clinic, marie):
    PatientFactory(clinic=clinic, mrn="NT-10")
    client.force_login(cole)
    with CaptureQueriesContext(connection) as queries:
        page = client.get("/admin/patients/patient/", {"q": "nt-1"})
    assert [p.mrn for p in page.context["cl"].result_list] == ["NT-1"]
    lookup = next(q["sql"] for q in queries.captured_queries if "EXISTS" in q["sql"].upper() or "LIMIT 1" in q["sql"])
    assert '"patients_patient"."mrn" IN (' in lookup and "UPPER(" not in lookup

    with connection.cursor() as cursor:  # the planner can serve it from patient_mrn_idx
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN SELECT id FROM patients_patient WHERE mrn IN ('nt-1', 'NT-1')")
        plan = " ".join(row[0] for row in cursor.fetchall())
    assert "patient_mrn_idx" in plan


def test_a_name_search_still_works_when_no_mrn_matches(client, cole, clinic):
    PatientFactory(clinic=clinic, mrn="NT-77", family_name="Lefebvre")
    client.force_login(cole)
    page = client.get("/admin/patients/patient/", {"q": "lefeb"})
    assert [p.mrn for p in page.context["cl"].result_list] == ["NT-77"]


def test_a_long_list_says_more_than_the_cap_instead_of_counting_everything(client, cole, clinic, monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "cap", 3)
    for _ in range(5):
        PatientFactory(clinic=clinic)
    client.force_login(cole)
    html = client.get("/admin/patients/patient/").content.decode()
    assert "More than 3 patients" in html


def test_patient_pickers_are_autocompletes_scoped_to_the_clinic(client, ana, clinic, marie):
    PatientFactory(clinic=ClinicFactory(name="Brest"), mrn="NT-1X")
    client.force_login(ana)
    response = client.get(
        "/admin/autocomplete/",
        {"term": "NT-1", "app_label": "anticoag", "model_name": "inrreading", "field_name": "patient"},
    )
    assert response.status_code == 200
    assert [r["text"] for r in response.json()["results"]] == ["MRN NT-1"]
