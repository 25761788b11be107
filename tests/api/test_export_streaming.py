"""An export of 200,000 INR readings streams in constant memory and a constant number of queries.

Peak memory (tracemalloc) and queries are measured while the streamed response is consumed, at 20,000 and at
200,000 rows: ten times the rows must not cost meaningfully more memory, nor a single query more. NDJSON goes
through the same reader with another writer: it is measured at a tenth of the sizes (tracemalloc makes the
export about ten times slower; a writer that kept its rows would still show at 20,000 rows, some 4 MiB).
"""

from __future__ import annotations

import gc
import tracemalloc
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from anticoag.models import InrReading
from reporting.models import ExportLog
from tests.api.conftest import client_for

pytestmark = pytest.mark.django_db

#: Token, the token user's lock-out check, clinics, permissions (user, groups), the log row, the cursor, the
#: log's completion.
QUERIES = 8
#: CSV goes through COPY, the clinic's zone set for it: and the zone of the clinics in scope, the savepoint
#: (a transaction outside tests) and its release, the zone set and set back.
CSV_QUERIES = QUERIES + 5


def add_readings(patient, first: int, last: int) -> None:
    """Readings number ``first``..``last`` of the patient, one minute apart, inserted by the database itself."""
    start = timezone.now() - timedelta(days=400)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {InrReading._meta.db_table} (patient_id, drawn_at, value, source, bleeding, note, created_at)
            SELECT %s, %s + make_interval(mins => g), 2.5, 'lab', false, 'a note', now()
            FROM generate_series(%s, %s) AS g
            """,
            [patient.pk, start, first, last],
        )


def consume(client, url: str) -> tuple[int, int, int]:
    """(peak traced memory in bytes, queries, bytes received) of one export, read to the end."""
    gc.collect()
    tracemalloc.start()
    try:
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
            assert response.status_code == 200
            received = sum(len(chunk) for chunk in response.streaming_content)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, len(queries), received


@pytest.mark.parametrize(("fmt", "small", "large"), [("csv", 20_000, 200_000), ("ndjson", 2_000, 20_000)])
def test_exporting_200000_inr_readings_uses_constant_memory_and_queries(
    a, fmt, small, large, django_assert_num_queries
):
    client = client_for(a.reporter)
    url = f"/api/v1/exports/inr-readings.{fmt}"
    queries = CSV_QUERIES if fmt == "csv" else QUERIES
    consume(client, url)  # warm up: first-use imports and caches are not what is measured

    add_readings(a.patient, 1, small)
    with django_assert_num_queries(queries):
        small_peak, small_queries, small_bytes = consume(client, url)
    assert ExportLog.objects.latest("pk").row_count == small + 2  # and the fixture's two readings

    add_readings(a.patient, small + 1, large)
    with django_assert_num_queries(queries):
        large_peak, large_queries, large_bytes = consume(client, url)
    log = ExportLog.objects.latest("pk")
    assert log.row_count == large + 2 and log.completed

    print(
        f"\n{fmt}: {small} rows → peak {small_peak / 1024:.0f} KiB, {small_queries} queries, {small_bytes} bytes; "
        f"{large} rows → peak {large_peak / 1024:.0f} KiB, {large_queries} queries, {large_bytes} bytes"
    )
    assert large_bytes > 9 * small_bytes  # ten times the rows really went out
    assert small_queries == large_queries == queries
    assert large_peak < 1.5 * small_peak + 256 * 1024, (small_peak, large_peak)
