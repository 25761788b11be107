"""The Celery wiring: beat runs the sweep with ``expires``; the send task is late-acked; no ETA anywhere."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

from config.celery import app
from scheduling import tasks

SCHEDULING = Path(tasks.__file__).resolve().parent


def test_beat_runs_the_sweep_every_five_minutes_and_drops_late_runs():
    entry = settings.CELERY_BEAT_SCHEDULE["scheduling-sweep"]
    assert entry["task"] == tasks.sweep_task.name == "scheduling.sweep"
    assert entry["schedule"] == 5 * 60
    assert 0 < entry["options"]["expires"] < entry["schedule"]
    app.loader.import_default_modules()
    assert {"scheduling.sweep", "scheduling.send_reminder", "scheduling.send_reminders"} <= set(app.tasks)


def test_the_send_tasks_are_acknowledged_late_and_rejected_when_their_worker_is_lost():
    for task in (tasks.send_reminder, tasks.send_reminders):
        assert task.acks_late is True
        assert task.reject_on_worker_lost is True
        assert not getattr(task, "autoretry_for", ())  # a retry would be a countdown task


def test_no_reminder_is_scheduled_with_an_eta_or_countdown():
    pattern = re.compile(r"\b(countdown|eta)\s*=|apply_async\(|\.retry\(")
    offenders = [
        f"{path.name}:{number}"
        for path in SCHEDULING.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []
