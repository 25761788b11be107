"""``manage.py check --deploy``: research exports need their own pseudonym key in production."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Tags, Warning, register

#: Shorter keys are guessable enough to undo the pseudonyms of a known list of MRNs.
PSEUDONYM_KEY_MIN_LENGTH = 32


@register(Tags.security, deploy=True)
def pseudonym_key_check(app_configs, **kwargs) -> list[Warning]:
    key = getattr(settings, "ANTICOAG_PSEUDONYM_KEY", "")
    if not key:
        return [
            Warning(
                "ANTICOAG_PSEUDONYM_KEY is not set: research exports answer 503 until it is.",
                hint="Set it to a random secret of at least 32 characters, and keep it for the life of a study.",
                id="reporting.W001",
            )
        ]
    if len(key) < PSEUDONYM_KEY_MIN_LENGTH:
        return [
            Warning(
                f"ANTICOAG_PSEUDONYM_KEY is shorter than {PSEUDONYM_KEY_MIN_LENGTH} characters.",
                id="reporting.W002",
            )
        ]
    return []
