"""The OpenAPI schema describes every operation in its own words, by resource, with its
errors in the envelope, its security, and the gateway's endpoints."""

from __future__ import annotations

import pytest
from django.test import Client
from drf_spectacular.validation import validate_schema

from inferia.schema_operations import OPERATIONS

METHODS = {"get", "post", "put", "patch", "delete"}
TAGS = {
    "orgs",
    "cache",
    "members",
    "roles",
    "teams",
    "invitations",
    "api-keys",
    "service-accounts",
    "provider-accounts",
    "access-rules",
    "deployments",
    "sso",
    "audit",
    "usage",
    "auth",
    "gateway",
    "scim-tokens",
    "knowledge-bases",
}
GATEWAY = {
    "/api/llm/v1/chat/completions": "post",
    "/api/llm/v1/completions": "post",
    "/api/llm/v1/embeddings": "post",
    "/api/llm/v1/models": "get",
    "/api/llm/v1/models/{model}": "get",
    "/api/llm/v1/responses": "post",
    "/api/llm/v1/messages": "post",
    # openai.AzureOpenAI's URL shape: the deployment in the path is the model.
    "/api/llm/openai/deployments/{deployment}/chat/completions": "post",
    "/api/llm/openai/deployments/{deployment}/completions": "post",
    "/api/llm/openai/deployments/{deployment}/embeddings": "post",
}


@pytest.fixture
def document(db):
    response = Client().get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def _operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_schema_is_valid_openapi(document):
    validate_schema(document)  # raises on any violation of the OpenAPI 3 schema


def test_every_operation_has_its_own_summary_and_description(document):
    operations = list(_operations(document))
    assert len(operations) >= 70
    summaries = [op.get("summary", "") for _, _, op in operations]
    descriptions = [op.get("description", "") for _, _, op in operations]
    missing = [f"{m.upper()} {p}" for p, m, op in operations if not op.get("summary")]
    assert missing == []
    assert all(text.strip() for text in descriptions)
    assert len(set(summaries)) == len(summaries), "two operations share a summary"
    assert len(set(descriptions)) == len(descriptions), "two operations share a description"
    # No operation falls back to a view's class docstring (the old shared text).
    assert not any("Base of every" in text for text in descriptions)


def test_every_rest_operation_is_in_the_table_and_the_table_has_no_stale_entry(document):
    rest = {(m.upper(), p) for p, m, _ in _operations(document) if p.startswith("/api/v1/")}
    assert rest == set(OPERATIONS)


def test_operations_are_tagged_by_resource(document):
    assert {tag["name"] for tag in document["tags"]} == TAGS
    by_path = {}
    for path, method, operation in _operations(document):
        assert len(operation["tags"]) == 1 and operation["tags"][0] in TAGS, (path, method)
        by_path[(method, path)] = operation["tags"][0]
    assert by_path[("post", "/api/v1/auth/login")] == "auth"
    assert by_path[("post", "/api/v1/orgs")] == "orgs"
    assert by_path[("post", "/api/v1/orgs/{org}/transfer-ownership")] == "orgs"
    assert by_path[("patch", "/api/v1/orgs/{org}/members/{id}")] == "members"
    assert by_path[("post", "/api/v1/orgs/{org}/teams/{id}/members")] == "teams"
    assert by_path[("post", "/api/v1/invitations/{token}/accept")] == "invitations"
    assert by_path[("post", "/api/v1/orgs/{org}/api-keys/{id}/rotate")] == "api-keys"
    assert by_path[("put", "/api/v1/orgs/{org}/access-rules.yaml")] == "access-rules"
    assert by_path[("get", "/api/v1/orgs/{org}/audit-logs")] == "audit"
    assert by_path[("get", "/api/v1/orgs/{org}/usage")] == "usage"
    assert by_path[("delete", "/api/v1/orgs/{org}/cache")] == "cache"
    assert by_path[("post", "/api/llm/v1/chat/completions")] == "gateway"
    assert set(by_path.values()) == TAGS  # every tag names at least one operation


# The device authorization grant's two endpoints answer OAuth errors in the RFC's shape.
OAUTH_PATHS = {"/api/v1/auth/device/code", "/api/v1/auth/device/token"}


def _error_ref(response):
    return response["content"]["application/json"]["schema"]["$ref"]


def test_error_responses_use_the_envelope(document):
    error = document["components"]["schemas"]["Error"]
    inner = error["properties"]["error"]
    assert set(inner["required"]) == {"code", "message", "details"}
    assert "PERMISSION_DENIED" in inner["properties"]["code"]["enum"]
    for path, method, operation in _operations(document):
        if not path.startswith("/api/v1/"):
            continue
        responses = operation["responses"]
        assert "401" in responses, (method, path)
        for status, response in responses.items():
            if path in OAUTH_PATHS and status in ("400", "401"):
                # RFC 8628 / RFC 6749 section 5.2: OAuth clients parse {error, error_description}.
                assert _error_ref(response) == "#/components/schemas/OAuthErrorOutput"
            elif status.startswith(("4", "5")):
                assert _error_ref(response) == "#/components/schemas/Error", (method, path)
    ops = document["paths"]
    assert {"400", "401", "403", "404", "409"} <= set(
        ops["/api/v1/orgs/{org}/api-keys"]["post"]["responses"]
    )
    assert "429" in ops["/api/v1/auth/login"]["post"]["responses"]
    assert "404" in ops["/api/v1/orgs/{org}/members/{id}"]["get"]["responses"]
    assert "400" not in ops["/api/v1/orgs/{org}/members/{id}"]["get"]["responses"]
    assert "403" not in ops["/api/v1/auth/login"]["post"]["responses"]


def test_security_schemes_let_authorize_take_a_jwt_or_an_api_key(document):
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["type"] == "http" and schemes["bearerAuth"]["scheme"] == "bearer"
    assert schemes["apiKeyAuth"] == {
        **schemes["apiKeyAuth"],
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }
    paths = document["paths"]
    assert paths["/api/v1/auth/login"]["post"]["security"] == []
    assert paths["/api/v1/auth/me"]["get"]["security"] == [{"bearerAuth": []}]
    assert paths["/api/v1/orgs/{org}/api-keys"]["get"]["security"] == [
        {"bearerAuth": []},
        {"apiKeyAuth": []},
    ]


def test_gateway_endpoints_are_described_with_shapes_and_security(document):
    for path, method in GATEWAY.items():
        operation = document["paths"][path][method]
        assert operation["tags"] == ["gateway"]
        assert {"bearerAuth": []} in operation["security"]
        assert {"apiKeyAuth": []} in operation["security"]
        ok = operation["responses"]["200"]
        assert ok["content"]["application/json"]["schema"]["$ref"].startswith("#/components/")
        assert "X-RateLimit-Remaining" in ok["headers"]
        assert "X-Inferia-Overhead-Ms" in ok["headers"]
        assert operation["responses"]["401"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/GatewayError"
        }
        if method == "post":
            body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            name = body.rsplit("/", 1)[1]
            required = document["components"]["schemas"][name]["required"]
            if "{deployment}" in path:
                # The path names the model; the body may leave it out.
                assert "model" not in required and len(required) == 1, (path, required)
                parameters = {(p["in"], p["name"]): p for p in operation["parameters"]}
                assert parameters[("path", "deployment")]["required"] is True
                assert parameters[("query", "api-version")]["required"] is False
            else:
                assert "model" in required
    chat = document["paths"]["/api/llm/v1/chat/completions"]["post"]
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    assert "429" in chat["responses"] and "Retry-After" in chat["responses"]["429"]["description"]
