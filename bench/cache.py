"""What the response cache costs and saves: a hit beside a miss, measured in one run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_inferia \\
    REDIS_URL=redis://127.0.0.1:6379/8 .venv/bin/python bench/cache.py

Same harness as ``bench/run.py``: the gateway as deployed (one uvicorn worker) pinned
to core 0, the mock upstream (nginx when installed, else the Python fake) and the
load on core 1, the bench org made through the product's own code with its response
cache turned on (``setup_bench.py cache``). Three kinds of chat completions to the
same model, with bodies of the same size:

- **bypass**: ``Cache-Control: no-store``, the path of an org without the cache (the
  cache's code is skipped before any hashing or Redis call): the baseline;
- **miss**: a body never seen before on every call (a run nonce and a counter in
  ``user``): the lookup script misses, the upstream answers, the store script runs;
- **hit**: one body, stored by its first call: the lookup script answers.

1. Latency at concurrency 1, in alternating rounds (``--rounds`` x ``--requests``
   calls per kind): median over rounds of the p50 and p99 of the total time, of the
   gateway's own ``X-Inferia-Overhead-Ms`` and of the server's CPU per call; the
   direct upstream is timed alike, for reference. Every answer's ``X-Inferia-Cache``
   is checked (a miss that hits, or the reverse, fails the run).
2. Requests/s at saturation, closed loop (``--connections`` connections for
   ``--duration`` seconds per kind).

The Redis must be the benchmark's own database (the usage stream is dropped after).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen  # noqa: E402
import run as harness  # noqa: E402

KINDS = ("bypass", "miss", "hit")
EXPECTED_HEADER = {"bypass": "bypass", "miss": "miss", "hit": "hit", "direct": None}


def raw_request(args: argparse.Namespace, kind: str, number: int) -> bytes:
    user = f"bench-{args.nonce}-{number}" if kind == "miss" else f"bench-{args.nonce}-0"
    body = json.dumps({"model": args.model, **harness.PLAIN_BODY, "user": user}).encode()
    extra = "Cache-Control: no-store\r\n" if kind == "bypass" else ""
    head = (
        f"POST {args.path} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n"
        f"Content-Type: application/json\r\nAuthorization: Bearer {args.key}\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def latency(args: argparse.Namespace) -> dict:
    """``args.n`` calls one at a time (after ``args.warmup``): totals, reported
    overheads, and every answer's status and cache header checked."""
    conn = loadgen.Connection(args.port)
    expected = EXPECTED_HEADER[args.kind]
    counter = itertools.count(args.start)
    totals, overheads, bad = [], [], []
    for i in range(args.warmup + args.n):
        raw = raw_request(args, args.kind, next(counter))
        started = time.perf_counter()
        response = conn.roundtrip(raw)
        seen = response.headers.get("x-inferia-cache")
        if response.status != 200 or seen != expected:
            bad.append(f"{response.status} cache={seen}: {response.body[:200]!r}")
            continue
        if i < args.warmup:
            continue
        totals.append((response.done_at - started) * 1000)
        if "x-inferia-overhead-ms" in response.headers:
            overheads.append(float(response.headers["x-inferia-overhead-ms"]))
    conn.close()
    return {
        "failures": len(bad),
        "first_failure": bad[0] if bad else "",
        "total_ms": loadgen.summary(totals),
        "overhead_ms": loadgen.summary(overheads) if overheads else None,
    }


async def _saturate(args: argparse.Namespace) -> dict:
    counts = {"ok": 0, "bad": 0}
    latencies: list[float] = []
    counter = itertools.count(args.start)
    deadline = time.perf_counter() + args.duration

    async def one_connection() -> int:
        reader, writer = await loadgen._open(args.port)
        sent = 0
        try:
            while (started := time.perf_counter()) < deadline:
                raw = raw_request(args, args.kind, next(counter))
                status, closing = await loadgen._exchange(reader, writer, raw)
                sent += 1
                counts["ok" if status == 200 else "bad"] += 1
                latencies.append(time.perf_counter() - started)
                if closing:
                    writer.close()
                    reader, writer = await loadgen._open(args.port)
        finally:
            writer.close()
        return sent

    started = time.perf_counter()
    results = await asyncio.gather(
        *(one_connection() for _ in range(args.connections)), return_exceptions=True
    )
    return loadgen._summary(counts, latencies, time.perf_counter() - started, results, "python")


class Run:
    """The harness, the gateway and the ``load`` child processes of one run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.bench = harness.Bench(args)
        self.nonce = secrets.token_hex(4)
        self.sent = 1  # miss bodies are numbered across the whole run: never a repeat
        self.gateway: harness.Server | None = None

    def load(self, target: dict, kind: str, mode: str, **options) -> dict:
        command = [
            harness.PY,
            str(Path(__file__).resolve()),
            "load",
            "--mode",
            mode,
            "--kind",
            kind,
            "--nonce",
            self.nonce,
            "--start",
            str(self.sent),
            *(f"--{name}={value}" for name, value in {**target, **options}.items()),
        ]
        timeout = options.get("duration", 0) + 600
        done = subprocess.run(
            harness.pinned(harness.LOAD_CORE, command),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        self.sent += 10_000_000  # the next load's miss bodies start past this one's
        result = json.loads(done.stdout)
        if result.get("failures"):
            raise RuntimeError(
                f"{kind}: {result['failures']} bad answers: {result['first_failure']}"
            )
        return result

    def measure(self) -> dict:
        args, bench = self.args, self.bench
        results: dict = {"mode": bench.mode(), "load_before": os.getloadavg()[0]}
        harness.log("migrating")
        bench.manage("manage.py", "migrate", "--noinput")
        up_port = harness.free_port()
        results["upstream"] = bench.start_upstream(up_port)
        fixture = json.loads(
            bench.manage(
                "bench/setup_bench.py", "setup", "--upstream", f"http://127.0.0.1:{up_port}"
            ).splitlines()[-1]
        )
        bench.manage("bench/setup_bench.py", "cache", "--enabled", "1")
        self.gateway, model = bench.start_gateway("gateway", harness.ROOT, fixture)
        gateway = {"port": model.port, "path": model.path, "model": model.model, "key": model.token}
        direct = {
            "port": up_port,
            "path": "/v1/chat/completions",
            "model": fixture["upstream_model"],
            "key": fixture["upstream_secret"],
        }
        harness.log("warm-up (and the hit body's first, storing call)")
        for kind in ("miss", "bypass"):
            self.load(gateway, kind, "latency", n=200, warmup=0)
        self.load(gateway, "miss", "latency", n=1, warmup=0, start=0)  # stores body 0
        self.load(direct, "direct", "latency", n=200, warmup=0)

        rounds = []
        for number in range(1, args.rounds + 1):
            harness.log(f"round {number}: direct, bypass, miss, hit ({args.requests} calls each)")
            row = {}
            row["direct"] = self.load(direct, "direct", "latency", n=args.requests, warmup=10)
            for kind in KINDS:
                cpu = self.gateway.cpu_seconds()
                row[kind] = self.load(gateway, kind, "latency", n=args.requests, warmup=10)
                row[kind]["cpu_ms"] = (
                    (self.gateway.cpu_seconds() - cpu) * 1000 / (args.requests + 10)
                )
            rounds.append(row)
        results["rounds"] = rounds
        results["latency"] = {
            kind: {
                "p50": statistics.median(r[kind]["total_ms"]["p50"] for r in rounds),
                "p99": statistics.median(r[kind]["total_ms"]["p99"] for r in rounds),
                "overhead_p50": (
                    statistics.median(r[kind]["overhead_ms"]["p50"] for r in rounds)
                    if kind != "direct"
                    else None
                ),
                "cpu_ms": statistics.median(r[kind]["cpu_ms"] for r in rounds)
                if kind != "direct"
                else None,
            }
            for kind in ("direct", *KINDS)
        }
        saturation: dict[str, list[dict]] = {kind: [] for kind in KINDS}
        for number in range(args.rounds):
            # Each round in another order: what runs first on a shared machine runs best.
            order = KINDS[number % 3 :] + KINDS[: number % 3]
            for kind in order:
                harness.log(
                    f"saturation round {number + 1}: {kind} "
                    f"({args.connections} connections, {args.duration} s)"
                )
                result = self.load(
                    gateway, kind, "saturate", connections=args.connections, duration=args.duration
                )
                if result["non_200"] or result["errors"]:
                    raise RuntimeError(f"{kind} at saturation had failures: {result}")
                saturation[kind].append(result)
        results["saturation"] = saturation
        results["load_after"] = os.getloadavg()[0]
        return results

    def cleanup(self) -> None:
        for server in self.bench.servers:
            server.stop()
        try:
            self.bench.manage("bench/setup_bench.py", "reset")
            self.bench.drop_usage_stream()
        except Exception as exc:  # noqa: BLE001 - cleanup must not hide the run's own error
            harness.log(f"cleanup failed: {exc}")


def render(r: dict, args: argparse.Namespace) -> str:
    lat, sat = r["latency"], r["saturation"]
    base = lat["bypass"]
    lines = [
        f"Inferia response cache benchmark: {r['mode']}; upstream: {r['upstream']}; gateway: "
        f"one uvicorn worker on one core; load average {r['load_before']:.1f} before, "
        f"{r['load_after']:.1f} after.",
        "",
        f"Latency at concurrency 1: median of {args.rounds} alternating rounds of "
        f"{args.requests} calls per kind (ms). Added: over the bypass (cache-off) path.",
        "",
        "| Calls | p50 | p99 | gateway overhead p50 | server CPU per call | added p50 | added p99 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| direct upstream (reference) | {lat['direct']['p50']:.3f} | "
        f"{lat['direct']['p99']:.3f} | | | | |",
    ]
    for kind in KINDS:
        row = lat[kind]
        lines.append(
            f"| {kind} | {row['p50']:.3f} | {row['p99']:.3f} | {row['overhead_p50']:.3f} | "
            f"{row['cpu_ms']:.3f} | {row['p50'] - base['p50']:+.3f} | "
            f"{row['p99'] - base['p99']:+.3f} |"
        )
    lines += [
        "",
        f"Requests/s at saturation: {args.connections} connections, closed loop; median of "
        f"{args.rounds} rounds of {args.duration:.0f} s per kind, in rotating order.",
        "",
        "| Calls | requests/s | p50 (ms) | p99 (ms) | requests/s of each round |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for kind in KINDS:
        runs = sat[kind]
        each = ", ".join(f"{x['rps']:.0f}" for x in runs)
        lines.append(
            f"| {kind} | {statistics.median(x['rps'] for x in runs):.0f} | "
            f"{statistics.median(x['p50_ms'] for x in runs):.2f} | "
            f"{statistics.median(x['p99_ms'] for x in runs):.2f} | "
            f"{each} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    child = sub.add_parser("load", help="(internal) one kind of calls, on the load core")
    child.add_argument("--mode", choices=("latency", "saturate"), required=True)
    child.add_argument("--kind", choices=(*KINDS, "direct"), required=True)
    child.add_argument("--port", type=int, required=True)
    child.add_argument("--path", required=True)
    child.add_argument("--model", required=True)
    child.add_argument("--key", required=True)
    child.add_argument("--nonce", required=True)
    child.add_argument("--start", type=int, default=1)
    child.add_argument("--n", type=int, default=1000)
    child.add_argument("--warmup", type=int, default=10)
    child.add_argument("--connections", type=int, default=32)
    child.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1000, help="calls per round and kind")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds at saturation")
    parser.add_argument("--upstream", choices=("auto", "nginx", "python"), default="auto")
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.command == "load":
        if args.mode == "latency":
            print(json.dumps(latency(args)))
        else:
            print(json.dumps(asyncio.run(_saturate(args))))
        return
    if not os.environ.get("REDIS_URL"):
        parser.error("the response cache needs Redis: set REDIS_URL (the benchmark's own db)")
    args.soak = 0
    run = Run(args)
    try:
        results = run.measure()
    finally:
        run.cleanup()
    report = render(results, args)
    print(report)
    if args.markdown:
        args.markdown.write_text(report)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
