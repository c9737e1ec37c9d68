"""The Celery application: configuration comes from Django settings (`CELERY_` namespace)."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import task_postrun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "messaging_center.settings")

app = Celery("messaging_center")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Database connections are kept across tasks (docs/performance.md, Celery settings): Celery's Django fixup would
# close them around each task without DB_REUSE_MAX; they close when broken or older than CONN_MAX_AGE (below).
app.conf.CELERY_DB_REUSE_MAX = 10_000


@task_postrun.connect
def _close_old_connections(**_: object) -> None:
    from django.db import close_old_connections

    close_old_connections()
