"""Smoke test of the benchmark code (``make bench``): generate a tiny network in the test database and run
every measurement on it, so that the bench keeps working as the code changes. Figures are not checked
against their targets here (a tiny network says nothing about speed), except the sweep's constant query count.
"""

from __future__ import annotations

import pytest

from anticoag.models import InrReading, TtrSnapshot, TtrStalePatient
from bench import generate, hl7, measure
from patients.models import Clinic, Patient

pytestmark = pytest.mark.django_db(transaction=True)  # the reminder workers read committed rows


def test_bench_generates_and_measures(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    scale = generate.SCALES["tiny"]
    generate.generate(scale, log=lambda *_: None)
    assert Patient.objects.count() == scale.patients
    assert generate.generated_scale() == "tiny"

    figures = measure.measure_export(reporting_username="bench.reporting", subprocess_env=None, ie_sample=200)
    by_key = {f.key: f for f in figures}
    assert by_key["export_rows_per_s"].detail["rows"] == scale.inr_readings
    assert by_key["export_vs_copy"].value > 0

    sweep = {f.key: f for f in measure.measure_sweep(small=30, large=scale.patients, due_items=200)}
    assert sweep["sweep_queries"].passed, sweep["sweep_queries"].detail

    ttr = {f.key: f for f in measure.measure_ttr()}
    assert ttr["ttr_vs_copy"].detail["rows"] > 0

    pages = measure.measure_pages(n=2)
    assert {f.key for f in pages} >= {"page_dashboard_nurse", "page_patient_page", "page_api_inr_readings"}
    assert all(f.detail["queries"] > 0 for f in pages)

    reminders = {
        f.key: f
        for f in measure.measure_reminders(
            load=10, routine_workers=1, database_url=measure.database_url(), samples=2, window=60
        )
    }
    assert reminders["reminders_per_s"].detail["accepted_by_sink"] == 10, reminders["reminders_per_s"].detail
    assert len(reminders["urgent_alert_p95_s"].detail["samples_s"]) == 2
    assert reminders["urgent_alert_p95_s"].value < 60  # every alert reached the sink (60 s: never arrived)
    assert reminders["reminders_vs_sink"].value > 0

    before = InrReading.objects.count()
    cold = {f.key: f for f in measure.measure_dashboard_cold(runs=1, new_readings=5)}
    assert cold["dashboard_cold_network_admin_ms"].value > 0 and cold["quality_refresh_s"].value >= 0
    assert cold["dashboard_cold_stale_snapshot_ms"].value > 0
    assert InrReading.objects.count() == before  # the day's readings it added are gone again
    assert TtrSnapshot.objects.count() == Clinic.objects.count() and not TtrStalePatient.objects.exists()

    imported = {f.key: f for f in measure.measure_import(rows=200, patients=20)}
    assert imported["import_rows_per_s"].detail["small"]["rows"] == 20
    assert imported["import_queries"].passed, imported["import_queries"].detail

    replan = {f.key: f for f in measure.measure_replan(budget=2)}
    assert replan["replan_episodes_per_s"].detail["episodes_done"] > 0

    (throughput,) = hl7.measure_throughput(messages=30, connections=3)
    assert throughput.detail["acked_aa"] == 30 and throughput.detail["readings_stored"] == 30, throughput.detail
    (latency,) = hl7.measure_alert_latency(alerts=3, database_url=measure.database_url())
    assert latency.detail["delivered"] == 3 and latency.value > 0, latency.detail
