"""Re-planning: recompute every open plan with the current rules (a new ``RULES_VERSION``, a clinic's new DOAC
formulary). Idempotent: a second run changes nothing. A confirmed plan whose proposal changes shows "review
needed" with the diff; the clinician's decision is kept (``anticoag.services.plan_recompute``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from patients.models import Clinic, CvtEpisode

from . import rules
from .models import Plan
from .services import CHANGED, REVIEW_NEEDED, UNCHANGED, plan_recompute

logger = logging.getLogger(__name__)

#: Episodes recomputed per transaction: a failure rolls back one batch, and locks are held briefly.
BATCH_SIZE = 200
REFUSED = "refused"


def open_episodes(*, clinic: Clinic | None = None) -> QuerySet[CvtEpisode]:
    """Episodes whose plan is open: of active patients (a plan is recomputed whatever its status, so a
    confirmed one can ask for review). Episodes without a plan yet get one."""
    episodes = CvtEpisode.objects.filter(patient__active=True)
    if clinic is not None:
        episodes = episodes.filter(patient__clinic=clinic)
    return episodes.order_by("pk")


def replan_plans(
    *,
    clinic: Clinic | None = None,
    batch_size: int = BATCH_SIZE,
    report: Callable[[str, Plan | None, CvtEpisode, Any], None] | None = None,
) -> dict[str, int]:
    """Recompute the plans of every open episode in batches; return counts per outcome.

    Outcomes: ``unchanged``, ``changed``, ``review_needed`` (see :func:`anticoag.services.plan_recompute`), and
    ``refused`` when an episode's recorded facts contradict each other (the rules refuse them; the plan is left
    as it was and the episode is named so someone corrects it). ``report(outcome, plan, episode, detail)`` is
    called for every review and refusal.
    """
    counts = {UNCHANGED: 0, CHANGED: 0, REVIEW_NEEDED: 0, REFUSED: 0}
    ids = list(open_episodes(clinic=clinic).values_list("pk", flat=True))
    for start in range(0, len(ids), batch_size):
        batch = ids[start : start + batch_size]
        with transaction.atomic():
            episodes = (
                CvtEpisode.objects.filter(pk__in=batch)
                .select_related("patient__clinic")
                .prefetch_related("risk_factors", "patient__medications")
                .order_by("pk")
            )
            for episode in episodes:
                try:
                    with transaction.atomic():
                        plan, outcome = plan_recompute(episode=episode)
                except rules.FactsError as err:
                    counts[REFUSED] += 1
                    logger.warning("replan: episode %s refused: %s", episode.pk, err)
                    if report:
                        report(REFUSED, None, episode, str(err))
                    continue
                counts[outcome] += 1
                if report and outcome == REVIEW_NEEDED:
                    report(outcome, plan, episode, plan.changes)
    return counts


def replan_outdated(**_: object) -> dict[str, int] | None:
    """post_migrate: recompute once after an upgrade, when a plan was computed by another ``RULES_VERSION``."""
    if not Plan.objects.exclude(rules_version=rules.RULES_VERSION).exists():
        return None
    counts = replan_plans()
    logger.info("Plans recomputed for rules %s: %s", rules.RULES_VERSION, counts)
    return counts
