"""Every change to clinical records is audited: who, when, what changed."""

from __future__ import annotations

from decimal import Decimal

import pytest
from auditlog.models import LogEntry
from django.urls import reverse

from patients.choices import Role
from tests.factories import ClinicFactory, PatientFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_an_admin_edit_of_a_patient_is_audited_with_actor_and_change(client):
    # given a nurse of the clinic and one of its patients
    clinic = ClinicFactory()
    nurse = UserFactory(role=Role.NURSE, clinics=[clinic])
    patient = PatientFactory(clinic=clinic, weight_kg=Decimal("70.0"))
    client.force_login(nurse)
    url = reverse("admin:patients_patient_change", args=[patient.pk])
    form = {
        "clinic": clinic.pk,
        "mrn": patient.mrn,
        "given_name": patient.given_name,
        "family_name": patient.family_name,
        "date_of_birth": patient.date_of_birth.isoformat(),
        "sex": patient.sex,
        "weight_kg": "72.5",
        "active": "on",
        "episodes-TOTAL_FORMS": "0",
        "episodes-INITIAL_FORMS": "0",
        "lab_results-TOTAL_FORMS": "0",
        "lab_results-INITIAL_FORMS": "0",
    }
    # when the nurse changes the weight in the admin
    response = client.post(url, form)
    # then it is saved and the audit log records who changed what, from what to what
    assert response.status_code == 302, response.content.decode()[:2000]
    entry = LogEntry.objects.get_for_object(patient).filter(action=LogEntry.Action.UPDATE).get()
    assert entry.actor == nurse
    assert entry.changes_dict["weight_kg"] == ["70.0", "72.5"]
    assert entry.timestamp is not None


def test_creating_a_patient_is_audited():
    patient = PatientFactory()
    assert LogEntry.objects.get_for_object(patient).filter(action=LogEntry.Action.CREATE).count() == 1
