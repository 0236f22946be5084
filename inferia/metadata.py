"""OPTIONS answers: DRF's metadata, with each write's fields from its declared input."""

from __future__ import annotations

from typing import Any

from rest_framework.metadata import SimpleMetadata
from rest_framework.request import Request

from inferia.serializers import InputSerializer


class InputMetadata(SimpleMetadata):
    """OPTIONS: the fields of each write method's declared input serializer
    (DRF's default instantiates ``serializer_class``, an output, after a
    permission check that needs credentials)."""

    def determine_actions(self, request: Request, view: Any) -> dict[str, Any]:
        actions = {}
        declared = getattr(view, "input_serializers", {})
        for method in {"PUT", "POST", "PATCH"} & set(view.allowed_methods):
            serializer_class = declared.get(method)
            if isinstance(serializer_class, type) and issubclass(serializer_class, InputSerializer):
                actions[method] = self.get_serializer_info(serializer_class())
        return actions
