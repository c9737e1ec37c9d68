"""The Celery application: configuration comes from Django settings (`CELERY_` namespace)."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

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


@task_prerun.connect
def _drop_a_dead_connection(**_: object) -> None:
    """A kept connection may have died since the last task (PostgreSQL restarted): one `SELECT 1` and,
    if it fails, a new connection, instead of this task failing on it (a chunk's messages then waited
    for their lease, two minutes)."""
    from django.db import connection

    if connection.connection is not None and not connection.is_usable():
        connection.close()
