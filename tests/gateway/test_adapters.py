"""Provider adapters: Azure OpenAI deployments, Anthropic's Messages API (translated both
ways, streaming too) and OpenAI-compatible servers, checked on the wire at the fake."""

from __future__ import annotations

import openai
import pytest

from audit.models import UsageRecord
from tests.gateway.conftest import UPSTREAM_SECRET, assert_sdk_error, flush_usage, usage_rows

CHAT = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def everything_granted(llm):
    llm.grant("authz_rules:\n  - models: ['*']\n    users: [bob]\n")


@pytest.fixture
def azure(llm, everything_granted):
    llm.add_account(
        "azure-prod",
        "azure_openai",
        llm.upstream.url,
        [{"name": "gpt-4o"}, {"name": "gpt-4o-mini"}, {"name": "text-embedding-3-small"}],
        deployments={"gpt-4o": "my-deploy", "text-embedding-3-small": "emb-deploy"},
        api_version="2024-06-01",
    )
    return llm.sdk(llm.key())


def test_azure_sends_to_the_deployment_with_api_version_and_api_key(azure, upstream_requests):
    completion = azure.chat.completions.create(model="azure-prod/gpt-4o", messages=CHAT)
    assert completion.choices[0].message.content == "Hello from the fake upstream."
    assert completion.model == "azure-prod/gpt-4o"
    sent = upstream_requests[-1]
    assert sent["path"] == "/openai/deployments/my-deploy/chat/completions"
    assert sent["query"] == "api-version=2024-06-01"
    assert sent["headers"]["api-key"] == UPSTREAM_SECRET
    assert "authorization" not in sent["headers"]
    assert "model" not in sent["body"]  # the deployment names the model
    assert sent["body"]["messages"] == CHAT


def test_azure_model_without_a_deployment_uses_its_name(azure, upstream_requests):
    azure.chat.completions.create(model="azure-prod/gpt-4o-mini", messages=CHAT)
    assert upstream_requests[-1]["path"] == "/openai/deployments/gpt-4o-mini/chat/completions"


def test_azure_embeddings_and_streaming(azure, upstream_requests):
    embedding = azure.embeddings.create(model="azure-prod/text-embedding-3-small", input="x")
    assert len(embedding.data) == 1
    assert upstream_requests[-1]["path"] == "/openai/deployments/emb-deploy/embeddings"
    pieces = [
        c.choices[0].delta.content or ""
        for c in azure.chat.completions.create(
            model="azure-prod/gpt-4o", messages=CHAT, stream=True
        )
        if c.choices
    ]
    assert "".join(pieces) == "Hello from the fake upstream."
    assert upstream_requests[-1]["body"]["stream_options"] == {"include_usage": True}
    [record] = usage_rows(streamed=True)
    assert (record.provider_account, record.model, record.completion_tokens) == (
        "azure-prod",
        "azure-prod/gpt-4o",
        6,
    )


def test_azure_default_api_version(llm, everything_granted, upstream_requests):
    llm.add_account("azure-dev", "azure_openai", llm.upstream.url, [{"name": "gpt-4o"}])
    llm.sdk(llm.key()).chat.completions.create(model="azure-dev/gpt-4o", messages=CHAT)
    assert upstream_requests[-1]["query"] == "api-version=2024-10-21"


@pytest.fixture
def anthropic(llm, everything_granted):
    llm.add_account(
        "claude",
        "anthropic",
        llm.upstream.url,
        [
            {
                "name": "claude-3-5-sonnet",
                "input_price_per_million": 3,
                "output_price_per_million": 15,
            },
        ],
    )
    return llm.sdk(llm.key())


def test_anthropic_translates_chat_to_messages_and_back(anthropic, upstream_requests):
    completion = anthropic.chat.completions.create(
        model="claude/claude-3-5-sonnet",
        messages=[{"role": "system", "content": "Be brief"}, *CHAT],
        temperature=0.2,
        stop="END",
    )
    sent = upstream_requests[-1]
    assert sent["path"] == "/v1/messages"
    assert sent["headers"]["x-api-key"] == UPSTREAM_SECRET
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent["headers"]
    assert sent["body"] == {
        "model": "claude-3-5-sonnet",
        "system": "Be brief",
        "messages": [{"role": "user", "content": "Say hello"}],
        "max_tokens": 1024,  # Anthropic requires it: the default
        "temperature": 0.2,
        "stop_sequences": ["END"],
    }
    assert completion.object == "chat.completion"
    assert completion.model == "claude/claude-3-5-sonnet"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Hello from the fake upstream."
    assert completion.choices[0].finish_reason == "stop"
    # The fake counts words: 2 of the message + 2 of the system prompt.
    assert (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
        completion.usage.total_tokens,
    ) == (4, 6, 10)
    flush_usage()
    record = UsageRecord.objects.get(model="claude/claude-3-5-sonnet")
    assert (record.prompt_tokens, record.completion_tokens) == (4, 6)
    assert record.cost == pytest.approx((4 * 3 + 6 * 15) / 1e6)


def test_anthropic_passes_the_clients_max_tokens(anthropic, upstream_requests):
    anthropic.chat.completions.create(
        model="claude/claude-3-5-sonnet", messages=CHAT, max_tokens=77
    )
    assert upstream_requests[-1]["body"]["max_tokens"] == 77
    assert "system" not in upstream_requests[-1]["body"]


def test_anthropic_streaming_through_the_sdk(anthropic, upstream_requests):
    chunks = list(
        anthropic.chat.completions.create(
            model="claude/claude-3-5-sonnet",
            messages=[{"role": "system", "content": "Be brief"}, *CHAT],
            stream=True,
        )
    )
    assert upstream_requests[-1]["body"]["stream"] is True
    assert upstream_requests[-1]["body"]["system"] == "Be brief"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from the fake upstream."
    )
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert {c.model for c in chunks} == {"claude/claude-3-5-sonnet"}
    [record] = usage_rows(streamed=True)
    assert (record.status_code, record.prompt_tokens, record.completion_tokens) == (200, 4, 6)


def test_anthropic_serves_chat_only(anthropic, upstream_requests):
    with pytest.raises(openai.BadRequestError) as caught:
        anthropic.embeddings.create(model="claude/claude-3-5-sonnet", input="x")
    assert_sdk_error(caught.value, 400, "VALIDATION_ERROR")
    with pytest.raises(openai.BadRequestError):
        anthropic.completions.create(model="claude/claude-3-5-sonnet", prompt="x")
    assert upstream_requests == []


def test_openai_compatible_server_without_a_secret(llm, everything_granted, upstream_requests):
    llm.add_account(
        "vllm",
        "openai_compatible",
        f"{llm.upstream.url}/v1",
        [{"name": "Llama-3.1-8B-Instruct"}],
        secret=None,
    )
    client = llm.sdk(llm.key())
    completion = client.chat.completions.create(model="vllm/Llama-3.1-8B-Instruct", messages=CHAT)
    assert completion.choices[0].message.content == "Hello from the fake upstream."
    assert completion.model == "vllm/Llama-3.1-8B-Instruct"
    sent = upstream_requests[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"]["model"] == "Llama-3.1-8B-Instruct"
    assert "authorization" not in sent["headers"]
    text = client.completions.create(model="vllm/Llama-3.1-8B-Instruct", prompt="Once")
    assert text.choices[0].text == "Hello from the fake upstream."
    assert upstream_requests[-1]["path"] == "/v1/completions"


def test_openai_compatible_server_with_a_secret(llm, everything_granted, upstream_requests):
    llm.add_account("ollama", "openai_compatible", f"{llm.upstream.url}/v1", [{"name": "llama3"}])
    llm.sdk(llm.key()).chat.completions.create(model="ollama/llama3", messages=CHAT)
    assert upstream_requests[-1]["headers"]["authorization"] == f"Bearer {UPSTREAM_SECRET}"


def test_request_cannot_steer_the_upstream(llm, upstream_requests):
    """No per-request base URL, host or provider: extra fields go upstream as data at most."""
    client = llm.sdk(llm.key(), default_headers={"X-Forwarded-Host": "169.254.169.254"})
    client.chat.completions.create(
        model="openai-main/gpt-4o",
        messages=CHAT,
        extra_body={"base_url": "http://169.254.169.254/"},
    )
    sent = upstream_requests[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["host"] == llm.upstream.url.removeprefix("http://")
