# Two commands: `make run` (the whole product on SQLite, demo data, no servers to install) and `make test`
# (the suite against PostgreSQL and Redis). `make run` installs requirements.txt only (the runtime); `make test`,
# `make lint` and the other tool targets install requirements-dev.txt (runtime + test tools) on top.

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
ARGS   ?=

# Standard local services; override any of them from the environment.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/anticoag
TEST_BROKER_URL   ?= redis://127.0.0.1:6379/14

RUN_ENV  := DJANGO_DEBUG=1 DATABASE_URL=sqlite:///$(CURDIR)/var/anticoag.sqlite3 CELERY_BROKER_URL=filesystem://localhost// \
            EMAIL_BACKEND=django.core.mail.backends.filebased.EmailBackend EMAIL_FILE_PATH=$(CURDIR)/var/mail \
            SITE_URL=http://127.0.0.1:$(PORT)
TEST_ENV := DJANGO_DEBUG=0 DJANGO_SECRET_KEY=test-only-not-a-secret DJANGO_ALLOWED_HOSTS=testserver,127.0.0.1,localhost \
            DJANGO_SECURE_SSL_REDIRECT=0 SITE_URL=http://testserver DATABASE_URL=$(TEST_DATABASE_URL) \
            CELERY_BROKER_URL=$(TEST_BROKER_URL) EMAIL_HOST=127.0.0.1 EMAIL_PORT=2525

.PHONY: run test lint check audit bench clean help var

help:
	@echo "make run   - start the clinic on http://127.0.0.1:$(PORT)/admin/ with demo data (SQLite, no servers)"
	@echo "make test  - run the test suite against PostgreSQL and Redis"
	@echo "make lint  - ruff lint and format check"
	@echo "make bench - benchmarks at network scale (SCALE=small for a quick run); see BENCHMARKS.md"
	@echo "make audit - pip-audit the pinned requirements (needs network access to a vulnerability database)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Two markers: the runtime packages (enough for `make run`) and the test tools on top of them.
$(VENV)/.installed-runtime: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.installed-runtime $@

var:
	mkdir -p var/mail var/broker/queue var/broker/control var/static

run: $(VENV)/.installed-runtime var
	$(RUN_ENV) $(BIN)/python manage.py migrate --noinput
	$(RUN_ENV) $(BIN)/python manage.py seed_demo
	$(RUN_ENV) PORT=$(PORT) BIN=$(BIN) ./scripts/run-embedded.sh

# The browser tests (tests/ui) drive Debian's Chromium through Playwright; installed here, never downloaded.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

# The letter tests read the PDFs with poppler-utils (pdftotext, pdftoppm); installed here like Chromium.
PDFTOTEXT := /usr/bin/pdftotext
$(PDFTOTEXT):
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y poppler-utils

test: $(VENV)/.installed var $(CHROMIUM) $(PDFTOTEXT)
	$(TEST_ENV) $(BIN)/python -m pytest $(ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

check: $(VENV)/.installed
	$(TEST_ENV) $(BIN)/python scripts/ensure_database.py
	$(TEST_ENV) $(BIN)/python manage.py check
	$(TEST_ENV) $(BIN)/python manage.py makemigrations --check --dry-run

# Known vulnerabilities in the pinned requirements. Needs a vulnerability database (PyPI / OSV) on the network,
# so it is not part of .ci/run; run it wherever the network allows, and before every release.
audit: $(VENV)/.installed
	$(BIN)/pip-audit -r requirements.txt --no-deps --disable-pip

# Benchmarks (BENCHMARKS.md): a synthetic network in its own database, generated once per scale, then measured.
SCALE ?= full
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/anticoag_bench
BENCH_BROKER_URL   ?= redis://127.0.0.1:6379/12
bench: $(VENV)/.installed var
	$(TEST_ENV) DATABASE_URL=$(BENCH_DATABASE_URL) CELERY_BROKER_URL=$(BENCH_BROKER_URL) \
	    $(BIN)/python -m bench --scale $(SCALE)

clean:
	rm -rf var .pytest_cache
