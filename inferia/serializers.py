"""The one input grammar of ``/api/v1``: a write names only fields the endpoint takes.

Every input serializer derives from ``InputSerializer``. A key it does not
declare as writable — a misspelling, a field of another endpoint, or a
read-only field of the output such as ``id`` or ``has_secret`` — is a
VALIDATION_ERROR naming that key (``{"secret": ["Unknown field."]}``), never
dropped in silence. Nested input serializers are held to the same rule.
The API base views (``inferia.api``) apply ``unknown_fields`` before any
handler runs, from the view's ``input_serializers`` declaration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

UNKNOWN_FIELD = "Unknown field."


def writable_field_names(serializer: serializers.Serializer) -> set[str]:
    """Names a client may send: declared fields that are not read-only."""
    return {name for name, field in serializer.fields.items() if not field.read_only}


# A client's key is echoed back: bounded, so a huge or numerous key cannot bloat the answer.
MAX_KEY_CHARS, MAX_KEYS_NAMED = 100, 50


def unknown_fields(serializer: serializers.Serializer | None, data: Any) -> dict[str, list[str]]:
    """``{key: ["Unknown field."]}`` for each top-level key of ``data`` that
    ``serializer`` does not take (``None``: takes nothing); empty when ``data`` is
    not a mapping. At most ``MAX_KEYS_NAMED`` keys, each cut to ``MAX_KEY_CHARS``."""
    if not isinstance(data, Mapping):
        return {}
    allowed = writable_field_names(serializer) if serializer is not None else set()
    unknown = sorted(key for key in map(str, data) if key not in allowed)
    return {key[:MAX_KEY_CHARS]: [UNKNOWN_FIELD] for key in unknown[:MAX_KEYS_NAMED]}


class InputSerializer(serializers.Serializer):
    """Base of every input serializer: unknown and read-only keys are refused."""

    def to_internal_value(self, data: Any) -> Any:
        unknown = unknown_fields(self, data)
        if unknown:
            raise serializers.ValidationError(unknown)
        return super().to_internal_value(data)
