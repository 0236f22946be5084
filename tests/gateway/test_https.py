"""In production (SECURE_SSL_REDIRECT, HSTS) the gateway refuses plain HTTP and sends
HSTS on HTTPS answers, as Django's SecurityMiddleware does for every other page."""

from __future__ import annotations

from tests.gateway.conftest import assert_gateway_error

CHAT = [{"role": "user", "content": "hi"}]


def test_plain_http_is_refused_and_https_gets_hsts(llm, settings):
    key = llm.key()  # minted before the switch (the API's test client speaks plain HTTP)
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = False
    body = {"model": "openai-main/gpt-4o", "messages": CHAT}
    refused = llm.post("/chat/completions", key, body)
    error = assert_gateway_error(refused, 403, "PERMISSION_DENIED")
    assert error["message"] == "HTTPS is required"
    assert "strict-transport-security" not in refused.headers
    ok = llm.post("/chat/completions", key, body, **{"X-Forwarded-Proto": "https"})
    assert ok.status_code == 200
    assert ok.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"


def test_development_serves_plain_http_without_hsts(llm, settings):
    settings.SECURE_SSL_REDIRECT = False
    settings.SECURE_HSTS_SECONDS = 0
    response = llm.post(
        "/chat/completions", llm.key(), {"model": "openai-main/gpt-4o", "messages": CHAT}
    )
    assert response.status_code == 200
    assert "strict-transport-security" not in response.headers
