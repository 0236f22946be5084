"""OpenAPI: a write's request body is the view's declared input (``inferia.api``)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema


class InputAwareAutoSchema(AutoSchema):
    """The request body of a write is the view's declared ``input_serializers`` entry:
    the schema documents exactly what the base view enforces (``inferia.api``)."""

    def get_request_serializer(self) -> Any:
        from inferia.api import RawBody

        declared = getattr(self.view, "input_serializers", None) or {}
        if self.method in declared and not isinstance(declared[self.method], RawBody):
            return declared[self.method]
        return super().get_request_serializer()
