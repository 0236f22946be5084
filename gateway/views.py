"""The OpenAI-compatible gateway: ``/api/llm/v1/...``.

Each request: authenticate (cached principal) -> permission and model access ->
limits and quotas (one Redis round trip with the epoch check) -> the upstream
call through the account's adapter on the shared client -> usage record.
Errors use the contract's envelope plus ``type`` for the OpenAI SDK.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from audit.redaction import redact_text
from audit.services import client_ip
from audit.services import record as audit_record
from gateway import epochs, principals, ratelimit, redis_client, usage
from gateway.http import client as http_client
from gateway.upstream import ADAPTERS
from inferia import clock
from inferia.authentication import bearer_credential
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
    def __init__(self, code: ErrorCode, status: int, message: str, *, retry_after: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.code, self.status = code, status
        self.headers = headers or {}


def _error_response(error: InferiaError, extra_headers: dict[str, str] | None = None) -> JsonResponse:
    body = error_body(error.code, error.message, error.details)
    body["error"]["type"] = OPENAI_TYPES.get(error.code, "api_error")
    response = JsonResponse(body, status=error.status)
    for name, value in {**(extra_headers or {}), **getattr(error, "headers", {})}.items():
        response[name] = value
    if error.retry_after is not None:
        response["Retry-After"] = str(max(1, int(error.retry_after)))
    return response


class Call:
    """The state of one gateway request, for the response headers and the usage record."""

    def __init__(self, request: HttpRequest, endpoint: str) -> None:
        self.request = request
        self.endpoint = endpoint
        self.started = time.perf_counter()
        self.upstream_seconds = 0.0
        self.principal: principals.Principal | None = None
        self.route: principals.Route | None = None
        self.model = ""
        self.headers: dict[str, str] = {}
        self.reserved: list[tuple[str, str, int]] = []
        self.streamed = False
        self.request_body: dict[str, Any] = {}
        self.response_body: Any = None

    def overhead_ms(self) -> float:
        return max(0.0, (time.perf_counter() - self.started - self.upstream_seconds) * 1000)

    def entry(self, status: int, error_code: str = "", usage_data: dict | None = None) -> dict[str, Any]:
        usage_data = usage_data or {}
        prompt = int(usage_data.get("prompt_tokens") or 0)
        completion = int(usage_data.get("completion_tokens") or 0)
        p = self.principal
        return {
            "created_at": clock.time(),
            "org_id": str(p.org_id) if p else None,
            "request_id": self.request.request_id,
            "user_id": str(p.user_id) if p and p.user_id else None,
            "service_account_id": str(p.service_account_id) if p and p.service_account_id else None,
            "actor_label": p.label if p else "",
            "key_prefix": p.key_prefix if p else "",
            "endpoint": self.endpoint,
            "model": self.model[:260],
            "provider_account": self.route.account_name if self.route else "",
            "status_code": status,
            "error_code": error_code,
            "streamed": self.streamed,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "cost": (self.route.cost_micros(prompt, completion) / 1e6) if self.route else 0.0,
            "latency_ms": round((time.perf_counter() - self.started) * 1000, 3),
            "upstream_latency_ms": round(self.upstream_seconds * 1000, 3),
            "client_ip": client_ip(self.request),
            **self.payload_fields(),
        }

    def payload_fields(self) -> dict[str, Any]:
        """Prompt and answer, encrypted, only for orgs that turned payload logging on."""
        p = self.principal
        if p is None or not p.org_settings.get("payload_logging") or not self.request_body:
            return {}
        from inferia import crypto

        payload = {"request": self.request_body, "response": self.response_body}
        context = f"audit.payload:{p.org_id}:{self.request.request_id}"
        return {"payload": crypto.encrypt(json.dumps(payload).encode(), context=context)}

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
        return out


async def _record(call: Call, status: int, error_code: str = "", usage_data: dict | None = None) -> None:
    if call.principal is None:
        # Refused before a principal was known (no or bad credential): the
        # authentication decision is still audited, without any credential.
        await sync_to_async(audit_record, thread_sensitive=False)(
            action="auth:gateway", outcome="denied", status_code=status, request=call.request,
            data={"endpoint": call.endpoint, "error_code": error_code},
        )
        return
    entry = call.entry(status, error_code, usage_data)
    adjustments = call.adjustments(usage_data)
    call.reserved = []
    await sync_to_async(usage.write, thread_sensitive=False)(entry, adjustments)


def _org_hint(request: HttpRequest) -> str:
    return request.headers.get("OpenAI-Organization", "").strip()


async def _load_principal(raw: str, hint: str) -> principals.Principal:
    principal = principals.cached(raw, hint)
    if principal is None:
        principal = await sync_to_async(principals.build)(raw, hint)
        principals.remember(raw, hint, principal)
    if principals.key_expired(principal):
        principals.forget(raw, hint)
        raise AuthenticationFailed(f"API key {principal.key_prefix} is expired")
    return principal


def _limits(p: principals.Principal) -> list[ratelimit.Limit]:
    s = p.org_settings
    limits: list[ratelimit.Limit] = []

    def add(scope: str, kind: str, subject: Any, value: Any, scale: float = 1) -> None:
        if value:
            limits.append(ratelimit.Limit(scope, kind, str(subject), int(float(value) * scale)))

    if p.key_id:
        kl = p.key_limits
        add("key", ratelimit.REQUESTS, p.key_id,
            kl.get("requests_per_minute") or s.get("key_requests_per_minute") or settings.INFERIA_GATEWAY_DEFAULT_KEY_RPM)
        add("key", ratelimit.TOKENS, p.key_id,
            kl.get("tokens_per_minute") or s.get("key_tokens_per_minute") or settings.INFERIA_GATEWAY_DEFAULT_KEY_TPM)
        add("key", ratelimit.QUOTA_TOKENS, p.key_id, kl.get("monthly_token_quota"))
        add("key", ratelimit.QUOTA_COST, p.key_id, kl.get("monthly_cost_quota"), 1e6)
    principal_rpm = s.get("principal_requests_per_minute") or (
        None if p.key_id else settings.INFERIA_GATEWAY_DEFAULT_KEY_RPM
    )
    principal_tpm = s.get("principal_tokens_per_minute") or (
        None if p.key_id else settings.INFERIA_GATEWAY_DEFAULT_KEY_TPM
    )
    add("principal", ratelimit.REQUESTS, p.principal_subject, principal_rpm)
    add("principal", ratelimit.TOKENS, p.principal_subject, principal_tpm)
    add("org", ratelimit.REQUESTS, p.org_id, s.get("requests_per_minute"))
    add("org", ratelimit.TOKENS, p.org_id, s.get("tokens_per_minute"))
    add("org", ratelimit.QUOTA_TOKENS, p.org_id, s.get("monthly_token_quota"))
    add("org", ratelimit.QUOTA_COST, p.org_id, s.get("monthly_cost_quota"), 1e6)
    return limits


async def _admit(call: Call, raw: str, hint: str, reserve_tokens: int, reserve_cost: int) -> ratelimit.Decision:
    """Limits and the revocation epoch, rebuilding a stale principal once."""
    for attempt in range(2):
        p = call.principal
        limits = _limits(p)
        try:
            if redis_client.enabled():
                decision = await sync_to_async(ratelimit.check_redis, thread_sensitive=False)(
                    org_id=p.org_id, expected_epoch=p.epoch, limits=limits,
                    reserve_tokens=reserve_tokens, reserve_cost=reserve_cost,
                )
            else:
                current = await sync_to_async(epochs.current_db)(p.org_id)
                if current != p.epoch:
                    raise ratelimit.StaleEpoch(current)
                decision = await sync_to_async(ratelimit.check_db)(
                    limits=limits, reserve_tokens=reserve_tokens, reserve_cost=reserve_cost
                )
            return decision
        except ratelimit.StaleEpoch:
            if attempt:
                raise ServiceUnavailable("Access changed during the request; retry") from None
            principals.forget(raw, hint)
            call.principal = await _load_principal(raw, hint)
            _authorize(call, call.request_body)
        except ratelimit.BackendUnavailable:
            if p.org_settings.get("rate_limit_on_backend_error", "deny") == "allow" and not redis_client.enabled():
                return ratelimit.Decision(allowed=True, degraded=True)
            # Fail closed: the shared store cannot confirm the key is still valid.
            raise ServiceUnavailable("Cannot verify credentials or limits right now") from None
    raise ServiceUnavailable("Cannot verify credentials right now")


def _prompt_chars(endpoint: str, body: dict[str, Any]) -> int:
    if endpoint == "chat":
        total = 0
        for message in body.get("messages") or []:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                total += len(content)
            elif isinstance(content, list):
                total += sum(len(part.get("text", "")) for part in content if isinstance(part, dict))
        return total
    value = body.get("prompt") if endpoint == "completions" else body.get("input")
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(len(item) if isinstance(item, str) else len(json.dumps(item)) for item in value)
    return 0


def _parse_body(request: HttpRequest, p: principals.Principal) -> dict[str, Any]:
    limit = min(settings.INFERIA_MAX_BODY_BYTES, int(p.org_settings.get("max_body_bytes") or 10**12))
    if len(request.body) > limit:
        raise PayloadTooLarge(f"Request body is larger than {limit} bytes")
    content_type = request.content_type or ""
    if content_type != "application/json":
        raise GatewayError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, 415, "Send the body as application/json")
    try:
        body = json.loads(request.body)
    except ValueError as exc:
        raise ValidationError("Malformed JSON body", details={"body": [str(exc)[:200]]}) from exc
    if not isinstance(body, dict):
        raise ValidationError("The body must be a JSON object")
    return body


def _authorize(call: Call, body: dict[str, Any]) -> None:
    p = call.principal
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ValidationError("'model' is required", details={"model": ["Give the model's account/model name."]})
    call.model = model
    if "inference:run" not in p.permissions:
        raise PermissionDenied("Missing permission inference:run")
    if body.get("stream") and "inference:stream" not in p.permissions:
        raise PermissionDenied("Missing permission inference:stream")
    route = p.routes.get(model)
    if route is None:
        if model in p.catalog:
            raise PermissionDenied(f"You may not use the model {model}")
        raise NotFound(f"Model {model} not found")
    call.route = route


def _reservation(call: Call, body: dict[str, Any], prompt_chars: int) -> tuple[int, int]:
    prompt_estimate = prompt_chars // 4 + 1
    if call.endpoint == "embeddings":
        completion_budget = 0
    else:
        completion_budget = int(
            body.get("max_tokens") or body.get("max_completion_tokens")
            or call.principal.org_settings.get("default_max_tokens") or settings.INFERIA_GATEWAY_DEFAULT_MAX_TOKENS
        )
    return prompt_estimate + completion_budget, call.route.cost_micros(prompt_estimate, completion_budget)


def _sanitize(text: str, secret_plaintext: str | None) -> str:
    if secret_plaintext:
        text = text.replace(secret_plaintext, "[REDACTED]")
    return redact_text(text)[:500]


def _upstream_error(status: int, text: str, secret_plaintext: str | None, headers: httpx.Headers) -> GatewayError:
    try:
        message = json.loads(text).get("error", {}).get("message", "")
    except (ValueError, AttributeError):
        message = ""
    message = _sanitize(str(message or text or f"HTTP {status}"), secret_plaintext)
    if status == 429:
        retry = headers.get("retry-after")
        return GatewayError(ErrorCode.RATE_LIMITED, 429, f"Upstream rate limit: {message}",
                            retry_after=int(retry) if retry and retry.isdigit() else 1)
    if status == 400 or status == 422:
        return GatewayError(ErrorCode.VALIDATION_ERROR, 400, f"Upstream rejected the request: {message}")
    if status in (408, 504):
        return GatewayError(ErrorCode.UPSTREAM_TIMEOUT, 504, f"Upstream timed out: {message}")
    return GatewayError(ErrorCode.UPSTREAM_ERROR, 502, f"Upstream error {status}: {message}")


def _finish_headers(call: Call, response: HttpResponse) -> HttpResponse:
    for name, value in call.headers.items():
        response[name] = value
    response["X-Inferia-Overhead-Ms"] = f"{call.overhead_ms():.3f}"
    return response


async def _handle(request: HttpRequest, endpoint: str) -> HttpResponse:
    call = Call(request, endpoint)
    secret_plaintext = None
    try:
        if request.method != "POST":
            raise GatewayError(ErrorCode.METHOD_NOT_ALLOWED, 405, f"Method {request.method} not allowed",
                               headers={"Allow": "POST"})
        raw = bearer_credential(request)
        if raw is None:
            raise AuthenticationFailed("Send an Inferia API key as 'Authorization: Bearer <key>'")
        hint = _org_hint(request)
        call.principal = await _load_principal(raw, hint)
        body = _parse_body(request, call.principal)
        call.request_body = body
        _authorize(call, body)
        call.streamed = bool(body.get("stream"))
        chars = _prompt_chars(endpoint, body)
        max_chars = int(call.principal.org_settings.get("max_prompt_chars") or settings.INFERIA_GATEWAY_MAX_PROMPT_CHARS)
        if chars > max_chars:
            raise ValidationError(
                f"Prompt too long: {chars} characters, the limit is {max_chars}",
                details={"messages": [f"At most {max_chars} characters."]},
            )
        reserve_tokens, reserve_cost = _reservation(call, body, chars)
        decision = await _admit(call, raw, hint, reserve_tokens, reserve_cost)
        call.headers.update(decision.headers)
        if not decision.allowed:
            quota = decision.denied.kind in (ratelimit.QUOTA_TOKENS, ratelimit.QUOTA_COST)
            raise GatewayError(
                ErrorCode.QUOTA_EXCEEDED if quota else ErrorCode.RATE_LIMITED,
                429,
                f"{'Monthly quota' if quota else 'Rate limit'} of the {decision.denied.scope} reached "
                f"({decision.denied.kind.replace('_', ' ')} {decision.denied.limit})",
                retry_after=decision.retry_after,
            )
        call.reserved = decision.reserved
        hit, secret_plaintext = principals.secret_cached(call.route)
        if not hit:
            secret_plaintext = await sync_to_async(principals.secret_for)(call.route)
        adapter = ADAPTERS[call.route.provider_type]
        upstream_call = adapter.prepare(call.route, endpoint, body, secret_plaintext)
        client = http_client()
        upstream_started = time.perf_counter()
        try:
            upstream = await client.send(
                client.build_request("POST", upstream_call.url, json=upstream_call.body, headers=upstream_call.headers),
                stream=True,
            )
        except httpx.TimeoutException as exc:
            raise GatewayError(ErrorCode.UPSTREAM_TIMEOUT, 504, "Upstream timed out") from exc
        except httpx.HTTPError as exc:
            raise GatewayError(ErrorCode.UPSTREAM_ERROR, 502, f"Upstream unreachable ({type(exc).__name__})") from exc
        finally:
            call.upstream_seconds += time.perf_counter() - upstream_started
        if upstream.status_code != 200:
            text = (await upstream.aread()).decode(errors="replace")
            await upstream.aclose()
            raise _upstream_error(upstream.status_code, text, secret_plaintext, upstream.headers)
        if call.streamed:
            return _finish_headers(call, _stream_response(call, adapter, upstream_call, upstream))
        try:
            started = time.perf_counter()
            data = json.loads(await upstream.aread())
            call.upstream_seconds += time.perf_counter() - started
        except (ValueError, httpx.HTTPError) as exc:
            raise GatewayError(ErrorCode.UPSTREAM_ERROR, 502, "Upstream sent an unreadable answer") from exc
        finally:
            await upstream.aclose()
        out = adapter.to_openai(call.route, endpoint, data)
        usage_data = out.get("usage") if isinstance(out, dict) else None
        call.response_body = out
        await _record(call, 200, usage_data=usage_data)
        return _finish_headers(call, JsonResponse(out))
    except InferiaError as error:
        await _record(call, error.status, str(error.code))
        return _finish_headers(call, _error_response(error))


def _stream_response(call: Call, adapter, upstream_call, upstream: httpx.Response) -> StreamingHttpResponse:
    usage_data: dict[str, Any] = {}

    async def lines():
        async for line in upstream.aiter_lines():
            yield line

    async def relay():
        status, error_code = 200, ""
        try:
            async for chunk in adapter.stream_to_openai(call.route, upstream_call, lines(), usage_data):
                yield chunk
        except httpx.HTTPError:
            status, error_code = 502, str(ErrorCode.UPSTREAM_ERROR)
            yield b'data: {"error": {"code": "UPSTREAM_ERROR", "message": "Upstream stream broke", "type": "api_error"}}\n\n'
        except BaseException:
            status, error_code = 499, "CLIENT_CLOSED"  # the client went away: cancel upstream
            raise
        finally:
            await upstream.aclose()
            await _record(call, status, error_code, usage_data)

    response = StreamingHttpResponse(relay(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponse:
    return await _handle(request, "chat")


@csrf_exempt
async def completions(request: HttpRequest) -> HttpResponse:
    return await _handle(request, "completions")


@csrf_exempt
async def embeddings(request: HttpRequest) -> HttpResponse:
    return await _handle(request, "embeddings")


@csrf_exempt  # bearer credentials only; without this a POST got Django's HTML CSRF page, not a 405
async def models(request: HttpRequest) -> HttpResponse:
    """The models the caller may use (``inference:run`` and an access rule)."""
    call = Call(request, "models")
    try:
        if request.method != "GET":
            raise GatewayError(ErrorCode.METHOD_NOT_ALLOWED, 405, f"Method {request.method} not allowed",
                               headers={"Allow": "GET"})
        raw = bearer_credential(request)
        if raw is None:
            raise AuthenticationFailed("Send an Inferia API key as 'Authorization: Bearer <key>'")
        call.principal = await _load_principal(raw, _org_hint(request))
        p = call.principal
        try:
            if redis_client.enabled():
                current = await sync_to_async(epochs.current, thread_sensitive=False)(p.org_id)
            else:
                current = await sync_to_async(epochs.current_db)(p.org_id)
        except (DatabaseError, redis.RedisError) as exc:
            # Fail closed: the shared store cannot confirm the credential is still valid.
            raise ServiceUnavailable("Cannot verify credentials right now") from exc
        if current != p.epoch:
            principals.forget(raw, _org_hint(request))
            call.principal = p = await _load_principal(raw, _org_hint(request))
        usable = sorted(p.routes) if "inference:run" in p.permissions else []
        data = [
            {"id": fqn, "object": "model", "created": 0, "owned_by": p.routes[fqn].account_name}
            for fqn in usable
        ]
        return _finish_headers(call, JsonResponse({"object": "list", "data": data}))
    except InferiaError as error:
        return _finish_headers(call, _error_response(error))
