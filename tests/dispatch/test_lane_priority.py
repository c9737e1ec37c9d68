"""Bulk chunks give way to verification codes (apps/dispatch/lanes.py), against the real Redis."""

from __future__ import annotations

import threading
import time

import pytest

from apps.dispatch import lanes
from messaging_center.broker import broker_client


@pytest.fixture
def clean_counter():
    broker_client().delete(lanes.CRITICAL_IN_FLIGHT_KEY)
    yield
    broker_client().delete(lanes.CRITICAL_IN_FLIGHT_KEY)


def test_a_bulk_chunk_starts_at_once_when_no_code_is_pending(clean_counter) -> None:
    started = time.monotonic()
    lanes.yield_to_critical()
    assert time.monotonic() - started < 0.2


def test_a_bulk_chunk_waits_while_a_code_is_being_sent_and_goes_when_it_is_done(clean_counter) -> None:
    with lanes.critical_in_flight(True):
        assert int(broker_client().get(lanes.CRITICAL_IN_FLIGHT_KEY)) == 1
        done = threading.Timer(0.3, lambda: broker_client().decr(lanes.CRITICAL_IN_FLIGHT_KEY))
        done.start()
        started = time.monotonic()
        lanes.yield_to_critical()
        waited = time.monotonic() - started
        broker_client().incr(lanes.CRITICAL_IN_FLIGHT_KEY)  # the context manager decrements it again
    assert 0.25 <= waited < 0.8
    assert int(broker_client().get(lanes.CRITICAL_IN_FLIGHT_KEY)) == 0


def test_the_wait_is_bounded_so_a_stream_of_codes_cannot_stop_bulk(clean_counter) -> None:
    broker_client().set(lanes.CRITICAL_IN_FLIGHT_KEY, 3)
    started = time.monotonic()
    lanes.yield_to_critical()
    assert lanes.YIELD_MAX_SECONDS <= time.monotonic() - started < lanes.YIELD_MAX_SECONDS + 0.5
