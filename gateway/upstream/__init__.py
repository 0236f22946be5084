"""Upstream adapters: one small module per provider type behind one interface.

``prepare(route, endpoint, body, secret_plaintext)`` returns the HTTP call;
``to_openai(route, endpoint, data)`` maps a JSON answer to the OpenAI shape;
``stream_to_openai(route, lines)`` maps streamed lines to OpenAI SSE events.
The base URL always comes from the provider account, never from the request.
"""

from __future__ import annotations

from gateway.upstream import anthropic, azure, openai
from gateway.upstream.base import UpstreamCall

ADAPTERS = {
    "openai": openai,
    "openai_compatible": openai,
    "azure_openai": azure,
    "anthropic": anthropic,
}

__all__ = ["ADAPTERS", "UpstreamCall"]
