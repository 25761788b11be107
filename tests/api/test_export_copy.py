"""The CSV export through PostgreSQL's COPY writes the same bytes as the row-by-row writer (issue 9)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from anticoag.models import InrReading
from reporting.exports import (
    DATASETS,
    WRITE_CHUNK_ROWS,
    ExportContext,
    copy_sql,
    csv_chunks,
    csv_copy_chunks,
    export_rows,
)
from tests.api.conftest import client_for
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

#: PostgreSQL writes 0.12 s as ".12", Python as ".120000": every shape of fraction.
MICROSECONDS = [0, 123456, 120000, 5, 100000]
NOTES = ["", "plain", "=SUM(A1)", "-2 tablets", "@home", "\ttab", 'say "hi", twice', "two\nlines", "cr\r\nlf", "é ü"]


@pytest.mark.parametrize("date_style", ["ISO, MDY", "SQL, DMY"])
@pytest.mark.parametrize("dataset", ["inr-readings", "patients"])
def test_copy_csv_equals_the_python_csv(dataset, date_style):
    patient = PatientFactory(mrn="=MRN-1", given_name='A "quoted", name')
    PatientFactory(clinic=patient.clinic, mrn="", family_name="")
    for index, note in enumerate(NOTES):
        InrReading.objects.create(
            patient=patient,
            drawn_at=datetime(2026, 1, 1 + index, 8, 30, 0, MICROSECONDS[index % len(MICROSECONDS)], tzinfo=UTC),
            value=Decimal("2.50") + index,
            bleeding=index % 3 == 0,
            note=note,
        )
    admin = get_user_model().objects.create(username="root", is_superuser=True, is_staff=True)
    spec = DATASETS[dataset]
    columns = spec.columns_for(pseudonymised=False)
    queryset = spec.queryset(user=admin)
    python_count, copy_count = [0], [0]
    rows = export_rows(queryset=queryset, columns=columns, context=ExportContext(key=None, today=None))
    expected = b"".join(csv_chunks(rows, columns, python_count))
    # DateStyle ISO (the server default) takes the casts, any other the to_char path: both write the same bytes
    with connection.cursor() as cursor:
        cursor.execute(f"SET DateStyle = '{date_style}'")
    sql = copy_sql(queryset, columns)
    assert sql is not None and ("'YYYY-MM-DD" in sql) == (date_style != "ISO, MDY")
    got = b"".join(csv_copy_chunks(sql, columns, copy_count))
    assert got == expected
    assert copy_count == python_count


def test_computed_columns_fall_back_to_python():
    spec = DATASETS["inr-readings"]
    admin = get_user_model().objects.create(username="root", is_superuser=True, is_staff=True)
    assert copy_sql(spec.queryset(user=admin), spec.columns_for(pseudonymised=True)) is None


def test_the_export_body_comes_in_a_bounded_number_of_chunks(a):
    """No Python loop per row between COPY and the response: 1,200 rows arrive as the header and three chunks
    of at most WRITE_CHUNK_ROWS rows, not as a chunk per row."""
    from tests.api.test_export_streaming import add_readings

    add_readings(a.patient, 1, 1198)  # and the fixture's two readings
    response = client_for(a.reporter).get("/api/v1/exports/inr-readings.csv")
    assert response.status_code == 200 and response.streaming
    chunks = list(response.streaming_content)
    assert b"".join(chunks).count(b"\r\n") == 1 + 1200
    assert len(chunks) == 1 + math.ceil(1200 / WRITE_CHUNK_ROWS) == 4
    assert all(chunk.count(b"\r\n") == WRITE_CHUNK_ROWS for chunk in chunks[1:-1])
