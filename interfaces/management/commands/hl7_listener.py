"""``manage.py hl7_listener [--host H] [--port N] [--clinic NAME]``: the MLLP listener for laboratory results."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from interfaces.listener import serve


class Command(BaseCommand):
    help = "Listen for HL7 v2 ORU^R01 laboratory results over MLLP (stops on Ctrl-C or SIGTERM)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=None, help="Address to bind (default: the HL7_HOST setting).")
        parser.add_argument("--port", type=int, default=None, help="TCP port (default: the HL7_PORT setting).")
        parser.add_argument(
            "--clinic",
            default=None,
            help="Name of the one clinic this listener serves: a PID-3 without an assigning authority is its MRN "
            "(default: the HL7_CLINIC setting; empty: every clinic, by assigning authority).",
        )

    def handle(self, *args, host: str | None, port: int | None, clinic: str | None, **options) -> None:
        host = host or settings.HL7_HOST
        port = settings.HL7_PORT if port is None else port
        clinic = clinic if clinic is not None else (settings.HL7_CLINIC or None)

        def ready(bound: int) -> None:
            self.stdout.write(f"HL7 listener (MLLP) on {host}:{bound}. Ctrl-C stops it.")
            self.stdout.flush()

        serve(host, port, clinic_name=clinic, ready=ready)
