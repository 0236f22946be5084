"""OpenAPI: how our authentication appears, and the postprocessing that completes the
schema (per-operation summaries, tags, error responses, security, the gateway)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension

from inferia.errors import ErrorCode
from inferia.schema_gateway import PATHS as GATEWAY_PATHS
from inferia.schema_gateway import SCHEMAS as GATEWAY_SCHEMAS
from inferia.schema_operations import OPERATIONS, tag_for

TAGS = [
    ("auth", "Log in, refresh, log out, who am I, password, TOTP two-factor authentication."),
    ("orgs", "Organizations (tenants), their settings, deletion and ownership transfer."),
    ("members", "Members of an organization and their roles."),
    ("roles", "Built-in and custom roles (sets of permissions)."),
    ("teams", "Teams: groups of members named by access rules and grants."),
    ("invitations", "Invitations by e-mail, and accepting one."),
    ("api-keys", "Scoped API keys: mint (secret shown once), list, revoke, rotate."),
    ("service-accounts", "Non-human identities whose keys outlive their maker's membership."),
    ("provider-accounts", "Upstream LLM accounts with encrypted secrets and per-account grants."),
    ("access-rules", "Which models each user, team, role and service account may use."),
    (
        "deployments",
        "Named model endpoints (deployment/<name>) routing across targets, with versions.",
    ),
    (
        "knowledge-bases",
        "Document collections: upload, ingestion through the gateway, per-collection access.",
    ),
    ("sso", "Single sign-on: identity providers, group mapping rules, verified e-mail domains."),
    ("audit", "The append-only audit log (JSON pages, CSV, JSON lines)."),
    (
        "scim-tokens",
        "Identity providers' SCIM tokens (the SCIM 2.0 API itself is /scim/v2, see docs/scim.md).",
    ),
    ("usage", "Requests, tokens, cost and latency over time."),
    ("cache", "The gateway's response cache of an organization: settings, contents, purges."),
    ("gateway", "The OpenAI-compatible gateway under /api/llm/v1 (a plain ASGI app)."),
]

SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "`Authorization: Bearer <token>`: the access token (JWT) from "
            "POST /api/v1/auth/login, or an Inferia API key (`ifr_...`) on org endpoints "
            "and the gateway."
        ),
    },
    "apiKeyAuth": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An Inferia API key (`ifr_...`) in `X-API-Key`.",
    },
    "azureApiKeyAuth": {
        "type": "apiKey",
        "in": "header",
        "name": "api-key",
        "description": "Gateway only: an Inferia API key in Azure OpenAI's `api-key` header.",
    },
}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "enum": [code.value for code in ErrorCode]},
                "message": {"type": "string"},
                "details": {
                    "nullable": True,
                    "description": "For VALIDATION_ERROR: field -> list of messages.",
                },
            },
        }
    },
}

_ERROR_TEXT = {
    "400": "VALIDATION_ERROR: bad or missing fields, malformed JSON (`details`: field -> messages).",
    "401": "AUTHENTICATION_FAILED (or OTP_REQUIRED at login): missing, invalid, expired or revoked credentials.",
    "403": "PERMISSION_DENIED (a permission the caller lacks) or TWO_FACTOR_REQUIRED (org policy).",
    "404": "NOT_FOUND: unknown id, or anything of another organization.",
    "409": "CONFLICT: the state forbids it (last owner, used invitation, name taken).",
    "413": "PAYLOAD_TOO_LARGE: the file is over INFERIA_KB_MAX_FILE_BYTES, or the "
    "organization's documents would exceed INFERIA_KB_MAX_ORG_BYTES.",
    "429": "RATE_LIMITED: too many attempts; wait `Retry-After` seconds.",
    "502": "UPSTREAM_ERROR: the identity provider, or a deployment's launcher, could not be "
    "reached or answered badly.",
}

_NO_AUTH = {
    "/api/v1/auth/login",
    "/api/v1/auth/refresh",
    "/api/v1/auth/logout",
    "/api/v1/auth/sso/{org}",
    "/api/v1/auth/sso/token",
    "/api/v1/auth/device/code",
    "/api/v1/auth/device/token",
}
_USER_ONLY_PREFIXES = ("/api/v1/auth/",)
# Operations that check a password or one-time code, which lock out after failures.
_THROTTLED = {
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/device/code"),
    ("POST", "/api/v1/auth/password"),
    ("POST", "/api/v1/auth/2fa/confirm"),
    ("POST", "/api/v1/auth/2fa/disable"),
    ("POST", "/api/v1/auth/2fa/recovery-codes"),
    ("DELETE", "/api/v1/orgs/{org}"),
    ("POST", "/api/v1/orgs/{org}/transfer-ownership"),
    ("PATCH", "/api/v1/orgs/{org}/provider-accounts/{id}"),
    ("PUT", "/api/v1/orgs/{org}/provider-accounts/{id}/secret"),
    ("PATCH", "/api/v1/orgs/{org}/identity-providers/{id}"),
}
_PAGING = {"page", "page_size", "cursor"}
# Operations that call an identity provider, or a deployment's launcher, before they answer.
_UPSTREAM = {
    ("POST", "/api/v1/auth/sso/{org}"),
    ("POST", "/api/v1/orgs/{org}/deployments"),
    ("DELETE", "/api/v1/orgs/{org}/deployments/{name}"),
    ("PUT", "/api/v1/orgs/{org}/deployments.yaml"),
    ("PUT", "/api/v1/orgs/{org}/access-rules.yaml"),
}


# Uploads, whose files and the org's storage have limits of their own.
_UPLOADS = {("POST", "/api/v1/orgs/{org}/knowledge-bases/{name}/documents")}


class BearerAuthenticationScheme(OpenApiAuthenticationExtension):
    """``Authorization: Bearer <access token or API key>`` (or ``X-API-Key``)."""

    target_class = "inferia.authentication.BearerAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return SECURITY_SCHEMES["bearerAuth"]


def _security(path: str) -> list[dict[str, list[str]]]:
    if path in _NO_AUTH:
        return []
    if path.startswith("/api/v1/invitations/"):
        return [{}, {"bearerAuth": []}]  # a new account needs no credential
    if path.startswith(_USER_ONLY_PREFIXES) or path == "/api/v1/orgs":
        return [{"bearerAuth": []}]  # an access token; API keys are refused (403)
    return [{"bearerAuth": []}, {"apiKeyAuth": []}]


def _error_statuses(method: str, path: str, operation: dict[str, Any]) -> list[str]:
    statuses = []
    queries = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
    writes = method in ("POST", "PUT", "PATCH", "DELETE")
    # Writes validate a body (DELETE of an org asks for a code or password in it).
    if writes or queries - _PAGING:
        statuses.append("400")
    statuses.append("401")
    if path not in _NO_AUTH:
        statuses.append("403")
    # A page past the end ("Invalid page") is 404, like an unknown id.
    if "{" in path or queries & _PAGING:
        statuses.append("404")
    if writes and path.startswith(("/api/v1/orgs", "/api/v1/invitations/", "/api/v1/auth/2fa/")):
        statuses.append("409")
    if (method, path) in _UPLOADS:
        statuses.append("413")
    if (method, path) in _THROTTLED:
        statuses.append("429")
    if (method, path) in _UPSTREAM:
        statuses.append("502")
    return statuses


def postprocess(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """Complete drf-spectacular's schema: each operation's own summary, description and
    tag, the error envelope for its error statuses, its security, and the gateway."""
    components = result.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    schemas.update(GATEWAY_SCHEMAS)
    components["securitySchemes"] = SECURITY_SCHEMES
    error_ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in result.get("paths", {}).items():
        for method_lower, operation in operations.items():
            method = method_lower.upper()
            summary, description = OPERATIONS.get((method, path), ("", ""))
            if summary:
                operation["summary"] = summary
                operation["description"] = description
            operation["tags"] = [tag_for(path)]
            operation["security"] = _security(path)
            responses = operation.setdefault("responses", {})
            for status in _error_statuses(method, path, operation):
                responses.setdefault(
                    status,
                    {
                        "description": _ERROR_TEXT[status],
                        "content": {"application/json": {"schema": error_ref}},
                    },
                )
    result.setdefault("paths", {}).update(GATEWAY_PATHS)
    result["tags"] = [{"name": name, "description": text} for name, text in TAGS]
    return result
