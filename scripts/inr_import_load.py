"""A 100,000-row INR CSV import through gunicorn with its production timeout, and its status URL polled.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/anticoag_load CELERY_BROKER_URL=redis://127.0.0.1:6379/2 \\
        .venv/bin/python scripts/inr_import_load.py [--rows 100000] [--patients 500]

Creates (or reuses) the database, migrates it, adds a clinic, a nurse and the patients, starts gunicorn (the
Compose command: 3 sync workers, the default 30 s worker timeout) and one Celery worker on free local ports,
uploads the file through the API and polls the status URL until the import has finished. Prints the upload's
answer time, every change of phase with its progress, and the result. Exits 1 if the import did not complete.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
#: A throw-away password for the throw-away nurse of this run (never a fixed string in the repository).
PASSWORD = secrets.token_urlsafe(16)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, input=stdin, capture_output=True, text=True
    )
    if result.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


SETUP = """
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from datetime import date
from patients.models import Clinic, Patient
clinic, _ = Clinic.objects.get_or_create(name="Load clinic", defaults={"alert_email": "alerts@clinic.invalid",
                                         "time_zone": "Europe/Paris"})
nurse, _ = get_user_model().objects.get_or_create(username="load.nurse", defaults={"is_staff": True})
nurse.set_password("%(password)s"); nurse.save()
nurse.groups.add(Group.objects.get(name="nurse")); clinic.staff.add(nurse)
for n in range(%(patients)d):
    Patient.objects.get_or_create(clinic=clinic, mrn=f"LOAD-{n:05d}", defaults={"family_name": "Load",
        "given_name": f"P{n}", "date_of_birth": date(1970, 1, 1), "sex": "female"})
print(clinic.pk)
"""


def csv_file(rows: int, patients: int) -> bytes:
    start = datetime.now(UTC) - timedelta(days=1)
    run = int(time.time())  # a fresh minute for each run: no duplicates of an earlier run's readings
    lines = ["mrn,drawn_at,inr"]
    for n in range(rows):
        drawn = start - timedelta(days=(n // patients), seconds=run % 86400 % 3600)
        lines.append(f"LOAD-{n % patients:05d},{drawn.isoformat(timespec='seconds')},{2 + (n % 10) / 10:.1f}")
    return ("\n".join(lines) + "\n").encode()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--patients", type=int, default=500)
    options = parser.parse_args()
    port = free_port()
    env = dict(os.environ)
    env |= {
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": env.get("DJANGO_SECRET_KEY", "load-test-only-not-a-secret"),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "SITE_URL": f"http://127.0.0.1:{port}",
        "PYTHONUNBUFFERED": "1",
    }
    subprocess.run([sys.executable, "scripts/ensure_database.py"], cwd=REPO, env=env, check=True)
    manage(env, "migrate", "--no-input")
    clinic_id = int(
        manage(env, "shell", stdin=SETUP % {"password": PASSWORD, "patients": options.patients}).split()[-1]
    )
    logs = Path(tempfile.mkdtemp(prefix="inr-import-load-"))
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--workers", "3", "--timeout", "30"],
            cwd=REPO, env=env, stdout=(logs / "gunicorn.log").open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
        subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--loglevel=INFO",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"load-{os.getpid()}@%h"],
            cwd=REPO, env=env, stdout=(logs / "worker.log").open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
    ]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if requests.get(f"{base}/healthz", timeout=30).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.5)
        token = requests.post(
            f"{base}/api/v1/auth/token/", json={"username": "load.nurse", "password": PASSWORD}, timeout=30
        ).json()["token"]
        headers = {"Authorization": f"Token {token}"}
        content = csv_file(options.rows, options.patients)
        began = time.monotonic()
        answer = requests.post(
            f"{base}/api/v1/inr-readings/import/",
            headers=headers,
            data={"clinic": clinic_id},
            files={"file": ("load.csv", content, "text/csv")},
            timeout=60,
        )
        print(f"upload of {options.rows:,} rows ({len(content) / 1e6:.1f} MB): HTTP {answer.status_code} "
              f"in {time.monotonic() - began:.1f} s")  # fmt: skip
        if answer.status_code != 202:
            print(answer.text[:2000])
            return 1
        status_url = base + answer.headers["Location"]
        print(f"status URL: {status_url}")
        last = None
        while True:
            status = requests.get(status_url, headers=headers, timeout=30).json()
            shown = (status["phase"], status["rows_done"])
            if shown != last:
                print(f"{time.monotonic() - began:7.1f} s  {status['phase']:<11} {status['rows_done']:>7,} of "
                      f"{status['rows_total']:,}")  # fmt: skip
                last = shown
            if status["finished"]:
                break
            time.sleep(0.5)
        print(f"result after {time.monotonic() - began:.1f} s: {status}")
        timeouts = (logs / "gunicorn.log").read_text().count("WORKER TIMEOUT")
        print(f"gunicorn worker timeouts: {timeouts} (logs in {logs})")
        return 0 if status["phase"] == "done" and status["imported"] == options.rows and not timeouts else 1
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


if __name__ == "__main__":
    raise SystemExit(main())
