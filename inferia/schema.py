"""OpenAPI extensions: how our own authentication appears in the schema."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerAuthenticationScheme(OpenApiAuthenticationExtension):
    """``Authorization: Bearer <access token>`` (the JWT from ``/api/v1/auth/login``)."""

    target_class = "inferia.authentication.BearerAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "The access token from POST /api/v1/auth/login.",
        }
