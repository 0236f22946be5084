"""A task sent by the web process is executed by a separate Celery worker process.

The test process turns eager mode off, publishes to a queue of its own on the
embedded filesystem broker (a per-test folder) or on Redis, and a real
``celery -A inferia worker`` subprocess, pointed at the same test database and
broker, sends the invitation e-mail into a folder. Nothing sleeps: the test
polls the database with a deadline.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from celery import signals
from django.conf import settings
from django.core import mail

from inferia.celery import app
from orgs.models import Invitation, Membership
from tests.conftest import require_or_skip, shared_database_url

pytestmark = pytest.mark.worker

DEADLINE_SECONDS = 90


def _redis_reachable(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping())
    except redis.RedisError:
        return False


@dataclass
class Broker:
    kind: str
    url: str
    transport_options: dict = field(default_factory=dict)
    worker_env: dict = field(default_factory=dict)


@pytest.fixture(params=["filesystem", "redis"])
def broker(request, tmp_path) -> Broker:
    if request.param == "filesystem":
        folder = tmp_path / "broker"
        options = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
        }
        for key in ("data_folder_in", "processed_folder", "control_folder"):
            Path(options[key]).mkdir(parents=True, exist_ok=True)
        return Broker(
            kind="filesystem",
            url="filesystem://",
            transport_options=options,
            worker_env={"INFERIA_BROKER_TRANSPORT_OPTIONS": json.dumps(options)},
        )
    redis_url = settings.REDIS_URL
    if not redis_url:
        require_or_skip("REDIS_URL is not set: no Redis broker to test the worker on")
    if not _redis_reachable(redis_url):
        require_or_skip("Redis at REDIS_URL is not reachable")
    return Broker(kind="redis", url=redis_url, worker_env={"REDIS_URL": redis_url})


@contextmanager
def _publishing_to(broker: Broker, queue: str):
    """This process sends tasks for real (eager off) to ``queue`` on ``broker``.

    The app reads Django settings with the ``CELERY`` namespace, and a prefixed
    key wins over a plain one: ``conf.task_always_eager = False`` would not
    override ``CELERY_TASK_ALWAYS_EAGER``, so the prefixed keys are set.
    """
    conf = app.conf
    changes = {
        "CELERY_TASK_ALWAYS_EAGER": False,
        "CELERY_BROKER_URL": broker.url,
        "CELERY_BROKER_TRANSPORT_OPTIONS": broker.transport_options,
        "CELERY_TASK_ROUTES": {"*": {"queue": queue}},
    }
    missing = object()
    saved = {key: conf.changes.get(key, missing) for key in changes}

    def reset_connections_and_routes() -> None:
        # Forget, not close: kombu shares pools per broker URL across the process.
        app._pool = None
        app.amqp._producer_pool = None
        app.amqp.flush_routes()
        del app.amqp.router  # rebuilt from the current routes on next use

    conf.changes.update(changes)
    reset_connections_and_routes()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is missing:
                conf.changes.pop(key, None)
            else:
                conf.changes[key] = value
        reset_connections_and_routes()
        if broker.kind == "redis":
            import redis

            redis.Redis.from_url(broker.url).delete(queue)


@dataclass
class Worker:
    process: subprocess.Popen
    log_path: Path
    mail_dir: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pause_or_fail(self, seconds: float) -> None:
        """Wait a moment for the worker; fail at once if it died."""
        try:
            code = self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return
        pytest.fail(f"the worker exited with {code}:\n{self.log()[-4000:]}")

    def wait_for_log(self, pattern: str, seconds: float = DEADLINE_SECONDS) -> str:
        """The log once ``pattern`` appears in it. The worker writes a task's outcome line
        after the task's own effects are visible, so a test that saw the effects polls."""
        deadline = time.monotonic() + seconds
        while True:
            log = self.log()
            if re.search(pattern, log):
                return log
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{pattern!r} not in the worker's log within {seconds}s:\n{log[-4000:]}"
                )
            self.pause_or_fail(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # warm shutdown
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def worker(transactional_db, broker, tmp_path):
    """A real worker process on the test database and ``broker``; stopped in teardown."""
    queue = f"test-worker-{uuid.uuid4().hex[:12]}"
    mail_dir = tmp_path / "mail"
    mail_dir.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("INFERIA_", "DJANGO_", "CELERY_"))
        and key not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="inferia.settings",
        DATABASE_URL=shared_database_url(),
        # The worker is a deployment (DATABASE_URL set): it needs this process's keys.
        INFERIA_SECRET_KEY=settings.SECRET_KEY,
        INFERIA_JWT_SIGNING_KEY=settings.INFERIA_JWT_SIGNING_KEY,
        INFERIA_MASTER_KEYS=settings.INFERIA_MASTER_KEYS,
        INFERIA_ALLOWED_HOSTS="localhost",
        INFERIA_VAR_DIR=str(tmp_path / "worker-var"),
        INFERIA_EMAIL_URL=f"filemail:///{mail_dir}",
        INFERIA_PUBLIC_URL=settings.INFERIA_PUBLIC_URL,
        PYTHONUNBUFFERED="1",
        **broker.worker_env,
    )
    log_path = tmp_path / "worker.log"
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "inferia",
        "worker",
        "--pool",
        "solo",
        "--loglevel",
        "INFO",
        "--without-mingle",
        "--without-gossip",
        "--without-heartbeat",
        "--queues",
        queue,
        "--hostname",
        f"{queue}@%h",
    ]
    with _publishing_to(broker, queue), open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        running = Worker(process=process, log_path=log_path, mail_dir=mail_dir)
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture
def tasks_run_here():
    """Ids of the tasks that started inside this test process."""
    started: list[str] = []

    def record(sender=None, task_id=None, **kwargs) -> None:
        started.append(task_id)

    signals.task_prerun.connect(record, weak=False)
    yield started
    signals.task_prerun.disconnect(record)


def test_invitation_email_is_sent_by_a_separate_worker_process(
    worker, broker, cast, alice_client, anon_client, tasks_run_here
):
    assert app.conf.task_always_eager is False
    response = alice_client.post(
        "/api/v1/orgs/acme/invitations",
        {"email": "frank@example.com", "role": "member"},
        format="json",
    )
    assert response.status_code == 201, response.content
    invitation_id = response.json()["id"]

    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        invitation = Invitation.all_orgs.get(pk=invitation_id)
        mails = sorted(worker.mail_dir.glob("*.log"))
        if invitation.sent_at is not None and mails:
            break
        if time.monotonic() > deadline:
            pytest.fail(
                f"no e-mail from the worker ({broker.kind}) within {DEADLINE_SECONDS}s:\n"
                f"{worker.log()[-4000:]}"
            )
        worker.pause_or_fail(0.2)

    assert invitation.send_count == 1
    # The task did not run in this process (no eager call, nothing in locmem).
    assert tasks_run_here == []
    assert mail.outbox == []
    assert worker.process.pid != os.getpid()
    log = worker.wait_for_log(r"Task orgs\.tasks\.invitation_send\[[0-9a-f-]+\] succeeded")
    assert f"invitation_send id={invitation_id} send=1 sent=True" in log, log[-4000:]

    # One mail, to the invitee, with a link whose token the worker stored hashed.
    assert len(mails) == 1
    message = mails[0].read_text()
    assert "To: frank@example.com" in message
    token = re.search(r"/api/v1/invitations/([^/\s]+)/accept", message).group(1)
    accepted = anon_client.post(
        f"/api/v1/invitations/{token}/accept",
        {"username": "frank", "password": "a-long-enough-passphrase"},
        format="json",
    )
    assert accepted.status_code == 201, accepted.content
    assert Membership.all_orgs.filter(org__slug="acme", user__username="frank").exists()
