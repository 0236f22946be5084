"""SCIM fixtures: a SCIM token of Acme made through the API by its Owner, and a client
that speaks to /scim/v2 as an identity provider does (bearer token, scim+json)."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

# The gateway's real-HTTP fixtures (test_deactivation calls the running gateway).
from tests.gateway.conftest import (  # noqa: F401
    _fresh_gateway_state,
    _usage_stream_per_worker,
    backend,
    fake_upstream,
    gateway_server,
    llm,
)

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


class ScimClient:
    """An identity provider: JSON bodies as application/scim+json, the token as Bearer."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.http = APIClient()
        self.http.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    def _send(self, method: str, path: str, body=None, **extra):
        kwargs = {}
        if body is not None:
            kwargs = {"data": json.dumps(body), "content_type": "application/scim+json"}
        return getattr(self.http, method)(f"/scim/v2{path}", **kwargs, **extra)

    def get(self, path: str, params: dict | None = None):
        return self.http.get(f"/scim/v2{path}", params or {})

    def post(self, path: str, body):
        return self._send("post", path, body)

    def put(self, path: str, body):
        return self._send("put", path, body)

    def patch(self, path: str, *operations):
        return self._send(
            "patch", path, {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}
        )

    def delete(self, path: str):
        return self.http.delete(f"/scim/v2{path}")


def make_token(client: APIClient, org: str = "acme", **body) -> dict:
    response = client.post(
        f"/api/v1/orgs/{org}/scim-tokens", {"name": "okta", **body}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def acme_token(alice_client) -> dict:
    return make_token(alice_client)


@pytest.fixture
def scim(acme_token) -> ScimClient:
    return ScimClient(acme_token["token"])


def user_body(user_name: str, **extra) -> dict:
    given, _, rest = user_name.partition("@")
    return {
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "name": {"givenName": given.title(), "familyName": "Example"},
        "emails": [{"primary": True, "value": user_name, "type": "work"}],
        "displayName": f"{given.title()} Example",
        "active": True,
        **extra,
    }


def assert_scim_error(response, status: int, scim_type: str | None = None) -> dict:
    """SCIM's error shape (RFC 7644 3.12), never the contract's envelope."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/scim+json"), response["Content-Type"]
    body = response.json()
    assert body["schemas"] == [ERROR_SCHEMA], body
    assert body["status"] == str(status), body
    assert isinstance(body["detail"], str) and body["detail"], body
    assert body.get("scimType") == scim_type, body
    assert "error" not in body
    return body
