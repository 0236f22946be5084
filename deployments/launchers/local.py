"""The local launcher: the repository's fake upstream, started as a process on this server.

For demos and tests: ``deployment:create`` with ``{"kind": "local", "model": "demo"}``
really starts something (``python -m gateway.fake_upstream`` on 127.0.0.1, an
OpenAI-compatible server) and ``deployment:delete`` really stops it. Only servers whose
``INFERIA_LAUNCHERS`` lists ``local`` offer it (embedded and debug runs by default; the
production profile refuses it): a production server never spawns processes on request.

Spec: ``{"kind": "local", "model": "<the model name the endpoint serves>", "port": N}``
(``port`` optional: else a free one, from ``INFERIA_LAUNCHER_LOCAL_PORTS`` when set).

Each started process leads a session of its own (its own process group, so a signal to
the web server's group does not reach it and ``stop`` ends all it started), gets a clean
environment (no secret of this server's), logs to ``INFERIA_LAUNCHER_DIR/local/<id>.log``,
and has a record beside it (``<id>.json``: pid, port, the process's start time). ``stop``
signals a pid only after checking in /proc that it is still that process (its command
line and start time): a pid the system has since handed to another process is left
alone. Linux only (/proc); elsewhere nothing is ever signalled.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
from django.conf import settings

from deployments.launchers.common import (
    check_deployment_id,
    check_mapping,
    check_model,
    integer,
    raise_if,
    state_dir,
    unknown_fields,
)
from inferia.errors import ServiceUnavailable, ValidationError

logger = logging.getLogger(__name__)

KIND = "local"
HOST = "127.0.0.1"
MODULE = "gateway.fake_upstream"
STOP_GRACE_SECONDS = 5.0
_FIELDS = {"kind", "model", "port"}
_START_ATTEMPTS = 3  # a free port picked here may be taken before the process binds it

# The processes this one started, so that it reaps them (a zombie keeps its /proc entry).
_children: dict[int, subprocess.Popen] = {}
_lock = threading.RLock()


def _argv(port: int) -> list[str]:
    # --no-record: a long-running demo endpoint keeps no copy of every request.
    return [sys.executable, "-m", MODULE, "--host", HOST, "--port", str(port), "--no-record"]


def _port_range() -> range | None:
    value = settings.INFERIA_LAUNCHER_LOCAL_PORTS
    if not value:
        return None
    low, _, high = value.partition("-")
    return range(int(low), int(high) + 1)


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        # As uvicorn binds: connections left in TIME_WAIT do not hold the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    ports = _port_range()
    if ports is None:
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            return sock.getsockname()[1]
    offset = random.randrange(len(ports))  # noqa: S311  (spreads concurrent starts)
    for index in range(len(ports)):
        port = ports[(offset + index) % len(ports)]
        if _bindable(port):
            return port
    raise ServiceUnavailable(
        "No free port for the local launcher", details={"launcher.port": ["All ports are in use."]}
    )


# --- /proc: is this pid still the process we started? ---------------------------------


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of a pid."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()  # after "pid (comm) "
    return fields[0], int(fields[19])


def _alive(pid: int) -> bool:
    with _lock:
        child = _children.get(pid)
        if child is not None:
            if child.poll() is None:
                return True
            del _children[pid]  # reaped
            return False
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _is_ours(state: dict[str, Any]) -> bool:
    """Whether ``state``'s pid is alive and still the fake upstream started for it."""
    pid, port = state.get("pid"), state.get("port")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1 or not isinstance(port, int):
        return False
    expected = _argv(port)[1:]
    started = state.get("process_start")
    with _lock:
        child = _children.get(pid)
    if child is not None:
        # Our own child: its pid is not reused before we reap it, and /proc shows an
        # empty command line while it exits, so its Popen says what it runs.
        if child.poll() is not None or cast(list[str], child.args)[1:] != expected:
            return False
    elif not _alive(pid):
        return False
    else:
        cmdline = _cmdline(pid)
        if cmdline is None or cmdline[1 : 1 + len(expected)] != expected:
            return False
    stat = _stat(pid)
    return stat is not None and (started is None or stat[1] == started)


def _listens(pid: int, port: int) -> bool:
    """Whether ``pid`` itself holds the listening socket of ``port`` (not a stranger that
    took the port first and answers the readiness probe)."""
    try:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            if not os.path.exists(table):
                continue
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                local, state, inode = parts[1], parts[3], parts[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port and inode in inodes:
                    return True
    except (OSError, ValueError, IndexError):
        return False
    return False


# --- records ------------------------------------------------------------------------------


def _record_path(deployment_id: str) -> Path:
    return state_dir(KIND) / f"{check_deployment_id(deployment_id)}.json"


def _read_record(deployment_id: str) -> dict[str, Any]:
    try:
        value = json.loads(_record_path(deployment_id).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_record(deployment_id: str, state: dict[str, Any]) -> None:
    path = _record_path(deployment_id)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(state, handle)
    os.replace(temporary, path)


# --- processes ----------------------------------------------------------------------------


def _spawn(deployment_id: str, port: int) -> subprocess.Popen:
    log_path = state_dir(KIND) / f"{deployment_id}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(  # noqa: S603  (our own interpreter and module, no shell)
            _argv(port),
            cwd=settings.BASE_DIR,
            # Nothing of this server's environment (keys, database URL) reaches the child.
            env={"PYTHONPATH": str(settings.BASE_DIR), "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    with _lock:
        _children[process.pid] = process
    return process


def _wait_ready(process: subprocess.Popen, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    url = f"http://{HOST}:{port}/v1/models"
    with httpx.Client(trust_env=False, timeout=1.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                if client.get(url).status_code == 200 and _listens(process.pid, port):
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    return False


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return not _alive(pid)


def _signal_group(pid: int, signum: int) -> None:
    try:
        # start_new_session made the process the leader of its own group.
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _terminate(pid: int) -> None:
    """SIGTERM the process group, SIGKILL it after the grace period; reap our child."""
    _signal_group(pid, signal.SIGTERM)
    if not _wait_gone(pid, STOP_GRACE_SECONDS):
        logger.warning("local launcher: pid %s ignored SIGTERM; killing it", pid)
        _signal_group(pid, signal.SIGKILL)
        _wait_gone(pid, STOP_GRACE_SECONDS)
    with _lock:
        child = _children.pop(pid, None)
    if child is not None:
        try:
            child.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            logger.error("local launcher: pid %s did not exit after SIGKILL", pid)


class LocalLauncher:
    kind = KIND

    def validate(self, spec: dict[str, Any]) -> dict[str, Any]:
        spec = check_mapping(spec)
        errors: dict[str, list[str]] = {}
        unknown_fields(spec, _FIELDS, errors)
        if spec.get("kind", KIND) != KIND:
            errors["launcher.kind"] = [f"Must be {KIND!r}."]
        model = check_model(spec, errors)
        port = integer(spec, "port", errors, low=1024, high=65535, default=None)
        ports = _port_range()
        if port is not None and ports is not None and port not in ports:
            errors["launcher.port"] = [
                f"Must be from {ports.start} to {ports.stop - 1} (the ports of this server's "
                "local launcher)."
            ]
        raise_if(errors)
        normalized: dict[str, Any] = {"kind": KIND, "model": model}
        if port is not None:
            normalized["port"] = port
        return normalized

    def start(
        self,
        deployment_id: str,
        spec: dict[str, Any],
        *,
        deployment_name: str = "",
        org_slug: str = "",
    ) -> dict[str, Any]:
        deployment_id = check_deployment_id(deployment_id)
        spec = self.validate(spec)
        with _lock:
            running = _read_record(deployment_id)
            if running and _is_ours(running):
                return running  # started before (a retried task): one process per deployment
            chosen = spec.get("port")
            if chosen is not None and not _bindable(chosen):
                raise ValidationError(
                    "The launcher spec is invalid; nothing was started",
                    details={"launcher.port": [f"Port {chosen} is in use on this server."]},
                )
            for _attempt in range(1 if chosen is not None else _START_ATTEMPTS):
                port = chosen if chosen is not None else _free_port()
                process = _spawn(deployment_id, port)
                if _wait_ready(process, port, settings.INFERIA_LAUNCHER_START_SECONDS):
                    break
                logger.warning(
                    "local launcher: deployment %s: the process on port %s did not answer "
                    "(exit code %s); see %s",
                    deployment_id,
                    port,
                    process.poll(),
                    state_dir(KIND) / f"{deployment_id}.log",
                )
                _terminate(process.pid)
            else:
                raise ServiceUnavailable("The local launcher could not start the model's process")
            stat = _stat(process.pid)
            state = {
                "kind": KIND,
                "deployment_id": deployment_id,
                "model": spec["model"],
                "base_url": f"http://{HOST}:{port}/v1",
                "pid": process.pid,
                "port": port,
                "process_start": stat[1] if stat else None,
                "started_at": datetime.now(UTC).isoformat(),
            }
            _write_record(deployment_id, state)
            return state

    def stop(self, deployment_id: str, state: dict[str, Any]) -> None:
        deployment_id = check_deployment_id(deployment_id)
        with _lock:
            record = _read_record(deployment_id)
            for candidate in (state or {}, record):
                if _is_ours(candidate):
                    _terminate(candidate["pid"])
                elif isinstance(candidate.get("pid"), int) and _alive(candidate["pid"]):
                    logger.warning(
                        "local launcher: deployment %s: pid %s is no longer its process; "
                        "left alone",
                        deployment_id,
                        candidate["pid"],
                    )
            _record_path(deployment_id).unlink(missing_ok=True)

    def status(self, state: dict[str, Any]) -> str:
        if not state or not state.get("pid"):
            return "stopped"
        if _is_ours(state):
            return "running"
        # Gone: stopped by ``stop`` (which removes the record), else it died on its own.
        deployment_id = state.get("deployment_id")
        try:
            recorded = bool(deployment_id) and _record_path(str(deployment_id)).exists()
        except ValueError:
            recorded = False
        return "failed" if recorded else "stopped"

    def describe(self, state: dict[str, Any]) -> str:
        status = self.status(state)
        if status == "running":
            return f"A local process (pid {state['pid']}) serves {state.get('base_url')}."
        if status == "failed":
            return "The local process exited on its own; its log is on the server."
        return "Stopped."
