"""The gateway's two Redis round trips, side by side: Inferia's own client vs redis.asyncio.

    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/redis_clients.py [--requests N]

One "request" is what the gateway's hot path sends: the limit script (EVALSHA
with the org epoch plus four counters, five keys, the store's real script),
then one pipeline of INCRBY settlements and an XADD of a ~600-byte usage entry.
Each client runs under uvloop at concurrency 1 and 32 (tasks sharing the
client), alternating runs (``--rounds``, median shown). CPU is the process's
CPU time per request (client + event loop, no Redis server), wall the elapsed
time per request. Only the bench's own keys are written and deleted after.
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

import django  # noqa: E402

django.setup()

import redis.asyncio as redis_asyncio  # noqa: E402
import uvloop  # noqa: E402

from inferia.store import client as store_client  # noqa: E402
from inferia.store.redis_store import WINDOW_SCRIPT  # noqa: E402

TAG = "inferia:{bench-org}"
KEYS = [f"{TAG}:epoch"] + [f"{TAG}:rl:bench:{i}" for i in range(4)]
# expected epoch -1 (not checked), count, four counters (limit, amount, ttl ms).
ARGS = [-1, 1, 4] + [10**12, 1, 65_000] * 4
STREAM = f"{TAG}:bench-usage"
ENTRY = b'{"id":"' + b"0" * 36 + b'","payload":"' + b"x" * 540 + b'"}'  # ~600 bytes
SETTLE = [(KEYS[2], -3), (KEYS[3], 5)]


async def _ours(url: str, requests: int, concurrency: int) -> tuple[float, float]:
    client = store_client.connect(url)
    script = WINDOW_SCRIPT

    async def one() -> None:
        await client.run_script(script, KEYS, ARGS)
        await client.pipeline(
            [*(("INCRBY", k, d) for k, d in SETTLE), ("XADD", STREAM, "*", "entry", ENTRY)]
        )

    await one()
    result = await _timed(one, requests, concurrency)
    await client.execute("DEL", STREAM, *KEYS)
    client.close()
    return result


async def _redis_py(url: str, requests: int, concurrency: int) -> tuple[float, float]:
    client = redis_asyncio.Redis.from_url(url, max_connections=max(2, concurrency))
    script = client.register_script(WINDOW_SCRIPT.source)

    async def one() -> None:
        await script(keys=KEYS, args=ARGS)
        async with client.pipeline(transaction=False) as pipe:
            for key, delta in SETTLE:
                pipe.incrby(key, delta)
            pipe.xadd(STREAM, {"entry": ENTRY})
            await pipe.execute()

    await one()
    result = await _timed(one, requests, concurrency)
    await client.delete(STREAM, *KEYS)
    await client.aclose()
    return result


async def _timed(one, requests: int, concurrency: int) -> tuple[float, float]:
    per_task = requests // concurrency

    async def worker() -> None:
        for _ in range(per_task):
            await one()

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    done = per_task * concurrency
    return (time.process_time() - cpu0) / done * 1e6, (time.perf_counter() - wall0) / done * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    clients = {"Inferia's client (inferia.store)": _ours, "redis.asyncio 6.2 + hiredis": _redis_py}
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for _round in range(options.rounds):
        for concurrency in (1, 32):
            for name, run in clients.items():
                measured = uvloop.run(run(options.url, options.requests, concurrency))
                results.setdefault((name, concurrency), []).append(measured)
    print(
        f"Redis round trips per gateway request (limit script + settle/XADD pipeline), "
        f"{options.requests} requests x {options.rounds} alternating rounds, median, uvloop"
    )
    print(f"{'client':36} {'conc':>4} {'CPU us/req':>11} {'wall us/req':>12}")
    medians = {}
    for (name, concurrency), runs in results.items():
        cpu = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        medians[(name, concurrency)] = cpu
        print(f"{name:36} {concurrency:>4} {cpu:>11.1f} {wall:>12.1f}")
    ours, theirs = clients
    for concurrency in (1, 32):
        ratio = medians[(theirs, concurrency)] / medians[(ours, concurrency)]
        print(f"concurrency {concurrency}: redis.asyncio uses {ratio:.2f}x the CPU of ours")


if __name__ == "__main__":
    main()
