"""The gateway's part of the OpenAPI schema (``/api/llm/v1/...``).

The gateway is a plain ASGI app (``gateway/app.py``), not DRF, so
``inferia.schema.postprocess`` adds this static fragment. The shapes follow the
OpenAI wire format (and Anthropic's for ``/messages``); requests accept more fields
than listed and pass them upstream.
"""

from __future__ import annotations

from typing import Any

GATEWAY_SECURITY: list[dict[str, list[str]]] = [
    {"bearerAuth": []},
    {"apiKeyAuth": []},
    {"azureApiKeyAuth": []},
]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_USAGE = {
    "type": "object",
    "properties": {
        "prompt_tokens": {"type": "integer"},
        "completion_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
    },
}

_MESSAGE = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": {
            "oneOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "object", "additionalProperties": True}},
            ],
            "nullable": True,
        },
        "name": {"type": "string"},
        "tool_calls": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
        "tool_call_id": {"type": "string"},
    },
    "additionalProperties": True,
}

_SIZING = {
    "max_tokens": {
        "type": "integer",
        "minimum": 1,
        "description": "1 to INFERIA_GATEWAY_MAX_TOKENS_CAP (131072); sizes the token reservation.",
    },
    "n": {"type": "integer", "minimum": 1, "description": "1 to INFERIA_GATEWAY_MAX_CHOICES (16)."},
    "stream": {
        "type": "boolean",
        "default": False,
        "description": "Relay server-sent events chunk by chunk (needs inference:stream).",
    },
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "GatewayError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "type"],
                "properties": {
                    "code": {"type": "string", "example": "PERMISSION_DENIED"},
                    "message": {"type": "string"},
                    "details": {"nullable": True},
                    "type": {
                        "type": "string",
                        "description": "OpenAI SDK error type",
                        "example": "permission_error",
                    },
                },
            }
        },
    },
    "ChatCompletionRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            "model": {"type": "string", "example": "openai-main/gpt-4o"},
            "messages": {"type": "array", "items": _MESSAGE, "minItems": 1},
            "max_completion_tokens": {"type": "integer", "minimum": 1},
            "temperature": {"type": "number"},
            "tools": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
            "stream_options": {"type": "object", "additionalProperties": True},
            **_SIZING,
        },
        "additionalProperties": True,
    },
    "ChatCompletion": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "example": "chat.completion"},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "message": _MESSAGE,
                        "finish_reason": {"type": "string", "nullable": True},
                    },
                },
            },
            "usage": _USAGE,
        },
    },
    "CompletionRequest": {
        "type": "object",
        "required": ["model", "prompt"],
        "properties": {
            "model": {"type": "string", "example": "vllm-local/meta-llama/Llama-3.1-8B"},
            "prompt": {
                "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
            },
            "suffix": {"type": "string"},
            "best_of": {"type": "integer", "minimum": 1},
            **_SIZING,
        },
        "additionalProperties": True,
    },
    "Completion": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "example": "text_completion"},
            "model": {"type": "string"},
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "text": {"type": "string"},
                        "finish_reason": {"type": "string", "nullable": True},
                    },
                },
            },
            "usage": _USAGE,
        },
    },
    "EmbeddingRequest": {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": {"type": "string", "example": "openai-main/text-embedding-3-small"},
            "input": {
                "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
            },
            "encoding_format": {"type": "string", "enum": ["float", "base64"]},
        },
        "additionalProperties": True,
    },
    "EmbeddingList": {
        "type": "object",
        "properties": {
            "object": {"type": "string", "example": "list"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "object": {"type": "string", "example": "embedding"},
                        "index": {"type": "integer"},
                        "embedding": {"type": "array", "items": {"type": "number"}},
                    },
                },
            },
            "model": {"type": "string"},
            "usage": _USAGE,
        },
    },
    "Model": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "example": "openai-main/gpt-4o"},
            "object": {"type": "string", "example": "model"},
            "created": {"type": "integer"},
            "owned_by": {"type": "string"},
        },
    },
    "ModelList": {
        "type": "object",
        "properties": {
            "object": {"type": "string", "example": "list"},
            "data": {"type": "array", "items": _ref("Model")},
        },
    },
    "ResponseRequest": {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": {"type": "string"},
            "input": {
                "oneOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "object", "additionalProperties": True}},
                ]
            },
            "instructions": {"type": "string"},
            "max_output_tokens": {"type": "integer", "minimum": 1},
            "stream": {"type": "boolean", "default": False},
        },
        "additionalProperties": True,
    },
    "Response": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "example": "response"},
            "model": {"type": "string"},
            "status": {"type": "string"},
            "output": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
            "output_text": {"type": "string"},
            "usage": {"type": "object", "additionalProperties": True},
        },
    },
    "MessageRequest": {
        "type": "object",
        "required": ["model", "messages", "max_tokens"],
        "properties": {
            "model": {"type": "string", "example": "anthropic-main/claude-sonnet-4"},
            "system": {
                "oneOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "object", "additionalProperties": True}},
                ]
            },
            "messages": {
                "type": "array",
                "items": {"type": "object", "additionalProperties": True},
            },
            "max_tokens": {"type": "integer", "minimum": 1},
            "stream": {"type": "boolean", "default": False},
        },
        "additionalProperties": True,
    },
    "Message": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "type": {"type": "string", "example": "message"},
            "role": {"type": "string", "example": "assistant"},
            "model": {"type": "string"},
            "content": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
            "stop_reason": {"type": "string", "nullable": True},
            "usage": {
                "type": "object",
                "properties": {
                    "input_tokens": {"type": "integer"},
                    "output_tokens": {"type": "integer"},
                },
            },
        },
    },
}

_RATE_HEADERS = {
    name: {"description": text, "schema": {"type": schema}}
    for name, text, schema in [
        (
            "X-RateLimit-Limit",
            "Requests a minute of the tightest limit (key, principal, org).",
            "integer",
        ),
        ("X-RateLimit-Remaining", "Requests left in the current minute.", "integer"),
        ("X-RateLimit-Reset", "When the window resets (epoch seconds).", "integer"),
        ("X-RateLimit-Limit-Tokens", "Tokens a minute of the tightest token limit.", "integer"),
        ("X-RateLimit-Remaining-Tokens", "Tokens left in the current minute.", "integer"),
        ("X-Inferia-Overhead-Ms", "Time spent in the gateway, excluding the upstream.", "number"),
        ("X-Request-ID", "The client's X-Request-ID, or one the gateway made.", "string"),
    ]
}

_ERRORS = {
    "400": "VALIDATION_ERROR: malformed JSON, a missing or bad field, a prompt over the limit.",
    "401": "AUTHENTICATION_FAILED: no, unknown, expired or revoked credential.",
    "403": "PERMISSION_DENIED: no `inference:run`/`inference:stream`, or no access rule for the model.",
    "404": "NOT_FOUND: an unknown model name.",
    "413": "PAYLOAD_TOO_LARGE: the body is over INFERIA_MAX_BODY_BYTES (10 MB).",
    "429": "RATE_LIMITED or QUOTA_EXCEEDED, with `Retry-After`.",
    "502": "UPSTREAM_ERROR: the provider failed.",
    "503": "SERVICE_UNAVAILABLE: the limit store or database cannot confirm the credential.",
    "504": "UPSTREAM_TIMEOUT: the provider did not answer in time.",
}


def _error_responses(*codes: str) -> dict[str, Any]:
    wanted = codes or tuple(_ERRORS)
    return {
        code: {
            "description": _ERRORS[code],
            "headers": _RATE_HEADERS,
            "content": {"application/json": {"schema": _ref("GatewayError")}},
        }
        for code in wanted
    }


def _operation(
    *,
    op_id: str,
    summary: str,
    description: str,
    response: str,
    request: str | None = None,
    stream: bool = False,
    errors: tuple[str, ...] = (),
) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": _ref(response)}}
    if stream:
        content["text/event-stream"] = {
            "schema": {
                "type": "string",
                "description": "Server-sent events (`data: {...}` chunks) when `stream` is true.",
            }
        }
    operation: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "description": description,
        "tags": ["gateway"],
        "security": GATEWAY_SECURITY,
        "responses": {
            "200": {
                "description": "The upstream's answer",
                "headers": _RATE_HEADERS,
                "content": content,
            },
            **_error_responses(*errors),
        },
    }
    if request is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(request)}},
        }
    return operation


_POST_ERRORS = ("400", "401", "403", "404", "413", "429", "502", "503", "504")

PATHS: dict[str, dict[str, Any]] = {
    "/api/llm/v1/chat/completions": {
        "post": _operation(
            op_id="gateway_chat_completions",
            summary="Chat completion (OpenAI)",
            description=(
                "OpenAI's chat completions: `model` is the FQN `account/model`. Needs "
                "`inference:run` (and `inference:stream` with `stream: true`) and an access "
                "rule for the model; limits and quotas are counted before the upstream call."
            ),
            request="ChatCompletionRequest",
            response="ChatCompletion",
            stream=True,
            errors=_POST_ERRORS,
        )
    },
    "/api/llm/v1/completions": {
        "post": _operation(
            op_id="gateway_completions",
            summary="Text completion (OpenAI legacy)",
            description=(
                "OpenAI's legacy completions (`prompt`, optional `suffix`), for models served "
                "by vLLM, Ollama or TGI; same permissions and limits as chat."
            ),
            request="CompletionRequest",
            response="Completion",
            stream=True,
            errors=_POST_ERRORS,
        )
    },
    "/api/llm/v1/embeddings": {
        "post": _operation(
            op_id="gateway_embeddings",
            summary="Embeddings (OpenAI)",
            description=(
                "Vectors for a string or a list of strings; needs `inference:run` and an "
                "access rule for the model. Tokens count against the limits."
            ),
            request="EmbeddingRequest",
            response="EmbeddingList",
            errors=("400", "401", "403", "404", "413", "429", "502", "503", "504"),
        )
    },
    "/api/llm/v1/models": {
        "get": _operation(
            op_id="gateway_models_list",
            summary="Models I may use",
            description=(
                "The FQNs the caller's access rules and key model list allow, in OpenAI's "
                "list format. Needs a valid credential; an empty list is a valid answer."
            ),
            response="ModelList",
            errors=("401", "429", "503"),
        )
    },
    "/api/llm/v1/models/{model}": {
        "get": {
            **_operation(
                op_id="gateway_models_retrieve",
                summary="One model I may use",
                description=(
                    "One FQN (it may contain `/`) if the caller may use it; 404 otherwise, "
                    "whether it does not exist or is not granted."
                ),
                response="Model",
                errors=("401", "404", "429", "503"),
            ),
            "parameters": [
                {
                    "name": "model",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "The FQN, e.g. openai-main/gpt-4o",
                }
            ],
        }
    },
    "/api/llm/v1/responses": {
        "post": _operation(
            op_id="gateway_responses",
            summary="Response (OpenAI Responses API)",
            description=(
                "OpenAI's Responses API, translated to chat completions for the upstream; "
                "same permissions, limits and audit as chat."
            ),
            request="ResponseRequest",
            response="Response",
            stream=True,
            errors=_POST_ERRORS,
        )
    },
    "/api/llm/v1/messages": {
        "post": _operation(
            op_id="gateway_messages",
            summary="Message (Anthropic Messages API)",
            description=(
                "Anthropic's Messages API for Anthropic SDK clients; `model` is the FQN. "
                "Same permissions, limits and audit as chat."
            ),
            request="MessageRequest",
            response="Message",
            stream=True,
            errors=_POST_ERRORS,
        )
    },
}

# openai.AzureOpenAI(azure_endpoint="<server>/api/llm") calls these: the deployment in the
# path is the model FQN (the SDK percent-encodes its "/"), so the body's `model` may be left
# out, and if sent must be the same. Otherwise the same endpoints as under /api/llm/v1/.
_DEPLOYMENT_PARAMETERS = [
    {
        "name": "deployment",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "The model FQN, e.g. openai-main/gpt-4o (its `/` sent as `%2F`).",
    },
    {
        "name": "api-version",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "Accepted for the Azure SDK, any value; ignored.",
    },
]


def _deployment_path(suffix: str, endpoint: str, request: str, response: str, stream: bool):
    """The Azure-shaped twin of ``/api/llm/v1/{suffix}``; registers its request schema."""
    body = dict(SCHEMAS[request])
    body["required"] = [field for field in body["required"] if field != "model"]
    body["properties"] = {
        **body["properties"],
        "model": {
            "type": "string",
            "description": "Optional: the deployment in the path; if sent, the same FQN.",
        },
    }
    SCHEMAS[f"Deployment{request}"] = body
    operation = _operation(
        op_id=f"gateway_deployment_{suffix.replace('/', '_')}",
        summary=f"{PATHS[f'/api/llm/v1/{suffix}']['post']['summary']}, Azure URL",
        description=(
            f"`POST /api/llm/v1/{suffix}` in Azure OpenAI's URL shape, for "
            '`openai.AzureOpenAI(azure_endpoint="<server>/api/llm")`: the deployment is the '
            "model FQN; a different `model` in the body is 400 `VALIDATION_ERROR`. Same "
            f"permissions, limits, usage and audit records (endpoint `{endpoint}`)."
        ),
        request=f"Deployment{request}",
        response=response,
        stream=stream,
        errors=_POST_ERRORS,
    )
    path = f"/api/llm/openai/deployments/{{deployment}}/{suffix}"
    return path, {"post": {**operation, "parameters": _DEPLOYMENT_PARAMETERS}}


PATHS.update(
    _deployment_path(*spec)
    for spec in (
        ("chat/completions", "chat", "ChatCompletionRequest", "ChatCompletion", True),
        ("completions", "completions", "CompletionRequest", "Completion", True),
        ("embeddings", "embeddings", "EmbeddingRequest", "EmbeddingList", False),
    )
)
