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
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS as CHECK_REGISTRY
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from anticoag.models import InrImport
from anticoag.procedure_services import procedure_record
from config.wsgi import application
from outcomes.models import ClinicalEvent, OutcomeAssessment
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
        "/api/v1/inr-imports/": InrImport.objects.create(clinic=a.clinic, uploaded_by=user, content=b"").pk,
    }  # fmt: skip
    known["/api/v1/outcome-assessments/"] = OutcomeAssessment.objects.create(
        patient=a.patient, episode=a.episode, timepoint="other", assessed_on=a.episode.diagnosed_on, mrs=1
    ).pk
    known["/api/v1/clinical-events/"] = ClinicalEvent.objects.create(
        patient=a.patient, episode=a.episode, kind="other_vte", vte_site="pe", occurred_on=a.episode.diagnosed_on
    ).pk
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


# ---------------------------------------------------------------------------------------------------------------
# Every check Schemathesis has ("--checks all"), for each role and for an anonymous caller (issue 13).
# ---------------------------------------------------------------------------------------------------------------

ALL_CHECKS = CHECK_REGISTRY.get_all()
ROLE_EXAMPLES = 4

#: "Schema-violating request accepted": none is judged a false positive; any such answer fails the test.
ACCEPTED_NEGATIVE_FALSE_POSITIVES: dict[str, str] = {}

#: "Schema-valid request rejected" (a 400 for a request the schema allows) judged false positives, and why.
REJECTED_POSITIVE_FALSE_POSITIVES: dict[str, str] = {
    "GET /api/v1/": "list operations: `cursor` is an opaque token the API itself hands out in `next`; any other "
    "string is refused with 400 naming `cursor` (a schema cannot enumerate valid cursors)",
    "POST /api/v1/auth/token/": "a well-formed username and password that match no account: 400 is the answer",
    "POST /api/v1/procedures/": "a well-formed patient id that names no patient of the user's clinics: 400 "
    "naming `patient` (a schema cannot know which ids exist)",
    "POST /api/v1/clinical-events/": "a well-formed patient id that names no patient of the user's clinics: 400 "
    "naming `patient` (a schema cannot know which ids exist)",
    "POST /api/v1/outcome-assessments/": "a well-formed episode id that names no episode of the user's clinics: "
    "400 naming `episode` (a schema cannot know which ids exist)",
    "POST /api/v1/recanalizations/": "a well-formed follow-up id that names no imaging item of the user's clinics, "
    "or grades for sinuses the episode does not record: 400 naming the field (depends on stored records)",
    "GET /api/v1/quality-report.csv": "a period whose start falls after its (default) end: 400 naming `end` "
    "(a cross-field rule an OpenAPI schema cannot state)",
    "POST /api/v1/inr-readings/": "drf-spectacular's pattern for a decimal string also matches the empty string; "
    "the serializer refuses '' as not a number (a 400 naming `value`)",
}


EXAMPLES: dict[tuple[str, str], str] = {}


def _judged(operation: str, label: str) -> bool:
    if label == "GET /api/v1/":  # list operations only: their path ends in "/" and names no record
        return operation.startswith(label) and operation.endswith("/") and "{" not in operation
    return operation == label


def _record(failures: Counter, label: str, failure, case, response) -> None:
    failures[(label, failure.title)] += 1
    EXAMPLES.setdefault(
        (label, failure.title), f"query={case.query} body={str(case.body)[:200]} → {response.text[:300]}"
    )


def _run_collecting(operation, strategy, headers: dict[str, str], failures: Counter, statuses: Counter) -> None:
    @given(case=strategy)
    @hypothesis_settings(
        max_examples=ROLE_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case) -> None:
        response = case.call(headers=headers)
        statuses[f"{response.status_code // 100}xx"] += 1
        try:
            case.validate_response(response, checks=ALL_CHECKS, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                _record(failures, operation.label, failure, case, response)
        except Failure as failure:
            _record(failures, operation.label, failure, case, response)

    try:
        run()
    except Unsatisfiable:
        # every generated case was dropped before a request left (the operation has nothing to vary in this
        # mode, e.g. no parameter to make invalid): nothing was sent, nothing to check
        statuses["unsatisfiable"] += 1


@pytest.mark.parametrize("role", [Role.CLINICIAN, Role.NURSE, Role.REPORTING, "anonymous"])
def test_all_checks_for_each_role_find_no_server_error_and_no_accepted_invalid_request(
    a, b, pseudonym_key, wsgi_in_test_transaction, role
):
    # given a member of clinic A in the role (or nobody), and valid ids of clinic A's records
    headers: dict[str, str] = {}
    if role != "anonymous":
        user = UserFactory(username=f"fuzz_{role}", role=role, clinics=[a.clinic])
        headers = {"Authorization": f"Token {Token.objects.get_or_create(user=user)[0].key}"}
    schema = schemathesis.openapi.from_wsgi(
        "/api/v1/schema/",
        wsgi_in_test_transaction,
        headers={"Authorization": f"Token {Token.objects.get_or_create(user=a.clinician)[0].key}"},
    )
    failures: Counter = Counter()
    statuses: Counter = Counter()
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run_collecting(operation, operation.as_strategy(generation_mode=mode), headers, failures, statuses)

    # then: no server error, nothing invalid accepted (beyond the judged false positives), every operation run
    report = "\n".join(
        f"{label}: {title} ×{count}\n    e.g. {EXAMPLES.get((label, title), '')}"
        for (label, title), count in sorted(failures.items())
    )
    print(f"\n{role}: {operations} operations, answers by class {dict(sorted(statuses.items()))}\n{report}")
    assert operations >= MINIMUM_OPERATIONS
    assert statuses["5xx"] == 0, report
    assert statuses["2xx"] + statuses["4xx"] >= operations, statuses
    accepted = [
        key for key in failures if "accepted" in key[1].lower() and key[0] not in ACCEPTED_NEGATIVE_FALSE_POSITIVES
    ]
    assert not accepted, report
    judged = {
        key
        for key in failures
        if key[1] == "Schema-valid request rejected"
        and any(_judged(key[0], label) for label in REJECTED_POSITIVE_FALSE_POSITIVES)
    }
    assert not set(failures) - judged - set(accepted), report
