"""A database the service cannot reach (here: its port refusing connections, as while PostgreSQL
restarts) is answered 503 `unavailable` with Retry-After, by the API and by the providers' report
receiver alike, not 500; and the next request after it comes back is served."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection
from django.test import Client, override_settings

from apps.accounts.authentication import API_KEYS
from apps.receipts.intake import SOURCES
from tests.helpers import free_port

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def database_unreachable() -> Iterator[None]:
    port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = str(free_port())  # nothing listens there: connections are refused
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port


def test_the_api_answers_503_while_the_database_is_down(api) -> None:
    API_KEYS.clear()  # the key lookup itself needs the database
    with database_unreachable():
        response = api.get("/api/v1/account")
    assert response.status_code == 503, response.content
    assert response.json()["code"] == "unavailable" and response["Retry-After"] == "5"
    assert api.get("/api/v1/account").status_code == 200  # back


def test_a_providers_report_gets_503_so_that_it_pushes_again() -> None:
    SOURCES.clear()
    with database_unreachable():
        response = Client().post("/api/v1/receipts/aliyun?token=x", b"[]", content_type="application/json")
    assert response.status_code == 503, response.content
    assert response.json()["code"] == "unavailable" and response["Retry-After"] == "5"


@override_settings(SPOOL_MAX_MESSAGES=0)
def test_readyz_is_503_not_accepting_while_the_database_is_down_without_the_spool() -> None:
    with database_unreachable():
        response = Client().get("/readyz")
    assert response.status_code == 503, response.content
    body = response.json()
    assert (body["code"], body["checks"], body["accepting"]) == ("unavailable", {"database": "down", "broker": "ok"}, False)
    assert "database" in body["detail"]
    assert Client().get("/readyz").status_code == 200  # back


def test_readyz_stays_200_and_says_what_is_accepted_while_the_spool_takes_sends() -> None:
    """A load balancer must keep sending to the web processes: they accept codes into the spool."""
    with database_unreachable():
        response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["checks"], body["accepting"]) == ("degraded", {"database": "down", "broker": "ok"}, True)
    assert "spool" in body["detail"]
