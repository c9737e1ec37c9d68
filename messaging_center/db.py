"""Server-side-bound statements for the hot paths.

Django binds parameters on the client, so each statement is parsed and planned anew (docs/performance.md,
Database settings). This cursor binds on the server and is prepared after a few runs (`prepare_threshold`);
on Django's connection, it takes part in Django's transaction, error mapping and query log."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson
import psycopg
from django.conf import settings
from django.db import OperationalError, connection, transaction

from messaging_center.errors import Unavailable

logger = logging.getLogger(__name__)


class _LoggedCursor(psycopg.Cursor[Any]):
    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> _LoggedCursor:
        if not connection.queries_logged:
            super().execute(query, params, **kwargs)
            return self
        started = time.monotonic()
        try:
            super().execute(query, params, **kwargs)
        finally:
            connection.queries_log.append({"sql": str(query), "time": f"{time.monotonic() - started:.3f}"})
        return self


@contextlib.contextmanager
def bound_cursor() -> Iterator[psycopg.Cursor[Any]]:
    """A server-side-binding cursor on Django's current connection (use %s or %(name)s placeholders)."""
    connection.ensure_connection()
    with connection.wrap_database_errors, _LoggedCursor(connection.connection) as cursor:
        yield cursor


class _PreparedCursor(_LoggedCursor):
    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> _PreparedCursor:
        kwargs.setdefault("prepare", True)
        super().execute(query, params, **kwargs)
        return self


@contextlib.contextmanager
def generic_plan_cursor() -> Iterator[psycopg.Cursor[Any]]:
    """A bound cursor for the periodic jobs' statements over every partition of a big table (no bound
    on the partition key to prune by): each statement is prepared at its first run and keeps one
    generic plan on this connection (`plan_cache_mode`, for this transaction). Planned anew at each
    run, such a statement over 44 daily partitions cost ~3 ms, ten times its run (0.3 ms).
    tests/test_periodic_plans.py checks those generic plans."""
    with transaction.atomic(savepoint=False):
        connection.ensure_connection()
        with connection.wrap_database_errors, _PreparedCursor(connection.connection) as cursor:
            cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan", prepare=False)
            yield cursor


def json_rows(rows: Iterable[Mapping[str, Any]]) -> str:
    """Rows as one JSON text for `json_to_recordset(%s::json) AS r(<column> <type>, …)`, by orjson rather than
    arrays or json.dumps (docs/performance.md, Delivery); json.dumps takes what orjson refuses (ints past 64 bits)."""
    rows = list(rows)
    try:
        return orjson.dumps(rows, default=str).decode()
    except orjson.JSONEncodeError:
        return json.dumps(rows, default=str, separators=(",", ":"))


TIMED_OUT_RETRY_AFTER = "5"
NARROW_THE_SEARCH = "Narrow the search (a shorter time window, more filters) or retry shortly."


@contextlib.contextmanager
def bounded_read(hint: str = NARROW_THE_SEARCH) -> Iterator[None]:
    """An API read whose statements stop after `settings.API_READ_TIMEOUT_MS`: a statement the database
    cancels for it becomes 503 `unavailable` with Retry-After and `hint`, never a 500 nor a connection held
    for minutes. The timeout is local to this transaction: the pooled connection keeps none."""
    nested = connection.in_atomic_block
    with transaction.atomic():
        with connection.cursor() as cursor:
            previous = None
            if nested:  # the caller's transaction goes on after this block: its own timeout is put back
                cursor.execute("SELECT current_setting('statement_timeout')")
                previous = cursor.fetchone()[0]
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [f"{settings.API_READ_TIMEOUT_MS}ms"])
        try:
            yield
        except OperationalError as error:
            if isinstance(error.__cause__, psycopg.errors.QueryCanceled):
                logger.warning("API read stopped by its statement timeout (%d ms)", settings.API_READ_TIMEOUT_MS)
                raise Unavailable(
                    f"The read took longer than {settings.API_READ_TIMEOUT_MS} ms and was stopped. {hint}",
                    headers={"Retry-After": TIMED_OUT_RETRY_AFTER},
                ) from error
            raise
        if previous is not None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('statement_timeout', %s, true)", [previous])
