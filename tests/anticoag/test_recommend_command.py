"""``manage.py recommend``: JSON in, JSON out, no database; bad input → exit 2 and one line."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

REPO = Path(__file__).resolve().parents[2]

#: Seed 002: 60-year-old man, CVT secondary to intracranial hypotension, subdural collections, deterioration.
SEED_002 = {
    "diagnosed_on": "2025-03-10",
    "age": 60,
    "sex": "male",
    "weight_kg": 70,
    "serum_creatinine_umol_l": 88.4,
    "risk_factors": ["intracranial_hypotension"],
    "subdural_hematoma": True,
    "deterioration": True,
}


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("recommend", *args, stdout=out)
    return out.getvalue()


def test_recommend_reads_a_file_and_prints_sorted_indented_json(tmp_path: Path) -> None:
    # Given the seed 002 facts in a file (creatinine 88.4 µmol/L = 1.0 mg/dL)
    path = tmp_path / "episode.json"
    path.write_text(json.dumps(SEED_002), encoding="utf-8")
    # When the command runs (no database: pytest-django blocks any access in this unmarked test)
    text = run(str(path))
    # Then it prints the recommendation as JSON, indent 2, keys sorted
    result = json.loads(text)
    assert text.startswith('{\n  "acute_phase": {')
    assert result["category"] == "transient"
    assert result["creatinine_clearance_ml_min"] == 77.8
    assert [o["agent"] for o in result["oral_options"]] == ["warfarin", "dabigatran", "rivaroxaban", "apixaban"]
    assert [w["code"] for w in result["warnings"]] == ["subdural_caution", "intracranial_hypotension", "deterioration"]
    assert result["follow_ups"][0] == {
        "kind": "venous_imaging",
        "due_on": "2025-06-10",
        "window_end_on": "2025-09-10",
        "source": "AHA2011 (IIa-C); CSBP2024 §3.2; SEED002",
    }


def test_recommend_reads_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"diagnosed_on": "2025-03-10", "prior_cvt": true}'))
    assert json.loads(run("-"))["category"] == "recurrent"


BAD = [
    pytest.param("{not json", "input: invalid JSON", id="invalid-json"),
    pytest.param("", "input: invalid JSON", id="empty"),
    pytest.param("[1, 2]", "input: expected one JSON object of episode facts, got an array", id="array"),
    pytest.param('"2025-03-10"', "input: expected one JSON object", id="string"),
    pytest.param('{"diagnosed_on": "2025-03-10", "risk_factors": ["foo"]}',
                 "risk_factors: unknown code 'foo'; allowed: infection, head_trauma,", id="unknown-code"),
    pytest.param('{"diagnosed_on": "10/03/2025"}', "diagnosed_on: must be an ISO date (YYYY-MM-DD)", id="bad-date"),
    pytest.param('{"diagnosed_on": "2025-03-10", "age": true}', "age: must be a number", id="bool-as-number"),
    pytest.param('{"diagnosed_on": "2025-03-10", "hemorrhage": "yes"}', "hemorrhage: must be true or false", id="string-as-bool"),
    pytest.param('{"diagnosed_on": "2025-03-10", "weight_kg": NaN}', "weight_kg: must be between", id="nan"),
    pytest.param('{"diagnosed_on": "2025-03-10", "age": 50, "age": 60}', "age: given more than once", id="duplicate-key"),
    pytest.param('{"diagnosed_on": "2025-03-10", "colour": "red"}', "colour: unknown field; allowed: diagnosed_on,", id="unknown-key"),
    pytest.param("{}", "diagnosed_on: is required", id="missing-date"),
]  # fmt: skip


@pytest.mark.parametrize(("stdin", "message"), BAD)
def test_bad_input_is_a_command_error_with_exit_status_2(
    monkeypatch: pytest.MonkeyPatch, stdin: str, message: str
) -> None:
    # Given bad facts on standard input
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    # When the command runs
    with pytest.raises(CommandError) as caught:
        run("-")
    # Then it stops with status 2 and a one-line message naming the field
    assert caught.value.returncode == 2
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_unreadable_file_is_a_command_error_with_exit_status_2(tmp_path: Path) -> None:
    with pytest.raises(CommandError) as caught:
        run(str(tmp_path / "missing.json"))
    assert caught.value.returncode == 2
    assert str(caught.value).startswith("file: cannot read")


def test_non_utf8_file_is_a_command_error_with_exit_status_2(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes('{"diagnosed_on": "2025-03-10", "sex": "männlich"}'.encode("latin-1"))
    with pytest.raises(CommandError) as caught:
        run(str(path))
    assert caught.value.returncode == 2
    assert str(caught.value).startswith("file: cannot read")


def command_env(tmp_path: Path) -> dict[str, Any]:
    # Embedded settings; the SQLite path is never created because the command does not touch a database.
    env = dict(os.environ)
    env.update(
        DJANGO_DEBUG="1",
        CELERY_BROKER_URL="filesystem://",
        DATABASE_URL=f"sqlite:///{tmp_path / 'unused.sqlite3'}",
    )
    return env


def test_process_exits_2_with_one_line_on_stderr_and_no_traceback(tmp_path: Path) -> None:
    # Given a real process reading bad facts from standard input
    done = subprocess.run(
        [str(REPO / ".venv/bin/python"), "manage.py", "recommend", "-"],
        input='{"diagnosed_on": "2025-03-10", "risk_factors": ["infection", "flu"]}',
        capture_output=True,
        text=True,
        cwd=REPO,
        env=command_env(tmp_path),
        timeout=120,
    )
    # Then exit status 2, nothing on stdout, one line on stderr naming the field and the allowed values
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "risk_factors: unknown code 'flu'; allowed: infection, head_trauma" in lines[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "unused.sqlite3").exists()


def test_process_prints_the_recommendation_without_a_database(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(REPO / ".venv/bin/python"), "manage.py", "recommend", "-"],
        input=json.dumps(SEED_002),
        capture_output=True,
        text=True,
        cwd=REPO,
        env=command_env(tmp_path),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["duration"]["min_months"] == 3
    assert not (tmp_path / "unused.sqlite3").exists()
