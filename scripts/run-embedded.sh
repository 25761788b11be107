#!/usr/bin/env bash
# Starts the web server, a Celery worker and Celery beat on the embedded broker, and stops all three on
# Ctrl-C (or when any one of them exits).
set -euo pipefail
: "${BIN:=.venv/bin}" "${PORT:=8000}"
pids=()
stop() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop INT TERM EXIT

# Both queues (urgent alerts and the rest) in one worker: make run is a one-machine trial.
"$BIN/celery" -A config worker -Q urgent,celery --loglevel=INFO --concurrency=2 &
pids+=($!)
"$BIN/celery" -A config beat --loglevel=INFO --schedule=var/celerybeat-schedule &
pids+=($!)
"$BIN/python" manage.py runserver "127.0.0.1:$PORT" --noreload &
pids+=($!)

echo "Clinic running at http://127.0.0.1:$PORT/admin/  (health: /healthz). Ctrl-C stops everything."
wait -n
