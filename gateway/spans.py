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

from inferia import tracing
from inferia.tracing import CLIENT, INTERNAL, RANDOM, SAMPLED, SERVER, Span

if TYPE_CHECKING:
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


class Trace:
    """The root span of one gateway request and its open children.

    A request the sampler left out records no span (its steps are no-ops), but its
    context still goes upstream, unsampled, under a span id of its own."""

    __slots__ = (
        "root",
        "trace_id",
        "_state",
        "_flags",
        "_remote_parent",
        "_spans",
        "_phase",
        "_upstream",
        "_recorded",
    )

    def __init__(self, call: Call) -> None:
        request = call.request
        sampler = tracing.sampler()  # kept: a reconfiguration (tests) never breaks a call
        parent = None
        if "traceparent" in request.headers:
            # The caller's W3C trace context; a malformed one is a new trace, never an error.
            parent = tracing.extract(request.headers)
        if parent is None:
            trace_id = tracing.new_trace_id()
            self._remote_parent, self._state = 0, ""
            flags = RANDOM | (SAMPLED if sampler.sample(trace_id, None) else 0)
        else:
            trace_id, self._remote_parent, caller_flags, self._state = parent
            sampled = sampler.sample(trace_id, caller_flags)
            flags = (caller_flags & RANDOM) | (SAMPLED if sampled else 0)
        self.trace_id = trace_id
        self._flags = flags
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
        self.root = Span(
            f"{method} {route}" if route else method, SERVER, self._remote_parent, attributes
        )
        # A request the sampler left out records nothing: its steps cost no span.
        self._spans: list[Span] | None = [self.root] if flags & SAMPLED else None
        self._phase: Span | None = None
        self._upstream: Span | None = None
        self._recorded: dict[str, Any] | None = None

    def _child(
        self, name: str, attributes: dict[str, Any] | None = None, kind: int = INTERNAL
    ) -> Span | None:
        spans = self._spans
        if spans is None:
            return None
        span = Span(name, kind, self.root.span_id, attributes)
        spans.append(span)
        return span

    def _end_phase(self) -> None:
        phase, self._phase = self._phase, None
        if phase is not None:
            phase.finish()

    # --- authorization -------------------------------------------------------------

    def authorize(self) -> None:
        """The caller's principal is loaded, its body validated and its model access
        decided from now until the limits are read."""
        self._end_phase()
        self._phase = self._child("gateway.authorize")

    def refused(self, code: object) -> None:
        """The open step refused the request (its error code, never its message)."""
        if self._phase is not None:
            self._phase.fail(str(code))
            self._end_phase()

    # --- limits --------------------------------------------------------------------

    async def limits(self, checking: Awaitable[Decision], *, counted: bool) -> Decision:
        """``await checking`` (``ratelimit.check``) in a ``gateway.limits`` span."""
        self._end_phase()
        span = self._child("gateway.limits", {"inferia.limits.counted": counted})
        if span is None:
            return await checking
        try:
            decision = await checking
        except BaseException as exc:
            span.fail(type(exc).__name__)  # StaleEpoch, BackendUnavailable
            span.finish()
            raise
        attributes = span.attributes
        attributes["inferia.limits.allowed"] = decision.allowed
        denied = decision.denied
        if denied is not None:
            attributes["inferia.limits.denied_scope"] = denied.scope
            attributes["inferia.limits.denied_kind"] = denied.kind
        if not decision.allowed:
            span.fail("limit_reached")
        span.finish()
        return decision

    # --- the upstream --------------------------------------------------------------

    def upstream_begin(self, call: Call, route: Route, upstream_call: UpstreamCall) -> None:
        """A ``gateway.upstream`` CLIENT span for this attempt; its ``traceparent`` (and
        the caller's ``tracestate``) go into the upstream request's headers."""
        self.upstream_end(0, "abandoned")  # an earlier attempt's, if one was left open
        headers = upstream_call.headers
        if self._state:
            headers["tracestate"] = self._state
        if self._spans is None:
            headers["traceparent"] = tracing.traceparent(
                self.trace_id, self.root.span_id, self._flags
            )
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
        span = Span("gateway.upstream", CLIENT, self.root.span_id, attributes)
        self._spans.append(span)
        self._upstream = span
        headers["traceparent"] = tracing.traceparent(self.trace_id, span.span_id, self._flags)

    def upstream_end(self, status: int, error_type: str = "") -> None:
        """The attempt ended: the upstream's status (0: none came) and, when it failed,
        the failure's class or code. A second call is a no-op."""
        span, self._upstream = self._upstream, None
        if span is None:
            return
        if status:
            span.attributes["http.response.status_code"] = status
        if error_type or status >= 400:
            span.fail(error_type or str(status))
        span.finish()

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
                self._phase.fail(type(exc).__name__)
            raise
        finally:
            self.record_end()

    # --- the end -------------------------------------------------------------------

    def finish(self, call: Call) -> None:
        """End every open span, then the root with what the request came to, and queue
        the trace for export."""
        spans = self._spans
        if spans is None:
            return
        self._spans = None  # a second finish exports nothing twice
        recorded = self._recorded or {}
        error_code = str(recorded.get("error_code") or "")
        status = call.status
        if error_code or status >= 400:
            error_type = error_code or str(status)
            if self._phase is not None:
                self._phase.fail(error_type)
            self.upstream_end(0, error_type)
        self._end_phase()
        self.upstream_end(0)
        root = self.root
        attributes = root.attributes
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
        if error_code or status >= 400:
            root.fail(error_code or str(status))
        root.finish()
        tracing.export(self.trace_id, self._state, self._flags, self._remote_parent, spans)
