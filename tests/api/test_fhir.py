"""The FHIR view of a patient: a Bundle that a maintained FHIR library (fhir.resources, R4B models) accepts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from fhir.resources.R4B.bundle import Bundle

from scheduling.models import FollowUp, FollowUpStatus
from tests.api.conftest import client_for
from tests.factories import EpisodeFactory

pytestmark = pytest.mark.django_db


def bundle_of(client, patient) -> dict:
    response = client.get(f"/api/v1/patients/{patient.pk}/fhir/")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/fhir+json"
    return response.json()


def resources(bundle: dict, kind: str) -> list[dict]:
    return [entry["resource"] for entry in bundle["entry"] if entry["resource"]["resourceType"] == kind]


def codes(concept: dict) -> set[tuple[str, str]]:
    return {(coding["system"], coding["code"]) for coding in concept.get("coding", [])}


def test_the_bundle_validates_and_holds_every_part_of_the_record(a):
    # given a confirmed plan, a done follow-up and a cancelled one
    client = client_for(a.clinician)
    assert client.post(f"/api/v1/plans/{a.plan.pk}/confirm/", {"agent": "warfarin"}, format="json").status_code == 201
    items = list(FollowUp.objects.filter(patient=a.patient).order_by("pk"))
    FollowUp.objects.filter(pk=items[1].pk).update(status=FollowUpStatus.CANCELLED)
    # when the FHIR view is read
    data = bundle_of(client, a.patient)
    # then fhir.resources parses it as an R4(B) Bundle
    bundle = Bundle.model_validate(data)
    assert bundle.type == "collection"
    kinds = [entry.resource.get_resource_type() for entry in bundle.entry]
    assert kinds.count("Patient") == 1
    assert kinds.count("Condition") == 1
    assert kinds.count("Observation") == 3  # two INR readings and the outcome review (make_clinic)
    assert kinds.count("AdverseEvent") == 1  # the minor bleed (make_clinic)
    assert kinds.count("MedicationRequest") == 1
    assert kinds.count("ServiceRequest") == len(items)
    # and every reference points at an entry of the bundle
    full_urls = {entry["fullUrl"] for entry in data["entry"]}
    references = [r["subject"]["reference"] for r in (e["resource"] for e in data["entry"]) if "subject" in r]
    assert references and set(references) <= full_urls


def test_patient_condition_observation_and_medication_carry_the_right_codes(a, settings):
    settings.ANTICOAG_FHIR_MRN_SYSTEM = "urn:example:mrn:{clinic_id}"
    client = client_for(a.clinician)
    client.post(f"/api/v1/plans/{a.plan.pk}/confirm/", {"agent": "warfarin"}, format="json")
    data = bundle_of(client, a.patient)

    (patient,) = resources(data, "Patient")
    assert patient["identifier"][0] == {
        "use": "usual",
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                    "code": "MR",
                    "display": "Medical record number",
                }
            ]
        },
        "system": f"urn:example:mrn:{a.clinic.pk}",
        "value": "MRN-A",
    }
    assert patient["birthDate"] == "1980-05-17" and patient["gender"] == "female"

    (condition,) = resources(data, "Condition")
    assert codes(condition["code"]) == {
        ("http://hl7.org/fhir/sid/icd-10", "I67.6"),
        ("http://snomed.info/sct", "95455008"),
    }
    assert condition["onsetDateTime"] == a.episode.diagnosed_on.isoformat()

    observation = resources(data, "Observation")[0]
    assert codes(observation["code"]) == {("http://loinc.org", "6301-6")}
    assert observation["valueQuantity"]["value"] == 1.8
    assert observation["valueQuantity"]["code"] == "{INR}"  # unitless
    assert (observation["referenceRange"][0]["low"]["value"], observation["referenceRange"][0]["high"]["value"]) == (
        2.0,
        3.0,
    )

    (medication,) = resources(data, "MedicationRequest")
    assert codes(medication["medicationCodeableConcept"]) == {("http://www.nlm.nih.gov/research/umls/rxnorm", "11289")}
    assert medication["status"] == "active" and medication["intent"] == "order"


def test_a_pregnancy_associated_episode_is_coded_o22_5_and_after_delivery_o87_3(a):
    today = timezone.localdate()
    pregnant = EpisodeFactory(patient=a.patient, pregnant=True, diagnosed_on=today - timedelta(days=400))
    postpartum = EpisodeFactory(
        patient=a.patient,
        pregnant=True,
        delivered_on=today - timedelta(days=20),
        diagnosed_on=today - timedelta(days=5),
    )
    data = bundle_of(client_for(a.clinician), a.patient)
    Bundle.model_validate(data)
    by_id = {c["id"]: codes(c["code"]) for c in resources(data, "Condition")}
    assert ("http://hl7.org/fhir/sid/icd-10", "O22.5") in by_id[f"cvt-episode-{pregnant.pk}"]
    assert ("http://hl7.org/fhir/sid/icd-10", "O87.3") in by_id[f"cvt-episode-{postpartum.pk}"]
    assert ("http://hl7.org/fhir/sid/icd-10", "I67.6") in by_id[f"cvt-episode-{postpartum.pk}"]


def test_follow_ups_are_service_requests_with_their_status(a):
    items = list(FollowUp.objects.filter(patient=a.patient).order_by("pk"))
    FollowUp.objects.filter(pk=items[0].pk).update(status=FollowUpStatus.DONE, completed_on=timezone.localdate())
    FollowUp.objects.filter(pk=items[1].pk).update(status=FollowUpStatus.CANCELLED)
    data = bundle_of(client_for(a.nurse), a.patient)
    status = {r["id"]: r["status"] for r in resources(data, "ServiceRequest")}
    assert status[f"follow-up-{items[0].pk}"] == "completed"
    assert status[f"follow-up-{items[1].pk}"] == "revoked"
    assert status[f"follow-up-{items[2].pk}"] == "active"


def test_an_lmwh_decision_is_coded_as_text_only(a):
    client = client_for(a.clinician)
    response = client.post(
        f"/api/v1/plans/{a.plan.pk}/confirm/", {"agent": "lmwh", "override_reason": "patient choice"}, format="json"
    )
    assert response.status_code == 201, response.json()
    data = bundle_of(client, a.patient)
    Bundle.model_validate(data)
    (medication,) = resources(data, "MedicationRequest")
    assert medication["medicationCodeableConcept"] == {"text": "Low-molecular-weight heparin"}


def test_the_bundle_carries_no_free_text_notes(a):
    data = bundle_of(client_for(a.clinician), a.patient)
    assert "secret note A" not in str(data)
