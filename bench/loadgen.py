"""The benchmark's load generator: a minimal keep-alive HTTP/1.1 client on raw sockets.

Runs as its own process (``bench/run.py`` pins it to core 1) and prints JSON:

    python bench/loadgen.py latency --port 8000 --request req.bin -n 2000
    python bench/loadgen.py saturate --port 8000 --request req.bin --connections 64 --duration 10

``latency`` sends one request at a time and times each: to the end of the
response and to its first body chunk (for a streamed answer, the first
server-sent event). ``saturate`` is the fallback when ``wrk`` is not installed.
``rate`` offers a fixed request rate (open loop, ``--rps``) and times each request
from when it was due, for the latency at a given fraction of saturation.
The request file holds the exact bytes to send (headers and body), so the
client does the same small amount of work for every target it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time
from pathlib import Path


class Response:
    __slots__ = ("status", "headers", "body", "first_body_at", "done_at")

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.first_body_at = 0.0
        self.done_at = 0.0


class Connection:
    """One persistent connection; reconnects when the server closes it."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.address = (host, port)
        self.sock: socket.socket | None = None
        self.buf = bytearray()

    def _connect(self) -> None:
        self.sock = socket.create_connection(self.address, timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def _take_line(self) -> bytes:
        while True:
            index = self.buf.find(b"\r\n")
            if index >= 0:
                line = bytes(self.buf[:index])
                del self.buf[: index + 2]
                return line
            self._fill()

    def _take(self, size: int) -> bytes:
        while len(self.buf) < size:
            self._fill()
        data = bytes(self.buf[:size])
        del self.buf[:size]
        return data

    def roundtrip(self, raw: bytes) -> Response:
        if self.sock is None:
            self._connect()
        self.sock.sendall(raw)
        response = Response()
        while True:
            index = self.buf.find(b"\r\n\r\n")
            if index >= 0:
                break
            self._fill()
        head = bytes(self.buf[:index]).decode("latin-1").split("\r\n")
        del self.buf[: index + 4]
        response.status = int(head[0].split(" ", 2)[1])
        for line in head[1:]:
            name, _, value = line.partition(":")
            response.headers[name.strip().lower()] = value.strip()
        chunks = []
        if "content-length" in response.headers:
            length = int(response.headers["content-length"])
            if length:
                if not self.buf:
                    self._fill()
                response.first_body_at = time.perf_counter()
                chunks.append(self._take(length))
        elif response.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self._take_line().split(b";", 1)[0], 16)
                if size == 0:
                    while self._take_line():  # trailers, then the blank line
                        pass
                    break
                if not response.first_body_at:
                    if not self.buf:
                        self._fill()
                    response.first_body_at = time.perf_counter()
                chunks.append(self._take(size))
                self._take(2)
        else:  # body delimited by the end of the connection
            try:
                while True:
                    self._fill()
                    if not response.first_body_at:
                        response.first_body_at = time.perf_counter()
            except ConnectionError:
                pass
            chunks.append(bytes(self.buf))
            self.buf = bytearray()
            response.headers["connection"] = "close"
        response.done_at = time.perf_counter()
        response.body = b"".join(chunks)
        if response.headers.get("connection", "").lower() == "close":
            self.close()
        return response

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "mean": sum(values) / len(values) if values else float("nan"),
        "min": min(values) if values else float("nan"),
        "max": max(values) if values else float("nan"),
    }


def latency(port: int, raw: bytes, n: int, warmup: int, expect: bytes | None) -> dict:
    conn = Connection(port)
    statuses: dict[int, int] = {}
    total, first, overhead = [], [], []
    bad = 0
    first_failure = ""
    for i in range(warmup + n):
        started = time.perf_counter()
        response = conn.roundtrip(raw)
        if i < warmup:
            continue
        statuses[response.status] = statuses.get(response.status, 0) + 1
        if response.status != 200 or (expect is not None and expect not in response.body):
            bad += 1
            first_failure = first_failure or f"{response.status}: {response.body[:300]!r}"
            continue
        total.append((response.done_at - started) * 1000)
        first.append((response.first_body_at - started) * 1000)
        if "x-inferia-overhead-ms" in response.headers:
            overhead.append(float(response.headers["x-inferia-overhead-ms"]))
    conn.close()
    return {
        "statuses": statuses,
        "failures": bad,
        "first_failure": first_failure,
        "total_ms": summary(total),
        "first_chunk_ms": summary(first),
        "reported_overhead_ms": summary(overhead) if overhead else None,
    }


async def _exchange(reader, writer, raw: bytes) -> tuple[int, bool]:
    """Send one request and read its answer: (status, the server closes the connection)."""
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    else:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status, headers.get("connection", "").lower() == "close"


async def _open(port: int):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def _connection(port: int, raw: bytes, start, counts: dict, latencies: list) -> int:
    """One connection's requests, each timed from ``await start()`` (``None``: stop);
    returns how many it sent."""
    reader, writer = await _open(port)
    sent = 0
    try:
        while (started := await start()) is not None:
            sent += 1
            status, closing = await _exchange(reader, writer, raw)
            counts["ok" if status == 200 else "bad"] += 1
            latencies.append(time.perf_counter() - started)
            if closing:
                writer.close()
                reader, writer = await _open(port)
    finally:
        writer.close()
    return sent


async def _rate(port: int, raw: bytes, connections: int, rate: float, duration: float) -> dict:
    """Open loop: ``rate`` requests/s on a fixed schedule over ``connections`` connections
    (a schedule, not a closed loop, so a stall cannot slow the offered load down and hide
    itself: the coordinated-omission correction)."""
    counts = {"ok": 0, "bad": 0}
    latencies: list[float] = []
    queue: asyncio.Queue = asyncio.Queue()
    # A latency runs from the scheduled time, so a slow answer delays (and is charged
    # for) the requests queued behind it.
    workers = [
        asyncio.ensure_future(_connection(port, raw, queue.get, counts, latencies))
        for _ in range(connections)
    ]
    started = time.perf_counter() + 0.05
    total = int(rate * duration)
    for i in range(total):
        scheduled = started + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(scheduled)
    for _ in workers:
        queue.put_nowait(None)
    results = await asyncio.gather(*workers, return_exceptions=True)
    elapsed = time.perf_counter() - started
    return _summary(counts, latencies, elapsed, results, tool="python open loop") | {
        "offered_rps": rate
    }


def _summary(counts: dict, latencies: list, elapsed: float, results: list, tool: str) -> dict:
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    ms = [x * 1000 for x in latencies]
    return {
        "requests": counts["ok"] + counts["bad"],
        "non_200": counts["bad"],
        "seconds": elapsed,
        "rps": counts["ok"] / elapsed,
        "errors": errors[:3],
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "p999_ms": percentile(ms, 99.9),
        "max_ms": max(ms) if ms else float("nan"),
        "tool": tool,
    }


async def _saturate(port: int, raw: bytes, connections: int, duration: float) -> dict:
    counts = {"ok": 0, "bad": 0}
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + duration

    async def now() -> float | None:
        moment = time.perf_counter()
        return moment if moment < deadline else None

    results = await asyncio.gather(
        *(_connection(port, raw, now, counts, latencies) for _ in range(connections)),
        return_exceptions=True,
    )
    out = _summary(counts, latencies, time.perf_counter() - started, results, tool="python")
    # Requests per connection: a starving connection stands out.
    served = [r for r in results if isinstance(r, int)] or [0]
    return out | {"per_connection_min": min(served), "per_connection_max": max(served)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("latency", "saturate", "rate"):
        p = sub.add_parser(name)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--request", type=Path, required=True, help="file with the raw HTTP request")
        if name == "latency":
            p.add_argument("-n", type=int, default=2000)
            p.add_argument("--warmup", type=int, default=100)
            p.add_argument("--expect", default=None, help="bytes every 200 body must contain")
        else:
            p.add_argument("--connections", type=int, default=64)
            p.add_argument("--duration", type=float, default=10.0)
        if name == "rate":
            p.add_argument("--rps", type=float, required=True, help="offered requests/s")
    args = parser.parse_args()
    raw = args.request.read_bytes()
    if args.command == "latency":
        result = latency(
            args.port, raw, args.n, args.warmup, args.expect.encode() if args.expect else None
        )
    elif args.command == "rate":
        result = asyncio.run(_rate(args.port, raw, args.connections, args.rps, args.duration))
    else:
        result = asyncio.run(_saturate(args.port, raw, args.connections, args.duration))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
