"""Celery tasks of the anticoagulation app: thin wrappers over services."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="anticoag.inr_import", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def inr_import_task(import_id: int) -> None:
    """Run a queued background INR import (:func:`anticoag.imports.inr_import_run`); a repeat does nothing."""
    from .imports import inr_import_run

    inr_import_run(import_id=import_id)
