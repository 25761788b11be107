"""``manage.py replan``: recompute every open plan with the current rules, in batches; print the counts.

Idempotent (a second run reports every plan unchanged). A confirmed plan whose proposal changed is listed with
what changed; it shows "review needed" and keeps the clinician's decision.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from anticoag import rules
from anticoag.replan import BATCH_SIZE, REFUSED, replan_plans
from anticoag.services import REVIEW_NEEDED
from patients.models import Clinic


class Command(BaseCommand):
    help = "Recompute every open plan with the current rules (RULES_VERSION); print unchanged / changed / review."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--clinic", type=int, help="only this clinic (id)")
        parser.add_argument(
            "--batch-size", type=int, default=BATCH_SIZE, help=f"episodes per transaction ({BATCH_SIZE})"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        clinic = None
        if options["clinic"] is not None:
            clinic = Clinic.objects.filter(pk=options["clinic"]).first()
            if clinic is None:
                raise CommandError(f"clinic: no clinic with id {options['clinic']}", returncode=2)
        if options["batch_size"] < 1:
            raise CommandError("batch-size: must be 1 or more", returncode=2)

        def report(outcome: str, plan, episode, detail) -> None:
            # MRN and ids only: this output may end up in logs.
            if outcome == REVIEW_NEEDED:
                self.stdout.write(f"review needed: plan {plan.pk} (MRN {episode.patient.mrn}): {json.dumps(detail)}")
            elif outcome == REFUSED:
                self.stdout.write(f"refused: episode {episode.pk} (MRN {episode.patient.mrn}): {detail}")

        counts = replan_plans(clinic=clinic, batch_size=options["batch_size"], report=report)
        line = (
            f"rules {rules.RULES_VERSION}: {counts['unchanged']} unchanged, {counts['changed']} changed, "
            f"{counts[REVIEW_NEEDED]} now need review"
        )
        if counts[REFUSED]:
            line += f", {counts[REFUSED]} refused (contradictory facts)"
        self.stdout.write(line)
