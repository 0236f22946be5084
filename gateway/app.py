"""The OpenAI-compatible gateway, ``/api/llm/v1/...``, as a plain ASGI application.

Azure OpenAI's deployment URLs (``/api/llm/openai/deployments/<fqn>/chat/completions``,
``/completions``, ``/embeddings``) are a second route to the same endpoints, with the
model taken from the path (``DEPLOYMENT_PREFIX``).

``inferia.asgi`` sends every request under ``/api/llm/`` here and everything
else to Django. The gateway needs none of Django's request machinery (sessions,
CSRF, messages, templates): its callers present a bearer credential and speak
JSON, and on one core that machinery cost more than the rest of a request
(README.md, Benchmark). Django's ORM is still the source of truth, reached only on a
cold cache, in the embedded mode, and on refusals that must be audited.

One request: authenticate (cached principal) -> read and validate the body ->
permission and model access -> limits and quotas with the revocation epoch (one
Redis round trip) -> the upstream call through the account's adapter on the
shared session -> the usage record (one Redis round trip) -> the answer.
A ``deployment/<name>`` model is routed over its targets after the limits
(``_complete_deployment``, docs/deployments.md, Routing): each attempt is that same
upstream call, and the answer names its target in ``X-Inferia-Target``.
Errors use the contract's envelope plus ``type`` for the OpenAI SDK, and every
response carries ``X-Request-ID``, ``X-Inferia-Overhead-Ms`` and, once the
caller or its address is known, the ``X-RateLimit-*`` headers.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson
from django.conf import settings

from audit.redaction import redact_text
from audit.services import record as audit_record
from deployments import health as deployment_health
from deployments import routing
from gateway import (
    cache,
    cors,
    degraded,
    http,
    messages,
    principals,
    ratelimit,
    responses,
    singleflight,
    sizing,
    spans,
    usage,
)
from gateway.orm import orm
from gateway.upstream import ADAPTERS
from inferia import clock, metrics, tracing
from inferia.authentication import CREDENTIAL_HELP, credential_from
from inferia.errors import (
    AuthenticationFailed,
    ErrorCode,
    InferiaError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ServiceUnavailable,
    ValidationError,
    error_body,
)
from inferia.request_meta import RequestMeta, asgi_headers, request_id_from
from keys import secret_refs
from knowledge import embedding as knowledge_embedding
from knowledge import retrieval
from orgs.policy import unset_value

logger = logging.getLogger("inferia.request")
PREFIX = "/api/llm/"
ROUTES = {
    "/api/llm/v1/chat/completions": ("chat", "POST"),
    "/api/llm/v1/completions": ("completions", "POST"),
    "/api/llm/v1/embeddings": ("embeddings", "POST"),
    "/api/llm/v1/models": ("models", "GET"),
    "/api/llm/v1/responses": ("responses", "POST"),
    "/api/llm/v1/messages": ("messages", "POST"),
}
MODEL_PREFIX = "/api/llm/v1/models/"  # + the FQN, which holds a "/": GET one model
# openai.AzureOpenAI(azure_endpoint="<server>/api/llm") posts to this prefix + the FQN as
# the deployment (percent-encoded by the SDK) + one of these suffixes, longest first; it
# is the same endpoint as its /v1/ path, with the model taken from the path.
DEPLOYMENT_PREFIX = "/api/llm/openai/deployments/"
DEPLOYMENT_ENDPOINTS = (
    ("/chat/completions", "chat"),
    ("/completions", "completions"),
    ("/embeddings", "embeddings"),
)
# Client dialects translated to chat completions and back (gateway/responses.py has
# the interface): the endpoint keeps its own name in the usage and audit records.
DIALECTS: dict[str, Any] = {"responses": responses, "messages": messages}

OPENAI_TYPES = {
    ErrorCode.VALIDATION_ERROR: "invalid_request_error",
    ErrorCode.AUTHENTICATION_FAILED: "authentication_error",
    ErrorCode.PERMISSION_DENIED: "permission_error",
    ErrorCode.TWO_FACTOR_REQUIRED: "permission_error",
    ErrorCode.NOT_FOUND: "not_found_error",
    ErrorCode.METHOD_NOT_ALLOWED: "invalid_request_error",
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: "invalid_request_error",
    ErrorCode.PAYLOAD_TOO_LARGE: "invalid_request_error",
    ErrorCode.RATE_LIMITED: "rate_limit_error",
    ErrorCode.QUOTA_EXCEEDED: "insufficient_quota",
    ErrorCode.UPSTREAM_ERROR: "api_error",
    ErrorCode.UPSTREAM_TIMEOUT: "timeout_error",
    ErrorCode.SERVICE_UNAVAILABLE: "api_error",
    ErrorCode.INTERNAL_ERROR: "api_error",
}


class GatewayError(InferiaError):
    def __init__(
        self,
        code: ErrorCode,
        status: int,
        message: str,
        *,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
        fallback: str | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.code, self.status = code, status
        self.headers = headers or {}
        # An upstream failure's class for a deployment's ``fallback_on`` and its breaker:
        # "429", "5xx", "timeout" or "connect"; None for anything else (a 400...).
        self.fallback = fallback


def _proxied_https(headers: dict[str, str]) -> bool:
    """Django's SECURE_PROXY_SSL_HEADER: a trusted proxy says the client used HTTPS."""
    marker = settings.SECURE_PROXY_SSL_HEADER
    if not marker:
        return False
    name, value = marker
    return headers.get(name.removeprefix("HTTP_").replace("_", "-").lower(), "") == value


def _hsts() -> bytes:
    value = f"max-age={settings.SECURE_HSTS_SECONDS}"
    if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
        value += "; includeSubDomains"
    if settings.SECURE_HSTS_PRELOAD:
        value += "; preload"
    return value.encode()


class Request:
    """What the gateway needs of an ASGI request (headers by lower-case name); services
    and the audit log get ``meta``, a ``RequestMeta``, never this object."""

    def __init__(self, scope: dict) -> None:
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        # As sent, still percent-encoded (a "/" inside an Azure deployment name is %2F).
        self.raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        self.headers = headers = asgi_headers(scope)
        # The server's id keys this call's records; the client's X-Request-ID is
        # echoed and stored as data only (two calls may send the same one).
        self.id = str(uuid.uuid4())
        self.request_id = request_id_from(headers.get("x-request-id"), self.id.replace("-", ""))
        self.meta = RequestMeta.from_asgi(scope, request_id=self.request_id, headers=headers)
        self.client_ip = self.meta.ip
        self.secure = scope.get("scheme") == "https" or _proxied_https(headers)

    def credential(self) -> str | None:
        return credential_from(
            self.headers.get("authorization", ""),
            self.headers.get("x-api-key", ""),
            self.headers.get("api-key", ""),
        )


class Call:
    """The state of one gateway request, for the response headers and the usage record."""

    def __init__(self, request: Request, endpoint: str, deployment: str = "") -> None:
        self.request = request
        self.endpoint = endpoint
        self.deployment = deployment  # the model named by an Azure deployment URL
        self.started = time.perf_counter()
        self.upstream_seconds = 0.0
        self.principal: principals.Principal | None = None
        self.route: principals.Route | None = None
        # A call to ``deployment/<name>``: its routes, the target that answered (or is
        # being tried) and what happened to the targets tried or skipped before it.
        self.deployment_route: routing.DeploymentRoute | None = None
        self.target: routing.TargetRoute | None = None
        self.attempts: list[dict[str, str]] = []
        self.model = deployment
        self.headers: dict[str, str] = {}
        self.reserved: list[tuple[str, str, int]] = []
        self.size: sizing.Size | None = None
        self.streamed = False
        self.degraded = ""  # "allowed" or "denied" when Redis could not decide
        self.body: dict[str, Any] = {}
        self.response_body: Any = None
        self.status = 0
        self.dialect = DIALECTS.get(endpoint)
        self.client_body: dict[str, Any] = {}  # the request as a dialect's client sent it
        # A chat completion naming knowledge bases (``knowledge.retrieval``).
        self.retrieval: retrieval.Retrieval | None = None
        # The response cache (``gateway.cache``): this call's lookup, and on a hit the
        # stored answer's original token counts (the call itself uses none).
        self.cache: cache.Lookup | None = None
        self.cached_usage: dict[str, int] | None = None
        # For the metrics (inferia.metrics.gateway_call): what the answer and record said.
        self.error_code = ""
        self.prompt_tokens = self.completion_tokens = 0
        self.cost = 0.0  # what the usage record charged
        self.refusal: tuple[str, str] | None = None  # (scope, kind) of a limit that refused
        self.trace: spans.Trace | None = None  # only while tracing is on (docs/tracing.md)

    @property
    def upstream_endpoint(self) -> str:
        """The endpoint the adapters and sizing see (a dialect's is chat)."""
        return self.dialect.upstream_endpoint if self.dialect else self.endpoint

    @property
    def caller(self) -> principals.Principal:
        """The authenticated principal: ``_serve`` sets it before anything reads it."""
        if self.principal is None:
            raise AuthenticationFailed(CREDENTIAL_HELP)
        return self.principal

    @property
    def chosen_route(self) -> principals.Route:
        """The route of the requested model: ``_authorize`` sets it before anything reads it."""
        if self.route is None:
            raise GatewayError(ErrorCode.INTERNAL_ERROR, 500, "No route chosen for the request")
        return self.route

    def overhead_ms(self) -> float:
        return max(0.0, (time.perf_counter() - self.started - self.upstream_seconds) * 1000)

    def entry(
        self, status: int, error_code: str = "", usage_data: dict | None = None
    ) -> dict[str, Any]:
        usage_data = usage_data or {}
        prompt = int(usage_data.get("prompt_tokens") or 0)
        completion = int(usage_data.get("completion_tokens") or 0)
        self.prompt_tokens, self.completion_tokens, self.error_code = prompt, completion, error_code
        self.cost = (self.route.cost_micros(prompt, completion) / 1e6) if self.route else 0.0
        p = self.caller
        entry: dict[str, Any] = {
            "id": self.request.id,
            "created_at": clock.time(),
            "org_id": str(p.org_id),
            "request_id": self.request.request_id,
            "user_id": str(p.user_id) if p.user_id else None,
            "service_account_id": str(p.service_account_id) if p.service_account_id else None,
            "actor_label": p.label,
            "key_prefix": p.key_prefix,
            "endpoint": self.endpoint,
            "model": self.model[:260],
            "provider_account": self.route.account_name if self.route else "",
            "status_code": status,
            "error_code": error_code,
            "streamed": self.streamed,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "cost": self.cost,
            "latency_ms": round((time.perf_counter() - self.started) * 1000, 3),
            "upstream_latency_ms": round(self.upstream_seconds * 1000, 3),
            "client_ip": self.request.client_ip,
        }
        if self.degraded:
            entry["degraded"] = self.degraded
        if self.deployment_route is not None:
            entry["deployment"] = self.deployment_route.name
            entry["target"] = self.target.name if self.target else ""
            entry["target_fqn"] = self.target.fqn if self.target else ""
            if self.attempts:
                entry["attempts"] = list(self.attempts)
        if usage_data.get("estimated"):
            entry["usage_estimated"] = True
        if self.retrieval is not None:
            entry["knowledge_bases"] = self.retrieval.names
        if self.cached_usage is not None:
            entry["cache_hit"] = True
            entry["cached_usage"] = self.cached_usage
        if p.policy.payload_logging and self.body:
            # Prompt and answer, encrypted, only for orgs that turned payload logging on.
            from inferia import crypto

            payload = orjson.dumps({"request": self.body, "response": self.response_body})
            entry["payload"] = crypto.encrypt(
                payload, context=f"audit.payload:{p.org_id}:{self.request.id}"
            )
        return entry

    def reserved_usage(self) -> dict[str, Any]:
        """The usage to charge when the upstream was called but reported none (a stream
        the client abandoned, or one that broke): the reservation, never zero."""
        size = self.size
        return {
            "prompt_tokens": size.prompt_tokens if size else 0,
            "completion_tokens": size.completion_tokens if size else 0,
            "estimated": True,
        }

    def adjustments(self, usage_data: dict | None) -> list[tuple[str, int]]:
        """Settle each reservation to the real usage (all of it released on failure)."""
        usage_data = usage_data or {}
        prompt = int(usage_data.get("prompt_tokens") or 0)
        completion = int(usage_data.get("completion_tokens") or 0)
        actual_tokens = prompt + completion
        actual_cost = self.route.cost_micros(prompt, completion) if self.route else 0
        out = []
        for key, kind, amount in self.reserved:
            actual = actual_cost if kind == ratelimit.QUOTA_COST else actual_tokens
            out.append((key, actual - amount))
        self.reserved = []
        return out


# --- responses ---------------------------------------------------------------------------


def _header_list(
    call: Call, content_type: bytes, extra: dict[str, str] | None = None
) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"content-type", content_type),
        (b"x-request-id", call.request.request_id.encode()),
        (b"x-content-type-options", b"nosniff"),
    ]
    if call.request.secure and settings.SECURE_HSTS_SECONDS:
        headers.append((b"strict-transport-security", _hsts()))
    for name, value in {**call.headers, **(extra or {})}.items():
        headers.append((name.lower().encode(), str(value).encode("latin-1")))
    headers.append((b"x-inferia-overhead-ms", b"%.3f" % call.overhead_ms()))
    return headers


async def _send_json(
    send, call: Call, status: int, payload: Any, extra: dict[str, str] | None = None
) -> None:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    headers = _header_list(call, b"application/json", extra)
    headers.append((b"content-length", str(len(body)).encode()))
    call.status = status
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send, call: Call, error: InferiaError) -> None:
    call.error_code = str(error.code)
    body = error_body(error.code, error.message, error.details)
    body["error"]["type"] = OPENAI_TYPES.get(error.code, "api_error")
    if call.dialect is not None and hasattr(call.dialect, "error_body"):
        body = call.dialect.error_body(body)  # the dialect's SDK error shape, envelope kept
    extra = dict(getattr(error, "headers", {}))
    if error.retry_after is not None:
        extra["Retry-After"] = str(max(1, int(error.retry_after)))
    await _send_json(send, call, error.status, body, extra)


# --- the caller ----------------------------------------------------------------------------


async def _build_principal(raw: str, hint: str) -> principals.Principal:
    try:
        principal = await orm(principals.build)(raw, hint)
    except principals.EpochUnavailable:
        # Redis is down: verified from the database for the requests waiting now only
        # (never cached); the limits then fail too and the org's settings decide (_degraded).
        return await orm(principals.build)(raw, hint, verify_only=True)
    except principals.DatabaseUnavailable:
        # The database is down, Redis is not: a recently expired snapshot stands in
        # (the limit script still checks its epoch, so a revoke still refuses it), else 503.
        stale = principals.cached(raw, hint, stale=True)
        if stale is None:
            raise
        return stale
    principals.remember(raw, hint, principal)
    return principal


async def _load_principal(
    raw: str, hint: str, *, seen_epoch: int | None = None
) -> principals.Principal:
    """The cached principal, else one build per credential at a time: the requests that
    miss together wait for it. A rebuild after a stale epoch (``seen_epoch``) joins only
    a build started after that epoch was seen, never one that may predate the change."""
    principal = principals.cached(raw, hint)
    if principal is None:
        principal = await singleflight.run(
            ("principal", principals.cache_key(raw, hint), seen_epoch),
            lambda: _build_principal(raw, hint),
        )
    # Every use, cache hit or not: a key's expiry or an access token's ``exp``.
    if principals.expired(principal):
        principals.forget(raw, hint)
        raise principals.expired_error(principal)
    return principal


def _limits(p: principals.Principal) -> list[ratelimit.Limit]:
    policy = p.policy
    limits: list[ratelimit.Limit] = []

    def add(scope: str, kind: str, subject: Any, value: Any, scale: float = 1) -> None:
        if value:
            limits.append(ratelimit.Limit(scope, kind, str(subject), int(float(value) * scale)))

    if p.key_id:
        kl = p.key_limits
        add(
            "key",
            ratelimit.REQUESTS,
            p.key_id,
            kl.get("requests_per_minute") or policy.applied("key_requests_per_minute"),
        )
        add(
            "key",
            ratelimit.TOKENS,
            p.key_id,
            kl.get("tokens_per_minute") or policy.applied("key_tokens_per_minute"),
        )
        add("key", ratelimit.QUOTA_TOKENS, p.key_id, kl.get("monthly_token_quota"))
        add("key", ratelimit.QUOTA_COST, p.key_id, kl.get("monthly_cost_quota"), 1e6)
    principal_rpm = policy.principal_requests_per_minute or (
        None if p.key_id else unset_value("key_requests_per_minute")
    )
    principal_tpm = policy.principal_tokens_per_minute or (
        None if p.key_id else unset_value("key_tokens_per_minute")
    )
    add("principal", ratelimit.REQUESTS, p.principal_subject, principal_rpm)
    add("principal", ratelimit.TOKENS, p.principal_subject, principal_tpm)
    add("org", ratelimit.REQUESTS, p.org_id, policy.requests_per_minute)
    add("org", ratelimit.TOKENS, p.org_id, policy.tokens_per_minute)
    add("org", ratelimit.QUOTA_TOKENS, p.org_id, policy.monthly_token_quota)
    add("org", ratelimit.QUOTA_COST, p.org_id, policy.monthly_cost_quota, 1e6)
    return limits


async def _limits_check(call: Call, *, count: bool, reserve_tokens: int = 0, reserve_cost: int = 0):
    """Epoch and limits in one step; raises StaleEpoch or BackendUnavailable."""
    p = call.caller
    checking = ratelimit.check(
        org_id=p.org_id,
        expected_epoch=p.epoch,
        limits=_limits(p),
        reserve_tokens=reserve_tokens,
        reserve_cost=reserve_cost,
        count=count,
    )
    trace = call.trace
    if trace is None:
        return await checking
    trace.limits_begin(count)
    try:
        decision = await checking
    except BaseException as exc:
        trace.limits_end(None, type(exc).__name__)
        raise
    trace.limits_end(decision)
    return decision


# --- validation and authorization ----------------------------------------------------------


async def _read_body(call: Call, receive, limit: int) -> bytes:
    """The whole body, refused (413) as soon as it passes ``limit``, declared or not."""
    declared = call.request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ValidationError("Invalid Content-Length")
        if int(declared) > limit:
            raise PayloadTooLarge(f"Request body is larger than {limit} bytes")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


class ClientGone(Exception):
    """The client hung up before its request was read."""


def _parse(call: Call, raw_body: bytes) -> dict[str, Any]:
    content_type = call.request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != "application/json":
        raise GatewayError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE, 415, "Send the body as application/json"
        )
    try:
        body = orjson.loads(raw_body)
    except orjson.JSONDecodeError as exc:
        raise ValidationError("Malformed JSON body", details={"body": [str(exc)[:200]]}) from exc
    if not isinstance(body, dict):
        raise ValidationError("The body must be a JSON object")
    return body


def _deployment_route(path: str, raw: bytes) -> tuple[str, str]:
    """``(endpoint, model FQN)`` of an Azure deployment URL, or ``("unknown", "")``.

    Parsed from the raw path, where the SDK's encoded ``%2F`` keeps the FQN's slash apart
    from the endpoint's; an unencoded FQN is split at the longest endpoint suffix."""
    if not path.startswith(DEPLOYMENT_PREFIX):
        return "unknown", ""
    prefix = DEPLOYMENT_PREFIX.encode()
    rest = raw[len(prefix) :] if raw.startswith(prefix) else path[len(prefix) :].encode()
    for suffix, endpoint in DEPLOYMENT_ENDPOINTS:
        if rest.endswith(suffix.encode()) and len(rest) > len(suffix):
            deployment = unquote_to_bytes(rest[: -len(suffix)]).decode("utf-8", "replace")
            return endpoint, deployment
    return "unknown", ""


def _with_deployment(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """The deployment in the path is the model; a different ``model`` in the body is a 400."""
    model = body.get("model")
    if model is not None and model != call.deployment:
        raise ValidationError(
            "The body's 'model' differs from the deployment in the path",
            details={
                "model": [f"The path names {call.deployment[:200]}; omit 'model' or send the same."]
            },
        )
    return {**body, "model": call.deployment}


def _authorize(call: Call, body: dict[str, Any]) -> None:
    p = call.caller
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ValidationError(
            "'model' is required", details={"model": ["Give the model's account/model name."]}
        )
    call.model = model
    if "inference:run" not in p.permissions:
        raise PermissionDenied("Missing permission inference:run")
    if body.get("stream") and "inference:stream" not in p.permissions:
        raise PermissionDenied("Missing permission inference:stream")
    route = p.routes.get(model)
    if route is None:
        deployment = p.deployments.get(model)
        if deployment is not None:
            call.deployment_route = deployment  # its target is chosen after the limits
            return
        if model in p.catalog:
            raise PermissionDenied(f"You may not use the model {model}")
        raise NotFound(f"Model {model} not found")
    call.route = route


def _prepare(call: Call, raw_body: bytes) -> tuple[int, int]:
    """Parse, authorize and size the request; returns the worst case to reserve
    (tokens, cost in micro-units)."""
    body = _parse(call, raw_body)
    if call.deployment:
        body = _with_deployment(call, body)
    if call.dialect:
        call.client_body = body
        body = call.dialect.to_chat(body)
    # Chat retrieval's field is the gateway's own: never forwarded upstream.
    wanted = body.pop(retrieval.FIELD, None) if call.endpoint == "chat" else None
    call.body = body
    _authorize(call, body)
    call.streamed = bool(body.get("stream"))
    try:
        size = sizing.measure(call.upstream_endpoint, body, call.caller.policy)
    except ValidationError as error:
        raise _in_client_terms(call, error) from None
    call.size = size
    call.retrieval = None
    if wanted is not None:
        call.retrieval = retrieval.parse(wanted, body.get("messages"), call.caller.knowledge_bases)
    deployment = call.deployment_route
    if deployment is not None:
        _deployment_open(deployment)
        # Whichever target answers, the reservation covers it (settled to the real one).
        return size.tokens, deployment.max_cost_micros(size.prompt_tokens, size.completion_tokens)
    return size.tokens, call.chosen_route.cost_micros(size.prompt_tokens, size.completion_tokens)


def _deployment_open(deployment: routing.DeploymentRoute) -> None:
    """A stopped deployment, or one still being created, serves nobody (503)."""
    if deployment.status == "stopped":
        raise ServiceUnavailable(f"Deployment {deployment.fqn} is stopped")
    if deployment.status == "creating":
        raise ServiceUnavailable(f"Deployment {deployment.fqn} is not ready yet", retry_after=5)


def _in_client_terms(call: Call, error: ValidationError) -> ValidationError:
    """A chat-body error named with the dialect client's field (``max_output_tokens``)."""
    names = call.dialect.field_names if call.dialect else {}
    message, details = error.message, error.details
    if isinstance(details, dict):
        details = {names.get(field, field): value for field, value in details.items()}
    for chat_name, client_name in names.items():
        message = message.replace(f"'{chat_name}'", f"'{client_name}'")
    return ValidationError(message, details=details)


async def _rebuild(call: Call, raw: str, hint: str, attempt: int, epoch: int) -> None:
    """The cached principal is older than the org's epoch: rebuild it (once)."""
    if attempt:
        raise ServiceUnavailable("Access changed during the request; retry")
    principals.forget(raw, hint)
    if call.trace is not None:
        call.trace.authorize()
    call.principal = await _load_principal(raw, hint, seen_epoch=epoch)


async def _admitted(call: Call, raw: str, hint: str, raw_body: bytes) -> ratelimit.Decision:
    """Validation, authorization, then the limits with the revocation epoch.

    A refusal before the limits still reads them (for its headers) and checks the
    epoch, so a principal cached before a grant never refuses what is now allowed.
    A stale principal is rebuilt once. When the limit store is down, the org's
    ``*_on_backend_error`` settings decide (``degraded``)."""
    for attempt in (0, 1):
        try:
            try:
                reserve_tokens, reserve_cost = _prepare(call, raw_body)
            except InferiaError as refusal:
                if call.trace is not None:
                    call.trace.refused(refusal.code)
                try:
                    call.headers.update((await _limits_check(call, count=False)).headers)
                except ratelimit.BackendUnavailable:
                    pass  # the refusal stands; its headers cannot be known
                raise
            return await _limits_check(
                call, count=True, reserve_tokens=reserve_tokens, reserve_cost=reserve_cost
            )
        except ratelimit.StaleEpoch as stale:
            await _rebuild(call, raw, hint, attempt, stale.epoch)
        except ratelimit.BackendUnavailable:
            return await _degraded(call, raw, hint, raw_body)
    raise ServiceUnavailable("Cannot verify credentials right now")


async def _degraded(call: Call, raw: str, hint: str, raw_body: bytes) -> ratelimit.Decision:
    """Redis (or the embedded counter store) cannot count this request."""
    p = call.caller
    allowed = degraded.allows(p.policy, _limits(p))
    call.degraded = "allowed" if allowed else "denied"
    await degraded.alert(p, allowed=allowed, endpoint=call.endpoint)
    if not allowed:
        # Fail closed: the shared store cannot confirm the key is still valid.
        raise ServiceUnavailable("Cannot verify credentials or limits right now")
    if p.epoch != -1:
        # The epoch cannot be read, so the credential is verified from the database
        # on every degraded request (never from the cache) and access re-decided.
        call.principal = await orm(principals.build)(raw, hint, verify_only=True)
        _prepare(call, raw_body)
    return ratelimit.Decision(allowed=True, degraded=True)


# --- the upstream --------------------------------------------------------------------------


def _sanitize(text: str, secret_plaintext: str | None) -> str:
    if secret_plaintext:
        text = text.replace(secret_plaintext, "[REDACTED]")
    return redact_text(text)[:500]


def _upstream_error(
    status: int, content: bytes, secret_plaintext: str | None, headers
) -> GatewayError:
    text = content.decode(errors="replace")
    try:
        message = orjson.loads(content).get("error", {}).get("message", "")
    except (orjson.JSONDecodeError, AttributeError):
        message = ""
        if text.lstrip()[:1] == "<":  # an HTML page (a proxy's): markup, not a message
            text = ""
    message = _sanitize(str(message or text or f"HTTP {status}"), secret_plaintext)
    if status == 429:
        retry = headers.get("retry-after")
        return GatewayError(
            ErrorCode.RATE_LIMITED,
            429,
            f"Upstream rate limit: {message}",
            retry_after=int(retry) if retry and retry.isdigit() else 1,
            fallback="429",
        )
    if status in (400, 422):
        return GatewayError(
            ErrorCode.VALIDATION_ERROR, 400, f"Upstream rejected the request: {message}"
        )
    if status in (408, 504):
        return GatewayError(
            ErrorCode.UPSTREAM_TIMEOUT, 504, f"Upstream timed out: {message}", fallback="timeout"
        )
    return GatewayError(
        ErrorCode.UPSTREAM_ERROR,
        502,
        f"Upstream error {status}: {message}",
        fallback="5xx" if status >= 500 else None,
    )


async def _secret_for(call: Call, route: principals.Route) -> str | None:
    """The route's upstream secret; a secret reference that cannot be read now is
    502 (the manager answered no) or 503 (unreachable or not set up), named by its
    backend and failure class only, and audited."""
    try:
        return await singleflight.run(
            ("secret", route.account_id, route.secret_version),
            lambda: orm(principals.secret_for)(route),
        )
    except (secret_refs.SecretRefError, ValidationError) as exc:
        if isinstance(exc, secret_refs.SecretRefError):
            scheme, failure = exc.scheme, exc.failure
            what = secret_refs.DESCRIPTIONS[failure]
        else:  # the operator no longer allows the stored reference
            scheme, failure, what = "", None, "reference no longer allowed by the operator"
        logger.warning(
            "provider secret unavailable for %s: %s %s",
            route.fqn,
            scheme or "reference",
            failure or "not_allowed",
            extra={"request_id": call.request.request_id},
        )
        try:
            await orm(principals.secret_failure_record)(route, exc, call.request.meta)
        except Exception:  # noqa: BLE001 - the refusal stands even when it cannot be recorded
            logger.exception("could not record a provider secret failure")
        message = f"Provider account {route.account_name}: {scheme or 'secret'} {what}"
        if failure in (secret_refs.Failure.UNREACHABLE, secret_refs.Failure.NOT_CONFIGURED):
            raise GatewayError(
                ErrorCode.SERVICE_UNAVAILABLE,
                503,
                message,
                retry_after=max(1, settings.INFERIA_SECRET_REF_FAILURE_SECONDS),
            ) from None
        raise GatewayError(ErrorCode.UPSTREAM_ERROR, 502, message) from None


def _fault(exc: Exception) -> GatewayError:
    if isinstance(exc, http.UpstreamTimeout | TimeoutError):
        return GatewayError(
            ErrorCode.UPSTREAM_TIMEOUT, 504, "Upstream timed out", fallback="timeout"
        )
    return GatewayError(
        ErrorCode.UPSTREAM_ERROR, 502, f"Upstream unreachable ({exc})", fallback="connect"
    )


async def _record(
    call: Call, status: int, error_code: str = "", usage_data: dict | None = None
) -> None:
    if call.principal is None:
        # Refused before a principal was known (no or bad credential): the
        # authentication decision is still audited, without any credential.
        auditing = orm(audit_record)(
            action="auth:gateway",
            outcome="denied",
            status_code=status,
            meta=call.request.meta,
            data={"endpoint": call.endpoint, "error_code": error_code},
        )
        if call.trace is None:
            await auditing
        else:
            entry = {"status_code": status, "error_code": error_code}
            await call.trace.recording(auditing, entry, "audit")
        return
    entry = call.entry(status, error_code, usage_data)
    writing = usage.write(entry, call.adjustments(usage_data))
    await (writing if call.trace is None else call.trace.recording(writing, entry, "usage"))


async def _complete(call: Call, send, receive, raw: str, hint: str) -> None:
    p = call.caller
    limit = min(settings.INFERIA_MAX_BODY_BYTES, p.policy.max_body_bytes or 10**12)
    raw_body = await _read_body(call, receive, limit)
    decision = await _admitted(call, raw, hint, raw_body)
    call.headers.update(decision.headers)
    if not decision.allowed:
        denied = decision.denied
        if denied is None:
            raise GatewayError(ErrorCode.INTERNAL_ERROR, 500, "A refusal without its limit")
        quota = denied.kind in (ratelimit.QUOTA_TOKENS, ratelimit.QUOTA_COST)
        call.refusal = (denied.scope, denied.kind)
        raise GatewayError(
            ErrorCode.QUOTA_EXCEEDED if quota else ErrorCode.RATE_LIMITED,
            429,
            f"{'Monthly quota' if quota else 'Rate limit'} of the {denied.scope} reached "
            f"({denied.kind.replace('_', ' ')} {denied.limit})",
            retry_after=decision.retry_after,
        )
    call.reserved = decision.reserved
    if call.retrieval is not None:
        await _retrieve(call, raw, hint)
    if call.caller.policy.cache_enabled and await _from_cache(call, send):
        return
    if call.deployment_route is not None:
        await _complete_deployment(call, send, receive, decision)
        return
    await _attempt(call, send, receive, call.chosen_route)


async def _from_cache(call: Call, send) -> bool:
    """Answer from the org's response cache (``gateway.cache``): True when it did.

    Runs after authorization, the limits and retrieval: a hit has passed the same
    checks as any call and counted one request; it uses no tokens (its reservation
    is released) and its usage and audit records say it was a cache hit."""
    p = call.caller
    lookup = cache.plan(
        policy=p.policy,
        org_id=p.org_id,
        endpoint=call.endpoint,
        model=call.model,
        streamed=call.streamed,
        body=call.body,
        client_body=call.client_body if call.dialect else None,
        cache_control=call.request.headers.get("cache-control", ""),
    )
    if lookup is None:
        return False
    call.cache = lookup
    if not lookup.read:
        call.headers[cache.HEADER] = "bypass"
        return False
    hit = await cache.get(lookup)
    if hit is None:
        call.headers[cache.HEADER] = "miss"
        return False
    call.headers[cache.HEADER] = "hit"
    call.cached_usage = hit.usage
    if hit.kind == cache.SSE:
        headers = _header_list(
            call, b"text/event-stream", {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        call.status = 200
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await _record_then(
            call, 200, "", None, lambda: send({"type": "http.response.body", "body": hit.body})
        )
        return True
    if p.policy.payload_logging:
        call.response_body = orjson.loads(hit.body)
    await _record_then(call, 200, "", None, lambda: _send_json(send, call, 200, hit.body))
    return True


async def _retrieve(call: Call, raw: str, hint: str) -> None:
    """Chat retrieval (``knowledge.retrieval``): the passages of the named collections
    go before the conversation as one system message. The query is embedded with the
    caller's own credential, through this application: that call's limits, quotas, cost
    and audit are the caller's too."""
    wanted = call.retrieval
    if wanted is None:
        return
    kbs = await orm(retrieval.collections)(call.caller.org_id, wanted.names)
    by_model: dict[str, list[float]] = {}
    for model in dict.fromkeys(kb.embedding_model for kb in kbs.values()):
        vectors = await knowledge_embedding.aembed_with_credential(
            raw, model, [wanted.query], org_hint=hint
        )
        by_model[model] = vectors[0]
    found = await orm(retrieval.search)(wanted, kbs, by_model)
    policy = call.caller.policy
    if call.size is None:
        raise GatewayError(ErrorCode.INTERNAL_ERROR, 500, "The request was not measured")
    call.body = retrieval.augmented(
        call.body, wanted, found, room=sizing.prompt_room(call.size, policy)
    )
    # The prompt as sent (what a usage estimate reads); within the limit by construction.
    call.size = sizing.measure(call.upstream_endpoint, call.body, policy)
    call.headers[retrieval.HEADER] = ",".join(wanted.names)


async def _within(deadline: float, awaitable):
    """``await awaitable``, cut at ``deadline`` (the loop's clock) with TimeoutError."""
    async with asyncio.timeout_at(deadline):
        return await awaitable


async def _attempt(
    call: Call,
    send,
    receive,
    route: principals.Route,
    *,
    timeout: float | None = None,
    private_hosts: tuple[str, ...] = (),
) -> tuple[int, float]:
    """Call the upstream of ``route`` and answer the client: (the status the answer
    ended with, seconds until the upstream's headers). Raises GatewayError before
    anything was sent to the client, with ``fallback`` naming the failure's class.
    ``timeout`` bounds the attempt (until the headers of a stream, else until the whole
    answer is read); ``private_hosts``: a launched endpoint, allowed for this call only."""
    if route.account_id is None:
        secret_plaintext = None  # a launched endpoint: no provider account, no secret
    else:
        hit, secret_plaintext = principals.secret_cached(route)
        if not hit:
            secret_plaintext = await _secret_for(call, route)
    adapter = ADAPTERS[route.provider_type]
    upstream_call = adapter.prepare(route, call.upstream_endpoint, call.body, secret_plaintext)
    trace = call.trace
    if trace is not None:
        trace.upstream_begin(call, route, upstream_call)  # adds the traceparent header
    allowed = call.caller.policy.allowed_private_hosts
    if private_hosts:
        allowed = (*allowed, *private_hosts)
    deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
    started = time.perf_counter()
    try:
        posting = http.post(
            upstream_call.url,
            upstream_call.headers,
            orjson.dumps(upstream_call.body),
            allowed_private_hosts=allowed,
        )
        upstream = await (posting if deadline is None else _within(deadline, posting))
    except (http.UpstreamTimeout, http.UpstreamUnreachable, TimeoutError) as exc:
        call.upstream_seconds += time.perf_counter() - started
        if trace is not None:
            trace.upstream_end(0, type(exc).__name__)
        raise _fault(exc) from exc
    first_byte = time.perf_counter() - started
    if upstream.status == 200 and call.streamed:
        # From here on the client has the answer's start: whatever happens, no retry.
        call.upstream_seconds += first_byte
        return await _stream(call, send, receive, adapter, upstream_call, upstream), first_byte
    try:
        reading = upstream.read()
        content = await (reading if deadline is None else _within(deadline, reading))
    except (http.UpstreamTimeout, TimeoutError) as exc:
        if trace is not None:
            trace.upstream_end(upstream.status, type(exc).__name__)
        raise _fault(exc) from exc
    except http.UpstreamUnreachable as exc:
        if trace is not None:
            trace.upstream_end(upstream.status, type(exc).__name__)
        raise GatewayError(
            ErrorCode.UPSTREAM_ERROR, 502, "Upstream sent an unreadable answer", fallback="connect"
        ) from exc
    finally:
        call.upstream_seconds += time.perf_counter() - started
        if trace is not None:
            trace.upstream_end(upstream.status)
    if upstream.status != 200:
        raise _upstream_error(upstream.status, content, secret_plaintext, upstream.headers)
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(
            ErrorCode.UPSTREAM_ERROR, 502, "Upstream sent an unreadable answer", fallback="5xx"
        ) from exc
    out = adapter.to_openai(route, call.upstream_endpoint, data)
    usage_data = out.get("usage") if isinstance(out, dict) else None
    if call.retrieval is not None:
        out = retrieval.with_citations(out, call.retrieval)
    if call.dialect:
        out = call.dialect.from_chat(call.client_body, out)
    call.response_body = out
    storing = None
    if call.cache is not None and call.cache.write:
        storing = cache.put_started(call.cache, cache.JSON, orjson.dumps(out), usage_data)
    try:
        await _record_then(call, 200, "", usage_data, lambda: _send_json(send, call, 200, out))
    finally:
        if storing is not None:
            await storing
    return 200, first_byte


TARGET_HEADER = "X-Inferia-Target"
DEPLOYMENT_OWNER = "deployment"  # ``owned_by`` of a deployment in GET /models


async def _complete_deployment(call: Call, send, receive, decision: ratelimit.Decision) -> None:
    """Route a call to ``deployment/<name>`` (``deployments.routing``): try its targets
    in the strategy's order, skipping those the caller may not use, those over the
    org's quota threshold and those whose breaker is open; fall over on the failures
    listed in ``fallback_on``, at most ``retries`` times, never once a stream has
    started. Every failure feeds the target's breaker. Nothing left: 503 with
    ``Retry-After`` (when the first breaker lets a call through again)."""
    deployment = call.deployment_route
    if deployment is None:
        raise GatewayError(ErrorCode.INTERNAL_ERROR, 500, "No deployment chosen for the request")
    config = deployment.config
    states = await deployment_health.states(deployment)
    plan = routing.plan(
        deployment,
        states=states,
        now=clock.time(),
        quota_percent=decision.org_quota_percent,
    )
    for target, reason in plan.skipped:
        call.attempts.append({"target": target.name, "outcome": f"skipped:{reason}"})
    if plan.only_access_denied:
        raise PermissionDenied(f"You may not use any target of {deployment.fqn}")
    attempts_left = 1 + config.retries
    last_error: GatewayError | None = None
    untried = list(plan.candidates)
    while untried and attempts_left:
        target = untried.pop(0)
        known = states.get(target.name)
        now = clock.time()
        if known is not None and known.effective(now) == "half_open":
            if not await deployment_health.claim_probe(deployment, target, now):
                call.attempts.append({"target": target.name, "outcome": "skipped:probing"})
                continue
        attempts_left -= 1
        call.route, call.target = target.route, target
        call.headers[TARGET_HEADER] = target.name
        routing.began(deployment, target)
        try:
            status, first_byte = await _attempt(
                call,
                send,
                receive,
                target.route,
                timeout=target.target.timeout_seconds,
                private_hosts=target.private_hosts,
            )
        except GatewayError as error:
            if error.fallback is None:
                raise  # the caller's own fault (a 400...): the same from any target
            await deployment_health.failed(deployment, target, clock.time())
            if error.fallback == "timeout":
                routing.observe_latency(deployment, target, target.target.timeout_seconds * 1000)
            if error.fallback not in config.fallback_on:
                raise
            call.attempts.append({"target": target.name, "outcome": error.fallback})
            last_error = error
            continue
        finally:
            routing.ended(deployment, target)
        # Answered: a stream that broke after it started is never tried elsewhere.
        routing.observe_latency(deployment, target, first_byte * 1000)
        if status == 200:
            await deployment_health.succeeded(deployment, target, known, clock.time())
        elif status != 499:
            await deployment_health.failed(deployment, target, clock.time())
        return
    if untried and last_error is not None:
        raise last_error  # the retries are spent, not the targets: the last failure
    call.route, call.target = None, None
    call.headers.pop(TARGET_HEADER, None)
    now = clock.time()
    states = await deployment_health.states(deployment)
    message = f"No target of {deployment.fqn} can answer now"
    if last_error is not None:
        message += f" (last: {last_error.message[:200]})"
    raise GatewayError(
        ErrorCode.SERVICE_UNAVAILABLE,
        503,
        message,
        retry_after=routing.retry_after_seconds(deployment, states, now),
    )


async def _record_then(
    call: Call, status: int, error_code: str, usage_data: dict | None, answer
) -> None:
    """Record the call, then ``answer()`` (the last bytes of the response). The usage
    entry leaves for Redis before the answer leaves for the client, and Redis's reply is
    awaited after the answer is out (``usage.write_started``); else in that order."""
    entry, adjustments = call.entry(status, error_code, usage_data), call.adjustments(usage_data)
    trace = call.trace
    if trace is not None:
        trace.record_begin(entry)
    recording = usage.write_started(entry, adjustments)
    if recording is None:
        await usage.write(entry, adjustments)
    try:
        if answer is not None:
            await answer()
    finally:
        if recording is not None:
            await recording
        if trace is not None:
            trace.record_end()


class _ClientGone(Exception):
    """The client of a streamed call went away while the relay waited for the upstream."""


async def _until_disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _stream(
    call: Call, send, receive, adapter, upstream_call, upstream: http.UpstreamResponse
) -> int:
    """Relay the events as they arrive; cancel the upstream when the client goes away.

    The relay runs in the request's own task. Events that arrived together go out in one
    write; the last of them goes out with the end of the response, once the usage record
    is on its way. While the relay waits for the upstream, a watcher ends it when the
    client hangs up (started only the first time it waits: an answer that came whole
    costs no extra task)."""
    usage_data: dict[str, Any] = {}
    headers = _header_list(
        call, b"text/event-stream", {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    call.status = 200
    await send({"type": "http.response.start", "status": 200, "headers": headers})

    events = adapter.stream_to_openai(
        call.chosen_route, upstream_call, upstream.lines(), usage_data
    )
    if call.dialect:
        events = call.dialect.stream_from_chat(call.client_body, events, usage_data)

    watcher: asyncio.Future | None = None
    batch: list[bytes] = []
    lookup = call.cache
    recorder = cache.Recorder(lookup.max_entry_bytes) if lookup and lookup.write else None
    if call.retrieval is not None:
        # The citations lead the stream, in a chunk without choices (SDKs skip it).
        batch.append(
            retrieval.citations_chunk(
                call.retrieval,
                request_id=call.request.id.replace("-", ""),
                created=int(clock.time()),
                model=call.model,
            )
        )

    def watch() -> None:
        nonlocal watcher

        def gone(task: asyncio.Future) -> None:
            if not task.cancelled() and task.exception() is None:
                upstream.fail(_ClientGone())

        watcher = asyncio.ensure_future(_until_disconnect(receive))
        watcher.add_done_callback(gone)

    upstream.on_wait = watch
    status, error_code, last = 200, "", b""
    try:
        try:
            async for chunk in events:
                batch.append(chunk)
                # Held only while the next event is ready without the network.
                if not upstream.buffered_lines and not upstream.ready:
                    body = batch[0] if len(batch) == 1 else b"".join(batch)
                    batch.clear()
                    if recorder is not None:
                        recorder.add(body)
                    await send({"type": "http.response.body", "body": body, "more_body": True})
        except (_ClientGone, OSError):  # OSError: the server reports the hang-up on send
            status, error_code = 499, "CLIENT_CLOSED"
        except Exception as exc:
            logger.warning("upstream stream broke: %s", type(exc).__name__)
            status, error_code = 502, str(ErrorCode.UPSTREAM_ERROR)
            # What was relayed before the break still reaches the client, then the error.
            batch.append(
                events.error(str(ErrorCode.UPSTREAM_ERROR), "Upstream stream broke")
                if call.dialect
                else b'data: {"error": {"code": '
                b'"UPSTREAM_ERROR", "message": "Upstream stream broke", "type": "api_error"}}\n\n'
            )
        last = b"".join(batch)
    except BaseException:
        status, error_code = 499, "CLIENT_CLOSED"  # the server cancelled us (client gone, shutdown)
        raise
    finally:
        if watcher is not None:
            watcher.cancel()
        upstream.close()
        if call.trace is not None:
            call.trace.upstream_end(upstream.status, error_code)
        call.status = status
        if not usage_data:
            # The upstream worked (and bills) but its usage chunk never came: the
            # client cannot make a call free by hanging up before the end.
            usage_data.update(call.reserved_usage())
        storing = None
        if recorder is not None and lookup is not None and status == 200:
            # Only a stream that completed is replayed (never a broken or abandoned one).
            recorder.add(last)
            relayed = recorder.body()
            if relayed is not None:
                storing = cache.put_started(lookup, cache.SSE, relayed, usage_data)
        # The end of the response goes out once the record (and the entry) is on its way.
        try:
            await _record_then(
                call,
                status,
                error_code,
                usage_data,
                (lambda: send({"type": "http.response.body", "body": last}))
                if status != 499
                else None,
            )
        finally:
            if storing is not None:
                await storing
    return status


async def _models(call: Call, send, raw: str, hint: str, one: str | None = None) -> None:
    """The models the caller may use (``inference:run`` and an access rule), or ``one``
    of them (``GET /models/{account}/{model}``) refused like ``_authorize`` refuses a
    call: 403 without ``inference:run`` or for a model of the org's catalog the caller
    is not granted (the same caller gets that 403 from any call naming it), 404 for
    an unknown one."""
    for attempt in (0, 1):
        try:
            call.headers.update((await _limits_check(call, count=False)).headers)
            break
        except ratelimit.StaleEpoch as stale:
            await _rebuild(call, raw, hint, attempt, stale.epoch)
        except ratelimit.BackendUnavailable:
            # Fail closed: the shared store cannot confirm the credential is still valid.
            raise ServiceUnavailable("Cannot verify credentials right now") from None
    p = call.caller
    if one is not None:
        _authorize(call, {"model": one})
        if call.deployment_route is not None:
            fqn, owner = call.deployment_route.fqn, DEPLOYMENT_OWNER
        else:
            fqn, owner = call.chosen_route.fqn, call.chosen_route.account_name
        model = {"id": fqn, "object": "model", "created": 0, "owned_by": owner}
        await _send_json(send, call, 200, model)
        return
    may_run = "inference:run" in p.permissions
    usable = sorted(p.routes) if may_run else []
    data = [
        {"id": fqn, "object": "model", "created": 0, "owned_by": p.routes[fqn].account_name}
        for fqn in usable
    ]
    data += [
        {"id": fqn, "object": "model", "created": 0, "owned_by": DEPLOYMENT_OWNER}
        for fqn in (sorted(p.deployments) if may_run else [])
    ]
    await _send_json(send, call, 200, {"object": "list", "data": data})


async def _anonymous_limit(call: Call) -> None:
    """Requests refused before a caller is known count against their client address
    (a brake on key guessing); the response carries that limit's headers."""
    limit = ratelimit.Limit(
        "ip",
        ratelimit.REQUESTS,
        call.request.client_ip or "unknown",
        settings.INFERIA_GATEWAY_ANONYMOUS_RPM,
    )
    try:
        decision = await ratelimit.check(org_id=None, expected_epoch=-1, limits=[limit])
    except ratelimit.BackendUnavailable:
        return  # the refusal stands; its headers cannot be known
    call.headers.update(decision.headers)
    if not decision.allowed:
        call.refusal = ("ip", ratelimit.REQUESTS)
        raise GatewayError(
            ErrorCode.RATE_LIMITED,
            429,
            "Too many failed requests from this address",
            retry_after=decision.retry_after,
        )


async def _serve(call: Call, send, receive, method: str) -> None:
    request = call.request
    if request.method != method:
        raise GatewayError(
            ErrorCode.METHOD_NOT_ALLOWED,
            405,
            f"Method {request.method} not allowed",
            headers={"Allow": method},
        )
    declared = request.headers.get("content-length", "0")
    if declared.isdigit() and int(declared) > settings.INFERIA_MAX_BODY_BYTES:
        raise PayloadTooLarge(
            f"Request body is larger than {settings.INFERIA_MAX_BODY_BYTES} bytes"
        )
    raw = request.credential()
    if raw is None:
        raise AuthenticationFailed(CREDENTIAL_HELP)
    hint = request.headers.get("openai-organization", "").strip()
    if call.trace is not None:
        call.trace.authorize()
    call.principal = await _load_principal(raw, hint)
    if call.endpoint == "models":
        await _models(call, send, raw, hint)
    elif call.endpoint == "model":
        await _models(call, send, raw, hint, one=request.path.removeprefix(MODEL_PREFIX))
    else:
        await _complete(call, send, receive, raw, hint)


def route_for(path: str, raw_path: bytes | None = None) -> tuple[str, str, str]:
    """The endpoint a gateway path names, the method it takes and, on an Azure
    deployment URL, the model FQN in it (``"unknown"``, ``""``, ``""`` when there is
    none); the one routing table for requests and OPTIONS alike."""
    route = ROUTES.get(path)
    if route is not None:
        return route[0], route[1], ""
    if path.startswith(MODEL_PREFIX) and len(path) > len(MODEL_PREFIX):
        return "model", "GET", ""
    endpoint, deployment = _deployment_route(path, raw_path or path.encode())
    if deployment:
        return endpoint, "POST", deployment
    return "unknown", "", ""


async def application(scope, receive, send) -> None:
    """ASGI entry point for ``/api/llm/...`` (HTTP only)."""
    request = Request(scope)
    endpoint, method, deployment = route_for(request.path, request.raw_path)
    call = Call(request, endpoint, deployment)
    if tracing.ENABLED:
        call.trace = spans.Trace(call)
    try:
        try:
            if settings.SECURE_SSL_REDIRECT and not request.secure:
                # Django's pages redirect to HTTPS; an API call that already sent its key
                # in clear text is refused instead, so the client finds out.
                raise PermissionDenied("HTTPS is required")
            if endpoint == "unknown":
                raise NotFound(f"No gateway endpoint at {request.path[:100]}")
            await _serve(call, send, receive, method)
        except InferiaError as error:
            if call.principal is None and error.status != 503:
                await _anonymous_limit(call)
            raise
    except ClientGone:
        call.status = 499
        if call.principal is not None:
            await _record(call, 499, "CLIENT_CLOSED")
    except InferiaError as error:
        try:
            await _record(call, error.status, str(error.code))
        except Exception:  # noqa: BLE001 - the refusal stands even when it cannot be recorded
            logger.exception("could not record a refused gateway request %s", request.request_id)
        await _send_error(send, call, error)
    except Exception as error:  # noqa: BLE001 - the contract: no bare 500 page, and a record
        logger.exception("gateway request failed")
        failure = GatewayError(ErrorCode.INTERNAL_ERROR, 500, "Internal error")
        try:
            await _record(call, 500, str(ErrorCode.INTERNAL_ERROR))
        finally:
            if not call.status:
                await _send_error(send, call, failure)
        del error
    finally:
        if call.trace is not None:
            call.trace.finish(call)
        metrics.gateway_call(call)
        p = call.principal
        logger.info(
            "%s %s %s",
            request.method,
            request.path[:200],
            call.status,
            extra={
                "request_id": request.request_id,
                "org": p.org_slug if p else None,
                "principal": p.label if p else None,
                "method": request.method,
                "route": request.path[:200],
                "status": call.status,
                "latency_ms": round((time.perf_counter() - call.started) * 1000, 3),
            },
        )


# Cross-origin requests: the API's CORS policy on every gateway response (gateway/cors.py).
application = cors.with_cors(application, allow_for=lambda path: route_for(path)[1] or None)
