"""What observability costs the gateway: CPU seconds per request with it off and on.

    .venv/bin/python bench/observability.py                      # embedded (SQLite, no Redis)
    .venv/bin/python bench/observability.py --modes off,metrics --requests 3000 --rounds 5
    DATABASE_URL=postgres://... REDIS_URL=redis://.../8 .venv/bin/python bench/observability.py

One run starts one gateway server per mode side by side (uvicorn as ``manage.py
serve`` starts it, one worker each, on core 0) on one database, with the Python fake
upstream and the load generator on core 1. Each round drives the same fixed number of
non-streamed chat completions through every server in turn (bench/loadgen.py, one
connection, after a warm-up) and reads each server's user+system CPU seconds from
/proc/<pid>/stat before and after; the order of the servers alternates between
rounds. The result is the median CPU per request of each mode and its ratio to
``off``, checked against the budget (5%). The ``metrics`` server runs in
prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``), as
``manage.py serve`` runs it; its scrape is checked to have counted every request.

A mode is a name and the environment its server gets (``MODES``). The tracing modes
export every span (or a sampled tenth) over OTLP/HTTP to a local sink that accepts
and drops them (``--sink``, a process on the load core), as a collector would.

    .venv/bin/python bench/observability.py --modes off,metrics,tracing,tracing-10pct,all
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from run import LOAD_CORE, PY, ROOT, SERVER_CORE, Bench, Target, free_port, gateway_command

BUDGET = 0.05
SCRAPE_TOKEN = "bench-observability-scrape-token-0123456789"  # noqa: S105 - a local bench's
# Each mode: the environment of its gateway server (on top of the run's).
MODES: dict[str, dict[str, str]] = {
    "off": {"INFERIA_METRICS_ENABLED": "false"},
    "metrics": {"INFERIA_METRICS_ENABLED": "true", "INFERIA_METRICS_TOKEN": SCRAPE_TOKEN},
    # {sink}: the local OTLP sink's URL, known once it runs.
    "tracing": {"INFERIA_METRICS_ENABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "{sink}"},
    "tracing-10pct": {
        "INFERIA_METRICS_ENABLED": "false",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "{sink}",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    },
    "tracing-1pct": {
        "INFERIA_METRICS_ENABLED": "false",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "{sink}",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.01",
    },
    "all": {
        "INFERIA_METRICS_ENABLED": "true",
        "INFERIA_METRICS_TOKEN": SCRAPE_TOKEN,
        "OTEL_EXPORTER_OTLP_ENDPOINT": "{sink}",
    },
}


def sink(port: int) -> None:
    """An OTLP/HTTP endpoint that accepts every export, decodes it and counts the spans
    of each ``service.name`` (``GET /count``: a JSON object); it keeps nothing else."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    counts: dict[str, int] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # kept-alive, as the exporter's session expects

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            request = ExportTraceServiceRequest.FromString(
                self.rfile.read(int(self.headers.get("content-length") or 0))
            )
            for resource_spans in request.resource_spans:
                service = next(
                    (
                        a.value.string_value
                        for a in resource_spans.resource.attributes
                        if a.key == "service.name"
                    ),
                    "",
                )
                spans = sum(len(scope.spans) for scope in resource_spans.scope_spans)
                with lock:
                    counts[service] = counts.get(service, 0) + spans
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802 - readiness, and the counts
            with lock:
                body = json.dumps(counts).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def log(message: str) -> None:
    print(f"[observability {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _scraped_requests(port: int) -> float:
    page = httpx.get(
        f"http://127.0.0.1:{port}/metrics",
        headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"},
        timeout=30,
    )
    page.raise_for_status()
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        sample.value
        for family in text_string_to_metric_families(page.text)
        for sample in family.samples
        if sample.name == "inferia_gateway_requests_total"
    )


SPANS_PER_CALL = 5  # the root, authorize, limits, upstream, usage_write (docs/tracing.md)


def _check_spans(sink_url: str, modes: list[str], sent: dict[str, int]) -> None:
    """Every traced mode's spans reached the sink (sampled ones: about their share):
    a tracing path that dropped its spans would look cheap."""
    expected: dict[str, tuple[float, float]] = {}
    for mode in modes:
        if "OTEL_EXPORTER_OTLP_ENDPOINT" not in MODES[mode]:
            continue
        ratio = float(MODES[mode].get("OTEL_TRACES_SAMPLER_ARG", "1"))
        spans = sent[mode] * SPANS_PER_CALL * ratio
        # A ratio samples by trace id: within a few standard deviations of its share.
        slack = 0 if ratio == 1 else 5 * (sent[mode] * ratio * (1 - ratio)) ** 0.5 * SPANS_PER_CALL
        expected[f"bench-{mode}"] = (spans - slack, spans + slack)
    if not expected:
        return
    deadline = time.monotonic() + 30  # the exporters post every 5 s (OTEL_BSP_SCHEDULE_DELAY)
    while True:
        counts = httpx.get(f"{sink_url}/count", timeout=10).json()
        if all(low <= counts.get(s, 0) <= high for s, (low, high) in expected.items()):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"spans received {counts}, expected {expected}")
        time.sleep(1)
    for service in expected:
        log(f"{service}: the sink received {counts[service]} spans")


def recording_cost(calls: int = 50_000) -> float:
    """CPU seconds one ``inferia.metrics.gateway_call`` costs, in multiprocess mode on
    an event loop as the gateway runs it (its flushes included): the recording alone,
    free of the noise a whole request's CPU has on a shared machine. Runs in a child
    process (``--recording-cost``): prometheus_client reads ``PROMETHEUS_MULTIPROC_DIR``
    when first imported."""
    import asyncio
    import os
    from types import SimpleNamespace

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inferia.settings")
    import django

    django.setup()
    from inferia import metrics

    route = SimpleNamespace(
        fqn="bench-upstream/gpt-4o-mini",
        account_name="bench-upstream",
        cost_micros=lambda prompt, completion: int(prompt * 0.15 + completion * 0.6),
    )
    call = SimpleNamespace(
        started=0.0,
        endpoint="chat",
        status=200,
        error_code="",
        upstream_seconds=0.0004,
        principal=SimpleNamespace(org_slug="bench"),
        route=route,
        deployment_route=None,
        prompt_tokens=14,
        completion_tokens=6,
        cost=(14 * 0.15 + 6 * 0.6) / 1e6,
        refusal=None,
        degraded="",
    )

    async def run() -> float:
        for _ in range(1000):  # the series exist before the clock starts, as when warm
            metrics.gateway_call(call)
        started = time.process_time()
        for done in range(calls):
            call.started = time.perf_counter() - 0.0008
            metrics.gateway_call(call)
            if done % 2000 == 0:
                await asyncio.sleep(0)  # let the loop run the scheduled flushes
        metrics.flush()
        return (time.process_time() - started) / calls

    return asyncio.run(run())


def tracing_cost(endpoint: str, calls: int = 20_000) -> float:
    """CPU seconds one sampled request's tracing costs, in a process traced to the sink
    at ``endpoint``: ``gateway.spans.Trace`` through a call's steps as the gateway
    drives them (five spans, the upstream ``traceparent``), the encoding, and the
    batch thread's posts to the sink (process time counts every thread). Like
    ``recording_cost``, free of the noise of a whole request's CPU. The queue is made
    large enough that nothing is dropped (this loop makes spans far faster than a
    gateway serves requests); every span is checked to have been exported."""
    import asyncio
    import os
    from types import SimpleNamespace

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inferia.settings")
    import django

    django.setup()
    from gateway import spans
    from gateway.ratelimit import Decision
    from inferia import tracing

    tracing.configure(endpoint=endpoint, service_name="bench-tracing-cost")
    route = SimpleNamespace(
        fqn="bench-upstream/gpt-4o-mini",
        account_name="bench-upstream",
        provider_type="openai_compatible",
        upstream_model="gpt-4o-mini",
    )
    request = SimpleNamespace(
        headers={"content-type": "application/json", "authorization": "Bearer x"},
        method="POST",
        secure=False,
        path="/api/llm/v1/chat/completions",
        request_id="",
    )
    call = SimpleNamespace(
        request=request,
        endpoint="chat",
        upstream_endpoint="chat",
        deployment=None,
        target=None,
        status=200,
        principal=SimpleNamespace(org_slug="bench"),
        route=route,
        deployment_route=None,
        streamed=False,
        degraded="",
    )
    allowed = Decision(allowed=True)
    entry = {"prompt_tokens": 14, "completion_tokens": 6}

    async def decided() -> Decision:
        return allowed

    async def written() -> None:
        return None

    async def one(n: int) -> None:
        request.request_id = f"req_{n:026d}"
        trace = spans.Trace(call)  # type: ignore[arg-type]
        trace.authorize()
        trace.limits_begin(True)  # as gateway.app._limits_check
        trace.limits_end(await decided())
        upstream_call = SimpleNamespace(url="http://127.0.0.1:9/v1/chat/completions", headers={})
        trace.upstream_begin(call, route, upstream_call)  # type: ignore[arg-type]
        trace.upstream_end(200)
        await trace.recording(written(), entry, "usage")
        trace.finish(call)  # type: ignore[arg-type]

    async def untraced(n: int) -> None:
        """The same steps without their trace: what ``one`` costs beyond tracing."""
        request.request_id = f"req_{n:026d}"
        await decided()
        SimpleNamespace(url="http://127.0.0.1:9/v1/chat/completions", headers={})
        await written()

    async def timed(step) -> float:
        started = time.process_time()
        for n in range(calls):
            await step(n)
            if n % 500 == 0:
                await asyncio.sleep(0)
        tracing.force_flush()
        return (time.process_time() - started) / calls

    async def run() -> float:
        for n in range(1000):
            await one(n)
        tracing.force_flush()
        # Alternated, the medians: the difference is what tracing adds.
        traced, plain = [], []
        for _ in range(3):
            traced.append(await timed(one))
            plain.append(await timed(untraced))
        exporter = tracing._exporter
        expected = (1000 + 3 * calls) * SPANS_PER_CALL
        if exporter is None or exporter.dropped or exporter.exported != expected:
            raise RuntimeError(f"spans not all exported: {exporter and exporter.exported}")
        return statistics.median(traced) - statistics.median(plain)

    try:
        return asyncio.run(run())
    finally:
        tracing.reset()


def _alone(*args: str, env: dict[str, str]) -> float:
    """Run this script with ``args`` in a child process: the CPU seconds it reports."""
    done = subprocess.run(
        [PY, str(Path(__file__).resolve()), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode:
        raise RuntimeError(f"{args[0]} failed:\n{done.stderr[-3000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def main() -> int:
    if sys.argv[1:] == ["--recording-cost"]:
        print(json.dumps({"seconds": recording_cost()}))
        return 0
    if sys.argv[1:2] == ["--tracing-cost"]:
        print(json.dumps({"seconds": tracing_cost(sys.argv[2])}))
        return 0
    if sys.argv[1:2] == ["--sink"]:
        sink(int(sys.argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="off,metrics", help=f"of {', '.join(MODES)}")
    parser.add_argument("--requests", type=int, default=2000, help="per mode and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=200, help="per mode, before each round")
    parser.add_argument(
        "--prewarm", type=int, default=2000, help="per mode, once before the first round"
    )
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or "off" not in modes:
        parser.error(f"--modes: known {', '.join(MODES)}; 'off' is the baseline")
    # Bench's environment, load generator and server handling (bench/run.py).
    bench = Bench(argparse.Namespace(requests=args.requests, connections=1))
    try:
        log(f"work folder {bench.work}; {bench.mode()}")
        bench.manage("manage.py", "migrate", "--noinput")
        upstream_port = free_port()
        bench.start(
            "upstream",
            LOAD_CORE,
            [PY, "-m", "gateway.fake_upstream", "--port", str(upstream_port), "--no-record"],
            upstream_port,
        )
        fixture = json.loads(
            bench.manage(
                "bench/setup_bench.py", "setup", "--upstream", f"http://127.0.0.1:{upstream_port}"
            )
            .strip()
            .splitlines()[-1]
        )
        sink_port = free_port()
        bench.start(
            "otlp-sink",
            LOAD_CORE,
            [PY, str(Path(__file__).resolve()), "--sink", str(sink_port)],
            sink_port,
        )
        sink_url = f"http://127.0.0.1:{sink_port}"
        servers, targets = {}, {}
        for mode in modes:
            env = {
                **bench.env,
                **{k: v.replace("{sink}", sink_url) for k, v in MODES[mode].items()},
            }
            env["OTEL_SERVICE_NAME"] = f"bench-{mode}"  # the sink counts each mode's spans
            if env.get("INFERIA_METRICS_ENABLED") == "true":
                folder = bench.work / f"prometheus-{mode}"
                folder.mkdir()
                env["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
            port = free_port()
            servers[mode] = bench.start(
                f"gateway-{mode}",
                SERVER_CORE,
                gateway_command(port),
                port,
                env=env,
                ready_path="/healthz",
            )
            targets[mode] = Target(
                mode, port, "/api/llm/v1/chat/completions", fixture["model"], fixture["key"]
            )
        per_request: dict[str, list[float]] = {mode: [] for mode in modes}
        sent = {mode: 0 for mode in modes}
        # Every server in its steady state before any round counts (caches, pools).
        for mode in modes:
            bench.latency(targets[mode], n=args.prewarm, warmup=0)
            sent[mode] += args.prewarm
        for round_number in range(args.rounds):
            order = modes if round_number % 2 == 0 else list(reversed(modes))
            for mode in order:
                server = servers[mode]
                bench.latency(targets[mode], n=args.warmup, warmup=0)
                before = server.cpu_seconds()
                bench.latency(targets[mode], n=args.requests, warmup=0)
                used = server.cpu_seconds() - before
                sent[mode] += args.warmup + args.requests
                per_request[mode].append(used / args.requests)
                log(
                    f"round {round_number + 1} {mode}: {used:.2f} CPU s, "
                    f"{used / args.requests * 1e6:.0f} us/request"
                )
        for mode in modes:
            if MODES[mode].get("INFERIA_METRICS_ENABLED") == "true":
                counted = _scraped_requests(targets[mode].port)
                if counted != sent[mode]:
                    raise RuntimeError(f"{mode}: /metrics counted {counted} of {sent[mode]}")
                log(f"{mode}: /metrics counted all {sent[mode]:.0f} requests")
        _check_spans(sink_url, modes, sent)
        base = statistics.median(per_request["off"])
        print(f"\n{bench.mode()}; {args.rounds} rounds x {args.requests} requests per mode\n")
        print(
            "| mode | CPU per request (median) | rounds (us) | vs off (medians) "
            "| vs off (median of paired rounds) |"
        )
        print("| --- | --- | --- | --- | --- |")
        for mode in modes:
            median = statistics.median(per_request[mode])
            paired = statistics.median(
                m / o - 1 for m, o in zip(per_request[mode], per_request["off"], strict=True)
            )
            rounds = ", ".join(f"{v * 1e6:.0f}" for v in per_request[mode])
            print(
                f"| {mode} | {median * 1e6:.0f} us | {rounds} | "
                f"{'-' if mode == 'off' else f'{median / base - 1:+.1%}'} | "
                f"{'-' if mode == 'off' else f'{paired:+.1%}'} |"
            )
        over = False
        if "metrics" in modes:
            folder = bench.work / "prometheus-recording"
            folder.mkdir()
            cost = _alone(
                "--recording-cost",
                env={**bench.env, **MODES["metrics"], "PROMETHEUS_MULTIPROC_DIR": str(folder)},
            )
            share = cost / base
            over = share > BUDGET
            print(
                f"\nRecording alone (inferia.metrics.gateway_call, multiprocess mode): "
                f"{cost * 1e6:.1f} us per request = {share:.2%} of the off mode's "
                f"{base * 1e6:.0f} us; budget {BUDGET:.0%}: {'OVER' if over else 'within'}"
            )
        if any("OTEL_EXPORTER_OTLP_ENDPOINT" in MODES[mode] for mode in modes):
            cost = _alone(
                "--tracing-cost",
                sink_url,
                env={**bench.env, **MODES["off"], "OTEL_BSP_MAX_QUEUE_SIZE": "10000000"},
            )
            share = cost / base
            over = over or share > BUDGET
            print(
                f"Tracing alone (gateway.spans.Trace, every request sampled, exported to the "
                f"sink): {cost * 1e6:.1f} us per request = {share:.2%} of the off mode's "
                f"{base * 1e6:.0f} us; budget {BUDGET:.0%}: "
                f"{'OVER' if share > BUDGET else 'within'}"
            )
        return 1 if over else 0
    finally:
        for server in reversed(bench.servers):
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
