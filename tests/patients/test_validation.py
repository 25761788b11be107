"""Refused inputs: each is rejected with a message that names the field, and nothing is written."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from patients.models import CvtEpisode, EpisodeRiskFactor, LabResult, Patient
from tests.factories import ClinicFactory, EpisodeFactory, PatientFactory

pytestmark = pytest.mark.django_db


def errors_of(instance) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        instance.full_clean()
    return caught.value.message_dict


def test_diagnosis_date_in_the_future_is_refused():
    # given an episode diagnosed tomorrow
    episode = EpisodeFactory.build(patient=PatientFactory(), diagnosed_on=timezone.localdate() + timedelta(days=1))
    # when it is validated / then the diagnosis date is named and nothing is saved
    errors = errors_of(episode)
    assert "diagnosed_on" in errors
    assert "in the future" in errors["diagnosed_on"][0]
    assert CvtEpisode.objects.count() == 0


@pytest.mark.parametrize(
    ("model_field", "build"),
    [
        ("date_of_birth", lambda future: PatientFactory.build(clinic=ClinicFactory(), date_of_birth=future)),
        ("drawn_on", lambda future: LabResult(patient=PatientFactory(), drawn_on=future, hemoglobin_g_dl=12)),
        ("noted_on", lambda future: EpisodeRiskFactor(episode=EpisodeFactory(), code="infection", noted_on=future)),
    ],
)
def test_every_clinical_date_refuses_the_future(model_field, build):
    future = timezone.localdate() + timedelta(days=3)
    errors = errors_of(build(future))
    assert errors[model_field] == [f"{future.isoformat()} is in the future."]


def test_delivery_date_without_pregnancy_is_refused():
    # Given an episode with a delivery date and no pregnancy or puerperium code (rules revision 2: one fact)
    episode = EpisodeFactory.build(patient=PatientFactory(), delivered_on=timezone.localdate() - timedelta(days=20))
    # Then it is refused, naming the field
    errors = errors_of(episode)
    assert "delivered_on" in errors
    assert "needs the pregnancy or puerperium risk factor code" in errors["delivered_on"][0]


@pytest.mark.parametrize(
    ("field", "value"),
    [("breastfeeding", True), ("expected_delivery_on", timezone.localdate() + timedelta(days=90))],
)
def test_breastfeeding_or_expected_delivery_without_pregnancy_code_is_refused(field, value):
    episode = EpisodeFactory.build(patient=PatientFactory(), **{field: value})
    errors = errors_of(episode)
    assert "needs the pregnancy or puerperium risk factor code" in errors[field][0]


def test_delivery_date_with_the_pregnancy_code_is_accepted():
    episode = EpisodeFactory(patient=PatientFactory(sex="female"))
    EpisodeRiskFactor.objects.create(episode=episode, code="pregnancy", noted_on=episode.diagnosed_on)
    episode.delivered_on = episode.diagnosed_on
    episode.full_clean()  # no error


def test_negative_weight_is_refused():
    patient = PatientFactory.build(clinic=ClinicFactory(), weight_kg=Decimal("-3.0"))
    errors = errors_of(patient)
    assert errors["weight_kg"] == ["Weight must be positive."]


def test_duplicate_mrn_in_the_same_clinic_is_refused_whatever_the_case():
    existing = PatientFactory(mrn="AB-123")
    duplicate = PatientFactory.build(clinic=existing.clinic, mrn="ab-123")
    errors = errors_of(duplicate)
    assert errors["mrn"] == ["A patient with this MRN already exists in this clinic."]
    assert Patient.objects.count() == 1


def test_the_same_mrn_in_another_clinic_is_allowed():
    PatientFactory(mrn="AB-123")
    other = PatientFactory.build(clinic=ClinicFactory(), mrn="AB-123")
    other.full_clean()  # does not raise
    other.save()
    assert Patient.objects.filter(mrn="AB-123").count() == 2


def test_duplicate_mrn_is_refused_by_the_database_too():
    existing = PatientFactory(mrn="AB-123")
    with pytest.raises(IntegrityError), transaction.atomic():
        PatientFactory(clinic=existing.clinic, mrn="Ab-123")


def test_unknown_risk_factor_code_is_refused_and_lists_the_allowed_codes():
    factor = EpisodeRiskFactor(episode=EpisodeFactory(), code="bad_luck")
    errors = errors_of(factor)
    assert "code" in errors
    assert any("infection" in message and "antiphospholipid_syndrome" in message for message in errors["code"])
    assert EpisodeRiskFactor.objects.count() == 0


def test_unknown_sinus_is_refused():
    episode = EpisodeFactory.build(patient=PatientFactory(), sinuses=["superior_sagittal", "nasal"])
    errors = errors_of(episode)
    assert errors["sinuses"][0].startswith("Unknown sinus code(s) nasal")


def test_creatinine_without_unit_and_implausible_values_are_refused():
    patient = PatientFactory()
    drawn_on = timezone.localdate()
    assert "creatinine_unit" in errors_of(LabResult(patient=patient, drawn_on=drawn_on, serum_creatinine=1))
    # 90 mg/dL is a unit mix-up (90 µmol/L is normal)
    implausible = LabResult(patient=patient, drawn_on=drawn_on, serum_creatinine=90, creatinine_unit="mg_dl")
    assert "check the unit" in errors_of(implausible)["serum_creatinine"][0]
    LabResult(patient=patient, drawn_on=drawn_on, serum_creatinine=90, creatinine_unit="umol_l").full_clean()


def test_second_episode_knows_it_is_a_recurrence():
    first = EpisodeFactory(diagnosed_on=timezone.localdate() - timedelta(days=400))
    second = EpisodeFactory(patient=first.patient, diagnosed_on=timezone.localdate() - timedelta(days=5))
    assert second.is_recurrence is True
    assert first.is_recurrence is False
