"""``manage.py inr_advice FILE|-``: JSON in, JSON out, no database; bad input exits 2 with one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

ROOT = Path(__file__).resolve().parents[2]

VALID = {
    "target_low": 2.0,
    "target_high": 3.0,
    "readings": [
        {"drawn_on": "2026-01-15", "inr": 2.5},  # unsorted on purpose
        {"drawn_on": "2026-01-05", "inr": 1.5},
        {"drawn_on": "2026-01-25", "inr": 3.5},
        {"drawn_on": "2026-02-04", "inr": 2.8},
    ],
    "weekly_dose_mg": 35,
}


def run(tmp_path: Path, payload: object) -> str:
    path = tmp_path / "input.json"
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload), encoding="utf-8")
    out = StringIO()
    call_command("inr_advice", str(path), stdout=out)
    return out.getvalue()


def subprocess_env() -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_DEBUG": "1",
        "CELERY_BROKER_URL": "filesystem://",
        "DATABASE_URL": "sqlite:////tmp/unused.sqlite3",
    }


def test_happy_path_prints_the_advice_as_sorted_indented_json(tmp_path):
    # Given the reference's worked example (unsorted) in a file
    # When the command runs
    output = run(tmp_path, VALID)
    # Then it prints the advice, keys sorted, indented by 2
    advice = json.loads(output)
    assert output.startswith('{\n  "alerts"')
    assert list(advice) == sorted(advice)
    assert advice["ttr_percent"] == 42.857
    assert advice["days_in_range"] == 12.857
    assert advice["days_total"] == 30.0
    assert advice["phase"] == "initiation"
    assert advice["next_test_on"] == "2026-02-06"
    assert advice["next_test_latest_on"] == "2026-02-07"
    assert advice["dose_change_percent"] is None
    assert advice["hold_doses"] is None
    assert advice["suggested_weekly_dose_mg"] is None
    assert [a["code"] for a in advice["alerts"]] == ["nomogram_initiation"]
    assert advice["sources"][:2] == ["ROSENDAAL1993", "CHEST2012 practice"]


def test_maintenance_dose_suggestion_through_the_command(tmp_path):
    payload = {
        "target_low": 2.0,
        "target_high": 3.0,
        "readings": [
            {"drawn_on": "2026-01-05", "inr": 2.5},
            {"drawn_on": "2026-01-12", "inr": 2.6},
            {"drawn_on": "2026-01-26", "inr": 4.2},
        ],
        "weekly_dose_mg": 35,
        "extended_interval_allowed": False,
        "bleeding": False,
    }
    advice = json.loads(run(tmp_path, payload))
    assert (advice["dose_change_percent"], advice["hold_doses"]) == (-10, 1)
    assert advice["suggested_weekly_dose_mg"] == 31.5
    assert advice["next_test_on"] == advice["next_test_latest_on"] == "2026-02-02"
    assert advice["next_test_rule"]["verified"] is False


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            {"readings": [*VALID["readings"][:3], {"drawn_on": "2026-02-04", "inr": -1}]},
            "readings[3].inr: -1.0 is outside 0.5-20",
            id="INR -1",
        ),
        pytest.param(
            {"readings": [*VALID["readings"][:3], {"drawn_on": "2026-02-04", "inr": 25.0}]},
            "readings[3].inr: 25.0 is outside 0.5-20",
            id="INR 25",
        ),
        pytest.param(
            {"readings": [{"drawn_on": "2026-02-30", "inr": 2.5}]},
            "readings[0].drawn_on: '2026-02-30' is not a valid date",
            id="impossible date",
        ),
        pytest.param(
            {"readings": [{"drawn_on": "05/01/2026", "inr": 2.5}]},
            "readings[0].drawn_on: '05/01/2026' is not a date YYYY-MM-DD",
            id="malformed date",
        ),
        pytest.param(
            {"readings": [{"drawn_on": "2026-01-05", "inr": True}]},
            "readings[0].inr: expected a number, got boolean",
            id="bool as INR",
        ),
        pytest.param({"target_high": True}, "target_high: expected a number, got boolean", id="bool as target"),
        pytest.param({"weekly_dose_mg": "35"}, "weekly_dose_mg: expected a number, got string", id="string dose"),
        pytest.param({"target_low": 3.0}, "target_low: 3.0 must be below target_high 3.0", id="low = high"),
        pytest.param({"dose_mg": 35}, "dose_mg: unknown field", id="unknown key"),
        pytest.param(
            {"readings": [{"drawn_on": "2026-01-05", "inr": 2.5, "source": "lab"}]},
            "readings[0].source: unknown field",
            id="unknown reading key",
        ),
        pytest.param({"readings": "none"}, "readings: expected an array, got string", id="readings not a list"),
    ],
)
def test_bad_input_raises_command_error_with_status_2_naming_the_field(tmp_path, change, message):
    # Given a request with one bad field
    payload = {**VALID, **change}
    # When the command runs
    with pytest.raises(CommandError) as excinfo:
        run(tmp_path, payload)
    # Then it fails with status 2 and a one-line message that names the field
    assert excinfo.value.returncode == 2
    assert str(excinfo.value).startswith(message)
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "(root): not valid JSON"),
        ("[1, 2]", "(root): expected a JSON object, got array"),
        ('{"target_low": NaN}', "(root): not valid JSON"),
        ('{"target_high": 3.0, "readings": []}', "target_low: required field is missing"),
    ],
)
def test_malformed_json_is_refused(tmp_path, text, message):
    with pytest.raises(CommandError) as excinfo:
        run(tmp_path, text)
    assert excinfo.value.returncode == 2
    assert str(excinfo.value).startswith(message)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(CommandError) as excinfo:
        call_command("inr_advice", str(tmp_path / "absent.json"))
    assert excinfo.value.returncode == 2
    assert str(excinfo.value).startswith("FILE: cannot read")


def test_bad_stdin_exits_2_with_one_line_and_no_traceback():
    # Given an INR of 25 on standard input, and no database configured
    bad = json.dumps({**VALID, "readings": [{"drawn_on": "2026-01-05", "inr": 25}]})
    # When manage.py runs in a fresh process
    result = subprocess.run(
        [sys.executable, "manage.py", "inr_advice", "-"],
        cwd=ROOT,
        input=bad,
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
    )
    # Then it exits 2 with exactly one stderr line naming the field, and nothing on stdout
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == ["CommandError: readings[0].inr: 25.0 is outside 0.5-20"]
    assert result.stdout == ""


def test_stdin_happy_path_in_a_fresh_process():
    result = subprocess.run(
        [sys.executable, "manage.py", "inr_advice", "-"],
        cwd=ROOT,
        input=json.dumps(VALID),
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ttr_percent"] == 42.857
