"""``python manage.py sweep``: run the reminder sweep once, as beat would, and print its counts."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from scheduling.outbox import sweep


class Command(BaseCommand):
    help = (
        "Run the reminder sweep once: reclaim sends whose lease expired, materialise due digests and "
        "escalations, claim due reminders and enqueue their send tasks."
    )

    def handle(self, *args, **options) -> None:
        counts = sweep()
        self.stdout.write(" ".join(f"{name}={value}" for name, value in counts.items()))
