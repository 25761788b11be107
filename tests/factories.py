"""factory_boy factories for the clinic's models. Dates are fixed relative to 'today' to stay valid."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from patients.choices import CreatinineUnit, Role, Sex
from patients.models import Clinic, CvtEpisode, EpisodeRiskFactor, LabResult, Patient


class ClinicFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Clinic
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"Clinic {n}")
    time_zone = "Europe/Paris"
    alert_email = factory.Sequence(lambda n: f"alerts{n}@clinic.invalid")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@clinic.invalid")
    is_staff = True
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery")

    @factory.post_generation
    def role(self, create: bool, extracted: str | None, **kwargs) -> None:
        if create and extracted:
            self.groups.add(Group.objects.get_or_create(name=extracted)[0])
        if create:
            self.save()

    @factory.post_generation
    def clinics(self, create: bool, extracted, **kwargs) -> None:
        if create and extracted:
            for clinic in extracted:
                clinic.staff.add(self)


def nurse(clinic: Clinic, **kwargs):
    return UserFactory(role=Role.NURSE, clinics=[clinic], **kwargs)


def clinician(clinic: Clinic, **kwargs):
    return UserFactory(role=Role.CLINICIAN, clinics=[clinic], **kwargs)


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient

    clinic = factory.SubFactory(ClinicFactory)
    mrn = factory.Sequence(lambda n: f"MRN{n:06d}")
    family_name = factory.Faker("last_name")
    given_name = factory.Faker("first_name")
    date_of_birth = date(1980, 5, 17)
    sex = Sex.FEMALE
    weight_kg = Decimal("70.0")


class EpisodeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CvtEpisode
        skip_postgeneration_save = True

    patient = factory.SubFactory(PatientFactory)
    diagnosed_on = factory.LazyFunction(lambda: timezone.localdate() - timedelta(days=10))
    sinuses = factory.LazyFunction(lambda: ["superior_sagittal"])

    @factory.post_generation
    def pregnant(self, create: bool, extracted, **kwargs) -> None:
        """``pregnant=True`` records the pregnancy as its code (rules revision 2: one fact): ``puerperium`` when
        the delivery was on or before the diagnosis, else ``pregnancy``."""
        if create and extracted:
            after_delivery = self.delivered_on is not None and self.delivered_on <= self.diagnosed_on
            code = "puerperium" if after_delivery else "pregnancy"
            EpisodeRiskFactor.objects.get_or_create(episode=self, code=code, defaults={"noted_on": self.diagnosed_on})


class RiskFactorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EpisodeRiskFactor

    episode = factory.SubFactory(EpisodeFactory)
    code = "infection"
    noted_on = factory.LazyAttribute(lambda rf: rf.episode.diagnosed_on)


class LabResultFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LabResult

    patient = factory.SubFactory(PatientFactory)
    drawn_on = factory.LazyFunction(lambda: timezone.localdate() - timedelta(days=10))
    serum_creatinine = Decimal("0.90")
    creatinine_unit = CreatinineUnit.MG_DL
    hemoglobin_g_dl = Decimal("13.5")
