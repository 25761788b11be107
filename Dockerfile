# The CVT anticoagulation clinic: one image for every app process (web, Celery worker, Celery beat, migrate).
# docker-compose.yml chooses the process with `command`; the default is the web server.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_STATIC_ROOT=/app/staticfiles

# A fixed, unprivileged user. /var/lib/celery holds the beat schedule (a named volume in Compose); creating it
# here, owned by the user, is what lets a fresh named volume inherit that ownership.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app \
    && mkdir -p /app /var/lib/celery \
    && chown app:app /var/lib/celery

WORKDIR /app

# Dependencies first, so a code change does not reinstall them. Runtime pins only: no test tooling in production.
COPY requirements.txt ./
RUN pip install -r requirements.txt

# The code stays owned by root: the app user can read it, not change it.
COPY . .

# Static files are collected at build time (whitenoise serves them, compressed and hashed, from
# DJANGO_STATIC_ROOT). Settings refuse to import without their production values, so this one step gets
# placeholders; nothing here connects to a database or a broker, and none of it stays in the image's env.
RUN DJANGO_DEBUG=0 \
    DJANGO_SECRET_KEY=build-only-not-a-secret \
    DJANGO_ALLOWED_HOSTS=localhost \
    SITE_URL=http://localhost \
    DATABASE_URL=sqlite:////tmp/build.sqlite3 \
    CELERY_BROKER_URL=redis://localhost:6379/0 \
    python manage.py collectstatic --noinput

USER app

EXPOSE 8000

# No curl in slim images: Python asks /healthz, with a Host header taken from DJANGO_ALLOWED_HOSTS so that a
# production host list without 127.0.0.1 still answers, and no HTTP(S)_PROXY setting in between (any non-2xx
# answer or a refused connection fails).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; h = [x.strip().lstrip('.') for x in os.environ.get('DJANGO_ALLOWED_HOSTS', '').split(',') if x.strip() not in ('', '*')]; r.build_opener(r.ProxyHandler({})).open(r.Request('http://127.0.0.1:8000/healthz', headers={'Host': (h or ['localhost'])[0]}), timeout=5)"]

CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
