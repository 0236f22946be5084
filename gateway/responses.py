"""The OpenAI Responses API (``POST /api/llm/v1/responses``) as a dialect of chat completions.

No upstream gets the Responses API natively: every request is translated to a
chat-completions request, sent through the one gateway pipeline (authorization,
sizing and reservation, limits and quotas, the account's adapter, the usage
record with endpoint ``responses``, the audit record), and the chat answer or
stream is translated back. So it works the same for every provider adapter
(OpenAI, OpenAI-compatible, Azure OpenAI, Anthropic).

A dialect is the seam ``gateway.app`` knows: ``to_chat(body)`` (raises
VALIDATION_ERROR naming the field), ``from_chat(request, answer)``,
``stream_from_chat(request, chunks, usage)`` (an async iterator of SSE bytes with
``error(code, message)`` for a stream that breaks), ``upstream_endpoint`` and
``field_names`` (chat field -> the client's name, for errors raised on the chat body).

Supported: ``model``, ``input`` (a string, or a list of messages with roles
``user``/``system``/``developer``/``assistant`` whose content is a string or
``input_text``/``output_text``/``input_image`` parts, and ``function_call`` /
``function_call_output`` items), ``instructions``, ``max_output_tokens``,
``temperature``, ``top_p``, ``stream``, ``metadata``, ``user``, ``text.format``
(``text``, ``json_object``, ``json_schema``), function ``tools``, ``tool_choice``,
``parallel_tool_calls``, and the no-op values of ``store``, ``truncation``,
``include`` (empty), ``background`` (false), ``service_tier``, ``stream_options``.
Refused with VALIDATION_ERROR naming the field: tools of another type than
``function`` (web search, file search...), other input items (``reasoning``,
``item_reference``...), ``previous_response_id``, ``conversation``, ``reasoning``,
``prompt``, any other field. Responses are not stored (``store`` is always ``false``
in the answer). Tool calls reach the upstream as chat ``tools``: an adapter whose
chat translation has no tools (Anthropic's) answers without calling them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from inferia.errors import ValidationError

upstream_endpoint = "chat"
# Chat-body fields whose errors (sizing, prompt limit) the client knows by another name.
field_names = {"max_tokens": "max_output_tokens", "messages": "input"}

ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
TEXT_PARTS = ("input_text", "output_text", "text")
# Accepted only with the value that changes nothing here (a no-op).
NO_OP = {
    "store": lambda v: isinstance(v, bool),  # never stored: answered as false
    "truncation": lambda v: v in ("disabled", "auto"),
    "include": lambda v: v == [],
    "background": lambda v: v is False,
    "service_tier": lambda v: v in ("auto", "default"),
    "stream_options": lambda v: isinstance(v, dict),
    "reasoning": lambda v: v == {} or (isinstance(v, dict) and not any(v.values())),
}
SUPPORTED = {
    "model",
    "input",
    "instructions",
    "max_output_tokens",
    "temperature",
    "top_p",
    "stream",
    "metadata",
    "user",
    "text",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
}
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _bad(field: str, message: str) -> ValidationError:
    return ValidationError(message, details={field: [message]})


def _number(body: dict[str, Any], field: str, high: float) -> None:
    value = body.get(field)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high:
        raise _bad(field, f"'{field}' must be a number from 0 to {high:g}")


def _part(part: Any, where: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise _bad("input", f"{where} must be an object")
    kind = part.get("type")
    if kind in TEXT_PARTS:
        if not isinstance(part.get("text"), str):
            raise _bad("input", f"{where}.text must be a string")
        return {"type": "text", "text": part["text"]}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise _bad("input", f"{where}: only input_image parts with an image_url are supported")
        image: dict[str, Any] = {"url": url}
        if part.get("detail") in ("low", "high", "auto"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    raise _bad("input", f"{where}: content parts of type {str(kind)[:40]!r} are not supported")


def _content(content: Any, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad("input", f"{where}.content must be a string or a list of content parts")
    parts = [_part(part, f"{where}.content[{i}]") for i, part in enumerate(content)]
    if all(part["type"] == "text" for part in parts):
        # One string travels to every adapter (Anthropic's included) unchanged.
        return "".join(part["text"] for part in parts)
    return parts


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _bad("instructions", "'instructions' must be a string")
        messages.append({"role": "system", "content": instructions})
    if "input" not in body or body["input"] is None:
        raise _bad("input", "'input' is required: a string or a list of messages")
    given = body["input"]
    if isinstance(given, str):
        messages.append({"role": "user", "content": given})
        return messages
    if not isinstance(given, list) or not given:
        raise _bad("input", "'input' must be a string or a non-empty list of messages")
    for i, item in enumerate(given):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise _bad("input", f"{where} must be an object")
        kind = item.get("type", "message")
        if kind == "function_call":
            call = _function_call(item, where)
            previous = messages[-1] if messages else None
            if previous and previous["role"] == "assistant" and previous.get("tool_calls"):
                previous["tool_calls"].append(call)  # parallel calls: one assistant turn
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            continue
        if kind == "function_call_output":
            call_id, output = item.get("call_id"), item.get("output")
            if not isinstance(call_id, str) or not call_id:
                raise _bad("input", f"{where}.call_id must be a string")
            if not isinstance(output, str):
                output = _content(output, where)
                if not isinstance(output, str):
                    raise _bad("input", f"{where}.output must be a string or text parts")
            messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
            continue
        if kind != "message":
            raise _bad(
                "input", f"{where}: input items of type {str(kind)[:40]!r} are not supported"
            )
        role = item.get("role")
        if role not in ROLES:
            raise _bad("input", f"{where}.role must be one of user, assistant, system, developer")
        messages.append({"role": ROLES[role], "content": _content(item.get("content"), where)})
    return messages


def _function_call(item: dict[str, Any], where: str) -> dict[str, Any]:
    call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments")
    if not (isinstance(call_id, str) and call_id and isinstance(name, str) and name):
        raise _bad("input", f"{where}: a function_call needs a call_id and a name")
    if not isinstance(arguments, str):
        raise _bad("input", f"{where}.arguments must be a string (JSON)")
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    """``tools``, ``tool_choice`` and ``parallel_tool_calls`` in chat terms."""
    chat: dict[str, Any] = {}
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad("tools", "'tools' must be a list")
        converted = []
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or tool.get("type") != "function":
                kind = str(tool.get("type"))[:40] if isinstance(tool, dict) else None
                raise _bad("tools", f"tools[{i}]: only function tools are supported, not {kind!r}")
            name = tool.get("name")
            if not isinstance(name, str) or not name:
                raise _bad("tools", f"tools[{i}].name must be a string")
            function = {
                key: tool[key]
                for key in ("name", "description", "parameters", "strict")
                if tool.get(key) is not None
            }
            converted.append({"type": "function", "function": function})
        if converted:
            chat["tools"] = converted
    choice = body.get("tool_choice")
    if choice is not None:
        if choice in ("auto", "none", "required"):
            chat["tool_choice"] = choice
        elif (
            isinstance(choice, dict)
            and choice.get("type") == "function"
            and isinstance(choice.get("name"), str)
        ):
            chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
        else:
            raise _bad("tool_choice", "'tool_choice' must be auto, none, required or a function")
        if "tools" not in chat:
            if choice not in ("auto", "none"):
                raise _bad("tool_choice", "'tool_choice' needs 'tools'")
            del chat["tool_choice"]  # nothing to choose from: a no-op
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        if not isinstance(parallel, bool):
            raise _bad("parallel_tool_calls", "'parallel_tool_calls' must be true or false")
        if "tools" in chat:
            chat["parallel_tool_calls"] = parallel
    return chat


def _response_format(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, dict):
        raise _bad("text", "'text' must be an object")
    unknown = sorted(set(text) - {"format", "verbosity"})
    if unknown or text.get("verbosity") not in (None, "medium"):
        raise _bad(
            "text", f"'text' supports only 'format' (not {', '.join(unknown) or 'verbosity'})"
        )
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise _bad("text", "'text.format' must be an object")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        if not isinstance(fmt.get("name"), str) or not isinstance(fmt.get("schema"), dict):
            raise _bad("text", "'text.format' of type json_schema needs a name and a schema")
        schema = {
            key: fmt[key] for key in ("name", "schema", "description", "strict") if key in fmt
        }
        return {"type": "json_schema", "json_schema": schema}
    raise _bad("text", f"'text.format.type' {str(kind)[:40]!r} is not supported")


def to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The chat-completions request that answers this Responses request."""
    for field in sorted(body):
        if field in SUPPORTED:
            continue
        if field in NO_OP and (body[field] is None or NO_OP[field](body[field])):
            continue
        name = field[:60]
        raise _bad(name, f"'{name}' is not supported by this gateway's Responses API")
    chat: dict[str, Any] = {"model": body.get("model"), "messages": _messages(body)}
    if body.get("max_output_tokens") is not None:
        # Checked by gateway.sizing like max_tokens is (its errors name max_output_tokens).
        chat["max_tokens"] = body["max_output_tokens"]
    _number(body, "temperature", 2)
    _number(body, "top_p", 1)
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            chat[name] = body[name]
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("stream", "'stream' must be true or false")
    if stream:
        chat["stream"] = True
    metadata = body.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict)
        and len(metadata) <= 16
        and all(
            isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512
            for k, v in metadata.items()
        )
    ):
        raise _bad("metadata", "'metadata' must map at most 16 names to strings")
    user = body.get("user")
    if user is not None:
        if not isinstance(user, str):
            raise _bad("user", "'user' must be a string")
        chat["user"] = user
    if body.get("text") is not None:
        response_format = _response_format(body["text"])
        if response_format:
            chat["response_format"] = response_format
    chat.update(_tools(body))
    return chat


# --- the answer ----------------------------------------------------------------------------


def _usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    usage = usage or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    reasoning = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _envelope(request: dict[str, Any], response_id: str, model: str, created: int) -> dict:
    text = request.get("text") if isinstance(request.get("text"), dict) else None
    parallel = request.get("parallel_tool_calls")
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": parallel if isinstance(parallel, bool) else True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": False,
        "temperature": request.get("temperature", 1.0),
        "text": {"format": (text or {}).get("format") or {"type": "text"}},
        "tool_choice": request.get("tool_choice") or "auto",
        "tools": request.get("tools") or [],
        "top_p": request.get("top_p", 1.0),
        "truncation": request.get("truncation") or "disabled",
        "usage": None,
        "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }


def _message(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def _function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str):
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def _finish(response: dict[str, Any], finish_reason: str | None) -> str:
    """Set the final status from the chat finish reason; returns the items' status."""
    reason = INCOMPLETE.get(finish_reason or "")
    if reason:
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": reason}
        return "incomplete"
    response["status"] = "completed"
    return "completed"


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def from_chat(request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """The Responses object for a chat completion: the text as a message item, each
    tool call as a function_call item."""
    choices = answer.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    response = _envelope(
        request,
        new_id("resp"),
        str(answer.get("model") or request.get("model") or ""),
        int(answer.get("created") or time.time()),
    )
    status = _finish(response, choice.get("finish_reason"))
    text = _text_of(message.get("content"))
    calls = [c for c in message.get("tool_calls") or [] if isinstance(c, dict)]
    output = []
    if text or not calls:
        output.append(_message(new_id("msg"), text, status))
    for call in calls:
        function = call.get("function") or {}
        output.append(
            _function_call_item(
                new_id("fc"),
                str(call.get("id") or new_id("call")),
                str(function.get("name") or ""),
                str(function.get("arguments") or ""),
                status,
            )
        )
    response["output"] = output
    response["usage"] = _usage(answer.get("usage"))
    return response


class _Call:
    """A function call being streamed: chat's tool-call deltas, keyed by their index."""

    def __init__(self, output_index: int, call_id: str, name: str) -> None:
        self.output_index, self.item_id = output_index, new_id("fc")
        self.call_id, self.name, self.arguments = call_id, name, ""


class ResponsesStream:
    """Chat-completion SSE chunks in, Responses API events out (``event:`` + ``data:``,
    each with its ``sequence_number``). The message item opens with the first text
    (or at the end when nothing else came); each tool call is a function_call item."""

    def __init__(
        self, request: dict[str, Any], chunks: AsyncIterator[bytes], usage: dict[str, Any]
    ) -> None:
        self.request, self.chunks, self.usage = request, chunks, usage
        self.sequence = 0
        self.response = _envelope(
            request, new_id("resp"), str(request.get("model") or ""), int(time.time())
        )
        self.item_id = new_id("msg")
        self.text_index: int | None = None  # the message item's output index, once open
        self.pieces: list[str] = []
        self.calls: dict[int, _Call] = {}
        self.outputs = 0

    def event(self, kind: str, **data: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **data}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()

    def error(self, code: str, message: str) -> bytes:
        return self.event("error", code=code, message=message, param=None)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events()

    async def _chat_chunks(self) -> AsyncIterator[dict[str, Any]]:
        async for raw in self.chunks:
            for line in raw.decode().splitlines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    chunk = json.loads(data)
                except ValueError:
                    continue
                if isinstance(chunk, dict):
                    yield chunk

    def _open_message(self) -> list[bytes]:
        self.text_index, self.outputs = self.outputs, self.outputs + 1
        empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return [
            self.event(
                "response.output_item.added",
                output_index=self.text_index,
                item={**_message(self.item_id, "", "in_progress"), "content": []},
            ),
            self.event(
                "response.content_part.added",
                item_id=self.item_id,
                output_index=self.text_index,
                content_index=0,
                part=empty,
            ),
        ]

    def _text(self, delta: str) -> list[bytes]:
        events = self._open_message() if self.text_index is None else []
        self.pieces.append(delta)
        events.append(
            self.event(
                "response.output_text.delta",
                item_id=self.item_id,
                output_index=self.text_index,
                content_index=0,
                delta=delta,
                logprobs=[],
            )
        )
        return events

    def _tool_call(self, delta: dict[str, Any]) -> list[bytes]:
        events = []
        index = delta.get("index", 0)
        function = delta.get("function") or {}
        call = self.calls.get(index)
        if call is None:
            call = _Call(
                self.outputs, str(delta.get("id") or new_id("call")), function.get("name") or ""
            )
            self.calls[index] = call
            self.outputs += 1
            item = _function_call_item(call.item_id, call.call_id, call.name, "", "in_progress")
            events.append(
                self.event("response.output_item.added", output_index=call.output_index, item=item)
            )
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            call.arguments += arguments
            events.append(
                self.event(
                    "response.function_call_arguments.delta",
                    item_id=call.item_id,
                    output_index=call.output_index,
                    delta=arguments,
                )
            )
        return events

    def _close(self, status: str) -> tuple[list[bytes], list[dict[str, Any]]]:
        """The closing events of every item, and the items in output order."""
        events: list[bytes] = []
        items: list[tuple[int, dict[str, Any]]] = []
        if self.text_index is None and not self.calls:
            events.extend(self._open_message())
        if self.text_index is not None:
            text = "".join(self.pieces)
            item = _message(self.item_id, text, status)
            where = {"item_id": self.item_id, "output_index": self.text_index, "content_index": 0}
            events.append(self.event("response.output_text.done", **where, text=text, logprobs=[]))
            events.append(
                self.event("response.content_part.done", **where, part=item["content"][0])
            )
            events.append(
                self.event("response.output_item.done", output_index=self.text_index, item=item)
            )
            items.append((self.text_index, item))
        for call in self.calls.values():
            item = _function_call_item(
                call.item_id, call.call_id, call.name, call.arguments, status
            )
            events.append(
                self.event(
                    "response.function_call_arguments.done",
                    item_id=call.item_id,
                    output_index=call.output_index,
                    name=call.name,
                    arguments=call.arguments,
                )
            )
            events.append(
                self.event("response.output_item.done", output_index=call.output_index, item=item)
            )
            items.append((call.output_index, item))
        return events, [item for _, item in sorted(items, key=lambda pair: pair[0])]

    async def _events(self) -> AsyncIterator[bytes]:
        response = self.response
        yield self.event("response.created", response=response)
        yield self.event("response.in_progress", response=response)
        finish_reason = None
        async for chunk in self._chat_chunks():
            if chunk.get("model"):
                response["model"] = chunk["model"]
            for choice in chunk.get("choices") or []:
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta") or {}
                content = delta.get("content")
                if isinstance(content, str) and content:
                    for event in self._text(content):
                        yield event
                for call in delta.get("tool_calls") or []:
                    if isinstance(call, dict):
                        for event in self._tool_call(call):
                            yield event
                finish_reason = choice.get("finish_reason") or finish_reason
        status = _finish(response, finish_reason)
        events, items = self._close(status)
        for event in events:
            yield event
        response["output"] = items
        # The adapter has noted the upstream's usage by the end of its stream.
        response["usage"] = _usage(self.usage)
        final = "response.incomplete" if status == "incomplete" else "response.completed"
        yield self.event(final, response=response)


def stream_from_chat(
    request: dict[str, Any], chunks: AsyncIterator[bytes], usage: dict[str, Any]
) -> ResponsesStream:
    return ResponsesStream(request, chunks, usage)
