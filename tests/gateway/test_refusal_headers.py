"""X-RateLimit-* on every gateway response, refusals included, on both stores; refusals
read the epoch too (a grant is honoured at once, not after the cache expires); callers
that never authenticate are braked per address."""

from __future__ import annotations

import httpx
import pytest

from inferia import clock
from tests.gateway.conftest import assert_gateway_error

CHAT = [{"role": "user", "content": "hi"}]
REQUEST_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def _has_limits(response: httpx.Response, limit: int) -> None:
    for name in REQUEST_HEADERS:
        assert response.headers.get(name, "").isdigit(), (name, dict(response.headers))
    assert int(response.headers["X-RateLimit-Limit"]) == limit
    assert float(response.headers["X-Inferia-Overhead-Ms"]) >= 0


@pytest.fixture
def only_gpt4o(llm):
    llm.grant("authz_rules:\n  - models: ['openai-main/gpt-4o']\n    users: [bob]\n")
    llm.org_settings(key_requests_per_minute=50)
    return llm


def test_refusals_before_the_limits_carry_the_limit_headers(backend, only_gpt4o):
    llm = only_gpt4o
    key = llm.key()
    url = f"{llm.base_url}/chat/completions"
    auth = {"Authorization": f"Bearer {key}"}
    cases = [
        (
            llm.post(
                "/chat/completions", key, {"model": "openai-main/gpt-4o-mini", "messages": CHAT}
            ),
            403,
            "PERMISSION_DENIED",
        ),
        (
            llm.post("/chat/completions", key, {"model": "openai-main/nope", "messages": CHAT}),
            404,
            "NOT_FOUND",
        ),
        (llm.post("/chat/completions", key, {"messages": CHAT}), 400, "VALIDATION_ERROR"),
        (
            httpx.post(
                url, content=b"{not json", headers={**auth, "Content-Type": "application/json"}
            ),
            400,
            "VALIDATION_ERROR",
        ),
        (
            httpx.post(url, content=b"model=x", headers={**auth, "Content-Type": "text/plain"}),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            llm.post(
                "/chat/completions",
                key,
                {
                    "model": "openai-main/gpt-4o",
                    "messages": [{"role": "user", "content": "x" * 10_001}],
                },
            ),
            400,
            "VALIDATION_ERROR",
        ),
    ]
    for response, status, code in cases:
        assert_gateway_error(response, status, code)
        _has_limits(response, 50)
        # A refusal before the limits spends none of them.
        assert int(response.headers["X-RateLimit-Remaining"]) == 50
    ok = llm.post("/chat/completions", key, {"model": "openai-main/gpt-4o", "messages": CHAT})
    assert ok.status_code == 200
    _has_limits(ok, 50)
    assert int(ok.headers["X-RateLimit-Remaining"]) == 49
    refused = llm.post(
        "/chat/completions", key, {"model": "openai-main/gpt-4o-mini", "messages": CHAT}
    )
    assert int(refused.headers["X-RateLimit-Remaining"]) == 49


def test_models_listing_carries_the_limit_headers(backend, only_gpt4o):
    response = httpx.get(
        f"{only_gpt4o.base_url}/models", headers={"Authorization": f"Bearer {only_gpt4o.key()}"}
    )
    assert response.status_code == 200
    _has_limits(response, 50)


def test_a_grant_is_honoured_by_the_next_call_although_the_denial_was_cached(backend, only_gpt4o):
    llm = only_gpt4o
    key = llm.key()
    body = {"model": "openai-main/gpt-4o-mini", "messages": CHAT}
    assert_gateway_error(llm.post("/chat/completions", key, body), 403, "PERMISSION_DENIED")
    llm.grant(
        "authz_rules:\n  - models: ['openai-main/gpt-4o', 'openai-main/gpt-4o-mini']\n    users: [bob]\n"
    )
    assert llm.post("/chat/completions", key, body).status_code == 200


def test_unauthenticated_calls_are_braked_per_address(backend, llm, settings):
    settings.INFERIA_GATEWAY_ANONYMOUS_RPM = 3
    # Start one second into a fresh per-minute window, so the calls below cannot
    # straddle two windows (the gateway runs in this process, on the same clock).
    clock.advance(60 - clock.time() % 60 + 1)
    url = f"{llm.base_url}/chat/completions"
    body = {"model": "openai-main/gpt-4o", "messages": CHAT}
    bad = {"Authorization": "Bearer ifr_AAAAAAAAAAAA_" + "B" * 50}
    responses = [
        httpx.post(url, json=body),
        httpx.post(url, json=body, headers=bad),
        httpx.get(f"{llm.base_url}/nowhere"),
    ]
    for response, status in zip(responses, (401, 401, 404), strict=True):
        assert response.status_code == status
        assert response.headers["X-RateLimit-Limit"] == "3"
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0"]
    braked = httpx.post(url, json=body, headers=bad)
    assert_gateway_error(braked, 429, "RATE_LIMITED")
    assert int(braked.headers["Retry-After"]) >= 1
    # A valid key from the same address is not braked by others' failures.
    assert llm.post("/chat/completions", llm.key(), body).status_code == 200


def test_an_undeclared_body_over_the_limit_is_refused_while_it_streams_in(backend, llm):
    llm.org_settings(max_body_bytes=2048)

    def chunks():
        for _ in range(10):
            yield b" " * 1024

    response = httpx.post(
        f"{llm.base_url}/chat/completions",
        content=chunks(),
        headers={"Authorization": f"Bearer {llm.key()}", "Content-Type": "application/json"},
    )
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_gateway_error(response, 413, "PAYLOAD_TOO_LARGE")
