"""The Dockerfile's runtime stage, played without Docker (no base image can be pulled
here): its COPY lines, its collectstatic RUN line and its ENV, then its CMD and
HEALTHCHECK against a read-only copy of the tree, as the image runs it.

The paths of the image (``/app``) are mapped onto a temporary directory; the
Python is this test run's (the image installs the same pinned dependencies)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import require_or_skip
from tests.deploy.conftest import ROOT
from tests.deploy.test_dockerfile import _stages

IMAGE_ROOT = "/app"


def _runtime() -> dict:
    stage = _stages()[-1]
    env: dict[str, str] = {}
    for instruction, args in stage:
        if instruction == "ENV":
            env.update(part.split("=", 1) for part in shlex.split(args))
    copies = [
        [part for part in shlex.split(args) if not part.startswith("--")][0]
        for instruction, args in stage
        if instruction == "COPY"
    ]
    (collect,) = [a for i, a in stage if i == "RUN" and "collectstatic" in a]
    (cmd,) = [json.loads(a) for i, a in stage if i == "CMD"]
    (health,) = [a for i, a in stage if i == "HEALTHCHECK"]
    return {
        "env": env,
        "copies": copies,
        "collect": collect,
        "cmd": cmd,
        "health": json.loads(health[health.index("CMD") + 3 :].strip()),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _read_only(path: Path) -> None:
    for entry in [path, *path.rglob("*")]:
        mode = entry.stat().st_mode
        entry.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


READ_ONLY_MOUNT = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'


def _read_only_tree(app: Path) -> list[str]:
    """Make ``app`` read-only for the server, as the image's root file system is: for
    an unprivileged user by its modes; for root (which ignores modes: CI) by a
    read-only bind mount in a mount namespace of the server's own (answers the
    command prefix that sets it up)."""
    if os.geteuid() != 0:
        _read_only(app)
        return []
    wrapper = ["unshare", "--mount", "sh", "-c", READ_ONLY_MOUNT, str(app)]
    probe = subprocess.run([*wrapper, "touch", str(app / "probe")], capture_output=True)
    if probe.returncode == 0 or not shutil.which("unshare"):
        (app / "probe").unlink(missing_ok=True)
        require_or_skip("cannot mount the tree read-only (unshare --mount is not permitted)")
    assert b"Read-only file system" in probe.stderr, probe.stderr
    return wrapper


def _writable(path: Path) -> None:
    for entry in [path, *path.rglob("*")]:
        entry.chmod(entry.stat().st_mode | stat.S_IWUSR)


@pytest.fixture(scope="module")
def image():
    """/app as the runtime stage leaves it (answers the app dir and the image's env)."""
    runtime = _runtime()
    tmp_path = Path(tempfile.mkdtemp(prefix="inferia-image-"))
    app = tmp_path / "app"
    app.mkdir()
    for source in runtime["copies"]:
        if (ROOT / source).is_dir():
            shutil.copytree(
                ROOT / source, app / source, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(ROOT / source, app / source)
    bin_dir = Path(sys.executable).parent
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path / "tmp"),
        **{k: v.replace(IMAGE_ROOT, str(app)) for k, v in runtime["env"].items()},
    }
    (tmp_path / "tmp").mkdir()
    build = subprocess.run(
        ["bash", "-o", "pipefail", "-c", runtime["collect"].replace(IMAGE_ROOT, str(app))],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    yield app, env, runtime
    _writable(app)
    shutil.rmtree(tmp_path)


def test_collectstatic_at_build_leaves_static_files_and_no_secret(image):
    app, _env, _runtime_ = image
    var = app / "var"
    assert sorted(p.name for p in var.iterdir()) == ["static"]
    manifest = json.loads((var / "static" / "staticfiles.json").read_text())
    assert manifest["paths"], "collectstatic wrote an empty manifest"
    names = {p.name for p in app.rglob("*")}
    assert not names & {"secret_key", "jwt_signing_key", "master_keys", "inferia.sqlite3"}


def test_the_command_serves_health_and_static_from_a_read_only_tree(image):
    app, env, runtime = image
    read_only = _read_only_tree(app)
    port = _free_port()
    cmd = runtime["cmd"]
    assert cmd[0] == "uvicorn"
    args = cmd[1:]
    args[args.index("--port") + 1] = str(port)
    args[args.index("--host") + 1] = "127.0.0.1"
    serve_env = {
        **env,
        "PORT": str(port),
        "INFERIA_SECRET_KEY": "s" * 50,
        "INFERIA_JWT_SIGNING_KEY": "j" * 64,
        "INFERIA_MASTER_KEYS": "k1:" + "A" * 43 + "=",
        "INFERIA_ALLOWED_HOSTS": "inferia.example.com,localhost",
        "INFERIA_PRINT_CONFIG": "false",
        # A deployment's services, here unreachable: liveness needs neither.
        "DATABASE_URL": "postgres://inferia@127.0.0.1:9/inferia",
        "REDIS_URL": "redis://127.0.0.1:9/0",
    }
    server = subprocess.Popen(
        [*read_only, sys.executable, "-m", "uvicorn", *args],
        cwd=app,
        env=serve_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the image's command did not start"
                time.sleep(0.1)
        # The HEALTHCHECK, as Docker runs it in the container.
        health = runtime["health"]
        assert health[0] == "python"
        check = subprocess.run(
            [sys.executable, *health[1:]], env=serve_env, capture_output=True, text=True
        )
        assert check.returncode == 0, check.stderr
        # Whitenoise serves the collected, hashed files (production storage).
        manifest = json.loads((app / "var" / "static" / "staticfiles.json").read_text())
        hashed = next(iter(manifest["paths"].values()))
        static = httpx.get(
            f"http://127.0.0.1:{port}/static/{hashed}",
            headers={"Host": "inferia.example.com", "X-Forwarded-Proto": "https"},
            timeout=10,
        )
        assert static.status_code == 200, static.status_code
        # Readiness names what is down, in the error envelope.
        ready = httpx.get(
            f"http://127.0.0.1:{port}/readyz", headers={"Host": "inferia.example.com"}, timeout=30
        )
        assert ready.status_code == 503, ready.text
        assert ready.json()["error"]["details"]["database"] == "unavailable"
        # A host that is not allowed is refused, the probe's Host is why it works.
        refused = httpx.get(
            f"http://127.0.0.1:{port}/healthz", headers={"Host": "10.0.0.7:8000"}, timeout=10
        )
        assert refused.status_code == 400
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        output = server.stdout.read()
        server.stdout.close()
    # Nothing tried to write to the tree (the refused Host and the unreachable
    # database are logged, as they should be).
    assert "Read-only file system" not in output and "Permission denied" not in output, output
