"""``manage.py procedure_plan FILE``: the §8 procedure planner, JSON in, JSON out, no database.

Like ``recommend``: bad input ends with exit status 2 and one line on stderr naming the field, never a traceback.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser

from anticoag.procedures import ProcedureInputError, facts_from_mapping, procedure_plan
from anticoag.rules import FactsError

from .recommend import _JSON_TYPE_NAMES, _bad_input, _object_without_duplicate_keys
from .recommend import Command as RecommendCommand


class Command(RecommendCommand):
    help = (
        "Print the dated plan for stopping and restarting anticoagulation around a procedure (reference §8). FILE "
        "is a JSON object (agent, procedure_on, bleed_risk, category, months_since_diagnosis or diagnosed_on, "
        "crcl_ml_min, procedure_kind, severe_thrombophilia), or '-' for standard input. Needs no database."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="path to a JSON file with the procedure facts, or '-' for standard input")

    def handle(self, *args: Any, **options: Any) -> None:
        text = self._read(options["file"])
        try:
            data = json.loads(text, object_pairs_hook=_object_without_duplicate_keys)
        except FactsError as err:
            raise _bad_input(str(err)) from err
        except (ValueError, RecursionError) as err:
            raise _bad_input(f"input: invalid JSON: {err}") from err
        if not isinstance(data, dict):
            raise _bad_input(f"input: expected one JSON object of procedure facts, got {_JSON_TYPE_NAMES[type(data)]}")
        try:
            plan = procedure_plan(facts_from_mapping(data))
        except (ProcedureInputError, FactsError) as err:
            raise _bad_input(str(err)) from err
        self.stdout.write(json.dumps(plan.as_dict(), indent=2, sort_keys=True, ensure_ascii=False))
