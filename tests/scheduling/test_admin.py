"""The admin: the outbox (filter, see the error, resend) and follow-ups scoped to the user's clinics."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from scheduling.models import Reminder, ReminderStatus
from tests.factories import ClinicFactory, PatientFactory, UserFactory, nurse

from .factories import FollowUpFactory, ReminderFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_user():
    return UserFactory(is_superuser=True)


def grant(user, *codenames: str) -> None:
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))


def test_the_outbox_lists_filters_and_shows_the_last_error(client, admin_user):
    ReminderFactory(status=ReminderStatus.FAILED, recipient="failing@clinic.invalid", last_error="SMTPDataError: 554")
    ReminderFactory(status=ReminderStatus.SENT, recipient="fine@clinic.invalid")
    client.force_login(admin_user)

    page = client.get("/admin/scheduling/reminder/", {"status__exact": "failed"})
    assert page.status_code == 200
    assert b"failing@clinic.invalid" in page.content and b"fine@clinic.invalid" not in page.content
    page = client.get("/admin/scheduling/reminder/", {"q": "fine@", "kind__exact": "urgent"})
    assert b"fine@clinic.invalid" in page.content and b"failing@clinic.invalid" not in page.content

    failed = Reminder.objects.get(recipient="failing@clinic.invalid")
    page = client.get(f"/admin/scheduling/reminder/{failed.pk}/change/")
    assert page.status_code == 200
    assert b"SMTPDataError: 554" in page.content


def test_resend_puts_failed_and_sent_reminders_back_to_pending(client, admin_user):
    failed = ReminderFactory(status=ReminderStatus.FAILED, attempts=8, next_attempt_at=timezone.now() - timedelta(3))
    sent = ReminderFactory(status=ReminderStatus.SENT, attempts=1)
    sending = ReminderFactory(status=ReminderStatus.SENDING, attempts=1, lease_until=timezone.now())
    client.force_login(admin_user)

    response = client.post(
        "/admin/scheduling/reminder/",
        {"action": "resend", "_selected_action": [failed.pk, sent.pk, sending.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert b"2 reminder(s) will be sent again" in response.content
    for reminder in (failed, sent):
        reminder.refresh_from_db()
        assert (reminder.status, reminder.attempts, reminder.lease_until) == (ReminderStatus.PENDING, 0, None)
        assert timezone.now() - reminder.next_attempt_at < timedelta(minutes=1)
    sending.refresh_from_db()
    assert sending.status == ReminderStatus.SENDING


def test_follow_ups_are_scoped_to_the_users_clinics(client):
    mine, theirs = ClinicFactory(), ClinicFactory()
    anna = nurse(mine)
    grant(anna, "view_followup", "change_followup", "view_patient")
    own = FollowUpFactory(patient=PatientFactory(clinic=mine, mrn="OWN-1", primary_nurse=anna))
    FollowUpFactory(patient=PatientFactory(clinic=theirs, mrn="OTHER-1"))
    client.force_login(anna)

    page = client.get("/admin/scheduling/followup/")
    assert page.status_code == 200
    assert b"OWN-1" in page.content and b"OTHER-1" not in page.content
    for query in (
        {"status__exact": "scheduled"},
        {"kind__exact": "inr_test"},
        {"patient__primary_nurse__id__exact": anna.pk},
    ):
        assert b"OWN-1" in client.get("/admin/scheduling/followup/", query).content
    other_nurse = nurse(theirs)
    FollowUpFactory(patient=PatientFactory(clinic=theirs, primary_nurse=other_nurse))
    assert other_nurse.username.encode() not in client.get("/admin/scheduling/followup/").content  # filter choices
    assert client.get(f"/admin/scheduling/followup/{own.pk}/change/").status_code == 200
    other = FollowUpFactory(patient=PatientFactory(clinic=theirs))
    assert client.get(f"/admin/scheduling/followup/{other.pk}/change/").status_code == 302  # not found for her


def test_the_outbox_is_scoped_to_the_users_clinics(client):
    mine, theirs = ClinicFactory(), ClinicFactory()
    anna = nurse(mine)
    grant(anna, "view_reminder")
    ReminderFactory(clinic=mine, recipient="mine@clinic.invalid")
    ReminderFactory(clinic=theirs, recipient="theirs@clinic.invalid")
    client.force_login(anna)
    page = client.get("/admin/scheduling/reminder/")
    assert b"mine@clinic.invalid" in page.content and b"theirs@clinic.invalid" not in page.content
