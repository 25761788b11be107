"""``manage.py inr_advice FILE`` (or ``-`` for stdin): INR advice as JSON, without a database.

Input and output are described in :func:`anticoag.monitoring.advice_request_from_mapping` and
:meth:`anticoag.monitoring.InrAdvice.as_dict`. Bad input exits with status 2 and one line on stderr naming
the field (``CommandError: readings[3].inr: 25.0 is outside 0.5-20``), never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from anticoag.monitoring import MonitoringInputError, advice_request_from_mapping

#: Exit status for bad input (the convention of argparse and of the issue).
BAD_INPUT = 2


def _one_line(text: str) -> str:
    return " ".join(text.split())


class Command(BaseCommand):
    help = "Compute TTR, phase, next INR test and dose suggestion from a JSON file (or - for stdin). No database."

    # Pure computation: no system checks, so it runs without a reachable database or migrations.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", metavar="FILE", help="JSON input file, or - to read standard input")

    def handle(self, *args: Any, **options: Any) -> None:
        text = self._read(options["file"])
        try:
            data = json.loads(text, parse_constant=self._refuse_constant)
        except ValueError as exc:
            # json.JSONDecodeError is a ValueError; so is our NaN/Infinity refusal below.
            raise CommandError(_one_line(f"(root): not valid JSON: {exc}"), returncode=BAD_INPUT) from exc
        try:
            request = advice_request_from_mapping(data)
            advice = request.advise()
        except MonitoringInputError as exc:
            raise CommandError(str(exc), returncode=BAD_INPUT) from exc
        self.stdout.write(json.dumps(advice.as_dict(), indent=2, sort_keys=True, ensure_ascii=False))

    @staticmethod
    def _refuse_constant(name: str) -> Any:
        # JSON has no NaN/Infinity; Python's json module accepts them unless told otherwise.
        raise ValueError(f"{name} is not a JSON number")

    @staticmethod
    def _read(file: str) -> str:
        try:
            if file == "-":
                return sys.stdin.read()
            return Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise CommandError(_one_line(f"FILE: cannot read {file}: {reason}"), returncode=BAD_INPUT) from exc
