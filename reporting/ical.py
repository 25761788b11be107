"""A nurse's open follow-ups as an iCalendar feed (RFC 5545) behind a secret, revocable URL.

The feed carries only the MRN and the kind of each item — no name, no diagnosis — because calendar apps sync
to phones and third-party servers. It is written by hand: a handful of properties, CRLF line ends, lines
folded at 75 octets (never inside a UTF-8 character), text escaped.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from patients.scoping import scope_to_user_clinics
from scheduling.models import FollowUp, FollowUpKind, FollowUpStatus

from .models import CalendarFeed

#: The permission a feed's owner must still hold for the feed to answer.
FEED_PERMISSION = "scheduling.view_followup"
#: Nothing in the calendar names the condition, not even its product id or name: phones sync it to third parties.
PRODID = "-//Anticoagulation clinic//Follow-ups//EN"


# ---------------------------------------------------------------------------------------------------------------
# Feeds
# ---------------------------------------------------------------------------------------------------------------


def calendar_token_hash(token: str) -> str:
    """SHA-256 of the secret. The token is 256 random bits: a fast hash suffices and no salt is needed."""
    return hashlib.sha256(token.encode()).hexdigest()


def calendar_feed_create(*, user, label: str = "") -> tuple[CalendarFeed, str]:
    """A new feed for ``user``, with its secret token. Only the hash is stored: show the token now or never."""
    token = secrets.token_urlsafe(32)
    feed = CalendarFeed.objects.create(user=user, label=label.strip(), token_hash=calendar_token_hash(token))
    return feed, token


def calendar_feed_revoke(*, feed: CalendarFeed) -> CalendarFeed:
    """Revoke the feed (idempotent): its URL answers 404 from now on; the row stays, for the record."""
    if feed.revoked_at is None:
        feed.revoked_at = timezone.now()
        feed.save(update_fields=["revoked_at"])
    return feed


def calendar_feed_url(token: str) -> str:
    return f"{settings.SITE_URL}/api/v1/calendar/{token}.ics"


def calendar_feed_for_token(*, token: str) -> CalendarFeed | None:
    """The active feed of this token, if its owner may still see follow-ups; else None (→ 404)."""
    if not token or len(token) > 200:
        return None
    feed = CalendarFeed.objects.active().select_related("user").filter(token_hash=calendar_token_hash(token)).first()
    if feed is None or not feed.user.is_active or not feed.user.has_perm(FEED_PERMISSION):
        return None
    return feed


def nurse_open_follow_ups(*, user) -> QuerySet[FollowUp]:
    """Scheduled items of the active patients whose primary nurse is ``user``, in her clinics only."""
    items = FollowUp.objects.filter(
        status=FollowUpStatus.SCHEDULED, patient__primary_nurse=user, patient__active=True
    ).order_by("due_on", "pk")
    return scope_to_user_clinics(items, user, "patient__clinic")


# ---------------------------------------------------------------------------------------------------------------
# iCalendar
# ---------------------------------------------------------------------------------------------------------------


def ics_escape(text: str) -> str:
    """RFC 5545 §3.3.11 TEXT: backslash, semicolon, comma and newlines escaped."""
    return (
        text.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def ics_fold(line: str) -> str:
    """RFC 5545 §3.1: lines of at most 75 octets, continued after CRLF + one space, never splitting a
    UTF-8 character."""
    encoded = line.encode()
    if len(encoded) <= 75:
        return line
    parts: list[str] = []
    current, size, limit = [], 0, 75
    for char in line:
        width = len(char.encode())
        if size + width > limit:
            parts.append("".join(current))
            current, size, limit = [], 0, 74  # continuation lines start with a space
        current.append(char)
        size += width
    parts.append("".join(current))
    return "\r\n ".join(parts)


def _ics_date(day: date) -> str:
    return day.strftime("%Y%m%d")


def _ics_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _uid_domain() -> str:
    return urlsplit(settings.SITE_URL).hostname or "clinic.invalid"


def ics_lines(rows: Iterable[tuple[int, date, date | None, str, datetime, str]], *, name: str) -> Iterator[str]:
    """The calendar's unfolded lines. ``rows``: (id, due_on, window_end_on, kind, updated_at, mrn)."""
    labels = dict(FollowUpKind.choices)
    domain = _uid_domain()
    yield "BEGIN:VCALENDAR"
    yield "VERSION:2.0"
    yield f"PRODID:{PRODID}"
    yield "CALSCALE:GREGORIAN"
    yield "METHOD:PUBLISH"
    yield f"X-WR-CALNAME:{ics_escape(name)}"
    yield "REFRESH-INTERVAL;VALUE=DURATION:PT1H"
    for pk, due_on, window_end_on, kind, updated_at, mrn in rows:
        # One all-day event on the due date (a months-long window would cover the calendar); the window's
        # end, if any, in the description.
        yield "BEGIN:VEVENT"
        yield f"UID:follow-up-{pk}@{domain}"
        yield f"DTSTAMP:{_ics_utc(updated_at)}"
        yield f"LAST-MODIFIED:{_ics_utc(updated_at)}"
        yield f"DTSTART;VALUE=DATE:{_ics_date(due_on)}"
        yield f"DTEND;VALUE=DATE:{_ics_date(due_on + timedelta(days=1))}"  # exclusive end: one day
        yield f"SUMMARY:{ics_escape(f'MRN {mrn}: {labels.get(kind, kind)}')}"
        if window_end_on and window_end_on > due_on:
            yield f"DESCRIPTION:{ics_escape(f'Due {due_on.isoformat()}, at the latest {window_end_on.isoformat()}.')}"
        yield "TRANSP:TRANSPARENT"
        yield "END:VEVENT"
    yield "END:VCALENDAR"


def nurse_calendar_ics(*, feed: CalendarFeed) -> str:
    """The feed's calendar: the owner's open follow-ups as all-day events, MRN and kind only."""
    rows = nurse_open_follow_ups(user=feed.user).values_list(
        "pk", "due_on", "window_end_on", "kind", "updated_at", "patient__mrn"
    )
    lines = ics_lines(rows.iterator(chunk_size=1000), name="Clinic follow-ups")
    return "".join(ics_fold(line) + "\r\n" for line in lines)


def calendar_feed_read(*, feed: CalendarFeed) -> None:
    """Note when the feed was last read (at most once a minute: calendar apps poll)."""
    now = timezone.now()
    if feed.last_read_at is None or now - feed.last_read_at > timedelta(minutes=1):
        CalendarFeed.objects.filter(pk=feed.pk).update(last_read_at=now)
