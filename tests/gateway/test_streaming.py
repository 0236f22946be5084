"""Server-sent events relayed chunk by chunk, ended with [DONE], usage taken from the
final chunk, and the upstream cancelled when the client goes away."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest

from audit.models import AuditRecord, UsageRecord
from tests.gateway.conftest import assert_sdk_error, flush_usage, wait_for

CHAT = [{"role": "user", "content": "hi"}]


def _stream_body(model: str = "openai-main/gpt-4o", **extra) -> dict:
    return {"model": model, "messages": CHAT, "stream": True, **extra}


def _events(llm, key: str, body: dict) -> tuple[httpx.Response, list[str]]:
    with httpx.stream(
        "POST",
        f"{llm.base_url}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    return response, lines


def test_chunks_arrive_as_the_upstream_sends_them(llm):
    """The fake sends a word every 200 ms: the first must not wait for the last."""
    client = llm.sdk(llm.key())
    started = time.monotonic()
    arrivals, pieces = [], []
    for chunk in client.chat.completions.create(
        model="openai-main/fake-stream-slow-200", messages=CHAT, stream=True
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
            pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == "Hello from the fake upstream."
    assert len(arrivals) == 6
    assert arrivals[-1] - arrivals[0] >= 0.8  # five gaps of 200 ms, not one burst
    assert arrivals[0] < arrivals[-1] - 0.8


def test_stream_ends_with_done_and_records_usage_from_the_final_chunk(llm):
    key = llm.key()
    response, lines = _events(llm, key, _stream_body())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    for header in (
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-Inferia-Overhead-Ms",
        "X-Request-ID",
    ):
        assert response.headers.get(header), header
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(line.startswith("data: ") for line in lines)
    assert {c["model"] for c in chunks} == {"openai-main/gpt-4o"}
    # The gateway asked upstream for usage; the client did not, so it gets none.
    assert not any("usage" in c for c in chunks)
    flush_usage()
    record = UsageRecord.objects.get(request_id=response.headers["X-Request-ID"])
    assert (
        record.status_code,
        record.streamed,
        record.prompt_tokens,
        record.completion_tokens,
    ) == (200, True, 1, 6)
    assert record.cost == pytest.approx(62e-6)  # 1 x 2.5 + 6 x 10 micro-units, whole micro-units


def test_client_that_asks_for_usage_gets_the_usage_chunk(llm):
    client = llm.sdk(llm.key())
    chunks = list(
        client.chat.completions.create(
            model="openai-main/gpt-4o",
            messages=CHAT,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (1, 6)


def test_async_streaming_with_the_sdk(llm):
    key = llm.key()

    async def go() -> str:
        client = openai.AsyncOpenAI(base_url=llm.base_url, api_key=key, max_retries=0)
        stream = await client.chat.completions.create(
            model="openai-main/gpt-4o", messages=CHAT, stream=True
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert asyncio.run(go()) == "Hello from the fake upstream."


def test_client_disconnect_cancels_the_upstream(llm, upstream_requests):
    key = llm.key()
    with httpx.Client(timeout=30) as client:
        with client.stream(
            "POST",
            f"{llm.base_url}/chat/completions",
            json=_stream_body("openai-main/fake-stream-slow-200"),
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            assert response.status_code == 200
            request_id = response.headers["X-Request-ID"]
            first = next(response.iter_lines())
            assert first.startswith("data: ")
        # leaving the block closes the connection, one word in (of six, 200 ms apart)

    # The gateway dropped its upstream request instead of reading the answer to the end...
    wait_for(
        lambda: upstream_requests and upstream_requests[-1].get("stream_end"),
        what="the upstream to stop",
    )
    assert upstream_requests[-1]["stream_end"] == "client_disconnected"

    # ...and recorded the call as closed by the client.
    def record():
        flush_usage()
        return UsageRecord.objects.filter(request_id=request_id).first()

    found = wait_for(record, what="the usage record")
    assert (found.status_code, found.error_code, found.streamed) == (499, "CLIENT_CLOSED", True)


def test_an_abandoned_stream_is_charged_its_reservation(backend, llm, upstream_requests):
    """Hanging up before the usage chunk does not make a call free: the record and the
    quota carry the reservation (at least what was relayed), marked as estimated."""
    llm.org_settings(monthly_token_quota=1000)
    key = llm.key()
    body = _stream_body("openai-main/fake-stream-slow-200", max_tokens=50)
    with httpx.Client(timeout=30) as client:
        with client.stream(
            "POST",
            f"{llm.base_url}/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            assert response.status_code == 200
            request_id = response.headers["X-Request-ID"]
            relayed = []
            for line in response.iter_lines():
                if line.startswith("data: "):
                    relayed.append(json.loads(line.removeprefix("data: ")))
                if len(relayed) == 2:
                    break
    wait_for(
        lambda: upstream_requests and upstream_requests[-1].get("stream_end"),
        what="the upstream to stop",
    )
    assert upstream_requests[-1]["stream_end"] == "client_disconnected"

    def record():
        flush_usage()
        return UsageRecord.objects.filter(request_id=request_id).first()

    found = wait_for(record, what="the usage record")
    assert (found.status_code, found.error_code) == (499, "CLIENT_CLOSED")
    # The reservation: 45 for the prompt fields' JSON + max_tokens (gateway/sizing.py).
    assert (found.prompt_tokens, found.completion_tokens) == (45, 50)
    assert found.completion_tokens >= len(relayed)
    audit = AuditRecord.objects.get(request_id=request_id)
    assert audit.data["usage_estimated"] is True
    # The quota keeps the charge: 1000 - 95 = 905 left, so 45 + 861 is refused.
    with pytest.raises(openai.RateLimitError):
        llm.sdk(key).chat.completions.create(
            model="openai-main/gpt-4o", messages=CHAT, max_tokens=861
        )
    llm.sdk(key).chat.completions.create(model="openai-main/gpt-4o", messages=CHAT, max_tokens=860)


def test_the_fake_upstream_reports_a_stream_read_to_the_end(llm, upstream_requests):
    """The other half of the test above: without a disconnect the stream completes."""
    _events(llm, llm.key(), _stream_body("openai-main/fake-stream-slow-200"))
    assert upstream_requests[-1]["stream_end"] == "completed"


def test_upstream_dropping_mid_stream_ends_with_an_error_event(llm):
    key = llm.key()
    response, lines = _events(llm, key, _stream_body("openai-main/fake-reset"))
    assert response.status_code == 200  # already sent when the upstream broke
    error = json.loads(lines[-1].removeprefix("data: "))["error"]
    assert (error["code"], error["type"]) == ("UPSTREAM_ERROR", "api_error")
    flush_usage()
    record = UsageRecord.objects.get(request_id=response.headers["X-Request-ID"])
    assert (record.status_code, record.error_code, record.streamed) == (502, "UPSTREAM_ERROR", True)


def test_sdk_raises_on_the_error_event(llm):
    stream = llm.sdk(llm.key()).chat.completions.create(
        model="openai-main/fake-reset", messages=CHAT, stream=True
    )
    with pytest.raises(openai.APIError):
        list(stream)


def test_upstream_error_before_the_stream_is_a_plain_error(llm):
    with pytest.raises(openai.InternalServerError) as caught:
        llm.sdk(llm.key()).chat.completions.create(
            model="openai-main/fake-error-500", messages=CHAT, stream=True
        )
    assert_sdk_error(caught.value, 502, "UPSTREAM_ERROR")
