"""Server-side-bound statements for the hot paths.

Django binds parameters on the client, so each statement is parsed and planned anew (docs/performance.md,
Database settings). This cursor binds on the server and is prepared after a few runs (`prepare_threshold`);
on Django's connection, it takes part in Django's transaction, error mapping and query log."""

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
    """Rows as one JSON text for `json_to_recordset(%s::json) AS r(<column> <type>, …)`, by orjson rather than
    arrays or json.dumps (docs/performance.md, Delivery); json.dumps takes what orjson refuses (ints past 64 bits)."""
    rows = list(rows)
    try:
        return orjson.dumps(rows, default=str).decode()
    except orjson.JSONEncodeError:
        return json.dumps(rows, default=str, separators=(",", ":"))
