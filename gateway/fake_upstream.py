"""A fake LLM provider speaking the OpenAI wire format over real HTTP (tests, benchmarks).

Run: ``python -m gateway.fake_upstream --port 9000``. Plain ASGI (served by
uvicorn), no Django. Behaviour is chosen by the model name, so a test drives
it through the gateway exactly as a client would:

- ``fake-error-<status>``: answers that HTTP status with an OpenAI-style error
  (the body echoes the Authorization header it got, to prove the gateway
  sanitises upstream messages);
- ``fake-slow-<ms>``: waits that long before answering;
- ``fake-reset``: starts an answer, then drops the connection mid-body (an
  exception before the answer would only make uvicorn send a 500);
- ``fake-redirect``: answers 307 to another host (must not be followed);
- ``fake-html-<status>``: an HTML page with that status (a proxy or a login page in
  front of the provider);
- ``fake-huge``: a well-formed answer of more than 10 MiB (``HUGE_BYTES``);
- ``fake-stream-slow-<ms>``: streams chunks that far apart;
- ``fake-stream-reset``: streams two chunks, then drops the connection;
- ``fake-tool-call``: calls the request's first tool with ``{"city": "Paris"}``
  (JSON and stream), unless the conversation already holds a tool result: then a
  normal answer;
- ``fake-set-cookie``: a normal answer that also sets a cookie;
- ``fake-dense``: a normal answer whose usage is the worst a byte-level BPE
  tokenizer could report: one prompt token per UTF-8 byte of every string (and
  key) in the messages, tools, functions, prompt or input plus 4 per message,
  and every completion token the request allowed (``max_tokens`` times ``n``);
- ``fake-stops``: an answer that obeys ``max_tokens`` (one token per word: cut
  with ``finish_reason`` ``length``, Anthropic ``max_tokens``) and the stop
  sequences (``stop``; Anthropic ``stop_sequences``): cut before the first match,
  ``finish_reason`` ``stop`` with the matched sequence as ``stop_reason`` (as
  vLLM reports it), Anthropic ``stop_sequence``;
- anything else: a normal answer.

Anthropic's Messages API is served at ``/v1/messages`` (JSON and SSE), and
Azure deployments at ``/openai/deployments/<name>/chat/completions``.
Every request is recorded (method, path, headers, body; for an OpenAI stream also
``stream_end``: ``completed`` or ``client_disconnected``) and can be read at
``GET /_requests`` and cleared with ``DELETE /_requests``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import re
import time
from typing import Any

RECORDED: list[dict[str, Any]] = []
RECORD = True  # benchmarks turn it off (--no-record) so memory stays flat
WORDS = ["Hello", " from", " the", " fake", " upstream", "."]
HUGE_BYTES = 10 * 1024 * 1024 + 4096


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _prompt_tokens(body: dict[str, Any]) -> int:
    text = ""
    for message in body.get("messages", []) or []:
        content = message.get("content")
        text += content if isinstance(content, str) else json.dumps(content)
    prompt = body.get("prompt") or body.get("input") or ""
    text += prompt if isinstance(prompt, str) else json.dumps(prompt)
    return max(1, len(text.split()))


def _text_bytes(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, dict):
        return sum(_text_bytes(k) + _text_bytes(v) for k, v in value.items())
    if isinstance(value, list):
        return sum(_text_bytes(item) for item in value)
    return 0 if value is None or isinstance(value, bool) else 1


def _answer(model: str, body: dict[str, Any]) -> tuple[list[str], str, str | None]:
    """The answer's pieces, the chat finish reason and the stop sequence that matched."""
    if model != "fake-stops":
        return list(WORDS), "stop", None
    stops = body.get("stop") or body.get("stop_sequences") or []
    stops = [stops] if isinstance(stops, str) else stops
    limit = body.get("max_tokens") or body.get("max_completion_tokens") or len(WORDS)
    pieces: list[str] = []
    text = ""
    for word in WORDS:
        if len(pieces) >= limit:
            return pieces, "length", None
        candidate = text + word
        hits = sorted((candidate.find(stop), stop) for stop in stops if stop in candidate)
        if hits:
            position, stop = hits[0]
            if candidate[len(text) : position]:
                pieces.append(candidate[len(text) : position])
            return pieces, "stop", stop
        pieces.append(word)
        text = candidate
    return pieces, "stop", None


ANTHROPIC_STOPS = {"length": "max_tokens", "stop": "end_turn"}


_EMBED_MODEL = re.compile(r"^fake-embed(?:-(\d{1,4}))?$")
_WORD = re.compile(r"\w+")


def fake_embedding(text: str, dims: int) -> list[float]:
    """A deterministic embedding: hashed bag of words, unit length. Texts sharing words
    are close, so retrieval tests can tell a relevant passage from another."""
    vector = [0.0] * dims
    for word in _WORD.findall(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        slot = int.from_bytes(digest[:4], "little") % dims
        vector[slot] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:
        vector[0] = 1.0
        return vector
    return [v / norm for v in vector]


def _usage_for(model: str, body: dict[str, Any], completion_tokens: int) -> dict[str, int]:
    if model != "fake-dense":
        return _usage(_prompt_tokens(body), completion_tokens)
    messages = body.get("messages") or []
    prompt = 4 * len(messages) + sum(
        _text_bytes(body.get(name))
        for name in ("messages", "tools", "functions", "prompt", "input")
    )
    if body.get("input") is not None:
        return _usage(prompt, 0)
    allowed = max(body.get("max_tokens") or 0, body.get("max_completion_tokens") or 0)
    return _usage(prompt, (allowed or len(WORDS)) * max(body.get("n") or 1, 1))


async def _send_json(send, status: int, payload: Any, headers: list | None = None) -> None:
    data = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ]
            + (headers or []),
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _chat_completion(model: str, body: dict[str, Any]) -> dict[str, Any]:
    pieces, finish, matched = _answer(model, body)
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": "".join(pieces)},
        "finish_reason": finish,
    }
    if matched:
        choice["stop_reason"] = matched
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": _usage_for(model, body, len(pieces)),
    }


async def _stream_chat(
    send, receive, model: str, body: dict[str, Any], delay_seconds: float, record: dict[str, Any]
) -> None:
    """Stream the answer; note in ``record["stream_end"]`` whether it was all sent
    (``completed``) or the client went away first (``client_disconnected``)."""
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.create_task(watch())
    try:
        await _stream_words(send, model, body, delay_seconds, gone, record)
    finally:
        watcher.cancel()


async def _stream_words(
    send,
    model: str,
    body: dict[str, Any],
    delay_seconds: float,
    gone: asyncio.Event,
    record: dict[str, Any],
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
        }
    )
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    pieces, finish, matched = _answer(model, body)
    for index, word in enumerate(pieces):
        chunk = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "delta": ({"role": "assistant"} if index == 0 else {}) | {"content": word},
                    "finish_reason": None,
                }
            ],
        }
        await send(
            {
                "type": "http.response.body",
                "body": f"data: {json.dumps(chunk)}\n\n".encode(),
                "more_body": True,
            }
        )
        if model == "fake-stream-reset" and index == 1:
            raise ConnectionResetError("fake stream reset")  # uvicorn drops the connection
        if delay_seconds:
            await asyncio.sleep(delay_seconds)
        if gone.is_set():
            record["stream_end"] = "client_disconnected"
            return
    final = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]
        if not matched
        else [{"index": 0, "delta": {}, "finish_reason": finish, "stop_reason": matched}],
    }
    await send(
        {
            "type": "http.response.body",
            "body": f"data: {json.dumps(final)}\n\n".encode(),
            "more_body": True,
        }
    )
    if include_usage:
        usage = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [],
            "usage": _usage_for(model, body, len(pieces)),
        }
        await send(
            {
                "type": "http.response.body",
                "body": f"data: {json.dumps(usage)}\n\n".encode(),
                "more_body": True,
            }
        )
    record["stream_end"] = "completed"
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


async def _anthropic(send, body: dict[str, Any]) -> None:
    model = body.get("model", "")
    prompt_tokens = _prompt_tokens(body) + (
        len(str(body.get("system", "")).split()) if body.get("system") else 0
    )
    pieces, finish, matched = _answer(model, body)
    stop_reason = "stop_sequence" if matched else ANTHROPIC_STOPS[finish]
    if not body.get("stream"):
        await _send_json(
            send,
            200,
            {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": "".join(pieces)}],
                "stop_reason": stop_reason,
                "stop_sequence": matched,
                "usage": {"input_tokens": prompt_tokens, "output_tokens": len(pieces)},
            },
        )
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )

    async def event(name: str, data: dict[str, Any], more: bool = True) -> None:
        payload = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
        await send({"type": "http.response.body", "body": payload, "more_body": more})

    await event(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_fake",
                "model": model,
                "usage": {"input_tokens": prompt_tokens, "output_tokens": 0},
            },
        },
    )
    await event(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    for word in pieces:
        await event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": word},
            },
        )
    await event("content_block_stop", {"type": "content_block_stop", "index": 0})
    await event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": matched},
            "usage": {"output_tokens": len(pieces)},
        },
    )
    await event("message_stop", {"type": "message_stop"}, more=False)


TOOL_ARGUMENTS = ['{"city": ', '"Paris"}']


def _wants_tool_call(model: str, body: dict[str, Any]) -> str | None:
    """The name of the tool ``fake-tool-call`` calls, if it calls one now."""
    tools = body.get("tools") or []
    if model != "fake-tool-call" or not tools:
        return None
    if any(m.get("role") == "tool" for m in body.get("messages") or []):
        return None
    return tools[0].get("function", {}).get("name")


async def _tool_call(send, model: str, name: str, body: dict[str, Any]) -> None:
    call = {"id": "call_fake", "type": "function"}
    usage = _usage_for(model, body, 9)
    if not body.get("stream"):
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {**call, "function": {"name": name, "arguments": "".join(TOOL_ARGUMENTS)}}
            ],
        }
        await _send_json(
            send,
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
                "usage": usage,
            },
        )
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )

    async def chunk(choices: list, **extra) -> None:
        data = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            **extra,
        }
        payload = f"data: {json.dumps(data)}\n\n".encode()
        await send({"type": "http.response.body", "body": payload, "more_body": True})

    first = {**call, "index": 0, "function": {"name": name, "arguments": ""}}
    await chunk([{"index": 0, "delta": {"role": "assistant", "tool_calls": [first]}}])
    for piece in TOOL_ARGUMENTS:
        delta = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
        await chunk([{"index": 0, "delta": delta, "finish_reason": None}])
    await chunk([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])
    if (body.get("stream_options") or {}).get("include_usage"):
        await chunk([], usage=usage)
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path, method = scope["path"], scope["method"]
    raw = await _read_body(receive)
    headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
    if path == "/_requests":
        if method == "DELETE":
            RECORDED.clear()
            await _send_json(send, 200, {"cleared": True})
        else:
            await _send_json(send, 200, RECORDED)
        return
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        await _send_json(
            send, 400, {"error": {"message": "bad json", "type": "invalid_request_error"}}
        )
        return
    record = {
        "method": method,
        "path": path,
        "query": scope.get("query_string", b"").decode(),
        "headers": headers,
        "body": body,
    }
    if RECORD:
        RECORDED.append(record)
    if method == "GET" and path.endswith("/models"):
        await _send_json(send, 200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
        return
    if path.endswith("/messages"):
        await _anthropic(send, body)
        return
    model = str(body.get("model", ""))
    azure = re.match(r"^/openai/deployments/([^/]+)/", path)
    if azure:
        model = azure.group(1)
    if match := re.match(r"^fake-error-(\d{3})$", model):
        status = int(match.group(1))
        await _send_json(
            send,
            status,
            {
                "error": {
                    "message": f"upstream failure, key was {headers.get('authorization', '')}",
                    "type": "server_error",
                }
            },
        )
        return
    if match := re.match(r"^fake-slow-(\d+)$", model):
        await asyncio.sleep(int(match.group(1)) / 1000)
    if model == "fake-reset":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"id": "chatcmpl-', "more_body": True})
        raise ConnectionResetError(
            "fake reset"
        )  # the answer has started: uvicorn drops the connection
    if match := re.match(r"^fake-html-(\d{3})$", model):
        page = b"<!DOCTYPE html><html><head><title>Bad Gateway</title></head>"
        page += b"<body><h1>502 Bad Gateway</h1><hr><center>nginx</center></body></html>"
        await send(
            {
                "type": "http.response.start",
                "status": int(match.group(1)),
                "headers": [
                    (b"content-type", b"text/html"),
                    (b"content-length", b"%d" % len(page)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": page})
        return
    if model == "fake-huge":
        answer = _chat_completion(model, body)
        answer["choices"][0]["message"]["content"] = "a" * HUGE_BYTES
        await _send_json(send, 200, answer)
        return
    if model == "fake-redirect":
        await send(
            {
                "type": "http.response.start",
                "status": 307,
                "headers": [(b"location", b"http://169.254.169.254/latest/meta-data/")],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        return
    if model == "fake-set-cookie":
        await _send_json(
            send,
            200,
            _chat_completion(model, body),
            [(b"set-cookie", b"session=org-a-secret; Path=/")],
        )
        return
    if path.endswith("/embeddings"):
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        if embed := _EMBED_MODEL.match(model or ""):
            # fake-embed[-N]: hashed bag of words, N dimensions (default 64).
            dims = int(embed.group(1) or 64)
            await _send_json(
                send,
                200,
                {
                    "object": "list",
                    "model": model,
                    "data": [
                        {
                            "object": "embedding",
                            "index": i,
                            "embedding": fake_embedding(str(t), dims),
                        }
                        for i, t in enumerate(items)
                    ],
                    "usage": {
                        "prompt_tokens": sum(len(str(t).split()) for t in items),
                        "total_tokens": sum(len(str(t).split()) for t in items),
                    },
                },
            )
            return
        await _send_json(
            send,
            200,
            {
                "object": "list",
                "model": model,
                "data": [
                    {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
                    for i in range(len(items))
                ],
                "usage": {
                    "prompt_tokens": _usage_for(model, body, 0)["prompt_tokens"],
                    "total_tokens": _usage_for(model, body, 0)["prompt_tokens"],
                },
            },
        )
        return
    if path.endswith("/completions") and not path.endswith("/chat/completions"):
        await _send_json(
            send,
            200,
            {
                "id": "cmpl-fake",
                "object": "text_completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {"index": 0, "text": "".join(WORDS), "finish_reason": "stop", "logprobs": None}
                ],
                "usage": _usage_for(model, body, len(WORDS)),
            },
        )
        return
    if tool := _wants_tool_call(model, body):
        await _tool_call(send, model, tool, body)
        return
    if body.get("stream"):
        delay = 0.0
        if match := re.match(r"^fake-stream-slow-(\d+)$", model):
            delay = int(match.group(1)) / 1000
        await _stream_chat(send, receive, model, body, delay, record)
        return
    await _send_json(send, 200, _chat_completion(model, body))


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument(
        "--no-record", action="store_true", help="do not keep the requests (benchmarks)"
    )
    args = parser.parse_args()
    global RECORD
    RECORD = not args.no_record
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
