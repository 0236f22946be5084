"""The local launcher starts the repository's fake upstream as a real process and stops
it: a chat completion over HTTP in between, the port closed and the pid gone after, and
a pid that is no longer its process left alone."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from deployments import launchers
from deployments.launchers import local
from inferia.errors import ServiceUnavailable, ValidationError
from tests.ports import port_range, worker_slice


@pytest.fixture
def launcher(settings, tmp_path):
    settings.INFERIA_LAUNCHERS = ["local", "kubernetes"]
    settings.INFERIA_LAUNCHER_DIR = tmp_path / "launchers"
    ports = port_range(None)
    if ports is not None:  # a shared machine: stay in this run's ports
        mine = worker_slice(ports)
        settings.INFERIA_LAUNCHER_LOCAL_PORTS = f"{mine.start}-{mine.stop - 1}"
    else:
        settings.INFERIA_LAUNCHER_LOCAL_PORTS = ""
    return launchers.get("local")


@pytest.fixture
def started(launcher):
    """Start a deployment's process; stop whatever is left at the end, even on failure."""
    made: list[tuple[str, dict]] = []

    def start(spec: dict | None = None, deployment_id: str | None = None) -> tuple[str, dict]:
        deployment_id = deployment_id or str(uuid.uuid4())
        state = launcher.start(deployment_id, spec or {"kind": "local", "model": "demo-model"})
        made.append((deployment_id, state))
        return deployment_id, state

    yield start
    for deployment_id, state in made:
        launcher.stop(deployment_id, state)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def chat(base_url: str) -> httpx.Response:
    return httpx.post(
        base_url + "/chat/completions",
        json={"model": "demo-model", "messages": [{"role": "user", "content": "Hi"}]},
        timeout=10,
        trust_env=False,
    )


def test_start_serves_a_chat_completion_and_stop_ends_the_process(launcher, started, settings):
    deployment_id, state = started()
    assert state["base_url"] == f"http://127.0.0.1:{state['port']}/v1"
    assert state["kind"] == "local" and state["model"] == "demo-model" and state["started_at"]
    if settings.INFERIA_LAUNCHER_LOCAL_PORTS:
        low, high = map(int, settings.INFERIA_LAUNCHER_LOCAL_PORTS.split("-"))
        assert low <= state["port"] <= high
    assert launcher.status(state) == "running"
    assert str(state["pid"]) in launcher.describe(state)

    response = chat(state["base_url"])
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] == "Hello from the fake upstream."
    assert answer["usage"]["total_tokens"] > 0

    # Its own session (process group), a log, a record, and none of our environment.
    assert os.getpgid(state["pid"]) == state["pid"]
    folder = Path(settings.INFERIA_LAUNCHER_DIR) / "local"
    assert (folder / f"{deployment_id}.json").exists()
    assert (folder / f"{deployment_id}.log").exists()
    environ = Path(f"/proc/{state['pid']}/environ").read_bytes().split(b"\0")
    names = {item.partition(b"=")[0].decode() for item in environ if item}
    assert names == {"PYTHONPATH", "PYTHONUNBUFFERED"}

    launcher.stop(deployment_id, state)
    assert not pid_exists(state["pid"])
    assert not port_open(state["port"])
    assert launcher.status(state) == "stopped"
    assert not (folder / f"{deployment_id}.json").exists()
    with pytest.raises(httpx.ConnectError):
        chat(state["base_url"])

    launcher.stop(deployment_id, state)  # twice: nothing left to do, no error
    launcher.stop(deployment_id, {})
    assert launcher.status(state) == "stopped"


def test_stop_leaves_alone_a_pid_that_is_not_its_process(launcher):
    # The record says pid N; by now the system gave N to something else (here: sleep).
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        deployment_id = str(uuid.uuid4())
        state = {
            "kind": "local",
            "deployment_id": deployment_id,
            "base_url": "http://127.0.0.1:25999/v1",
            "pid": sleeper.pid,
            "port": 25999,
            "process_start": None,
        }
        assert launcher.status(state) == "stopped"  # not ours, so not "running"
        launcher.stop(deployment_id, state)
        time.sleep(0.2)
        assert sleeper.poll() is None, "the launcher signalled a process it did not start"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stop_leaves_alone_a_fake_upstream_started_at_another_time(launcher, started):
    # Same command line, but not the process the state was written for (its start time
    # differs): a pid reused by another fake upstream is not ours either.
    deployment_id, state = started()
    other = dict(state, process_start=state["process_start"] - 1)
    launcher.stop(str(uuid.uuid4()), other)
    assert pid_exists(state["pid"]) and port_open(state["port"])
    # That state's process is gone as far as the launcher can tell, and was never stopped.
    assert launcher.status(other) == "failed"
    assert launcher.status(state) == "running"


def test_start_twice_keeps_one_process(launcher, started):
    deployment_id, state = started()
    again = launcher.start(deployment_id, {"kind": "local", "model": "demo-model"})
    assert again["pid"] == state["pid"] and again["port"] == state["port"]


def test_a_process_that_dies_on_its_own_is_failed(launcher, started):
    deployment_id, state = started()
    os.killpg(state["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while launcher.status(state) == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert launcher.status(state) == "failed"
    assert "exited on its own" in launcher.describe(state)
    launcher.stop(deployment_id, state)
    assert launcher.status(state) == "stopped"


def test_the_given_port_is_used(launcher, started):
    from tests.ports import free_port

    port = free_port(range(25000, 26000))
    deployment_id, state = started({"kind": "local", "model": "demo-model", "port": port})
    assert state["port"] == port and state["base_url"] == f"http://127.0.0.1:{port}/v1"
    assert chat(state["base_url"]).status_code == 200


def test_a_given_port_in_use_is_refused(launcher, started):
    from tests.ports import free_port

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", free_port(range(25000, 26000))))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ValidationError) as caught:
            launcher.start(
                str(uuid.uuid4()), {"kind": "local", "model": "demo-model", "port": port}
            )
    assert caught.value.details == {"launcher.port": [f"Port {port} is in use on this server."]}


def test_a_process_that_never_answers_is_not_left_running(launcher, settings):
    # No time to answer: every attempt fails; each process is stopped before the error.
    settings.INFERIA_LAUNCHER_START_SECONDS = 0.0
    deployment_id = str(uuid.uuid4())
    with pytest.raises(ServiceUnavailable):
        launcher.start(deployment_id, {"kind": "local", "model": "demo-model"})
    assert local._children == {}
    folder = Path(settings.INFERIA_LAUNCHER_DIR) / "local"
    assert not (folder / f"{deployment_id}.json").exists()


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"kind": "local"}, "launcher.model", "Required: a model name"),
        ({"kind": "local", "model": "a b"}, "launcher.model", "Required: a model name"),
        ({"kind": "local", "model": "m", "gpu": 1}, "launcher.gpu", "Unknown field."),
        ({"kind": "local", "model": "m", "port": 80}, "launcher.port", "from 1024 to 65535"),
        ({"kind": "local", "model": "m", "port": "9000"}, "launcher.port", "an integer"),
        ({"kind": "local", "model": "m", "port": True}, "launcher.port", "an integer"),
    ],
)
def test_invalid_specs_name_the_field(launcher, spec, field, message):
    with pytest.raises(ValidationError) as caught:
        launcher.validate(spec)
    assert message in " ".join(caught.value.details[field])
    with pytest.raises(ValidationError):  # start validates too, and starts nothing
        launcher.start(str(uuid.uuid4()), spec)
    assert local._children == {}


def test_a_port_outside_the_configured_range_is_refused(launcher, settings):
    settings.INFERIA_LAUNCHER_LOCAL_PORTS = "25100-25199"
    with pytest.raises(ValidationError) as caught:
        launcher.validate({"kind": "local", "model": "m", "port": 25200})
    assert caught.value.details == {
        "launcher.port": [
            "Must be from 25100 to 25199 (the ports of this server's local launcher)."
        ]
    }
    assert launcher.validate({"kind": "local", "model": "m", "port": 25150}) == {
        "kind": "local",
        "model": "m",
        "port": 25150,
    }


def test_a_deployment_id_is_never_a_path(launcher):
    with pytest.raises(ValueError):
        launcher.start("../../etc", {"kind": "local", "model": "m"})
    with pytest.raises(ValueError):
        launcher.stop("a/b", {})
