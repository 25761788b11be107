"""Beat's tasks of the staff pages."""

from celery import shared_task


@shared_task(name="clinic.refresh_quality", ignore_result=True)
def refresh_quality_task() -> int:
    """Keep every clinic's dashboard quality figures current (``clinic.dashboard.refresh_quality_snapshots``):
    at a clinic's new day the whole snapshot is computed here rather than by its first dashboard."""
    from .dashboard import refresh_quality_snapshots

    return refresh_quality_snapshots()
