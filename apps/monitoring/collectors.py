"""Gauges for SREs read at scrape time (docs/monitoring.md): the scheduled, retry_wait and status
callback backlogs and each lane's oldest queued message, through the same readings as the staff
dashboard (backlogs.py), and every provider's series made at 0 from the provider rows before a scrape
(`make_provider_series`), so that rates and alerts on them work before a provider's first call."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from apps.dispatch.models import Provider
from apps.dispatch.providers.errors import REASONS
from apps.monitoring import backlogs
from messaging_center import metrics

logger = logging.getLogger(__name__)


class BacklogCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily(
            "mc_backlog",
            "Work waiting, read at scrape time through its index: scheduled messages, messages waiting for a retry "
            f"(retry_wait), status callbacks not delivered yet (callbacks); each counted up to {backlogs.BACKLOG_COUNTED_UP_TO}.",
            labels=["backlog"],
        )
        oldest = GaugeMetricFamily(
            "mc_oldest_queued_seconds",
            "Age of the lane's oldest queued message (from its acceptance, or the time it was scheduled for); 0 when none.",
            labels=["lane"],
        )
        try:
            for name, count in backlogs.backlogs().as_dict().items():
                waiting.add_metric([name], count)
            now = timezone.now()
            for lane in backlogs.lanes():
                oldest.add_metric([lane.lane], lane.age_seconds(now))
        except Exception:  # the database being down must not break the scrape
            logger.warning("backlogs not read for /metrics", exc_info=True)
        yield waiting
        yield oldest


def make_provider_series() -> None:
    """Each provider's call counters (every outcome), call latency, message counters and receipt latency at 0."""
    for name, channel in Provider.objects.values_list("name", "channel"):
        metrics.PROVIDER_CALL_SECONDS.labels(name)
        for outcome in REASONS:
            metrics.PROVIDER_ATTEMPTS.labels(name, outcome)
        for per_channel in (
            metrics.MESSAGES_SENT,
            metrics.MESSAGES_DELIVERED,
            metrics.MESSAGES_UNDELIVERED,
            metrics.MESSAGES_FAILED,
            metrics.RECEIPT_TIMEOUTS,
            metrics.RECEIPT_LATENCY,
        ):
            per_channel.labels(channel, name)
