"""``python manage.py outbox_status``: the reminder outbox's figures for operators; exit status 1 when degraded
(cron or a container health check can use it)."""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand

from scheduling.outbox_status import outbox_counters, outbox_figures


class Command(BaseCommand):
    help = (
        "Print the reminder outbox's figures (pending, oldest pending age, urgent pending, failed) and the "
        "running totals; exit with status 1 when the outbox is degraded (past a threshold)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="Print one JSON object instead of lines.")

    def handle(self, *args, **options) -> None:
        figures = outbox_figures()
        counters = outbox_counters()
        if options["json"]:
            body = figures.as_dict() | {"totals": {f"{kind}.{event}": n for (kind, event), n in counters.items()}}
            self.stdout.write(json.dumps(body, indent=2, default=str))
        else:
            self.stdout.write(f"status: {figures.status}")
            for name, value in figures.as_dict().items():
                if name not in ("status", "thresholds", "problems"):
                    self.stdout.write(f"{name}: {value}")
            for (kind, event), total in counters.items():
                self.stdout.write(f"total {kind} {event}: {total}")
            for problem in figures.problems:
                self.stderr.write(f"degraded: {problem}")
        if figures.degraded:
            sys.exit(1)
