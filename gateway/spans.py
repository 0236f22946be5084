"""The spans of one gateway request (docs/tracing.md, "Spans").

A ``Trace`` exists only while ``inferia.tracing.ENABLED``: ``gateway/app.py`` makes one
per request and tests ``call.trace is not None`` before each use, so with tracing off
the hot path allocates nothing and touches no context variable. Parents are passed
explicitly (never the ambient OTel context): one request's steps run in one task, but
a streamed answer's generator and the ASGI server's tasks would make an attached
context easy to leak from one request into another.

The root is a SERVER span named ``"<method> <route>"``; its children, in the order a
call meets them: ``gateway.authorize`` (principal, body, model access),
``gateway.limits`` (the limit and epoch round trip; again after a stale principal was
rebuilt), ``gateway.upstream`` (a CLIENT span per attempt, whose ``traceparent`` the
upstream receives; a stream's lasts until the relay ends) and ``gateway.usage_write``
(the usage record, or for a caller never identified the audit record).

What a span may hold is decided here, in one place: ids, names an org admin chose
(org slug, provider account, model FQN, deployment and target), statuses, error codes,
token counts and the upstream's host and port. Never the prompt or the answer, a
credential or its prefix, a provider secret, a request header, the upstream URL's
path or query, the client's address, an error message or an exception's text.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from opentelemetry import trace as otel
from opentelemetry.trace import SpanKind, Status, StatusCode

from inferia import tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from gateway.app import Call
    from gateway.principals import Route
    from gateway.ratelimit import Decision
    from gateway.upstream.base import UpstreamCall

T = TypeVar("T")

# http.route of the routes whose path holds a name (app.MODEL_PREFIX, DEPLOYMENT_PREFIX).
MODEL_ROUTE = "/api/llm/v1/models/{model}"
DEPLOYMENT_ROUTE = "/api/llm/openai/deployments/{deployment}/"
DEPLOYMENT_SUFFIXES = {
    "chat": "chat/completions",
    "completions": "completions",
    "embeddings": "embeddings",
}
OPERATIONS = {"chat": "chat", "completions": "text_completion", "embeddings": "embeddings"}
METHODS = frozenset(("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"))
NAME_LIMIT = 200  # names an org admin chose are short; bound them all the same


def _route(call: Call) -> str:
    """The route template (``http.route``): never a name from the path."""
    if call.deployment:
        return DEPLOYMENT_ROUTE + DEPLOYMENT_SUFFIXES.get(call.endpoint, "")
    if call.endpoint == "model":
        return MODEL_ROUTE
    if call.endpoint == "unknown":
        return ""
    return call.request.path


@functools.lru_cache(maxsize=256)
def _server(url: str) -> tuple[str, int]:
    """Host and port of an upstream URL (parsed once per URL: a provider's are few)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "", port


def _failed(span: Span, error_type: str) -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, error_type))


class Trace:
    """The root span of one gateway request and its open children."""

    __slots__ = (
        "root",
        "_tracer",
        "_propagator",
        "_context",
        "_recording",
        "_phase",
        "_upstream",
        "_recorded",
    )

    def __init__(self, call: Call) -> None:
        request = call.request
        # Kept for the request's life: a reconfiguration (tests) never breaks one in flight.
        self._tracer = tracing.tracer()
        self._propagator = tracing.propagator()
        parent = None
        if "traceparent" in request.headers:
            # The caller's W3C trace context; a malformed one gives an empty context
            # (a new trace), never an error.
            parent = self._propagator.extract(request.headers)
        route = _route(call)
        method = request.method if request.method in METHODS else "_OTHER"
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.scheme": "https" if request.secure else "http",
            "inferia.request_id": request.request_id,
            "inferia.endpoint": call.endpoint,
        }
        if route:
            attributes["http.route"] = route
        if route == request.path:
            # Only a path that names nothing: a model or deployment in the path (an
            # unknown one too) and an unknown path stay out, as the body's model does.
            attributes["url.path"] = route
        self.root: Span = self._tracer.start_span(
            f"{method} {route}" if route else method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
        )
        self._context = otel.set_span_in_context(self.root)
        # A request the sampler left out records nothing: its steps cost no span.
        self._recording = self.root.is_recording()
        self._phase: Span | None = None
        self._upstream: Span | None = None
        self._recorded: dict[str, Any] | None = None

    def _child(self, name: str, attributes: dict[str, Any] | None = None, kind=SpanKind.INTERNAL):
        if not self._recording:
            return otel.INVALID_SPAN  # ends, takes attributes and records nothing
        return self._tracer.start_span(
            name, context=self._context, kind=kind, attributes=attributes
        )

    def _end_phase(self) -> None:
        phase, self._phase = self._phase, None
        if phase is not None:
            phase.end()

    # --- authorization -------------------------------------------------------------

    def authorize(self) -> None:
        """The caller's principal is loaded, its body validated and its model access
        decided from now until the limits are read."""
        self._end_phase()
        self._phase = self._child("gateway.authorize")

    def refused(self, code: object) -> None:
        """The open step refused the request (its error code, never its message)."""
        if self._phase is not None:
            _failed(self._phase, str(code))
            self._end_phase()

    # --- limits --------------------------------------------------------------------

    async def limits(self, checking: Awaitable[Decision], *, counted: bool) -> Decision:
        """``await checking`` (``ratelimit.check``) in a ``gateway.limits`` span."""
        self._end_phase()
        span = self._child("gateway.limits", {"inferia.limits.counted": counted})
        try:
            decision = await checking
        except BaseException as exc:
            _failed(span, type(exc).__name__)  # StaleEpoch, BackendUnavailable
            span.end()
            raise
        attributes: dict[str, Any] = {"inferia.limits.allowed": decision.allowed}
        denied = decision.denied
        if denied is not None:
            attributes["inferia.limits.denied_scope"] = denied.scope
            attributes["inferia.limits.denied_kind"] = denied.kind
        span.set_attributes(attributes)
        if not decision.allowed:
            _failed(span, "limit_reached")
        span.end()
        return decision

    # --- the upstream --------------------------------------------------------------

    def upstream_begin(self, call: Call, route: Route, upstream_call: UpstreamCall) -> None:
        """A ``gateway.upstream`` CLIENT span for this attempt; its ``traceparent`` (and
        the caller's ``tracestate``) go into the upstream request's headers."""
        self.upstream_end(0, "abandoned")  # an earlier attempt's, if one was left open
        if not self._recording:
            self._propagator.inject(upstream_call.headers, context=self._context)
            return
        host, port = _server(upstream_call.url)
        endpoint = call.upstream_endpoint
        attributes: dict[str, Any] = {
            "http.request.method": "POST",
            "server.address": host,
            "server.port": port,
            "gen_ai.operation.name": OPERATIONS.get(endpoint, endpoint),
            "gen_ai.provider.name": route.provider_type,
            "gen_ai.request.model": route.upstream_model[:NAME_LIMIT],
            "inferia.provider_account": route.account_name[:NAME_LIMIT],
        }
        if call.target is not None:
            attributes["inferia.deployment.target"] = call.target.name[:NAME_LIMIT]
        span = self._child("gateway.upstream", attributes, SpanKind.CLIENT)
        self._upstream = span
        self._propagator.inject(upstream_call.headers, context=otel.set_span_in_context(span))

    def upstream_end(self, status: int, error_type: str = "") -> None:
        """The attempt ended: the upstream's status (0: none came) and, when it failed,
        the failure's class or code. A second call is a no-op."""
        span, self._upstream = self._upstream, None
        if span is None:
            return
        if status:
            span.set_attribute("http.response.status_code", status)
        if error_type or status >= 400:
            _failed(span, error_type or str(status))
        span.end()

    # --- the record ----------------------------------------------------------------

    def record_begin(self, entry: dict[str, Any], kind: str = "usage") -> None:
        """The usage (or audit) record's write starts; ``entry`` is that record (its
        status, error code and token counts go on the root span)."""
        error_code = entry.get("error_code") or ""
        if error_code:
            self.refused(error_code)  # the step still open is the one that refused
        self._end_phase()
        self._recorded = entry
        self._phase = self._child("gateway.usage_write", {"inferia.record": kind})

    def record_end(self) -> None:
        self._end_phase()

    async def recording(self, writing: Awaitable[T], entry: dict[str, Any], kind: str) -> T:
        """``await writing`` (the record's write) in a ``gateway.usage_write`` span."""
        self.record_begin(entry, kind)
        try:
            return await writing
        except BaseException as exc:
            if self._phase is not None:
                _failed(self._phase, type(exc).__name__)
            raise
        finally:
            self.record_end()

    # --- the end -------------------------------------------------------------------

    def finish(self, call: Call) -> None:
        """End every open span, then the root with what the request came to."""
        if not self._recording:
            self.root.end()
            return
        recorded = self._recorded or {}
        error_code = str(recorded.get("error_code") or "")
        status = call.status
        if error_code or status >= 400:
            error_type = error_code or str(status)
            if self._phase is not None:
                _failed(self._phase, error_type)
            self.upstream_end(0, error_type)
        self._end_phase()
        self.upstream_end(0)
        attributes: dict[str, Any] = {}
        if status:
            attributes["http.response.status_code"] = status
        principal = call.principal
        if principal is not None:
            attributes["inferia.org"] = principal.org_slug
        # The model only once it named something the caller may use: an FQN, never a
        # string nobody configured.
        if call.deployment_route is not None:
            attributes["gen_ai.request.model"] = call.deployment_route.fqn[:NAME_LIMIT]
            if call.target is not None:
                attributes["inferia.deployment.target"] = call.target.name[:NAME_LIMIT]
        elif call.route is not None:
            attributes["gen_ai.request.model"] = call.route.fqn[:NAME_LIMIT]
        if call.route is not None and call.route.account_name:
            attributes["inferia.provider_account"] = call.route.account_name[:NAME_LIMIT]
        if call.streamed:
            attributes["inferia.streamed"] = True
        if call.degraded:
            attributes["inferia.degraded"] = call.degraded
        if "prompt_tokens" in recorded:
            attributes["gen_ai.usage.input_tokens"] = int(recorded["prompt_tokens"])
            attributes["gen_ai.usage.output_tokens"] = int(recorded["completion_tokens"])
            if recorded.get("usage_estimated"):
                attributes["inferia.usage.estimated"] = True
        root = self.root
        root.set_attributes(attributes)
        if error_code or status >= 400:
            _failed(root, error_code or str(status))
        root.end()
