"""Server-side-bound statements for the hot paths.

Django's psycopg backend binds parameters on the client (it formats every value into the SQL text),
so PostgreSQL parses and plans each statement anew and the web process spends more time building
literals (a 1,000-element array, say) than the database spends running the statement. A plain
psycopg cursor on the same connection binds on the server and, after a few executions, prepares the
statement once per connection (psycopg's `prepare_threshold`). It takes part in Django's transaction
(same connection), its errors become Django's, and it shows in Django's query log like any other."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson
import psycopg
from django.db import connection


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


def json_rows(rows: Iterable[Mapping[str, Any]]) -> str:
    """Rows as one JSON text for `json_to_recordset(%s::json) AS r(<column> <type>, …)`. Arrays
    (`unnest(%s::uuid[], %s::text[], …)`) are dumped element by element in Python: for a receipts
    batch that was a third of the worker's CPU. orjson writes UUIDs and datetimes itself (with
    json.dumps and `default=str` they were a tenth of a delivery worker's CPU); anything it refuses
    (an integer past 64 bits) goes through json.dumps."""
    rows = list(rows)
    try:
        return orjson.dumps(rows, default=str).decode()
    except orjson.JSONEncodeError:
        return json.dumps(rows, default=str, separators=(",", ":"))
