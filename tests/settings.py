"""Test settings: the project's settings, with Redis on its own database number so that a test run
never touches the queues or limits of a `make run` sharing the same server."""

from __future__ import annotations

import os
import re

# The test run is a development run (embedded servers, generated key), and so are the workers and
# commands it starts, which inherit this; tests of the production start remove it.
os.environ.setdefault("MC_DEV_RUN", "1")

from messaging_center.settings import *  # noqa: F403
from messaging_center.settings import REDIS_URL as _BASE_REDIS_URL

TEST_REDIS_DB = int(os.environ.get("MC_TEST_REDIS_DB", "1"))
REDIS_URL = re.sub(r"(/\d+)?$", f"/{TEST_REDIS_DB}", _BASE_REDIS_URL.split("?")[0], count=1)
CELERY_BROKER_URL = REDIS_URL
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
