"""The gateway's upstream call, side by side: its own HTTP/1.1 client vs aiohttp.

    .venv/bin/python bench/upstream_clients.py [--requests N] [--rounds R]

Needs nginx (``bench/nginx_upstream.py`` serves the benchmark's chat answer, plain and
streamed, from static config). One "request" is what ``gateway/app.py`` does with the
upstream: POST the chat body with the provider's headers through the SSRF guard, then
read the answer whole (plain) or line by line (streamed). aiohttp runs with the options
the gateway used before issue 12 (a session without cookies, proxies from the environment
or a DNS cache, the same SSRF resolver), so the difference is the client. Each client
runs under uvloop at concurrency 1 and 64, alternating (``--rounds``, median shown), on
the core this process is pinned to (``taskset -c 0`` recommended; nginx inherits it).
CPU is this process's CPU time per request (nginx is another process).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inferia.settings")

import django  # noqa: E402

django.setup()

import uvloop  # noqa: E402

from bench import nginx_upstream  # noqa: E402
from gateway import http as ours  # noqa: E402

HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":16}'
ALLOWED = ("127.0.0.1",)


class AiohttpClient:
    """aiohttp as the gateway used it (one session per loop, the guarded resolver)."""

    def __init__(self) -> None:
        import aiohttp

        self.aiohttp = aiohttp
        self.session: aiohttp.ClientSession | None = None

    async def post(self, url: str, stream: bool) -> None:
        aiohttp = self.aiohttp
        if self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1000, limit_per_host=0, use_dns_cache=False),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
        ours._check_request(url, ALLOWED)  # the SSRF rule per request, as before
        response = await self.session.post(url, data=BODY, headers=HEADERS, allow_redirects=False)
        if stream:
            async for _chunk in response.content.iter_any():
                pass
            response.close()
        else:
            await response.read()
            response.release()

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


class OurClient:
    async def post(self, url: str, stream: bool) -> None:
        response = await ours.post(url, HEADERS, BODY, allowed_private_hosts=ALLOWED)
        if stream:
            async for _line in response.lines():
                pass
            response.close()
        else:
            await response.read()

    async def close(self) -> None:
        await ours.close_current()


async def measure(client, url: str, stream: bool, requests: int, concurrency: int) -> float:
    async def worker(count: int) -> None:
        for _ in range(count):
            await client.post(url, stream)

    await asyncio.gather(*(worker(50 // concurrency + 1) for _ in range(concurrency)))
    started = time.process_time()
    await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
    return (time.process_time() - started) / requests * 1e6


async def main(args, binary: str, work: Path) -> None:
    port = args.port
    nginx = subprocess.Popen([binary, "-c", str(work / "nginx.conf"), "-p", str(work)])
    try:
        await asyncio.sleep(0.5)
        plain = f"http://127.0.0.1:{port}/v1/chat/completions"
        streamed = f"http://127.0.0.1:{port}{nginx_upstream.STREAM_PREFIX}/v1/chat/completions"
        results: dict[tuple[str, str, int], list[float]] = {}
        for _round in range(args.rounds):
            for name, factory in (("aiohttp", AiohttpClient), ("Inferia's client", OurClient)):
                for kind, url in (("plain", plain), ("streamed", streamed)):
                    for concurrency in (1, 64):
                        client = factory()
                        try:
                            cpu = await measure(
                                client, url, kind == "streamed", args.requests, concurrency
                            )
                        finally:
                            await client.close()
                        results.setdefault((name, kind, concurrency), []).append(cpu)
        print("| client | answer | concurrency | CPU µs/request (median) |")
        print("| --- | --- | ---: | ---: |")
        for (name, kind, concurrency), values in results.items():
            print(f"| {name} | {kind} | {concurrency} | {statistics.median(values):.1f} |")
    finally:
        nginx.terminate()
        nginx.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=18555)
    arguments = parser.parse_args()
    nginx_binary = nginx_upstream.binary()
    if nginx_binary is None:
        sys.exit("nginx is not installed (apt-get install nginx-light)")
    work_dir = Path(tempfile.mkdtemp(prefix="inferia-bench-clients-"))
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
    # Captured before the loop starts (it runs the fake upstream's app in a loop of its own).
    (work_dir / "nginx.conf").write_text(nginx_upstream.config(arguments.port, work_dir, chat))
    uvloop.run(main(arguments, nginx_binary, work_dir))
