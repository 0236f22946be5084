"""Benchmark the gateway against the fake upstream, side by side with the direct path.

    .venv/bin/python bench/run.py                       # embedded (SQLite, no Redis)
    DATABASE_URL=postgres://... REDIS_URL=redis://.../8 .venv/bin/python bench/run.py
    LITELLM_BIN=/path/to/venv/bin/litellm .venv/bin/python bench/run.py   # plus LiteLLM

One run: the fake upstream on core 1, the gateway (uvicorn, one worker) on core
0, the load generator (wrk, else bench/loadgen.py) on core 1. Measures added
latency at concurrency 1, requests/s at saturation, added time to the first
streamed chunk, the gateway's resident memory, and latency as keys and rules
grow; prints one markdown table. See README.md, section Benchmark.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import nginx_upstream

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SERVER_CORE, LOAD_CORE = "0", "1"
PLAIN_BODY = {
    "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
    "max_tokens": 16,
}
ANSWER = b"Hello from the fake upstream."


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gateway_command(port: int, root: Path = ROOT) -> list[str]:
    """The gateway as ``manage.py serve`` starts it (``inferia/server.py`` of the checkout
    at ``root``), one worker; a revision from before that module: its literal options."""
    module = root / "inferia" / "server.py"
    if module.exists():
        spec = importlib.util.spec_from_file_location(f"serving_{abs(hash(root))}", module)
        serving = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(serving)
        return serving.uvicorn_command(PY, "127.0.0.1", port, "--log-level", "warning")
    command = [PY, "-m", "uvicorn", "inferia.asgi:application", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--no-access-log", "--lifespan", "on"]
    return [*command, "--log-level", "warning"]


def pinned(core: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", core, *command] if shutil.which("taskset") else command


class Server:
    """A child process with its output in a log file; stopped with SIGTERM (then SIGKILL)."""

    def __init__(
        self, name: str, command: list[str], env: dict, work: Path, port: int, cwd: Path = ROOT
    ) -> None:
        self.name, self.port = name, port
        self.log_path = work / f"{name}.log"
        self.handle = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=self.handle, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, path: str = "/", timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(
                        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
                    )
                    if sock.recv(64).startswith(b"HTTP/1.1 "):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(
            f"{self.name} did not start in {timeout}s: {self.log_path.read_text()[-2000:]}"
        )

    def preemptions(self) -> int:
        """Involuntary context switches so far: how often another process took the core."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("nonvoluntary_ctxt_switches:"):
                return int(line.split()[1])
        return 0

    def memory_kib(self) -> dict[str, int]:
        """VmRSS (resident now) and VmHWM (peak resident) from /proc."""
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0])
        return out

    def cpu_seconds(self) -> float:
        """CPU time of the process so far, from /proc: the nanoseconds each of its threads
        ran (``schedstat``), else user plus system time in clock ticks (10 ms)."""
        try:
            total = 0
            for task in Path(f"/proc/{self.pid}/task").iterdir():
                total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total / 1e9

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.handle.close()


@dataclass
class Target:
    name: str
    port: int
    path: str
    model: str
    token: str
    # Streamed calls: their own model and path (the nginx mock answers a path, not a body).
    stream_model: str = ""
    stream_path: str = ""

    def request(self, stream: bool = False) -> bytes:
        model = (self.stream_model or self.model) if stream else self.model
        path = (self.stream_path or self.path) if stream else self.path
        body = json.dumps(
            {"model": model, **PLAIN_BODY, **({"stream": True} if stream else {})}
        ).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Content-Type: application/json\r\nAuthorization: Bearer {self.token}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    def body(self) -> str:
        return json.dumps({"model": self.model, **PLAIN_BODY})


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="inferia-bench-"))
        self.servers: list[Server] = []
        self.env = self._env()

    # --- environment -----------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        env["INFERIA_PRINT_CONFIG"] = "0"
        env["DJANGO_SETTINGS_MODULE"] = "inferia.settings"
        env["PYTHONPATH"] = str(ROOT)
        env.setdefault("INFERIA_VAR_DIR", str(self.work / "var"))
        # A deployment (DATABASE_URL without debug) needs explicit secrets and hosts.
        env.setdefault("INFERIA_SECRET_KEY", secrets.token_urlsafe(50))
        env.setdefault("INFERIA_JWT_SIGNING_KEY", secrets.token_urlsafe(64))
        env.setdefault(
            "INFERIA_MASTER_KEYS", "k1:" + base64.b64encode(secrets.token_bytes(32)).decode()
        )
        env.setdefault("INFERIA_ALLOWED_HOSTS", "127.0.0.1,localhost")
        return env

    def mode(self) -> str:
        db = (
            "PostgreSQL"
            if self.env.get("DATABASE_URL", "").startswith("postgres")
            else (
                "SQLite (embedded)"
                if not self.env.get("DATABASE_URL")
                else self.env["DATABASE_URL"].split(":", 1)[0]
            )
        )
        cache = "Redis" if self.env.get("REDIS_URL") else "database counters (no Redis)"
        return f"{db} + {cache}"

    def manage(self, *argv: str, timeout: float = 600) -> str:
        done = subprocess.run(
            [PY, *argv],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(
                f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
            )
        return done.stdout

    def start(
        self,
        name: str,
        core: str,
        command: list[str],
        port: int,
        env: dict | None = None,
        ready_path: str = "/",
        timeout: float = 60,
    ) -> Server:
        server = Server(name, pinned(core, command), env or self.env, self.work, port)
        self.servers.append(server)
        server.wait_ready(ready_path, timeout)
        return server

    # --- load -----------------------------------------------------------------------
    def _request_file(self, target: Target, stream: bool) -> Path:
        path = self.work / f"{target.name}-{'stream' if stream else 'plain'}.http"
        path.write_bytes(target.request(stream))
        return path

    def latency(
        self, target: Target, *, stream: bool = False, n: int | None = None, warmup: int = 50
    ) -> dict:
        n = self.args.requests if n is None else n
        command = pinned(
            LOAD_CORE,
            [
                PY,
                str(ROOT / "bench" / "loadgen.py"),
                "latency",
                "--port",
                str(target.port),
                "--request",
                str(self._request_file(target, stream)),
                "-n",
                str(n),
                "--warmup",
                str(warmup),
                "--expect",
                "[DONE]" if stream else ANSWER.decode(),
            ],
        )
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=True)
        result = json.loads(done.stdout)
        if result["failures"]:
            raise RuntimeError(
                f"{target.name}: {result['failures']} failed requests, first: {result['first_failure']}"
            )
        return result

    def _run(self, command: list[str], timeout: float, sample=None) -> str:
        """Run the load generator; ``sample()`` is called about once a second meanwhile."""
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        while True:
            if sample is not None:
                sample()
            try:
                out, err = proc.communicate(timeout=1)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    proc.kill()
                    raise
        if proc.returncode:
            raise RuntimeError(f"{command[0]} failed ({proc.returncode}): {err[-2000:]}")
        return out

    def _loadgen(self, mode: str, target: Target, duration: float, *extra: str) -> list[str]:
        """bench/loadgen.py ``mode`` (saturate, rate) on the load core: plain requests
        over --connections connections for ``duration`` seconds."""
        return pinned(
            LOAD_CORE,
            [
                PY,
                str(ROOT / "bench" / "loadgen.py"),
                mode,
                "--port",
                str(target.port),
                "--request",
                str(self._request_file(target, False)),
                "--connections",
                str(self.args.connections),
                "--duration",
                str(duration),
                *extra,
            ],
        )

    def rate(self, target: Target, rps: float, duration: float) -> dict:
        """Open-loop load at ``rps`` (bench/loadgen.py rate): latency from when each
        request was due, so queueing behind a stall is counted."""
        command = self._loadgen("rate", target, duration, "--rps", f"{rps:.1f}")
        result = json.loads(self._run(command, duration + 120))
        if result["non_200"] or result["errors"]:
            raise RuntimeError(f"{target.name} at {rps:.0f} requests/s had failures: {result}")
        return result

    def saturate(self, target: Target, duration: float, sample=None) -> dict:
        wrk = shutil.which("wrk")
        if wrk is None:
            command = self._loadgen("saturate", target, duration)
            result = json.loads(self._run(command, duration + 120, sample))
        else:
            script = self.work / f"{target.name}.lua"
            script.write_text(
                'wrk.method = "POST"\n'
                f"wrk.body = [==[{target.body()}]==]\n"
                'wrk.headers["Content-Type"] = "application/json"\n'
                f'wrk.headers["Authorization"] = "Bearer {target.token}"\n'
                "done = function(summary, latency, requests)\n"
                '  io.write(string.format("BENCH %d %d %d %d %d %d %d %d %d %d %d\\n", summary.requests,\n'
                "    summary.duration, summary.errors.status, summary.errors.connect, summary.errors.read,\n"
                "    summary.errors.write, summary.errors.timeout, latency:percentile(50),\n"
                "    latency:percentile(99), latency:percentile(99.9), latency.max))\n"
                "end\n"
            )
            command = pinned(
                LOAD_CORE,
                [
                    wrk,
                    "-t1",
                    f"-c{self.args.connections}",
                    f"-d{max(1, round(duration))}s",
                    "--timeout",
                    "10s",
                    "-s",
                    str(script),
                    f"http://127.0.0.1:{target.port}{target.path}",
                ],
            )
            stdout = self._run(command, duration + 120, sample)
            line = next(x for x in stdout.splitlines() if x.startswith("BENCH "))
            requests, duration_us, status, connect, read, write, timeout, p50, p99, p999, top = map(
                int, line.split()[1:]
            )
            bad = status + connect + read + write + timeout
            seconds = duration_us / 1e6
            result = {
                "requests": requests,
                "non_200": status,
                "errors": []
                if not bad - status
                else [f"connect {connect} read {read} write {write} timeout {timeout}"],
                "seconds": seconds,
                "rps": (requests - bad) / seconds,
                "p50_ms": p50 / 1000,
                "p99_ms": p99 / 1000,
                "p999_ms": p999 / 1000,
                "max_ms": top / 1000,
                "tool": "wrk",
            }
        if result["non_200"] or result["errors"]:
            raise RuntimeError(f"{target.name} saturation had failures: {result}")
        return result

    def measure_target(self, target: Target, server: Server | None) -> dict:
        a = self.args
        log(f"{target.name}: warm-up")
        self.latency(target, n=200, warmup=0)
        self.latency(target, stream=True, n=50, warmup=0)
        out: dict = {}
        if server:
            out["rss_warm"] = server.memory_kib()
        log(f"{target.name}: latency at concurrency 1 ({a.requests} requests)")
        preempted = server.preemptions() if server else 0
        cpu = server.cpu_seconds() if server else 0.0
        out["plain"] = self.latency(target)
        if server:
            out["preempted_per_100"] = (server.preemptions() - preempted) * 100 / a.requests
            # The warm-up included: about 1% more requests than counted, alike for both.
            out["cpu_ms_plain_c1"] = (server.cpu_seconds() - cpu) * 1000 / (a.requests + 50)
        log(f"{target.name}: streaming ({a.stream_requests} requests)")
        cpu = server.cpu_seconds() if server else 0.0
        out["stream"] = self.latency(target, stream=True, n=a.stream_requests)
        if server:
            out["cpu_ms_stream_c1"] = (server.cpu_seconds() - cpu) * 1000 / (a.stream_requests + 50)
        log(f"{target.name}: saturation ({a.connections} connections, {a.duration}s)")
        self.saturate(target, min(3, a.duration))  # warm the pools at full load; not counted
        profiler = self.profile(target, server)
        cpu_before = server.cpu_seconds() if server else 0.0
        out["saturation"] = self.saturate(target, a.duration)
        if server:
            out["cpu_ms_per_request"] = (
                (server.cpu_seconds() - cpu_before) * 1000 / out["saturation"]["requests"]
            )
        if profiler is not None:
            profiler.wait(timeout=a.duration + 60)
        if server:
            out["rss_after"] = server.memory_kib()
        return out

    def profile(self, target: Target, server: Server | None) -> subprocess.Popen | None:
        """With --profile DIR: sample the server with py-spy during the saturation run."""
        if not self.args.profile or server is None:
            return None
        spy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
        if not Path(spy).exists():
            log("py-spy is not installed; not profiling")
            return None
        self.args.profile.mkdir(parents=True, exist_ok=True)
        out = self.args.profile / f"{target.name}.txt"
        log(f"profiling {target.name} into {out}")
        command = [
            spy,
            "record",
            "--pid",
            str(server.pid),
            "--duration",
            str(self.args.duration),
            "--rate",
            "250",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
        ]
        return subprocess.Popen(
            pinned(LOAD_CORE, command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    # --- the run ----------------------------------------------------------------------
    def run(self) -> dict:
        a = self.args
        results: dict = {
            "mode": self.mode(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "load_before": os.getloadavg()[0],
        }
        log(f"work dir {self.work}; {results['mode']}")
        log("migrating")
        self.manage("manage.py", "migrate", "--noinput")
        up_port = free_port()
        results["upstream"] = self.start_upstream(up_port)
        upstream_url = f"http://127.0.0.1:{up_port}"
        log("creating the org, provider accounts, rule and key")
        fixture = json.loads(
            self.manage("bench/setup_bench.py", "setup", "--upstream", upstream_url).splitlines()[
                -1
            ]
        )
        try:
            direct = Target(
                "direct",
                up_port,
                "/v1/chat/completions",
                fixture["upstream_model"],
                fixture["upstream_secret"],
                fixture["upstream_model"],
                f"{fixture['stream_prefix']}/v1/chat/completions",
            )
            results["direct"] = self.measure_target(direct, None)
            gateway, inferia = self.start_gateway("inferia", ROOT, fixture)
            results["rss_start"] = gateway.memory_kib()
            results["inferia"] = self.measure_target(inferia, gateway)
            results["inferia"]["half"] = self.half_load(
                direct, inferia, results["inferia"]["saturation"]["rps"] / 2
            )
            if a.compare:
                results["compare"] = self.compare(direct, inferia, gateway, fixture)
            if not a.skip_flatness:
                results["flatness"] = self.flatness(direct, inferia, fixture, results)
            if a.soak:
                results["soak"] = self.soak(inferia, gateway)
            gateway.stop()
            results["litellm"] = self.litellm(upstream_url, direct)
        finally:
            if not a.keep:
                log("dropping the bench org")
                try:
                    self.manage("bench/setup_bench.py", "reset")
                    self.drop_usage_stream()
                except Exception as exc:  # noqa: BLE001 - cleanup must not hide the run's own error
                    log(f"cleanup failed: {exc}")
        results["load_after"] = os.getloadavg()[0]
        return results

    def start_upstream(self, port: int) -> str:
        """nginx (static answers, bench/nginx_upstream.py) when installed and not refused
        with --upstream python; else the Python fake upstream. Returns the label."""
        nginx = nginx_upstream.binary() if self.args.upstream != "python" else None
        if nginx is None and self.args.upstream == "nginx":
            raise RuntimeError("--upstream nginx: nginx is not installed")
        if nginx is not None:
            conf = self.work / "nginx.conf"
            conf.write_text(nginx_upstream.config(port, self.work, PLAIN_BODY))
            self.start("upstream", LOAD_CORE, [nginx, "-c", str(conf), "-p", str(self.work)], port)
            version = subprocess.run(
                [nginx, "-v"], capture_output=True, text=True, check=False
            ).stderr.strip()
            return f"nginx mock ({version.rpartition('/')[2] or 'nginx'}, static answers)"
        self.start(
            "upstream",
            LOAD_CORE,
            [PY, "-m", "gateway.fake_upstream", "--port", str(port), "--no-record"],
            port,
        )
        return "Python fake upstream (gateway.fake_upstream: shares core 1 with the load)"

    def start_gateway(self, name: str, root: Path, fixture: dict) -> tuple[Server, Target]:
        """The gateway as deployed (``inferia.server.uvicorn_command``) from ``root``
        (this checkout, or the --compare revision's), pinned to the server core."""
        port = free_port()
        command = gateway_command(port, root)
        env = {**self.env, "PYTHONPATH": str(root)}
        server = Server(name, pinned(SERVER_CORE, command), env, self.work, port, cwd=root)
        self.servers.append(server)
        server.wait_ready("/healthz")
        target = Target(
            name,
            port,
            "/api/llm/v1/chat/completions",
            fixture["model"],
            fixture["key"],
            fixture["stream_model"],
        )
        return server, target

    def half_load(self, direct: Target, target: Target, rps: float) -> dict:
        """Added p99 at half the target's saturation rate (open loop, same rate for both)."""
        seconds = max(3, self.args.duration)
        log(f"{target.name}: {rps:.0f} requests/s, half of saturation ({seconds} s, open loop)")
        d = self.rate(direct, rps, seconds)
        t = self.rate(target, rps, seconds)
        return {"rps": rps, "direct": d, "target": t, "added_p99": t["p99_ms"] - d["p99_ms"]}

    def soak(self, target: Target, server: Server) -> dict:
        """--soak SECONDS at saturation, the server's resident memory sampled every second."""
        log(f"{target.name}: soak at saturation for {self.args.soak} s")
        started = time.monotonic()
        samples: list[tuple[float, int]] = []

        def sample() -> None:
            samples.append((time.monotonic() - started, server.memory_kib()["VmRSS"]))

        result = self.saturate(target, self.args.soak, sample)
        sample()
        return {"saturation": result, **memory_trend(samples)}

    def compare(self, direct: Target, inferia: Target, gateway: Server, fixture: dict) -> dict:
        """--compare REV: that revision's gateway beside this one, measured alternately
        (rounds of concurrency-1 latency and saturation), on the same database and Redis."""
        a = self.args
        tree = self.work / "compare-tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), a.compare],
            check=True,
        )
        try:
            base, before = self.start_gateway("before", tree, fixture)
            rounds: dict[str, list[dict]] = {"inferia": [], "before": []}
            self.latency(before, n=200, warmup=0)
            self.latency(before, stream=True, n=50, warmup=0)
            self.saturate(before, min(3, a.duration))
            for number in range(a.compare_rounds):
                for name, target, server in (
                    ("before", before, base),
                    ("inferia", inferia, gateway),
                ):
                    log(f"compare round {number + 1}: {name}")
                    d = self.latency(direct, n=a.requests // 2)["total_ms"]
                    t = self.latency(target, n=a.requests // 2)["total_ms"]
                    cpu = server.cpu_seconds()
                    sat = self.saturate(target, a.duration)
                    rounds[name].append(
                        {
                            "added_p50": t["p50"] - d["p50"],
                            "added_p99": t["p99"] - d["p99"],
                            "rps": sat["rps"],
                            "cpu_ms": (server.cpu_seconds() - cpu) * 1000 / sat["requests"],
                            "p50_ms": sat["p50_ms"],
                            "p99_ms": sat["p99_ms"],
                        }
                    )
            base.stop()
            return {"rev": a.compare, "rounds": rounds}
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False
            )

    def flatness(self, direct: Target, inferia: Target, fixture: dict, results: dict) -> list[dict]:
        a = self.args
        # Every row, the baseline included, is measured here, after the saturation run,
        # in the same state of the machine and servers: three back-to-back rounds of
        # (direct, inferia), the row's added latency being the median of the rounds'
        # (a noisy neighbour spoils one round, not the row).
        rows = [{"keys": fixture["keys"], "rules": fixture["rules"], **self.added(direct, inferia)}]
        for keys, rules in ((a.many_keys, fixture["rules"]), (a.many_keys, a.many_rules)):
            log(f"flatness: growing to {keys} keys and {rules} rules")
            counts = json.loads(
                self.manage(
                    "bench/setup_bench.py", "fill", "--keys", str(keys), "--rules", str(rules)
                ).splitlines()[-1]
            )
            cold = self.latency(inferia, n=1, warmup=0)["total_ms"]["p50"]
            self.latency(inferia, n=200, warmup=0)
            rows.append(
                {
                    "keys": counts["keys"],
                    "rules": counts["rules"],
                    "cold_ms": cold,
                    **self.added(direct, inferia),
                }
            )
        return rows

    def added(self, direct: Target, inferia: Target, rounds: int = 3) -> dict:
        n = max(200, self.args.requests // rounds)
        p50s, p99s = [], []
        for _ in range(rounds):
            d = self.latency(direct, n=n)["total_ms"]
            i = self.latency(inferia, n=n)["total_ms"]
            p50s.append(i["p50"] - d["p50"])
            p99s.append(i["p99"] - d["p99"])
        return {
            "added_p50": sorted(p50s)[rounds // 2],
            "added_p99": sorted(p99s)[rounds // 2],
            "rounds_p50": p50s,
        }

    def litellm(self, upstream_url: str, direct: Target) -> dict:
        binary = os.environ.get("LITELLM_BIN", "")
        if not binary:
            return {
                "skipped": "LITELLM_BIN is not set (install litellm[proxy] in a separate venv and point "
                "LITELLM_BIN at its litellm binary)"
            }
        if not Path(binary).exists():
            return {"skipped": f"LITELLM_BIN={binary} does not exist"}
        config = self.work / "litellm.yaml"
        master = "sk-bench-" + secrets.token_hex(8)
        stream_model = f"{direct.model}-stream"
        models = ((direct.model, ""), (stream_model, nginx_upstream.STREAM_PREFIX))
        # Its documented production settings (docs.litellm.ai, "Production Best Practices"):
        # LITELLM_MODE=PRODUCTION, logging off (no verbose or per-message logging, no spend
        # or error logs: there is no database), one uvicorn worker for the one-core
        # comparison. No callbacks, no cache, no alerting.
        config.write_text(
            "model_list:\n"
            + "".join(
                f"  - model_name: {name}\n"
                "    litellm_params:\n"
                f"      model: openai/{direct.model}\n"
                f"      api_base: {upstream_url}{prefix}/v1\n"
                f"      api_key: {direct.token}\n"
                for name, prefix in models
            )
            + "general_settings:\n"
            f"  master_key: {master}\n"
            "  disable_spend_logs: true\n"
            "  disable_error_logs: true\n"
            "litellm_settings:\n"
            "  telemetry: false\n"
            "  set_verbose: false\n"
            "  turn_off_message_logging: true\n"
        )
        # LiteLLM must not pick up the gateway's database or Redis, nor reach the network.
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(
            {
                "LITELLM_MODE": "PRODUCTION",
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_TELEMETRY": "False",
                "LITELLM_LOG": "ERROR",
                "NO_DOCS": "True",
            }
        )
        port = free_port()
        version = subprocess.run(
            [
                str(Path(binary).parent / "python"),
                "-c",
                "import importlib.metadata as m; print(m.version('litellm'))",
            ],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        log(f"starting LiteLLM {version} proxy on core {SERVER_CORE}")
        server = self.start(
            "litellm",
            SERVER_CORE,
            [
                binary,
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--num_workers",
                "1",
            ],
            port,
            env=env,
            ready_path="/health/liveliness",
            timeout=240,
        )
        try:
            target = Target(
                "litellm", port, "/v1/chat/completions", direct.model, master, stream_model
            )
            out = self.measure_target(target, server)
            out["half"] = self.half_load(direct, target, out["saturation"]["rps"] / 2)
            out["version"] = version
            return out
        finally:
            server.stop()

    def drop_usage_stream(self) -> None:
        """The gateway appended one usage record per request to the Redis stream; drop them
        (no worker ran to ingest them). Use a Redis database of the benchmark's own."""
        if not self.env.get("REDIS_URL"):
            return
        self.manage(
            "-c",
            "import django; django.setup(); from inferia.store import keys, redis_store; "
            "redis_store.delete(keys.USAGE_STREAM)",
        )

    def stop_all(self) -> None:
        for server in reversed(self.servers):
            server.stop()


def memory_trend(samples: list[tuple[float, int]]) -> dict:
    """Start, end and peak resident memory (MiB) and the least-squares slope over the
    second half of the samples (MiB per minute; the first half includes warm-up growth)."""
    mib = [(t, kib / 1024) for t, kib in samples]
    half = [p for p in mib if p[0] >= mib[-1][0] / 2] or mib
    n = len(half)
    mean_t = sum(t for t, _ in half) / n
    mean_m = sum(m for _, m in half) / n
    spread = sum((t - mean_t) ** 2 for t, _ in half)
    slope = sum((t - mean_t) * (m - mean_m) for t, m in half) / spread if spread else 0.0
    return {
        "seconds": mib[-1][0],
        "start_mib": mib[0][1],
        "end_mib": mib[-1][1],
        "max_mib": max(m for _, m in mib),
        "slope_mib_per_min": slope * 60,
        "samples": len(mib),
    }


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def versions() -> str:
    out = []
    for name in (
        "django",
        "uvicorn",
        "httpx",
        "uvloop",
        "httptools",
        "redis",
        "hiredis",
        "orjson",
    ):
        try:
            import importlib.metadata as metadata

            out.append(f"{name} {metadata.version(name.replace('_', '-'))}")
        except Exception:  # noqa: BLE001, S112 - not installed
            continue
    return ", ".join(out)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def table(r: dict, args: argparse.Namespace) -> str:
    d, g = r["direct"], r["inferia"]
    ll = r.get("litellm", {})
    has_ll = "plain" in ll

    def p(res, kind, key, pct):
        return res[kind][key][pct]

    def added(res, kind, key, pct):
        return p(res, kind, key, pct) - p(d, kind, key, pct)

    def check(ok: bool) -> str:
        return "yes" if ok else "**no**"

    rows = []

    def row(metric, dv, gv, lv, gvs, lvs, target, met):
        rows.append(
            f"| {metric} | {dv} | {gv} | {lv if has_ll else '-'} | {gvs} | {lvs if has_ll else '-'} | {target} | {met} |"
        )

    for pct, limit in (("p50", 0.5), ("p99", 1.0)):
        ga = added(g, "plain", "total_ms", pct)
        row(
            f"Latency {pct}, concurrency 1 (ms)",
            fmt(p(d, "plain", "total_ms", pct)),
            fmt(p(g, "plain", "total_ms", pct)),
            fmt(p(ll, "plain", "total_ms", pct)) if has_ll else "",
            f"+{fmt(ga)}",
            f"+{fmt(added(ll, 'plain', 'total_ms', pct))}" if has_ll else "",
            f"added <= {limit:g} ms",
            check(ga <= limit),
        )
    gs, ds = g["saturation"]["rps"], d["saturation"]["rps"]
    ls = ll["saturation"]["rps"] if has_ll else 0
    row(
        f"Requests/s at saturation ({args.connections} connections)",
        fmt(ds, 0),
        fmt(gs, 0),
        fmt(ls, 0),
        f"{gs / ds:.2f}x",
        f"{ls / ds:.2f}x" if has_ll else "",
        "",
        "",
    )
    cpu = g["cpu_ms_per_request"]
    row(
        "Server CPU time per request at saturation (ms)",
        "",
        fmt(cpu, 3),
        fmt(ll["cpu_ms_per_request"], 3) if has_ll else "",
        f"{1000 / cpu:,.0f} req/s per core",
        f"{1000 / ll['cpu_ms_per_request']:,.0f} req/s per core" if has_ll else "",
        "<= 0.33 ms (3,000 req/s on one core)",
        check(cpu <= 0.33),
    )
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")):
        if key not in g["saturation"]:
            continue
        row(
            f"Latency {label} at saturation (ms)",
            fmt(d["saturation"].get(key)),
            fmt(g["saturation"][key]),
            fmt(ll["saturation"].get(key)) if has_ll else "",
            "",
            "",
            "",
            "",
        )

    def tail(res):
        sat = res["saturation"]
        return sat["p99_ms"] / sat["p50_ms"] if sat["p50_ms"] else float("nan")

    row(
        "Fairness at saturation: p99 / p50",
        f"{tail(d):.1f}x",
        f"{tail(g):.1f}x",
        f"{tail(ll):.1f}x" if has_ll else "",
        "",
        "",
        "<= 5x (no starving connection)",
        check(tail(g) <= 5),
    )
    if "half" in g:
        half = g["half"]
        lh = ll.get("half")
        row(
            f"Latency p99 at half of saturation, open loop (ms; Inferia at {half['rps']:,.0f} req/s"
            + (f", LiteLLM at {lh['rps']:,.0f}" if lh else "")
            + ")",
            fmt(half["direct"]["p99_ms"]),
            fmt(half["target"]["p99_ms"]),
            fmt(lh["target"]["p99_ms"]) if lh else "",
            f"+{fmt(half['added_p99'])}",
            f"+{fmt(lh['added_p99'])}" if lh else "",
            "",
            "",
        )
    for pct in ("p50", "p99"):
        row(
            f"Time to first streamed chunk {pct} (ms)",
            fmt(p(d, "stream", "first_chunk_ms", pct)),
            fmt(p(g, "stream", "first_chunk_ms", pct)),
            fmt(p(ll, "stream", "first_chunk_ms", pct)) if has_ll else "",
            f"+{fmt(added(g, 'stream', 'first_chunk_ms', pct))}",
            f"+{fmt(added(ll, 'stream', 'first_chunk_ms', pct))}" if has_ll else "",
            "",
            "",
        )
    row(
        "Whole streamed call p50 (ms)",
        fmt(p(d, "stream", "total_ms", "p50")),
        fmt(p(g, "stream", "total_ms", "p50")),
        fmt(p(ll, "stream", "total_ms", "p50")) if has_ll else "",
        f"+{fmt(added(g, 'stream', 'total_ms', 'p50'))}",
        f"+{fmt(added(ll, 'stream', 'total_ms', 'p50'))}" if has_ll else "",
        "",
        "",
    )

    def stream_ratio(res, key):
        plain_added = added(res, "plain", "total_ms", "p50")
        return added(res, "stream", key, "p50") / plain_added if plain_added > 0 else float("nan")

    def cpu_ratio(res):
        plain, streamed = res.get("cpu_ms_plain_c1"), res.get("cpu_ms_stream_c1")
        return streamed / plain if plain and streamed else float("nan")

    row(
        "Server CPU per call at concurrency 1, streamed / plain (ms)",
        "",
        f"{fmt(g.get('cpu_ms_stream_c1'), 3)} / {fmt(g.get('cpu_ms_plain_c1'), 3)}",
        f"{fmt(ll.get('cpu_ms_stream_c1'), 3)} / {fmt(ll.get('cpu_ms_plain_c1'), 3)}"
        if has_ll
        else "",
        f"{cpu_ratio(g):.2f}x",
        f"{cpu_ratio(ll):.2f}x" if has_ll else "",
        "<= 1.2x",
        check(cpu_ratio(g) <= 1.2),
    )
    for key, label, limit in (
        ("total_ms", "whole streamed call", 1.2),
        ("first_chunk_ms", "first chunk", None),
    ):
        gr = stream_ratio(g, key)
        row(
            f"Streaming cost: added {label} p50 / added plain p50",
            "",
            "",
            "",
            f"{gr:.2f}x",
            f"{stream_ratio(ll, key):.2f}x" if has_ll else "",
            f"<= {limit:g}x" if limit else "",
            check(gr <= limit) if limit else "",
        )
    row(
        "Server preempted per 100 requests at concurrency 1 (involuntary context switches)",
        "",
        fmt(g["preempted_per_100"], 0),
        fmt(ll["preempted_per_100"], 0) if has_ll else "",
        "",
        "",
        "",
        "",
    )
    mib = 1024
    row(
        "Resident memory after warm-up (MiB)",
        "",
        fmt(g["rss_warm"]["VmRSS"] / mib, 1),
        fmt(ll["rss_warm"]["VmRSS"] / mib, 1) if has_ll else "",
        "",
        "",
        "",
        "",
    )
    row(
        "Peak resident memory after saturation (MiB)",
        "",
        fmt(g["rss_after"]["VmHWM"] / mib, 1),
        fmt(ll["rss_after"]["VmHWM"] / mib, 1) if has_ll else "",
        "",
        "",
        "",
        "",
    )
    soak = r.get("soak")
    if soak:
        row(
            f"Soak at saturation, {soak['seconds'] / 60:.1f} min: resident memory start / end / max (MiB)",
            "",
            f"{soak['start_mib']:.1f} / {soak['end_mib']:.1f} / {soak['max_mib']:.1f}",
            "",
            "",
            "",
            "",
            "",
        )
        row(
            "Soak: resident memory slope over its second half (MiB per minute)",
            "",
            f"{soak['slope_mib_per_min']:+.3f}",
            "",
            f"{soak['saturation']['rps']:,.0f} req/s",
            "",
            "flat (<= 0.1 MiB/min)",
            check(abs(soak["slope_mib_per_min"]) <= 0.1),
        )
    if g["plain"].get("reported_overhead_ms"):
        row(
            "X-Inferia-Overhead-Ms p50 / p99 (self-reported)",
            "",
            f"{fmt(g['plain']['reported_overhead_ms']['p50'])} / {fmt(g['plain']['reported_overhead_ms']['p99'])}",
            "",
            "",
            "",
            "",
            "",
        )
    flat = r.get("flatness")
    if flat:
        base = flat[0]
        base50, base99 = base["added_p50"], base["added_p99"]
        for entry in flat:
            a50, a99 = entry["added_p50"], entry["added_p99"]
            label = f"Added p50 / p99 with {entry['keys']:,} keys, {entry['rules']:,} rules (ms)"
            if entry is base:
                row(label, "", f"+{fmt(a50)} / +{fmt(a99)}", "", "baseline", "", "flat", "")
            else:
                ok = a50 - base50 <= max(0.2, 0.2 * base50)
                row(
                    label,
                    "",
                    f"+{fmt(a50)} / +{fmt(a99)}",
                    "",
                    f"{a50 / base50:.2f}x / {a99 / base99:.2f}x"
                    if base50 > 0 and base99 > 0
                    else "",
                    "",
                    "flat",
                    check(ok),
                )
        for entry in flat[1:]:
            row(
                f"First request after growing to {entry['keys']:,} keys, {entry['rules']:,} rules (ms, cold cache)",
                "",
                fmt(entry["cold_ms"]),
                "",
                "",
                "",
                "",
                "",
            )
    header = (
        "| Metric | Direct to upstream | Inferia | LiteLLM proxy | Inferia vs direct | LiteLLM vs direct | Target | Met |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |\n"
    )
    return header + "\n".join(rows)


def report(r: dict, args: argparse.Namespace) -> str:
    ll = r.get("litellm", {})
    lines = [
        f"Inferia gateway benchmark, {r['started']}: {r['mode']}; {cpu_model()}, {os.cpu_count()} cores; "
        f"Python {platform.python_version()}; {versions()}. Load average (1 min) "
        f"{r['load_before']:.1f} before the run, {r.get('load_after', float('nan')):.1f} after: "
        "anything above ~0 is other work competing for the two cores.",
        f"Upstream: {r['upstream']}. Server on core {SERVER_CORE} (uvicorn, 1 worker); upstream and "
        f"load generator ({r['inferia']['saturation']['tool']}) on core {LOAD_CORE}. Concurrency 1: "
        f"{args.requests} requests (streamed: {args.stream_requests}); saturation: {args.connections} "
        f"connections for {args.duration:g} s; half of saturation: open loop, {args.connections} "
        "connections, latency from each request's scheduled time.",
        f"LiteLLM: {'proxy ' + ll.get('version', '') + ' (LITELLM_MODE=PRODUCTION, logging off, 1 worker)' if 'plain' in ll else 'skipped: ' + ll.get('skipped', 'not run')}.",
        "",
        table(r, args),
    ]
    if r.get("compare"):
        lines += ["", compare_table(r["compare"])]
    return "\n".join(lines)


def compare_table(c: dict) -> str:
    """--compare: each figure's median over the alternating rounds, and after / before."""

    def median(name: str, key: str) -> float:
        values = sorted(x[key] for x in c["rounds"][name])
        return values[len(values) // 2]

    lines = [
        f"Side by side with revision {c['rev']} (median of {len(c['rounds']['inferia'])} "
        "alternating rounds, same servers and machine state):",
        "",
        f"| Metric | {c['rev']} | this code | this / {c['rev']} |",
        "| --- | ---: | ---: | ---: |",
    ]
    for key, label in (
        ("added_p50", "Added p50, concurrency 1 (ms)"),
        ("added_p99", "Added p99, concurrency 1 (ms)"),
        ("cpu_ms", "Server CPU per request at saturation (ms)"),
        ("rps", "Requests/s at saturation"),
        ("p50_ms", "Latency p50 at saturation (ms)"),
        ("p99_ms", "Latency p99 at saturation (ms)"),
    ):
        before, after = median("before", key), median("inferia", key)
        ratio = f"{after / before:.2f}x" if before > 0 else ""
        lines.append(f"| {label} | {before:.3f} | {after:.3f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests", type=int, default=2000, help="requests per latency measurement"
    )
    parser.add_argument("--stream-requests", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per saturation run")
    parser.add_argument("--connections", type=int, default=64, help="connections at saturation")
    parser.add_argument("--many-keys", type=int, default=100_000)
    parser.add_argument("--many-rules", type=int, default=10_000)
    parser.add_argument("--skip-flatness", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the bench org and the work dir")
    parser.add_argument(
        "--profile", type=Path, help="sample each server with py-spy at saturation into DIR"
    )
    parser.add_argument(
        "--upstream",
        choices=("auto", "nginx", "python"),
        default="auto",
        help="the mock upstream: nginx when installed (auto), or the Python fake upstream",
    )
    parser.add_argument(
        "--soak",
        type=int,
        default=0,
        metavar="SECONDS",
        help="also run at saturation this long, sampling the gateway's resident memory",
    )
    parser.add_argument(
        "--compare",
        metavar="REV",
        help="also measure the gateway of git revision REV beside this one, alternately",
    )
    parser.add_argument("--compare-rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--markdown", type=Path, help="also write the report here")
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        log("warning: fewer than 2 cores available; server and load share a core")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    bench = Bench(args)
    try:
        results = bench.run()
    finally:
        bench.stop_all()
    text = report(results, args)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if not args.keep:
        shutil.rmtree(bench.work, ignore_errors=True)


if __name__ == "__main__":
    main()
