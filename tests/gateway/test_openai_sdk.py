"""The official OpenAI SDK against the gateway: sync, async, streaming, embeddings, models."""

from __future__ import annotations

import asyncio

import openai
import pytest

from audit.models import UsageRecord
from tests.gateway.conftest import UPSTREAM_SECRET, flush_usage, usage_rows


def test_chat_completion_with_the_sdk(llm, upstream_requests):
    client = openai.OpenAI(base_url=llm.base_url, api_key=llm.key())
    raw = client.chat.completions.with_raw_response.create(
        model="openai-main/gpt-4o", messages=[{"role": "user", "content": "Say hello"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from the fake upstream."
    assert completion.model == "openai-main/gpt-4o"
    assert completion.usage.completion_tokens == 6
    for header in (
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
        "X-RateLimit-Limit-Tokens",
        "X-RateLimit-Remaining-Tokens",
        "X-Inferia-Overhead-Ms",
        "X-Request-ID",
    ):
        assert raw.headers.get(header), header
    sent = upstream_requests[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"]["model"] == "gpt-4o"
    assert sent["headers"]["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    flush_usage()
    record = UsageRecord.objects.get(request_id=raw.headers["X-Request-ID"])
    assert (record.model, record.status_code, record.prompt_tokens, record.completion_tokens) == (
        "openai-main/gpt-4o",
        200,
        2,
        6,
    )
    assert record.cost == pytest.approx((2 * 2.5 + 6 * 10.0) / 1e6)


def test_streaming_with_the_sdk(llm):
    client = openai.OpenAI(base_url=llm.base_url, api_key=llm.key())
    stream = client.chat.completions.create(
        model="openai-main/gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert "".join(pieces) == "Hello from the fake upstream."
    [record] = usage_rows(streamed=True)
    assert record.completion_tokens == 6 and record.status_code == 200


def test_async_client(llm):
    key = llm.key()

    async def go():
        client = openai.AsyncOpenAI(base_url=llm.base_url, api_key=key)
        results = await asyncio.gather(
            *[
                client.chat.completions.create(
                    model="openai-main/gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
                )
                for _ in range(5)
            ]
        )
        return [r.choices[0].message.content for r in results]

    assert asyncio.run(go()) == ["Hello from the fake upstream."] * 5


def test_embeddings_completions_and_models(llm):
    client = openai.OpenAI(base_url=llm.base_url, api_key=llm.key())
    emb = client.embeddings.create(model="openai-main/text-embedding-3-small", input=["a", "b"])
    assert len(emb.data) == 2
    text = client.completions.create(model="openai-main/gpt-4o-mini", prompt="Once")
    assert text.choices[0].text == "Hello from the fake upstream."
    ids = {m.id for m in client.models.list()}
    assert "openai-main/gpt-4o" in ids
