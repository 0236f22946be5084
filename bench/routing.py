"""What routing through a deployment costs (issue 14), measured side by side in one run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_inferia \\
    REDIS_URL=redis://127.0.0.1:6379/8 .venv/bin/python bench/routing.py

Same harness as ``bench/run.py`` (nginx mock upstream and the load generator on
core 1, the gateway as deployed on core 0, the bench org made through the
product's own code), then two measurements:

1. **Routing's own cost.** ``deployment/bench-direct`` has one target, the very
   model ``bench-upstream/gpt-4o-mini`` that is also called directly. Rounds
   alternate the two (``--rounds`` x ``--requests`` calls at concurrency 1); the
   report gives the median over rounds of (deployment p50 - model p50), and p99
   alike. Target: at most 0.1 ms p50.
2. **Fallback after a connect error.** ``deployment/bench-fallback`` tries first
   a target whose TCP connect never completes (a listening socket on 127.0.0.1
   with its backlog full: the kernel drops the SYNs) and falls back to the mock.
   Its breaker opens on the first failure and half-opens after ``--cooldown``
   seconds. The gateway runs with ``INFERIA_GATEWAY_CONNECT_TIMEOUT`` =
   ``--connect-timeout``; calls go one at a time for ``--duration`` seconds,
   each timed. Target: a call pays the connect timeout at most once per breaker
   window (the half-open probe), not every call: the report counts the calls that
   took longer than half the connect timeout against the windows that elapsed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen  # noqa: E402
import run as harness  # noqa: E402


class Blackhole:
    """A 127.0.0.1 port whose connects never complete: listen(0) and fill the backlog."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(0)
        self.port = self.server.getsockname()[1]
        self.fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.fillers.append(filler)
        time.sleep(0.2)
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            probe.connect(("127.0.0.1", self.port))
            raise RuntimeError("the blackhole accepted a connection: its backlog is not full")
        except TimeoutError:
            pass
        finally:
            probe.close()

    def close(self) -> None:
        for sock in (*self.fillers, self.server):
            sock.close()


def timed_calls(target: harness.Target, duration: float) -> list[float]:
    """Calls one at a time for ``duration`` seconds; each call's milliseconds."""
    raw = target.request()
    if hasattr(os, "sched_setaffinity"):  # on the load core, beside the upstream
        os.sched_setaffinity(0, {int(harness.LOAD_CORE)})
    connection = loadgen.Connection(target.port)
    out: list[float] = []
    deadline = time.monotonic() + duration
    try:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = connection.roundtrip(raw)
            out.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                raise RuntimeError(f"{target.model}: {response.status} {response.body[:300]!r}")
    finally:
        connection.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=1000, help="calls per round and target")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of fallback calls")
    parser.add_argument("--cooldown", type=int, default=5, help="the breaker's cooldown (s)")
    parser.add_argument("--connect-timeout", type=float, default=0.5)
    parser.add_argument("--upstream", choices=("auto", "nginx", "python"), default="auto")
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.soak = 0
    bench = harness.Bench(args)
    bench.env["INFERIA_GATEWAY_CONNECT_TIMEOUT"] = str(args.connect_timeout)
    blackhole = Blackhole()
    results: dict = {"mode": bench.mode(), "load_before": os.getloadavg()[0]}
    try:
        harness.log("migrating")
        bench.manage("manage.py", "migrate", "--noinput")
        up_port = harness.free_port()
        results["upstream"] = bench.start_upstream(up_port)
        fixture = json.loads(
            bench.manage(
                "bench/setup_bench.py", "setup", "--upstream", f"http://127.0.0.1:{up_port}"
            ).splitlines()[-1]
        )
        names = json.loads(
            bench.manage(
                "bench/setup_bench.py",
                "deployments",
                "--dead",
                f"127.0.0.1:{blackhole.port}",
                "--cooldown",
                str(args.cooldown),
            ).splitlines()[-1]
        )
        gateway, model = bench.start_gateway("model", harness.ROOT, fixture)
        deployment = harness.Target(
            "deployment", model.port, model.path, names["direct"], fixture["key"]
        )
        fallback = harness.Target(
            "fallback", model.port, model.path, names["fallback"], fixture["key"]
        )
        harness.log("warm-up")
        bench.latency(model, n=300, warmup=0)
        bench.latency(deployment, n=300, warmup=0)

        rounds = []
        for number in range(1, args.rounds + 1):
            harness.log(f"round {number}: model, then deployment ({args.requests} calls each)")
            cpu = gateway.cpu_seconds()
            m = bench.latency(model, n=args.requests, warmup=20)
            cpu_model = (gateway.cpu_seconds() - cpu) * 1000 / (args.requests + 20)
            cpu = gateway.cpu_seconds()
            d = bench.latency(deployment, n=args.requests, warmup=20)
            cpu_deployment = (gateway.cpu_seconds() - cpu) * 1000 / (args.requests + 20)
            rounds.append(
                {
                    "model_cpu_ms": cpu_model,
                    "deployment_cpu_ms": cpu_deployment,
                    "model_p50": m["total_ms"]["p50"],
                    "deployment_p50": d["total_ms"]["p50"],
                    "model_p99": m["total_ms"]["p99"],
                    "deployment_p99": d["total_ms"]["p99"],
                }
            )
        results["rounds"] = rounds
        results["added_p50_ms"] = statistics.median(
            r["deployment_p50"] - r["model_p50"] for r in rounds
        )
        results["added_cpu_ms"] = statistics.median(
            r["deployment_cpu_ms"] - r["model_cpu_ms"] for r in rounds
        )
        results["added_p99_ms"] = statistics.median(
            r["deployment_p99"] - r["model_p99"] for r in rounds
        )

        harness.log(f"fallback: calls one at a time for {args.duration} s")
        calls = timed_calls(fallback, args.duration)
        slow = [ms for ms in calls if ms >= args.connect_timeout * 1000 / 2]
        windows = math.ceil(args.duration / args.cooldown)
        fast = [ms for ms in calls if ms < args.connect_timeout * 1000 / 2]
        results["fallback"] = {
            "calls": len(calls),
            "slow_calls": len(slow),
            "slow_ms": [round(ms, 1) for ms in slow],
            "breaker_windows": windows,
            "fast_p50_ms": statistics.median(fast) if fast else None,
        }
    finally:
        for server in bench.servers:
            server.stop()
        blackhole.close()
        try:
            bench.manage("bench/setup_bench.py", "reset")
            bench.drop_usage_stream()
        except Exception as exc:  # noqa: BLE001 - cleanup must not hide the run's own error
            harness.log(f"cleanup failed: {exc}")
    results["load_after"] = os.getloadavg()[0]
    report = render(results, args)
    print(report)
    if args.markdown:
        args.markdown.write_text(report)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def render(r: dict, args: argparse.Namespace) -> str:
    f = r["fallback"]
    ok_p50 = r["added_p50_ms"] <= 0.1
    # At most one probe per window, plus the first failure that opened the breaker.
    ok_fallback = f["slow_calls"] <= f["breaker_windows"] + 1
    lines = [
        f"Inferia routing benchmark: {r['mode']}; upstream: {r['upstream']}; load average "
        f"{r['load_before']:.1f} before, {r['load_after']:.1f} after.",
        "",
        "| Measure | Result | Target | Met |",
        "| --- | ---: | --- | --- |",
        f"| Added p50 of `deployment/bench-direct` over its model, median of {args.rounds} "
        f"alternating rounds of {args.requests} calls (ms) | {r['added_p50_ms']:+.3f} | "
        f"<= 0.1 ms | {'yes' if ok_p50 else '**no**'} |",
        f"| Added p99, same rounds (ms) | {r['added_p99_ms']:+.3f} | | |",
        f"| Added server CPU per call, same rounds (ms) | {r['added_cpu_ms']:+.3f} | | |",
        f"| Fallback: calls that paid the connect timeout ({args.connect_timeout * 1000:.0f} ms) "
        f"in {args.duration:.0f} s of calls one at a time | {f['slow_calls']} of {f['calls']} | "
        f"<= one per breaker window ({f['breaker_windows']} windows of {args.cooldown} s, "
        f"+1 for the first) | {'yes' if ok_fallback else '**no**'} |",
        f"| Fallback: p50 of the other calls (ms) | {f['fast_p50_ms']:.2f} | | |",
        "",
        "| Round | model p50 | deployment p50 | model p99 | deployment p99 | model CPU | deployment CPU |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for number, row in enumerate(r["rounds"], 1):
        lines.append(
            f"| {number} | {row['model_p50']:.3f} | {row['deployment_p50']:.3f} | "
            f"{row['model_p99']:.3f} | {row['deployment_p99']:.3f} | "
            f"{row['model_cpu_ms']:.3f} | {row['deployment_cpu_ms']:.3f} |"
        )
    lines.append("")
    lines.append(f"Slow fallback calls (ms): {', '.join(map(str, f['slow_ms'])) or 'none'}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
