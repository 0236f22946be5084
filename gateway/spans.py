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
from inferia.tracing import (
    CLIENT,
    INTERNAL,
    RANDOM,
    SAMPLED,
    SERVER,
    attribute,
    attributes,
    encode_attribute,
    new_span_id,
    span_head,
    time_ns,
)

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


# Each span's name and kind, and the attribute groups that repeat from one request to
# the next (per endpoint, per route, per org and model), encoded once: a sampled
# request encodes only what is its own (ids, times, request id, token counts).
AUTHORIZE = span_head("gateway.authorize", INTERNAL)
LIMITS = span_head("gateway.limits", INTERNAL)
UPSTREAM = span_head("gateway.upstream", CLIENT)
USAGE_WRITE = span_head("gateway.usage_write", INTERNAL)


@functools.lru_cache(maxsize=64)
def _root_head(
    method: str, route: str, scheme: str, endpoint: str, path_named: bool
) -> tuple[bytes, bytes]:
    """The root's name and kind, and its attributes known at the start."""
    name = f"{method} {route}" if route else method
    group: dict[str, Any] = {
        "http.request.method": method,
        "url.scheme": scheme,
        "inferia.endpoint": endpoint,
    }
    if route:
        group["http.route"] = route
    if path_named:
        # Only a path that names nothing: a model or deployment in the path (an
        # unknown one too) and an unknown path stay out, as the body's model does.
        group["url.path"] = route
    return span_head(name, SERVER), attributes(group)


@functools.lru_cache(maxsize=1024)
def _upstream_attributes(
    url: str, endpoint: str, provider: str, model: str, account: str, target: str
) -> bytes:
    host, port = _server(url)
    group: dict[str, Any] = {
        "http.request.method": "POST",
        "server.address": host,
        "server.port": port,
        "gen_ai.operation.name": OPERATIONS.get(endpoint, endpoint),
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model[:NAME_LIMIT],
        "inferia.provider_account": account[:NAME_LIMIT],
    }
    if target:
        group["inferia.deployment.target"] = target[:NAME_LIMIT]
    return attributes(group)


@functools.lru_cache(maxsize=1024)
def _outcome_attributes(org: str, model: str, target: str, account: str) -> bytes:
    """What the root says of who called and what answered (org, model, account)."""
    group: dict[str, Any] = {}
    if org:
        group["inferia.org"] = org
    if model:
        group["gen_ai.request.model"] = model[:NAME_LIMIT]
    if target:
        group["inferia.deployment.target"] = target[:NAME_LIMIT]
    if account:
        group["inferia.provider_account"] = account[:NAME_LIMIT]
    return attributes(group)


ERROR_TYPE = "error.type"


class Trace:
    """The spans of one gateway request, as plain tuples until they are encoded.

    A step is open from its start to the next step's (or its own end); an ended step
    is ``(span id, parent id, head, start, end, attributes, error)``, its span id 0
    when nothing outside names it (one is drawn when the trace is encoded). A request
    the sampler left out records nothing (its steps are no-ops), but its context still
    goes upstream, unsampled, under a span id of its own."""

    __slots__ = (
        "trace_id",
        "root_id",
        "_state",
        "_flags",
        "_remote_parent",
        "_start",
        "_head",
        "_attributes",
        "_ended",
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
        self.root_id = new_span_id()
        self._start = time_ns()
        # [head, start, attributes, error] of the open step; the upstream attempt's,
        # with its span id first (its traceparent named it).
        self._phase: list | None = None
        self._upstream: list | None = None
        self._recorded: dict[str, Any] | None = None
        if not flags & SAMPLED:
            # Nothing recorded: the root exists for its span id (the upstream's parent).
            self._ended: list[tuple] | None = None
            self._head = self._attributes = b""
            return
        self._ended = []
        route = _route(call)
        method = request.method if request.method in METHODS else "_OTHER"
        scheme = "https" if request.secure else "http"
        self._head, group = _root_head(method, route, scheme, call.endpoint, route == request.path)
        self._attributes = group + encode_attribute("inferia.request_id", request.request_id)

    def _open(self, head: bytes, attributes: bytes = b"") -> None:
        """End the open step and open the next one (when this trace records)."""
        phase = self._phase
        ended = self._ended
        if ended is None:
            return
        now = time_ns()
        if phase is not None:
            ended.append((0, self.root_id, phase[0], phase[1], now, phase[2], phase[3]))
        self._phase = [head, now, attributes, ""] if head else None

    def _end_phase(self) -> None:
        if self._phase is not None:
            self._open(b"")

    @staticmethod
    def _fail(step: list, error_type: str) -> None:
        step[-2] += attribute(ERROR_TYPE, error_type)
        step[-1] = error_type

    # --- authorization -------------------------------------------------------------

    def authorize(self) -> None:
        """The caller's principal is loaded, its body validated and its model access
        decided from now until the limits are read."""
        self._open(AUTHORIZE)

    def refused(self, code: object) -> None:
        """The open step refused the request (its error code, never its message)."""
        if self._phase is not None:
            self._fail(self._phase, str(code))
            self._end_phase()

    # --- limits --------------------------------------------------------------------

    def limits_begin(self, counted: bool) -> None:
        """The limits round trip (``ratelimit.check``) starts."""
        self._open(LIMITS, attribute("inferia.limits.counted", counted))

    def limits_end(self, decision: Decision | None, error_type: str = "") -> None:
        """It answered ``decision``, or raised (``error_type``: StaleEpoch,
        BackendUnavailable)."""
        phase = self._phase
        if phase is None:
            return
        if decision is not None:
            phase[2] += attribute("inferia.limits.allowed", decision.allowed)
            denied = decision.denied
            if denied is not None:
                phase[2] += attribute("inferia.limits.denied_scope", denied.scope)
                phase[2] += attribute("inferia.limits.denied_kind", denied.kind)
            if not decision.allowed:
                error_type = "limit_reached"
        if error_type:
            self._fail(phase, error_type)
        self._end_phase()

    # --- the upstream --------------------------------------------------------------

    def upstream_begin(self, call: Call, route: Route, upstream_call: UpstreamCall) -> None:
        """A ``gateway.upstream`` CLIENT span for this attempt; its ``traceparent`` (and
        the caller's ``tracestate``) go into the upstream request's headers."""
        self.upstream_end(0, "abandoned")  # an earlier attempt's, if one was left open
        headers = upstream_call.headers
        if self._state:
            headers["tracestate"] = self._state
        if self._ended is None:
            headers["traceparent"] = tracing.traceparent(self.trace_id, self.root_id, self._flags)
            return
        target = call.target
        span_id = new_span_id()
        self._upstream = [
            span_id,
            time_ns(),
            _upstream_attributes(
                upstream_call.url,
                call.upstream_endpoint,
                route.provider_type,
                route.upstream_model,
                route.account_name,
                target.name if target is not None else "",
            ),
            "",
        ]
        headers["traceparent"] = tracing.traceparent(self.trace_id, span_id, self._flags)

    def upstream_end(self, status: int, error_type: str = "") -> None:
        """The attempt ended: the upstream's status (0: none came) and, when it failed,
        the failure's class or code. A second call is a no-op."""
        span = self._upstream
        if span is None:
            return
        self._upstream = None
        if status:
            span[2] += attribute("http.response.status_code", status)
        if error_type or status >= 400:
            self._fail(span, error_type or str(status))
        self._ended.append(  # type: ignore[union-attr]
            (span[0], self.root_id, UPSTREAM, span[1], time_ns(), span[2], span[3])
        )

    # --- the record ----------------------------------------------------------------

    def record_begin(self, entry: dict[str, Any], kind: str = "usage") -> None:
        """The usage (or audit) record's write starts; ``entry`` is that record (its
        status, error code and token counts go on the root span)."""
        error_code = entry.get("error_code") or ""
        if error_code:
            self.refused(error_code)  # the step still open is the one that refused
        self._recorded = entry
        self._open(USAGE_WRITE, attribute("inferia.record", kind))

    def record_end(self, error_type: str = "") -> None:
        """The write ended (``error_type``: the class of what it raised)."""
        if error_type and self._phase is not None:
            self._fail(self._phase, error_type)
        self._end_phase()

    async def recording(self, writing: Awaitable[T], entry: dict[str, Any], kind: str) -> T:
        """``await writing`` (the record's write) in a ``gateway.usage_write`` span."""
        self.record_begin(entry, kind)
        try:
            result = await writing
        except BaseException as exc:
            self.record_end(type(exc).__name__)
            raise
        self.record_end()
        return result

    # --- the end -------------------------------------------------------------------

    def finish(self, call: Call) -> None:
        """End every open span, then the root with what the request came to, and queue
        the trace for export."""
        ended = self._ended
        if ended is None:
            return
        recorded = self._recorded or {}
        error_code = str(recorded.get("error_code") or "")
        status = call.status
        failed = error_code or status >= 400
        if failed:
            error_type = error_code or str(status)
            if self._phase is not None:
                self._fail(self._phase, error_type)
            self.upstream_end(0, error_type)
        self._end_phase()
        self.upstream_end(0)
        self._ended = None  # a second finish exports nothing twice
        parts = [self._attributes]
        if status:
            parts.append(attribute("http.response.status_code", status))
        principal = call.principal
        # The model only once it named something the caller may use: an FQN, never a
        # string nobody configured.
        model = target = ""
        if call.deployment_route is not None:
            model = call.deployment_route.fqn
            if call.target is not None:
                target = call.target.name
        elif call.route is not None:
            model = call.route.fqn
        parts.append(
            _outcome_attributes(
                principal.org_slug if principal is not None else "",
                model,
                target,
                call.route.account_name if call.route is not None else "",
            )
        )
        if call.streamed:
            parts.append(attribute("inferia.streamed", True))
        if call.degraded:
            parts.append(attribute("inferia.degraded", call.degraded))
        if "prompt_tokens" in recorded:
            parts.append(attribute("gen_ai.usage.input_tokens", int(recorded["prompt_tokens"])))
            parts.append(
                attribute("gen_ai.usage.output_tokens", int(recorded["completion_tokens"]))
            )
            if recorded.get("usage_estimated"):
                parts.append(attribute("inferia.usage.estimated", True))
        error = ""
        if failed:
            error = error_code or str(status)
            parts.append(attribute(ERROR_TYPE, error))
        ended.append(
            (
                self.root_id,
                self._remote_parent,
                self._head,
                self._start,
                time_ns(),
                b"".join(parts),
                error,
            )
        )
        tracing.export(self.trace_id, self._state, self._flags, self._remote_parent, ended)
