"""The client matrix: the OpenAI SDK, LangChain (``langchain-openai``) and LiteLLM as
clients of the gateway, unchanged, over real HTTP with the fake upstream.

Each asserts the fake upstream's answer, the token usage the client parsed and the
usage record the gateway wrote; for each endpoint, a key without access to the model
is refused with the contract's error, raised by the client as its own exception."""

from __future__ import annotations

import litellm
import openai
import pytest
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

from audit.models import AuditRecord
from tests.clients.conftest import IMPORT_ATTEMPTS
from tests.gateway.conftest import assert_sdk_error, usage_rows

ANSWER = "Hello from the fake upstream."
CHAT_MODEL = "openai-main/gpt-4o"
EMBEDDING_MODEL = "openai-main/text-embedding-3-small"
GRANTED = (
    "authz_rules:\n  - models: ['openai-main/gpt-4o', 'openai-main/text-embedding-3-small']\n"
    "    users: [bob]\n"
)
NOT_GRANTED = "openai-main/gpt-4o-mini"  # in Acme's catalog, granted to nobody here
CHAT = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def key(llm) -> str:
    llm.grant(GRANTED)
    return llm.key()


def _text(message) -> str:
    """A LangChain message's text (content is a list of blocks with the Responses API)."""
    return str(message.text)


def test_importing_the_clients_reached_no_network():
    assert IMPORT_ATTEMPTS == []
    assert litellm.model_cost  # the bundled price map, not a download


# --- the OpenAI SDK --------------------------------------------------------------------------


def test_sdk_responses_create(llm, key):
    raw = llm.sdk(key).responses.with_raw_response.create(
        model=CHAT_MODEL, input="Say hello", instructions="Be brief", max_output_tokens=40
    )
    response = raw.parse()
    assert response.id.startswith("resp_") and response.status == "completed"
    assert response.output_text == ANSWER
    assert response.model == CHAT_MODEL
    # The fake counts the prompt's words: "Be brief" + "Say hello" -> 3.
    assert (response.usage.input_tokens, response.usage.output_tokens) == (3, 6)
    assert response.usage.total_tokens == 9
    [record] = usage_rows(request_id=raw.headers["X-Request-ID"])
    assert (record.endpoint, record.model, record.status_code, record.streamed) == (
        "responses",
        CHAT_MODEL,
        200,
        False,
    )
    assert (record.prompt_tokens, record.completion_tokens) == (3, 6)
    audit = AuditRecord.objects.get(request_id=raw.headers["X-Request-ID"])
    assert (audit.action, audit.outcome, audit.target_id) == (
        "inference:run",
        "success",
        CHAT_MODEL,
    )


def test_sdk_responses_stream(llm, key):
    stream = llm.sdk(key).responses.create(model=CHAT_MODEL, input="hi", stream=True)
    events = list(stream)
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == ANSWER
    assert [e.sequence_number for e in events] == list(range(len(events)))
    completed = events[-1].response
    assert completed.output_text == ANSWER
    assert (completed.usage.input_tokens, completed.usage.output_tokens) == (1, 6)
    [record] = usage_rows(endpoint="responses", streamed=True)
    assert (record.status_code, record.completion_tokens) == (200, 6)


def test_sdk_responses_stream_helper(llm, key):
    """The SDK's ``responses.stream`` helper accumulates the events into a Response."""
    with llm.sdk(key).responses.stream(model=CHAT_MODEL, input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == ANSWER and final.output_text == ANSWER


def test_sdk_models_retrieve(llm, key):
    model = llm.sdk(key).models.retrieve(CHAT_MODEL)
    assert (model.id, model.object, model.owned_by) == (CHAT_MODEL, "model", "openai-main")


def test_sdk_chat_stream_and_embeddings(llm, key):
    client = llm.sdk(key)
    chat = client.chat.completions.create(model=CHAT_MODEL, messages=CHAT)
    assert chat.choices[0].message.content == ANSWER and chat.usage.completion_tokens == 6
    pieces = [
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model=CHAT_MODEL, messages=CHAT, stream=True)
        if c.choices
    ]
    assert "".join(pieces) == ANSWER
    embedded = client.embeddings.create(model=EMBEDDING_MODEL, input=["a", "b"])
    assert [d.embedding for d in embedded.data] == [[0.1, 0.2, 0.3]] * 2
    records = usage_rows(3)
    assert sorted((r.endpoint, r.streamed) for r in records) == [
        ("chat", False),
        ("chat", True),
        ("embeddings", False),
    ]


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.responses.create(model=NOT_GRANTED, input="hi"),
        lambda c: list(c.responses.create(model=NOT_GRANTED, input="hi", stream=True)),
        lambda c: c.chat.completions.create(model=NOT_GRANTED, messages=CHAT),
        lambda c: c.embeddings.create(model=NOT_GRANTED, input="a"),
        lambda c: c.models.retrieve(NOT_GRANTED),
    ],
    ids=["responses", "responses-stream", "chat", "embeddings", "models-retrieve"],
)
def test_sdk_refuses_a_model_not_granted(llm, key, upstream_requests, call):
    with pytest.raises(openai.PermissionDeniedError) as caught:
        call(llm.sdk(key))
    error = assert_sdk_error(caught.value, 403, "PERMISSION_DENIED")
    assert NOT_GRANTED in error["message"] and error["type"] == "permission_error"
    assert upstream_requests == []
    [record] = usage_rows(status_code=403)
    assert (record.model, record.error_code) == (NOT_GRANTED, "PERMISSION_DENIED")


WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
TOOL_MODEL = "openai-main/fake-tool-call"


@pytest.fixture
def tool_key(llm) -> str:
    llm.grant(f"authz_rules:\n  - models: ['{TOOL_MODEL}']\n    users: [bob]\n")
    return llm.key()


def test_sdk_responses_function_call_round_trip(llm, tool_key):
    client = llm.sdk(tool_key)
    first = client.responses.create(model=TOOL_MODEL, input="Weather in Paris?", tools=[WEATHER])
    [call] = first.output
    assert (call.type, call.name, call.call_id) == ("function_call", "get_weather", "call_fake")
    assert call.arguments == '{"city": "Paris"}'
    second = client.responses.create(
        model=TOOL_MODEL,
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            call.model_dump(include={"type", "call_id", "name", "arguments"}),
            {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"},
        ],
    )
    assert second.output_text == ANSWER
    events = list(
        client.responses.create(
            model=TOOL_MODEL, input="Weather in Paris?", tools=[WEATHER], stream=True
        )
    )
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert [e.arguments for e in done] == ['{"city": "Paris"}']
    assert events[-1].response.output[0].name == "get_weather"


# --- LangChain --------------------------------------------------------------------------------


def _chat_model(llm, key: str, model: str = CHAT_MODEL, **options) -> ChatOpenAI:
    return ChatOpenAI(
        model=model, base_url=llm.base_url, api_key=key, max_retries=0, timeout=30, **options
    )


@pytest.mark.parametrize("use_responses_api", [False, True], ids=["chat", "responses"])
def test_langchain_chat_invoke_and_stream(llm, key, upstream_requests, use_responses_api):
    chat = _chat_model(llm, key, use_responses_api=use_responses_api)
    endpoint = "responses" if use_responses_api else "chat"
    message = chat.invoke("Say hello")
    assert _text(message) == ANSWER
    assert (message.usage_metadata["input_tokens"], message.usage_metadata["output_tokens"]) == (
        2,
        6,
    )
    chunks = list(chat.stream("Say hello"))
    assert "".join(_text(chunk) for chunk in chunks) == ANSWER
    # Both went upstream as chat completions; the records keep the client's endpoint.
    assert [r["path"] for r in upstream_requests] == ["/v1/chat/completions"] * 2
    records = usage_rows(2, endpoint=endpoint)
    assert [(r.streamed, r.status_code, r.completion_tokens) for r in records] == [
        (False, 200, 6),
        (True, 200, 6),
    ]


@pytest.mark.parametrize("use_responses_api", [False, True], ids=["chat", "responses"])
def test_langchain_bind_tools(llm, tool_key, use_responses_api):
    chat = _chat_model(llm, tool_key, TOOL_MODEL, use_responses_api=use_responses_api)
    # LangChain's own function format, which it sends in each API's shape.
    function = {key: WEATHER[key] for key in ("name", "description", "parameters")}
    message = chat.bind_tools([function]).invoke("Weather in Paris?")
    assert [(c["name"], c["args"], c["id"]) for c in message.tool_calls] == [
        ("get_weather", {"city": "Paris"}, "call_fake")
    ]


@pytest.mark.parametrize("use_responses_api", [False, True], ids=["chat", "responses"])
def test_langchain_refuses_a_model_not_granted(llm, key, upstream_requests, use_responses_api):
    chat = _chat_model(llm, key, NOT_GRANTED, use_responses_api=use_responses_api)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        chat.invoke("hi")
    assert_sdk_error(caught.value, 403, "PERMISSION_DENIED")
    assert upstream_requests == []


def test_langchain_embeddings(llm, key, upstream_requests):
    embeddings = OpenAIEmbeddings(
        model=EMBEDDING_MODEL,
        base_url=llm.base_url,
        api_key=key,
        check_embedding_ctx_length=False,
        max_retries=0,
    )
    assert embeddings.embed_documents(["a", "b"]) == [[0.1, 0.2, 0.3]] * 2
    assert embeddings.embed_query("c") == [0.1, 0.2, 0.3]
    assert upstream_requests[0]["body"]["input"] == ["a", "b"]
    assert [r.endpoint for r in usage_rows(2)] == ["embeddings"] * 2
    refused = OpenAIEmbeddings(
        model=NOT_GRANTED,
        base_url=llm.base_url,
        api_key=key,
        check_embedding_ctx_length=False,
        max_retries=0,
    )
    with pytest.raises(openai.PermissionDeniedError):
        refused.embed_query("c")


# --- LiteLLM ----------------------------------------------------------------------------------


def _litellm_options(llm, key: str) -> dict:
    return {"api_base": llm.base_url, "api_key": key, "num_retries": 0, "timeout": 30}


def test_litellm_completion_and_stream(llm, key, upstream_requests):
    options = _litellm_options(llm, key)
    response = litellm.completion(model=f"openai/{CHAT_MODEL}", messages=CHAT, **options)
    assert response.choices[0].message.content == ANSWER
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (2, 6)
    stream = litellm.completion(model=f"openai/{CHAT_MODEL}", messages=CHAT, stream=True, **options)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == ANSWER
    assert [r["body"]["model"] for r in upstream_requests] == ["gpt-4o", "gpt-4o"]
    records = usage_rows(2, endpoint="chat")
    assert [(r.streamed, r.model, r.completion_tokens) for r in records] == [
        (False, CHAT_MODEL, 6),
        (True, CHAT_MODEL, 6),
    ]


def test_litellm_embedding(llm, key):
    response = litellm.embedding(
        model=f"openai/{EMBEDDING_MODEL}", input=["a", "b"], **_litellm_options(llm, key)
    )
    assert [item["embedding"] for item in response.data] == [[0.1, 0.2, 0.3]] * 2
    [record] = usage_rows(endpoint="embeddings")
    assert (record.model, record.status_code) == (EMBEDDING_MODEL, 200)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_litellm_refuses_a_model_not_granted(llm, key, upstream_requests, stream):
    """LiteLLM's ``openai`` provider maps no 403 of its own (it does so for OpenAI
    itself too): it raises its ``APIError`` carrying the status and the gateway's message."""
    options = _litellm_options(llm, key)
    with pytest.raises(litellm.exceptions.APIError) as caught:
        response = litellm.completion(
            model=f"openai/{NOT_GRANTED}", messages=CHAT, stream=stream, **options
        )
        if stream:
            list(response)
    assert caught.value.status_code == 403
    assert f"You may not use the model {NOT_GRANTED}" in str(caught.value)
    with pytest.raises(litellm.exceptions.APIError) as caught:
        litellm.embedding(model=f"openai/{NOT_GRANTED}", input="a", **options)
    assert caught.value.status_code == 403
    assert upstream_requests == []
    records = usage_rows(2, status_code=403)
    assert {(r.model, r.error_code) for r in records} == {(NOT_GRANTED, "PERMISSION_DENIED")}
