"""Settings for the CVT anticoagulation clinic: one module, driven by environment variables.

Defaults are the safe production ones (debug off, secure cookies). Development and the embedded demo
(``make run``) switch ``DJANGO_DEBUG=1``, which also allows the development-only fallbacks below
(a generated secret key, SQLite in ``var/``). In production a required value that is missing stops the
process at start-up with a message that names it. Every variable is listed in the README.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("ANTICOAG_VAR_DIR", BASE_DIR / "var"))


def env_str(name: str, default: str | None = None, *, required_in_production: bool = False) -> str:
    """Read a string; ``NAME_FILE`` (a path, e.g. a Docker secret) takes precedence over ``NAME``."""
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        try:
            return Path(file_path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_path!r} cannot be read: {exc}") from exc
    value = os.environ.get(name)
    if value not in (None, ""):
        return value
    if required_in_production and not DEBUG:
        raise ImproperlyConfigured(f"{name} is required when DJANGO_DEBUG is off (production). See README.")
    if default is None:
        return ""
    return default


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use 1/0, true/false, yes/no, on/off).")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={value!r} is not a whole number.") from exc


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", False)

SECRET_KEY = env_str(
    "DJANGO_SECRET_KEY", "insecure-development-key-never-use-in-production", required_in_production=True
)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost" if DEBUG else "")
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS is required when DJANGO_DEBUG is off (comma-separated).")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

#: Absolute base URL used in e-mailed links, e.g. https://clinic.example.org
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000", required_in_production=True).rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served from our own static files: clinics run offline
    "auditlog",
    "axes",  # login throttling and lock-out (admin and API token); after auth, before the apps
    "csp",
    "patients",
    "anticoag",
    "scheduling",
    "clinic",
    "reporting",
    "interfaces",
    "outcomes",
    "django.forms",  # the built-in widget templates, for FORM_RENDERER below
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Dates and times in the user's clinic's time zone (patients.clinic_time).
    "patients.clinic_time.ClinicTimeZoneMiddleware",
    "auditlog.middleware.AuditlogMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last: turns a lock-out flagged during the request into the lock-out answer (config.security).
    "axes.middleware.AxesMiddleware",
]

#: AxesStandaloneBackend first: it refuses a locked-out username+address before the password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            # {% html_attrs %}: widget attributes written in Python (templates/django/forms/, issue 18)
            "builtins": ["clinic.templatetags.html_attrs"],
        },
    },
]
# Forms render with the templates above, so the project's widget templates (templates/django/forms/) take the
# place of Django's own; the rest come from the "django.forms" app.
FORM_RENDERER = "django.forms.renderers.TemplatesSetting"

# --- Database -------------------------------------------------------------------------------------------
# DATABASE_URL, e.g. postgres://user:pass@host:5432/anticoag. In debug mode SQLite in var/ is the default.
_database_url = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'anticoag.sqlite3'}", required_in_production=True)
DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server and the Celery worker read while the other writes; IMMEDIATE avoids
    # "database is locked" upgrades inside transactions.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;",
        "transaction_mode": "IMMEDIATE",
    }
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Internationalisation -------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("DJANGO_TIME_ZONE", "UTC")
try:
    ZoneInfo(TIME_ZONE)
except (ZoneInfoNotFoundError, ValueError) as exc:
    raise ImproperlyConfigured(f"DJANGO_TIME_ZONE={TIME_ZONE!r} is not an IANA time zone.") from exc
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", VAR_DIR / "static"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- E-mail ---------------------------------------------------------------------------------------------
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
#: Seconds before an SMTP connection attempt or command gives up (a hung server must not hold a worker).
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 20)
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(VAR_DIR / "mail"))
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "CVT clinic <no-reply@clinic.invalid>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Celery ---------------------------------------------------------------------------------------------
# CELERY_BROKER_URL: redis://host:6379/0 in production; "filesystem://localhost//" for the embedded
# default (with a host, so kombu does not warn that none was supplied), which
# keeps its queue as files under var/broker (no server to install).
CELERY_BROKER_URL = env_str(
    "CELERY_BROKER_URL", "filesystem://localhost//" if DEBUG else "", required_in_production=True
)
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "control_folder": str(_broker_dir / "control"),
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # A task not acknowledged within this time is redelivered. Sends are short; the database lease, not
    # this timeout, decides who may send a reminder.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_ALWAYS_EAGER = False
#: Beat runs the sweep (``scheduling.tasks.sweep_task``) every few minutes. ``expires`` drops a run that
#: waited in the queue past the next one (a stopped worker must not find a pile of sweeps on restart).
ANTICOAG_SWEEP_INTERVAL_SECONDS = env_int("ANTICOAG_SWEEP_INTERVAL_SECONDS", 5 * 60)
CELERY_BEAT_SCHEDULE: dict = {
    "scheduling-sweep": {
        "task": "scheduling.sweep",
        "schedule": ANTICOAG_SWEEP_INTERVAL_SECONDS,
        "options": {"expires": ANTICOAG_SWEEP_INTERVAL_SECONDS * 4 // 5},
    },
    # Missed INR tests become "did not attend" and are recalled (scheduling/missed_tests.py); idempotent.
    "scheduling-missed-inr-tests": {
        "task": "scheduling.missed_inr_tests",
        "schedule": ANTICOAG_SWEEP_INTERVAL_SECONDS,
        "options": {"expires": ANTICOAG_SWEEP_INTERVAL_SECONDS * 4 // 5},
    },
    # The dashboard's quality figures (anticoag/ttr_snapshot.py) brought to each clinic's new day before its
    # first dashboard, and the day's changes folded in; a clinic already current costs a few small queries.
    "clinic-refresh-quality": {
        "task": "clinic.refresh_quality",
        "schedule": ANTICOAG_SWEEP_INTERVAL_SECONDS,
        "options": {"expires": ANTICOAG_SWEEP_INTERVAL_SECONDS * 4 // 5},
    },
}

# --- REST framework -------------------------------------------------------------------------------------
# Conventions (config/rest.py): token or session, role permissions (view needed to read), clinic scoping,
# cursor pagination, unknown query parameters refused, every refusal a 400 naming the field.
REST_FRAMEWORK = {
    # Token first: an anonymous API client gets 401 with "WWW-Authenticate: Token", not a bare 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Views set config.rest.RolePermission themselves (it cannot be a default: DRF would import it too early).
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "config.rest.ClinicAutoSchema",
    "EXCEPTION_HANDLER": "config.rest.exception_handler",
    "URL_FORMAT_OVERRIDE": None,  # no ?format=: every query parameter is a filter or a paging control
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CVT anticoagulation clinic API",
    "DESCRIPTION": (
        "Read the clinic's patients, CVT episodes, plans, INR readings, follow-ups and reminders; confirm a "
        "plan, complete a follow-up, record INR readings; export data sets (CSV, NDJSON, pseudonymised for "
        "research); one patient as a FHIR R4 Bundle; a nurse's follow-ups as an iCalendar feed.\n\n"
        "**Authentication**: a session (the admin login) or a token (`POST /api/v1/auth/token/`, then "
        "`Authorization: Token <key>`). Anonymous requests get 401.\n\n"
        "**Scope**: every list, filter, export and lookup covers only the clinics the user belongs to; a record "
        "of another clinic answers 404, exactly like one that does not exist.\n\n"
        "**Roles**: reading needs the role's view permission; clinicians confirm plans; clinicians and nurses "
        "record INR readings and complete follow-ups; the reporting role reads and exports only. Exports need "
        "the export permission (reporting, clinician).\n\n"
        "**Errors**: a refused input answers 400 with an object whose keys name the offending fields (or query "
        "parameters) and whose values list the messages; `non_field_errors` holds the rest. An unknown query "
        "parameter (one the operation does not list) is refused the same way, naming it and listing the allowed "
        "ones: a misspelt filter never silently returns everything.\n\n"
        "**Paging**: lists are cursor-paginated in id order (`cursor`, `page_size` up to 500); follow `next`."
    ),
    "VERSION": "1.0.0",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "PlanStatusEnum": "anticoag.models.PlanStatus",
        "AgentEnum": "anticoag.models.Agent",
        "InrSourceEnum": "anticoag.models.InrSource",
        "FollowUpStatusEnum": "scheduling.models.FollowUpStatus",
        "FollowUpKindEnum": "scheduling.models.FollowUpKind",
        "RecanalizationEnum": "scheduling.models.Recanalization",
        "ReminderStatusEnum": "scheduling.models.ReminderStatus",
        "ReminderKindEnum": "scheduling.models.ReminderKind",
        # Procedures (reference §8)
        "ProcedureAgentEnum": "anticoag.procedure_models.ProcedureAgent",
        "ProcedureKindEnum": "anticoag.procedure_models.ProcedureKind",
        "ProcedureStatusEnum": "anticoag.procedure_models.ProcedureStatus",
        "ProcedurePlanStatusEnum": "anticoag.procedure_models.ProcedurePlanStatus",
        "BleedRiskEnum": "anticoag.procedure_models.BleedRisk",
        "EventKindEnum": "outcomes.models.EventKind",
    },
}

# --- Exports, FHIR ---------------------------------------------------------------------------------------
#: Key of the research pseudonyms (HMAC-SHA256 of the MRN). Required for research exports in production:
#: without it they answer 503. Keep it apart from DJANGO_SECRET_KEY (rotating that must not change every
#: pseudonym) and never change it during a study. In debug mode a key derived from the secret key is used.
ANTICOAG_PSEUDONYM_KEY = env_str("ANTICOAG_PSEUDONYM_KEY", "")
#: FHIR Patient.identifier system of the MRNs; "{clinic_id}" is replaced by the clinic's id (MRNs are unique
#: per clinic). Empty: SITE_URL/fhir/sid/mrn/clinic-{clinic_id}.
ANTICOAG_FHIR_MRN_SYSTEM = env_str("ANTICOAG_FHIR_MRN_SYSTEM", "")

# --- Security (safe defaults; a TLS-terminating proxy sets X-Forwarded-Proto) ---------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
# The CSRF cookie stays readable by scripts (Django: HttpOnly there protects nothing): Swagger UI's "Try it
# out" reads it to send session-authenticated writes.
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("DJANGO_SESSION_IDLE_SECONDS", 15 * 60)
SESSION_SAVE_EVERY_REQUEST = True  # the session expires after SESSION_COOKIE_AGE of inactivity
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
#: The "preload" flag only makes the domain eligible for browsers' preload lists; nothing happens until someone
#: submits it there (hard to take back). An operator who turns it off silences the check that asks for it.
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", not DEBUG)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD or DEBUG else ["security.W021"]
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Content Security Policy (django-csp): only our own scripts, styles, images and connections; no inline
# script anywhere (the patient page's chart data is a JSON data block, read by static/clinic/charts.js).
# Swagger UI (/api/v1/docs/) loads its start script from a URL too; its one inline <style> is allowed there
# only (config/api_urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# --- Login throttling (django-axes): admin login and POST /api/v1/auth/token/ --------------------------
#: Failed logins of one username from one address before it is locked, and for how long.
AXES_FAILURE_LIMIT = env_int("ANTICOAG_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("ANTICOAG_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "config.security.lockout_response"
AXES_CLIENT_IP_CALLABLE = "config.security.client_ip"
#: Proxies in front of gunicorn that append to X-Forwarded-For (1 for the usual TLS proxy). 0: REMOTE_ADDR.
ANTICOAG_TRUSTED_PROXY_COUNT = env_int("DJANGO_TRUSTED_PROXY_COUNT", 0)

# --- Error reports: ADMINS get 500 e-mails without request data, settings or local variables. --------
ADMINS = [("Operators", address) for address in env_list("DJANGO_ADMINS")]
DEFAULT_EXCEPTION_REPORTER_FILTER = "config.security.PhiSafeExceptionReporterFilter"

# --- Audit ----------------------------------------------------------------------------------------------
AUDITLOG_INCLUDE_ALL_MODELS = False
AUDITLOG_STORE_JSON_CHANGES = True  # changes as JSON, so they can be queried and exported
AUDITLOG_DISABLE_REMOTE_ADDR = False

# --- Logging: no patient data in log lines; the format carries only what operators need. ---------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("DJANGO_LOG_LEVEL", "INFO")},
    # django-axes: failures and lock-outs (WARNING) are kept; its start-up banner and successes are noise.
    "loggers": {"axes": {"level": "WARNING"}},
}

# --- Clinic behaviour -----------------------------------------------------------------------------------
#: Days overdue after which an open follow-up escalates to the responsible clinician.
ANTICOAG_ESCALATE_AFTER_DAYS = env_int("ANTICOAG_ESCALATE_AFTER_DAYS", 7)

# --- Reminders (the outbox; see scheduling/outbox.py) ---------------------------------------------------
#: Backoff after a transient SMTP error: base, 2 x base, 4 x base... capped at the maximum (seconds).
ANTICOAG_REMINDER_RETRY_BASE_SECONDS = env_int("ANTICOAG_REMINDER_RETRY_BASE_SECONDS", 60)
ANTICOAG_REMINDER_RETRY_MAX_SECONDS = env_int("ANTICOAG_REMINDER_RETRY_MAX_SECONDS", 3600)
#: A row in SENDING past this lease belonged to a dead worker and is reclaimed. Must exceed a send
#: (a few SMTP commands of at most EMAIL_TIMEOUT each).
ANTICOAG_REMINDER_SEND_LEASE_SECONDS = env_int("ANTICOAG_REMINDER_SEND_LEASE_SECONDS", 5 * 60)
#: Rows claimed per transaction by the sweep.
ANTICOAG_SWEEP_BATCH_SIZE = env_int("ANTICOAG_SWEEP_BATCH_SIZE", 500)
#: Reminders carry no diagnosis, not even in the sender's name. Empty: "Clinic reminders" at the address of
#: DEFAULT_FROM_EMAIL.
ANTICOAG_REMINDER_FROM_EMAIL = env_str("ANTICOAG_REMINDER_FROM_EMAIL", "")
#: Right-hand side of the reminders' deterministic Message-IDs. Empty: the host of SITE_URL.
ANTICOAG_MESSAGE_ID_DOMAIN = env_str("ANTICOAG_MESSAGE_ID_DOMAIN", "")

# --- Reminder delivery: retries, queues and monitoring (issue 19; README "Reminder delivery") -----------
#: Transient errors retry for as long as it takes (backoff above); only a permanent refusal fails a row. A row
#: whose sends were cut off this many times by a dead worker (the send lease ran out) is FAILED instead.
ANTICOAG_REMINDER_MAX_LOST_SENDS = env_int("ANTICOAG_REMINDER_MAX_LOST_SENDS", 3)
#: A claimed-but-unsent row is enqueued again after this lease (the broker may have lost the message); the
#: lease doubles with each re-enqueue before the row's next send attempt, up to the maximum.
ANTICOAG_REMINDER_ENQUEUE_LEASE_SECONDS = env_int("ANTICOAG_REMINDER_ENQUEUE_LEASE_SECONDS", 2 * 60)
ANTICOAG_REMINDER_ENQUEUE_LEASE_MAX_SECONDS = env_int("ANTICOAG_REMINDER_ENQUEUE_LEASE_MAX_SECONDS", 30 * 60)
#: Routine reminders (digests, escalations) are sent in batches of this many per task and SMTP connection.
ANTICOAG_REMINDER_SEND_BATCH_SIZE = env_int("ANTICOAG_REMINDER_SEND_BATCH_SIZE", 20)
#: Urgent alerts go to this queue; a worker of its own serves it (docker-compose.yml: worker-urgent).
ANTICOAG_URGENT_QUEUE = env_str("ANTICOAG_URGENT_QUEUE", "urgent")
CELERY_TASK_DEFAULT_QUEUE = "celery"
#: Workers started without -Q consume both queues (make run's embedded worker, the test workers).
CELERY_TASK_QUEUES = {CELERY_TASK_DEFAULT_QUEUE: {}, ANTICOAG_URGENT_QUEUE: {}}
#: /healthz (authenticated detail), /metrics and outbox_status say "degraded" past any of these.
ANTICOAG_OUTBOX_DEGRADED_PENDING = env_int("ANTICOAG_OUTBOX_DEGRADED_PENDING", 5000)
ANTICOAG_OUTBOX_DEGRADED_PENDING_AGE_SECONDS = env_int("ANTICOAG_OUTBOX_DEGRADED_PENDING_AGE_SECONDS", 60 * 60)
ANTICOAG_OUTBOX_DEGRADED_URGENT_AGE_SECONDS = env_int("ANTICOAG_OUTBOX_DEGRADED_URGENT_AGE_SECONDS", 5 * 60)
ANTICOAG_OUTBOX_DEGRADED_FAILED = env_int("ANTICOAG_OUTBOX_DEGRADED_FAILED", 0)
ANTICOAG_OUTBOX_FAILED_WINDOW_HOURS = env_int("ANTICOAG_OUTBOX_FAILED_WINDOW_HOURS", 7 * 24)
#: Bearer token a Prometheus scraper presents to /metrics (and /healthz's detail). Empty: staff login only.
ANTICOAG_METRICS_TOKEN = env_str("ANTICOAG_METRICS_TOKEN", "")

# --- Staff UI -------------------------------------------------------------------------------------------
#: Project-wide static files: the vendored chart library (static/vendor/, with its licence) and the staff
#: pages' own scripts and styles (static/clinic/). Served by WhiteNoise; no CDN at run time.
STATICFILES_DIRS = [BASE_DIR / "static"]

# --- Laboratory interface: HL7 v2 over MLLP (interfaces/) ---------------------------------------------------
#: Where ``manage.py hl7_listener`` listens. 127.0.0.1 in development; the Compose service binds 0.0.0.0.
HL7_HOST = env_str("HL7_HOST", "127.0.0.1")
HL7_PORT = env_int("HL7_PORT", 2575)
#: Name of the one clinic a listener serves: a PID-3 without an assigning authority is that clinic's MRN, and
#: messages of no known clinic are held in its queue. Empty: clinics are told apart by assigning authority only.
HL7_CLINIC = env_str("HL7_CLINIC", "")
#: MSH-3 / MSH-4 of our ACKs.
HL7_APPLICATION = env_str("HL7_APPLICATION", "CVTCLINIC")
HL7_FACILITY = env_str("HL7_FACILITY", "CVTCLINIC")
#: A larger message is read to its end, discarded and answered AE (a results message is a few kilobytes).
HL7_MAX_MESSAGE_BYTES = env_int("HL7_MAX_MESSAGE_BYTES", 1024 * 1024)
#: Threads doing the listener's database work (one transaction per message each).
HL7_DB_THREADS = env_int("HL7_DB_THREADS", 4)

# --- Input and access hardening (issue 13) ----------------------------------------------------------------
#: Clinical dates (births, diagnoses, draws, labs, doses, events) before 1 January of this year are refused.
ANTICOAG_EARLIEST_CLINICAL_YEAR = env_int("ANTICOAG_EARLIEST_CLINICAL_YEAR", 1900)
#: API tokens expire this many days after they were issued; a new POST /api/v1/auth/token/ issues a fresh one.
ANTICOAG_API_TOKEN_DAYS = env_int("ANTICOAG_API_TOKEN_DAYS", 30)
#: JSON request bodies of the API: deepest nesting and largest size accepted (a 400 beyond).
ANTICOAG_API_JSON_MAX_DEPTH = env_int("ANTICOAG_API_JSON_MAX_DEPTH", 32)
ANTICOAG_API_JSON_MAX_BYTES = env_int("ANTICOAG_API_JSON_MAX_BYTES", 1024 * 1024)
#: Failed logins from one address, across usernames, before that address is locked out too.
ANTICOAG_LOGIN_ADDRESS_FAILURE_LIMIT = env_int("ANTICOAG_LOGIN_ADDRESS_FAILURE_LIMIT", 20)
#: INR CSV imports with more data rows than this run as a background task (the request answers at once).
ANTICOAG_INR_IMPORT_BACKGROUND_ROWS = env_int("ANTICOAG_INR_IMPORT_BACKGROUND_ROWS", 2000)
MIDDLEWARE.insert(MIDDLEWARE.index("django.middleware.common.CommonMiddleware"), "config.hardening.RefuseNulMiddleware")
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1, "config.hardening.NoStoreMiddleware"
)
REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] = ["config.hardening.LimitedJSONParser"]
REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"][0] = "config.hardening.ExpiringTokenAuthentication"
AXES_HANDLER = "config.hardening.ClinicAxesHandler"
SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"] = [
    *SPECTACULAR_SETTINGS.get("POSTPROCESSING_HOOKS", ["drf_spectacular.hooks.postprocess_schema_enums"]),
    "config.hardening.schema_query_strings_not_empty",
]
