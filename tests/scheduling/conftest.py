"""Real parts for the reminder tests: an SMTP server (aiosmtpd), the Redis broker, Celery workers.

* ``smtp_server``: an aiosmtpd server on a free local port that records what it accepts; its ``mode`` can
  be switched to ``tempfail`` (451 at RCPT) or ``reject`` (550), its ``delay`` slows DATA down, its ``gate``
  lets through only as many messages as the test releases. Django's e-mail settings point at it for the
  test; ``stop()`` and ``start()`` take it down and bring it back on the same port.
* ``broker``: the Redis test database, emptied before and after the test.
* ``celery_worker``: a Celery worker in a thread of the test process (solo pool), consuming the real queue.
* ``worker_process``: starts real ``celery worker`` subprocesses (prefork) on the test database, which a
  test may SIGKILL.

Tests that use a worker must be transactional (``django_db(transaction=True)``): the worker reads
committed rows through its own connection.
"""

from __future__ import annotations

import ast
import asyncio
import email
import email.policy
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from aiosmtpd.controller import Controller
from django.conf import settings as django_settings

from config.celery import app as celery_app

REPO = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 30


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    """Factories set staff passwords; the production hasher would make data-heavy tests slow."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def wait_for(condition: Callable[[], object], *, timeout: float = DEADLINE_SECONDS, interval: float = 0.05, what=""):
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out after {timeout:.0f} s waiting for {what or condition}")
        time.sleep(interval)


def queued_reminder_ids(broker, queue: str) -> list[int]:
    """The reminder ids of the send tasks waiting in a queue of the Redis broker (kombu's message format):
    one per ``send_reminder`` task, each of a ``send_reminders`` batch."""
    ids: list[int] = []
    for raw in broker.lrange(queue, 0, -1):
        headers = json.loads(raw)["headers"]
        (argument,) = ast.literal_eval(headers["argsrepr"])
        if headers["task"] == "scheduling.send_reminders":
            ids.extend(argument)
        else:
            assert headers["task"] == "scheduling.send_reminder"
            ids.append(argument)
    return sorted(ids)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    """One message as the SMTP server accepted it."""

    mail_from: str
    rcpt_tos: list[str]
    message: email.message.EmailMessage
    peer: tuple = ()  # the client's address and port: one per SMTP connection

    @property
    def message_id(self) -> str:
        return self.message["Message-ID"]

    @property
    def subject(self) -> str:
        return self.message["Subject"]

    def part(self, content_type: str) -> str:
        for part in self.message.walk():
            if part.get_content_type() == content_type and not part.is_multipart():
                return part.get_content()
        raise AssertionError(f"no {content_type} part")

    @property
    def text(self) -> str:
        return self.part("text/plain")

    @property
    def html(self) -> str:
        return self.part("text/html")


@dataclass
class SinkHandler:
    """aiosmtpd handler: records accepted messages; can refuse (451/550) or be slow."""

    mode: str = "accept"  # accept | tempfail | reject
    delay: float = 0.0
    #: When set, each message waits in DATA for a permit: the test decides how many get through, and when.
    gate: threading.Semaphore | None = None
    #: Recipients refused with a 550, whatever the mode.
    refuse: set[str] = field(default_factory=set)
    messages: list[Received] = field(default_factory=list)
    in_data: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.mode == "tempfail":
            return "451 4.3.0 Mailbox temporarily unavailable, try again later"
        if self.mode == "reject" or address in self.refuse:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        while self.gate is not None and not self.gate.acquire(blocking=False):
            await asyncio.sleep(0.01)
        with self.lock:
            self.in_data += 1
        try:
            # The server has the message from here on (a real MTA would have queued it); a slow server is slow
            # to say so. A client that dies meanwhile never learns that its message went out.
            message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
            with self.lock:
                self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message, session.peer))
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            with self.lock:
                self.in_data -= 1
        return "250 2.0.0 Message accepted for delivery"

    # Conveniences for assertions
    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.messages)

    def message_ids(self) -> list[str]:
        return [received.message_id for received in self.snapshot()]


@dataclass
class SmtpServer:
    handler: SinkHandler
    host: str
    port: int
    controller: Controller | None = None

    @property
    def messages(self) -> list[Received]:
        return self.handler.snapshot()

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname=self.host, port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_server(settings) -> Iterator[SmtpServer]:
    server = SmtpServer(SinkHandler(), "127.0.0.1", free_port())
    server.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = server.host
    settings.EMAIL_PORT = server.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 10
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    """The Redis test database, empty at the start and at the end (no task leaks into the next test)."""
    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


def _close_worker_connections(**kwargs) -> None:
    """Each task's thread closes its database connections: nothing is left open when the test DB is flushed."""
    from django.db import connections

    connections.close_all()


@contextmanager
def in_process_worker() -> Iterator[object]:
    """A real Celery worker consuming the Redis queue, in a thread of this process (solo pool)."""
    from celery.contrib.testing.worker import start_worker
    from celery.signals import task_postrun

    task_postrun.connect(_close_worker_connections, weak=False, dispatch_uid="scheduling-tests-close-db")
    try:
        with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=30) as worker:
            yield worker
    finally:
        task_postrun.disconnect(dispatch_uid="scheduling-tests-close-db")


@pytest.fixture
def celery_worker(broker, smtp_server) -> Iterator[object]:
    """An in-process worker running for the whole test."""
    with in_process_worker() as worker:
        yield worker


class WorkerProcesses:
    """Starts ``celery worker`` subprocesses against the test database; kills what it started."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen] = []

    def start(self, concurrency: int = 2, queues: str = "celery,urgent") -> subprocess.Popen:
        index = len(self.processes)
        log = self.log_dir / f"worker{index}.log"
        command = [
            sys.executable, "-m", "celery", "-A", "config", "worker",
            "--pool=prefork", f"--concurrency={concurrency}", "-Q", queues, "--loglevel=INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-n", f"sweeptest{index}-{os.getpid()}@%h",
        ]  # fmt: skip
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes.append(process)

        def ready() -> bool:
            if process.poll() is not None:
                pytest.fail(f"The worker exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            return " ready." in log.read_text()

        wait_for(ready, timeout=60, interval=0.1, what="the worker subprocess to be ready")
        return process

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL the worker and its pool processes (its own process group), as a crash would."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)


@pytest.fixture
def worker_process(broker, smtp_server, tmp_path) -> Iterator[WorkerProcesses]:
    from django.db import connection

    db = connection.settings_dict
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    env = dict(os.environ)
    env |= {
        "DATABASE_URL": f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "DATABASE_CONN_MAX_AGE": "0",
        "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": smtp_server.host,
        "EMAIL_PORT": str(smtp_server.port),
        "EMAIL_TIMEOUT": "10",
        "DJANGO_DEBUG": "0",
        "SITE_URL": django_settings.SITE_URL,
        "PYTHONUNBUFFERED": "1",
    }
    workers = WorkerProcesses(env, tmp_path)
    try:
        yield workers
    finally:
        workers.stop_all()
