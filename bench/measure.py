"""The five measurements of issue 9, each a function returning figures with their targets."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

REPO = Path(__file__).resolve().parents[1]
BACKEND = "django.contrib.auth.backends.ModelBackend"
EXPORT_URL = "/api/v1/exports/inr-readings.csv"


@dataclass
class Figure:
    """One measured figure, its target and whether it met it (None: informational)."""

    key: str
    label: str
    value: float | int | None
    unit: str
    target: str = ""
    passed: bool | None = None
    detail: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------


def user(username: str):
    return get_user_model().objects.get(username=username)


def first_user(prefix: str):
    return get_user_model().objects.filter(username__startswith=prefix).order_by("pk").first()


def client_for(account) -> Client:
    client = Client()
    client.force_login(account, backend=BACKEND)
    return client


def _sql_literal(queryset) -> str:
    """The queryset's SQL with its parameters inlined (COPY takes no parameters)."""
    sql, params = queryset.query.get_compiler(using=queryset.db).as_sql()
    connection.ensure_connection()
    return psycopg.ClientCursor(connection.connection).mogrify(sql, params)


def copy_out(sql: str) -> tuple[float, int, int]:
    """``COPY (sql) TO STDOUT`` in CSV, read to the end: (seconds, bytes, lines)."""
    connection.ensure_connection()
    t0 = time.perf_counter()
    size = lines = 0
    with (
        connection.connection.cursor() as cursor,
        cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER)") as copy,
    ):
        for block in copy:
            size += len(block)
            lines += bytes(block).count(b"\n")
    return time.perf_counter() - t0, size, lines


def export_queryset(account):
    from reporting.exports import DATASETS

    dataset = DATASETS["inr-readings"]
    columns = dataset.columns_for(pseudonymised=False)
    paths = list(dict.fromkeys(path for column in columns for path in column.paths))
    return dataset.queryset(user=account).order_by("pk").values_list(*paths)


class QueryCounter:
    """Counts the queries run on the default connection (an execute wrapper: independent of DEBUG and of the
    query log that each request resets)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)

    def __enter__(self) -> QueryCounter:
        self._wrapper = connection.execute_wrapper(self)
        self._wrapper.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._wrapper.__exit__(*exc)


# ---------------------------------------------------------------------------------------------------------------
# 1. export
# ---------------------------------------------------------------------------------------------------------------


def export_once(account) -> dict[str, Any]:
    """GET the CSV export through the API (test client, force_login) and read the stream to its end."""
    client = client_for(account)
    t0 = time.perf_counter()
    response = client.get(EXPORT_URL)
    assert response.status_code == 200, response.status_code
    size = lines = 0
    for chunk in response.streaming_content:
        size += len(chunk)
        lines += chunk.count(b"\n")
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "bytes": size, "rows": lines - 1}


def export_child(username: str) -> None:
    """Entry point of the subprocess that measures the export and its peak memory (maxrss delta)."""
    account = user(username)
    client_for(account).get("/api/v1/")  # warm up: URLconf, DRF, session
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = export_once(account)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result |= {"maxrss_before_kib": before, "maxrss_after_kib": after}
    print("BENCH-RESULT " + json.dumps(result))


def import_export_rows_per_second(sample: int) -> dict[str, Any]:
    """django-import-export: a ModelResource with the same columns, ``export()`` then ``.csv``."""
    from import_export import fields, resources

    from anticoag.models import InrReading

    class InrReadingResource(resources.ModelResource):
        clinic_id = fields.Field(attribute="patient__clinic_id", column_name="clinic_id")
        mrn = fields.Field(attribute="patient__mrn", column_name="mrn")

        class Meta:
            model = InrReading
            fields = (
                "id", "patient", "clinic_id", "mrn", "drawn_at", "value", "source", "bleeding", "note",
                "entered_by", "created_at",
            )  # fmt: skip
            export_order = fields

    queryset = InrReading.objects.select_related("patient").order_by("pk")[:sample]
    t0 = time.perf_counter()
    text = InrReadingResource().export(queryset=queryset).csv
    seconds = time.perf_counter() - t0
    rows = text.count("\n") - 1
    return {"seconds": seconds, "rows": rows, "rows_per_second": rows / seconds if seconds else None}


def measure_export(*, reporting_username: str, subprocess_env: dict[str, str] | None, ie_sample: int) -> list[Figure]:
    account = user(reporting_username)
    if subprocess_env is not None:
        out = subprocess.run(
            [sys.executable, "-m", "bench", "export-child", reporting_username],
            cwd=REPO, env=subprocess_env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        line = next(x for x in out.stdout.splitlines() if x.startswith("BENCH-RESULT "))
        ours = json.loads(line.split(" ", 1)[1])
        peak_mib = (ours["maxrss_after_kib"] - ours["maxrss_before_kib"]) / 1024
    else:
        ours = export_once(account)
        peak_mib = None
    copy_seconds, copy_bytes, copy_lines = copy_out(_sql_literal(export_queryset(account)))
    ours_rps = ours["rows"] / ours["seconds"]
    copy_rps = (copy_lines - 1) / copy_seconds
    ie = import_export_rows_per_second(min(ie_sample, max(ours["rows"], 1)))
    vs_copy = ours_rps / copy_rps
    vs_ie = ours_rps / ie["rows_per_second"]
    common = {"rows": ours["rows"], "bytes": ours["bytes"], "seconds": round(ours["seconds"], 2)}
    return [
        Figure("export_rows_per_s", "CSV export via API, rows/s", round(ours_rps), "rows/s", detail=common),
        Figure(
            "export_vs_copy", "export ÷ COPY TO STDOUT (same query)", round(vs_copy, 3), "×", "≥ 0.5",
            vs_copy >= 0.5,
            {"copy_rows_per_s": round(copy_rps), "copy_seconds": round(copy_seconds, 2), "copy_bytes": copy_bytes},
        ),
        Figure(
            "export_vs_import_export", "export ÷ django-import-export", round(vs_ie, 2), "×", "≥ 5", vs_ie >= 5,
            {"ie_rows_per_s": round(ie["rows_per_second"]), "ie_sample_rows": ie["rows"],
             "ie_seconds": round(ie["seconds"], 2)},
        ),
        Figure(
            "export_peak_memory", "export peak memory (maxrss delta of the exporting process)",
            None if peak_mib is None else round(peak_mib, 1), "MiB", "constant (≤ 100 MiB)",
            None if peak_mib is None else peak_mib <= 100,
        ),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# 2. sweep
# ---------------------------------------------------------------------------------------------------------------


def _sweep_once(*, active_patients: int, item_patients: int, due_items: int, now: datetime) -> dict[str, Any]:
    """In a transaction rolled back at the end: keep the first ``active_patients`` patients (by id) active,
    add ``due_items`` open items spread over the first ``item_patients`` of them (60 % due this week, 40 %
    overdue by up to 30 days: those past 7 days escalate), then sweep. Same items, more patients: the query
    count must not change."""
    from scheduling.outbox import sweep

    today = now.date()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE patients_patient SET active = (id <= (SELECT max(id) FROM (SELECT id FROM patients_patient "
                "ORDER BY id LIMIT %s) s) AND mod(id, 50) <> 0)",
                [active_patients],
            )
            cursor.execute(
                """
                INSERT INTO scheduling_followup (patient_id, episode_id, kind, due_on, status, recanalization,
                    result_note, rule, source, key, created_at, updated_at)
                SELECT p.id, NULL, 'thrombophilia_testing',
                       CASE WHEN mod(g, 5) < 3 THEN %s::date + mod(g, 7) ELSE %s::date - (1 + mod(g, 30)) END,
                       'scheduled', '', '', 'bench', 'bench', 'bench:due:' || g, %s, %s
                FROM generate_series(1, %s) AS g
                     JOIN (SELECT id, row_number() OVER (ORDER BY id) AS n FROM patients_patient WHERE active
                           ORDER BY id LIMIT %s) p ON p.n = 1 + mod(g, %s)
                """,
                [today, today, now, now, due_items, item_patients, item_patients],
            )
            inserted = cursor.rowcount
        with QueryCounter() as queries:
            t0 = time.perf_counter()
            counts = sweep(now=now)
            seconds = time.perf_counter() - t0
        transaction.set_rollback(True)
    return {"seconds": seconds, "queries": queries.count, "due_items": inserted, **counts}


def measure_sweep(*, small: int, large: int, due_items: int) -> list[Figure]:
    now = datetime.combine(timezone.localdate(), dtime(12, 0), tzinfo=UTC)
    item_patients = int(small * 0.9)  # of the first `small` patients, 2 % are inactive by generation
    _sweep_once(active_patients=large, item_patients=item_patients, due_items=due_items, now=now)  # warm-up
    runs = {
        n: _sweep_once(active_patients=n, item_patients=item_patients, due_items=due_items, now=now)
        for n in (small, large)
    }
    # The rolled-back UPDATEs left a dead version of every patient row: clean them up before the other
    # measurements read the table.
    if not connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE patients_patient")
            cursor.execute("VACUUM ANALYZE scheduling_followup")
    constant = runs[small]["queries"] == runs[large]["queries"]
    detail = {str(n): {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for n, r in runs.items()}
    return [
        Figure(f"sweep_seconds_{small}", f"sweep, {due_items:,} due items, {small:,} patients", round(runs[small]["seconds"], 3), "s"),
        Figure(f"sweep_seconds_{large}", f"sweep, {due_items:,} due items, {large:,} patients", round(runs[large]["seconds"], 3), "s"),
        Figure(
            "sweep_queries", f"sweep queries at {small:,} / {large:,} patients",
            f"{runs[small]['queries']} / {runs[large]['queries']}", "queries", "constant", constant, detail,
        ),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# 3. TTR report
# ---------------------------------------------------------------------------------------------------------------


def measure_ttr() -> list[Figure]:
    from anticoag.inr import _period, clinic_ttr_report, clinic_zone
    from anticoag.models import InrReading
    from patients.models import Clinic

    today = timezone.localdate()
    start, end = today - timedelta(days=365), today
    clinics = list(Clinic.objects.order_by("pk"))
    clinic_ttr_report(clinic=clinics[0], start=start, end=end, as_of=today)  # warm-up
    t0 = time.perf_counter()
    patients = 0
    for clinic in clinics:
        report = clinic_ttr_report(clinic=clinic, start=start, end=end, as_of=today)
        patients += len(report.get("patients") or [])
    report_seconds = time.perf_counter() - t0
    copy_seconds = 0.0
    rows = 0
    for clinic in clinics:
        low, high = _period(start, end, clinic_zone(clinic))
        queryset = (
            InrReading.objects.filter(patient__clinic=clinic, drawn_at__gte=low, drawn_at__lt=high)
            .order_by("patient_id", "drawn_at")
            .values_list("patient_id", "patient__mrn", "drawn_at", "value")
        )
        seconds, _, lines = copy_out(_sql_literal(queryset))
        copy_seconds += seconds
        rows += lines - 1
    ratio = report_seconds / copy_seconds
    return [
        Figure("ttr_seconds", f"clinic TTR report, {len(clinics)} clinics, {rows:,} INR rows", round(report_seconds, 2), "s"),
        Figure(
            "ttr_vs_copy", "TTR report ÷ COPY of its INR rows", round(ratio, 2), "×", "≤ 2", ratio <= 2,
            {"copy_seconds": round(copy_seconds, 2), "rows": rows},
        ),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# 4. pages
# ---------------------------------------------------------------------------------------------------------------


def _latency(client: Client, url: str, n: int, warmup: int = 2) -> dict[str, Any]:
    first_ms = None
    for _ in range(warmup):
        t0 = time.perf_counter()
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        first_ms = (time.perf_counter() - t0) * 1000 if first_ms is None else first_ms
    if time.perf_counter() - t0 > 2:  # a page far off its target: a few requests tell as much
        n = min(n, 3)
    with QueryCounter() as queries:
        client.get(url)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * len(times)) - 1)]
    return {
        "median_ms": statistics.median(times),
        "p95_ms": p95,
        "queries": queries.count,
        "n": n,
        "first_ms": first_ms,
    }


def measure_pages(*, n: int) -> list[Figure]:
    from patients.models import Patient

    admin = user("bench.admin")
    nurse = first_user("nurse.")
    clinician = first_user("clinician.")
    reporting = user("bench.reporting")
    patient = Patient.objects.filter(primary_nurse=nurse).order_by("pk").first()
    pages = [
        ("dashboard_nurse", "dashboard (admin index), nurse", nurse, "/admin/"),
        ("dashboard_admin", "dashboard (admin index), network admin", admin, "/admin/"),
        ("patient_changelist", "patient changelist, clinician", clinician, "/admin/patients/patient/"),
        ("patient_changelist_admin", "patient changelist, network admin", admin, "/admin/patients/patient/"),
        ("patient_page", "patient page (change view), nurse", nurse, f"/admin/patients/patient/{patient.pk}/change/"),
        ("api_patients", "API /api/v1/patients/ (first page)", reporting, "/api/v1/patients/"),
        ("api_inr_readings", "API /api/v1/inr-readings/ (first page)", reporting, "/api/v1/inr-readings/"),
    ]
    figures = []
    for key, label, account, url in pages:
        result = _latency(client_for(account), url, n)
        figures.append(
            Figure(
                f"page_{key}", f"{label}: median / p95 ms, queries",
                round(result["p95_ms"], 1), "ms p95", "p95 ≤ 250 ms", result["p95_ms"] <= 250,
                {"url": url, "median_ms": round(result["median_ms"], 1), "p95_ms": round(result["p95_ms"], 1),
                 "queries": result["queries"], "requests": result["n"], "first_request_ms": round(result["first_ms"], 1)},
            )
        )  # fmt: skip
    return figures


# ---------------------------------------------------------------------------------------------------------------
# 5. reminder throughput
# ---------------------------------------------------------------------------------------------------------------


class _Sink:
    """aiosmtpd handler counting accepted messages."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _create_reminders(count: int) -> list[int]:
    """``count`` pending digests to the nurses, three open items each, committed (set-based)."""
    today = timezone.localdate()
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO scheduling_reminder (clinic_id, kind, recipient, recipient_user_id, inr_reading_id, reason,
                status, attempts, next_attempt_at, lease_until, sent_at, message_id, last_error, idempotency_key,
                created_at, updated_at)
            SELECT s.clinic_id, 'digest', u.email, u.id, NULL, '', 'pending', 0, %s, %s, NULL, '', '',
                   'digest:' || s.clinic_id || ':' || u.id || ':' || (%s::date - g),
                   %s, %s
            FROM generate_series(1, %s) AS g
                 JOIN LATERAL (SELECT cs.clinic_id, cs.user_id FROM patients_clinic_staff cs
                               JOIN auth_user_groups ug ON ug.user_id = cs.user_id
                               JOIN auth_group gr ON gr.id = ug.group_id AND gr.name = 'nurse'
                               ORDER BY cs.id OFFSET mod(g, (SELECT count(*) FROM patients_clinic_staff cs2
                                   JOIN auth_user_groups ug2 ON ug2.user_id = cs2.user_id
                                   JOIN auth_group gr2 ON gr2.id = ug2.group_id AND gr2.name = 'nurse')) LIMIT 1) s
                   ON true
                 JOIN auth_user u ON u.id = s.user_id
            RETURNING id
            """,
            [now, now + timedelta(hours=1), today, now, now, count],
        )
        ids = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            """
            INSERT INTO scheduling_reminder_follow_ups (reminder_id, followup_id)
            SELECT r.id, f.id
            FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM scheduling_reminder WHERE id = ANY(%s)) r
                 JOIN (SELECT id, row_number() OVER (ORDER BY id) AS n FROM scheduling_followup
                       WHERE status = 'scheduled' ORDER BY id LIMIT %s) f ON (f.n - 1) / 3 + 1 = r.n
            """,
            [ids, 3 * count],
        )
    return ids


def measure_reminders(*, count: int, workers: int, database_url: str, timeout: float = 600) -> list[Figure]:
    import logging

    from aiosmtpd.controller import Controller

    from config.celery import app as celery_app
    from scheduling.models import Reminder
    from scheduling.tasks import send_reminder

    logging.getLogger("mail.log").setLevel(logging.WARNING)
    handler = _Sink()
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    processes: list[subprocess.Popen] = []
    logs: list[Path] = []
    ids: list[int] = []
    try:
        celery_app.control.purge()
        env = dict(os.environ) | {
            "DATABASE_URL": database_url,
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(port),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "PYTHONUNBUFFERED": "1",
        }
        log_dir = REPO / "var"
        log_dir.mkdir(exist_ok=True)
        for index in range(workers):
            log = log_dir / f"bench-worker{index}.log"
            logs.append(log)
            with log.open("wb") as out:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=prefork",
                         "--concurrency=1", "-Q", "celery", "--loglevel=WARNING", "--without-gossip",
                         "--without-mingle", "--without-heartbeat", "-n", f"bench{index}-{os.getpid()}@%h"],
                        cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                    )
                )  # fmt: skip
        ids = _create_reminders(count)
        # Ready check: each worker answers a ping.
        deadline = time.monotonic() + 60
        while len(celery_app.control.ping(timeout=0.5) or []) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start: " + " | ".join(p.read_text()[-500:] for p in logs))
        t0 = time.perf_counter()
        for reminder_id in ids:
            send_reminder.delay(reminder_id)
        deadline = time.monotonic() + timeout
        while handler.count < len(ids) and time.monotonic() < deadline:
            time.sleep(0.05)
        seconds = time.perf_counter() - t0
        sent = Reminder.objects.filter(pk__in=ids, status="sent").count()
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)
        controller.stop()
        if ids:
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM scheduling_reminder_follow_ups WHERE reminder_id = ANY(%s)", [ids])
                cursor.execute("DELETE FROM scheduling_reminder WHERE id = ANY(%s)", [ids])
    rate = handler.count / seconds if seconds else 0
    return [
        Figure(
            "reminders_per_s", f"reminder e-mails/s, {workers} worker processes → local SMTP sink",
            round(rate, 1), "e-mails/s", "", None,
            {"reminders": len(ids), "accepted_by_sink": handler.count, "marked_sent": sent, "seconds": round(seconds, 2)},
        )
    ]  # fmt: skip


def database_url() -> str:
    db = connection.settings_dict
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def as_dicts(figures: list[Figure]) -> list[dict[str, Any]]:
    return [asdict(f) for f in figures]
