"""Outcome and event data sets in the streaming exports (identified and pseudonymised), their data dictionary,
the outcome API's refusals and scoping, and the FHIR bundle (validated with fhir.resources, R4B)."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from dateutil.relativedelta import relativedelta
from django.utils import timezone
from fhir.resources.R4B.bundle import Bundle

from outcomes.dictionary import COLUMNS
from outcomes.models import ClinicalEvent, EventKind
from outcomes.services import event_record, outcome_assessment_record, recanalization_record
from reporting.exports import DATASETS
from scheduling.models import FollowUp
from tests.api.conftest import client_for, make_clinic

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def key(settings) -> str:
    settings.ANTICOAG_PSEUDONYM_KEY = "test-pseudonym-key-0123456789abcdef0123456789"
    return settings.ANTICOAG_PSEUDONYM_KEY


@pytest.fixture
def a():
    clinic = make_clinic("A")
    episode = clinic.episode
    episode.diagnosed_on = timezone.localdate() - relativedelta(months=7)
    episode.save()
    clinic.review = outcome_assessment_record(
        episode=episode,
        timepoint="6m",
        assessed_on=episode.diagnosed_on + relativedelta(months=6),
        mrs=2,
        hit6_total=50,
        back_to_work="partly",
        note="private words",
    )
    clinic.bleed = event_record(
        event=ClinicalEvent(
            patient=clinic.patient,
            kind=EventKind.BLEEDING,
            occurred_on=timezone.localdate() - timedelta(days=3),
            bleeding_site="gastrointestinal",
            hemoglobin_fall_g_dl=Decimal("2.4"),
            note="private note",
        )
    )
    return clinic


def test_identified_exports_of_outcomes_and_events(a) -> None:
    client = client_for(a.clinician)
    outcomes = list(
        csv.DictReader(io.StringIO(b"".join(client.get("/api/v1/exports/outcomes.csv").streaming_content).decode()))
    )
    outcomes = [r for r in outcomes if r["timepoint"] == "6m"]
    assert [(r["mrn"], r["timepoint"], r["mrs"], r["hit6_total"], r["days_after_diagnosis"]) for r in outcomes] == [
        ("MRN-A", "6m", "2", "50", str((a.review.assessed_on - a.episode.diagnosed_on).days))
    ]
    response = client.get("/api/v1/exports/events.ndjson")
    rows = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [(r["kind"], r["isth_class"], r["isth_criteria"]) for r in rows] == [
        ("bleeding", "minor", []),  # make_clinic's
        ("bleeding", "major", ["hemoglobin fall of 2.4 g/dL (≥ 2 g/dL)"]),
    ]


def test_research_exports_are_pseudonymised_and_without_free_text(a, key) -> None:
    client = client_for(a.reporter)
    for dataset in ("outcomes", "events"):
        body = b"".join(client.get(f"/api/v1/exports/research/{dataset}.csv").streaming_content).decode()
        rows = list(csv.DictReader(io.StringIO(body)))
        assert len(rows) == 2 and all(len(row["patient_key"]) == 64 for row in rows)
        for secret in ("MRN-A", "FamilyA", "GivenA", "private"):
            assert secret not in body
        assert "mrn" not in rows[0] and "note" not in rows[0] and "patient_id" not in rows[0]


def test_exports_are_scoped_to_the_user_s_clinics(a) -> None:
    b = make_clinic("B")
    event_record(
        event=ClinicalEvent(
            patient=b.patient, kind=EventKind.OTHER_VTE, occurred_on=timezone.localdate(), vte_site="pe"
        )
    )
    body = b"".join(client_for(a.clinician).get("/api/v1/exports/events.csv").streaming_content).decode()
    assert "MRN-A" in body and "MRN-B" not in body


def test_every_exported_column_is_in_the_data_dictionary_which_is_served(a) -> None:
    for name in ("outcomes", "events"):
        dataset = DATASETS[name]
        for column in (*dataset.columns_for(pseudonymised=False), *dataset.columns_for(pseudonymised=True)):
            assert (name, column.name) in COLUMNS, (name, column.name)
    response = client_for(a.reporter).get("/api/v1/exports/dictionary.csv")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    mrs = next(r for r in rows if (r["dataset"], r["column"]) == ("outcomes", "mrs"))
    assert "2 = Slight disability" in mrs["codes"]
    fall = next(r for r in rows if r["column"] == "hemoglobin_fall_g_dl")
    assert fall["unit"] == "g/dL" and "ISTH2005" in fall["source"]
    assert client_for(a.nurse).get("/api/v1/exports/dictionary.csv").status_code == 403
    only = client_for(a.reporter).get("/api/v1/exports/dictionary.csv", {"dataset": "events"})
    assert {r["dataset"] for r in csv.DictReader(io.StringIO(only.content.decode()))} == {"events"}
    refused = client_for(a.reporter).get("/api/v1/exports/dictionary.csv", {"dataset": "plans"})
    assert refused.status_code == 400 and "dataset" in refused.json()


def test_the_fhir_bundle_carries_reviews_recanalization_and_events_and_validates(a) -> None:
    imaging = FollowUp.objects.get(key=f"ep{a.episode.pk}:venous_imaging")
    recanalization_record(
        follow_up=imaging,
        completed_on=a.episode.diagnosed_on + relativedelta(months=3),
        per_sinus={"superior_sagittal": "partial"},
    )
    event_record(
        event=ClinicalEvent(
            patient=a.patient, kind=EventKind.DEATH, occurred_on=timezone.localdate(), death_cause="unknown"
        )
    )
    response = client_for(a.clinician).get(f"/api/v1/patients/{a.patient.pk}/fhir/")
    assert response.status_code == 200
    data = response.json()
    Bundle.model_validate(data)
    resources = [e["resource"] for e in data["entry"]]
    [mrs] = [r for r in resources if r["id"] == f"outcome-review-{a.review.pk}"]
    assert mrs["code"]["coding"][0]["code"] == "75859-9" and mrs["valueInteger"] == 2
    [scan] = [r for r in resources if r["id"].startswith("recanalization")]
    assert scan["valueCodeableConcept"]["text"] == "Partial recanalization"
    assert scan["component"][0]["code"]["text"] == "Superior sagittal sinus"
    [bleed] = [r for r in resources if r["id"] == f"event-{a.bleed.pk}"]
    assert bleed["seriousness"]["coding"][0]["code"] == "serious"
    assert "hemoglobin fall of 2.4 g/dL" in bleed["event"]["text"]
    assert resources[0]["deceasedDateTime"] == timezone.localdate().isoformat()
    assert "private" not in json.dumps(data)


def test_outcome_api_refuses_bad_input_by_field_and_other_clinics_ids(a) -> None:
    b = make_clinic("B")
    client = client_for(a.nurse)
    good = {"episode": a.episode.pk, "timepoint": "3m", "assessed_on": a.episode.diagnosed_on.isoformat(), "mrs": 1}
    for change, field in [
        ({"mrs": 7}, "mrs"),
        ({"hit6_total": 20}, "hit6_total"),
        ({"timepoint": "9m"}, "timepoint"),
        ({"assessed_on": "2026-02-30"}, "assessed_on"),
        ({"episode": b.episode.pk}, "episode"),
        ({"assessed_on": (a.episode.diagnosed_on - timedelta(days=1)).isoformat()}, "assessed_on"),
    ]:
        response = client.post("/api/v1/outcome-assessments/", {**good, **change}, format="json")
        assert response.status_code == 400 and field in response.json(), (change, response.content)
    response = client.post("/api/v1/outcome-assessments/", good, format="json")
    assert response.status_code == 201 and response["Cache-Control"] == "no-store"
    assert response.json()["mrs_words"].startswith("No significant disability")
    # another clinic's records answer 404
    other = outcome_assessment_record(episode=b.episode, timepoint="other", assessed_on=timezone.localdate(), mrs=0)
    assert client.get(f"/api/v1/outcome-assessments/{other.pk}/").status_code == 404
    assert client.get(f"/api/v1/clinical-events/{a.bleed.pk}/").status_code == 200

    clinician = client_for(a.clinician)
    response = clinician.post(
        "/api/v1/clinical-events/",
        {"patient": a.patient.pk, "kind": "bleeding", "occurred_on": timezone.localdate().isoformat()},
        format="json",
    )
    assert response.status_code == 400 and "bleeding_site" in response.json()
    response = clinician.post(
        "/api/v1/clinical-events/",
        {
            "patient": b.patient.pk,
            "kind": "other_vte",
            "vte_site": "pe",
            "occurred_on": timezone.localdate().isoformat(),
        },
        format="json",
    )
    assert response.status_code == 400 and "patient" in response.json()
    response = clinician.post(
        "/api/v1/clinical-events/",
        {
            "patient": a.patient.pk,
            "kind": "bleeding",
            "bleeding_site": "genitourinary",
            "units_transfused": 1,
            "occurred_on": timezone.localdate().isoformat(),
        },
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["isth_class"] == "minor"

    response = client.post(
        "/api/v1/recanalizations/",
        {
            "follow_up": FollowUp.objects.get(key=f"ep{a.episode.pk}:venous_imaging").pk,
            "completed_on": timezone.localdate().isoformat(),
            "sinuses": {"nowhere": "complete"},
        },
        format="json",
    )
    assert response.status_code == 400 and "sinuses" in response.json()
