"""Exports: the rows and columns as documented, the list's filters, the research variant's pseudonyms."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
from datetime import date, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from anticoag.models import InrReading
from reporting.exports import DATASETS, age_band, iso_time
from reporting.models import ExportLog
from tests.api.conftest import client_for

pytestmark = pytest.mark.django_db


def rows_csv(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    text = b"".join(response.streaming_content).decode()
    assert text.endswith("\r\n")
    return list(csv.DictReader(io.StringIO(text)))


def rows_ndjson(response) -> list[dict]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/x-ndjson; charset=utf-8"
    return [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]


@pytest.mark.parametrize("dataset", list(DATASETS))
@pytest.mark.parametrize("research", [False, True])
def test_both_formats_carry_the_documented_columns(a, pseudonym_key, dataset, research):
    client = client_for(a.reporter)
    prefix = "research/" if research else ""
    columns = [column.name for column in DATASETS[dataset].columns_for(pseudonymised=research)]
    as_csv = rows_csv(client.get(f"/api/v1/exports/{prefix}{dataset}.csv"))
    as_ndjson = rows_ndjson(client.get(f"/api/v1/exports/{prefix}{dataset}.ndjson"))
    assert as_csv and len(as_csv) == len(as_ndjson)
    assert list(as_csv[0]) == columns
    assert list(as_ndjson[0]) == columns


def test_an_inr_export_has_exact_values_in_id_order(a):
    rows = rows_ndjson(client_for(a.reporter).get("/api/v1/exports/inr-readings.ndjson"))
    assert [row["id"] for row in rows] == sorted(reading.pk for reading in a.readings)
    assert [row["value"] for row in rows] == ["1.80", "2.40"]
    assert rows[0]["mrn"] == "MRN-A" and rows[0]["bleeding"] is False
    # in the clinic's zone, with its offset, and the file names the zone
    zone = ZoneInfo(rows[0]["time_zone"])
    assert rows[0]["drawn_at"] == iso_time(a.readings[0].drawn_at.astimezone(zone))


def test_the_list_filters_apply_to_exports(a):
    client = client_for(a.reporter)
    since = (timezone.now() - timedelta(days=5)).isoformat()
    assert len(rows_csv(client.get("/api/v1/exports/inr-readings.csv", {"drawn_from": since}))) == 1
    assert len(rows_csv(client.get("/api/v1/exports/inr-readings.csv", {"drawn_to": since}))) == 1
    assert rows_csv(client.get("/api/v1/exports/inr-readings.csv", {"bleeding": "true"})) == []
    scheduled = rows_csv(client.get("/api/v1/exports/follow-ups.csv", {"status": "scheduled"}))
    assert scheduled and {row["status"] for row in scheduled} == {"scheduled"}
    today = timezone.localdate()
    episodes = client.get("/api/v1/exports/episodes.csv", {"diagnosed_from": (today - timedelta(days=30)).isoformat()})
    assert len(rows_csv(episodes)) == 1


def test_episode_exports_list_the_risk_factors(a):
    from tests.factories import RiskFactorFactory

    RiskFactorFactory(episode=a.episode, code="infection")
    RiskFactorFactory(episode=a.episode, code="antiphospholipid_syndrome")
    client = client_for(a.reporter)
    assert (
        rows_csv(client.get("/api/v1/exports/episodes.csv"))[0]["risk_factors"] == "antiphospholipid_syndrome;infection"
    )
    assert rows_ndjson(client.get("/api/v1/exports/episodes.ndjson"))[0]["risk_factors"] == [
        "antiphospholipid_syndrome",
        "infection",
    ]


def test_plan_exports_carry_the_current_decision(a):
    client = client_for(a.clinician)
    client.post(f"/api/v1/plans/{a.plan.pk}/confirm/", {"agent": "dabigatran"}, format="json")
    row = rows_ndjson(client.get("/api/v1/exports/plans.ndjson"))[0]
    assert row["agent"] == "dabigatran" and row["status"] == "confirmed"
    assert row["category"] == a.plan.proposal["category"]
    assert row["decided_by_id"] == a.clinician.pk


def test_free_text_cannot_become_a_spreadsheet_formula_in_csv(a):
    InrReading.objects.create(
        patient=a.patient, drawn_at=timezone.now() - timedelta(hours=1), value=Decimal("2.0"), note="=HYPERLINK(1)"
    )
    notes = [row["note"] for row in rows_csv(client_for(a.reporter).get("/api/v1/exports/inr-readings.csv"))]
    assert "'=HYPERLINK(1)" in notes
    # NDJSON keeps the text as it is
    notes = [row["note"] for row in rows_ndjson(client_for(a.reporter).get("/api/v1/exports/inr-readings.ndjson"))]
    assert "=HYPERLINK(1)" in notes


# --- research variant ----------------------------------------------------------------------------------------


def expected_key(key: str, clinic_id: int, mrn: str) -> str:
    return hmac.new(key.encode(), f"{clinic_id}:{mrn.casefold()}".encode(), hashlib.sha256).hexdigest()


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_research_exports_hold_no_names_mrn_birth_date_ids_or_notes(a, pseudonym_key, dataset):
    response = client_for(a.reporter).get(f"/api/v1/exports/research/{dataset}.ndjson")
    text = b"".join(response.streaming_content).decode()
    for secret in ("MRN-A", "FamilyA", "GivenA", "1980-05-17", "secret note A"):
        assert secret not in text
    row = json.loads(text.splitlines()[0])
    assert not {"mrn", "family_name", "given_name", "date_of_birth", "patient_id", "notes", "note"} & set(row)
    assert row["patient_key"] == expected_key(pseudonym_key, a.clinic.pk, "MRN-A")


def test_the_patient_key_is_stable_across_exports_and_data_sets_and_keyed(a, b, pseudonym_key, settings):
    client = client_for(a.reporter)
    first = rows_csv(client.get("/api/v1/exports/research/patients.csv"))[0]["patient_key"]
    again = rows_csv(client.get("/api/v1/exports/research/patients.csv"))[0]["patient_key"]
    inr = {row["patient_key"] for row in rows_csv(client.get("/api/v1/exports/research/inr-readings.csv"))}
    assert first == again and inr == {first}
    # the same MRN (in any case) in another clinic is another person, with another key
    from tests.factories import PatientFactory

    PatientFactory(clinic=b.clinic, mrn="mrn-a")
    theirs = {
        row["patient_key"] for row in rows_csv(client_for(b.reporter).get("/api/v1/exports/research/patients.csv"))
    }
    assert expected_key(pseudonym_key, b.clinic.pk, "mrn-a") in theirs
    assert first not in theirs
    # another key, other pseudonyms: without the key they cannot be recomputed from MRNs
    settings.ANTICOAG_PSEUDONYM_KEY = "another-key-another-key-another-key-0000"
    assert rows_csv(client.get("/api/v1/exports/research/patients.csv"))[0]["patient_key"] != first


def test_ages_are_ten_year_bands(a, pseudonym_key):
    row = rows_ndjson(client_for(a.reporter).get("/api/v1/exports/research/episodes.ndjson"))[0]
    expected = age_band(date(1980, 5, 17), a.episode.diagnosed_on)
    assert row["age_band_at_diagnosis"] == expected and expected in {"40-49", "50-59"}


@pytest.mark.parametrize(
    ("born", "on", "band"),
    [
        (date(1980, 5, 17), date(2020, 5, 16), "30-39"),
        (date(1980, 5, 17), date(2020, 5, 17), "40-49"),
        (date(2020, 1, 1), date(2020, 6, 1), "0-9"),
        (date(1920, 1, 1), date(2015, 1, 1), "90+"),
        (None, date(2020, 1, 1), None),
    ],
)
def test_age_band(born, on, band):
    assert age_band(born, on) == band


def test_research_exports_without_a_key_in_production_answer_503_and_log_nothing(a, settings):
    settings.ANTICOAG_PSEUDONYM_KEY = ""
    settings.DEBUG = False
    response = client_for(a.reporter).get("/api/v1/exports/research/patients.csv")
    assert response.status_code == 503
    assert "ANTICOAG_PSEUDONYM_KEY" in response.json()["detail"]
    assert not ExportLog.objects.exists()
    # identified exports do not need the key
    assert client_for(a.reporter).get("/api/v1/exports/patients.csv").status_code == 200


def test_in_debug_mode_a_key_derived_from_the_secret_key_stands_in(a, settings):
    settings.ANTICOAG_PSEUDONYM_KEY = ""
    settings.DEBUG = True
    assert client_for(a.reporter).get("/api/v1/exports/research/patients.csv").status_code == 200


def test_the_deployment_check_warns_about_a_missing_or_short_key(settings):
    from reporting.checks import pseudonym_key_check

    settings.ANTICOAG_PSEUDONYM_KEY = ""
    assert [w.id for w in pseudonym_key_check(None)] == ["reporting.W001"]
    settings.ANTICOAG_PSEUDONYM_KEY = "short"
    assert [w.id for w in pseudonym_key_check(None)] == ["reporting.W002"]
    settings.ANTICOAG_PSEUDONYM_KEY = "x" * 40
    assert pseudonym_key_check(None) == []


# --- bad input -----------------------------------------------------------------------------------------------


def test_an_unknown_filter_is_a_400_naming_it_and_the_allowed_ones(a):
    response = client_for(a.reporter).get("/api/v1/exports/inr-readings.csv", {"drawn_after": "2026-01-01"})
    assert response.status_code == 400
    message = response.json()["drawn_after"][0]
    assert "drawn_from" in message and "drawn_to" in message
    assert not ExportLog.objects.exists()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"drawn_from": "yesterday"}, "drawn_from"),
        ({"drawn_from": "9999-12-31T23:00:00-10:00"}, "drawn_from"),  # past year 9999 in UTC
        ({"clinic": "A"}, "clinic"),
        ({"clinic": str(2**70)}, "clinic"),
        ({"bleeding": "maybe"}, "bleeding"),
        ({"source": "fax"}, "source"),
    ],
)
def test_a_bad_filter_value_is_a_400_naming_the_filter(a, params, field):
    response = client_for(a.reporter).get("/api/v1/exports/inr-readings.ndjson", params)
    assert response.status_code == 400
    assert list(response.json()) == [field]
