"""The OpenAPI schema is generated without a warning and documents the error answers."""

from __future__ import annotations

import pytest
from django.core.management import call_command


def test_the_schema_generates_without_warnings_and_validates(tmp_path):
    # --fail-on-warn: an endpoint the generator cannot describe (a missing serializer, a clashing enum)
    # fails here instead of silently becoming "any object" in the schema
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    assert "/api/v1/exports/research/inr-readings.{fmt}" in target.read_text()


@pytest.mark.django_db
def test_operations_document_their_refusals(a):
    from tests.api.conftest import client_for

    schema = client_for(a.reporter).get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    patients = schema["paths"]["/api/v1/patients/"]["get"]
    assert {"200", "400", "401", "403"} <= set(patients["responses"])
    assert {p["name"] for p in patients["parameters"]} >= {"clinic", "nurse", "updated_since", "cursor", "page_size"}
    confirm = schema["paths"]["/api/v1/plans/{id}/confirm/"]["post"]
    assert {"201", "400", "401", "403", "404", "415"} <= set(confirm["responses"])
    assert schema["components"]["schemas"]["ValidationError"]["type"] == "object"
    assert "An unknown query parameter" in schema["info"]["description"]
