"""Rendering of reminder e-mails: subject, plain text and HTML from templates, and their Message-ID.

Privacy (issue 5): the minimum necessary patient data. Per item only the MRN, the item kind, the due date
and a link into the admin by opaque id. Never a name, a date of birth, a diagnosis word, an INR value, the
clinic's name (it may name the diagnosis), or anything about the patient in the subject.

Rendering is deterministic for a given row: a duplicate sent after a crash carries the same Message-ID and
the same content.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from email.utils import parseaddr
from urllib.parse import urlsplit

from django.conf import settings
from django.template.loader import render_to_string
from django.urls import reverse

from . import calendar
from .models import FollowUp, FollowUpStatus, Reminder, ReminderKind

#: What an urgent alert says happened, by ``Reminder.reason``. Words only, never a value.
URGENT_REASONS = {
    # Both INR alert levels (reference §4: above 9.0 or bleeding; 5.0-9.0) read the same: the reader opens
    # the patient for the value and the advice.
    "inr_critical": "critical INR result",
    "inr_high": "critical INR result",
    "deterioration": "deterioration recorded, urgent imaging due",
    "renal_doac_contraindicated": "renal function result needs review",
    "major_bleeding": "major bleeding recorded, plan review needed",
    "symptomatic_ich": "symptomatic intracranial hemorrhage recorded, plan review needed",
}
URGENT_REASON_DEFAULT = "needs urgent attention"

SECTION_TITLES = {"overdue": "Overdue", "today": "Due today", "week": "Due in the next 7 days"}


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def _absolute(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


def follow_up_url(follow_up_id: int) -> str:
    return _absolute(reverse("admin:scheduling_followup_change", args=[follow_up_id]))


def patient_url(patient_id: int) -> str:
    return _absolute(reverse("admin:patients_patient_change", args=[patient_id]))


def from_address() -> str:
    configured = getattr(settings, "ANTICOAG_REMINDER_FROM_EMAIL", "")
    if configured:
        return configured
    address = parseaddr(settings.DEFAULT_FROM_EMAIL)[1] or "no-reply@clinic.invalid"
    return f"Clinic reminders <{address}>"


def message_id_domain() -> str:
    return getattr(settings, "ANTICOAG_MESSAGE_ID_DOMAIN", "") or urlsplit(settings.SITE_URL).hostname or "localhost"


def message_id_for(reminder: Reminder) -> str:
    """``<reminder-{id}-{hash of the idempotency key}@{domain}>``: the same for every attempt of a row."""
    digest = hashlib.sha256(reminder.idempotency_key.encode()).hexdigest()[:16]
    return f"<reminder-{reminder.pk}-{digest}@{message_id_domain()}>"


def digest_date(reminder: Reminder) -> date:
    """The local date a digest is for: the last part of its key ``digest:{clinic}:{user}:{date}``."""
    return date.fromisoformat(reminder.idempotency_key.rsplit(":", 1)[1])


def escalation_date_of(key: str) -> date | None:
    """The local date of an escalation key ``escalation:{clinic}:{date}:{address}`` (``None`` for another shape)."""
    parts = key.split(":")
    try:
        return date.fromisoformat(parts[2]) if len(parts) > 3 else None
    except ValueError:  # a row of the former per-item shape
        return None


def _item(follow_up: FollowUp) -> dict:
    return {
        "mrn": follow_up.patient.mrn,
        "kind": follow_up.get_kind_display(),
        "due_on": follow_up.due_on,
        "url": follow_up_url(follow_up.pk),
        "open": follow_up.status == FollowUpStatus.SCHEDULED,
    }


def _context(reminder: Reminder) -> dict:
    follow_ups = list(reminder.follow_ups.select_related("patient").order_by("due_on", "patient__mrn", "pk"))
    context: dict = {"reminder_kind": reminder.get_kind_display()}
    if reminder.kind == ReminderKind.DIGEST:
        window = calendar.digest_window(digest_date(reminder))
        sections = {key: [] for key in SECTION_TITLES}
        for follow_up in follow_ups:
            section = window.section(follow_up.due_on)
            if section:
                sections[section].append(_item(follow_up))
        context |= {
            "day": window.today,
            "sections": [
                {"key": key, "title": title, "items": sections[key]}
                for key, title in SECTION_TITLES.items()
                if sections[key]
            ],
            "count": sum(len(items) for items in sections.values()),
        }
    elif reminder.kind == ReminderKind.ESCALATION:
        day = escalation_date_of(reminder.idempotency_key)
        items = [_item(follow_up) for follow_up in follow_ups]
        if day is not None:
            for item in items:
                item["overdue_days"] = (day - item["due_on"]).days
        context |= {
            "day": day,
            "items": items,
            "count": len(items),
            "after_days": settings.ANTICOAG_ESCALATE_AFTER_DAYS,
            "reason": reminder.reason,
        }
    else:
        patient = None
        if reminder.inr_reading_id:
            patient = reminder.inr_reading.patient
        elif follow_ups:
            patient = follow_ups[0].patient
        context |= {
            "what": URGENT_REASONS.get(reminder.reason, URGENT_REASON_DEFAULT),
            "mrn": patient.mrn if patient else None,
            "patient_url": patient_url(patient.pk) if patient else None,
            "items": [_item(follow_up) for follow_up in follow_ups],
        }
    return context


def reminder_render(*, reminder: Reminder) -> RenderedEmail:
    """Subject, text and HTML of a reminder, from ``scheduling/email/{kind}[_subject].{txt,html}``."""
    context = _context(reminder)
    base = f"scheduling/email/{reminder.kind}"
    subject = " ".join(render_to_string(f"{base}_subject.txt", context).split())
    return RenderedEmail(
        subject=subject,
        text=render_to_string(f"{base}.txt", context),
        html=render_to_string(f"{base}.html", context),
    )
