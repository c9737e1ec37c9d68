"""Two beats never run a periodic job twice at once: each beat-scheduled task runs under a lock of
its own (messaging_center/periodic.py), and a job's effect happens once when two copies of it run
together, as they do with two beats and two maintenance workers."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.dispatch import tasks
from apps.dispatch.models import Due, Message, MessageEvent
from celery_app import app
from messaging_center import ids
from messaging_center.broker import redis_client
from messaging_center.periodic import LOCK_SECONDS, PeriodicJob, lock_key, run_alone
from tests.helpers import wait_until
from tests.settings import BASE_DIR

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def held(job: str) -> Iterator[None]:
    """The job's lock held by another run of it (a thread of this process standing for the other beat's copy)."""
    taken, finish = threading.Event(), threading.Event()
    holder = threading.Thread(target=run_alone, args=(job, lambda: (taken.set(), finish.wait(30))))
    holder.start()
    assert taken.wait(5), "the lock was not taken"
    try:
        yield
    finally:
        finish.set()
        holder.join()


def _due_messages(api: Any, make_template: Callable[..., Any], count: int) -> set[str]:
    make_template(api, code="order_shipped", provider_template_ids={"aliyun": "SMS_1"})
    send_at = (timezone.now() + dt.timedelta(seconds=1)).isoformat()
    to = [{"phone": f"+86138001{n:05d}"} for n in range(count)]
    body = {"template": "order_shipped", "to": to, "params": {"order_no": "A"}, "send_at": send_at}
    response = api.post("/api/v1/messages", body)
    assert response.status_code == 202, response.content
    time.sleep(1.1)
    return {str(ids.decode("msg", m["id"])) for m in response.json()["messages"]}


def _enqueued_once(message_ids: set[str]) -> None:
    """Each message was moved to `queued` by the job once: one `due` event each. (What went to the broker
    cannot be counted here: the suite's worker may already have taken and delivered it.)"""
    events = Counter(str(e.message_id) for e in MessageEvent.objects.filter(status="queued", detail="due"))
    assert events == Counter(dict.fromkeys(message_ids, 1))
    assert not Message.objects.filter(id__in=message_ids, status="scheduled").exists()


def test_every_beat_job_is_skipped_while_another_run_of_it_holds_its_lock() -> None:
    app.loader.import_default_modules()  # every app's tasks, as a worker registers them
    jobs = sorted({str(entry["task"]) for entry in settings.CELERY_BEAT_SCHEDULE.values()})
    assert len(jobs) == 15  # with the spool's two replays, the routing quality job and the alerts' two
    for job in jobs:
        task = app.tasks[job]
        assert isinstance(task, PeriodicJob), f"{job} is beat-scheduled but does not run under its lock"
        with held(job):
            assert task.apply().get() is None, f"{job} ran beside another run of it"


def test_a_due_message_waits_while_the_job_is_held_and_is_enqueued_once_after(api, make_template) -> None:
    [message_id] = _due_messages(api, make_template, 1)
    with held("dispatch.enqueue_due"):
        assert tasks.enqueue_due.apply().get() is None
        assert Message.objects.get(id=message_id).status == "scheduled"
    assert [(k, str(m)) for k, m in Due.objects.values_list("kind", "message_id")] == [("scheduled", message_id)]  # its row
    assert tasks.enqueue_due.apply().get() == 1
    assert not Due.objects.filter(kind="scheduled").exists()  # gone with the message's `scheduled`
    assert tasks.enqueue_due.apply().get() == 0  # the same tick from the second beat finds nothing
    _enqueued_once({message_id})


def test_two_beats_copies_run_together_enqueue_each_due_message_once(api, make_template) -> None:
    """Two threads (two workers' children) run the job at the same moment, twice each."""
    due = _due_messages(api, make_template, 300)
    start = threading.Barrier(2)
    results: list[int | None] = []

    def run() -> None:
        start.wait()
        try:
            results.extend(tasks.enqueue_due.apply().get() for _ in range(2))
        finally:
            connection.close()

    workers = [threading.Thread(target=run) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sum(r or 0 for r in results) == 300, results
    _enqueued_once(due)


@pytest.mark.slow
def test_a_run_killed_while_holding_the_lock_blocks_the_job_for_seconds_only() -> None:
    """A worker SIGKILLed mid-job never releases its lock: it expires once no longer renewed."""
    job = "dispatch.purge_idempotency_keys"
    code = (
        "import django, time; django.setup(); from messaging_center.periodic import run_alone; "
        f"run_alone({job!r}, lambda: (print('holding', flush=True), time.sleep(600)))"
    )
    env = os.environ | {"DJANGO_SETTINGS_MODULE": "tests.settings"}
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        time.sleep(LOCK_SECONDS)  # renewed all along: still held
        assert app.tasks[job].apply().get() is None
        holder.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(lambda: app.tasks[job].apply().get() is not None, LOCK_SECONDS + 5, "the job to run again")
        print(f"job free again {time.monotonic() - killed_at:.1f} s after its holder was killed")
        assert redis_client().exists(lock_key(job)) == 0  # released by the run that followed
    finally:
        holder.kill()
        holder.wait()
