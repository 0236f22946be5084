"""README's first session, run as written against `make run`.

The fenced blocks of README.md preceded by ``<!-- walkthrough -->`` run in order:
shell blocks through bash (exported variables carry over to the next block), Python
blocks through the venv's python. `make run` serves on a free port from a temporary
var/ directory (embedded defaults), with the repository's fake upstream standing in
for vLLM on 127.0.0.1. Reuses .venv (``make -o .venv/.installed``): no install.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- walkthrough -->"
BLOCK = re.compile(re.escape(MARKER) + r"\s*\n```(?P<lang>[a-z]+)\n(?P<body>.*?)\n```", re.DOTALL)
pytestmark = pytest.mark.worker  # make run starts a Celery worker and beat


def walkthrough_blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group("lang"), m.group("body")) for m in BLOCK.finditer(text)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, process: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer in {seconds}s:\n{log.read_text()[-4000:]}")


def _stop(process: subprocess.Popen) -> None:
    """Ctrl-C to the process group we started (make and what it runs), then wait."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture
def served(tmp_path):
    """`make run` on a free port with a fresh var/, and the fake upstream as 'vLLM'."""
    port, model_port = _free_port(), _free_port()
    var = tmp_path / "var"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("INFERIA_", "DJANGO_", "CELERY_", "PYTEST_"))
        and key not in ("DATABASE_URL", "REDIS_URL", "PORT")
    }
    env.update(INFERIA_VAR_DIR=str(var), PYTHONUNBUFFERED="1")
    upstream_log, server_log = tmp_path / "upstream.log", tmp_path / "server.log"
    upstream = subprocess.Popen(
        [sys.executable, "-m", "gateway.fake_upstream", "--port", str(model_port)],
        cwd=ROOT,
        env=env,
        stdout=upstream_log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = subprocess.Popen(
        ["make", "-o", ".venv/.installed", "run", f"PORT={port}"],
        cwd=ROOT,
        env=env,
        stdout=server_log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_http(f"http://127.0.0.1:{model_port}/_requests", upstream, upstream_log)
        _wait_http(f"http://127.0.0.1:{port}/healthz", server, server_log)
        yield {
            "port": port,
            "model_port": model_port,
            "var": var,
            "env": env,
            "log": server_log,
            "tmp": tmp_path,
        }
    finally:
        _stop(server)
        _stop(upstream)


def _run_blocks(served) -> list[str]:
    """Run every walkthrough block in order; returns each block's output."""
    env = {
        **served["env"],
        "INFERIA": f"http://127.0.0.1:{served['port']}",
        "MODEL_HOST": f"127.0.0.1:{served['model_port']}",
        "PATH": f"{Path(sys.executable).parent}:{served['env'].get('PATH', '')}",
    }
    state = served["tmp"] / "shell-state.sh"
    state.write_text("")
    outputs = []
    blocks = walkthrough_blocks((ROOT / "README.md").read_text())
    for index, (lang, body) in enumerate(blocks):
        if lang == "sh":
            script = (
                f"set -euo pipefail\nsource {shlex.quote(str(state))}\n{body}\n"
                f"export -p > {shlex.quote(str(state))}\n"
            )
            command = ["bash", "-c", script]
        elif lang == "python":
            # The variables the shell blocks exported (INFERIA_KEY) reach Python too.
            script = f"source {shlex.quote(str(state))}\nexec {shlex.quote(sys.executable)} -"
            command = ["bash", "-c", script]
        else:
            pytest.fail(f"walkthrough block {index} has an unknown language {lang!r}")
        result = subprocess.run(  # noqa: S603
            command,
            input=body if lang == "python" else None,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, (
            f"block {index} ({lang}) failed:\n{body}\n--- stdout\n{result.stdout}"
            f"\n--- stderr\n{result.stderr}\n--- server\n{served['log'].read_text()[-3000:]}"
        )
        outputs.append(result.stdout)
    return outputs


def _json_objects(text: str) -> list[dict]:
    """Each JSON object a block printed (curl prints them back to back)."""
    decoder, objects, index = json.JSONDecoder(), [], 0
    while (start := text.find("{", index)) != -1:
        try:
            value, index = decoder.raw_decode(text, start)
        except ValueError:
            index = start + 1
            continue
        objects.append(value)
    return objects


def test_readme_marks_the_whole_first_session():
    blocks = walkthrough_blocks((ROOT / "README.md").read_text())
    text = "\n".join(body for _, body in blocks)
    assert [lang for lang, _ in blocks].count("python") >= 1
    for step in (
        "/api/v1/auth/login",
        "/api/v1/orgs ",
        "allowed_private_hosts",
        "/provider-accounts",
        "/access-rules",
        "/api-keys",
        "OpenAI(",
        "stream=True",
        "/audit-logs",
        "/invitations",
    ):
        assert step in text, step


def test_the_readme_walkthrough_runs_against_make_run(served):
    outputs = _run_blocks(served)
    login, org, provider, grant_and_key, sdk, stream, audit, invite = outputs

    me = _json_objects(login)[-1]
    assert me["user"]["username"] == "demo"
    assert _json_objects(org)[-1]["slug"] == "acme"
    patched, account = _json_objects(provider)[-2:]
    assert patched["settings"]["allowed_private_hosts"] == [f"127.0.0.1:{served['model_port']}"]
    assert account["name"] == "vllm-local", account
    rule, models = _json_objects(grant_and_key)[-2:]
    assert rule["models"] == ["vllm-local/*"] and rule["users"] == ["demo"]
    assert [m["id"] for m in models["data"]] == ["vllm-local/meta-llama/Llama-3.1-8B-Instruct"]

    # The fake upstream answers "Hello from the fake upstream." (chat and stream alike).
    assert "answer: Hello from the fake upstream." in sdk, sdk
    assert re.search(r"\| tokens: [1-9]\d*", sdk), sdk
    assert "stream: Hello from the fake upstream." in sdk, sdk
    events = [line for line in stream.splitlines() if line.startswith("data: ")]
    assert len(events) > 2 and events[-1] == "data: [DONE]", stream

    records = _json_objects(audit)[0]["results"]
    actions = {record["action"] for record in records}
    assert {"inference:run", "inference:stream"} <= actions, records
    run = next(record for record in records if record["action"] == "inference:run")
    assert run["model"] == "vllm-local/meta-llama/Llama-3.1-8B-Instruct", run
    secret = re.search(r'INFERIA_KEY="([^"]+)"', (served["tmp"] / "shell-state.sh").read_text())
    assert secret and secret.group(1).startswith("ifr_")
    assert secret.group(1) not in audit  # the key is named by its public prefix only
    assert run["prompt_tokens"] > 0 and run["completion_tokens"] > 0, run

    invitation = _json_objects(invite)[-1]
    assert invitation["status"] == "pending", invitation
    # The worker mails the link; it points at the port make run serves on.
    mail_dir = served["var"] / "mail"
    deadline, body = time.monotonic() + 60, ""
    while time.monotonic() < deadline and "/invitations/" not in body:
        body = "".join(p.read_text() for p in mail_dir.glob("*")) if mail_dir.exists() else ""
        time.sleep(0.2)
    links = re.findall(r"https?://[^\s/]+/(?:api/v1/)?invitations/\S+", body)
    assert links, f"no invitation mail in {mail_dir}:\n{served['log'].read_text()[-3000:]}"
    assert all(link.startswith(f"http://127.0.0.1:{served['port']}/") for link in links), links
