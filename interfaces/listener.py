"""The MLLP listener: python-hl7's asyncio MLLP streams, one coroutine per connection, database work in threads.

A connection may carry any number of messages, one after the other (each is ACKed before the next is read, as
MLLP's original mode has it); any number of connections are served at once by one event loop. Each message is
handed to :func:`interfaces.services.message_receive_safely` in a worker thread (blocking database work, one
transaction per message) and its ACK is written only when that returns, i.e. after the commit.

Framing: ``<VT> message <FS><CR>``. A message larger than ``HL7_MAX_MESSAGE_BYTES`` is read to its end and
discarded, then answered ``AE``; a connection that closes in the middle of a message stores nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.db import close_old_connections, connections
from hl7.mllp import InvalidBlockError
from hl7.mllp.streams import CARRIAGE_RETURN, END_BLOCK, START_BLOCK, HL7StreamProtocol, HL7StreamReader

from . import services

logger = logging.getLogger("interfaces.hl7")

SEPARATOR = END_BLOCK + CARRIAGE_RETURN
#: Bytes of an oversized message kept to address its ACK (MSH is at the start).
HEAD_BYTES = 4096


def max_message_bytes() -> int:
    return int(getattr(settings, "HL7_MAX_MESSAGE_BYTES", 1024 * 1024))


class MessageTooLarge(Exception):
    def __init__(self, head: bytes) -> None:
        super().__init__("message too large")
        self.head = head


class BoundedReader(HL7StreamReader):
    """python-hl7's reader, with a message too large for the limit read to its end (and answered) instead of
    leaving the stream mid-message, and whitespace between frames tolerated."""

    async def readblock(self) -> bytes:
        try:
            block = await self.readuntil(SEPARATOR)
        except asyncio.LimitOverrunError as exc:
            head = bytes(await self.readexactly(min(exc.consumed, HEAD_BYTES)))
            await self._discard_through_separator(exc.consumed - len(head))
            raise MessageTooLarge(head.lstrip(b"\r\n\t ").removeprefix(START_BLOCK)) from None
        block = block.lstrip(b"\r\n\t ")
        if not block.startswith(START_BLOCK):
            raise InvalidBlockError("Block does not begin with Start Block character <VT>")
        return block[1 : -len(SEPARATOR)]

    async def _discard_through_separator(self, pending: int) -> None:
        # Only the public stream API: readexactly() drops what cannot hold the separator, readuntil() ends it.
        while True:
            if pending:
                await self.readexactly(pending)
            try:
                await self.readuntil(SEPARATOR)
                return
            except asyncio.LimitOverrunError as exc:
                pending = exc.consumed


class DatabaseThreads:
    """The threads that do the database work. Each keeps its connection between messages (``CONN_MAX_AGE``
    applies as for requests); :meth:`shutdown` closes every one of them in its own thread."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.executor = ThreadPoolExecutor(max_workers=count, thread_name_prefix="hl7-db")

    def run(self, function: Callable, /, **kwargs):
        def work():
            close_old_connections()
            try:
                return function(**kwargs)
            finally:
                close_old_connections()

        return asyncio.get_running_loop().run_in_executor(self.executor, work)

    def shutdown(self) -> None:
        barrier = threading.Barrier(self.count, timeout=30)

        def close() -> None:
            connections.close_all()
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()  # one call per thread: each thread waits until all have closed theirs

        for future in [self.executor.submit(close) for _ in range(self.count)]:
            future.result()
        self.executor.shutdown(wait=True)


class Listener:
    """An MLLP server on ``host``:``port`` (port 0: a free one, see :attr:`port` once started)."""

    def __init__(self, host: str, port: int, *, clinic_name: str | None = None, threads: int | None = None) -> None:
        self.host, self.requested_port = host, port
        self.clinic_name = clinic_name
        self.db = DatabaseThreads(threads or int(getattr(settings, "HL7_DB_THREADS", 4)))
        self.server: asyncio.Server | None = None
        self.connections: set[asyncio.Task] = set()
        self._default_clinic = None
        self.limit = max_message_bytes()

    @property
    def port(self) -> int:
        return self.server.sockets[0].getsockname()[1] if self.server else self.requested_port

    async def start(self) -> None:
        if self.clinic_name:
            self._default_clinic = await self.db.run(_clinic_named, name=self.clinic_name)
        loop = asyncio.get_running_loop()
        limit = self.limit = max_message_bytes()

        def protocol() -> HL7StreamProtocol:
            return HL7StreamProtocol(BoundedReader(limit=limit, loop=loop), self._connected, loop=loop)

        self.server = await loop.create_server(protocol, self.host, self.requested_port, reuse_address=True)
        logger.info("hl7 listener on %s:%s (MLLP), messages up to %s bytes", self.host, self.port, limit)

    def _connected(self, reader: BoundedReader, writer) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self.connections.add(task)
        task.add_done_callback(self.connections.discard)

    async def _serve(self, reader: BoundedReader, writer) -> None:
        peer = writer.get_extra_info("peername")
        peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        logger.info("hl7 connection opened peer=%s", peer)
        messages = 0
        try:
            while True:
                try:
                    block = await reader.readblock()
                except asyncio.IncompleteReadError as exc:
                    if exc.partial.strip():
                        logger.warning("hl7 connection closed mid-message peer=%s: nothing stored", peer)
                    break
                except MessageTooLarge as exc:
                    receipt = services.oversized_receipt(head=exc.head, limit=self.limit)
                except InvalidBlockError:
                    logger.warning("hl7 framing error peer=%s: data outside <VT>…<FS><CR> skipped", peer)
                    continue
                else:
                    receipt = await self.db.run(
                        services.message_receive_safely, raw=block, default_clinic=self._default_clinic
                    )
                writer.writeblock(receipt.ack.encode("utf-8"))
                await writer.drain()
                messages += 1
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            logger.info("hl7 connection closed peer=%s messages=%s", peer, messages)
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for task in list(self.connections):
            task.cancel()
        if self.connections:
            await asyncio.gather(*self.connections, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(None, self.db.shutdown)


def _clinic_named(*, name: str):
    from patients.models import Clinic

    clinic = Clinic.objects.filter(name=name).first()
    if clinic is None:
        raise ValueError(f"No clinic named {name!r} (HL7_CLINIC / --clinic).")
    return clinic


def serve(host: str, port: int, *, clinic_name: str | None = None, ready: Callable[[int], None] | None = None) -> None:
    """Run the listener until SIGINT or SIGTERM (the management command)."""

    async def main() -> None:
        listener = Listener(host, port, clinic_name=clinic_name)
        await listener.start()
        if ready:
            ready(listener.port)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        await stopping.wait()
        logger.info("hl7 listener stopping")
        await listener.stop()

    asyncio.run(main())


@dataclass
class RunningListener:
    """A listener running in a background thread (tests and benchmarks drive it with real TCP clients)."""

    listener: Listener
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.listener.port

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.listener.stop(), self.loop).result(timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)


def start_in_thread(host: str = "127.0.0.1", port: int = 0, **options) -> RunningListener:
    """Start a :class:`Listener` on its own event loop in a daemon thread; returns once it accepts connections."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []
    listener = Listener(host, port, **options)

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(listener.start())
        except BaseException as exc:
            failure.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name="hl7-listener", daemon=True)
    thread.start()
    started.wait(timeout=30)
    if failure:
        raise failure[0]
    return RunningListener(listener, loop, thread)
