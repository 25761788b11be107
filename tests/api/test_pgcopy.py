"""reporting.pgcopy: COPY TO STDOUT read from libpq in blocks of rows, on the real PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection, transaction

from reporting.pgcopy import copy_blocks

pytestmark = pytest.mark.django_db

ROWS_SQL = "COPY (SELECT g, repeat('x', 200), CASE WHEN g % 7 = 0 THEN 'a\nb' END FROM generate_series(1, {n}) g) TO STDOUT WITH (FORMAT csv)"


def _psycopg_rows(sql: str) -> list[bytes]:
    """The same COPY read the ordinary way, one row per ``read()``."""
    connection.ensure_connection()
    with connection.connection.cursor() as cursor, cursor.copy(sql) as copy:
        return [bytes(row) for row in copy]


def test_blocks_hold_the_rows_psycopg_reads_joined_in_order():
    """5,000 rows of about 210 bytes (a megabyte: more than libpq holds at once, so the reader waits on the
    socket many times) come as five blocks of 1,000 rows, byte for byte what psycopg reads row by row."""
    sql = ROWS_SQL.format(n=5000)
    expected = _psycopg_rows(sql)
    assert len(expected) == 5000
    with connection.connection.cursor() as cursor, cursor.copy(sql) as copy:
        blocks = list(copy_blocks(copy, rows=1000))
    assert [len(block) for block in blocks] == [len(b"".join(expected[i : i + 1000])) for i in range(0, 5000, 1000)]
    assert b"".join(blocks) == b"".join(expected)
    assert all(isinstance(block, bytes) for block in blocks)
    # the COPY has ended and its result is collected: the connection takes the next query
    with connection.cursor() as cursor:
        cursor.execute("SELECT 41 + 1")
        assert cursor.fetchone() == (42,)


def test_the_last_block_is_short_and_an_empty_copy_gives_no_block():
    with connection.connection.cursor() as cursor, cursor.copy(ROWS_SQL.format(n=2500)) as copy:
        blocks = list(copy_blocks(copy, rows=1000))
    assert [block.count(b"\n") - block.count(b"a\nb") for block in blocks] == [1000, 1000, 500]
    with connection.connection.cursor() as cursor, cursor.copy(ROWS_SQL.format(n=0)) as copy:
        assert list(copy_blocks(copy, rows=1000)) == []


def test_a_query_failing_part_way_raises_its_own_error_after_the_rows_before_it():
    """Division by zero at row 3,000: the rows before it may already have arrived, then the error is raised
    as psycopg's class for its SQLSTATE, and the transaction is left to roll back."""
    sql = "COPY (SELECT g, 1 / (g - 3000), repeat('y', 300) FROM generate_series(1, 5000) g) TO STDOUT"
    received: list[bytes] = []

    def read() -> None:
        with transaction.atomic(), connection.connection.cursor() as cursor, cursor.copy(sql) as copy:
            received.extend(copy_blocks(copy, rows=100))

    with pytest.raises(psycopg.errors.DivisionByZero, match="division by zero"):
        read()
    assert sum(block.count(b"\n") for block in received) < 3000
    with connection.cursor() as cursor:  # the savepoint rolled back: the connection goes on
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_a_block_left_early_by_an_exception_cancels_the_copy():
    """The consumer stops after the first block with an error (as a closed HTTP stream does): psycopg's
    ``Copy`` cancels the query and drains it, and the connection goes on."""

    def read() -> None:
        sql = ROWS_SQL.format(n=200_000)
        with transaction.atomic(), connection.connection.cursor() as cursor, cursor.copy(sql) as copy:
            for _block in copy_blocks(copy, rows=1000):
                raise RuntimeError("client went away")

    with pytest.raises(RuntimeError, match="client went away"):
        read()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 2")
        assert cursor.fetchone() == (2,)
