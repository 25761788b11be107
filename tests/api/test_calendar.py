"""The nurses' iCalendar feed: RFC 5545 as written, MRN and kind only, revocable, manageable in the admin."""

from __future__ import annotations

import re
from datetime import date

import pytest
from django.urls import reverse

from reporting.ical import ics_escape, ics_fold, nurse_calendar_ics
from reporting.models import CalendarFeed
from scheduling.models import FollowUp, FollowUpStatus
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


def unfold(text: str) -> list[str]:
    return text.replace("\r\n ", "").split("\r\n")


def test_the_feed_is_rfc_5545_with_one_all_day_event_per_open_follow_up(a, anonymous):
    response = anonymous.get(f"/api/v1/calendar/{a.feed_token}.ics")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/calendar; charset=utf-8"
    assert response["Cache-Control"] == "private, no-store"
    text = response.content.decode()
    # CRLF line ends only, every physical line at most 75 octets
    assert "\n" not in text.replace("\r\n", "")
    assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))
    lines = unfold(text)
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-2] == "END:VCALENDAR" and lines[-1] == ""
    assert "VERSION:2.0" in lines and any(line.startswith("PRODID:") for line in lines)
    open_items = FollowUp.objects.filter(patient=a.patient, status=FollowUpStatus.SCHEDULED).order_by("due_on", "pk")
    assert lines.count("BEGIN:VEVENT") == open_items.count() > 0
    first = open_items.first()
    assert f"UID:follow-up-{first.pk}@testserver" in lines
    assert f"DTSTART;VALUE=DATE:{first.due_on:%Y%m%d}" in lines
    assert any(line.startswith("DTSTAMP:") and line.endswith("Z") for line in lines)


def test_events_say_only_mrn_and_kind(a, anonymous):
    text = anonymous.get(f"/api/v1/calendar/{a.feed_token}.ics").content.decode()
    summaries = [line for line in unfold(text) if line.startswith("SUMMARY:")]
    assert summaries and all(re.fullmatch(r"SUMMARY:MRN MRN-A: .+", line) for line in summaries)
    for secret in ("FamilyA", "GivenA", "1980", "thrombosis", "CVT", "secret note"):
        assert secret not in text


def test_done_and_cancelled_items_and_other_nurses_patients_are_left_out(a):
    items = list(FollowUp.objects.filter(patient=a.patient).order_by("pk"))
    FollowUp.objects.filter(pk=items[0].pk).update(status=FollowUpStatus.DONE)
    FollowUp.objects.filter(pk=items[1].pk).update(status=FollowUpStatus.CANCELLED)
    other = PatientFactory(clinic=a.clinic, mrn="OTHER-NURSE")
    FollowUp.objects.create(patient=other, kind="inr_test", due_on=date(2030, 1, 1), rule="t", key="t-other")
    text = nurse_calendar_ics(feed=a.feed)
    assert f"follow-up-{items[0].pk}@" not in text and f"follow-up-{items[1].pk}@" not in text
    assert f"follow-up-{items[2].pk}@" in text
    assert "OTHER-NURSE" not in text


def test_text_is_escaped_and_long_lines_folded_without_splitting_characters():
    assert ics_escape("a,b;c\\d\ne") == "a\\,b\\;c\\\\d\\ne"
    line = "SUMMARY:" + "é" * 80  # two octets each
    folded = ics_fold(line)
    physical = folded.split("\r\n")
    assert all(len(part.encode()) <= 75 for part in physical)
    assert all(part.startswith(" ") for part in physical[1:])
    assert "".join(part.removeprefix(" ") for part in physical) == line
    assert ics_fold("SHORT:x") == "SHORT:x"


def test_reading_the_feed_notes_when(a, anonymous):
    assert CalendarFeed.objects.get(pk=a.feed.pk).last_read_at is None
    anonymous.get(f"/api/v1/calendar/{a.feed_token}.ics")
    assert CalendarFeed.objects.get(pk=a.feed.pk).last_read_at is not None


def test_a_nurse_creates_a_feed_in_the_admin_and_sees_its_url_once(a, client):
    client.force_login(a.nurse)
    response = client.post(reverse("admin:reporting_calendarfeed_add"), {"label": "tablet"}, follow=True)
    assert response.status_code == 200
    feed = CalendarFeed.objects.get(label="tablet")
    assert feed.user == a.nurse
    shown = [str(m) for m in response.context["messages"]]
    (url,) = re.findall(r"http://testserver/api/v1/calendar/[\w-]+\.ics", " ".join(shown))
    assert client.get(url.removeprefix("http://testserver")).status_code == 200
    # her list shows her feeds only
    page = client.get(reverse("admin:reporting_calendarfeed_changelist")).content.decode()
    assert "tablet" in page


def test_a_feed_is_revoked_from_the_admin(a, client, anonymous):
    client.force_login(a.nurse)
    response = client.post(
        reverse("admin:reporting_calendarfeed_changelist"),
        {"action": "revoke", "_selected_action": [a.feed.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert CalendarFeed.objects.get(pk=a.feed.pk).revoked_at is not None
    assert anonymous.get(f"/api/v1/calendar/{a.feed_token}.ics").status_code == 404
