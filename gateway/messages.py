"""Anthropic's Messages API (``POST /api/llm/v1/messages``) as a dialect of chat completions.

So the official ``anthropic`` SDK works unchanged with
``Anthropic(base_url="http://host/api/llm", api_key=<inferia key>)`` (the SDK adds
``/v1/messages``; it sends the key in ``X-API-Key``). Every request is translated
to a chat-completions request and sent through the one gateway pipeline
(authorization, ``inference:stream`` for streams, sizing and reservation, limits
and quotas, the account's adapter, the usage record with endpoint ``messages``,
the audit record); the chat answer or stream is translated back. It works for
every provider type: an Anthropic account's adapter (``gateway/upstream/anthropic.py``)
turns the chat request back into a Messages call upstream.

A dialect is the seam ``gateway.app`` knows: ``upstream_endpoint``, ``field_names``,
``to_chat(body)`` (raises VALIDATION_ERROR naming the field),
``from_chat(request, answer)``, ``stream_from_chat(request, chunks, usage)`` (an
async iterator of SSE bytes with ``error(code, message)``) and ``error_body(body)``.

Supported: ``model``, ``max_tokens`` (required), ``messages`` (roles ``user`` and
``assistant``; content a string or ``text`` blocks), ``system`` (a string or
``text`` blocks, joined by a newline into one system message), ``temperature``
and ``top_p`` (0 to 1), ``top_k`` (passed on as a chat field: Anthropic accounts
and OpenAI-compatible servers honour it, OpenAI itself refuses it),
``stop_sequences`` (chat ``stop``), ``stream``, ``metadata.user_id`` (chat
``user``), ``service_tier`` (a no-op). Refused with VALIDATION_ERROR naming the
field: any other content block (images, documents, tool use and results,
thinking), ``tools``, ``tool_choice``, ``thinking`` and any other field.

``stop_reason``: chat ``length`` is ``max_tokens``; ``stop`` is ``stop_sequence``
when the upstream names the sequence that matched (Anthropic accounts, and
OpenAI-compatible servers that report ``stop_reason`` in the choice, such as
vLLM), else ``end_turn`` (OpenAI does not say whether a stop sequence matched).

Errors carry Anthropic's shape and the contract's envelope at once:
``{"type": "error", "error": {"type": "permission_error", "code", "message", "details"}}``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from inferia.errors import ErrorCode, ValidationError

upstream_endpoint = "chat"
field_names: dict[str, str] = {}  # the chat fields sizing names are Anthropic's too

SUPPORTED = frozenset(
    {
        "model",
        "messages",
        "system",
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "stream",
        "metadata",
    }
)
NO_OP = {"service_tier": lambda value: value in ("auto", "standard_only")}
# Keys a text block may carry that change nothing here.
TEXT_BLOCK_KEYS = frozenset({"type", "text", "cache_control", "citations"})

STOP_REASONS = {
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
ERROR_TYPES: dict[str, str] = {
    ErrorCode.VALIDATION_ERROR: "invalid_request_error",
    ErrorCode.AUTHENTICATION_FAILED: "authentication_error",
    ErrorCode.OTP_REQUIRED: "authentication_error",
    ErrorCode.PERMISSION_DENIED: "permission_error",
    ErrorCode.TWO_FACTOR_REQUIRED: "permission_error",
    ErrorCode.NOT_FOUND: "not_found_error",
    ErrorCode.METHOD_NOT_ALLOWED: "invalid_request_error",
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: "invalid_request_error",
    ErrorCode.CONFLICT: "invalid_request_error",
    ErrorCode.PAYLOAD_TOO_LARGE: "request_too_large",
    ErrorCode.RATE_LIMITED: "rate_limit_error",
    ErrorCode.QUOTA_EXCEEDED: "rate_limit_error",
    ErrorCode.UPSTREAM_ERROR: "api_error",
    ErrorCode.UPSTREAM_TIMEOUT: "timeout_error",
    ErrorCode.SERVICE_UNAVAILABLE: "overloaded_error",
    ErrorCode.INTERNAL_ERROR: "api_error",
}


def _bad(field: str, message: str) -> ValidationError:
    return ValidationError(message, details={field: [message]})


# --- the request ---------------------------------------------------------------------------


def _text_blocks(value: Any, field: str) -> list[str]:
    """The texts of a string or a list of ``text`` blocks; anything else is refused."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise _bad(field, f"'{field}' must be a string or a list of content blocks")
    texts = []
    for index, block in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(block, dict):
            raise _bad(where, f"'{where}' must be a content block object")
        kind = block.get("type")
        if kind != "text":
            raise _bad(
                where,
                f"Content blocks of type {str(kind)[:40]!r} are not supported in '{where}'; "
                "send 'text' blocks",
            )
        if not isinstance(block.get("text"), str):
            raise _bad(f"{where}.text", f"'{where}.text' must be a string")
        extra = sorted(set(block) - TEXT_BLOCK_KEYS)
        if extra:
            raise _bad(f"{where}.{extra[0]}", f"'{where}.{extra[0]}' is not supported")
        texts.append(block["text"])
    return texts


def _messages(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise _bad("messages", "'messages' must be a non-empty list of messages")
    out = []
    for index, message in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _bad(where, f"'{where}' must be an object with 'role' and 'content'")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise _bad(f"{where}.role", f"'{where}.role' must be 'user' or 'assistant'")
        extra = sorted(set(message) - {"role", "content"})
        if extra:
            raise _bad(f"{where}.{extra[0]}", f"'{where}.{extra[0]}' is not supported")
        if "content" not in message:
            raise _bad(f"{where}.content", f"'{where}.content' is required")
        content = message["content"]
        texts = _text_blocks(content, f"{where}.content")
        if isinstance(content, str) or len(texts) == 1:
            out.append({"role": role, "content": texts[0]})
        else:
            out.append({"role": role, "content": [{"type": "text", "text": t} for t in texts]})
    return out


def _unit_number(body: dict[str, Any], field: str) -> None:
    value = body.get(field)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise _bad(field, f"'{field}' must be a number from 0 to 1")


def to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """A Messages API request as a chat-completions request (VALIDATION_ERROR naming the
    field for anything this gateway cannot honour: it is never silently dropped)."""
    for field in sorted(body):
        if field in SUPPORTED:
            continue
        allowed = NO_OP.get(field)
        if allowed is None or not allowed(body[field]):
            raise _bad(field, f"'{field}' is not supported by this gateway")
    if body.get("max_tokens") is None:
        raise _bad("max_tokens", "'max_tokens' is required")
    chat: dict[str, Any] = {
        "model": body.get("model"),
        "messages": _messages(body.get("messages")),
        "max_tokens": body["max_tokens"],  # its bounds: gateway.sizing
    }
    system = body.get("system")
    if system is not None:
        texts = _text_blocks(system, "system")
        if texts:
            chat["messages"].insert(0, {"role": "system", "content": "\n".join(texts)})
    for field in ("temperature", "top_p"):
        _unit_number(body, field)
        if body.get(field) is not None:
            chat[field] = body[field]
    top_k = body.get("top_k")
    if top_k is not None:
        if type(top_k) is not int or top_k < 0:
            raise _bad("top_k", "'top_k' must be a non-negative integer")
        chat["top_k"] = top_k
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise _bad("stop_sequences", "'stop_sequences' must be a list of non-empty strings")
        if stops:
            chat["stop"] = stops
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("stream", "'stream' must be true or false")
    if stream:
        chat["stream"] = True
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _bad("metadata", "'metadata' must be an object")
        extra = sorted(set(metadata) - {"user_id"})
        if extra:
            raise _bad(f"metadata.{extra[0]}", f"'metadata.{extra[0]}' is not supported")
        user_id = metadata.get("user_id")
        if user_id is not None:
            if not isinstance(user_id, str) or len(user_id) > 256:
                raise _bad("metadata.user_id", "'metadata.user_id' must be a string")
            chat["user"] = user_id
    return chat


# --- the answer ----------------------------------------------------------------------------


def _stop(request: dict[str, Any], finish: Any, matched: Any) -> tuple[str, str | None]:
    """Anthropic's (stop_reason, stop_sequence) for a chat ``finish_reason``."""
    if finish == "stop":
        asked = request.get("stop_sequences") or []
        if isinstance(matched, str) and matched in asked:
            return "stop_sequence", matched
        return "end_turn", None
    return STOP_REASONS.get(finish, "end_turn"), None


def _message_id(chat_id: Any) -> str:
    if isinstance(chat_id, str) and chat_id.startswith("msg_"):
        return chat_id
    return f"msg_{uuid.uuid4().hex}"


def _usage(usage: dict[str, Any] | None) -> dict[str, int]:
    usage = usage or {}
    return {
        "input_tokens": int(usage.get("prompt_tokens") or 0),
        "output_tokens": int(usage.get("completion_tokens") or 0),
    }


def from_chat(request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """A chat completion as a Messages API ``message``."""
    choices = answer.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    content = (choice.get("message") or {}).get("content")
    stop_reason, stop_sequence = _stop(
        request, choice.get("finish_reason"), choice.get("stop_reason")
    )
    return {
        "id": _message_id(answer.get("id")),
        "type": "message",
        "role": "assistant",
        "model": answer.get("model") or request.get("model"),
        "content": [{"type": "text", "text": content if isinstance(content, str) else ""}],
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": _usage(answer.get("usage")),
    }


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _error_event(code: str, message: str) -> bytes:
    return _event(
        "error",
        {
            "type": "error",
            "error": {
                "type": ERROR_TYPES.get(code, "api_error"),
                "code": code,
                "message": message,
                "details": None,
            },
        },
    )


def _chunks(raw: bytes) -> list[Any]:
    """The ``data:`` payloads of the chat SSE bytes an adapter yielded."""
    out: list[Any] = []
    for line in raw.decode().splitlines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            out.append(None)
            continue
        try:
            out.append(json.loads(data))
        except ValueError:
            continue
    return out


def _start(chat_id: Any, model: Any) -> list[bytes]:
    """The events that open a message: ``message_start``, ``content_block_start``, ``ping``."""
    message = {
        "id": _message_id(chat_id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        # Known at the end (the chat stream's usage): sent in ``message_delta``.
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }
    block = {"type": "text", "text": ""}
    return [
        _event("message_start", {"type": "message_start", "message": message}),
        _event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": block},
        ),
        _event("ping", {"type": "ping"}),
    ]


class Events:
    """The Messages API event stream of a chat stream (``message_start``,
    ``content_block_start``, ``ping``, ``content_block_delta`` with ``text_delta``,
    ``content_block_stop``, ``message_delta`` with the stop reason and usage,
    ``message_stop``); ``error(code, message)`` is the event for a broken stream."""

    def __init__(
        self, request: dict[str, Any], chunks: AsyncIterator[bytes], usage: dict[str, Any]
    ) -> None:
        self._request, self._chunks, self._usage = request, chunks, usage
        self._events = self._translate()

    def __aiter__(self) -> Events:
        return self

    async def __anext__(self) -> bytes:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        await self._events.aclose()

    @staticmethod
    def error(code: str, message: str) -> bytes:
        return _error_event(code, message)

    async def _translate(self) -> AsyncGenerator[bytes, None]:
        request = self._request
        started = False
        finish: Any = None
        matched: Any = None
        async for raw in self._chunks:
            for chunk in _chunks(raw):
                if chunk is None:
                    break  # [DONE]
                if not isinstance(chunk, dict):
                    continue
                if "error" in chunk and not chunk.get("choices"):
                    error = chunk["error"] if isinstance(chunk["error"], dict) else {}
                    yield _error_event(
                        str(ErrorCode.UPSTREAM_ERROR),
                        str(error.get("message") or "Upstream stream failed")[:500],
                    )
                    return
                if not started:
                    started = True
                    for event in _start(
                        chunk.get("id"), chunk.get("model") or request.get("model")
                    ):
                        yield event
                for choice in chunk.get("choices") or []:
                    if not isinstance(choice, dict):
                        continue
                    text = (choice.get("delta") or {}).get("content")
                    if isinstance(text, str) and text:
                        yield _event(
                            "content_block_delta",
                            {
                                "type": "content_block_delta",
                                "index": 0,
                                "delta": {"type": "text_delta", "text": text},
                            },
                        )
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
                        matched = choice.get("stop_reason", matched)
        if not started:
            # The upstream ended without a single chunk: an answer still has its frame.
            for event in _start(None, request.get("model")):
                yield event
        yield _event("content_block_stop", {"type": "content_block_stop", "index": 0})
        stop_reason, stop_sequence = _stop(request, finish, matched)
        yield _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                "usage": _usage(self._usage),
            },
        )
        yield _event("message_stop", {"type": "message_stop"})


def stream_from_chat(
    request: dict[str, Any], chunks: AsyncIterator[bytes], usage: dict[str, Any]
) -> Events:
    return Events(request, chunks, usage)


# --- errors --------------------------------------------------------------------------------


def error_body(body: dict[str, Any]) -> dict[str, Any]:
    """The contract's envelope in Anthropic's error shape: ``type: "error"`` at the top
    and the Anthropic error type as ``error.type`` (the SDK picks its exception from
    the status; it reads ``error.message``)."""
    error = dict(body["error"])
    code = error.get("code")
    error["type"] = ERROR_TYPES.get(code, "api_error") if isinstance(code, str) else "api_error"
    return {"type": "error", "error": error}
