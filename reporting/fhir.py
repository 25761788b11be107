"""One patient as a FHIR R4 Bundle (type ``collection``), for systems that speak FHIR.

* ``Patient`` — identifier = the MRN, in a system per clinic (``settings.ANTICOAG_FHIR_MRN_SYSTEM``).
* ``Condition`` per CVT episode — ICD-10 I67.6 (and O22.5 in pregnancy, O87.3 in the puerperium) and SNOMED CT.
* ``Observation`` per INR reading — LOINC 6301-6, unitless (UCUM ``{INR}``), reference range 2.0–3.0.
* ``MedicationRequest`` per plan with a confirmed decision — the chosen agent (RxNorm where verified).
* ``ServiceRequest`` per follow-up item — status active (scheduled), completed (done), revoked (cancelled,
  missed).
* ``Observation`` per outcome review (reference §7) — the mRS (LOINC 75859-9) with the optional findings as
  components; ``Observation`` per venous imaging done — the recanalization grade, with one component per sinus.
* Events (reference §7): a recurrent CVT or another VTE as a ``Condition``; a bleed or a symptomatic ICH as an
  ``AdverseEvent`` (serious when ISTH major; outcome fatal when fatal) naming its ISTH class and criterion;
  a death as ``Patient.deceasedDateTime``.

Entries are addressed by ``urn:uuid`` full URLs (UUID 5 of the site and the record, so the same record keeps
the same URL across exports) and refer to each other by them. Free-text notes are not included.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from anticoag.models import Agent, InrReading, Plan, PlanDecision
from outcomes.models import ClinicalEvent, EventKind, IsthClass, OutcomeAssessment, SinusRecanalization
from patients.choices import Sinus
from patients.models import CvtEpisode, Patient
from scheduling.models import FollowUp, FollowUpKind, FollowUpStatus

ICD10 = "http://hl7.org/fhir/sid/icd-10"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"

CVT_TEXT = "Cerebral venous thrombosis"
ICD10_CVT = {"system": ICD10, "code": "I67.6", "display": "Nonpyogenic thrombosis of intracranial venous system"}
ICD10_CVT_PREGNANCY = {"system": ICD10, "code": "O22.5", "display": "Cerebral venous thrombosis in pregnancy"}
ICD10_CVT_PUERPERIUM = {"system": ICD10, "code": "O87.3", "display": "Cerebral venous thrombosis in the puerperium"}
#: SNOMED CT 95455008 |Thrombosis of cerebral veins (disorder)|: the concept that clinical references
#: (VisualDx's CVT entry) and published FHIR stroke value sets use for CVT. Checked against those sources,
#: not against a SNOMED release (none is available offline): confirm with your national release centre.
SNOMED_CVT = {"system": SNOMED, "code": "95455008", "display": "Thrombosis of cerebral veins (disorder)"}

LOINC_INR = {"system": LOINC, "code": "6301-6", "display": "INR in Platelet poor plasma by Coagulation assay"}
INR_UNIT = {"unit": "INR", "system": UCUM, "code": "{INR}"}  # a ratio: unitless (UCUM annotation of 1)
INR_LOW, INR_HIGH = 2.0, 3.0

#: RxNorm ingredient codes, as widely published (RxNav): warfarin 11289, dabigatran etexilate 1037042,
#: heparin 5224. LMWH is a class (enoxaparin, dalteparin, tinzaparin…), not one ingredient: text only.
AGENT_CODES: dict[str, dict[str, str] | None] = {
    Agent.WARFARIN: {"system": RXNORM, "code": "11289", "display": "warfarin"},
    Agent.DABIGATRAN: {"system": RXNORM, "code": "1037042", "display": "dabigatran etexilate"},
    Agent.UFH: {"system": RXNORM, "code": "5224", "display": "heparin"},
    Agent.LMWH: None,
    # Rules revision 2 agents: text only until their codes are checked against an RxNorm release.
    Agent.RIVAROXABAN: None,
    Agent.APIXABAN: None,
    Agent.ARGATROBAN: None,
    Agent.FONDAPARINUX: None,
}
AGENT_TEXT = {
    Agent.WARFARIN: "Warfarin",
    Agent.DABIGATRAN: "Dabigatran etexilate",
    Agent.LMWH: "Low-molecular-weight heparin",
    Agent.UFH: "Unfractionated heparin",
    Agent.RIVAROXABAN: "Rivaroxaban",
    Agent.APIXABAN: "Apixaban",
    Agent.ARGATROBAN: "Argatroban",
    Agent.FONDAPARINUX: "Fondaparinux",
}

SERVICE_REQUEST_STATUS = {
    FollowUpStatus.SCHEDULED: "active",
    FollowUpStatus.DONE: "completed",
    FollowUpStatus.CANCELLED: "revoked",
    FollowUpStatus.MISSED: "revoked",
}

#: LOINC 75859-9 |Modified Rankin Scale|: the code the FHIR R5 specification's own mRS examples use
#: (hl7.org/fhir/R5/evidencevariable-example-mRS3-6-at-90days: ``code in "75859-9|LOINC"``) and the published
#: StrokeMRS profile of the TW VGH Stroke implementation guide. Checked against those publications, not against a
#: LOINC release (none is available offline).
LOINC_MRS = {"system": LOINC, "code": "75859-9", "display": "Modified Rankin Scale"}
#: FHIR R4 code systems of AdverseEvent (value sets adverse-event-seriousness and adverse-event-outcome, R4).
_AE_SERIOUSNESS = "http://terminology.hl7.org/CodeSystem/adverse-event-seriousness"
_AE_OUTCOME = "http://terminology.hl7.org/CodeSystem/adverse-event-outcome"

_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
_CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
_CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
_OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_REFERENCE_RANGE_MEANING = "http://terminology.hl7.org/CodeSystem/referencerange-meaning"


def mrn_system(clinic_id: int) -> str:
    """The identifier system of a clinic's MRNs (MRNs are unique per clinic, so the system is too)."""
    template = (
        getattr(settings, "ANTICOAG_FHIR_MRN_SYSTEM", "") or f"{settings.SITE_URL}/fhir/sid/mrn/clinic-{{clinic_id}}"
    )
    return template.replace("{clinic_id}", str(clinic_id))


def _full_url(kind: str, pk: int) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{settings.SITE_URL}/fhir/{kind}/{pk}')}"


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _patient(patient: Patient) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": f"patient-{patient.pk}",
        "identifier": [
            {
                "use": "usual",
                "type": {"coding": [{"system": _V2_0203, "code": "MR", "display": "Medical record number"}]},
                "system": mrn_system(patient.clinic_id),
                "value": patient.mrn,
            }
        ],
        "active": patient.active,
        "name": [{"use": "official", "family": patient.family_name, "given": [patient.given_name]}],
        "gender": patient.sex,  # "female" / "male": the FHIR administrative-gender codes
        "birthDate": patient.date_of_birth.isoformat(),
        "managingOrganization": {"display": patient.clinic.name},
    }


def condition_codes(episode: CvtEpisode) -> list[dict[str, str]]:
    """ICD-10 I67.6 always; with a pregnancy-associated episode also O22.5 (pregnant at diagnosis) or O87.3
    (diagnosed after the delivery, in the puerperium); SNOMED CT last."""
    codes = [ICD10_CVT]
    if episode.pregnant:
        postpartum = episode.delivered_on is not None and episode.delivered_on <= episode.diagnosed_on
        codes.append(ICD10_CVT_PUERPERIUM if postpartum else ICD10_CVT_PREGNANCY)
    return [*codes, SNOMED_CVT]


def _condition(episode: CvtEpisode, patient_ref: str) -> dict[str, Any]:
    sinus_labels = dict(Sinus.choices)
    text = CVT_TEXT + (", pregnancy-associated" if episode.pregnant else "")
    return {
        "resourceType": "Condition",
        "id": f"cvt-episode-{episode.pk}",
        "verificationStatus": {"coding": [{"system": _CONDITION_VERIFICATION, "code": "confirmed"}]},
        "category": [
            {
                "coding": [
                    {"system": _CONDITION_CATEGORY, "code": "encounter-diagnosis", "display": "Encounter Diagnosis"}
                ]
            }
        ],
        "code": {"coding": condition_codes(episode), "text": text},
        "bodySite": [{"text": sinus_labels.get(code, code)} for code in episode.sinuses or []],
        "subject": {"reference": patient_ref},
        "onsetDateTime": episode.diagnosed_on.isoformat(),
        "recordedDate": episode.created_at.isoformat(),
    }


def _observation(reading: InrReading, patient_ref: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"inr-{reading.pk}",
        "status": "final",
        "category": [{"coding": [{"system": _OBSERVATION_CATEGORY, "code": "laboratory", "display": "Laboratory"}]}],
        "code": {"coding": [LOINC_INR], "text": "INR"},
        "subject": {"reference": patient_ref},
        "effectiveDateTime": reading.drawn_at.isoformat(),
        "valueQuantity": {"value": float(reading.value), **INR_UNIT},
        "referenceRange": [
            {
                "low": {"value": INR_LOW, **INR_UNIT},
                "high": {"value": INR_HIGH, **INR_UNIT},
                "type": {
                    "coding": [{"system": _REFERENCE_RANGE_MEANING, "code": "treatment", "display": "Treatment Range"}]
                },
                "text": "Target range on warfarin: 2.0–3.0",
            }
        ],
    }
    if reading.bleeding:
        resource["note"] = [{"text": "Bleeding reported with this reading."}]
    return resource


def _medication_request(decision: PlanDecision, patient_ref: str, condition_ref: str, today: date) -> dict[str, Any]:
    coding = AGENT_CODES.get(decision.agent)
    medication: dict[str, Any] = {"text": AGENT_TEXT.get(decision.agent, decision.agent)}
    if coding:
        medication["coding"] = [coding]
    if decision.indefinite:
        course = "Indefinite anticoagulation."
    elif decision.end_on:
        course = f"Anticoagulation until {decision.end_on.isoformat()}."
    else:
        course = "Anticoagulation."
    if decision.agent == Agent.WARFARIN:
        course += " Target INR 2.0–3.0."
    finished = decision.end_on is not None and decision.end_on < today and not decision.indefinite
    return {
        "resourceType": "MedicationRequest",
        "id": f"plan-decision-{decision.pk}",
        "status": "completed" if finished else "active",
        "intent": "order",
        "medicationCodeableConcept": medication,
        "subject": {"reference": patient_ref},
        "authoredOn": decision.decided_at.isoformat(),
        "reasonReference": [{"reference": condition_ref}],
        "dosageInstruction": [{"text": course}],
    }


def _service_request(item: FollowUp, patient_ref: str, condition_refs: dict[int, str]) -> dict[str, Any]:
    code: dict[str, Any] = {"text": item.get_kind_display()}
    if item.kind == FollowUpKind.INR_TEST:
        code["coding"] = [LOINC_INR]
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": f"follow-up-{item.pk}",
        "status": SERVICE_REQUEST_STATUS.get(item.status, "unknown"),
        "intent": "plan",
        "code": code,
        "subject": {"reference": patient_ref},
    }
    if item.window_end_on and item.window_end_on != item.due_on:
        resource["occurrencePeriod"] = {"start": item.due_on.isoformat(), "end": item.window_end_on.isoformat()}
    else:
        resource["occurrenceDateTime"] = item.due_on.isoformat()
    if item.episode_id in condition_refs:
        resource["reasonReference"] = [{"reference": condition_refs[item.episode_id]}]
    notes = []
    if item.status == FollowUpStatus.DONE and item.completed_on:
        notes.append(f"Done on {item.completed_on.isoformat()}.")
    if item.status == FollowUpStatus.MISSED:
        notes.append("Missed.")
    if item.recanalization:
        notes.append(f"Recanalization: {item.get_recanalization_display()}.")
    if notes:
        resource["note"] = [{"text": " ".join(notes)}]
    return resource


def _text_component(label: str, value: str) -> dict[str, Any]:
    return {"code": {"text": label}, "valueCodeableConcept": {"text": value}}


def _outcome_observation(review: OutcomeAssessment, patient_ref: str, condition_refs: dict[int, str]) -> dict:
    components: list[dict[str, Any]] = [
        {"code": {"text": "Seizures since the last review"}, "valueBoolean": review.seizures_since_last_review}
    ]
    if review.hit6_total is not None:
        components.append({"code": {"text": "HIT-6 total score"}, "valueInteger": review.hit6_total})
    if review.papilledema:
        components.append(_text_component("Papilledema", review.get_papilledema_display()))
    if review.visual_fields:
        components.append(_text_component("Visual fields", review.get_visual_fields_display()))
    if review.back_to_work:
        components.append(_text_component("Back at work or school", review.get_back_to_work_display()))
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"outcome-review-{review.pk}",
        "status": "final",
        "category": [{"coding": [{"system": _OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"}]}],
        "code": {"coding": [LOINC_MRS], "text": f"Modified Rankin Scale, {review.get_timepoint_display()} review"},
        "subject": {"reference": patient_ref},
        "effectiveDateTime": review.assessed_on.isoformat(),
        "valueInteger": review.mrs,
        "interpretation": [{"text": review.mrs_words}],
        "component": components,
    }
    if review.episode_id in condition_refs:
        resource["focus"] = [{"reference": condition_refs[review.episode_id]}]
    return resource


def _recanalization_observation(item: FollowUp, sinuses: list[SinusRecanalization], patient_ref: str) -> dict:
    return {
        "resourceType": "Observation",
        "id": f"recanalization-{item.pk}",
        "status": "final",
        "category": [{"coding": [{"system": _OBSERVATION_CATEGORY, "code": "imaging", "display": "Imaging"}]}],
        "code": {"text": "Recanalization at venous imaging (ACTION-CVT grades)"},
        "subject": {"reference": patient_ref},
        "effectiveDateTime": item.completed_on.isoformat(),
        "valueCodeableConcept": {"text": item.get_recanalization_display()},
        "component": [_text_component(s.get_sinus_display(), s.get_grade_display()) for s in sinuses],
    }


def _event_condition(event: ClinicalEvent, patient_ref: str) -> dict[str, Any]:
    code: dict[str, Any] = {"text": event.get_kind_display()}
    if event.kind == EventKind.RECURRENT_CVT:
        code = {"coding": [SNOMED_CVT], "text": "Recurrent cerebral venous thrombosis"}
    elif event.vte_site:
        code = {"text": f"Venous thromboembolism: {event.get_vte_site_display()}"}
    return {
        "resourceType": "Condition",
        "id": f"event-{event.pk}",
        "verificationStatus": {"coding": [{"system": _CONDITION_VERIFICATION, "code": "confirmed"}]},
        "category": [
            {
                "coding": [
                    {"system": _CONDITION_CATEGORY, "code": "encounter-diagnosis", "display": "Encounter Diagnosis"}
                ]
            }
        ],
        "code": code,
        "subject": {"reference": patient_ref},
        "onsetDateTime": event.occurred_on.isoformat(),
        "recordedDate": event.created_at.isoformat(),
    }


def _adverse_event(event: ClinicalEvent, patient_ref: str) -> dict[str, Any]:
    words = event.get_kind_display()
    if event.bleeding_site:
        words += f", {event.get_bleeding_site_display().lower()}"
    if event.isth_class:
        words += f": {event.get_isth_class_display()}"
        if event.isth_criterion:
            words += f" ({event.isth_criterion})"
    serious = event.isth_class == IsthClass.MAJOR
    resource: dict[str, Any] = {
        "resourceType": "AdverseEvent",
        "id": f"event-{event.pk}",
        "actuality": "actual",
        "event": {"text": words},
        "subject": {"reference": patient_ref},
        "date": event.occurred_on.isoformat(),
        "recordedDate": event.created_at.isoformat(),
        "seriousness": {
            "coding": [
                {
                    "system": _AE_SERIOUSNESS,
                    "code": "serious" if serious else "non-serious",
                    "display": "Serious" if serious else "Non-serious",
                }
            ]
        },
    }
    if event.fatal:
        resource["outcome"] = {"coding": [{"system": _AE_OUTCOME, "code": "fatal", "display": "Fatal"}]}
    return resource


def _outcome_entries(patient: Patient, patient_ref: str, condition_refs: dict[int, str]) -> list[dict[str, Any]]:
    """Reviews, recanalization and events (reference §7): four queries."""
    entries = [
        {
            "fullUrl": _full_url("OutcomeReview", review.pk),
            "resource": _outcome_observation(review, patient_ref, condition_refs),
        }
        for review in OutcomeAssessment.objects.filter(patient=patient).order_by("assessed_on", "pk")
    ]
    sinuses: dict[int, list[SinusRecanalization]] = {}
    for row in SinusRecanalization.objects.filter(follow_up__patient=patient).order_by("sinus"):
        sinuses.setdefault(row.follow_up_id, []).append(row)
    scans = FollowUp.objects.filter(
        patient=patient, kind=FollowUpKind.VENOUS_IMAGING, status=FollowUpStatus.DONE, completed_on__isnull=False
    ).exclude(recanalization="")
    entries += [
        {
            "fullUrl": _full_url("Recanalization", item.pk),
            "resource": _recanalization_observation(item, sinuses.get(item.pk, []), patient_ref),
        }
        for item in scans.order_by("completed_on", "pk")
    ]
    # A death is not an entry of its own: it is the Patient's deceasedDateTime (patient_bundle).
    for event in ClinicalEvent.objects.filter(patient=patient).order_by("occurred_on", "pk"):
        if event.kind in (EventKind.RECURRENT_CVT, EventKind.OTHER_VTE):
            entries.append(
                {"fullUrl": _full_url("EventCondition", event.pk), "resource": _event_condition(event, patient_ref)}
            )
        elif event.kind in (EventKind.BLEEDING, EventKind.SYMPTOMATIC_ICH):
            entries.append(
                {"fullUrl": _full_url("AdverseEvent", event.pk), "resource": _adverse_event(event, patient_ref)}
            )
    return entries


def patient_bundle(*, patient: Patient) -> dict[str, Any]:
    """The patient, episodes, INR readings, confirmed agents and follow-ups as a FHIR R4 collection Bundle."""
    now = timezone.now()
    today = timezone.localdate()
    patient_ref = _full_url("Patient", patient.pk)
    entries: list[dict[str, Any]] = [{"fullUrl": patient_ref, "resource": _patient(patient)}]

    episodes = list(CvtEpisode.objects.filter(patient=patient).order_by("diagnosed_on", "pk"))
    condition_refs = {episode.pk: _full_url("Condition", episode.pk) for episode in episodes}
    entries += [
        {"fullUrl": condition_refs[episode.pk], "resource": _condition(episode, patient_ref)} for episode in episodes
    ]

    readings = InrReading.objects.filter(patient=patient).order_by("drawn_at", "pk")
    entries += [
        {"fullUrl": _full_url("Observation", reading.pk), "resource": _observation(reading, patient_ref)}
        for reading in readings.iterator(chunk_size=500)
    ]

    plans = Plan.objects.filter(episode__patient=patient).order_by("episode__diagnosed_on", "pk")
    for plan in plans:
        decision = plan.current_decision
        if decision is None:
            continue
        resource = _medication_request(decision, patient_ref, condition_refs[plan.episode_id], today)
        entries.append({"fullUrl": _full_url("MedicationRequest", decision.pk), "resource": resource})

    follow_ups = FollowUp.objects.filter(patient=patient).order_by("due_on", "pk")
    entries += [
        {
            "fullUrl": _full_url("ServiceRequest", item.pk),
            "resource": _service_request(item, patient_ref, condition_refs),
        }
        for item in follow_ups
    ]
    entries += _outcome_entries(patient, patient_ref, condition_refs)
    died_on = (
        ClinicalEvent.objects.filter(patient=patient, kind=EventKind.DEATH)
        .values_list("occurred_on", flat=True)
        .first()
    )
    if died_on is not None:
        entries[0]["resource"]["deceasedDateTime"] = died_on.isoformat()
    return {"resourceType": "Bundle", "type": "collection", "timestamp": now.isoformat(), "entry": entries}
