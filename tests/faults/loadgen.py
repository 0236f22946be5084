"""The fault suite's load generator: a separate process, sustained concurrent load,
and its own log of every answer.

    python tests/faults/loadgen.py --base http://127.0.0.1:8000 --seconds 60 \
        --concurrency 4 --prefix run1 --log answers.jsonl --mix mix.json

``mix.json`` is a list of kinds of call, taken in turn (a kind with ``weight`` 3
comes three times in each round)::

    [{"name": "deny", "key": "ifr_...", "model": "acct/gpt-4o-mini", "stream": false}]

Every call carries a unique ``X-Request-ID`` (``<prefix>-<n>``) and is logged as
one JSON line, written and flushed as soon as its answer is complete (a line
per call survives the generator being stopped): the request id, the kind, the
status (0 when no HTTP answer came: connection refused or dropped), when it was
sent and answered (Unix seconds), the error envelope's ``code`` and
``message`` and whether the envelope had the contract's shape, and for a stream whether an error event
came instead of ``[DONE]``. No Django: it talks HTTP like any client.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import time
from pathlib import Path

import httpx

ENVELOPE_KEYS = {"code", "message", "details", "type"}


def _envelope(response: httpx.Response) -> tuple[str, str, bool]:
    """(error code, message, whether the body is the contract's JSON envelope)."""
    if not response.headers.get("content-type", "").startswith("application/json"):
        return "", "", False
    try:
        body = response.json()
    except ValueError:
        return "", "", False
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or set(body) != {"error"}:
        return "", "", False
    shaped = set(error) == ENVELOPE_KEYS and isinstance(error.get("message"), str)
    return str(error.get("code", "")), str(error.get("message", ""))[:300], shaped


async def _call(client: httpx.AsyncClient, kind: dict, rid: str) -> dict:
    body = {
        "model": kind["model"],
        "messages": [{"role": "user", "content": kind.get("prompt", "hello there")}],
        "max_tokens": kind.get("max_tokens", 8),
    }
    if kind.get("stream"):
        body["stream"] = True
    headers = {"Authorization": f"Bearer {kind['key']}", "X-Request-ID": rid}
    line: dict = {"rid": rid, "kind": kind["name"], "sent": time.time()}
    try:
        if kind.get("stream"):
            async with client.stream(
                "POST", "/api/llm/v1/chat/completions", json=body, headers=headers
            ) as response:
                raw = await response.aread()
            line["status"] = response.status_code
            if response.status_code == 200:
                text = raw.decode("utf-8", errors="replace")
                line["stream_error"] = '"error"' in text and "[DONE]" not in text
                line["stream_done"] = "[DONE]" in text
            else:
                line["code"], line["message"], line["envelope"] = _envelope(response)
        else:
            response = await client.post("/api/llm/v1/chat/completions", json=body, headers=headers)
            line["status"] = response.status_code
            if response.status_code >= 400:
                line["code"], line["message"], line["envelope"] = _envelope(response)
            line["bytes"] = len(response.content)
        line["echoed"] = response.headers.get("x-request-id") == rid
    except httpx.HTTPError as exc:
        line["status"] = 0
        line["error"] = type(exc).__name__
    line["answered"] = time.time()
    return line


async def run(args: argparse.Namespace) -> dict:
    kinds = json.loads(Path(args.mix).read_text())
    schedule = itertools.cycle([kind for kind in kinds for _ in range(int(kind.get("weight", 1)))])
    counter = itertools.count()
    fd = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    deadline = time.monotonic() + args.seconds
    statuses: dict[int, int] = {}

    async def worker() -> None:
        async with httpx.AsyncClient(
            base_url=args.base, timeout=args.timeout, limits=httpx.Limits(max_connections=1)
        ) as client:
            while time.monotonic() < deadline:
                kind = next(schedule)
                line = await _call(client, kind, f"{args.prefix}-{next(counter)}")
                statuses[line["status"]] = statuses.get(line["status"], 0) + 1
                os.write(fd, (json.dumps(line) + "\n").encode())
                if line["status"] == 0:
                    await asyncio.sleep(0.05)  # the server is down: do not spin

    try:
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    finally:
        os.close(fd)
    return {"calls": sum(statuses.values()), "statuses": statuses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the web process, http://127.0.0.1:PORT")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--prefix", required=True, help="request ids are <prefix>-<n>")
    parser.add_argument("--log", required=True, help="JSON lines, one per answer")
    parser.add_argument("--mix", required=True, help="JSON file: the kinds of call")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
