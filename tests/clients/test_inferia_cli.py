"""The client package (clients/python) end to end against a live server: ``inferia login``
runs the device flow in a subprocess while a person approves in Chromium (or through the
/device page), then ``inferia token``/``whoami``, the OpenAI SDK through
``inferia_client.openai_client()`` calling the gateway as that person (usage and audit
records name them), refresh shortly before expiry from threads, processes and asyncio
(one refresh, no reuse), revocation, and the 0600 file store.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import inferia_client
import pytest
from django.conf import settings as django_settings
from django.test import Client
from inferia_client import device as client_device
from inferia_client.session import Session
from inferia_client.store import (
    Credentials,
    FileStore,
    InsecureCredentialsFile,
    KeyringStore,
    Profile,
    keyring_usable,
    open_store,
    profile_save,
)

from audit.models import AuditRecord
from inferia import clock
from orgs.models import DeviceAuthorization, RefreshTokenRecord, User
from orgs.services import auth
from tests.conftest import PASSWORD, require_or_skip
from tests.gateway.conftest import assert_gateway_error, usage_rows

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
CLI = Path(sys.executable).with_name("inferia")
MODEL = "openai-main/gpt-4o"
CHAT = [{"role": "user", "content": "Say hello"}]
ANSWER = "Hello from the fake upstream."


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A config directory of this test's own, for the CLI subprocesses and this process."""
    directory = tmp_path / "config" / "inferia"
    monkeypatch.setenv("INFERIA_CONFIG_DIR", str(directory))
    monkeypatch.setenv("INFERIA_TOKEN_STORE", "file")
    monkeypatch.delenv("INFERIA_SERVER", raising=False)
    return directory


@pytest.fixture
def server(llm, gateway_server, settings) -> str:
    """The live server (API, dashboard and gateway on one port); polls every second."""
    settings.INFERIA_DEVICE_POLL_SECONDS = 1
    return gateway_server.url


class Running:
    """A CLI subprocess whose output lines are read as they come."""

    def __init__(self, *args: str) -> None:
        assert CLI.exists(), f"{CLI} is missing: `make test` installs clients/python"
        self.process = subprocess.Popen(
            [str(CLI), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert self.process.stdout is not None
        stdout = self.process.stdout
        self.reader = threading.Thread(
            target=lambda: [self.lines.put(line) for line in stdout], daemon=True
        )
        self.reader.start()

    def expect(self, pattern: str, timeout: float = 30.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no line matching {pattern!r} in {self.seen}")

    def finish(self, timeout: float = 60.0) -> tuple[int, str, str]:
        self.process.wait(timeout=timeout)
        assert self.process.stderr is not None
        err = self.process.stderr.read()
        self.reader.join(10)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return self.process.returncode, "".join(self.seen), err


def cli(*args: str) -> subprocess.CompletedProcess:
    assert CLI.exists(), f"{CLI} is missing: `make test` installs clients/python"
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )


def start_login(server: str, *extra: str) -> tuple[Running, str, str]:
    running = Running("login", "--server", server, *extra)
    code = running.expect(r"enter the code: ([A-Z]{4}-[A-Z]{4})").group(1)
    complete = running.expect(r"Or open (\S+) ").group(1)
    return running, code, complete


def approve_in_chromium(url: str, username: str, user_code: str) -> str:
    """A person signs in and approves in headless Chromium; returns the final page's text.
    (Playwright's sync API runs an event loop here: no ORM call inside.)"""
    if not os.path.exists(CHROMIUM):
        require_or_skip("the browser approval needs Debian's chromium at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page()
            page.goto(url)  # not signed in: the login page, then back here
            page.get_by_label("Username").fill(username)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            assert page.get_by_label("Code shown by your device").input_value() == user_code
            page.get_by_role("button", name="Continue").click()
            assert page.locator("[data-user-code]").inner_text() == user_code
            assert "Inferia CLI" in page.locator("h1").inner_text()
            page.get_by_role("button", name="Approve").click()
            page.get_by_role("heading", name="Device connected").wait_for()
            return page.locator("main").inner_text()
        finally:
            browser.close()


def approve_with_page(user: User, user_code: str, decision: str = "approve") -> None:
    page = Client()
    page.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    response = page.post(
        "/device", {"step": "decide", "user_code": user_code, "decision": decision}
    )
    assert response.status_code == 200, response.content[:500]


def stored(home: Path, server: str) -> Credentials:
    credentials = FileStore(home).load(server)
    assert credentials is not None
    return credentials


def family_of(access_token: str):
    claims = inferia_client.session._jwt_claims(access_token)
    return claims["fam"]


def logged_in(home: Path, server: str, user: User, org: str = "acme") -> Credentials:
    """``inferia login`` approved through the page (for the tests that start signed in)."""
    running, code, _complete = start_login(server, "--org", org)
    approve_with_page(user, code)
    rc, out, err = running.finish()
    assert rc == 0, (out, err)
    return stored(home, server)


# --- the whole story --------------------------------------------------------------------------


@pytest.mark.browser
def test_cli_login_approved_in_chromium_then_the_sdk_calls_the_gateway_as_the_user(
    home, server, cast
):
    running, code, complete = start_login(server, "--org", "acme")
    assert complete == f"{server}/device?user_code={code}"

    text = approve_in_chromium(complete, "bob", code)
    assert "signed in as bob" in text

    rc, out, err = running.finish()
    assert rc == 0, (out, err)
    assert f"Signed in to {server} as bob (organization acme)" in out
    # The refresh token is in a 0600 file in a 0700 directory; the config names the login.
    credentials_file = home / "credentials.json"
    assert stat.S_IMODE(credentials_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert "refresh_token" not in (home / "config.json").read_text()
    grant = DeviceAuthorization.objects.get()
    assert (grant.status, grant.user, grant.org_slug) == ("consumed", cast.bob, "acme")
    assert [
        (r.action, r.actor_label)
        for r in AuditRecord.objects.filter(target_id=str(grant.pk)).order_by("created_at", "id")
    ] == [
        ("auth:device_code", "client:inferia-cli"),
        ("auth:device_approve", "bob"),
        ("auth:device_token", "bob"),
    ]

    token = cli("token")
    assert token.returncode == 0, token.stderr
    me = httpx.get(
        f"{server}/api/v1/auth/me",
        headers={"Authorization": f"Bearer {token.stdout.strip()}"},
        timeout=30,
    )
    assert me.json()["user"]["username"] == "bob"
    whoami = cli("whoami")
    assert whoami.returncode == 0, whoami.stderr
    assert whoami.stdout.splitlines() == [f"bob on {server}", "  acme: Member *"]

    client = inferia_client.openai_client(max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=CHAT)
    assert raw.parse().choices[0].message.content == ANSWER
    request_id = raw.headers["X-Request-ID"]
    [usage] = usage_rows(request_id=request_id)
    assert (usage.user_id, usage.key_prefix, usage.org_id) == (cast.bob.pk, "", cast.acme.pk)
    record = AuditRecord.objects.get(request_id=request_id)
    assert (record.action, record.outcome, record.actor_user) == (
        "inference:run",
        "success",
        cast.bob,
    )

    access_token = token.stdout.strip()
    logout = cli("logout")
    assert logout.returncode == 0, logout.stderr
    assert FileStore(home).load(server) is None
    assert not RefreshTokenRecord.objects.filter(
        family=family_of(access_token), revoked_at__isnull=True
    ).exists()
    refused = httpx.get(
        f"{server}/api/v1/auth/me", headers={"Authorization": f"Bearer {access_token}"}, timeout=30
    )
    assert refused.status_code == 401
    assert cli("token").returncode == 1


def test_cli_login_approved_through_the_page_and_denied(home, server, cast):
    credentials = logged_in(home, server, cast.bob)
    assert credentials.username == "bob"

    running, code, _complete = start_login(server)
    approve_with_page(cast.bob, code, "deny")
    rc, out, err = running.finish()
    assert rc == 1
    assert "denied" in err
    assert stored(home, server).refresh_token == credentials.refresh_token  # unchanged


def test_sdk_async_client_calls_the_gateway(home, server, cast):
    logged_in(home, server, cast.bob)

    async def calls() -> list[str]:
        client = inferia_client.async_openai_client(max_retries=0)
        answers = await asyncio.gather(
            *(client.chat.completions.create(model=MODEL, messages=CHAT) for _ in range(3))
        )
        await client.close()
        return [answer.choices[0].message.content for answer in answers]

    assert asyncio.run(calls()) == [ANSWER] * 3
    assert {row.user_id for row in usage_rows(expected=3, org_id=cast.acme.pk)} == {cast.bob.pk}


# --- short-lived tokens: expiry, refresh, one refresh at a time --------------------------------


def test_an_access_token_past_its_lifetime_is_refused_by_the_gateway(home, server, cast):
    credentials = logged_in(home, server, cast.bob)
    headers = {"Authorization": f"Bearer {credentials.access_token}", "OpenAI-Organization": "acme"}
    assert httpx.get(f"{server}/api/llm/v1/models", headers=headers, timeout=30).status_code == 200
    clock.advance(django_settings.INFERIA_ACCESS_TOKEN_SECONDS + 1)
    refused = httpx.get(f"{server}/api/llm/v1/models", headers=headers, timeout=30)
    assert_gateway_error(refused, 401, "AUTHENTICATION_FAILED")


class ShiftedClock:
    """The client's own clock, moved forward to make its token due for refresh."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def _unrevoked_records(credentials: Credentials) -> int:
    return RefreshTokenRecord.objects.filter(
        family=family_of(credentials.access_token), revoked_at__isnull=True
    ).count()


def test_threads_share_one_refresh_shortly_before_expiry(home, server, cast):
    before = logged_in(home, server, cast.bob)
    shifted = ShiftedClock()
    session = Session(clock=shifted)
    assert session.access_token() == before.access_token  # fresh: no refresh
    shifted.offset = django_settings.INFERIA_ACCESS_TOKEN_SECONDS - 30  # inside the margin

    tokens: list[str] = []
    barrier = threading.Barrier(8)

    def use() -> None:
        barrier.wait()
        tokens.append(session.access_token())

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(set(tokens)) == 1 and tokens[0] != before.access_token
    after = stored(home, server)
    assert after.access_token == tokens[0] and after.refresh_token != before.refresh_token
    # One rotation: the first refresh token used, the new one live, the login not ended.
    records = RefreshTokenRecord.objects.filter(family=family_of(before.access_token))
    assert records.count() == 2
    assert records.filter(used_at__isnull=False).count() == 1
    assert records.filter(revoked_at__isnull=False).count() == 0


def test_two_processes_sharing_the_login_refresh_once(home, server, cast):
    before = logged_in(home, server, cast.bob)
    # Make the stored access token due, as if minutes had passed for every process.
    due = Credentials(before.refresh_token, before.access_token, time.time() - 1, before.username)
    FileStore(home).save(server, due)
    processes = [
        subprocess.Popen(
            [str(CLI), "token"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=60) for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], outputs
    assert len({out.strip() for out, _err in outputs}) == 1  # the one refreshed token
    records = RefreshTokenRecord.objects.filter(family=family_of(before.access_token))
    assert records.count() == 2 and records.filter(revoked_at__isnull=False).count() == 0


def test_asyncio_tasks_share_one_refresh(home, server, cast):
    before = logged_in(home, server, cast.bob)
    shifted = ShiftedClock()
    session = Session(clock=shifted)
    shifted.offset = 10 * django_settings.INFERIA_ACCESS_TOKEN_SECONDS

    async def calls() -> list[str]:
        client = inferia_client.async_openai_client(session=session, max_retries=0)
        answers = await asyncio.gather(
            *(client.chat.completions.create(model=MODEL, messages=CHAT) for _ in range(5))
        )
        await client.close()
        return [answer.choices[0].message.content for answer in answers]

    assert asyncio.run(calls()) == [ANSWER] * 5
    records = RefreshTokenRecord.objects.filter(family=family_of(before.access_token))
    assert records.count() == 2 and records.filter(revoked_at__isnull=False).count() == 0


def test_a_revoked_token_is_renewed_once_and_an_ended_login_is_forgotten(home, server, cast):
    credentials = logged_in(home, server, cast.bob)
    client = inferia_client.openai_client(max_retries=0)
    assert client.chat.completions.create(model=MODEL, messages=CHAT).choices
    # The password changes elsewhere: every token of bob dies, the refresh token too.
    auth.password_change(
        user=cast.bob, current_password=PASSWORD, new_password="another-long-passphrase-7"
    )
    # The gateway refuses the old token (401), the forced refresh is refused too: the
    # SDK call raises the client's NotSignedIn, whose message says what to do.
    with pytest.raises(inferia_client.NotSignedIn, match="inferia login"):
        client.chat.completions.create(model=MODEL, messages=CHAT)
    assert FileStore(home).load(server) is None  # the dead login is forgotten
    assert _unrevoked_records(credentials) == 0
    token = cli("token")
    assert token.returncode == 1 and "inferia login" in token.stderr


# --- the client's polling against the real server ---------------------------------------------


def test_client_polling_honours_pending_and_slow_down(server, cast):
    sleeps: list[float] = []
    with httpx.Client(timeout=30) as http:
        code = client_device.request_code(http, server)
        assert code.interval == 1

        def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            if len(sleeps) > 1:  # the first poll comes too soon: the server says slow_down
                clock.advance(seconds)
            if len(sleeps) == 3:
                approve_with_page(cast.bob, code.user_code)

        clock.advance(1)
        DeviceAuthorization.objects.update(last_polled_at=clock.now())  # a poll just happened
        credentials = client_device.poll_for_tokens(http, server, code, sleep=sleep)
    assert sleeps == [1, 6, 6]  # slow_down: 5 seconds more, for good
    assert credentials.username == "bob"


# --- where the token is kept ------------------------------------------------------------------


def test_the_file_store_refuses_a_file_others_can_read(home, server, cast):
    logged_in(home, server, cast.bob)
    path = home / "credentials.json"
    path.chmod(0o644)
    with pytest.raises(InsecureCredentialsFile, match="chmod 600"):
        FileStore(home).load(server)
    token = cli("token")
    assert token.returncode == 1
    assert "refusing to read it" in token.stderr and "chmod 600" in token.stderr
    path.chmod(0o600)
    assert cli("token").returncode == 0


def test_file_store_writes_0600_even_under_a_permissive_umask(home):
    old = os.umask(0)
    try:
        FileStore(home).save("http://x", Credentials("r", "a", 1.0, "u"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((home / "credentials.json").stat().st_mode) == 0o600
    assert FileStore(home).load("http://x") == Credentials("r", "a", 1.0, "u")


def _memory_backend():
    """A keyring backend of the test's own (keyring's documented extension point)."""
    import keyring.backend

    class Backend(keyring.backend.KeyringBackend):
        priority = 1  # type: ignore[assignment]

        def __init__(self) -> None:
            super().__init__()
            self.items: dict[tuple[str, str], str] = {}

        def get_password(self, service, username):
            return self.items.get((service, username))

        def set_password(self, service, username, password):
            self.items[(service, username)] = password

        def delete_password(self, service, username):
            from keyring.errors import PasswordDeleteError

            if self.items.pop((service, username), None) is None:
                raise PasswordDeleteError("not found")

    return Backend()


def test_the_os_keyring_is_used_when_usable(home, monkeypatch):
    import keyring
    from keyring.backends import fail

    monkeypatch.delenv("INFERIA_TOKEN_STORE")
    original = keyring.get_keyring()
    try:
        keyring.set_keyring(fail.Keyring())
        assert not keyring_usable()
        assert isinstance(open_store(), FileStore)

        backend = _memory_backend()
        keyring.set_keyring(backend)
        assert keyring_usable()
        store = open_store()
        assert isinstance(store, KeyringStore)
        credentials = Credentials("refresh-x", "access-y", time.time() + 600, "bob")
        store.save("https://inferia.example", credentials)
        assert backend.items[("inferia", "https://inferia.example")]
        assert store.load("https://inferia.example") == credentials
        assert not (home / "credentials.json").exists()  # nothing on disk
        profile_save(Profile(server="https://inferia.example", store="keyring"))
        session = Session()
        assert session.access_token() == "access-y"
        store.delete("https://inferia.example")
        assert store.load("https://inferia.example") is None
    finally:
        keyring.set_keyring(original)


def test_a_refused_access_token_is_renewed_and_the_call_retried_once(home, server, cast):
    before = logged_in(home, server, cast.bob)
    # A token the gateway refuses although the client believes it fresh for an hour.
    FileStore(home).save(
        server,
        Credentials(before.refresh_token, "not-a-token", time.time() + 3600, before.username),
    )
    client = inferia_client.openai_client(max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=CHAT)
    assert raw.parse().choices[0].message.content == ANSWER
    renewed = stored(home, server)
    assert renewed.access_token != "not-a-token"
    assert renewed.refresh_token != before.refresh_token
    records = RefreshTokenRecord.objects.filter(family=family_of(before.access_token))
    assert records.count() == 2 and records.filter(revoked_at__isnull=False).count() == 0
    refused = AuditRecord.objects.filter(outcome="denied", status_code=401).count()
    assert refused >= 1  # the gateway's refusal of the bad token is on record
