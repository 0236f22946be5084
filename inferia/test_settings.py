"""Settings for the test suite: the real settings with fast hashing and eager tasks.

Under pytest-xdist each worker gets its own Redis database (the URL's number
plus the worker's index plus one), so one worker's cleanup never touches
another's counters; subprocesses a test starts inherit it through REDIS_URL.
"""

import os
import re

from inferia.settings import *  # noqa: F403
from inferia.settings import CACHES, DATABASES, REDIS_URL

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = True
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# The gateway's ORM calls run in a long-lived thread; with persistent connections
# it would keep one open and the test database could not be dropped at the end.
DATABASES["default"]["CONN_MAX_AGE"] = 0
# Deployments' launchers: the local one (a fake upstream process per deployment) in every
# suite, also the PostgreSQL + Redis one whose settings otherwise make a "deployment".
INFERIA_LAUNCHERS = ["local", "kubernetes"]

_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
# Remap once: subprocesses of a test inherit both the remapped URL and this marker.
if REDIS_URL and _worker.startswith("gw") and not os.environ.get("INFERIA_TEST_REDIS_REMAPPED"):
    _match = re.match(r"^(redis://[^/]+)(?:/(\d+))?$", REDIS_URL)
    if _match:
        REDIS_URL = f"{_match.group(1)}/{int(_match.group(2) or 0) + int(_worker[2:]) + 1}"
        CACHES = {"default": {**CACHES["default"], "LOCATION": REDIS_URL}}
        CELERY_BROKER_URL = REDIS_URL
        os.environ["REDIS_URL"] = REDIS_URL
        os.environ["INFERIA_TEST_REDIS_REMAPPED"] = "1"
