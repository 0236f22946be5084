"""Anthropic: chat completions translated to and from the Messages API (streaming too)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from gateway.upstream.base import UpstreamCall, join, sse, sse_events
from inferia.errors import ValidationError

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024
# Keyed by what the upstream sent, which may be missing (None).
STOP_REASONS: dict[str | None, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def prepare(
    route, endpoint: str, body: dict[str, Any], secret_plaintext: str | None
) -> UpstreamCall:
    if endpoint != "chat":
        raise ValidationError(f"Anthropic accounts serve chat completions only, not {endpoint}")
    system = [
        _text(m.get("content")) for m in body.get("messages", []) if m.get("role") == "system"
    ]
    messages = [
        {"role": m.get("role"), "content": _text(m.get("content"))}
        for m in body.get("messages", [])
        if m.get("role") in ("user", "assistant")
    ]
    upstream: dict[str, Any] = {
        "model": route.upstream_model,
        "messages": messages,
        "max_tokens": body.get("max_tokens")
        or body.get("max_completion_tokens")
        or DEFAULT_MAX_TOKENS,
    }
    if system:
        upstream["system"] = "\n".join(system)
    for name in ("temperature", "top_p", "top_k"):
        if body.get(name) is not None:
            upstream[name] = body[name]
    if body.get("stop"):
        stop = body["stop"]
        upstream["stop_sequences"] = stop if isinstance(stop, list) else [stop]
    if body.get("stream"):
        upstream["stream"] = True
    headers = {"Content-Type": "application/json", "anthropic-version": API_VERSION}
    if secret_plaintext:
        headers["x-api-key"] = secret_plaintext
    path = "messages" if route.base_url.rstrip("/").endswith("/v1") else "v1/messages"
    return UpstreamCall(url=join(route.base_url, path), headers=headers, body=upstream)


def _choice(choice: dict[str, Any], reason: str | None, sequence: Any) -> dict[str, Any]:
    """The choice with its ``finish_reason``; the stop sequence that matched, if one did,
    as ``stop_reason`` (as vLLM reports it), so a Messages client learns it."""
    choice["finish_reason"] = STOP_REASONS.get(reason, "stop")
    if reason == "stop_sequence" and isinstance(sequence, str):
        choice["stop_reason"] = sequence
    return choice


def to_openai(route, endpoint: str, data: dict[str, Any]) -> dict[str, Any]:
    usage = data.get("usage") or {}
    prompt, completion = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
    return {
        "id": data.get("id", "chatcmpl-anthropic"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": route.fqn,
        "choices": [
            _choice(
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": _text(data.get("content"))},
                },
                data.get("stop_reason"),
                data.get("stop_sequence"),
            )
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


async def stream_to_openai(
    route, call: UpstreamCall, lines: AsyncIterator[str], usage: dict
) -> AsyncIterator[bytes]:
    created = int(time.time())
    message_id = "chatcmpl-anthropic"
    prompt = completion = 0

    def chunk(delta: dict[str, Any], choice: dict[str, Any] | None = None) -> bytes:
        return sse(
            {
                "id": message_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": route.fqn,
                "choices": [choice or {"index": 0, "delta": delta, "finish_reason": None}],
            }
        )

    async for event, data in sse_events(lines):
        try:
            payload = json.loads(data)
        except ValueError:
            continue
        kind = payload.get("type", event)
        if kind == "message_start":
            message = payload.get("message", {})
            message_id = message.get("id", message_id)
            prompt = int((message.get("usage") or {}).get("input_tokens", 0))
            yield chunk({"role": "assistant", "content": ""})
        elif kind == "content_block_delta":
            text = (payload.get("delta") or {}).get("text")
            if text:
                yield chunk({"content": text})
        elif kind == "message_delta":
            completion = int((payload.get("usage") or {}).get("output_tokens", completion))
            delta = payload.get("delta") or {}
            final = _choice(
                {"index": 0, "delta": {}}, delta.get("stop_reason"), delta.get("stop_sequence")
            )
            yield chunk({}, final)
        elif kind == "message_stop":
            break
        elif kind == "error":
            break
    usage.update(
        {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
    )
    yield sse("[DONE]")
