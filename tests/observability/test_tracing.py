"""OpenTelemetry traces of gateway requests, as an OTLP collector receives them.

The gateway's server thread shares this process: ``inferia.tracing``'s test hook points
it at an in-process OTLP/HTTP receiver, which decodes what arrives over real HTTP.
One test starts a real server process configured by the standard OTel variables only.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx
import pytest

from deployments import config
from deployments.models import Deployment
from gateway import spans
from inferia import store, tracing
from orgs.scoping import org_scope
from orgs.services import auth
from tests.deployments.routing_fixtures import target
from tests.gateway.conftest import UPSTREAM_SECRET
from tests.gateway.processes import ROOT, GatewayProcess
from tests.observability.otlp_receiver import ExportedSpan, Receiver

PROMPT = "the launch code is swordfish-7731, keep it between us"
BODY = {"model": "openai-main/gpt-4o", "messages": [{"role": "user", "content": PROMPT}]}
CHILDREN = {"gateway.authorize", "gateway.limits", "gateway.upstream", "gateway.usage_write"}
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
# Version 00; the flags say sampled (01), and for a trace id the SDK made, random (02).
TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-0[13]$")


def _trace(receiver: Receiver, request_id: str, count: int | None = None) -> list[ExportedSpan]:
    """The spans of the trace whose root served ``request_id`` (once ``count`` of them,
    or the root, have arrived)."""

    def ready(spans: list[ExportedSpan]) -> bool:
        roots = [s for s in spans if s.attributes.get("inferia.request_id") == request_id]
        if not roots:
            return False
        same = [s for s in spans if s.trace_id == roots[0].trace_id]
        return count is None or len(same) >= count

    spans = receiver.wait_for(ready, what=f"the trace of {request_id}")
    trace_id = next(s for s in spans if s.attributes.get("inferia.request_id") == request_id)
    return [s for s in spans if s.trace_id == trace_id.trace_id]


def _root(spans: list[ExportedSpan]) -> ExportedSpan:
    roots = [s for s in spans if s.kind == "SERVER"]
    assert len(roots) == 1, [(s.name, s.kind) for s in spans]
    return roots[0]


def _named(spans: list[ExportedSpan], name: str) -> list[ExportedSpan]:
    return [s for s in spans if s.name == name]


def _upstream_traceparent(upstream_requests) -> str:
    chats = [r for r in upstream_requests if r["path"].endswith("/chat/completions")]
    assert chats, upstream_requests
    return chats[-1]["headers"].get("traceparent", "")


def test_a_call_is_one_server_span_with_its_four_steps(traced, llm, upstream_requests):
    response = llm.post("/chat/completions", llm.key(), BODY)
    assert response.status_code == 200, response.text
    spans = _trace(traced, response.headers["X-Request-ID"], count=5)

    root = _root(spans)
    assert root.name == "POST /api/llm/v1/chat/completions"
    assert root.parent_span_id == ""  # no caller context: a new trace
    assert {s.name for s in spans} == {root.name, *CHILDREN}
    assert len(spans) == 5
    for child in spans:
        if child is not root:
            assert child.parent_span_id == root.span_id, child.name
            assert root.start_ns <= child.start_ns <= child.end_ns <= root.end_ns, child.name
    assert root.status == "UNSET"
    assert root.resource["service.name"] == "inferia-test"
    attributes = root.attributes
    assert attributes["http.request.method"] == "POST"
    assert attributes["http.route"] == "/api/llm/v1/chat/completions"
    assert attributes["url.path"] == "/api/llm/v1/chat/completions"
    assert attributes["http.response.status_code"] == 200
    assert attributes["inferia.org"] == "acme"
    assert attributes["gen_ai.request.model"] == "openai-main/gpt-4o"
    assert attributes["inferia.provider_account"] == "openai-main"
    assert attributes["gen_ai.usage.input_tokens"] > 0
    assert attributes["gen_ai.usage.output_tokens"] > 0
    assert "error.type" not in attributes

    (limits,) = _named(spans, "gateway.limits")
    assert limits.attributes == {"inferia.limits.counted": True, "inferia.limits.allowed": True}
    (usage_write,) = _named(spans, "gateway.usage_write")
    assert usage_write.attributes["inferia.record"] == "usage"
    (upstream,) = _named(spans, "gateway.upstream")
    assert upstream.kind == "CLIENT"
    assert upstream.status == "UNSET"
    port = int(llm.upstream.url.rsplit(":", 1)[1])
    assert upstream.attributes["server.address"] == "127.0.0.1"
    assert upstream.attributes["server.port"] == port
    assert upstream.attributes["http.response.status_code"] == 200
    assert upstream.attributes["gen_ai.operation.name"] == "chat"
    assert upstream.attributes["gen_ai.request.model"] == "gpt-4o"
    assert upstream.attributes["gen_ai.provider.name"] == "openai"
    # The steps in the order a call meets them.
    (authorize,) = _named(spans, "gateway.authorize")
    assert authorize.end_ns <= limits.start_ns
    assert limits.end_ns <= upstream.start_ns
    assert upstream.end_ns <= usage_write.start_ns

    # The upstream was called with this trace, its parent the upstream span.
    traceparent = TRACEPARENT_RE.match(_upstream_traceparent(upstream_requests))
    assert traceparent, _upstream_traceparent(upstream_requests)
    assert traceparent.groups() == (root.trace_id, upstream.span_id)


def test_the_callers_traceparent_is_the_roots_parent(traced, llm, upstream_requests):
    response = llm.post(
        "/chat/completions",
        llm.key(),
        BODY,
        traceparent=f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
        tracestate="acme=blue,other=7",
    )
    assert response.status_code == 200, response.text
    spans = _trace(traced, response.headers["X-Request-ID"], count=5)
    root = _root(spans)
    assert root.trace_id == CALLER_TRACE
    assert root.parent_span_id == CALLER_SPAN
    assert root.trace_state == "acme=blue,other=7"
    (upstream,) = _named(spans, "gateway.upstream")
    received = upstream_requests[-1]["headers"]
    assert received["traceparent"] == f"00-{CALLER_TRACE}-{upstream.span_id}-01"
    assert received["tracestate"] == "acme=blue,other=7"


def test_a_caller_that_did_not_sample_gets_nothing_recorded_but_the_context_goes_on(
    traced, llm, upstream_requests
):
    response = llm.post(
        "/chat/completions", llm.key(), BODY, traceparent=f"00-{CALLER_TRACE}-{CALLER_SPAN}-00"
    )
    assert response.status_code == 200, response.text
    sent = upstream_requests[-1]["headers"]["traceparent"]
    assert re.match(rf"^00-{CALLER_TRACE}-[0-9a-f]{{16}}-00$", sent), sent
    assert sent.split("-")[2] not in (CALLER_SPAN, "0" * 16)
    # A sampled call after it is exported: the unsampled one would have been by then.
    second = llm.post("/chat/completions", llm.key(), BODY)
    _trace(traced, second.headers["X-Request-ID"], count=5)
    tracing.force_flush()
    assert not [s for s in traced.spans if s.trace_id == CALLER_TRACE]


@pytest.mark.parametrize(
    "traceparent",
    [
        "00-zzzz2f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        f"00-{'0' * 32}-{CALLER_SPAN}-01",  # an all-zero trace id is invalid
        f"00-{CALLER_TRACE}-{CALLER_SPAN}-01-and-more",  # version 00 ends at the flags
        "garbage",
    ],
)
def test_a_malformed_traceparent_is_ignored(traced, llm, upstream_requests, traceparent):
    response = llm.post("/chat/completions", llm.key(), BODY, traceparent=traceparent)
    assert response.status_code == 200, response.text
    spans = _trace(traced, response.headers["X-Request-ID"], count=5)
    root = _root(spans)
    assert root.parent_span_id == ""
    assert root.trace_id not in (CALLER_TRACE, "0" * 32)
    (upstream,) = _named(spans, "gateway.upstream")
    received = upstream_requests[-1]["headers"]
    traceparent = TRACEPARENT_RE.match(received["traceparent"])
    assert traceparent and traceparent.groups() == (root.trace_id, upstream.span_id)


def test_a_streamed_call_keeps_its_upstream_span_open_until_the_stream_ends(
    traced, llm, upstream_requests
):
    body = {**BODY, "model": "openai-main/fake-stream-slow-200", "stream": True}
    headers = {"Authorization": f"Bearer {llm.key()}"}
    with httpx.stream(
        "POST", f"{llm.base_url}/chat/completions", json=body, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200
        text = "".join(response.iter_text())
    assert "[DONE]" in text
    spans = _trace(traced, response.headers["X-Request-ID"], count=5)
    root = _root(spans)
    assert {s.name for s in spans} == {root.name, *CHILDREN}
    assert root.attributes["inferia.streamed"] is True
    assert root.attributes["http.response.status_code"] == 200
    assert root.attributes["gen_ai.usage.output_tokens"] > 0
    (upstream,) = _named(spans, "gateway.upstream")
    assert upstream.status == "UNSET"
    # The chunks came 200 ms apart: the span lasted for the whole relay, not to the headers.
    assert upstream.end_ns - upstream.start_ns >= 400_000_000
    (usage_write,) = _named(spans, "gateway.usage_write")
    assert upstream.end_ns <= usage_write.start_ns
    traceparent = TRACEPARENT_RE.match(_upstream_traceparent(upstream_requests))
    assert traceparent and traceparent.groups() == (root.trace_id, upstream.span_id)


def test_an_unauthenticated_call_is_an_error_root_with_its_audit_write(traced, llm):
    response = llm.post("/chat/completions", "inf_nobody_" + "x" * 40, BODY)
    assert response.status_code == 401
    spans = _trace(traced, response.headers["X-Request-ID"], count=3)
    root = _root(spans)
    assert root.status == "ERROR"
    assert root.attributes["error.type"] == "AUTHENTICATION_FAILED"
    assert root.attributes["http.response.status_code"] == 401
    assert "inferia.org" not in root.attributes
    assert "gen_ai.request.model" not in root.attributes
    (authorize,) = _named(spans, "gateway.authorize")
    assert authorize.status == "ERROR"
    assert authorize.attributes["error.type"] == "AUTHENTICATION_FAILED"
    (audit_write,) = _named(spans, "gateway.usage_write")
    assert audit_write.attributes["inferia.record"] == "audit"
    assert not _named(spans, "gateway.upstream")


def test_a_forbidden_model_is_an_error_root_without_an_upstream_call(traced, llm):
    key = llm.key(permissions=["model:read"])  # no inference:run
    response = llm.post("/chat/completions", key, BODY)
    assert response.status_code == 403
    spans = _trace(traced, response.headers["X-Request-ID"], count=4)
    root = _root(spans)
    assert root.status == "ERROR"
    assert root.attributes["error.type"] == "PERMISSION_DENIED"
    assert root.attributes["inferia.org"] == "acme"
    (authorize,) = _named(spans, "gateway.authorize")
    assert authorize.attributes["error.type"] == "PERMISSION_DENIED"
    (limits,) = _named(spans, "gateway.limits")
    assert limits.attributes["inferia.limits.counted"] is False  # read for the headers only
    assert _named(spans, "gateway.usage_write")
    assert not _named(spans, "gateway.upstream")


def test_an_unknown_model_is_never_named_in_the_trace(traced, llm):
    response = llm.post("/chat/completions", llm.key(), {**BODY, "model": "nobody/made-this-up"})
    assert response.status_code == 404
    spans = _trace(traced, response.headers["X-Request-ID"], count=4)
    root = _root(spans)
    assert root.attributes["error.type"] == "NOT_FOUND"
    assert not any("made-this-up" in text for span in spans for text in span.strings())


def test_names_in_the_path_stay_out_of_the_trace(traced, llm):
    key = llm.key()
    found = httpx.get(
        f"{llm.base_url}/models/openai-main/gpt-4o",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert found.status_code == 200, found.text
    missing = httpx.get(
        f"{llm.base_url}/models/nobody/made-this-up",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert missing.status_code == 404
    unknown = llm.post("/no-such-endpoint-made-this-up", key, BODY)
    assert unknown.status_code == 404
    roots = [
        _root(_trace(traced, response.headers["X-Request-ID"]))
        for response in (found, missing, unknown)
    ]
    assert [r.name for r in roots] == ["GET /api/llm/v1/models/{model}"] * 2 + ["POST"]
    assert roots[0].attributes["gen_ai.request.model"] == "openai-main/gpt-4o"
    assert [r.attributes["http.response.status_code"] for r in roots] == [200, 404, 404]
    assert not any("made-this-up" in text for root in roots[1:] for text in root.strings())


def test_a_rate_limited_call_marks_its_limits_step(traced, llm):
    key = llm.key()
    row = llm.key_row(key)
    row.requests_per_minute = 1
    row.save(update_fields=["requests_per_minute"])
    for _ in range(3):  # two calls in one calendar minute: at most one minute turns
        response = llm.post("/chat/completions", key, BODY)
        if response.status_code == 429:
            break
    assert response.status_code == 429, response.text
    spans = _trace(traced, response.headers["X-Request-ID"], count=4)
    root = _root(spans)
    assert root.status == "ERROR"
    assert root.attributes["error.type"] == "RATE_LIMITED"
    (limits,) = _named(spans, "gateway.limits")
    assert limits.status == "ERROR"
    assert limits.attributes["inferia.limits.allowed"] is False
    assert limits.attributes["inferia.limits.denied_scope"] == "key"
    assert not _named(spans, "gateway.upstream")


def test_an_upstream_failure_marks_the_upstream_span(traced, llm):
    response = llm.post(
        "/chat/completions", llm.key(), {**BODY, "model": "openai-main/fake-error-500"}
    )
    assert response.status_code == 502
    spans = _trace(traced, response.headers["X-Request-ID"], count=5)
    (upstream,) = _named(spans, "gateway.upstream")
    assert upstream.status == "ERROR"
    assert upstream.attributes["http.response.status_code"] == 500
    assert upstream.attributes["error.type"] == "500"
    root = _root(spans)
    assert root.attributes["error.type"] == "UPSTREAM_ERROR"
    assert root.attributes["http.response.status_code"] == 502


def test_no_prompt_credential_or_secret_reaches_the_collector(traced, llm, cast):
    info = llm.key_info()
    key = info["key"]
    jwt = auth.token_pair_issue(user=cast.bob).access_token
    ids = []
    for credential, body in (
        (key, BODY),
        (key, {**BODY, "stream": True}),
        (key, {**BODY, "model": "openai-main/fake-error-400"}),
        (jwt, BODY),
        (key + "tampered", BODY),
        (jwt[:-4] + "AAAA", BODY),
    ):
        response = llm.post("/chat/completions", credential, body)
        ids.append(response.headers["X-Request-ID"])
        assert response.status_code in (200, 400, 401), response.text
    traced.wait_for(
        lambda spans: sum(s.kind == "SERVER" for s in spans) >= len(ids), what="six roots"
    )
    spans = traced.spans
    assert len(spans) >= 6 * 3

    forbidden = {
        "prompt": PROMPT,
        "prompt word": "swordfish",
        "API key": key,
        "API key secret": key.rsplit("_", 1)[-1],
        "upstream secret": UPSTREAM_SECRET,
        "authorization header": f"Bearer {key}",
        "JWT": jwt,
        "JWT signature": jwt.rsplit(".", 1)[-1],
        "JWT payload": jwt.split(".")[1],
    }
    assert info["prefix"] and key.startswith(info["prefix"])
    for span in spans:
        texts = span.strings()
        for what, value in forbidden.items():
            assert not any(value in text for text in texts), (what, span.name)
        # Nor a credential's public prefix, nor any request header's value.
        assert not any(info["prefix"] in text for text in texts), span.name
        assert "client.address" not in span.attributes
    # The bytes as they travelled, resource and events included.
    for body in traced.bodies:
        for what, value in forbidden.items():
            assert value.encode() not in body, what


def test_every_attempt_of_a_deployment_is_its_own_upstream_span(traced, llm, cast):
    with org_scope(cast.acme):
        Deployment.objects.create(
            org=cast.acme,
            name="resilient",
            config=config.to_document(
                config.parse(
                    {
                        "targets": [
                            target("primary", "openai-main", "fake-error-500"),
                            target("backup", "openai-main", "gpt-4o", priority=1),
                        ]
                    }
                )
            ),
            status="ready",
        )
    store.bump_epoch(cast.acme.pk)
    llm.grant("authz_rules:\n  - models: ['openai-main/*', 'deployment/*']\n    users: [bob]\n")
    response = llm.post("/chat/completions", llm.key(), {**BODY, "model": "deployment/resilient"})
    assert response.status_code == 200, response.text
    assert response.headers["X-Inferia-Target"] == "backup"
    spans = _trace(traced, response.headers["X-Request-ID"], count=6)
    root = _root(spans)
    attempts = sorted(_named(spans, "gateway.upstream"), key=lambda s: s.start_ns)
    assert [a.attributes["inferia.deployment.target"] for a in attempts] == ["primary", "backup"]
    assert [a.status for a in attempts] == ["ERROR", "UNSET"]
    assert [a.attributes["http.response.status_code"] for a in attempts] == [500, 200]
    assert all(a.parent_span_id == root.span_id for a in attempts)
    assert attempts[0].end_ns <= attempts[1].start_ns
    assert root.status == "UNSET"
    assert root.attributes["gen_ai.request.model"] == "deployment/resilient"
    assert root.attributes["inferia.deployment.target"] == "backup"


def test_with_tracing_off_the_gateway_does_no_tracing_work(otlp, llm, monkeypatch, settings):
    """No endpoint configured: no provider, no span object, no traceparent sent
    upstream, nothing exported."""
    settings.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = ""  # as when no OTEL_* variable is set
    tracing.reset()  # in case this run's environment configured it
    assert not tracing.configure_from_settings()
    made = []
    original = spans.Trace.__init__

    def counting(self, call):
        made.append(call)
        original(self, call)

    monkeypatch.setattr(spans.Trace, "__init__", counting)
    assert tracing.ENABLED is False
    response = llm.post(
        "/chat/completions", llm.key(), BODY, traceparent=f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    )
    assert response.status_code == 200
    assert made == []
    assert tracing._exporter is None and tracing._sampler is None
    from gateway.fake_upstream import RECORDED

    assert "traceparent" not in RECORDED[-1]["headers"]  # the caller's is not forwarded either
    time.sleep(0.3)  # what a batch processor would have sent by now (there is none)
    assert otlp.spans == []


def test_the_hook_turns_tracing_on_and_off(otlp, llm):
    tracing.configure(endpoint=otlp.endpoint, schedule_delay_millis=50)
    try:
        first = llm.post("/chat/completions", llm.key(), BODY)
        _trace(otlp, first.headers["X-Request-ID"], count=5)
    finally:
        tracing.reset()
    assert tracing.ENABLED is False
    second = llm.post("/chat/completions", llm.key(), BODY)
    assert second.status_code == 200
    time.sleep(0.3)
    assert not [
        s
        for s in otlp.spans
        if s.attributes.get("inferia.request_id") == second.headers["X-Request-ID"]
    ]


# --- the standard variables, in a real server process --------------------------------------


def _settings_in_a_process(env: dict[str, str]) -> str:
    """What ``inferia.settings`` makes of these OTel variables in a fresh process."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, settings.OTEL_SERVICE_NAME)",
        ],
        cwd=ROOT,
        env={**clean, **env, "DJANGO_SETTINGS_MODULE": "inferia.test_settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return (result.stdout.strip() or result.stderr.strip().splitlines()[-1]).strip()


def test_the_settings_follow_the_standard_variables():
    assert _settings_in_a_process({}) == "inferia"
    assert _settings_in_a_process({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}) == (
        "http://c:4318/v1/traces inferia"
    )
    both = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4318/custom",
        "OTEL_SERVICE_NAME": "gw-eu",
    }
    assert _settings_in_a_process(both) == "http://t:4318/custom gw-eu"
    off = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}
    assert _settings_in_a_process(off) == "inferia"
    grpc = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    assert "only 'http/protobuf'" in _settings_in_a_process(grpc)


def test_a_server_process_exports_to_the_configured_endpoint(otlp, llm):
    """``uvicorn inferia.asgi:application`` with OTEL_EXPORTER_OTLP_ENDPOINT set: the
    spans of its calls reach the receiver. The batch delay is an hour, so they can only
    arrive through the flush at the lifespan's shutdown."""
    server = GatewayProcess(
        os.environ.get("REDIS_URL", ""),
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url,
            "OTEL_SERVICE_NAME": "inferia-live",
            "OTEL_BSP_SCHEDULE_DELAY": "3600000",
        },
        without=("OTEL_",),
        lifespan=True,
    )
    try:
        server.wait_ready()
        response = server.chat(
            llm.key(), BODY, headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
        )
        assert response.status_code == 200, response.text
        time.sleep(0.3)
        assert otlp.spans == []  # still queued in the process
    finally:
        output = server.stop()
    spans = _trace(otlp, response.headers["X-Request-ID"], count=5)
    root = _root(spans)
    assert root.trace_id == CALLER_TRACE and root.parent_span_id == CALLER_SPAN
    assert {s.name for s in spans} == {root.name, *CHILDREN}
    assert root.resource["service.name"] == "inferia-live"
    assert otlp.requests[0]["content-type"] == "application/x-protobuf"
    assert "Traceback" not in output, output


def test_the_start_up_line_names_the_collector_without_its_credentials(settings, caplog):
    settings.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = (
        "https://svc:collector-password@otel.example.com:4318/v1/traces?token=query-token"
    )
    try:
        with caplog.at_level("INFO", logger="inferia.tracing"):
            assert tracing.configure_from_settings()
        assert tracing.ENABLED
    finally:
        tracing.reset()
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "https://otel.example.com:4318/v1/traces" in logged
    assert "collector-password" not in logged and "query-token" not in logged
    assert tracing.ENABLED is False and tracing._exporter is None
