"""OpenAPI extensions: how our own authentication appears in the schema."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema


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


class InputAwareAutoSchema(AutoSchema):
    """The request body of a write is the view's declared ``input_serializers`` entry:
    the schema documents exactly what the base view enforces (``inferia.api``)."""

    def get_request_serializer(self) -> Any:
        from inferia.api import RawBody

        declared = getattr(self.view, "input_serializers", None) or {}
        if self.method in declared and not isinstance(declared[self.method], RawBody):
            return declared[self.method]
        return super().get_request_serializer()
