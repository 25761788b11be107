"""``manage.py recommend FILE``: the rules engine on one episode, JSON in, JSON out, no database.

Bad input ends with exit status 2 and exactly one line on stderr naming the field (``CommandError`` with
``returncode=2``), never a traceback: the command is meant for scripts and for a clinician at a terminal.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from anticoag.rules import FactsError, facts_from_mapping, recommend

_JSON_TYPE_NAMES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
_JSON_TYPE_NAMES[type(None)] = "null"

#: The exit status for every kind of bad input (the conventional "usage error" status).
BAD_INPUT = 2


def _bad_input(message: str) -> CommandError:
    # One line, whatever the underlying error said (e.g. an OSError quoting a path with a newline).
    return CommandError(" ".join(message.split()), returncode=BAD_INPUT)


def _object_without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object hook: a repeated key is an error, not a silent "last one wins" on clinical facts."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise FactsError(key, "given more than once")
        result[key] = value
    return result


class Command(BaseCommand):
    help = (
        "Print the rules engine's recommendation for one CVT episode. FILE is a JSON object of episode facts "
        "(see issue 3), or '-' for standard input. Needs no database."
    )
    # Pure computation: no system checks (they would touch the database configuration) and no models.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="path to a JSON file with the episode facts, or '-' for standard input")

    def handle(self, *args: Any, **options: Any) -> None:
        text = self._read(options["file"])
        try:
            data = json.loads(text, object_pairs_hook=_object_without_duplicate_keys)
        except FactsError as err:
            raise _bad_input(str(err)) from err
        except json.JSONDecodeError as err:
            raise _bad_input(f"input: invalid JSON: {err}") from err
        except (ValueError, RecursionError) as err:
            raise _bad_input(f"input: invalid JSON: {err}") from err
        if not isinstance(data, dict):
            raise _bad_input(f"input: expected one JSON object of episode facts, got {_JSON_TYPE_NAMES[type(data)]}")
        try:
            facts = facts_from_mapping(data)
        except FactsError as err:
            raise _bad_input(str(err)) from err
        self.stdout.write(json.dumps(recommend(facts).as_dict(), indent=2, sort_keys=True))

    def _read(self, file: str) -> str:
        try:
            if file == "-":
                return sys.stdin.read()
            return Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise _bad_input(f"file: cannot read {file!r}: {err}") from err
