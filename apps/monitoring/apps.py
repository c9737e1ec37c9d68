from __future__ import annotations

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    """The staff dashboard (/admin/dashboard/) and the scrape-time gauges of /metrics."""

    name = "apps.monitoring"

    def ready(self) -> None:
        from apps.monitoring.collectors import BacklogCollector, make_provider_series
        from messaging_center import metrics

        metrics.register_scrape_collector(BacklogCollector())
        metrics.register_series_maker(make_provider_series)
