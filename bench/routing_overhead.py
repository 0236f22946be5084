"""What routing a call to ``deployment/<name>`` adds to a warm request, per strategy.

    .venv/bin/python bench/routing_overhead.py [--calls 20000]

A warm deployment call does, beyond a direct model's: the deployment lookup and its
worst-case cost, the breakers from the process's copy (``deployments.health.states``,
no round trip within its second), the plan (``deployments.routing.plan``), the
in-flight and latency bookkeeping, the per-target deadline around the upstream call
and the success note (no write while the breaker is closed). This runs exactly those
steps on the event loop for a three-target deployment and prints the added time per
call (p50, p99) for each strategy; it exits 1 when a p50 is above 0.1 ms (the
issue's budget). The upstream call itself is the same for both paths and is left out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inferia.settings")
os.environ.setdefault("INFERIA_PRINT_CONFIG", "0")

import django  # noqa: E402

django.setup()

from deployments import config, health, routing  # noqa: E402
from gateway.app import _within  # noqa: E402
from gateway.principals import Route  # noqa: E402
from inferia import clock  # noqa: E402
from inferia.store.breaker import BreakerState  # noqa: E402

BUDGET_MS = 0.1


def _deployment(strategy: str) -> routing.DeploymentRoute:
    document = {
        "strategy": strategy,
        "targets": [
            {"name": f"t{i}", "account": "acct", "model": f"m{i}", "priority": i, "weight": 1}
            for i in range(3)
        ],
    }
    parsed = config.parse(document)
    targets = tuple(
        routing.TargetRoute(
            target=t,
            route=Route(
                fqn="deployment/bench",
                org_id="org",
                account_id=1,
                account_name="acct",
                provider_type="openai",
                base_url="http://127.0.0.1:9/v1",
                api_version="",
                deployments={},
                upstream_model=t.model,
                input_price_per_million=1.0,
                output_price_per_million=2.0,
                secret_version="v",  # noqa: S106 - a version tag, not a secret
            ),
        )
        for t in parsed.targets
    )
    return routing.DeploymentRoute(
        deployment_id=f"bench-{strategy}",
        org_id="org",
        name="bench",
        version=1,
        status="ready",
        config=parsed,
        targets=targets,
    )


async def _upstream() -> None:
    """Stands in for the upstream call (the same on both paths)."""


async def _routed(deployment: routing.DeploymentRoute, deployments: dict) -> None:
    found = deployments.get(deployment.fqn)
    found.max_cost_micros(100, 16)
    states = await health.states(found)
    plan = routing.plan(found, states=states, now=clock.time(), quota_percent=None)
    target = plan.candidates[0]
    headers = {"X-Inferia-Target": target.name}
    routing.began(found, target)
    try:
        loop = asyncio.get_running_loop()
        await _within(loop.time() + target.target.timeout_seconds, _upstream())
    finally:
        routing.ended(found, target)
    routing.observe_latency(found, target, 12.0)
    await health.succeeded(found, target, states.get(target.name), clock.time())
    del headers


async def _direct() -> None:
    await _upstream()


async def _measure(calls: int) -> dict[str, tuple[float, float]]:
    results = {}
    for strategy in config.STRATEGIES:
        deployment = _deployment(strategy)
        # The process's copy of the breakers, as after the first call of the second.
        key = (str(deployment.org_id), deployment.deployment_id)
        health._STATES[key] = (time.monotonic() + 10**6, {"t0": BreakerState(known=True)})
        deployments = {deployment.fqn: deployment}
        added = []
        for _ in range(calls):
            started = time.perf_counter_ns()
            await _direct()
            direct = time.perf_counter_ns() - started
            started = time.perf_counter_ns()
            await _routed(deployment, deployments)
            added.append((time.perf_counter_ns() - started - direct) / 1e6)
        added.sort()
        results[strategy] = (statistics.median(added), added[int(len(added) * 0.99)])
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    results = asyncio.run(_measure(args.calls))
    print("| strategy | added p50 (ms) | added p99 (ms) |")
    print("| --- | --- | --- |")
    for strategy, (p50, p99) in results.items():
        print(f"| {strategy} | {p50:.4f} | {p99:.4f} |")
    over = [s for s, (p50, _p99) in results.items() if p50 > BUDGET_MS]
    if over:
        print(f"over the {BUDGET_MS} ms budget: {', '.join(over)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
