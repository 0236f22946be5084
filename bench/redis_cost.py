"""Redis commands, round trips and memory per gateway request, on a Redis of its own.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_inferia .venv/bin/python bench/redis_cost.py

Starts a private ``redis-server`` (a free port, no persistence: ``INFO`` counts the
whole server, so nothing else may use it), the fake upstream and the gateway
(``uvicorn inferia.asgi:application``, as ``bench/run.py`` does), creates the org
"bench" (``bench/setup_bench.py``), warms the key up, then sends ``--requests``
chat completions one at a time and reads from Redis: commands by name
(``INFO commandstats``) and ``used_memory`` before and after (the usage
stream grows by one entry a request until a worker ingests it). Drops the bench
org at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time

import httpx
import redis
from run import PLAIN_BODY, PY, Bench, Server, free_port, gateway_command, log  # bench/run.py


def _commandstats(client: redis.Redis) -> dict[str, int]:
    return {
        name.removeprefix("cmdstat_"): stats["calls"]
        for name, stats in client.info("commandstats").items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if not shutil.which("redis-server"):
        sys.exit("bench/redis_cost.py needs redis-server on PATH (apt-get install redis-server)")

    bench = Bench(argparse.Namespace(keep=args.keep))
    redis_port = free_port()
    bench.env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    redis_server = Server(
        "redis",
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        bench.env,
        bench.work,
        redis_port,
    )
    bench.servers.append(redis_server)
    try:
        private = redis.Redis(port=redis_port, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                private.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        log("migrating")
        bench.manage("manage.py", "migrate", "--noinput")
        up_port = free_port()
        bench.start(
            "fake-upstream",
            "0-1",
            [PY, "-m", "gateway.fake_upstream", "--port", str(up_port), "--no-record"],
            up_port,
        )
        fixture = json.loads(
            bench.manage(
                "bench/setup_bench.py", "setup", "--upstream", f"http://127.0.0.1:{up_port}"
            ).splitlines()[-1]
        )
        gw_port = free_port()
        bench.start("gateway", "0-1", gateway_command(gw_port), gw_port, ready_path="/healthz")
        body = {"model": fixture["model"], **PLAIN_BODY}
        headers = {"Authorization": f"Bearer {fixture['key']}"}
        url = f"http://127.0.0.1:{gw_port}/api/llm/v1/chat/completions"
        with httpx.Client(timeout=30) as client:

            def call() -> None:
                response = client.post(url, json=body, headers=headers)
                if response.status_code != 200:
                    raise RuntimeError(f"gateway answered {response.status_code}: {response.text}")

            for _ in range(20):  # warm: principal cached, scripts loaded, windows created
                call()
            before, memory_before = _commandstats(private), private.info("memory")
            for _ in range(args.requests):
                call()
            after, memory_after = _commandstats(private), private.info("memory")
        calls = {
            name: after[name] - before.get(name, 0)
            for name in after
            if after[name] - before.get(name, 0) and name not in ("info",)
        }
        per_request = {
            name: round(count / args.requests, 3) for name, count in sorted(calls.items())
        }
        grown = int(memory_after["used_memory"]) - int(memory_before["used_memory"])
        result = {
            "requests": args.requests,
            "redis_commands_per_request": round(sum(calls.values()) / args.requests, 3),
            "by_command": per_request,
            "used_memory_growth_bytes_per_request": round(grown / args.requests),
            "used_memory_mib_after": round(int(memory_after["used_memory"]) / 2**20, 2),
        }
        print(json.dumps(result))
    finally:
        if not args.keep:
            try:
                bench.manage("bench/setup_bench.py", "reset")
            except Exception as exc:  # noqa: BLE001 - cleanup must not hide the run's own error
                log(f"cleanup failed: {exc}")
        bench.stop_all()


if __name__ == "__main__":
    main()
