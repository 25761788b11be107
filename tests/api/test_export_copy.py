"""The CSV export through PostgreSQL's COPY writes the same bytes as the row-by-row writer (issue 9), for clinics
in one time zone (written in the session's zone, no conversion per row) and in several (issue 18)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from anticoag.models import InrReading
from patients.choices import Role
from patients.models import Patient
from reporting.exports import (
    DATASETS,
    WRITE_CHUNK_ROWS,
    ExportContext,
    copy_sql,
    csv_chunks,
    csv_copy_chunks,
    csv_time,
    export_rows,
    export_start,
    iso_time,
    scope_time_zone,
)
from reporting.models import ExportLog
from tests.api.conftest import client_for
from tests.factories import ClinicFactory, PatientFactory, UserFactory

pytestmark = pytest.mark.django_db

NOTES = ["", "plain", "=SUM(A1)", "-2 tablets", "@home", "\ttab", 'say "hi", twice', "two\nlines", "cr\r\nlf", "é ü"]
#: Instants around the changes to and from summer time in Berlin and New York (2026), with every shape of
#: fraction (none, ".5", ".123456", ".000001", ".12"), and one in 1890, when Berlin, New York and Kolkata kept
#: local mean time (offsets with seconds: +00:53:28, -04:56:02, +05:53:28).
INSTANTS = [
    datetime(2026, 3, 29, 0, 59, 59, 500000, tzinfo=UTC),  # Berlin +01:00, one second later +02:00
    datetime(2026, 3, 29, 1, 0, 0, tzinfo=UTC),
    datetime(2026, 3, 8, 6, 59, 59, 123456, tzinfo=UTC),  # New York -05:00, then -04:00
    datetime(2026, 3, 8, 7, 0, 0, 1, tzinfo=UTC),
    datetime(2026, 10, 25, 0, 30, 0, 120000, tzinfo=UTC),  # Berlin +02:00, then +01:00 (the hour twice)
    datetime(2026, 10, 25, 1, 30, 0, tzinfo=UTC),
    datetime(2026, 11, 1, 5, 30, 0, 500000, tzinfo=UTC),  # New York -04:00, then -05:00
    datetime(2026, 11, 1, 6, 30, 0, 1, tzinfo=UTC),
    datetime(1890, 1, 5, 8, 30, 0, 1, tzinfo=UTC),
    datetime(2026, 1, 5, 8, 30, 0, tzinfo=UTC),
]
SINGLE, SEVERAL = ("Europe/Berlin",), ("Europe/Berlin", "America/New_York", "Asia/Kolkata")


def test_export_times_drop_the_trailing_zeros_of_their_fraction():
    berlin = ZoneInfo("Europe/Berlin")
    assert iso_time(datetime(2026, 1, 5, 9, 30, tzinfo=berlin)) == "2026-01-05T09:30:00+01:00"
    assert iso_time(datetime(2026, 7, 5, 9, 30, 0, 500000, tzinfo=berlin)) == "2026-07-05T09:30:00.5+02:00"
    assert iso_time(datetime(2026, 1, 5, 9, 30, 0, 123456, tzinfo=UTC)) == "2026-01-05T09:30:00.123456+00:00"
    assert iso_time(datetime(2026, 1, 5, 9, 30, 0, 1, tzinfo=UTC)) == "2026-01-05T09:30:00.000001+00:00"
    kolkata = timezone(timedelta(hours=5, minutes=30))
    assert iso_time(datetime(2026, 1, 5, 9, 30, 0, 120000, tzinfo=kolkata)) == "2026-01-05T09:30:00.12+05:30"
    lmt = datetime(1890, 1, 5, 8, 30, 0, 1, tzinfo=UTC).astimezone(berlin)
    assert iso_time(lmt) == "1890-01-05T09:23:28.000001+00:53:28"
    assert iso_time(date(2026, 1, 5)) == "2026-01-05"


def _postgres_json(value: datetime, zone: str) -> str:
    """PostgreSQL's JSON text of ``value`` in the session zone ``zone`` (set for this transaction only)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('TimeZone', %s, true), to_json(%s::timestamptz)::text", [zone, value])
        text = cursor.fetchone()[1]
        cursor.execute("SELECT set_config('TimeZone', 'UTC', true)")
    return text.strip('"')


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "Asia/Kolkata"])
def test_the_python_format_is_postgres_json_format(zone):
    assert [iso_time(instant.astimezone(ZoneInfo(zone))) for instant in INSTANTS] == [
        _postgres_json(instant, zone) for instant in INSTANTS
    ]


def test_csv_times_are_postgres_own_iso_output():
    berlin = ZoneInfo("Europe/Berlin")
    assert csv_time(datetime(2026, 1, 5, 9, 30, tzinfo=berlin)) == "2026-01-05 09:30:00+01"
    assert csv_time(datetime(2026, 7, 5, 9, 30, 0, 500000, tzinfo=berlin)) == "2026-07-05 09:30:00.5+02"
    assert csv_time(datetime(2026, 1, 5, 9, 30, 0, 1, tzinfo=UTC)) == "2026-01-05 09:30:00.000001+00"
    kolkata = timezone(timedelta(hours=5, minutes=30))
    assert csv_time(datetime(2026, 1, 5, 9, 30, 0, 120000, tzinfo=kolkata)) == "2026-01-05 09:30:00.12+05:30"
    west = timezone(-timedelta(hours=3, minutes=30))
    assert csv_time(datetime(2026, 1, 5, 9, 30, tzinfo=west)) == "2026-01-05 09:30:00-03:30"
    lmt = datetime(1890, 1, 5, 8, 30, 0, 1, tzinfo=UTC).astimezone(berlin)
    assert csv_time(lmt) == "1890-01-05 09:23:28.000001+00:53:28"
    assert csv_time(date(2026, 1, 5)) == "2026-01-05"
    # what Python reads back is the same instant
    assert datetime.fromisoformat(csv_time(lmt)) == lmt


def _postgres_text(value: datetime, zone: str) -> str:
    """PostgreSQL's text of ``value`` under DateStyle ISO in the session zone ``zone`` (this transaction only)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('DateStyle', 'ISO, MDY', true), set_config('TimeZone', %s, true), %s::timestamptz::text",
            [zone, value],
        )
        text = cursor.fetchone()[2]
        cursor.execute("SELECT set_config('TimeZone', 'UTC', true)")
    return text


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "Asia/Kolkata"])
def test_the_csv_format_is_postgres_text_format(zone):
    assert [csv_time(instant.astimezone(ZoneInfo(zone))) for instant in INSTANTS] == [
        _postgres_text(instant, zone) for instant in INSTANTS
    ]


def _records(zones: tuple[str, ...]) -> None:
    """A patient per zone (the first with a formula MRN and a quoted name, and one without MRN nor name) and
    readings at INSTANTS with every kind of note, the patients' own times moved to INSTANTS too."""
    clinics = [ClinicFactory(name=f"Clinic {zone}", time_zone=zone) for zone in zones]
    patients = [PatientFactory(clinic=clinics[0], mrn="=MRN-1", given_name='A "quoted", name')]
    patients += [PatientFactory(clinic=clinic) for clinic in clinics[1:]]
    PatientFactory(clinic=clinics[0], mrn="", family_name="")
    for index, note in enumerate(NOTES):
        InrReading.objects.create(
            patient=patients[index % len(patients)],
            drawn_at=INSTANTS[index],
            value=Decimal("2.50") + index,
            bleeding=index % 3 == 0,
            note=note,
        )
    for index, patient in enumerate(Patient.objects.order_by("pk")):
        Patient.objects.filter(pk=patient.pk).update(created_at=INSTANTS[index], updated_at=INSTANTS[-1 - index])


@pytest.mark.parametrize("date_style", ["ISO, MDY", "SQL, DMY"])
@pytest.mark.parametrize("zones", [SINGLE, SEVERAL], ids=["one-zone", "several-zones"])
@pytest.mark.parametrize("dataset", ["inr-readings", "patients"])
def test_copy_csv_equals_the_python_csv(dataset, zones, date_style):
    _records(zones)
    admin = get_user_model().objects.create(username="root", is_superuser=True, is_staff=True)
    spec = DATASETS[dataset]
    columns = spec.columns_for(pseudonymised=False)
    queryset = spec.queryset(user=admin)
    python_count, copy_count = [0], [0]
    rows = export_rows(queryset=queryset, columns=columns, context=ExportContext(key=None, today=None))
    expected = b"".join(csv_chunks(rows, columns, python_count))
    assert b".5+01," in expected or b".5-04," in expected  # fractions without trailing zeros

    zone = scope_time_zone(None)  # an administrator's scope: every clinic
    assert zone == (zones[0] if len(zones) == 1 else None)
    iso_sql = copy_sql(queryset, columns, time_zone=zone)
    # The COPY's transaction sets DateStyle ISO whatever the session's: under "SQL, DMY" a cast to text would
    # write 29.03.2026 01:00:00 CEST.
    with connection.cursor() as cursor:
        cursor.execute(f"SET DateStyle = '{date_style}'")
    assert connection.connection.info.parameter_status("DateStyle") == date_style
    query = copy_sql(queryset, columns, time_zone=zone)
    assert query == iso_sql and query.time_zone == zone
    if zone:  # written in the session's zone: no conversion per row
        assert "AT TIME ZONE" not in query.sql
    else:
        assert 'AT TIME ZONE q."z' in query.sql
    got = b"".join(csv_copy_chunks(query, columns, copy_count))
    assert got == expected
    assert copy_count == python_count == [len(NOTES) if dataset == "inr-readings" else Patient.objects.count()]
    with connection.cursor() as cursor:  # the zone and DateStyle were local to the COPY's transaction
        cursor.execute("SHOW TimeZone")
        assert cursor.fetchone()[0] == "UTC"
        cursor.execute("SHOW DateStyle")
        assert cursor.fetchone()[0] == date_style


def test_computed_columns_fall_back_to_python():
    spec = DATASETS["inr-readings"]
    admin = get_user_model().objects.create(username="root", is_superuser=True, is_staff=True)
    assert copy_sql(spec.queryset(user=admin), spec.columns_for(pseudonymised=True)) is None


def _copy_queries(queries: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in queries.captured_queries if query["sql"].startswith("COPY")]


def test_clinics_in_one_zone_export_in_the_session_s_zone(a):
    with CaptureQueriesContext(connection) as queries:
        response = client_for(a.reporter).get("/api/v1/exports/inr-readings.csv")
        body = b"".join(response.streaming_content).decode()
    zone = a.patient.clinic.time_zone
    sqls = [query["sql"] for query in queries.captured_queries]
    assert (
        "SELECT current_setting('jit'), set_config('DateStyle', 'ISO, MDY', true), "
        f"set_config('TimeZone', '{zone}', true), set_config('jit', 'off', true)"
    ) in sqls
    [copy] = _copy_queries(queries)
    # drawn_at: COPY's own text of the value, no conversion and no cast
    assert "AT TIME ZONE" not in copy and 'q."c5",' in copy and 'q."c5"::' not in copy
    assert '"patients_clinic"' not in copy and f"'{zone}'" in copy  # the zone column a constant: no join
    assert csv_time(a.readings[0].drawn_at.astimezone(ZoneInfo(zone))) in body
    assert ExportLog.objects.latest("pk").completed


def test_clinics_in_several_zones_convert_each_row(a):
    kolkata = ClinicFactory(name="Clinic Kolkata", time_zone="Asia/Kolkata")
    patient = PatientFactory(clinic=kolkata)
    reading = InrReading.objects.create(patient=patient, drawn_at=INSTANTS[2], value=Decimal("2.1"))
    both = UserFactory(username="reporter_both", role=Role.REPORTING, clinics=[a.patient.clinic, kolkata])
    with CaptureQueriesContext(connection) as queries:
        response = client_for(both).get("/api/v1/exports/inr-readings.csv")
        body = b"".join(response.streaming_content).decode()
    assert not [query for query in queries.captured_queries if "set_config('TimeZone', 'Asia" in query["sql"]]
    [copy] = _copy_queries(queries)
    assert 'AT TIME ZONE q."z' in copy
    reading.refresh_from_db()
    assert reading.drawn_at == INSTANTS[2] and "2026-03-08 12:29:59.123456+05:30" in body
    paris = ZoneInfo(a.patient.clinic.time_zone)
    assert csv_time(a.readings[0].drawn_at.astimezone(paris)) in body


@pytest.mark.parametrize(
    "outer", [pytest.param(False, marks=pytest.mark.django_db(transaction=True), id="autocommit"), True]
)
def test_an_abandoned_stream_rolls_back_and_is_logged_unfinished(a, outer):
    """Closed by the client in the middle of the COPY: the connection is usable, in UTC again and out of the
    export's transaction, and the log row is finished but not completed."""
    from tests.api.test_export_streaming import add_readings

    add_readings(a.patient, 1, 1198)
    assert connection.in_atomic_block == outer
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        jit = cursor.fetchone()[0]
    dataset = DATASETS["inr-readings"]
    log, stream = export_start(
        user=a.reporter, dataset=dataset, fmt="csv", pseudonymised=False, filters={},
        queryset=dataset.queryset(user=a.reporter),
    )  # fmt: skip
    assert next(stream).startswith(b"id,patient_id,clinic_id")
    assert next(stream).count(b"\r\n") == WRITE_CHUNK_ROWS
    # inside the export's transaction, its TimeZone the clinic's (as the server reported it: no query can run
    # on the connection in the middle of the COPY)
    assert connection.in_atomic_block
    assert connection.connection.info.parameter_status("TimeZone") == a.patient.clinic.time_zone != "UTC"
    stream.close()  # as the WSGI server does when the client goes away
    assert connection.in_atomic_block == outer
    with connection.cursor() as cursor:
        cursor.execute("SHOW TimeZone")
        assert cursor.fetchone()[0] == "UTC"
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == jit
        cursor.execute("SELECT count(*) FROM anticoag_inrreading")
        assert cursor.fetchone()[0] == 1200
    log.refresh_from_db()
    assert log.finished_at is not None and not log.completed and log.row_count == WRITE_CHUNK_ROWS


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
