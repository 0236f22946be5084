"""Real web processes for tests: ``uvicorn inferia.asgi:application`` started as a
separate process on a free port, on the test database (``tests/gateway/proc_settings``)
and the Redis of this test (or none: the database's counters), as production runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
from django.db import connection

from tests.conftest import PASSWORD
from tests.gateway.conftest import _free_port

ROOT = Path(__file__).resolve().parents[2]


class GatewayProcess:
    """``uvicorn inferia.asgi:application`` in its own process, on the test database."""

    def __init__(
        self,
        redis_url: str,
        *,
        env: dict[str, str] | None = None,
        without: tuple[str, ...] = (),
        lifespan: bool = False,
    ) -> None:
        """``env`` adds variables; ``without`` keeps the test run's variables of those
        prefixes from the process; ``lifespan`` runs the ASGI lifespan (start-up and
        shutdown hooks), off by default."""
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        process_env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE") and not k.startswith(without)
        }
        process_env.update(
            DJANGO_SETTINGS_MODULE="tests.gateway.proc_settings",
            INFERIA_TEST_DB_NAME=str(connection.settings_dict["NAME"]),
            REDIS_URL=redis_url,
            **(env or {}),
        )
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "inferia.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
                "--lifespan",
                "on" if lifespan else "off",
            ],
            cwd=ROOT,
            env=process_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.stdout.read()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"gateway process on {self.url} did not start")

    def stop(self) -> str:
        """SIGTERM (a graceful shutdown, the lifespan's too), then what it printed."""
        if self.process.stdout.closed:
            return ""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            output, _ = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate(timeout=5)
        return output

    def sdk(self, key: str) -> openai.OpenAI:
        """The official client on this process, without retries (they would hide 429s)."""
        return openai.OpenAI(
            base_url=f"{self.url}/api/llm/v1", api_key=key, max_retries=0, timeout=30
        )

    def chat(self, key: str, body: dict, headers: dict[str, str] | None = None) -> httpx.Response:
        """One chat completion on this process, as raw HTTP."""
        return httpx.post(
            f"{self.url}/api/llm/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}", **(headers or {})},
            timeout=30,
        )

    def rest(self, username: str) -> httpx.Client:
        """A REST client of this process, logged in as ``username`` through its own
        ``/api/v1/auth/login``."""
        answer = httpx.post(
            f"{self.url}/api/v1/auth/login",
            json={"username": username, "password": PASSWORD},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        token = answer.json()["access_token"]
        return httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )


def start_processes(count: int, redis_url: str) -> list[GatewayProcess]:
    """Start ``count`` processes at once and wait until each answers ``/healthz``."""
    processes = [GatewayProcess(redis_url) for _ in range(count)]
    try:
        for process in processes:
            process.wait_ready()
    except BaseException:
        for process in processes:
            process.stop()
        raise
    return processes
