"""``COPY … TO STDOUT`` read in blocks of many rows.

PostgreSQL sends one CopyData message per row. psycopg's ``Copy.read()`` (and iterating a ``Copy``) hands them
over one at a time, each through a generator and a wait on the connection's socket: several Python frames per
row (9.3 s of the export's 13.5 s under a profiler at 2,000,000 rows, issue 18), on the cores the server needs.
:func:`copy_blocks` takes the messages straight from libpq (``PGconn.get_copy_data``, psycopg's documented
low-level interface) while they are already in libpq's buffer, waits on the socket only when the buffer is
empty, and returns the rows joined into blocks: one C call per row, one ``bytes`` object per block.

psycopg still starts the COPY (``cursor.copy(sql)``: errors from the query raise as usual) and cleans up
after a block that is left early (``Copy.__exit__`` cancels the query and drains what is left); this module
only reads the rows between the two, and collects the final result at the end.
"""

from __future__ import annotations

import select
from collections.abc import Iterator

import psycopg
from psycopg import pq


def _wait_readable(pgconn: pq.abc.PGconn) -> None:
    """Block until the server has sent more, then let libpq read it (``poll``: any descriptor number, where
    ``select`` stops at 1,024)."""
    waiting = select.poll()
    waiting.register(pgconn.socket, select.POLLIN)
    waiting.poll()
    pgconn.consume_input()


def _finish(pgconn: pq.abc.PGconn) -> int | None:
    """After the last row: collect the COPY's final results to the end (so the connection is idle again),
    then raise the error of a query that failed part way (a cancelled statement, a division by zero in row
    1,000,000…) as psycopg's class for its SQLSTATE. Returns the number of rows PostgreSQL reports."""
    rows = None
    error: psycopg.Error | None = None
    while True:
        while pgconn.is_busy():
            _wait_readable(pgconn)
        result = pgconn.get_result()
        if result is None:
            break
        if result.status == pq.ExecStatus.COMMAND_OK:
            rows = result.command_tuples
        elif error is None:
            state = result.error_field(pq.DiagnosticField.SQLSTATE)
            message = (result.error_message or b"COPY failed").decode("utf-8", "replace").strip()
            error = (psycopg.errors.lookup(state.decode()) if state else psycopg.DatabaseError)(message)
    if error is not None:
        raise error
    return rows


def copy_blocks(copy: psycopg.Copy, *, rows: int) -> Iterator[bytes]:
    """The data of ``copy`` (a ``COPY … TO STDOUT`` that psycopg has started, inside its ``with`` block) in
    blocks of ``rows`` rows (the last may be shorter), each block the rows' bytes as PostgreSQL sent them.

    Use it as the only reader of ``copy``; when it returns, the COPY has ended and its result is collected."""
    pgconn = copy.connection.pgconn
    get = pgconn.get_copy_data
    size = max(rows, 1)
    parts: list[memoryview] = []
    append = parts.append
    while True:
        count, data = get(1)  # 1: do not block; 0 when the next row has not arrived yet
        if count > 0:
            append(data)
            if len(parts) >= size:
                block = b"".join(parts)
                parts.clear()
                yield block
        elif count == 0:
            _wait_readable(pgconn)
        else:  # -1: the COPY has sent its last row
            break
    if parts:
        yield b"".join(parts)
    _finish(pgconn)
