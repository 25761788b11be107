"""Factories for follow-ups and reminders (the shared ones live in tests/factories.py)."""

from __future__ import annotations

import factory
from django.utils import timezone

from scheduling.models import FollowUp, FollowUpKind, FollowUpStatus, Reminder, ReminderKind, ReminderStatus
from tests.factories import ClinicFactory, PatientFactory


class FollowUpFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FollowUp

    patient = factory.SubFactory(PatientFactory)
    kind = FollowUpKind.INR_TEST
    due_on = factory.LazyFunction(timezone.localdate)
    status = FollowUpStatus.SCHEDULED
    rule = "test"
    key = factory.Sequence(lambda n: f"test-followup-{n}")


class ReminderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Reminder
        skip_postgeneration_save = True

    clinic = factory.SubFactory(ClinicFactory)
    kind = ReminderKind.URGENT
    recipient = factory.Sequence(lambda n: f"recipient{n}@clinic.invalid")
    status = ReminderStatus.PENDING
    next_attempt_at = factory.LazyFunction(timezone.now)
    idempotency_key = factory.Sequence(lambda n: f"test-reminder-{n}")

    @factory.post_generation
    def follow_ups(self, create: bool, extracted, **kwargs) -> None:
        if create and extracted:
            self.follow_ups.add(*extracted)
