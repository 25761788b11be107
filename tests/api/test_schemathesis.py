"""Schemathesis against our own OpenAPI schema, in process on the WSGI app, with a token.

Every operation of the schema gets generated requests: valid ones, invalid ones (which must be refused, not
crash), and — for operations on one record — valid ones aimed at records that exist, so the success paths
run too. No answer may be a server error, and every answer must match the schema: its status code is
documented, its content type is the documented one, its body validates against the documented shape.
Bounded: a few examples per operation and mode, no deadline, derandomised so that a failure reproduces.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from anticoag.procedure_services import procedure_record
from config.wsgi import application
from patients.choices import Role
from reporting.ical import calendar_feed_create
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 6
#: The schema has 32 operations; fewer tested means the schema or the loader lost some.
MINIMUM_OPERATIONS = 32


@pytest.fixture
def wsgi_in_test_transaction():
    """Call the real WSGI app inside the test's transaction. Django closes "old" connections when a request
    starts and ends, and inside a test transaction every connection looks old; its test client unhooks that
    signal the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield application
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _run(operation, strategy, headers: dict[str, str], statuses: Counter) -> None:
    @given(case=strategy)
    @hypothesis_settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case) -> None:
        response = case.call(headers=headers)
        statuses[(operation.label, response.status_code)] += 1
        case.validate_response(response, checks=CHECKS)

    run()


def test_every_operation_answers_within_its_schema_and_never_with_a_server_error(
    a, b, pseudonym_key, wsgi_in_test_transaction
):
    # given a clinician who is also a nurse (so that every operation is open to her) in clinic A
    user = UserFactory(username="fuzzer", role=Role.CLINICIAN, clinics=[a.clinic])
    user.groups.add(*a.nurse.groups.all())
    a.patient.primary_nurse = user
    a.patient.save()
    token, _ = Token.objects.get_or_create(user=user)
    headers = {"Authorization": f"Token {token.key}"}
    known = {
        "/api/v1/patients/": a.patient.pk,
        "/api/v1/episodes/": a.episode.pk,
        "/api/v1/medications/": a.medication.pk,
        "/api/v1/plans/": a.plan.pk,
        "/api/v1/inr-readings/": a.readings[0].pk,
        "/api/v1/follow-ups/": a.follow_up.pk,
        "/api/v1/reminders/": a.reminder.pk,
        "/api/v1/procedures/": procedure_record(
            patient=a.patient, scheduled_on=a.episode.diagnosed_on + timedelta(days=7), kind="dental",
            bleed_risk="low", agent="warfarin",
        ).pk,
    }  # fmt: skip
    known["/api/v1/calendar-feeds/"] = calendar_feed_create(user=user)[0].pk  # fuzzed DELETEs revoke this one
    _, feed_token = calendar_feed_create(user=user)  # and the .ics is read through this one

    schema = schemathesis.openapi.from_wsgi(
        "/api/v1/schema/", wsgi_in_test_transaction, headers={**headers, "Accept": "application/json"}
    )

    statuses: Counter = Counter()
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run(operation, operation.as_strategy(generation_mode=mode), headers, statuses)
        # Valid requests aimed at existing records of the user's clinic.
        path = operation.path
        fixed = None
        if "{token}" in path:
            fixed = {"token": feed_token}
        elif "{id}" in path:
            fixed = {"id": next(pk for prefix, pk in known.items() if path.startswith(prefix))}
        if fixed:
            strategy = operation.as_strategy(generation_mode=GenerationMode.POSITIVE, path_parameters=fixed)
            _run(operation, strategy, headers, statuses)
        tested += 1

    # then: nothing failed (validate_response raises), and the run really covered the API
    assert tested >= MINIMUM_OPERATIONS, f"only {tested} operations in the schema"
    succeeded = {label for (label, code), _ in statuses.items() if 200 <= code < 300}
    assert len(succeeded) >= 25, f"only these operations ever succeeded: {sorted(succeeded)}"
    assert sum(statuses.values()) >= tested * EXAMPLES_PER_OPERATION
