"""Real processes for the fault-injection suite: Redis (one server, or a three-master
cluster), an own PostgreSQL cluster when a scenario restarts it, the fake upstream,
the web process, the Celery worker and beat (the command lines ``serve`` runs), and
the load generator. Every process gets its own session, so ``kill9`` takes the
whole process (a worker with its pool children) down at once, as an OOM kill of
its container would.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from orgs.management.commands.serve import process_commands

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_cluster_port() -> int:
    """A free port whose cluster bus port (10,000 above, at most 65535) is free too."""
    import random

    for _ in range(200):
        port = random.randint(20_000, 45_000)  # noqa: S311 - a port, not a secret
        try:
            for candidate in (port, port + 10_000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def fault_seconds() -> float:
    """How long each scenario's load runs: ``INFERIA_FAULTS_SECONDS`` (60), never less
    than 60 in CI."""
    seconds = float(os.environ.get("INFERIA_FAULTS_SECONDS", "60"))
    return max(60.0, seconds) if os.environ.get("CI") else seconds


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 - not up yet
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Process:
    """One child process (its own session), its output in ``<workdir>/<name>.log``."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name, self.cmd, self.env = name, cmd, env
        self.log = workdir / f"{name}.log"
        self.popen: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> Process:
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts}: {time.time():.3f}\n".encode())
            self.popen = subprocess.Popen(
                self.cmd,
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9(self) -> float:
        """SIGKILL to the whole process group; returns when it was sent."""
        moment = time.time()
        if self.alive():
            os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)  # type: ignore[union-attr]
        return moment

    def stop(self, timeout: float = 20) -> None:
        stop_all([self], timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for_output(self, text: str, timeout: float = 60) -> None:
        """Wait until the current run (since the last start) printed ``text``."""

        def printed() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.name} exited:\n{self.output()[-3000:]}")
            run = self.output().rsplit(f"--- start {self.starts}:", 1)[-1]
            return text in run

        deadline = time.monotonic() + timeout
        while not printed():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name} never printed {text!r}:\n{self.output()[-3000:]}"
                )
            time.sleep(0.1)


def stop_all(processes: list[Process], timeout: float = 20) -> None:
    """SIGTERM to every one at once (graceful: uvicorn drains, Celery warm-shuts down,
    Redis syncs its AOF), then wait; SIGKILL what is left after ``timeout``."""
    alive = [process for process in processes if process.alive()]
    for process in alive:
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in alive:
        assert process.popen is not None
        try:
            process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.popen.wait(timeout=10)


# --- Redis, by topology -------------------------------------------------------------

REDIS_PERSISTENCE = [
    # The documented production setting (README "Running in production").
    "--appendonly",
    "yes",
    "--appendfsync",
    "everysec",
    "--save",
    "",
    "--maxmemory-policy",
    "noeviction",
]


class RedisNode:
    def __init__(self, workdir: Path, name: str, extra: list[str] | None = None) -> None:
        self.port = free_cluster_port() if extra else free_port()
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--daemonize",
            "no",
            *REDIS_PERSISTENCE,
            *(extra or []),
        ]
        self.process = Process(name, cmd, dict(os.environ), workdir)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=2)

    def start(self) -> None:
        self.process.start()
        wait_until(lambda: self.client().ping(), 20, f"redis on {self.port}")

    def stop(self) -> None:
        """Graceful: SIGTERM (Redis writes and fsyncs the AOF, then exits)."""
        self.process.stop()


class SingleRedis:
    """One Redis server with AOF ``everysec``."""

    topology = "single"

    def __init__(self, workdir: Path) -> None:
        self.nodes = [RedisNode(workdir, "redis")]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def client(self) -> redis.Redis:
        return self.nodes[0].client()

    # Celery's broker: None is REDIS_URL itself (kombu speaks plain Redis only).
    broker_url: str | None = None

    def servers(self) -> list[RedisNode]:
        """Every redis-server of the topology: what a Redis fault stops or kills."""
        return self.nodes

    def start(self) -> None:
        for node in self.servers():
            node.start()

    def stop(self) -> None:
        stop_all([node.process for node in self.servers()])

    def kill9(self) -> float:
        return min(node.process.kill9() for node in self.servers())


class ClusterRedis(SingleRedis):
    """Three masters (``--cluster-enabled yes``, AOF ``everysec``) on free ports."""

    topology = "cluster"

    def __init__(self, workdir: Path) -> None:
        self.nodes = [
            RedisNode(
                workdir,
                f"redis-{i}",
                ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"],
            )
            for i in range(3)
        ]
        # kombu cannot use a cluster: the broker is a plain Redis next to it
        # (INFERIA_BROKER_URL), stopped and killed with the cluster in a Redis fault.
        self.broker = RedisNode(workdir, "redis-broker")
        self.broker_url = f"redis://127.0.0.1:{self.broker.port}/0"
        self.created = False

    def servers(self) -> list[RedisNode]:
        return [*self.nodes, self.broker]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"redis+cluster://{hosts}/0"

    def client(self) -> redis.Redis:
        from redis.cluster import RedisCluster

        return RedisCluster(host="127.0.0.1", port=self.nodes[0].port)  # type: ignore[return-value]

    def start(self) -> None:
        super().start()
        if not self.created:
            subprocess.run(
                [
                    shutil.which("redis-cli") or "redis-cli",
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{node.port}" for node in self.nodes),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )
            self.created = True

        def cluster_ok() -> bool:
            info = self.nodes[0].client().execute_command("CLUSTER INFO")
            if isinstance(info, dict):  # redis-py parses the reply
                return info.get("cluster_state") == "ok"
            return b"cluster_state:ok" in info

        wait_until(cluster_ok, 30, "the cluster to be ok")


def make_redis(topology: str, workdir: Path) -> SingleRedis:
    return {"single": SingleRedis, "cluster": ClusterRedis}[topology](workdir)


def redis_topologies() -> list[str]:
    """``single``; with ``INFERIA_FAULTS_REDIS=cluster``, the cluster instead."""
    chosen = os.environ.get("INFERIA_FAULTS_REDIS", "single")
    if chosen not in ("single", "cluster"):
        raise ValueError(f"INFERIA_FAULTS_REDIS must be single or cluster, not {chosen!r}")
    return [chosen]


# --- an own PostgreSQL cluster (restarted by a scenario) ----------------------------


def postgres_bin() -> Path | None:
    """PostgreSQL's programs for an own cluster. Knowledge bases need pgvector in it, so
    ``INFERIA_PG_BIN`` first, then the PostgreSQL with pgvector that ``.ci/pgvector``
    installs into ``.tools/pgserver``, then ``pg_ctl`` on the PATH or Debian's newest."""
    if os.environ.get("INFERIA_PG_BIN"):
        return Path(os.environ["INFERIA_PG_BIN"])
    root = Path(__file__).resolve().parents[2]
    bundled = sorted(
        root.glob(".tools/pgserver/lib/python3*/site-packages/pgserver/pginstall/bin/pg_ctl")
    )
    if bundled:
        return bundled[-1].parent
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return candidates[-1].parent if candidates else None


class OwnPostgres:
    """``initdb`` in a folder of its own, on a free port; as ``postgres`` when root
    (initdb refuses root)."""

    def __init__(self, workdir: Path, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.base = workdir / "pg"
        self.data = self.base / "data"
        self.log = self.base / "server.log"

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run(
            [*prefix, *cmd], check=check, capture_output=True, text=True, timeout=120
        )

    def init(self) -> None:
        self.base.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
            for parent in self.base.parents:  # the folders above must be traversable
                if parent == Path(parent.anchor) or parent.stat().st_mode & 0o001:
                    break
                parent.chmod(parent.stat().st_mode | 0o011)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def stop_quietly(self) -> None:
        if self.data.exists():
            self._run(
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "stop",
                check=False,
            )

    def url(self, name: str = "inferia") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')


# --- the stack ----------------------------------------------------------------------


@dataclass
class Stack:
    workdir: Path
    redis: SingleRedis
    database_url: str
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, Process] = field(default_factory=dict)
    web_port: int = 0
    upstream_port: int = 0

    @classmethod
    def build(cls, workdir: Path, redis_server: SingleRedis, database_url: str, **extra_env):
        stack = cls(workdir=workdir, redis=redis_server, database_url=database_url)
        stack.web_port, stack.upstream_port = free_port(), free_port()
        var = workdir / "var"
        var.mkdir(mode=0o700, exist_ok=True)
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PYTEST_", "INFERIA_", "DJANGO_", "CELERY_"))
            and k not in ("DATABASE_URL", "REDIS_URL", "PORT")
        }
        stack.env = {
            **inherited,
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "inferia.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_server.url,
            **({"INFERIA_BROKER_URL": redis_server.broker_url} if redis_server.broker_url else {}),
            "INFERIA_VAR_DIR": str(var),
            "INFERIA_PRINT_CONFIG": "0",
            "INFERIA_SECRET_KEY": secrets.token_urlsafe(48),
            "INFERIA_JWT_SIGNING_KEY": secrets.token_urlsafe(64),
            "INFERIA_MASTER_KEYS": "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
            "INFERIA_ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
            # A stalled upstream is a 504 after this long (the default is 120 s).
            "INFERIA_GATEWAY_READ_TIMEOUT": "2",
            "PORT": str(stack.web_port),
            **extra_env,
        }
        commands = process_commands(
            host="127.0.0.1", port=stack.web_port, schedule=str(var / "celerybeat-schedule")
        )
        commands["upstream"] = [
            PY,
            "-m",
            "gateway.fake_upstream",
            "--port",
            str(stack.upstream_port),
            "--no-record",
        ]
        for name, cmd in commands.items():
            stack.processes[name] = Process(name, cmd, stack.env, workdir)
        return stack

    @property
    def web(self) -> Process:
        return self.processes["web"]

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def upstream_url(self) -> str:
        return f"http://127.0.0.1:{self.upstream_port}"

    def start(self, *names: str) -> None:
        """Start the named processes (all by default) together, then wait for each."""
        names = names or tuple(self.processes)
        for name in names:
            self.processes[name].start()
        for name in names:
            self.wait_ready(name)

    def wait_ready(self, name: str) -> None:
        process = self.processes[name]
        if name == "web":
            wait_until(
                lambda: process.alive()
                and httpx.get(f"{self.web_url}/healthz", timeout=2).status_code == 200,
                60,
                f"the web process:\n{process.output()[-2000:]}",
            )
        elif name == "upstream":
            wait_until(
                lambda: socket.create_connection(("127.0.0.1", self.upstream_port), 1).close()
                or True,
                30,
                "the fake upstream",
            )
        elif name == "worker":
            process.wait_for_output("ready.", 90)
        elif name == "beat":
            process.wait_for_output("beat: Starting", 60)

    def restart(self, name: str) -> None:
        self.processes[name].start()
        self.wait_ready(name)

    def stop(self) -> None:
        # The fake upstream may hold stalled calls (minutes long): it is a test double,
        # killed rather than drained.
        self.processes["upstream"].kill9()
        stop_all(list(self.processes.values()))

    def ctl(self, *args: str, stdin: Any = None, timeout: float = 300) -> dict:
        """Run stackctl.py with the stack's environment; its JSON answer."""
        done = subprocess.run(
            [PY, str(HERE / "stackctl.py"), *args],
            env=self.env,
            cwd=ROOT,
            input=json.dumps(stdin) if stdin is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"stackctl {args[0]} failed:\n{done.stderr[-4000:]}"
        return json.loads(done.stdout.strip().splitlines()[-1])

    def migrate(self) -> None:
        done = subprocess.run(
            [PY, "manage.py", "migrate", "--noinput"],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-4000:]

    def loadgen(self, name: str, mix: list[dict], seconds: float, concurrency: int = 4) -> LoadGen:
        return LoadGen(self, name, mix, seconds, concurrency).start()

    def open_sockets(self, name: str = "web") -> int:
        """Sockets the process holds open (its /proc fd table)."""
        fd_dir = Path(f"/proc/{self.processes[name].pid}/fd")
        count = 0
        for entry in fd_dir.iterdir():
            try:
                count += os.readlink(entry).startswith("socket:")
            except OSError:
                continue  # closed meanwhile
        return count

    def connections_to(self, ports: set[int], name: str = "web") -> int:
        """The process's TCP sockets (any state but listening) to one of ``ports``."""
        pid = self.processes[name].pid
        inodes = set()
        for entry in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(entry)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        count = 0
        for table in ("tcp", "tcp6"):
            path = Path(f"/proc/{pid}/net/{table}")
            if not path.exists():
                continue
            for line in path.read_text().splitlines()[1:]:
                parts = line.split()
                remote_port = int(parts[2].rsplit(":", 1)[1], 16)
                if parts[3] != "0A" and remote_port in ports and parts[9] in inodes:
                    count += 1
        return count


class LoadGen:
    """``tests/faults/loadgen.py`` as a process; ``lines()`` is its log of answers."""

    def __init__(
        self, stack: Stack, name: str, mix: list[dict], seconds: float, concurrency: int
    ) -> None:
        self.stack, self.name, self.seconds = stack, name, seconds
        self.log = stack.workdir / f"answers-{name}.jsonl"
        mix_file = stack.workdir / f"mix-{name}.json"
        mix_file.write_text(json.dumps(mix))
        self.cmd = [
            PY,
            str(HERE / "loadgen.py"),
            "--base",
            stack.web_url,
            "--seconds",
            str(seconds),
            "--concurrency",
            str(concurrency),
            "--prefix",
            f"{stack.workdir.name}-{name}",
            "--log",
            str(self.log),
            "--mix",
            str(mix_file),
        ]
        self.process = Process(f"loadgen-{name}", self.cmd, stack.env, stack.workdir)
        self.started_at = 0.0

    def start(self) -> LoadGen:
        self.started_at = time.time()
        self.process.start()
        return self

    def sleep_until(self, offset: float) -> None:
        """Sleep until ``offset`` seconds after the load started."""
        time.sleep(max(0.0, self.started_at + offset - time.time()))

    def wait(self) -> list[dict]:
        assert self.process.popen is not None
        self.process.popen.wait(timeout=self.seconds + 120)
        assert self.process.popen.returncode == 0, self.process.output()[-3000:]
        return self.lines()

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
