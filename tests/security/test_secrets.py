"""Secrets come from the environment or from files (``NAME_FILE``), never from the repository."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.security.test_deploy_check import production_env

ROOT = Path(__file__).resolve().parents[2]

#: Published, deliberately non-secret values: the demo login of `make run` (README) and placeholders.
ALLOWED_VALUES = {
    "demo-clinic-2026": "the demo password of `make run`, printed by seed_demo and in the README",
    "test-only-not-a-secret": "the test suite's secret key (Makefile)",
    "build-only-not-a-secret": "the Docker build's collectstatic key (Dockerfile)",
}
ALLOWED_VALUE_PATTERNS = [r"CHANGE-ME.*", r"\$\{.*", r"env_\w+\(.*", r"os\.environ.*", r"settings\..*"]

#: Shapes of real credentials, anywhere in the repository.
CREDENTIAL_SHAPES = {
    "private key": re.compile("-----BEGIN ([A-Z]+ )?" + "PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "Stripe live key": re.compile(r"\b[sr]k_live_[A-Za-z0-9]{16,}"),
    # user:password@ with a literal password (not an interpolation, not the placeholders of the docs)
    "URL with a password": re.compile(
        r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:(?!(pass|password|secret)@)[^@\s/\"'\\$(){}]{4,}@"
    ),
}
#: NAME=value / name = "value" for secret-like names, in configuration and application code.
SECRET_ASSIGNMENT = re.compile(
    r"""(?ix)\b(?P<name>[a-z0-9_]*(password|passwd|secret|api_key|pseudonym_key|token)[a-z0-9_]*)
    \s*[:=]\s*(?P<quote>["']?)(?P<value>[^\s"'#,)]+)"""
)


def tracked_files() -> list[Path]:
    """The files git tracks, plus new ones not ignored (what the next commit can contain)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    files = []
    for name in out.splitlines():
        path = ROOT / name
        if path.is_file() and path.suffix not in {".png", ".jpg", ".ico", ".woff", ".woff2", ".sqlite3"}:
            files.append(path)
    return files


def is_allowed(value: str) -> bool:
    return value in ALLOWED_VALUES or any(re.fullmatch(p, value) for p in ALLOWED_VALUE_PATTERNS)


def test_no_credentials_in_the_repository() -> None:
    found = []
    for path in tracked_files():
        if path == Path(__file__):
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        for label, shape in CREDENTIAL_SHAPES.items():
            for match in shape.finditer(text):
                found.append(f"{path.relative_to(ROOT)}: {label}: {match.group(0)[:40]}")
    assert not found, found


def test_no_literal_secret_values_in_configuration_or_code() -> None:
    found = []
    for path in tracked_files():
        relative = path.relative_to(ROOT)
        # Tests hold fixtures' throwaway credentials; documentation shows placeholders.
        if relative.parts[0] in {"tests", "bench"} or path.suffix in {".md", ".html", ".txt", ".js", ".css"}:
            continue
        if path.suffix not in {".py", ".yml", ".yaml", ".toml", ".cfg", ".ini", ".sh", ""} and path.name not in {
            ".env.example",
            "Makefile",
            "Dockerfile",
        }:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="ignore").splitlines(), start=1):
            for match in SECRET_ASSIGNMENT.finditer(line):
                value = match.group("value")
                quoted = bool(match.group("quote"))
                env_style = match.group("name").isupper() and path.suffix != ".py"
                if not (quoted or env_style) or len(value) < 6 or is_allowed(value):
                    continue
                found.append(f"{relative}:{number}: {line.strip()[:100]}")
    assert not found, found


def test_the_scan_finds_a_planted_secret(tmp_path: Path) -> None:
    # The two scans are not vacuous.
    planted = '-----BEGIN RSA PRIVATE KEY-----\nDATABASE_PASSWORD = "hunter2-but-longer"\n'.replace(" RSA", " RSA")
    assert CREDENTIAL_SHAPES["private key"].search(planted)
    match = SECRET_ASSIGNMENT.search(planted.splitlines()[1])
    assert match and not is_allowed(match.group("value"))
    assert CREDENTIAL_SHAPES["URL with a password"].search("postgres://anticoag:s3cr3tpass@db:5432/x")
    assert not CREDENTIAL_SHAPES["URL with a password"].search("postgres://anticoag:${POSTGRES_PASSWORD:?x}@db/x")


def _settings_value(env: dict[str, str], expression: str) -> subprocess.CompletedProcess:
    # Not `manage.py shell`: manage.py reports a settings error and still exits 0.
    code = f"import django; django.setup(); from django.conf import settings; print({expression})"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_secret_is_read_from_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "secret_key"
    key_file.write_text("from-a-docker-secret-" + "k" * 40 + "\n", encoding="utf-8")
    pseudonym_file = tmp_path / "pseudonym_key"
    pseudonym_file.write_text("pseudonym-from-file\n", encoding="utf-8")
    env = production_env(DJANGO_SECRET_KEY_FILE=str(key_file), ANTICOAG_PSEUDONYM_KEY_FILE=str(pseudonym_file))
    del env["DJANGO_SECRET_KEY"]  # only the file gives it

    result = _settings_value(env, "settings.SECRET_KEY, settings.ANTICOAG_PSEUDONYM_KEY")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "from-a-docker-secret-" + "k" * 40 + " pseudonym-from-file"


def test_the_file_wins_over_the_variable_and_an_unreadable_file_stops_start_up(tmp_path: Path) -> None:
    key_file = tmp_path / "secret_key"
    key_file.write_text("z" * 60, encoding="utf-8")
    result = _settings_value(production_env(DJANGO_SECRET_KEY_FILE=str(key_file)), "settings.SECRET_KEY")
    assert result.stdout.strip().splitlines()[-1] == "z" * 60

    result = _settings_value(production_env(DJANGO_SECRET_KEY_FILE=str(tmp_path / "missing")), "1")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY_FILE" in result.stderr and "cannot be read" in result.stderr


def test_production_without_a_secret_key_refuses_to_start() -> None:
    env = production_env()
    del env["DJANGO_SECRET_KEY"]
    result = _settings_value(env, "1")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in result.stderr


def test_the_access_log_names_the_path_without_the_query_string() -> None:
    # gunicorn reads ./gunicorn.conf.py (the image's working directory) whatever the command line says;
    # %(r)s (the request line) or %(q)s would log an admin search "?q=<family name>".
    result = subprocess.run(
        [str(Path(sys.executable).parent / "gunicorn"), "--print-config", "config.wsgi:application"],
        cwd=ROOT,
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = next(line for line in result.stdout.splitlines() if line.startswith("access_log_format"))
    log_format = line.split("=", 1)[1].strip()
    assert "%(U)s" in log_format
    assert "%(r)s" not in log_format and "%(q)s" not in log_format
