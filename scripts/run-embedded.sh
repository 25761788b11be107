#!/usr/bin/env bash
# Starts the web server, a Celery worker, Celery beat on the embedded broker and the HL7 listener, and stops them on
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

# The embedded run is a local demo, often in a container as root. Celery warns about root because a pickle
# payload would run code as root; this app accepts JSON only (CELERY_ACCEPT_CONTENT), so the warning does not
# apply here, and a production deployment runs its worker as an unprivileged user (Dockerfile).
export PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}ignore:You're running the worker with superuser privileges"

# Both queues (urgent alerts and the rest) in one worker: make run is a one-machine trial.
"$BIN/celery" -A config worker -Q urgent,celery --loglevel=INFO --concurrency=2 &
pids+=($!)
"$BIN/celery" -A config beat --loglevel=INFO --schedule=var/celerybeat-schedule &
pids+=($!)
"$BIN/python" manage.py runserver "127.0.0.1:$PORT" --noreload &
pids+=($!)
# Laboratory results over HL7 v2 / MLLP on HL7_HOST:HL7_PORT (127.0.0.1:2575 by default).
"$BIN/python" manage.py hl7_listener &
pids+=($!)

# Say where the clinic is only once it answers: /healthz checks the database and the broker.
ready=""
for _ in $(seq 1 120); do
    if "$BIN/python" - "http://127.0.0.1:$PORT/healthz" <<'PY' 2>/dev/null; then ready=1; break; fi
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as answer:
    sys.exit(0 if answer.status == 200 else 1)
PY
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null || exit 1; done  # one of them died: stop
    sleep 1
done
if [ -n "$ready" ]; then
    echo "Clinic ready at http://127.0.0.1:$PORT/admin/  (health: /healthz); HL7 MLLP on ${HL7_HOST:-127.0.0.1}:${HL7_PORT:-2575}. Ctrl-C stops everything."
else
    echo "The clinic did not answer on http://127.0.0.1:$PORT/healthz within 2 minutes; see the log above." >&2
fi
wait -n
