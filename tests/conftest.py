"""The fixed cast: alice (owner of Acme), bob (member), vera (viewer),
dave (admin of Acme), charlie (owner of Globex); an API client for each.

Tests that need PostgreSQL, Redis or a browser skip with a reason locally and
fail in CI (``INFERIA_REQUIRE_ALL=1``), see ``require_or_skip``.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from inferia import clock
from orgs.models import Membership, Organization, Role, TOTPDevice, User
from orgs.scoping import org_scope
from orgs.services import auth, tenancy
from tests.require_all import (  # noqa: F401  (hooks: in CI every skip fails)
    pytest_make_collect_report,
    pytest_runtest_makereport,
)

PASSWORD = "correct-horse-battery-staple"
REQUIRE_ALL = os.environ.get("INFERIA_REQUIRE_ALL") == "1"


def require_or_skip(reason: str) -> None:
    """Skip locally; in CI (INFERIA_REQUIRE_ALL=1) a missing dependency fails."""
    if REQUIRE_ALL:
        pytest.fail(f"required in CI but unavailable: {reason}")
    pytest.skip(reason)


def shared_database_url() -> str:
    """The URL of the test database this process is using right now (for the processes
    a test starts: a Celery worker, the fault suite's stack)."""
    from pathlib import Path
    from urllib.parse import quote

    from django.db import connection

    db = connection.settings_dict
    if connection.vendor == "sqlite":
        name = str(db["NAME"])
        assert name and ":memory:" not in name and "mode=memory" not in name, (
            "a test database shared with another process must be a SQLite file"
        )
        return "sqlite:///" + str(Path(name).resolve())
    if connection.vendor == "postgresql":
        credentials = quote(db["USER"] or "", safe="")
        if db.get("PASSWORD"):
            credentials += ":" + quote(db["PASSWORD"], safe="")
        host = db.get("HOST") or "127.0.0.1"
        port = db.get("PORT") or "5432"
        return f"postgres://{credentials}@{host}:{port}/{quote(db['NAME'], safe='')}"
    raise AssertionError(f"no URL for database vendor {connection.vendor}")


@pytest.fixture(autouse=True)
def _reset_clock():
    clock.reset()
    yield
    clock.reset()


def redis_command(*command):
    """One command through Inferia's own client (routed by key on a cluster)."""
    from inferia.store import redis_store

    return redis_store.call(lambda client: client.execute(*command))


def redis_reachable(url: str) -> bool:
    """Whether ``url`` answers PING (any URL form of the store)."""
    from inferia.store import client, sync

    async def ping() -> bool:
        redis = client.connect(url, timeout=1.0)
        try:
            return await redis.execute("PING") == b"PONG"
        finally:
            redis.close()

    try:
        return sync.run(ping, timeout=5)
    except (client.RedisUnavailable, ValueError):
        return False


@pytest.fixture(autouse=True)
def _fresh_redis_state():
    """Counters (login throttles, limits) kept in Redis outlive a test's database
    rollback, and earlier runs: each test starts on empty Redis databases (every
    master of a cluster; each xdist worker has databases of its own)."""
    from django.conf import settings

    if settings.REDIS_URL:
        from inferia.store import StoreUnavailable, redis_store
        from inferia.store.client import ConnectFailed

        # Under load a FLUSHDB's reply can come after the client's timer: the flush
        # then reports a failure although Redis may apply it later. Never start a
        # test on that unknown state: flush again (on a fresh connection) until a
        # flush is confirmed; only an unreachable Redis is left to the tests.
        for attempt in range(5):
            try:
                redis_store.flush_all()
                break
            except StoreUnavailable as exc:
                if isinstance(exc.__cause__, ConnectFailed):
                    break  # an unreachable Redis shows up in the tests that use it
                if attempt == 4:
                    raise
    yield


@pytest.fixture
def clock_shift():
    """Move the platform clock forward: ``clock_shift(31)``."""
    return clock.advance


def make_user(username: str, *, email: str | None = None, password: str = PASSWORD) -> User:
    user = User(username=username, email=email or f"{username}@example.com")
    user.set_password(password)
    user.save()
    return user


def builtin_role(slug: str) -> Role:
    return Role.objects.get(org__isnull=True, slug=slug)


def add_member(org: Organization, user: User, role_slug: str) -> Membership:
    with org_scope(org):
        return Membership.objects.create(org=org, user=user, role=builtin_role(role_slug))


def client_for(user: User) -> APIClient:
    client = APIClient()
    pair = auth.token_pair_issue(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair.access_token}")
    return client


def code_now(device: TOTPDevice) -> str:
    from django_otp.oath import TOTP

    generator = TOTP(device.seed_plaintext(), step=30, digits=6)
    generator.time = clock.time()
    return str(generator.token()).zfill(6)


def wrong_code(device: TOTPDevice) -> str:
    """A 6-digit code that matches none of the steps the server could accept now."""
    from django_otp.oath import TOTP

    generator = TOTP(device.seed_plaintext(), step=30, digits=6)
    generator.time = clock.time()
    near = set()
    for drift in range(-3, 4):
        generator.drift = drift
        near.add(str(generator.token()).zfill(6))
    candidate = 0
    while f"{candidate:06d}" in near:
        candidate += 1
    return f"{candidate:06d}"


def to_step_start(seconds: int = 30) -> None:
    """Move the clock just past the start of the next ``seconds``-long period (a
    30 s TOTP step, or a throttle window), so that a test relying on "still the
    same step/window" has all of it ahead instead of a boundary at a random point."""
    clock.advance(seconds - clock.time() % seconds + 0.01)


@dataclass
class Cast:
    acme: Organization
    globex: Organization
    alice: User
    bob: User
    vera: User
    dave: User
    charlie: User


@pytest.fixture
def cast(db) -> Cast:
    alice, bob, vera, dave, charlie = (
        make_user(name) for name in ("alice", "bob", "vera", "dave", "charlie")
    )
    acme = tenancy.organization_create(user=alice, slug="acme", name="Acme")
    globex = tenancy.organization_create(user=charlie, slug="globex", name="Globex")
    add_member(acme, bob, "member")
    add_member(acme, vera, "viewer")
    add_member(acme, dave, "admin")
    return Cast(
        acme=acme, globex=globex, alice=alice, bob=bob, vera=vera, dave=dave, charlie=charlie
    )


@pytest.fixture
def alice_client(cast) -> APIClient:
    return client_for(cast.alice)


@pytest.fixture
def bob_client(cast) -> APIClient:
    return client_for(cast.bob)


@pytest.fixture
def vera_client(cast) -> APIClient:
    return client_for(cast.vera)


@pytest.fixture
def dave_client(cast) -> APIClient:
    return client_for(cast.dave)


@pytest.fixture
def charlie_client(cast) -> APIClient:
    return client_for(cast.charlie)


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


def assert_error(response, status: int, code: str) -> dict:
    """Assert the contract's error envelope; returns the error object."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "details" in body["error"]
    return body["error"]


def enable_totp(client: APIClient, user: User) -> tuple[TOTPDevice, list[str]]:
    """Enrol a TOTP device through the API, as a user with an app would."""
    response = client.post("/api/v1/auth/2fa/setup")
    assert response.status_code == 200, response.content
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    response = client.post(
        "/api/v1/auth/2fa/confirm", {"otp_code": code_now(device)}, format="json"
    )
    assert response.status_code == 200, response.content
    device.refresh_from_db()
    return device, response.json()["recovery_codes"]


def invitation_token(message) -> str:
    """The invitation token carried by the link in an invitation e-mail."""
    import re

    match = re.search(r"/api/v1/invitations/([^/\s]+)/accept", message.body)
    assert match, message.body
    return match.group(1)


# --- the whole run never writes a credential into an audit row or a log line ---------

LEAK_PATTERNS = [
    re.compile(r"ifr_[A-Za-z0-9]{12}_[A-Za-z0-9]{20,}"),  # a whole Inferia API key
    re.compile(r"ifs_[A-Za-z0-9]{12}_[A-Za-z0-9]{20,}"),  # a whole SCIM token
    re.compile(r"sk-[A-Za-z0-9_-]{16,}"),  # upstream secrets used by the tests
    re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\."),  # JWTs
    re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),  # e-mail addresses
    re.compile(re.escape(PASSWORD)),
]
LEAKS: list[str] = []


def _scan(where: str, text: str) -> None:
    for pattern in LEAK_PATTERNS:
        match = pattern.search(text)
        if match:
            LEAKS.append(f"{where}: {match.group(0)[:12]}... in {text[:160]!r}")


class _LeakScanHandler(logging.Handler):
    """Formats every log record as the console would (redacted JSON) and scans it."""

    def __init__(self) -> None:
        from audit.logging import JsonFormatter, RedactingFilter

        super().__init__(level=logging.DEBUG)
        self.addFilter(RedactingFilter())
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _scan(f"log {record.name}", self.format(record))
        except Exception:  # a broken record must not break the scan of the rest
            LEAKS.append(f"log {record.name}: could not be formatted")


@pytest.fixture(scope="session", autouse=True)
def _no_credentials_in_audit_or_logs():
    """Every audit row written (through the one writer) and every log line of the run."""
    import json as _json

    from audit import chain

    original = chain.append

    def scanning_append(records):
        records = list(records)
        for record in records:
            fields = {
                name: getattr(record, name)
                for name in chain.HASHED_FIELDS
                if name not in ("id", "prev_hash")
            }
            _scan(f"audit {record.action}", _json.dumps(fields, default=str))
        return original(records)

    chain.append = scanning_append
    handler = _LeakScanHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    yield
    root.removeHandler(handler)
    chain.append = original
    assert not LEAKS, "credentials reached audit rows or log lines:\n" + "\n".join(LEAKS[:20])
