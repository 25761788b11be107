"""The production container setup: docker-compose.yml, the Dockerfile and .env.example.

No container engine runs here, so the Compose file is checked by reading it: against the Compose Specification
JSON schema vendored in check-jsonschema (no network), and for the promises the deployment makes (exactly one
beat, a Redis that never evicts, health checks, start order, no literal secrets). The Dockerfile is parsed for its
promises too, and the parts that can run without an engine do run: the build-time ``collectstatic`` with exactly
the Dockerfile's environment, and the image's command and health check against a live gunicorn.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
BIN = Path(sys.executable).parent

APP_SERVICES = ("migrate", "web", "worker", "worker-urgent", "beat", "hl7")
LONG_RUNNING_APP_SERVICES = ("web", "worker", "worker-urgent", "beat", "hl7")
SERVICES_WITH_HEALTHCHECK = ("postgres", "redis", "web", "mailpit", "hl7")


# --- helpers ----------------------------------------------------------------------------------------------


def load_compose(path: Path = COMPOSE_FILE) -> dict:
    """The Compose file as Compose sees it before interpolation (YAML merge keys resolved)."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def environment_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def command_of(value: str | list[str]) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else list(value)


def healthcheck_command(service: dict) -> list[str]:
    """The healthcheck as an argv (CMD form) or as the shell words of a CMD-SHELL string."""
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return shlex.split(test)
    if test[0] == "CMD":
        return list(test[1:])
    assert test[0] == "CMD-SHELL", test
    return shlex.split(test[1])


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, arguments = full.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


def dockerfile_args(keyword: str) -> list[str]:
    return [arguments for name, arguments in dockerfile_instructions() if name == keyword]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for arguments in dockerfile_args("ENV"):
        for word in shlex.split(arguments):
            key, sep, value = word.partition("=")
            assert sep, f"use the ENV key=value form: {arguments!r}"
            env[key] = value
    return env


def dockerfile_exec_form(keyword: str) -> list[str]:
    """The JSON (exec) form of CMD, or of HEALTHCHECK's CMD after its options."""
    (arguments,) = dockerfile_args(keyword)
    if keyword == "HEALTHCHECK":
        arguments = arguments[arguments.index("CMD ") + len("CMD ") :]
    return json.loads(arguments)


def collectstatic_step() -> tuple[dict[str, str], list[str]]:
    """The RUN step that collects static files: its inline environment and its command."""
    steps = [arguments for arguments in dockerfile_args("RUN") if "collectstatic" in arguments]
    assert len(steps) == 1, steps
    words = shlex.split(steps[0])
    env: dict[str, str] = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    return env, words


def required_interpolation(name: str) -> str:
    """``${NAME:?message}``: Compose refuses to start when NAME is unset or empty."""
    return r"\$\{" + re.escape(name) + r":\?[^}]+\}"


def validate_with_compose_schema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


# --- the Compose Specification ----------------------------------------------------------------------------


def test_compose_file_is_valid_against_the_vendored_compose_specification_schema() -> None:
    result = validate_with_compose_schema(COMPOSE_FILE)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("broken", "replacement"),
    [
        ("condition: service_completed_successfully", "condition: service_finished"),
        ('restart: "no"', 'restarts: "no"'),
        ("    dockerfile: Dockerfile", "    dockerfil: Dockerfile"),  # inside the shared x-app block
        ("      replicas: 1", "      replica: 1"),
    ],
)
def test_the_schema_check_rejects_a_broken_compose_file(tmp_path: Path, broken: str, replacement: str) -> None:
    """The validation above can fail: the same check refuses the file with one key spelled wrong."""
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert broken in text
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(text.replace(broken, replacement, 1), encoding="utf-8")

    result = validate_with_compose_schema(bad)

    assert result.returncode != 0, result.stdout


def test_no_obsolete_version_key(compose: dict) -> None:
    assert "version" not in compose


def test_app_services_share_one_definition(compose: dict, services: dict[str, dict]) -> None:
    shared = compose["x-app"]
    for name in APP_SERVICES:
        service = services[name]
        assert service["image"] == shared["image"], name
        assert service["build"]["context"] == ".", name
        assert environment_of(service) == environment_of(shared), name


def test_app_environment_is_production_with_the_compose_services(compose: dict) -> None:
    env = environment_of(compose["x-app"])

    assert env["DJANGO_DEBUG"] == "0"
    assert env["DJANGO_ALLOWED_HOSTS"] == "${DJANGO_ALLOWED_HOSTS:-localhost,127.0.0.1}"
    assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0"
    assert re.fullmatch(r"postgres://anticoag:\$\{[^}]+\}@postgres:5432/anticoag", env["DATABASE_URL"])
    assert env["EMAIL_HOST"] == "${EMAIL_HOST:-mailpit}"
    assert env["EMAIL_PORT"] == "${EMAIL_PORT:-1025}"
    assert env["SITE_URL"].startswith("${SITE_URL")


# --- the promises of the deployment -----------------------------------------------------------------------


def test_exactly_one_beat_and_it_declares_one_replica(services: dict[str, dict]) -> None:
    beats = [name for name, service in services.items() if "beat" in command_of(service.get("command") or [])]

    assert beats == ["beat"]
    beat = services["beat"]
    assert beat["deploy"]["replicas"] == 1
    assert beat.get("scale", 1) == 1


def test_beat_keeps_its_schedule_on_a_named_volume(compose: dict, services: dict[str, dict]) -> None:
    beat = services["beat"]
    command = command_of(beat["command"])
    schedule = Path(command[command.index("--schedule") + 1])
    source_by_target = {volume.split(":")[1]: volume.split(":")[0] for volume in beat["volumes"]}

    assert str(schedule.parent) in source_by_target
    assert source_by_target[str(schedule.parent)] in compose["volumes"]  # a named volume, not the container


def test_redis_persists_and_never_evicts(services: dict[str, dict]) -> None:
    redis = services["redis"]
    command = " ".join(command_of(redis["command"]))

    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert any(volume.endswith(":/data") for volume in redis["volumes"])


@pytest.mark.parametrize("name", SERVICES_WITH_HEALTHCHECK)
def test_long_running_services_have_a_healthcheck(services: dict[str, dict], name: str) -> None:
    healthcheck = services[name].get("healthcheck") or {}

    assert healthcheck.get("test"), f"{name} has no healthcheck"
    assert not healthcheck.get("disable")


def test_web_healthcheck_asks_healthz(services: dict[str, dict]) -> None:
    assert "http://127.0.0.1:8000/healthz" in " ".join(healthcheck_command(services["web"]))


@pytest.mark.parametrize("name", LONG_RUNNING_APP_SERVICES)
def test_app_processes_wait_for_healthy_services_and_a_migrated_schema(services: dict[str, dict], name: str) -> None:
    depends_on = services[name]["depends_on"]

    assert depends_on["postgres"]["condition"] == "service_healthy"
    assert depends_on["redis"]["condition"] == "service_healthy"
    assert depends_on["migrate"]["condition"] == "service_completed_successfully"


def test_migrate_is_a_one_shot_after_postgres(services: dict[str, dict]) -> None:
    migrate = services["migrate"]

    assert migrate["restart"] == "no"  # the string: an unquoted no would be YAML false
    assert command_of(migrate["command"]) == ["python", "manage.py", "migrate", "--noinput"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "migrate" not in migrate["depends_on"]


def test_worker_can_be_scaled(services: dict[str, dict]) -> None:
    worker = services["worker"]

    assert "container_name" not in worker
    assert "ports" not in worker
    assert command_of(worker["command"])[:4] == ["celery", "-A", "config", "worker"]


def test_urgent_alerts_have_a_worker_of_their_own_and_the_general_worker_serves_both_queues(
    services: dict[str, dict],
) -> None:
    from django.conf import settings

    def queues(name: str) -> list[str]:
        command = command_of(services[name]["command"])
        return command[command.index("-Q") + 1].split(",")

    assert queues("worker-urgent") == [settings.ANTICOAG_URGENT_QUEUE]
    assert sorted(queues("worker")) == sorted([settings.CELERY_TASK_DEFAULT_QUEUE, settings.ANTICOAG_URGENT_QUEUE])
    node = command_of(services["worker-urgent"]["command"])
    assert node[node.index("-n") + 1].split("@")[0] in " ".join(healthcheck_command(services["worker-urgent"]))


def test_hl7_listener_binds_all_interfaces_of_its_container_and_publishes_mllp(services: dict[str, dict]) -> None:
    import argparse

    from django.core.management import load_command_class

    hl7 = services["hl7"]
    command = command_of(hl7["command"])
    parser = load_command_class("interfaces", "hl7_listener").create_parser("manage.py", "hl7_listener")
    options = parser.parse_args(command[3:])  # exits on an unknown option

    assert command[:3] == ["python", "manage.py", "hl7_listener"]
    assert isinstance(options, argparse.Namespace) and (options.host, options.port) == ("0.0.0.0", 2575)
    assert hl7["ports"] == ["${HL7_BIND:-127.0.0.1}:${HL7_PORT:-2575}:2575"]  # loopback unless said otherwise
    check = " ".join(healthcheck_command(hl7))
    assert "create_connection(('127.0.0.1', 2575)" in check
    assert "container_name" not in hl7


def test_mailpit_catches_smtp_and_shows_a_web_ui(services: dict[str, dict]) -> None:
    mailpit = services["mailpit"]

    assert mailpit["image"].startswith("axllent/mailpit:")
    assert any(str(port).endswith(":8025") for port in mailpit["ports"])
    assert healthcheck_command(mailpit) == ["/mailpit", "readyz"]


def test_no_service_carries_a_literal_secret(compose: dict, services: dict[str, dict]) -> None:
    app_env = environment_of(compose["x-app"])
    postgres_env = environment_of(services["postgres"])
    assert re.fullmatch(required_interpolation("DJANGO_SECRET_KEY"), app_env["DJANGO_SECRET_KEY"])
    assert re.fullmatch(required_interpolation("ANTICOAG_PSEUDONYM_KEY"), app_env["ANTICOAG_PSEUDONYM_KEY"])
    assert re.fullmatch(required_interpolation("POSTGRES_PASSWORD"), postgres_env["POSTGRES_PASSWORD"])
    # Not urlsplit: the `?` of the interpolation would read as the start of a query string.
    database_password = app_env["DATABASE_URL"].removeprefix("postgres://anticoag:").partition("}@")[0] + "}"
    assert re.fullmatch(required_interpolation("POSTGRES_PASSWORD"), database_password)

    for name, service in services.items():
        for key, value in environment_of(service).items():
            if any(word in key for word in ("SECRET", "PASSWORD", "TOKEN", "KEY")):
                # Only a required interpolation or an empty default: never a value written in the file.
                allowed = required_interpolation(key) + "|" + re.escape(f"${{{key}:-}}")
                assert re.fullmatch(allowed, value), f"{name}: {key}={value!r}"


def test_env_example_lists_the_required_variables_with_placeholders() -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    values = dict(
        line.split("=", 1) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    )
    required = set(re.findall(r"\$\{([A-Z_]+):\?", COMPOSE_FILE.read_text(encoding="utf-8")))

    assert required == {"DJANGO_SECRET_KEY", "POSTGRES_PASSWORD", "SITE_URL", "ANTICOAG_PSEUDONYM_KEY"}
    assert required <= values.keys()
    assert "CHANGE-ME" in values["DJANGO_SECRET_KEY"]
    assert "CHANGE-ME" in values["POSTGRES_PASSWORD"]
    assert "CHANGE-ME" in values["ANTICOAG_PSEUDONYM_KEY"]


# --- the commands refer to what exists --------------------------------------------------------------------


def _app_commands(services: dict[str, dict]) -> list[list[str]]:
    commands = [command_of(services[name]["command"]) for name in APP_SERVICES]
    commands.append(healthcheck_command(services["worker"]))
    commands.append(healthcheck_command(services["worker-urgent"]))
    commands.append(dockerfile_exec_form("CMD"))
    return commands


def test_every_app_command_refers_to_a_module_of_this_repository(services: dict[str, dict]) -> None:
    from celery import Celery
    from celery.app.utils import find_app
    from django.core.management import get_commands
    from gunicorn.util import import_app

    seen = set()
    for command in _app_commands(services):
        program = command[0]
        seen.add(program)
        if program == "gunicorn":
            target = next(word for word in command[1:] if not word.startswith("-") and ":" in word)
            assert target == "config.wsgi:application"
            assert callable(import_app(target))
        elif program == "celery":
            target = command[command.index("-A") + 1]
            assert target == "config"
            assert isinstance(find_app(target), Celery)
        elif program == "python":
            assert command[1] == "manage.py" and (ROOT / "manage.py").is_file()
            assert command[2] in get_commands()
        else:
            pytest.fail(f"unexpected program {program!r} in {command}")
    assert seen == {"gunicorn", "celery", "python"}


def test_every_app_command_uses_options_the_installed_programs_know(services: dict[str, dict]) -> None:
    from celery.bin.celery import celery as celery_cli
    from gunicorn.config import Config

    for command in _app_commands(services):
        if command[0] == "gunicorn":
            Config().parser().parse_args(command[1:])  # argparse exits on an unknown option
        elif command[0] == "celery":
            subcommand = next(word for word in command[3:] if not word.startswith("-"))
            known = {
                opt for param in celery_cli.commands[subcommand].params for opt in param.opts + param.secondary_opts
            }
            known |= {opt for param in celery_cli.params for opt in param.opts}
            for word in command[1:]:
                if word.startswith("-"):
                    assert word.split("=", 1)[0] in known, f"{word} is not an option of celery {subcommand}"


# --- the Dockerfile ---------------------------------------------------------------------------------------


def test_dockerfile_builds_on_python_311_slim_and_runs_as_a_user() -> None:
    instructions = dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]

    assert dockerfile_args("FROM") == ["python:3.11-slim"]
    users = dockerfile_args("USER")
    assert users and users[-1] not in ("root", "0", "0:0")
    assert keywords.index("USER") < keywords.index("CMD")
    assert "8000" in dockerfile_args("EXPOSE")[0].split()
    env = dockerfile_env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_dockerfile_installs_runtime_requirements_before_copying_the_code() -> None:
    instructions = dockerfile_instructions()
    text = DOCKERFILE.read_text(encoding="utf-8")
    install = next(i for i, (k, a) in enumerate(instructions) if k == "RUN" and "pip install" in a)
    copy_requirements = instructions.index(("COPY", "requirements.txt ./"))
    copy_code = instructions.index(("COPY", ". ."))

    assert "-r requirements.txt" in instructions[install][1]
    assert "requirements-dev" not in text
    assert copy_requirements < install < copy_code  # a code change does not reinstall the dependencies


def test_dockerfile_collects_static_files_at_build_time() -> None:
    env, command = collectstatic_step()

    assert command == ["python", "manage.py", "collectstatic", "--noinput"]
    assert env["DJANGO_DEBUG"] == "0"
    assert env["DATABASE_URL"] == "sqlite:////tmp/build.sqlite3"
    assert env["CELERY_BROKER_URL"] == "redis://localhost:6379/0"
    # The placeholders live in that one RUN step only, never in the image's environment.
    assert not set(env) & set(dockerfile_env())


def test_dockerfile_default_command_and_healthcheck_match_the_web_service(services: dict[str, dict]) -> None:
    assert dockerfile_exec_form("CMD") == command_of(services["web"]["command"])
    assert dockerfile_exec_form("HEALTHCHECK") == healthcheck_command(services["web"])


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image() -> None:
    entries = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}

    assert {".env", ".venv", "var", ".git"} <= entries
    assert "requirements.txt" not in entries


def test_build_time_collectstatic_succeeds_with_exactly_the_dockerfile_environment(tmp_path: Path) -> None:
    step_env, command = collectstatic_step()
    static_root = tmp_path / "staticfiles"
    # The base image provides PATH; the Dockerfile provides the rest. Nothing from this shell leaks in.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **dockerfile_env(), **step_env}
    env["DJANGO_STATIC_ROOT"] = str(static_root)  # the image's /app/staticfiles, moved somewhere writable
    command[0] = sys.executable

    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (static_root / "staticfiles.json").is_file()  # whitenoise's manifest: production storage was used
    assert (static_root / "admin" / "css" / "base.css").is_file()


# --- the image's command and health check, live -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_healthcheck(argv: list[str], allowed_hosts: str) -> subprocess.CompletedProcess[str]:
    # This shell's environment, proxies included: the check must reach 127.0.0.1 directly all the same.
    env = {**os.environ, "DJANGO_ALLOWED_HOSTS": allowed_hosts}
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.services
def test_image_command_serves_healthz_to_the_image_healthcheck(tmp_path: Path) -> None:
    """Given gunicorn started with the image's CMD (bound to a free port) and production hosts without 127.0.0.1,
    when the image's HEALTHCHECK runs, then it passes; and for a host the server refuses, it fails."""
    port = _free_port()
    command = dockerfile_exec_form("CMD")
    command[command.index("0.0.0.0:8000")] = f"127.0.0.1:{port}"
    command[0] = str(BIN / "gunicorn")
    healthcheck = dockerfile_exec_form("HEALTHCHECK")
    assert healthcheck[0] == "python" and healthcheck[2].count("127.0.0.1:8000") == 1
    healthcheck[2] = healthcheck[2].replace("127.0.0.1:8000", f"127.0.0.1:{port}")

    # The suite's own database may not exist yet outside pytest-django; the server's maintenance one does.
    database_url = urlunsplit(urlsplit(os.environ["DATABASE_URL"])._replace(path="/postgres"))
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_ALLOWED_HOSTS": "clinic.example.org",
        "DJANGO_SECURE_SSL_REDIRECT": "1",
        "DJANGO_STATIC_ROOT": str(tmp_path / "static"),
    }
    log = (tmp_path / "gunicorn.log").open("w")
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        result = _run_healthcheck(healthcheck, "clinic.example.org")
        while result.returncode != 0 and time.monotonic() < deadline and server.poll() is None:
            time.sleep(0.5)
            result = _run_healthcheck(healthcheck, "clinic.example.org")

        assert result.returncode == 0, result.stderr + (tmp_path / "gunicorn.log").read_text()
        refused = _run_healthcheck(healthcheck, "not-this-clinic.example.org")
        assert refused.returncode != 0
        assert "HTTP Error 400" in refused.stderr
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
    assert "GET /healthz" in (tmp_path / "gunicorn.log").read_text()  # the access log goes to stdout
