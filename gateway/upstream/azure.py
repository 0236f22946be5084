"""Azure OpenAI: deployment URLs, ``api-version`` and the ``api-key`` header."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from gateway.upstream import openai
from gateway.upstream.base import UpstreamCall, join

DEFAULT_API_VERSION = "2024-10-21"


def prepare(
    route, endpoint: str, body: dict[str, Any], secret_plaintext: str | None
) -> UpstreamCall:
    base = openai.prepare(route, endpoint, body, None)
    deployment = route.deployments.get(route.upstream_model, route.upstream_model)
    version = route.api_version or DEFAULT_API_VERSION
    url = join(
        route.base_url, f"openai/deployments/{quote(deployment, safe='')}/{openai.PATHS[endpoint]}"
    )
    headers = dict(base.headers)
    if secret_plaintext:
        headers["api-key"] = secret_plaintext
    upstream_body = dict(base.body)
    upstream_body.pop("model", None)
    return UpstreamCall(
        url=f"{url}?api-version={quote(version)}",
        headers=headers,
        body=upstream_body,
        strip_usage_chunk=base.strip_usage_chunk,
    )


to_openai = openai.to_openai
stream_to_openai = openai.stream_to_openai
