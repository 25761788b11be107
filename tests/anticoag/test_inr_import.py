"""CSV import of INR readings: all or nothing, a per-row error report, 10,000 rows in one transaction."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from anticoag.inr import inr_import_csv, inr_recorded_many
from anticoag.models import InrReading
from scheduling.models import FollowUp, FollowUpKind, FollowUpStatus, Reminder
from tests.factories import ClinicFactory, PatientFactory, nurse

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinic():
    return ClinicFactory(time_zone="Europe/Paris")


@pytest.fixture
def staff(clinic):
    return nurse(clinic)


@pytest.fixture
def patients(clinic):
    return [PatientFactory(clinic=clinic, mrn=f"A{n}") for n in range(3)]


def stamp(days_ago: float) -> str:
    moment = (timezone.now() - timedelta(days=days_ago)).astimezone(UTC).replace(microsecond=0)
    return moment.isoformat()


def csv_file(text: str, *, name: str = "export.csv", bom: bool = False, encoding: str = "utf-8") -> io.BytesIO:
    data = text.encode(encoding)
    file = io.BytesIO((b"\xef\xbb\xbf" if bom else b"") + data)
    file.name = name
    return file


def good_rows() -> str:
    return (
        "mrn,drawn_at,inr,source,bleeding\n"
        f"A0,{stamp(9)},2.4,lab,no\n"
        f"A1,{stamp(8)},1.9,poc,no\n"
        f"a2,{stamp(7)},2.8,self_test,\n"  # MRNs match case-insensitively
        f"A0,{stamp(2)},2.6,,\n"
    )


def test_a_clean_file_imports_every_row_and_announces_each_patient_once(clinic, staff, patients):
    heard = []

    def listener(sender, patients, readings, **kwargs):
        heard.extend((patient.mrn, len(readings[patient.pk])) for patient in patients)

    inr_recorded_many.connect(listener)
    try:
        result = inr_import_csv(clinic=clinic, file=csv_file(good_rows()), entered_by=staff)
    finally:
        inr_recorded_many.disconnect(listener)
    assert result.ok, result.errors
    assert (result.imported, result.patients) == (4, 3)
    assert InrReading.objects.count() == 4
    assert set(InrReading.objects.values_list("entered_by", flat=True)) == {staff.pk}
    assert sorted(heard) == [("A0", 2), ("A1", 1), ("A2", 1)]
    # the post-import hook scheduled each patient's next INR test, keyed by the latest reading
    latest_a0 = InrReading.objects.filter(patient=patients[0]).latest("drawn_at")
    assert FollowUp.objects.filter(kind=FollowUpKind.INR_TEST, status=FollowUpStatus.SCHEDULED).count() == 3
    assert FollowUp.objects.filter(key=f"inr:{patients[0].pk}:{latest_a0.pk}").exists()
    a1 = InrReading.objects.get(patient=patients[1])
    assert (a1.source, str(a1.value)) == ("poc", "1.90")
    assert a1.note == "CSV import export.csv, row 3"


def test_one_bad_row_among_good_ones_imports_nothing_and_reports_that_row(clinic, staff, patients):
    text = good_rows() + f"A1,{stamp(1)},25,lab,no\n" + f"A2,{stamp(1)},2.5,lab,no\n"
    result = inr_import_csv(clinic=clinic, file=csv_file(text), entered_by=staff)
    assert not result.ok
    assert result.imported == 0
    assert len(result.errors) == 1
    [error] = result.errors
    assert (error["row"], error["field"]) == (6, "inr")  # header is row 1: the 5th data row is row 6
    assert "outside the plausible range" in error["message"]
    assert not InrReading.objects.exists()
    assert not FollowUp.objects.exists()


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        ("ZZ9,{t},2.5,lab,no", "mrn", "No patient with MRN"),
        ("OTHER,{t},2.5,lab,no", "mrn", "No patient with MRN"),  # exists, but in another clinic
        ("A0,2026-13-45T10:00:00+01:00,2.5,lab,no", "drawn_at", "not an ISO 8601"),
        ("A0,2026-02-30,2.5,lab,no", "drawn_at", "not a calendar date"),
        ("A0,2025-01-05T10:00:00,2.5,lab,no", "drawn_at", "no UTC offset"),
        ("A0,{future},2.5,lab,no", "drawn_at", "in the future"),
        ("A0,{t},two,lab,no", "inr", "not a number"),
        ("A0,{t},NaN,lab,no", "inr", "not a number"),
        ("A0,{t},0.3,lab,no", "inr", "outside the plausible range"),
        ("A0,{t},2.555,lab,no", "inr", "more than two decimals"),
        ("A0,{t},2.5,fax,no", "source", "Unknown source"),
        ("A0,{t},2.5,lab,perhaps", "bleeding", "not yes/no"),
        ("A0,{t},2.5,lab", "row", "Expected 5 columns"),
        ("A0,{dup},2.5,lab,no", "drawn_at", "Same patient and time as row 2"),
    ],
)
def test_each_kind_of_bad_row_is_reported_with_row_and_field(clinic, staff, patients, line, field, words):
    PatientFactory(mrn="OTHER")  # another clinic's patient
    first = stamp(9)
    text = (
        "mrn,drawn_at,inr,source,bleeding\n"
        f"A0,{first},2.4,lab,no\n" + line.format(t=stamp(3), future=stamp(-2), dup=first) + "\n"
    )
    result = inr_import_csv(clinic=clinic, file=csv_file(text), entered_by=staff)
    assert [(e["row"], e["field"]) for e in result.errors] == [(3, field)], result.errors
    assert words in result.errors[0]["message"]
    assert not InrReading.objects.exists()


def test_a_row_that_duplicates_a_stored_reading_is_refused(clinic, staff, patients):
    when = stamp(4)
    InrReading.objects.create(patient=patients[0], drawn_at=datetime.fromisoformat(when), value="2.5")
    text = f"mrn,drawn_at,inr\nA1,{stamp(3)},2.2\nA0,{when},2.6\n"
    result = inr_import_csv(clinic=clinic, file=csv_file(text), entered_by=staff)
    assert result.errors == [
        {"row": 3, "field": "drawn_at", "message": "This patient already has an INR at that time."}
    ]
    assert InrReading.objects.count() == 1


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("", "file", "empty"),
        ("mrn,drawn_at,inr\n", "file", "no rows"),
        ("mrn,inr\nA0,2.5\n", "header", "Missing column(s) drawn_at"),
        ("mrn,drawn_at,inr,bleding\nA0,2026-01-05,2.5,no\n", "header", "Unknown column(s) bleding"),
    ],
)
def test_file_level_problems(clinic, staff, patients, text, field, words):
    result = inr_import_csv(clinic=clinic, file=csv_file(text), entered_by=staff)
    assert result.errors[0]["field"] == field
    assert words in result.errors[0]["message"]
    assert not InrReading.objects.exists()


def test_a_non_utf8_file_is_refused(clinic, staff, patients):
    result = inr_import_csv(
        clinic=clinic, file=csv_file("mrn,drawn_at,inr\nÄ0,2026-01-05,2.5\n", encoding="latin-1"), entered_by=staff
    )
    assert result.errors[0]["field"] == "file"
    assert "UTF-8" in result.errors[0]["message"]


def test_bom_semicolons_decimal_commas_dates_and_labels_are_understood(clinic, staff, patients):
    day = (timezone.localdate() - timedelta(days=5)).isoformat()
    text = f"MRN;Drawn_At;INR;Source;Bleeding\nA0;{day};2,5;Point of care;yes\nA1;{stamp(1)};3;Laboratory;0\n"
    result = inr_import_csv(clinic=clinic, file=csv_file(text, bom=True), entered_by=staff)
    assert result.ok, result.errors
    a0 = InrReading.objects.get(patient=patients[0])
    assert (str(a0.value), a0.source, a0.bleeding) == ("2.50", "poc", True)
    # a plain date is 00:00 in the clinic's time zone (Paris)
    local = a0.drawn_at.astimezone(ZoneInfo("Europe/Paris"))
    assert (local.date().isoformat(), local.hour, local.minute) == (day, 0, 0)
    # bleeding noted → an urgent alert for that reading (critical by bleeding)
    assert Reminder.objects.get().inr_reading == a0


def test_a_database_refusal_in_the_last_batch_rolls_back_every_batch(clinic, staff, patients):
    # given a clean 2,500-row file (three INSERT batches) whose last batch the database refuses
    rows = [f"A{n % 3},{stamp(300 - n * 0.1)},2.5" for n in range(2500)]
    text = "mrn,drawn_at,inr\n" + "\n".join(rows) + "\n"
    batches = []

    def refuse_third_batch(execute, sql, params, many, context):
        if sql.startswith('INSERT INTO "anticoag_inrreading"'):
            batches.append(sql)
            if len(batches) == 3:
                raise IntegrityError("duplicate key value violates unique constraint")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refuse_third_batch):
        result = inr_import_csv(clinic=clinic, file=csv_file(text), entered_by=staff)
    # then the first two batches are gone too, and the report says nothing was imported
    assert len(batches) == 3
    assert not result.ok and result.imported == 0
    assert "nothing was imported" in result.errors[0]["message"]
    assert not InrReading.objects.exists()
    assert not FollowUp.objects.exists()


def test_a_clean_10000_row_file_imports_in_one_transaction_with_few_queries(
    clinic, staff, django_assert_max_num_queries
):
    # given 10 patients with 1,000 readings each, 8 hours apart, over the last ~333 days
    for n in range(10):
        PatientFactory(clinic=clinic, mrn=f"BULK{n}")
    values = ("1.8", "2.2", "2.5", "2.9", "3.2")
    lines = [
        f"BULK{n},{stamp(334 - i / 3)},{values[(i + n) % len(values)]},lab,no" for n in range(10) for i in range(1000)
    ]
    text = "mrn,drawn_at,inr,source,bleeding\n" + "\n".join(lines) + "\n"
    inserts = []

    def watch(execute, sql, params, many, context):
        if sql.startswith('INSERT INTO "anticoag_inrreading"'):
            inserts.append((connection.in_atomic_block, tuple(connection.savepoint_ids)))
        return execute(sql, params, many, context)

    # when it is imported: a few queries to validate, 10 bulk INSERTs, and the post-import work for all the
    # patients at once (locks, advice, items, audit): none per row, none per patient
    started = time.monotonic()
    with django_assert_max_num_queries(20 + 10), connection.execute_wrapper(watch):
        result = inr_import_csv(clinic=clinic, file=csv_file(text), entered_by=staff)
    elapsed = time.monotonic() - started
    # then every row is there, written in 10 batches of 1,000 inside one and the same transaction
    assert result.ok, result.errors[:3]
    assert result.imported == 10_000
    assert InrReading.objects.filter(patient__clinic=clinic).count() == 10_000
    assert len(inserts) == 10
    assert all(in_atomic for in_atomic, _ in inserts)
    assert len(set(inserts)) == 1  # the same atomic block (same savepoint stack) for every batch
    assert FollowUp.objects.filter(kind=FollowUpKind.INR_TEST).count() == 10  # one per patient
    assert elapsed < 60


def import_for(clinic, staff, patients: int, *, prefix: str, critical: bool = False) -> tuple[int, object]:
    """Import 5 readings for each of ``patients`` new patients (one with an open INR test already, one whose
    next test a clinician set); (queries, result)."""
    people = [PatientFactory(clinic=clinic, mrn=f"{prefix}{n}") for n in range(patients)]
    for index, patient in enumerate(people[:2]):
        reading = InrReading.objects.create(patient=patient, drawn_at=timezone.now() - timedelta(days=40), value=2.5)
        FollowUp.objects.create(
            patient=patient,
            kind=FollowUpKind.INR_TEST,
            due_on=timezone.localdate(),
            rule="clinician_next_inr" if index else "inr:test",
            key=f"inr:{patient.pk}:{reading.pk}",
        )
    lines = [
        f"{patient.mrn},{stamp(30 - 5 * i)},{'9.6' if critical and n == 0 and i == 4 else '2.5'},lab,no"
        for n, patient in enumerate(people)
        for i in range(5)
    ]
    counter = CaptureQueriesContext(connection)
    with counter:
        result = inr_import_csv(clinic=clinic, file=csv_file("mrn,drawn_at,inr,source,bleeding\n" + "\n".join(lines)),
                                entered_by=staff)  # fmt: skip
    assert result.ok, result.errors[:3]
    return len(counter), result


def test_the_post_import_work_costs_the_same_queries_for_5_or_50_patients(clinic, staff):
    small, _ = import_for(clinic, staff, 5, prefix="S")
    large, result = import_for(clinic, staff, 50, prefix="L")
    assert result.patients == 50
    assert small == large


def test_the_set_based_post_import_work_schedules_as_the_per_patient_path_does(clinic, staff):
    from auditlog.models import LogEntry

    from scheduling.follow_ups import inr_follow_up_sync

    _, result = import_for(clinic, staff, 6, prefix="E", critical=True)
    assert result.patients == 6
    batch = {
        (
            f.patient_id,
            f.kind,
            f.status,
            f.due_on,
            f.window_end_on,
            f.rule,
            f.source,
            f.key,
            f.completed_on,
            f.episode_id,
        )
        for f in FollowUp.objects.all()
    }
    # every patient: one open INR test keyed by its latest reading; the open tests of E0 and E1 (a
    # clinician's date, for an older reading) are completed by the imported readings
    open_items = FollowUp.objects.filter(kind=FollowUpKind.INR_TEST, status=FollowUpStatus.SCHEDULED)
    assert open_items.count() == 6
    e0, e1 = (InrReading.objects.filter(patient__mrn=m).order_by("pk") for m in ("E0", "E1"))
    for mrn in ("E0", "E1"):
        done = FollowUp.objects.get(patient__mrn=mrn, status=FollowUpStatus.DONE)
        assert done.completed_on == timezone.localdate(
            InrReading.objects.filter(patient__mrn=mrn).latest("drawn_at").drawn_at, ZoneInfo("Europe/Paris")
        )
    # the critical INR of E0 raised its urgent alert, once
    assert Reminder.objects.get().inr_reading == e0.last()
    # each created or changed item is in the audit log, like a save would have put it
    logged = LogEntry.objects.filter(content_type__model="followup")
    assert logged.filter(action=LogEntry.Action.CREATE).count() == 6 + 2  # and the two created by the test
    assert logged.filter(action=LogEntry.Action.UPDATE).count() == 2  # the two open tests, completed
    # running the per-patient path again over the same readings changes nothing
    for patient in {f.patient for f in FollowUp.objects.select_related("patient__clinic")}:
        inr_follow_up_sync(patient=patient, readings=list(InrReading.objects.filter(patient=patient)))
    again = {
        (
            f.patient_id,
            f.kind,
            f.status,
            f.due_on,
            f.window_end_on,
            f.rule,
            f.source,
            f.key,
            f.completed_on,
            f.episode_id,
        )
        for f in FollowUp.objects.all()
    }
    assert again == batch
    assert Reminder.objects.count() == 1
    assert e1.exists()
