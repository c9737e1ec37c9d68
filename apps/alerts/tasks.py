"""Beat jobs of alerts (thin): the alert cycle and the morning's quality report."""

from __future__ import annotations

from celery import shared_task

from apps.alerts.report import quality_report_send
from apps.alerts.services import alerts_evaluate
from messaging_center.periodic import PeriodicJob


@shared_task(name="alerts.evaluate", base=PeriodicJob)
def evaluate() -> int:
    return alerts_evaluate().notices


@shared_task(name="alerts.daily_report", base=PeriodicJob)
def daily_report() -> str:
    return quality_report_send().webhook
