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


def copy_out(sql: str, *, by_row: bool = False) -> tuple[float, int, int]:
    """``COPY (sql) TO STDOUT`` in CSV, read to the end: (seconds, bytes, lines).

    Read with the export's own reader (:func:`reporting.pgcopy.copy_blocks`), the fastest this project has, so
    the export's baseline pays no per-row Python either (issue 18). ``by_row``: read one row per psycopg
    ``read()``, as issue 9 defined the TTR report's baseline (kept for that figure, beside the strict one)."""
    from reporting.pgcopy import copy_blocks

    connection.ensure_connection()
    t0 = time.perf_counter()
    size = lines = 0
    with (
        connection.connection.cursor() as cursor,
        cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER)") as copy,
    ):
        for block in copy if by_row else copy_blocks(copy, rows=500):
            size += len(block)
            lines += (block if isinstance(block, bytes) else bytes(block)).count(b"\n")  # psycopg: a memoryview
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


def measure_export(
    *, reporting_username: str, subprocess_env: dict[str, str] | None, ie_sample: int, repeats: int = 1
) -> list[Figure]:
    """The export through the API and COPY of the same query, ``repeats`` times in turn; the ratio is the
    median of the pairs' ratios (each export next to its COPY, so both see the same machine)."""
    account = user(reporting_username)
    pairs = []
    for _ in range(repeats):
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
        pairs.append((ours, copy_seconds, copy_bytes, copy_lines))
    ratios = [(o["rows"] / o["seconds"]) / ((lines - 1) / secs) for o, secs, _, lines in pairs]
    middle = sorted(range(len(pairs)), key=lambda i: ratios[i])[len(pairs) // 2]
    ours, copy_seconds, copy_bytes, copy_lines = pairs[middle]
    ours_rps = ours["rows"] / ours["seconds"]
    copy_rps = (copy_lines - 1) / copy_seconds
    ie = import_export_rows_per_second(min(ie_sample, max(ours["rows"], 1)))
    vs_copy = ratios[middle]
    vs_ie = ours_rps / ie["rows_per_second"]
    common = {"rows": ours["rows"], "bytes": ours["bytes"], "seconds": round(ours["seconds"], 2)}
    return [
        Figure("export_rows_per_s", "CSV export via API, rows/s", round(ours_rps), "rows/s", detail=common),
        Figure(
            "export_vs_copy", f"export ÷ COPY TO STDOUT (same query), median of {repeats}", round(vs_copy, 3), "×",
            "≥ 0.8", vs_copy >= 0.8,
            {"copy_rows_per_s": round(copy_rps), "copy_seconds": round(copy_seconds, 2), "copy_bytes": copy_bytes,
             "ratios": [round(r, 3) for r in ratios]},
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
    copy_seconds = 0.0  # read row by row through psycopg: the baseline as issue 9 defined it
    block_seconds = 0.0  # read in blocks (reporting.pgcopy), the export's strict baseline since issue 18
    rows = 0
    for clinic in clinics:
        low, high = _period(start, end, clinic_zone(clinic))
        queryset = (
            InrReading.objects.filter(patient__clinic=clinic, drawn_at__gte=low, drawn_at__lt=high)
            .order_by("patient_id", "drawn_at")
            .values_list("patient_id", "patient__mrn", "drawn_at", "value")
        )
        sql = _sql_literal(queryset)
        seconds, _, lines = copy_out(sql, by_row=True)
        copy_seconds += seconds
        block_seconds += copy_out(sql)[0]
        rows += lines - 1
    ratio = report_seconds / copy_seconds
    return [
        Figure("ttr_seconds", f"clinic TTR report, {len(clinics)} clinics, {rows:,} INR rows", round(report_seconds, 2), "s"),
        Figure(
            "ttr_vs_copy", "TTR report ÷ COPY of its INR rows (read row by row, as in issue 9)", round(ratio, 2), "×",
            "≤ 2", ratio <= 2,
            {"copy_seconds": round(copy_seconds, 2), "rows": rows, "copy_seconds_in_blocks": round(block_seconds, 2),
             "ratio_to_copy_in_blocks": round(report_seconds / block_seconds, 2)},
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
    """aiosmtpd handler: counts routine messages and notes when each urgent alert arrived. An alert goes to
    the clinic's alert address (``alerts…@``) and to the patient's nurse and clinician: the first is the one
    timed; all of them are told from routine mail by their subject."""

    def __init__(self) -> None:
        self.count = 0
        self.routine = 0
        self.urgent: list[float] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        arrived = time.perf_counter()
        content = envelope.original_content or envelope.content or b""
        headers = content.split(b"\r\n\r\n", 1)[0] if isinstance(content, bytes) else b""
        with self.lock:
            self.count += 1
            if b"Subject: Urgent" not in headers:
                self.routine += 1
            elif any(rcpt.startswith("alerts") for rcpt in envelope.rcpt_tos):
                self.urgent.append(arrived)
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _create_reminders(count: int, per: int = 3) -> list[int]:
    """``count`` pending digests to the nurses, ``per`` open items each, committed (set-based)."""
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
                       WHERE status = 'scheduled' ORDER BY id LIMIT %s) f ON (f.n - 1) / %s + 1 = r.n
            """,
            [ids, per * count, per],
        )
    return ids


def _start_worker(name: str, queues: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=prefork", "--concurrency=1",
             "-Q", queues, "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-n", f"{name}-{os.getpid()}@%h"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(round(0.95 * len(ordered)) - 1, 0))]


class _UrgentProbe:
    """Critical INRs recorded through the service, one at a time, each timed from the call that stores it
    until its alert reaches the sink; afterwards every row it made is removed and the items it completed are
    reopened, so the network stays as generated."""

    def __init__(self, sink: _Sink) -> None:
        from patients.models import Patient
        from scheduling.models import FollowUp

        self.sink = sink
        from bench.hl7 import CLINIC_NAME

        # The generated network's patients (whose clinics' alert addresses the sink knows), not the HL7 clinic's
        # that an earlier run created after them.
        self.patients = list(
            Patient.objects.filter(active=True)
            .exclude(clinic__name=CLINIC_NAME)
            .select_related("clinic")
            .order_by("-pk")[:200]
        )
        self.next = 0
        self.readings: list[int] = []
        self.follow_up_max = FollowUp.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        self.open_before = set(
            FollowUp.objects.filter(patient__in=self.patients, status="scheduled").values_list("pk", flat=True)
        )

    def latencies(self, n: int, timeout: float = 60) -> list[float]:
        from decimal import Decimal

        from anticoag.inr import inr_reading_record

        out = []
        for _ in range(n):
            patient = self.patients[self.next % len(self.patients)]
            self.next += 1
            before = len(self.sink.urgent)
            t0 = time.perf_counter()
            reading = inr_reading_record(
                patient=patient, drawn_at=timezone.now() - timedelta(seconds=1), value=Decimal("9.6"), source="lab"
            )  # committed on return; the alert's task was enqueued at the commit
            self.readings.append(reading.pk)
            while len(self.sink.urgent) <= before and time.perf_counter() - t0 < timeout:
                time.sleep(0.002)
            out.append(self.sink.urgent[before] - t0 if len(self.sink.urgent) > before else timeout)
        return out

    def clean_up(self) -> None:
        from anticoag.models import InrReading
        from scheduling.models import FollowUp, Reminder

        Reminder.objects.filter(inr_reading_id__in=self.readings).delete()
        FollowUp.objects.filter(pk__gt=self.follow_up_max, patient__in=self.patients).delete()
        FollowUp.objects.filter(pk__in=self.open_before).exclude(status="scheduled").update(
            status="scheduled", completed_on=None, result_note=""
        )
        InrReading.objects.filter(pk__in=self.readings).delete()


def _sink_ceiling(port: int, message: bytes, count: int) -> float:
    """Messages/s of a client that only sends pre-built messages over one SMTP connection."""
    import smtplib

    with smtplib.SMTP("127.0.0.1", port) as client:
        t0 = time.perf_counter()
        for _ in range(count):
            client.sendmail("bench@clinic.invalid", ["nurse@clinic.invalid"], message)
        return count / (time.perf_counter() - t0)


def _built_message(reminder_id: int) -> bytes:
    """One of the bench's digests as our workers would send it (rendered, with its headers)."""
    from django.core.mail import EmailMultiAlternatives

    from scheduling.emails import reminder_render
    from scheduling.models import Reminder

    rendered = reminder_render(reminder=Reminder.objects.get(pk=reminder_id))
    mail = EmailMultiAlternatives(rendered.subject, rendered.text, "clinic@clinic.invalid", ["nurse@clinic.invalid"])
    if getattr(rendered, "html", None):
        mail.attach_alternative(rendered.html, "text/html")
    return mail.message().as_bytes(linesep="\r\n")  # as the SMTP backend sends it


def measure_reminders(
    *, load: int, routine_workers: int, database_url: str, samples: int = 20, window: float = 90
) -> list[Figure]:
    """Urgent alerts without and under load, and routine throughput (issue 18).

    One worker serves only the urgent queue, ``routine_workers`` the default queue (prefork, one process
    each), on the bench Redis; an aiosmtpd sink in this process. (1) ``samples`` critical INRs, one at a
    time, with nothing else queued: p95 from the call that stores the reading to the alert at the sink.
    (2) The sink's ceiling: a client sending pre-built digests over one connection. (3) ``load`` routine
    digests committed and enqueued as the outbox does (batches per SMTP connection), then at once
    ``samples`` more critical INRs: p95 under load. Routine e-mails/s: accepted by the sink from the enqueue
    until all are sent or ``window`` seconds have passed. Everything made is removed afterwards."""
    import logging

    from aiosmtpd.controller import Controller

    from config.celery import app as celery_app
    from scheduling.models import FollowUp
    from scheduling.outbox import _enqueue

    logging.getLogger("mail.log").setLevel(logging.WARNING)
    sink = _Sink()
    port = _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    processes: list[subprocess.Popen] = []
    ids: list[int] = []
    probe = _UrgentProbe(sink)
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
        logs = [log_dir / "bench-worker-urgent.log"] + [
            log_dir / f"bench-worker{i}.log" for i in range(routine_workers)
        ]
        processes.append(_start_worker("bench-urgent", settings.ANTICOAG_URGENT_QUEUE, env, logs[0]))
        for index in range(routine_workers):
            processes.append(_start_worker(f"bench{index}", settings.CELERY_TASK_DEFAULT_QUEUE, env, logs[index + 1]))
        deadline = time.monotonic() + 90
        while len(celery_app.control.ping(timeout=0.5) or []) < len(processes):
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start: " + " | ".join(p.read_text()[-500:] for p in logs))
        probe.latencies(2)  # warm-up: each worker's first task imports and connects
        idle = probe.latencies(samples)
        scheduled = FollowUp.objects.filter(status="scheduled").count()
        ids = _create_reminders(load, per=max(1, min(3, scheduled // max(load, 1))))
        ceiling = _sink_ceiling(port, _built_message(ids[0]), 500)
        routine_before = sink.routine
        t0 = time.perf_counter()
        _enqueue([(reminder_id, "digest") for reminder_id in ids])
        loaded = probe.latencies(samples)
        routine_during_probe = sink.routine - routine_before
        while sink.routine - routine_before < len(ids) and time.perf_counter() - t0 < window:
            time.sleep(0.05)
        seconds = time.perf_counter() - t0
        routine_sent = sink.routine - routine_before
    finally:
        _stop(processes)
        controller.stop()
        if ids:
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM scheduling_reminder_follow_ups WHERE reminder_id = ANY(%s)", [ids])
                cursor.execute("DELETE FROM scheduling_reminder WHERE id = ANY(%s)", [ids])
        probe.clean_up()
        celery_app.control.purge()
    rate = routine_sent / seconds if seconds else 0
    idle_p95, loaded_p95 = _p95(idle), _p95(loaded)
    ratio = rate / ceiling if ceiling else 0
    return [
        Figure(
            "urgent_alert_p95_s", f"urgent alert, critical INR stored → SMTP sink, p95 of {samples} (no load)",
            round(idle_p95, 3), "s", "p95 ≤ 2 s", idle_p95 <= 2,
            {"samples_s": [round(x, 3) for x in idle], "median_s": round(statistics.median(idle), 3)},
        ),
        Figure(
            "urgent_alert_p95_s_under_load",
            f"urgent alert p95 while {load:,} routine reminders are being sent",
            round(loaded_p95, 3), "s", "p95 ≤ 10 s", loaded_p95 <= 10 and routine_during_probe < len(ids),
            {"samples_s": [round(x, 3) for x in loaded], "median_s": round(statistics.median(loaded), 3),
             "routine_sent_while_probing": routine_during_probe, "routine_queued": len(ids)},
        ),
        Figure(
            "reminders_per_s", f"routine reminder e-mails/s, {routine_workers} worker processes → local SMTP sink",
            round(rate, 1), "e-mails/s", "", None,
            {"reminders": len(ids), "accepted_by_sink": routine_sent, "seconds": round(seconds, 2),
             "batch_size": settings.ANTICOAG_REMINDER_SEND_BATCH_SIZE},
        ),
        Figure(
            "reminders_vs_sink", "reminder e-mails/s ÷ a client sending pre-built messages to the sink",
            round(ratio, 3), "×", "", None, {"sink_ceiling_per_s": round(ceiling, 1)},
        ),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# 6. dashboard, cold
# ---------------------------------------------------------------------------------------------------------------


def _add_day_readings(count: int, seed: int) -> list[int]:
    """``count`` INR readings drawn in the last hour, one each for patients spread over every clinic,
    committed as a lab's results would be (the triggers mark those patients stale). Their ids."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO anticoag_inrreading (patient_id, drawn_at, value, source, bleeding, note, created_at) "
            "SELECT p.id, now() - make_interval(secs => 3000 + %s + g), 1.8 + (g %% 20) / 10.0, 'lab', false, '', "
            "now() FROM generate_series(1, %s) AS g, (SELECT min(id) AS first, count(*) AS n FROM patients_patient) s "
            "JOIN patients_patient p ON true WHERE p.id = s.first + (g * 397 + %s) %% s.n "
            "RETURNING anticoag_inrreading.id",
            [seed, count, seed],
        )
        return [row[0] for row in cursor.fetchall()]


def measure_dashboard_cold(*, runs: int = 3, new_readings: int = 200) -> list[Figure]:
    """The network administrator's dashboard with an empty cache (templates and URLs already loaded by a
    warm-up).

    First the quality snapshots (``anticoag.ttr_snapshot``) are dropped and beat's ``clinic.refresh_quality``
    runs, timed: what a new clinic day costs, once, off the request path. Then ``runs`` times: ``new_readings``
    readings committed for as many patients across the clinics (stale in the snapshot), Django's cache
    cleared, the dashboard requested; the median. Last, for comparison, the first dashboard when the snapshots
    are not current (beat not run yet that day): the whole computation in the request. The readings are
    deleted afterwards and the snapshots brought back to the data."""
    from django.core.cache import cache

    from clinic.dashboard import refresh_quality_snapshots

    def clear_snapshots() -> None:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM anticoag_ttrsnapshotrow; DELETE FROM anticoag_ttrsnapshot; "
                           "DELETE FROM anticoag_ttrstalepatient")  # fmt: skip

    clear_snapshots()
    t0 = time.perf_counter()
    refresh_quality_snapshots()
    refresh_seconds = time.perf_counter() - t0
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE anticoag_ttrsnapshotrow")
    client = client_for(user("bench.admin"))
    client.get("/admin/")
    times, added = [], []
    for run in range(runs):
        added += _add_day_readings(new_readings, seed=run)
        cache.clear()
        t0 = time.perf_counter()
        response = client.get("/admin/")
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200
    clear_snapshots()
    cache.clear()
    t0 = time.perf_counter()
    response = client.get("/admin/")
    whole_ms = (time.perf_counter() - t0) * 1000
    assert response.status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM anticoag_inrreading WHERE id = ANY(%s)", [added])
    refresh_quality_snapshots()
    median = statistics.median(times)
    return [
        Figure(
            "dashboard_cold_network_admin_ms",
            f"dashboard, network admin, cold cache, {new_readings} new readings before each (median of {runs})",
            round(median, 1), "ms", "≤ 1000 ms", median <= 1000,
            {"runs_ms": [round(t, 1) for t in times], "new_readings_per_run": new_readings},
        ),
        Figure(
            "quality_refresh_s", "quality snapshots, whole network, new clinic day (beat, off the request path)",
            round(refresh_seconds, 2), "s", "", None, {},
        ),
        Figure(
            "dashboard_cold_stale_snapshot_ms", "dashboard, network admin, cold cache, snapshots not current",
            round(whole_ms, 1), "ms", "", None, {},
        ),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# 7. INR import
# ---------------------------------------------------------------------------------------------------------------


def _import_once(rows: int, patients: int) -> dict[str, Any]:
    """A CSV of ``rows`` readings of ``patients`` patients of the first clinic through ``inr_import_csv``, in a
    transaction rolled back afterwards; seconds and queries."""
    import io

    from anticoag.inr import inr_import_csv
    from patients.models import Clinic, Patient

    clinic = Clinic.objects.order_by("pk").first()
    mrns = list(Patient.objects.filter(clinic=clinic).order_by("pk").values_list("mrn", flat=True)[:patients])
    per = rows // len(mrns)
    start = timezone.now().replace(microsecond=0) - timedelta(days=300)
    lines = ["mrn,drawn_at,inr,source,bleeding"]
    for index, mrn in enumerate(mrns):
        for k in range(per):  # times the generated readings never have (…:17.5 s)
            drawn = start + timedelta(days=300 * k / per, seconds=index % 3600, milliseconds=17500)
            lines.append(f"{mrn},{drawn.isoformat()},{('2.1', '2.6', '3.3', '1.8')[(index + k) % 4]},lab,no")
    data = io.BytesIO(("\n".join(lines) + "\n").encode())
    data.name = "bench.csv"
    staff = user("bench.admin")
    with transaction.atomic():
        with QueryCounter() as queries:
            t0 = time.perf_counter()
            result = inr_import_csv(clinic=clinic, file=data, entered_by=staff)
            seconds = time.perf_counter() - t0
        transaction.set_rollback(True)
    assert result.ok, result.errors[:3]
    return {"rows": result.imported, "patients": result.patients, "seconds": seconds, "queries": queries.count}


def measure_import(*, rows: int, patients: int) -> list[Figure]:
    small = _import_once(rows // 10, patients // 10)
    large = _import_once(rows, patients)
    rate = large["rows"] / large["seconds"]
    # Queries beyond the INSERT batches (one per 1,000 rows) and the item/audit batches: must not grow
    # with the patients.
    fixed = [r["queries"] - 3 * -(-r["rows"] // 1000) for r in (small, large)]
    flat = large["queries"] - small["queries"] <= 3 * (-(-large["rows"] // 1000) - -(-small["rows"] // 1000))
    return [
        Figure(
            "import_rows_per_s", f"INR CSV import, {large['rows']:,} rows of {large['patients']:,} patients, rows/s",
            round(rate), "rows/s", "", None,
            {"seconds": round(large["seconds"], 2), "queries": large["queries"],
             "small": {k: round(v, 2) if isinstance(v, float) else v for k, v in small.items()}},
        ),
        Figure(
            "import_queries", f"import queries at {small['patients']:,} / {large['patients']:,} patients",
            f"{small['queries']} / {large['queries']}", "queries", "flat per patient", flat,
            {"beyond_batches": fixed},
        ),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# 8. re-planning
# ---------------------------------------------------------------------------------------------------------------


def measure_replan(*, budget: float) -> list[Figure]:
    """``manage.py replan``'s pass (:func:`anticoag.replan.replan_plans`: every open episode in batches of
    ``BATCH_SIZE`` with its risk factors and medicines prefetched, ``plan_recompute`` each in a savepoint),
    inside a transaction rolled back afterwards, stopped after ``budget`` seconds if not done. Episodes/s,
    the estimate for all of them, and the process's peak memory (maxrss) every 100 episodes: flat."""
    from anticoag import rules
    from anticoag.replan import BATCH_SIZE, open_episodes
    from anticoag.services import plan_recompute
    from patients.models import CvtEpisode

    ids = list(open_episodes().values_list("pk", flat=True))
    done = refused = 0
    outcomes: dict[str, int] = {}
    rss = []
    with transaction.atomic():
        t0 = time.perf_counter()
        for start in range(0, len(ids), BATCH_SIZE):
            episodes = (
                CvtEpisode.objects.filter(pk__in=ids[start : start + BATCH_SIZE])
                .select_related("patient__clinic")
                .prefetch_related("risk_factors", "patient__medications")
                .order_by("pk")
            )
            for episode in episodes:
                try:
                    with transaction.atomic():
                        _, outcome = plan_recompute(episode=episode)
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
                except rules.FactsError:
                    refused += 1
                done += 1
                if done % 100 == 0:
                    rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            if time.perf_counter() - t0 > budget:
                break
        seconds = time.perf_counter() - t0
        transaction.set_rollback(True)
    total = len(ids)
    rate = done / seconds if seconds else 0
    growth = (rss[-1] - rss[max(len(rss) // 10 - 1, 0)]) if rss else 0
    return [
        Figure(
            "replan_episodes_per_s", f"re-planning (manage.py replan's pass), episodes/s ({done:,} of {total:,})",
            round(rate, 1), "episodes/s", "", None,
            {"episodes_done": done, "episodes": total, "seconds": round(seconds, 1), "budget_s": budget,
             "outcomes": outcomes, "refused": refused,
             "full_pass_estimate_s": round(total / rate, 0) if rate else None,
             "maxrss_mib": [round(x, 1) for x in rss[:: max(len(rss) // 10, 1)]]},
        ),
        Figure(
            "replan_peak_memory", "re-planning peak memory growth after the first tenth (maxrss)",
            round(growth, 1), "MiB", "flat (≤ 50 MiB)", growth <= 50,
        ),
    ]  # fmt: skip


def database_url() -> str:
    db = connection.settings_dict
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def as_dicts(figures: list[Figure]) -> list[dict[str, Any]]:
    return [asdict(f) for f in figures]
