"""INR CSV imports, small and large (issue 13).

A file of at most ``ANTICOAG_INR_IMPORT_BACKGROUND_ROWS`` data rows is imported in the request, as before.
A larger one is stored (:class:`~anticoag.models.InrImport`) and imported by a Celery task: the request
answers at once with the import's status URL; the task runs the same all-or-nothing
:func:`anticoag.inr.inr_import_csv` on the stored bytes and writes its progress, then its result.

Progress is written on a connection of its own: the storing phase runs in one transaction (all or nothing),
and what it writes through that transaction's connection nobody else sees until it commits. (SQLite has one
writer at a time: there the storing phase reports only its start and its end.)
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass

from auditlog.context import set_actor
from django.conf import settings
from django.db import connection, connections, transaction
from django.utils import timezone

from patients.models import Clinic

from .inr import IMPORT_MAX_BYTES, ImportResult, inr_import_csv
from .models import InrImport, InrImportPhase

logger = logging.getLogger(__name__)

_PHASES = {
    "validating": InrImportPhase.VALIDATING,
    "storing": InrImportPhase.STORING,
    "announcing": InrImportPhase.ANNOUNCING,
}


@dataclass
class ImportStarted:
    """A background import was queued: poll ``job`` (its status URL) for progress and the result."""

    job: InrImport


def _data_rows(content: bytes) -> int:
    """Data rows of a CSV file, counted cheaply (lines after the header, blank lines excluded)."""
    lines = content.splitlines()
    return max(0, sum(1 for line in lines[1:] if line.strip()))


def inr_import_start(*, clinic: Clinic, file, entered_by) -> ImportResult | ImportStarted:
    """Import now (small file) or queue a background import (large file)."""
    content = file.read() if hasattr(file, "read") else file
    if isinstance(content, str):
        content = content.encode("utf-8")
    name = str(getattr(file, "name", "") or "file")[-200:]
    rows = _data_rows(content) if isinstance(content, bytes | bytearray) else 0
    too_big = isinstance(content, bytes | bytearray) and len(content) > IMPORT_MAX_BYTES
    if rows <= settings.ANTICOAG_INR_IMPORT_BACKGROUND_ROWS or too_big:
        return inr_import_csv(clinic=clinic, file=content, entered_by=entered_by, name=name)
    job = InrImport.objects.create(
        clinic=clinic, uploaded_by=entered_by, file_name=name, content=bytes(content), rows_total=rows
    )
    from .tasks import inr_import_task

    transaction.on_commit(lambda: inr_import_task.delay(job.pk))
    return ImportStarted(job=job)


class _ProgressWriter:
    """Writes an import's phase and count, visible to others at once (see the module docstring)."""

    def __init__(self, job: InrImport) -> None:
        self.job = job
        self.side = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        values = {"phase": _PHASES.get(phase, phase), "rows_done": done}
        if not connection.in_atomic_block:
            InrImport.objects.filter(pk=self.job.pk).update(**values)
            return
        if connection.vendor == "sqlite":
            return
        if self.side is None:
            self.side = connections.create_connection("default")
        with self.side.cursor() as cursor:
            cursor.execute(
                f"UPDATE {InrImport._meta.db_table} SET phase = %s, rows_done = %s WHERE id = %s",
                [values["phase"], done, self.job.pk],
            )

    def close(self) -> None:
        if self.side is not None:
            self.side.close()


def inr_import_run(*, import_id: int) -> InrImport | None:
    """Run one queued import (the task). Claimed by a conditional UPDATE: a second delivery does nothing."""
    claimed = InrImport.objects.filter(pk=import_id, phase=InrImportPhase.QUEUED).update(
        phase=InrImportPhase.VALIDATING, started_at=timezone.now(), rows_done=0
    )
    if not claimed:
        return None
    job = InrImport.objects.select_related("clinic", "uploaded_by").get(pk=import_id)
    writer = _ProgressWriter(job)
    try:
        with set_actor(job.uploaded_by) if job.uploaded_by else nullcontext():
            result = inr_import_csv(
                clinic=job.clinic,
                file=bytes(job.content),
                entered_by=job.uploaded_by,
                progress=writer,
                name=job.file_name,
            )
    except Exception:
        logger.exception("INR import %s failed", import_id)  # the id only: no patient data in logs
        result = ImportResult(errors=[{"row": None, "field": "file", "message": "The import failed: try again."}])
    finally:
        writer.close()
    InrImport.objects.filter(pk=import_id).update(
        phase=InrImportPhase.DONE if result.ok else InrImportPhase.FAILED,
        rows_done=job.rows_total,
        imported=result.imported,
        patients=result.patients,
        errors=result.errors,
        finished_at=timezone.now(),
    )
    job.refresh_from_db()
    return job


def inr_import_status(job: InrImport) -> dict:
    """What the status URL answers: phase, progress, and when finished the result."""
    answer = {
        "id": job.pk,
        "clinic": job.clinic_id,
        "phase": job.phase,
        "finished": job.finished,
        "rows_total": job.rows_total,
        "rows_done": job.rows_done,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }
    if job.phase == InrImportPhase.DONE:
        answer |= {"imported": job.imported, "patients": job.patients}
    if job.phase == InrImportPhase.FAILED:
        answer["errors"] = job.errors
    return answer
