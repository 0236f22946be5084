"""A replaced secret or base URL is used by every gateway process from the moment
the call returns (the org epoch, bumped by the service on commit), never after a
cache lifetime."""

from __future__ import annotations

from tests.gateway.conftest import UPSTREAM_SECRET

ORG = "/api/v1/orgs/acme"
CHAT = {"model": "openai-main/gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def _warm(llm, key: str) -> None:
    for _ in range(2):
        assert llm.post("/chat/completions", key, CHAT).status_code == 200


def _account_id(llm) -> str:
    return llm.admin.get(f"{ORG}/provider-accounts").json()["results"][0]["id"]


def test_new_base_url_is_used_by_the_very_next_call(backend, llm, upstream_requests):
    key = llm.key()
    _warm(llm, key)
    assert upstream_requests[-1]["path"] == "/v1/chat/completions"
    response = llm.admin.patch(
        f"{ORG}/provider-accounts/{_account_id(llm)}",
        {"base_url": f"{llm.upstream.url}/moved/v1"},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert llm.post("/chat/completions", key, CHAT).status_code == 200
    assert upstream_requests[-1]["path"] == "/moved/v1/chat/completions"


def test_new_secret_is_used_by_the_very_next_call(backend, llm, upstream_requests):
    key = llm.key()
    _warm(llm, key)
    assert upstream_requests[-1]["headers"]["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    replacement = "sk-fake-replaced-" + "R" * 32
    response = llm.admin.put(
        f"{ORG}/provider-accounts/{_account_id(llm)}/secret", {"secret": replacement}, format="json"
    )
    assert response.status_code == 200, response.content
    assert llm.post("/chat/completions", key, CHAT).status_code == 200
    assert upstream_requests[-1]["headers"]["authorization"] == f"Bearer {replacement}"
