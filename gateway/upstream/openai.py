"""OpenAI and OpenAI-compatible servers (vLLM, Ollama, TGI): the wire format is ours."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.upstream.base import UpstreamCall, join, sse, sse_events

PATHS = {"chat": "chat/completions", "completions": "completions", "embeddings": "embeddings"}


def prepare(
    route, endpoint: str, body: dict[str, Any], secret_plaintext: str | None
) -> UpstreamCall:
    upstream_body = dict(body)
    upstream_body["model"] = route.upstream_model
    strip = False
    if body.get("stream") and endpoint in ("chat", "completions"):
        options = dict(body.get("stream_options") or {})
        if not options.get("include_usage"):
            options["include_usage"] = True
            strip = True
        upstream_body["stream_options"] = options
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if secret_plaintext:
        headers["Authorization"] = f"Bearer {secret_plaintext}"
    return UpstreamCall(
        url=join(route.base_url, PATHS[endpoint]),
        headers=headers,
        body=upstream_body,
        strip_usage_chunk=strip,
    )


def to_openai(route, endpoint: str, data: dict[str, Any]) -> dict[str, Any]:
    if isinstance(data, dict) and "model" in data:
        data["model"] = route.fqn
    return data


async def stream_to_openai(
    route, call: UpstreamCall, lines: AsyncIterator[str], usage: dict
) -> AsyncIterator[bytes]:
    """Relay OpenAI SSE events as they come; note usage; drop a usage chunk we asked for."""
    async for _event, data in sse_events(lines):
        if data == "[DONE]":
            yield sse("[DONE]")
            return
        try:
            chunk = orjson.loads(data)
        except ValueError:
            continue
        if chunk.get("usage"):
            usage.update(chunk["usage"])
            if call.strip_usage_chunk and not chunk.get("choices"):
                continue
            if call.strip_usage_chunk:
                chunk.pop("usage", None)
        if "model" in chunk:
            chunk["model"] = route.fqn
        yield sse(chunk)
