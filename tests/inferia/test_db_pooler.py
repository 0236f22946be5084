"""``INFERIA_DB_POOLER=pgbouncer``: what a pooler in transaction mode needs from Django
and psycopg 3 (README, "Running in production"): no server-side cursors, no
prepared statements. Checked on the real server: ``QuerySet.iterator()`` declares
no cursor (without the setting it does: ``pg_cursors``), and the same query run
ten times on one connection leaves no prepared statement behind."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import require_or_skip, shared_database_url

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from orgs.models import Organization
for _ in range(10):
    list(Organization.objects.filter(slug="nobody"))
with transaction.atomic():
    rows = ContentType.objects.all().iterator(chunk_size=1)
    next(rows)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_cursors")
        cursors = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        prepared = cursor.fetchone()[0]
print(json.dumps({
    "cursors": cursors,
    "prepared": prepared,
    "prepare_threshold": connection.connection.prepare_threshold,
    "server_side_cursors_off": settings.DATABASES["default"].get("DISABLE_SERVER_SIDE_CURSORS", False),
}))
"""


def _probe(pooler: str) -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "inferia.settings",
        "DATABASE_URL": shared_database_url(),
        "INFERIA_DB_POOLER": pooler,
        "INFERIA_PRINT_CONFIG": "0",
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.postgres
def test_pgbouncer_mode_prepares_nothing_and_declares_no_cursor(transactional_db):
    if connection.vendor != "postgresql":
        require_or_skip("needs PostgreSQL: set DATABASE_URL=postgres://...")
    plain = _probe("")
    assert plain["cursors"] == 1 and not plain["server_side_cursors_off"], plain
    pooled = _probe("pgbouncer")
    assert pooled == {
        "cursors": 0,
        "prepared": 0,
        "prepare_threshold": None,
        "server_side_cursors_off": True,
    }


def test_an_unknown_pooler_is_refused():
    env = {
        **os.environ,
        "DATABASE_URL": "postgres://u@127.0.0.1/x",
        "INFERIA_DB_POOLER": "pgpool",
        # A database URL makes this a deployment: with its keys, only the pooler is wrong.
        "INFERIA_SECRET_KEY": "s" * 60,
        "INFERIA_JWT_SIGNING_KEY": "j" * 60,
        "INFERIA_MASTER_KEYS": "k1:" + base64.b64encode(b"m" * 32).decode(),
        "INFERIA_ALLOWED_HOSTS": "localhost",
    }
    done = subprocess.run(
        [sys.executable, "-c", "import inferia.settings"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "INFERIA_DB_POOLER must be" in done.stderr
