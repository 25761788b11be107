"""The dashboard's quality figures kept in the database (anticoag/ttr_snapshot.py, issue 18): the same reports
as the direct computation after every kind of write, only stale patients computed again, the whole snapshot at
a new period or policy, and beat's refresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from anticoag.inr import clinic_ttr_reports, inr_reading_record
from anticoag.models import InrReading, PlanDecision, TtrSnapshot, TtrSnapshotRow, TtrStalePatient
from anticoag.services import plan_confirm
from clinic.dashboard import clinic_days, quality_periods, refresh_quality_snapshots
from clinic.tasks import refresh_quality_task
from config.celery import app
from patients.models import Patient
from tests.factories import ClinicFactory, EpisodeFactory, PatientFactory, clinician

pytestmark = pytest.mark.django_db


def ago(days: float, hour: int = 9) -> datetime:
    now = timezone.now().astimezone(UTC)
    return (now - timedelta(days=days)).replace(hour=hour, minute=0, second=0, microsecond=0)


def _warfarin(clinic, doctor):
    episode = EpisodeFactory(patient__clinic=clinic)
    plan_confirm(plan=episode.plan, user=doctor, agent="warfarin")
    return episode.patient


@pytest.fixture
def network():
    """Two clinics in different zones: warfarin patients in and out of range, one never tested (lost), one whose
    last INR is 70 days old (lost), one not on warfarin."""
    paris, auckland = ClinicFactory(time_zone="Europe/Paris"), ClinicFactory(time_zone="Pacific/Auckland")
    doctors = {paris.pk: clinician(paris), auckland.pk: clinician(auckland)}
    a, b, lost_old = (_warfarin(paris, doctors[paris.pk]) for _ in range(3))
    for day, value in ((40, "1.5"), (30, "2.5"), (20, "3.5"), (10, "2.8")):
        inr_reading_record(patient=a, drawn_at=ago(day), value=value, source="lab")
    for day in (40, 26, 12):
        inr_reading_record(patient=b, drawn_at=ago(day), value="2.5", source="lab")
    inr_reading_record(patient=lost_old, drawn_at=ago(70), value="2.5", source="lab")
    c = _warfarin(auckland, doctors[auckland.pk])
    for day, value in ((35, "2.1"), (5, "4.1")):
        inr_reading_record(patient=c, drawn_at=ago(day), value=value, source="lab")
    _warfarin(auckland, doctors[auckland.pk])  # never tested
    untreated = PatientFactory(clinic=auckland)
    InrReading.objects.create(patient=untreated, drawn_at=ago(15), value=Decimal("1.1"))
    return {"clinics": [paris, auckland], "doctors": doctors, "a": a, "b": b, "c": c, "untreated": untreated}


def _periods(clinics):
    return quality_periods(clinic_days(clinics))


def _direct(clinics):
    reports = clinic_ttr_reports(periods=_periods(clinics))
    for report in reports.values():
        del report["patients"]  # the snapshot path gives the patients' TTRs, not their sums
    return reports


def _snapshot(clinics):
    return clinic_ttr_reports(periods=_periods(clinics), snapshot=True)


def _assert_same(clinics):
    snapshot = _snapshot(clinics)
    assert snapshot == _direct(clinics)
    assert not TtrStalePatient.objects.filter(patient_id__in=Patient.objects.filter(clinic__in=clinics)).exists()
    return snapshot


def test_the_snapshot_gives_the_direct_reports_after_every_kind_of_write(network):
    clinics = network["clinics"]
    paris, auckland = clinics
    a, b, c = network["a"], network["b"], network["c"]
    first = _assert_same(clinics)
    assert first[paris.pk]["patients_with_ttr"] == 2 and first[paris.pk]["lost_to_follow_up"] == 1
    assert first[auckland.pk]["warfarin_patients"] == 2 and first[auckland.pk]["lost_to_follow_up"] == 1
    assert TtrSnapshot.objects.count() == 2

    # a reading through the service (the ORM's save)
    inr_reading_record(patient=b, drawn_at=ago(3), value="4.9", source="lab")
    assert TtrStalePatient.objects.filter(patient_id=b.pk).exists()
    after_save = _assert_same(clinics)
    assert after_save[paris.pk]["ttr_percents"] != first[paris.pk]["ttr_percents"]

    # bulk_create, as the CSV import writes
    InrReading.objects.bulk_create([InrReading(patient=a, drawn_at=ago(2), value=Decimal("6.0"))])
    _assert_same(clinics)

    # raw SQL: no signal, no ORM
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO anticoag_inrreading (patient_id, drawn_at, value, source, bleeding, note, created_at) "
            "VALUES (%s, %s, 2.4, 'lab', false, '', now())",
            [c.pk, ago(1)],
        )
    _assert_same(clinics)

    # an UPDATE of a value and a DELETE
    InrReading.objects.filter(patient=a, drawn_at=ago(2)).update(value=Decimal("2.6"))
    _assert_same(clinics)
    InrReading.objects.filter(patient=b, drawn_at=ago(3)).delete()
    assert _assert_same(clinics)[paris.pk]["ttr_percents"][1] == first[paris.pk]["ttr_percents"][1] == 100.0

    # the patient's latest decision is no longer warfarin: off the warfarin list (not lost any more)
    lost_old = Patient.objects.filter(clinic=paris).exclude(pk__in=[a.pk, b.pk]).get()
    PlanDecision.objects.filter(plan__episode__patient=lost_old).update(agent="dabigatran")
    off = _assert_same(clinics)
    assert off[paris.pk]["warfarin_patients"] == 2 and off[paris.pk]["lost_to_follow_up"] == 0

    # a patient moves clinic; another is no longer active
    Patient.objects.filter(pk=c.pk).update(clinic=paris)
    moved = _assert_same(clinics)
    assert moved[paris.pk]["warfarin_patients"] == 3 and moved[auckland.pk]["warfarin_patients"] == 1
    Patient.objects.filter(pk=a.pk).update(active=False)
    assert _assert_same(clinics)[paris.pk]["warfarin_patients"] == 2


def test_a_current_snapshot_computes_only_its_stale_patients_in_a_constant_number_of_queries(network):
    clinics = network["clinics"]
    _snapshot(clinics)
    rows_before = dict(TtrSnapshotRow.objects.values_list("patient_id", "pk"))
    with CaptureQueriesContext(connection) as current:
        _snapshot(clinics)
    assert not any("INSERT INTO anticoag_ttrsnapshotrow" in q["sql"] for q in current.captured_queries)

    inr_reading_record(patient=network["b"], drawn_at=ago(3), value="2.2", source="lab")
    with CaptureQueriesContext(connection) as stale:
        _snapshot(clinics)
    inserts = [q["sql"] for q in stale.captured_queries if "INSERT INTO anticoag_ttrsnapshotrow" in q["sql"]]
    assert len(inserts) == 1 and f"'{{{network['b'].pk}}}'::int" in inserts[0]  # the patients: b alone
    rows_after = dict(TtrSnapshotRow.objects.values_list("patient_id", "pk"))
    # only b's row is new; the others were read, not computed again
    assert {p for p in rows_after if rows_after[p] != rows_before.get(p)} == {network["b"].pk}
    # a few small queries, whatever the clinic's size
    assert len(current.captured_queries) == len(stale.captured_queries) - 2 <= 7  # with SAVEPOINT, RELEASE


def test_a_new_period_or_policy_computes_the_whole_snapshot_again(network, settings):
    clinics = network["clinics"]
    _snapshot(clinics)
    computed = dict(TtrSnapshot.objects.values_list("clinic_id", "computed_at"))

    # another period (a new clinic day moves it): every clinic's snapshot is computed again
    shifted = [(clinic, start - timedelta(days=30), end, as_of) for clinic, start, end, as_of in _periods(clinics)]
    direct = clinic_ttr_reports(periods=shifted)
    for report in direct.values():
        del report["patients"]
    assert clinic_ttr_reports(periods=shifted, snapshot=True) == direct
    assert all(
        moment > computed[clinic_id]
        for clinic_id, moment in TtrSnapshot.objects.values_list("clinic_id", "computed_at")
    )

    # another TTR policy: 30 days' gap (b's 14-day intervals still count, a's 10-day ones too; the 70-day-old
    # reading is lost sooner)
    settings.ANTICOAG_MONITORING_POLICY = {"ttr_max_gap_days": 30}
    assert _assert_same(clinics)[clinics[0].pk]["lost_to_follow_up_rule"].startswith("no INR for more than 30")


def test_beat_refreshes_every_clinic_so_the_dashboard_computes_nothing(network, client):
    assert "clinic.refresh_quality" in {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert "clinic.refresh_quality" in app.tasks
    assert refresh_quality_task() == 2  # beat's task body, as the worker runs it
    assert TtrSnapshot.objects.count() == 2
    inr_reading_record(patient=network["a"], drawn_at=ago(1), value="2.5", source="lab")
    refresh_quality_snapshots()  # folds the day's changes in too
    assert not TtrStalePatient.objects.exists()

    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.create_superuser("network.admin", "admin@example.org", "x-Unused-9")
    client.force_login(admin)
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/admin/")
    assert response.status_code == 200
    assert not any("anticoag_ttrsnapshotrow" in q["sql"] and "INSERT" in q["sql"] for q in queries.captured_queries)
    assert b"TTR" in response.content
