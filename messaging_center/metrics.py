"""Prometheus metrics. Under granian's worker processes and Celery's prefork pool, `PROMETHEUS_MULTIPROC_DIR` is set
by the launcher so that every process's samples are summed at scrape time."""

from __future__ import annotations

import logging
import os
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator

from django.conf import settings
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from messaging_center.broker import queue_depths
from messaging_center.vocabulary import Channel, Priority

logger = logging.getLogger(__name__)

REQUEST_LATENCY = Histogram(
    "mc_http_request_duration_seconds",
    "HTTP request latency.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MESSAGES_ACCEPTED = Counter("mc_messages_accepted_total", "Messages accepted for delivery.", ["channel", "lane"])
MESSAGES_SPOOLED = Counter(
    "mc_messages_spooled_total", "Messages accepted into the spool while the database was down.", ["channel"]
)
MESSAGES_REPLAYED = Counter("mc_messages_replayed_total", "Spooled messages written to the database once it was back.")
SEND_GROUP_REQUESTS = Histogram(
    "mc_send_group_requests",
    "Send requests written together in one transaction (one web process's group commit).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
SEND_GROUP_SECONDS = Histogram(
    "mc_send_group_write_seconds",
    "Time to write one group of send requests (claim, limits, COPY, finish, commit, publish).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
LIMITS_DEGRADED = Counter("mc_limits_degraded_total", "Send requests accepted without quota checks because Redis was down.")
MESSAGES_SENT = Counter("mc_messages_sent_total", "Messages a provider accepted.", ["channel", "provider"])
MESSAGES_DELIVERED = Counter("mc_messages_delivered_total", "Messages with a delivered receipt.", ["channel", "provider"])
MESSAGES_UNDELIVERED = Counter("mc_messages_undelivered_total", "Messages with an undelivered receipt.", ["channel", "provider"])
RECEIPT_LATENCY = Histogram(
    "mc_receipt_latency_seconds",
    "From a provider accepting a message to its delivered receipt.",
    ["channel", "provider"],
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
)
RECEIPT_TIMEOUTS = Counter("mc_receipt_timeouts_total", "Sent messages with no receipt in time.", ["channel", "provider"])
RECEIPTS_RECEIVED = Counter("mc_receipts_received_total", "Provider receipts stored (replays excluded).", ["provider", "source"])
CALLBACK_ATTEMPTS = Counter("mc_status_callback_attempts_total", "Status callback POSTs by outcome.", ["outcome"])
PROVIDER_ATTEMPTS = Counter(
    "mc_provider_attempts_total",
    "Provider calls by outcome: accepted, or why not in every provider's words (invalid_number, throttled, "
    "provider_error, timeout, …); a message failed over counts one call per provider.",
    ["provider", "outcome"],
)
PROVIDER_CALL_SECONDS = Histogram(
    "mc_provider_call_seconds",
    "Provider calls, from the attempt's claim to the provider's answer.",
    ["provider"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0),
)
MESSAGES_FAILED = Counter("mc_messages_failed_total", "Messages that failed for good.", ["channel", "provider"])
ACCEPT_TO_SENT = Histogram(
    "mc_accept_to_sent_seconds",
    "From a message's acceptance (or the time it was scheduled for) to a provider accepting it, per lane.",
    ["lane"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
)
for _lane in Priority.values:
    ACCEPT_TO_SENT.labels(_lane)
API_REFUSALS = Counter(
    "mc_api_refusals_total",
    "API requests refused (4xx, and 503 unavailable), by the error body's code.",
    ["code"],
)
# The contract's codes (API.md, Conventions) and DRF's own have their series from start; a code not
# listed here appears at its first refusal.
API_ERROR_CODES = (
    "validation_error",
    "too_many_recipients",
    "missing_params",
    "not_authenticated",
    "account_disabled",
    "permission_denied",
    "not_found",
    "template_not_found",
    "method_not_allowed",
    "idempotency_conflict",
    "not_cancelable",
    "payload_too_large",
    "unsupported_media_type",
    "rate_limited",
    "quota_exceeded",
    "unavailable",
)
for _code in API_ERROR_CODES:
    API_REFUSALS.labels(_code)
HEDGED_SENDS = Counter(
    "mc_hedged_sends_total",
    "Messages sent through a second provider because the first had not answered within the lane's call deadline.",
    ["lane", "provider"],
)
LATE_ANSWERS = Counter(
    "mc_hedge_late_answers_total",
    "Answers of the call that lost a hedge race, by outcome: accepted means the person was sent the message twice.",
    ["provider", "outcome"],
)
PLATFORM_CAP_REFUSALS = Counter(
    "mc_platform_cap_refusals_total",
    "Entries refused by the platform-wide cap per address (across all accounts): SMS-bombing attempts.",
    ["category"],
)
# Every category the cap covers has its series from start (at 0), so that a rate or alert on it works
# before the first refusal. Literal: the core imports no app.
for _category in ("verification", "marketing"):
    PLATFORM_CAP_REFUSALS.labels(_category)


DUPLICATE_SENDS = Counter(
    "mc_duplicate_sends_total",
    "Messages delivered to the person by two providers: an attempt whose outcome was unknown reached them "
    "too (a delivered report from it, by our id, after the message went through another provider).",
    ["channel"],
)
for _channel in Channel.values:
    DUPLICATE_SENDS.labels(_channel)
    for _lane in Priority.values:
        MESSAGES_ACCEPTED.labels(_channel, _lane)
for _outcome in ("ok", "error"):
    CALLBACK_ATTEMPTS.labels(_outcome)


def count(counter: Counter, label_sets: Iterable[tuple[str, ...]]) -> None:
    """One increment per label set, not per message: in a multi-process setup every `inc` writes
    a memory-mapped file, and a chunk's hundred messages mostly share one channel and provider."""
    for labels, amount in Tally(label_sets).items():
        counter.labels(*labels).inc(amount)


class QueueDepthCollector(Collector):
    """Reads each lane's queue length from the broker at scrape time."""

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("mc_queue_depth", "Tasks waiting in a lane's queue.", labels=["queue"])
        try:
            depths = queue_depths()
        except Exception:  # the broker being down must not break the scrape
            depths = {}
        for queue in settings.QUEUES:
            if queue in depths:
                family.add_metric([queue], depths[queue])
        yield family


# Collectors that read state at scrape time (gauges of things kept elsewhere, e.g. in Redis), added by
# the apps above the core (apps/dispatch/apps.py): a gauge set in one process of a multiprocess setup
# would need a merge mode, and would show only what that process last saw.
SCRAPE_COLLECTORS: list[Collector] = []


def register_scrape_collector(collector: Collector) -> None:
    if collector not in SCRAPE_COLLECTORS:
        SCRAPE_COLLECTORS.append(collector)


# Called before every scrape: label sets that depend on rows (each provider's series) are made at 0
# from the rows of the moment, by the apps that know them (apps/monitoring/apps.py), so that every
# series exists before its first event whichever process serves /metrics.
SERIES_MAKERS: list[Callable[[], None]] = []


def register_series_maker(make: Callable[[], None]) -> None:
    if make not in SERIES_MAKERS:
        SERIES_MAKERS.append(make)


def render() -> bytes:
    for make in SERIES_MAKERS:
        try:
            make()
        except Exception:  # the database being down must not break the scrape
            logger.warning("series not made before the scrape", exc_info=True)
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    output = generate_latest(registry)
    scraped = CollectorRegistry()
    for collector in (QueueDepthCollector(), *SCRAPE_COLLECTORS):
        scraped.register(collector)
    return output + generate_latest(scraped)
