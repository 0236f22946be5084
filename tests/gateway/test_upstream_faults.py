"""When the provider fails, the client gets the contract's envelope (never a 500)
and never the provider's secret, even when the provider echoes it back."""

from __future__ import annotations

import socket
import struct
import threading

import openai
import pytest

from audit.models import UsageRecord
from tests.gateway.conftest import (
    UPSTREAM_SECRET,
    _free_port,
    assert_gateway_error,
    assert_sdk_error,
    flush_usage,
)

CHAT = [{"role": "user", "content": "hi"}]


def _fail(llm, model: str, **kwargs) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        llm.sdk(llm.key()).chat.completions.create(
            model=f"openai-main/{model}", messages=CHAT, **kwargs
        )
    return caught.value


def _no_secret(error: openai.APIStatusError) -> None:
    text = error.response.text
    assert UPSTREAM_SECRET not in text
    assert UPSTREAM_SECRET[:16] not in text  # not even its start
    assert "Bearer sk-" not in text


def _record_for(error: openai.APIStatusError) -> UsageRecord:
    flush_usage()
    return UsageRecord.objects.get(request_id=error.response.headers["X-Request-ID"])


def test_upstream_500_is_502_without_the_echoed_secret(llm, upstream_requests):
    error = _fail(llm, "fake-error-500")
    body = assert_sdk_error(error, 502, "UPSTREAM_ERROR")
    assert body["type"] == "api_error"
    # The provider did get the secret and did echo it back...
    assert upstream_requests[-1]["headers"]["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    # ...and the gateway passed on its message, not its secret.
    assert "upstream failure, key was" in body["message"] and "[REDACTED]" in body["message"]
    _no_secret(error)
    record = _record_for(error)
    assert (record.status_code, record.error_code, record.provider_account) == (
        502,
        "UPSTREAM_ERROR",
        "openai-main",
    )


def test_upstream_400_is_400(llm):
    error = _fail(llm, "fake-error-400")
    assert isinstance(error, openai.BadRequestError)
    body = assert_sdk_error(error, 400, "VALIDATION_ERROR")
    assert body["message"].startswith("Upstream rejected the request")
    _no_secret(error)


def test_upstream_429_is_429_with_retry_after(llm):
    error = _fail(llm, "fake-error-429")
    assert isinstance(error, openai.RateLimitError)
    body = assert_sdk_error(error, 429, "RATE_LIMITED")
    assert body["message"].startswith("Upstream rate limit")
    assert int(error.response.headers["Retry-After"]) >= 1
    _no_secret(error)


def test_upstream_401_is_502_not_the_callers_fault(llm):
    # The provider refused *our* credential: the caller's key is fine.
    error = _fail(llm, "fake-error-401")
    assert_sdk_error(error, 502, "UPSTREAM_ERROR")
    _no_secret(error)


def test_connection_refused_is_502(llm):
    port = _free_port()  # nothing listens there
    llm.org_settings(
        allowed_private_hosts=[llm.upstream.url.removeprefix("http://"), f"127.0.0.1:{port}"]
    )
    llm.add_account("closed", "openai", f"http://127.0.0.1:{port}/v1", [{"name": "gpt-4o"}])
    llm.grant("authz_rules:\n  - models: ['*']\n    users: [bob]\n")
    with pytest.raises(openai.InternalServerError) as caught:
        llm.sdk(llm.key()).chat.completions.create(model="closed/gpt-4o", messages=CHAT)
    body = assert_sdk_error(caught.value, 502, "UPSTREAM_ERROR")
    assert body["message"] == "Upstream unreachable (could not connect)"
    record = _record_for(caught.value)
    assert (record.status_code, record.provider_account) == (502, "closed")


@pytest.fixture
def resetting_server():
    """Accepts a connection, reads the request, answers with a TCP reset."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _addr = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()
    thread.join(timeout=5)


def test_connection_reset_before_an_answer_is_502(llm, resetting_server):
    llm.org_settings(
        allowed_private_hosts=[
            llm.upstream.url.removeprefix("http://"),
            f"127.0.0.1:{resetting_server}",
        ]
    )
    llm.add_account(
        "flaky", "openai", f"http://127.0.0.1:{resetting_server}/v1", [{"name": "gpt-4o"}]
    )
    llm.grant("authz_rules:\n  - models: ['*']\n    users: [bob]\n")
    with pytest.raises(openai.InternalServerError) as caught:
        llm.sdk(llm.key()).chat.completions.create(model="flaky/gpt-4o", messages=CHAT)
    body = assert_sdk_error(caught.value, 502, "UPSTREAM_ERROR")
    assert body["message"].startswith("Upstream unreachable")


def test_connection_dropped_mid_answer_is_502(llm):
    error = _fail(llm, "fake-reset")
    body = assert_sdk_error(error, 502, "UPSTREAM_ERROR")
    assert body["message"] == "Upstream sent an unreadable answer"
    assert _record_for(error).status_code == 502


@pytest.fixture
def short_read_timeout(settings):
    """Half a second without a byte from the upstream (read per request)."""
    settings.INFERIA_GATEWAY_READ_TIMEOUT = 0.5


def test_read_timeout_is_504(llm, short_read_timeout):
    error = _fail(llm, "fake-slow-3000")
    assert isinstance(error, openai.APIStatusError)
    body = assert_sdk_error(error, 504, "UPSTREAM_TIMEOUT")
    assert body["type"] == "timeout_error"
    record = _record_for(error)
    assert (record.status_code, record.error_code) == (504, "UPSTREAM_TIMEOUT")
    assert 400 <= record.upstream_latency_ms < 3000


def test_slow_upstream_within_the_timeout_answers(llm):
    completion = llm.sdk(llm.key()).chat.completions.create(
        model="openai-main/fake-slow-3000", messages=CHAT
    )
    assert completion.choices[0].message.content == "Hello from the fake upstream."


def test_redirect_is_not_followed(llm, upstream_requests):
    error = _fail(llm, "fake-redirect")
    body = assert_sdk_error(error, 502, "UPSTREAM_ERROR")
    assert "307" in body["message"]
    assert len(upstream_requests) == 1  # one request, to the account's base URL only
    _no_secret(error)


def test_no_fault_becomes_a_500(llm, short_read_timeout):
    key = llm.key()
    statuses = {}
    for model in (
        "fake-error-500",
        "fake-error-400",
        "fake-error-401",
        "fake-error-429",
        "fake-slow-3000",
        "fake-reset",
        "fake-redirect",
    ):
        for stream in (False, True):
            response = llm.post(
                "/chat/completions",
                key,
                {"model": f"openai-main/{model}", "messages": CHAT, "stream": stream},
            )
            statuses[(model, stream)] = response.status_code
            if response.status_code != 200:
                assert_gateway_error(
                    response, response.status_code, response.json()["error"]["code"]
                )
            assert UPSTREAM_SECRET not in response.text
    assert 500 not in statuses.values(), statuses
    # A stream whose upstream drops mid-answer has already answered 200 (its end is an error event).
    assert statuses[("fake-reset", True)] == 200
    assert {s for k, s in statuses.items() if k != ("fake-reset", True)} <= {400, 429, 502, 504}
