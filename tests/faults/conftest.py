"""Fixtures of the fault-injection suite: a stack of real processes per scenario.

Each scenario gets its own Redis (one server, or with ``INFERIA_FAULTS_REDIS=cluster``
a three-master cluster), its own fake upstream, web process, worker and beat, on
free ports, against this xdist worker's PostgreSQL test database (pytest-django's;
flushed after the test) or, for the PostgreSQL restart, a cluster of its own. So
scenarios are independent and two run at once under xdist.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import require_or_skip, shared_database_url
from tests.faults.harness import (
    PY,
    ROOT,
    OwnPostgres,
    Stack,
    make_redis,
    postgres_bin,
    redis_topologies,
)


def _require_services() -> None:
    if "postgresql" not in settings.DATABASES["default"]["ENGINE"]:
        require_or_skip(
            "the fault suite needs PostgreSQL: set DATABASE_URL=postgres://... (the embedded "
            "SQLite default cannot be shared by the web process, the worker and beat)"
        )
    if not settings.REDIS_URL:
        require_or_skip("the fault suite needs Redis: set REDIS_URL (CI's PostgreSQL + Redis run)")
    if not shutil.which("redis-server"):
        require_or_skip("the fault suite starts its own Redis: redis-server is not on PATH")


def _require_cluster_client(env: dict[str, str]) -> None:
    """With INFERIA_FAULTS_REDIS=cluster, a client without cluster support fails the
    run (never a silent skip): the product's own client must answer a PING there."""
    probe = (
        "import django; django.setup()\nfrom inferia.store import redis_store\nredis_store.ping()\n"
    )
    done = subprocess.run(
        [PY, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        pytest.fail(
            "INFERIA_FAULTS_REDIS=cluster, but the product's Redis client cannot use the "
            f"cluster at {env['REDIS_URL']}:\n{done.stderr[-1500:]}"
        )


@pytest.fixture(params=redis_topologies())
def redis_topology(request) -> str:
    """The Redis under test: "single" (default) or "cluster" (INFERIA_FAULTS_REDIS)."""
    return request.param


def _stack(workdir: Path, topology: str, database_url: str, **env) -> Stack:
    redis_server = make_redis(topology, workdir)
    redis_server.start()
    stack = Stack.build(workdir, redis_server, database_url, **env)
    if topology == "cluster":
        _require_cluster_client(stack.env)
    return stack


@pytest.fixture
def stack(transactional_db, tmp_path, redis_topology):
    """Redis, fake upstream, web, worker and beat, up; stopped after the test (before
    the test database is flushed)."""
    _require_services()
    built = _stack(tmp_path, redis_topology, shared_database_url())
    try:
        built.start()
        yield built
    finally:
        built.stop()
        built.redis.stop()


@pytest.fixture
def own_postgres():
    """A PostgreSQL cluster of the test's own (it is stopped and started mid-load)."""
    _require_services()
    bindir = postgres_bin()
    if bindir is None:
        require_or_skip("the PostgreSQL restart scenario needs the PostgreSQL server binaries")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        require_or_skip("initdb refuses root and runuser is missing")
    # A short path: the server's Unix socket lives there (108 bytes at most).
    workdir = Path(tempfile.mkdtemp(prefix="faults-pg-"))
    server = OwnPostgres(workdir, bindir)  # type: ignore[arg-type]
    try:
        server.init()
        server.start()
        server.create_database("inferia")
        yield server
    finally:
        server.stop_quietly()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def stack_on_own_postgres(own_postgres, tmp_path, redis_topology):
    """The stack on the test's own PostgreSQL, with a principal cache lifetime (5 s)
    shorter than the outage, so every warm principal expires while the database is
    down (the stale allowance, not luck, keeps them serving)."""
    built = _stack(tmp_path, redis_topology, own_postgres.url(), INFERIA_GATEWAY_CACHE_SECONDS="5")
    try:
        built.migrate()
        built.start()
        yield built
    finally:
        built.stop()
        built.redis.stop()
