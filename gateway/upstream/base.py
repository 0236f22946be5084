"""Shared pieces of the upstream adapters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True)
class UpstreamCall:
    url: str
    headers: dict[str, str]
    body: dict[str, Any]
    # Set when the gateway asked for usage the client did not: strip that chunk.
    strip_usage_chunk: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def join(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def sse(data: dict[str, Any] | str) -> bytes:
    """One server-sent event; a dict as compact JSON (orjson: once per streamed chunk)."""
    payload = data.encode() if isinstance(data, str) else orjson.dumps(data)
    return b"data: " + payload + b"\n\n"


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str | None, str]]:
    """Parse server-sent events from text lines into (event name, data) pairs."""
    event: str | None = None
    data: list[str] = []
    async for line in lines:
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:
        yield event, "\n".join(data)
