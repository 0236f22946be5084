"""CORS: one policy (inferia.cors) on both edges, the REST API and the gateway.

Allowed origins read responses (success, error, streamed); any other origin gets
no Access-Control-* header; '*' with credentials does not start.
"""

from __future__ import annotations

import httpx
import pytest
from django.test import override_settings

from tests.conftest import PASSWORD, assert_error
from tests.gateway import conftest as gateway_fixtures
from tests.inferia.test_production_profile import production_env, run

# The gateway's fixtures (tests/gateway/conftest.py), for the gateway edge below.
_fresh_gateway_state = gateway_fixtures._fresh_gateway_state
_usage_stream_per_worker = gateway_fixtures._usage_stream_per_worker
fake_upstream = gateway_fixtures.fake_upstream
gateway_server = gateway_fixtures.gateway_server
llm = gateway_fixtures.llm

APP = "https://app.example.com"
EVIL = "https://evil.example.net"
allowed = override_settings(CORS_ALLOWED_ORIGINS=[APP])


def cors_of(headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith("access-control-")}


def listed(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


# --- the REST API (django-cors-headers with inferia.cors deciding) -----------------------


@allowed
def test_allowed_origin_reads_a_success_and_an_error(cast, alice_client, anon_client):
    ok = alice_client.get("/api/v1/orgs", HTTP_ORIGIN=APP)
    assert ok.status_code == 200
    assert ok["Access-Control-Allow-Origin"] == APP
    assert "x-request-id" in listed(ok["Access-Control-Expose-Headers"])
    assert "origin" in listed(ok["Vary"])
    assert "Access-Control-Allow-Credentials" not in ok  # off by default
    error = anon_client.get("/api/v1/auth/me", HTTP_ORIGIN=APP)
    assert_error(error, 401, "AUTHENTICATION_FAILED")
    assert error["Access-Control-Allow-Origin"] == APP


@allowed
@pytest.mark.parametrize(
    "origin", [EVIL, "https://app.example.com.evil.net", "http://app.example.com", "null"]
)
def test_other_origins_get_no_cors_header(cast, alice_client, origin):
    response = alice_client.get("/api/v1/orgs", HTTP_ORIGIN=origin)
    assert response.status_code == 200
    assert cors_of(response) == {}
    assert "origin" in listed(response["Vary"])  # caches keep the answers per origin apart


def test_no_origin_is_allowed_by_default(cast, alice_client):
    response = alice_client.get("/api/v1/orgs", HTTP_ORIGIN=APP)
    assert cors_of(response) == {}
    preflight = alice_client.options(
        "/api/v1/auth/login", HTTP_ORIGIN=APP, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
    )
    assert cors_of(preflight) == {}


@allowed
def test_preflight_of_an_allowed_origin(anon_client):
    response = anon_client.options(
        "/api/v1/auth/login",
        HTTP_ORIGIN=APP,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type, authorization",
    )
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == APP
    assert "POST" in listed(response["Access-Control-Allow-Methods"]) | {"POST"}
    assert {"post", "patch"} <= listed(response["Access-Control-Allow-Methods"])
    assert {"content-type", "authorization", "x-api-key", "api-key"} <= listed(
        response["Access-Control-Allow-Headers"]
    )
    assert int(response["Access-Control-Max-Age"]) > 0


@allowed
def test_preflight_with_a_header_not_allowed_does_not_allow_it(anon_client):
    response = anon_client.options(
        "/api/v1/auth/login",
        HTTP_ORIGIN=APP,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="x-evil-header",
    )
    # The browser compares the requested header with this list and refuses the call.
    assert "x-evil-header" not in listed(response["Access-Control-Allow-Headers"])


@override_settings(CORS_ALLOWED_ORIGINS=[APP], CORS_ALLOW_METHODS=["GET", "POST"])
def test_methods_follow_the_setting(anon_client):
    response = anon_client.options(
        "/api/v1/auth/login", HTTP_ORIGIN=APP, HTTP_ACCESS_CONTROL_REQUEST_METHOD="DELETE"
    )
    assert listed(response["Access-Control-Allow-Methods"]) == {"get", "post"}


@allowed
def test_preflight_of_a_disallowed_origin_allows_nothing(anon_client):
    response = anon_client.options(
        "/api/v1/auth/login", HTTP_ORIGIN=EVIL, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
    )
    assert response.status_code < 500
    assert cors_of(response) == {}


@override_settings(CORS_ALLOWED_ORIGINS=[APP], CORS_ALLOW_CREDENTIALS=True)
def test_credentials_name_the_exact_origin(cast, anon_client):
    response = anon_client.post(
        "/api/v1/auth/login",
        {"username": "alice", "password": PASSWORD},
        format="json",
        HTTP_ORIGIN=APP,
    )
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == APP
    assert response["Access-Control-Allow-Credentials"] == "true"
    assert cors_of(anon_client.get("/api/v1/auth/me", HTTP_ORIGIN=EVIL)) == {}


@override_settings(CORS_ALLOWED_ORIGINS=[], CORS_ALLOW_ALL_ORIGINS=True)
def test_star_answers_star_never_the_origin(cast, alice_client):
    response = alice_client.get("/api/v1/orgs", HTTP_ORIGIN=EVIL)
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response


@allowed
def test_dashboard_pages_are_not_cross_origin(cast, client):
    response = client.get("/login", HTTP_ORIGIN=APP)
    assert cors_of(response) == {}


@pytest.mark.parametrize(
    ("env", "says"),
    [
        (
            {"INFERIA_CORS_ORIGINS": "*", "INFERIA_CORS_ALLOW_CREDENTIALS": "true"},
            "cannot be combined",
        ),
        ({"INFERIA_CORS_ORIGINS": "https://app.example.com/"}, "not an exact origin"),
        ({"INFERIA_CORS_ORIGINS": "*,https://app.example.com"}, "stands alone"),
        ({"INFERIA_CORS_ORIGINS": "app.example.com"}, "not an exact origin"),
    ],
)
def test_bad_cors_settings_stop_startup(tmp_path, env, says):
    result = run(["manage.py", "check"], production_env(tmp_path, **env))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and says in result.stderr, result.stderr


def test_good_cors_settings_start(tmp_path):
    env = production_env(
        tmp_path,
        INFERIA_CORS_ORIGINS="https://app.example.com,http://localhost:5173",
        INFERIA_CORS_ALLOW_CREDENTIALS="true",
    )
    result = run(["manage.py", "check"], env)
    assert result.returncode == 0, result.stderr


# --- the gateway (plain ASGI, gateway/cors.py) -----------------------------------------


CHAT = [{"role": "user", "content": "Hello"}]


@allowed
def test_gateway_preflight_of_an_allowed_origin(transactional_db, gateway_server):
    response = httpx.options(
        f"{gateway_server.url}/api/llm/v1/chat/completions",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-stainless-lang",
        },
    )
    assert response.status_code == 204
    assert response.headers["allow"] == "POST, OPTIONS"
    assert response.headers["access-control-allow-origin"] == APP
    assert {"authorization", "content-type", "x-stainless-lang"} <= listed(
        response.headers["access-control-allow-headers"]
    )
    assert "post" in listed(response.headers["access-control-allow-methods"])
    assert response.headers["x-request-id"]


@allowed
def test_gateway_options_without_an_allowed_origin_is_204_with_allow(
    transactional_db, gateway_server
):
    for headers in ({"Origin": EVIL, "Access-Control-Request-Method": "POST"}, {}):
        response = httpx.options(f"{gateway_server.url}/api/llm/v1/models", headers=headers)
        assert response.status_code == 204
        assert response.headers["allow"] == "GET, OPTIONS"
        assert cors_of(response.headers) == {}


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/api/llm/v1/chat/completions", "POST"),
        ("/api/llm/v1/completions", "POST"),
        ("/api/llm/v1/embeddings", "POST"),
        ("/api/llm/v1/responses", "POST"),
        ("/api/llm/v1/messages", "POST"),
        ("/api/llm/v1/models", "GET"),
        ("/api/llm/v1/models/openai-main/gpt-4o", "GET"),
        ("/api/llm/openai/deployments/openai-main%2Fgpt-4o/chat/completions", "POST"),
        ("/api/llm/openai/deployments/openai-main/gpt-4o/embeddings", "POST"),
    ],
)
def test_gateway_options_answers_on_every_route(transactional_db, gateway_server, path, method):
    """Every gateway route, the prefix route of one model included, answers OPTIONS."""
    response = httpx.options(f"{gateway_server.url}{path}")
    assert response.status_code == 204
    assert response.headers["allow"] == f"{method}, OPTIONS"


def test_gateway_options_on_an_unknown_path_is_404(transactional_db, gateway_server):
    response = httpx.options(f"{gateway_server.url}/api/llm/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


@allowed
def test_gateway_error_carries_the_headers_for_an_allowed_origin(transactional_db, gateway_server):
    response = httpx.post(
        f"{gateway_server.url}/api/llm/v1/chat/completions",
        json={"model": "openai-main/gpt-4o", "messages": CHAT},
        headers={"Origin": APP},
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AUTHENTICATION_FAILED"
    assert response.headers["access-control-allow-origin"] == APP
    assert "origin" in listed(response.headers["vary"])
    evil = httpx.post(
        f"{gateway_server.url}/api/llm/v1/chat/completions",
        json={"model": "openai-main/gpt-4o", "messages": CHAT},
        headers={"Origin": EVIL},
    )
    assert evil.status_code == 401 and cors_of(evil.headers) == {}


@allowed
def test_gateway_streamed_response_carries_the_headers(llm):
    key = llm.key()
    with httpx.stream(
        "POST",
        f"{llm.base_url}/chat/completions",
        json={"model": "openai-main/gpt-4o", "messages": CHAT, "stream": True},
        headers={"Authorization": f"Bearer {key}", "Origin": APP},
        timeout=30,
    ) as response:
        body = b"".join(response.iter_bytes())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["access-control-allow-origin"] == APP
    assert "x-ratelimit-remaining" in listed(response.headers["access-control-expose-headers"])
    assert b"[DONE]" in body


@override_settings(CORS_ALLOWED_ORIGINS=[APP], CORS_ALLOW_CREDENTIALS=True)
def test_both_edges_send_the_same_cors_headers(transactional_db, cast, gateway_server, client):
    """The one policy: a preflight and an error answered by Django and by the gateway
    carry the same Access-Control-* headers."""
    preflight = {"Origin": APP, "Access-Control-Request-Method": "POST"}
    django_preflight = client.options("/api/v1/auth/login", headers=preflight)
    gateway_preflight = httpx.options(
        f"{gateway_server.url}/api/llm/v1/chat/completions", headers=preflight
    )
    assert cors_of(django_preflight) == cors_of(gateway_preflight.headers)
    assert cors_of(django_preflight)  # not two empty answers
    django_error = client.get("/api/v1/auth/me", headers={"Origin": APP})
    gateway_error = httpx.get(f"{gateway_server.url}/api/llm/v1/models", headers={"Origin": APP})
    assert django_error.status_code == gateway_error.status_code == 401
    assert cors_of(django_error) == cors_of(gateway_error.headers)
    assert cors_of(django_error)["access-control-allow-credentials"] == "true"
