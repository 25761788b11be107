"""Who looked at which patient record: an auditlog ACCESS entry per view of a patient's data.

Changes are logged by django-auditlog's registry (each app's ``ready``); reading is not, so every page and API
view that shows one patient's record calls :func:`record_access`. The entry names the user explicitly: an API
token is only resolved inside the view, after the audit middleware ran, and nesting auditlog's ``set_actor``
inside the middleware's would unhook the middleware's actor for the rest of the request.
"""

from __future__ import annotations

from auditlog.models import LogEntry
from django.db.models import Model


def record_access(*, instance: Model, user, remote_addr: str | None = None) -> LogEntry | None:
    """Log that ``user`` viewed ``instance`` (auditlog ``LogEntry`` with action ACCESS)."""
    if instance.pk is None:
        return None
    actor = user if user is not None and user.is_authenticated else None
    return LogEntry.objects.log_create(
        instance,
        force_log=True,
        action=LogEntry.Action.ACCESS,
        changes=None,
        actor=actor,
        actor_email=getattr(actor, "email", None) or None,
        remote_addr=remote_addr or None,
        serialized_data=None,
    )
