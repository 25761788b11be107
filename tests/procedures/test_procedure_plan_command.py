"""``manage.py procedure_plan``: JSON in, JSON out, no database; bad input → exit 2 and one line naming the field."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.anticoag.test_recommend_command import REPO, command_env

LUMBAR_PUNCTURE = {
    "agent": "rivaroxaban",
    "procedure_on": "2027-03-01",
    "procedure_kind": "lumbar_puncture",
    "bleed_risk": "high",
    "diagnosed_on": "2027-01-01",
    "category": "transient",
}


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("procedure_plan", *args, stdout=out)
    return out.getvalue()


def test_prints_the_dated_plan(tmp_path: Path) -> None:
    path = tmp_path / "procedure.json"
    path.write_text(json.dumps(LUMBAR_PUNCTURE), encoding="utf-8")
    result = json.loads(run(str(path)))
    assert result["last_dose_on"] == "2027-02-26"
    assert result["restart_on"] == "2027-03-03"
    assert [w["code"] for w in result["warnings"]] == ["pause_extrapolation", "no_bridging_doac", "recent_cvt"]
    assert [d["date"] for d in result["calendar"]][:2] == ["2027-02-26", "2027-02-27"]


BAD = [
    ('{"agent": "heparin"}', "agent: is required", "missing"),
    ({**LUMBAR_PUNCTURE, "agent": "edoxaban"}, "agent: unknown agent 'edoxaban'", "agent"),
    ({**LUMBAR_PUNCTURE, "bleed_risk": "low"}, "bleed_risk: a lumbar puncture is a high bleed-risk", "lp-low"),
    ({**LUMBAR_PUNCTURE, "procedure_on": "01/03/2027"}, "procedure_on: must be an ISO date", "date"),
    ({**LUMBAR_PUNCTURE, "colour": "red"}, "colour: unknown field", "unknown-field"),
    ({**LUMBAR_PUNCTURE, "months_since_diagnosis": 2}, "diagnosed_on: give diagnosed_on or", "both"),
    ({**LUMBAR_PUNCTURE, "agent": "dabigatran"}, "crcl_ml_min: dabigatran needs", "crcl"),
    ("[1]", "input: expected one JSON object", "array"),
    ("{nope", "input: invalid JSON", "json"),
]


@pytest.mark.parametrize(("body", "message", "case"), BAD, ids=[b[2] for b in BAD])
def test_bad_input_exits_2_naming_the_field(monkeypatch, body, message, case) -> None:
    text = body if isinstance(body, str) else json.dumps(body)
    if case == "missing":
        text = '{"procedure_on": "2027-03-01"}'
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    with pytest.raises(CommandError) as caught:
        run("-")
    assert caught.value.returncode == 2
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_real_process_needs_no_database(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(REPO / ".venv/bin/python"), "manage.py", "procedure_plan", "-"],
        input=json.dumps({**LUMBAR_PUNCTURE, "bleed_risk": "low"}),
        capture_output=True, text=True, cwd=REPO, env=command_env(tmp_path), timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines()[-1].endswith("a lumbar puncture is a high bleed-risk procedure (§8)")
    assert "Traceback" not in done.stderr
    done = subprocess.run(
        [str(REPO / ".venv/bin/python"), "manage.py", "procedure_plan", "-"],
        input=json.dumps(LUMBAR_PUNCTURE), capture_output=True, text=True, cwd=REPO, env=command_env(tmp_path),
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["restart_latest_on"] == "2027-03-04"
    assert not (tmp_path / "unused.sqlite3").exists()
