"""``manage.py serve --workers 2`` as ``make run`` starts it (two uvicorn workers, a
Celery worker, Celery beat), on a fresh embedded install: the scrape of either web
worker counts the requests both served and the Celery tasks the worker ran, read
from the metric files every process writes (prometheus_client's multiprocess mode)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, multiprocess

from tests import ports
from tests.observability.conftest import SCRAPE_TOKEN, parse

ROOT = Path(__file__).resolve().parents[2]
CALLS = 40
DEADLINE_SECONDS = 90


def _requests_in(db_file: Path, scratch: Path) -> float:
    """The gateway requests one process's metric file holds (read alone)."""
    folder = scratch / db_file.stem
    folder.mkdir()
    shutil.copy(db_file, folder / db_file.name)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(folder))
    return sum(
        sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == "inferia_gateway_requests_total"
    )


@pytest.mark.worker
def test_serve_counts_every_web_worker_and_the_celery_worker(tmp_path, fake_upstream):
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
        and not key.startswith(("PROMETHEUS_", "CELERY_"))
    }
    env.update(
        INFERIA_VAR_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="inferia.settings",
        INFERIA_METRICS_TOKEN=SCRAPE_TOKEN,
        INFERIA_ALLOWED_HOSTS="127.0.0.1,localhost",
    )
    for command in (["migrate", "--noinput", "-v", "0"], ["bootstrap_demo"]):
        subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=300,
            capture_output=True,
        )
    # A file of an earlier run would be summed into this one: serve empties the folder.
    stale = tmp_path / "prometheus"
    stale.mkdir()
    (stale / "counter_999999.db").write_bytes(b"stale")
    port = ports.free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port), "--workers", "2"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            assert server.poll() is None, log_path.read_text()[-4000:]
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()[-4000:]
            time.sleep(0.2)
        assert not (stale / "counter_999999.db").exists()

        password = (tmp_path / "demo_password").read_text().strip()
        login = httpx.post(
            f"{base}/api/v1/auth/login",
            json={"username": "demo", "password": password},
            timeout=30,
        )
        assert login.status_code == 200, login.text
        api = httpx.Client(
            base_url=f"{base}/api/v1",
            headers={"Authorization": f"Bearer {login.json()['access_token']}"},
            timeout=30,
        )
        upstream_host = fake_upstream.url.removeprefix("http://")
        steps = [
            ("PATCH", "/orgs/demo", {"settings": {"allowed_private_hosts": [upstream_host]}}),
            (
                "POST",
                "/orgs/demo/provider-accounts",
                {
                    "name": "local",
                    "provider_type": "openai_compatible",
                    "base_url": f"{fake_upstream.url}/v1",
                    "models": [{"name": "gpt-4o"}],
                },
            ),
            ("POST", "/orgs/demo/access-rules", {"models": ["local/*"], "users": ["demo"]}),
        ]

        def request(method: str, path: str, body: dict) -> httpx.Response:
            try:
                return api.request(method, path, json=body)
            except httpx.TransportError:
                # A connection the server dropped: fail if serve stopped (a real fault,
                # its log says why); a web worker uvicorn's supervisor restarted (it
                # does when one misses its 5 s ping on a loaded machine) is not what
                # this test is about: once more, on a new connection.
                time.sleep(1)
                assert server.poll() is None, log_path.read_text()[-8000:]
                print(log_path.read_text(errors="replace")[-4000:])
                answer = httpx.request(
                    method, f"{base}/api/v1{path}", json=body, headers=api.headers, timeout=30
                )
                # 409: the creation retried had gone through the first time.
                return answer if answer.status_code != 409 else httpx.Response(200)

        for method, path, body in steps:
            answer = request(method, path, body)
            assert answer.is_success, answer.text
        minted = request(
            "POST", "/orgs/demo/api-keys", {"name": "m", "permissions": ["inference:run"]}
        )
        assert minted.status_code == 201, minted.text
        key = minted.json()["key"]

        for _ in range(CALLS):
            # A new connection each time: the kernel spreads them over both workers.
            answer = httpx.post(
                f"{base}/api/llm/v1/chat/completions",
                json={"model": "local/gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text

        def scrape():
            response = httpx.get(
                f"{base}/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}, timeout=30
            )
            assert response.status_code == 200, response.text
            return parse(response.text)

        # The other worker writes its last second of samples within a second.
        while True:
            page = scrape()
            ingested = page.value(
                "inferia_celery_tasks_total", task="gateway.tasks.usage_ingest", outcome="success"
            )
            if ingested >= 1 and page.value("inferia_gateway_requests_total") >= CALLS:
                break
            assert time.monotonic() < deadline + 60, log_path.read_text()[-4000:]
            time.sleep(0.5)
        requests = page.value(
            "inferia_gateway_requests_total",
            org="demo",
            endpoint="chat",
            model="local/gpt-4o",
            provider_account="local",
            status_class="2xx",
        )
        assert requests == CALLS
        # Any web worker answers the same totals.
        assert scrape().value("inferia_gateway_requests_total", org="demo") == CALLS
        # Both web workers served some of them, each in its own file.
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        per_process = [_requests_in(path, scratch) for path in sorted(stale.glob("counter_*.db"))]
        served = [n for n in per_process if n]
        assert len(served) >= 2 and sum(served) == CALLS, per_process
        assert page.value("inferia_usage_records_total") == CALLS
    except BaseException:
        # What the server, its workers and the Celery processes said (pytest prints it).
        print(log_path.read_text(errors="replace")[-8000:])
        raise
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
