"""``inferia.tracing``'s own parts: the OTLP wire encoding (read back with the official
protobuf classes), the sampler (against the SDK's), and the batching exporter."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status
from opentelemetry.sdk.trace.sampling import (
    ParentBased,
    TraceIdRatioBased,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from inferia import tracing
from inferia.tracing import CLIENT, INTERNAL, SERVER, Sampler
from tests.gateway.processes import ROOT


def _span(name, kind, parent, attributes=b"", error="", span_id=None):
    """An ended span as ``encode_spans`` takes it (started a millisecond ago)."""
    end = time.time_ns()
    span_id = tracing.new_span_id() if span_id is None else span_id
    return (span_id, parent, tracing.span_head(name, kind), end - 1_000_000, end, attributes, error)


def _decode(resource: dict, *traces: bytes) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(tracing.encode_request(resource, traces))


def _value(any_value):
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind)


def test_spans_read_back_field_for_field():
    trace_id = tracing.new_trace_id()
    caller_span = tracing.new_span_id()
    root_attributes = {
        "http.request.method": "POST",
        "inferia.request_id": "req_1",
        "http.response.status_code": 502,
        "inferia.streamed": True,
        "inferia.degraded": "allowed",
        "a.negative": -7,
        "a.large": 2**62 + 5,
        "a.float": 0.25,
        "a.false": False,
        "a.one": 1,  # an int equal to True, encoded as an int
        "a.list": ["x", "y"],
        "a.unicode": "Zürich 東京",
        "a.long": "x" * 300,  # lengths of two bytes
    }
    root_attributes["error.type"] = "UPSTREAM_ERROR"
    root = _span(
        "POST /api/llm/v1/chat/completions",
        SERVER,
        caller_span,
        tracing.attributes(root_attributes),
        "UPSTREAM_ERROR",
    )
    root_id = root[0]
    child = _span(
        "gateway.upstream",
        CLIENT,
        root_id,
        tracing.attribute("server.port", 8000) + tracing.attribute("error.type", "UpstreamTimeout"),
        "UpstreamTimeout",
    )
    quiet = _span("gateway.authorize", INTERNAL, root_id, span_id=0)  # drawn when encoded
    encoded = tracing.encode_spans(trace_id, "acme=blue", 0x03, caller_span, [root, child, quiet])
    request = _decode({"service.name": "inferia-x", "n": 3}, encoded)

    (resource_spans,) = request.resource_spans
    resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
    assert resource == {"service.name": "inferia-x", "n": 3}
    (scope_spans,) = resource_spans.scope_spans
    assert scope_spans.scope.name == "inferia.gateway"
    got_root, got_child, got_quiet = scope_spans.spans

    assert got_root.trace_id == trace_id.to_bytes(16, "big")
    assert got_root.span_id == root_id.to_bytes(8, "big")
    assert got_root.parent_span_id == caller_span.to_bytes(8, "big")
    assert got_root.trace_state == "acme=blue"
    assert got_root.name == "POST /api/llm/v1/chat/completions"
    assert got_root.kind == PbSpan.SPAN_KIND_SERVER
    assert (got_root.start_time_unix_nano, got_root.end_time_unix_nano) == root[3:5]
    assert got_root.end_time_unix_nano >= got_root.start_time_unix_nano > 0
    attributes = {a.key: _value(a.value) for a in got_root.attributes}
    assert attributes == root_attributes
    assert got_root.attributes[3].value.WhichOneof("value") == "bool_value"
    assert next(a for a in got_root.attributes if a.key == "a.one").value.int_value == 1
    assert got_root.status.code == Status.STATUS_CODE_ERROR
    assert got_root.status.message == "UPSTREAM_ERROR"
    # The trace flags, "remote parent known", and for the root "it is remote".
    assert got_root.flags == 0x03 | 0x100 | 0x200

    assert got_child.parent_span_id == root_id.to_bytes(8, "big")
    assert got_child.kind == PbSpan.SPAN_KIND_CLIENT
    assert got_child.flags == 0x03 | 0x100
    assert {a.key: _value(a.value) for a in got_child.attributes} == {
        "server.port": 8000,
        "error.type": "UpstreamTimeout",
    }
    assert got_child.status.code == Status.STATUS_CODE_ERROR

    assert got_quiet.kind == PbSpan.SPAN_KIND_INTERNAL
    assert len(got_quiet.span_id) == 8 and got_quiet.span_id != bytes(8)
    assert list(got_quiet.attributes) == []
    assert got_quiet.status.code == Status.STATUS_CODE_UNSET
    assert got_quiet.trace_state == "acme=blue"


def test_the_pair_cache_never_confuses_values_or_grows_without_bound(monkeypatch):
    monkeypatch.setattr(tracing, "_PAIRS_LIMIT", 8)
    tracing._PAIRS.clear()
    spans, expected = [], []
    for n in range(40):
        # "1" and True, "0" and False: equal-looking values of other types.
        values = {"k": n, "b": bool(n % 2), "s": f"v{n % 3}", "t": str(n % 2)}
        encoded = b"".join(tracing.attribute(key, value) for key, value in values.items())
        spans.append(_span("s", INTERNAL, 0, encoded))
        expected.append(values)
        assert len(tracing._PAIRS) <= 8
    request = _decode({}, tracing.encode_spans(1, "", 1, 0, spans))
    for values, got in zip(expected, request.resource_spans[0].scope_spans[0].spans, strict=True):
        assert {a.key: _value(a.value) for a in got.attributes} == values
        kinds = {a.key: a.value.WhichOneof("value") for a in got.attributes}
        assert kinds == {
            "k": "int_value",
            "b": "bool_value",
            "s": "string_value",
            "t": "string_value",
        }
    tracing._PAIRS.clear()


def test_two_traces_in_one_request_keep_their_own_ids():
    first = _span("a", SERVER, 0)
    second = _span("b", SERVER, 0)
    request = _decode(
        {},
        tracing.encode_spans(11, "", 1, 0, [first]),
        tracing.encode_spans(22, "", 1, 0, [second]),
    )
    got = request.resource_spans[0].scope_spans[0].spans
    assert [int.from_bytes(s.trace_id, "big") for s in got] == [11, 22]
    assert [s.parent_span_id for s in got] == [b"", b""]
    assert got[0].flags == 0x01 | 0x100  # no parent: not remote


# --- the sampler --------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.0, 0.01, 0.1, 0.5, 1.0])
def test_the_ratio_keeps_the_traces_the_sdk_keeps(ratio):
    ours = Sampler("traceidratio", ratio)
    sdk = TraceIdRatioBased(ratio)
    rng = random.Random(ratio)
    for _ in range(5000):
        trace_id = rng.getrandbits(128) or 1
        expected = sdk.should_sample(None, trace_id, "x").decision.is_sampled()
        assert ours.sample(trace_id, None) is expected


@pytest.mark.parametrize("caller_sampled", [True, False])
def test_parent_based_follows_the_caller_as_the_sdk_does(caller_sampled):
    ours = Sampler("parentbased_traceidratio", 0.0)
    sdk = ParentBased(TraceIdRatioBased(0.0))
    flags = TraceFlags(TraceFlags.SAMPLED if caller_sampled else TraceFlags.DEFAULT)
    parent = set_span_in_context(NonRecordingSpan(SpanContext(5, 7, True, flags)))
    expected = sdk.should_sample(parent, 5, "x").decision.is_sampled()
    assert ours.sample(5, int(flags)) is expected is caller_sampled
    # Without a caller, the root sampler (ratio 0) decides.
    assert ours.sample(5, None) is False
    # Not parent-based: the caller's flag is ignored.
    assert Sampler("always_off").sample(5, 0x01) is False
    assert Sampler("always_on").sample(5, 0x00) is True


@pytest.mark.parametrize(
    ("environ", "name", "ratio"),
    [
        ({}, "parentbased_always_on", 1.0),
        ({"OTEL_TRACES_SAMPLER": "always_off"}, "always_off", 0.0),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.05"},
            "parentbased_traceidratio",
            0.05,
        ),
        (
            {"OTEL_TRACES_SAMPLER": "TraceIdRatio", "OTEL_TRACES_SAMPLER_ARG": "x"},
            "traceidratio",
            1.0,
        ),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "7"},
            "traceidratio",
            1.0,
        ),
        ({"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "parentbased_always_on", 1.0),
    ],
)
def test_the_sampler_follows_the_standard_variables(environ, name, ratio):
    sampler = Sampler.from_environment(environ)
    assert (sampler.name, sampler.ratio) == (name, ratio)


# --- the exporter -------------------------------------------------------------------


class Collector:
    def __init__(self, fail: bool = False) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.fail = fail
        self.lock = threading.Lock()

    def send(self, data: bytes):
        if self.fail:
            raise ConnectionError("collector down")
        with self.lock:
            self.requests.append(ExportTraceServiceRequest.FromString(data))

    def spans(self) -> list:
        return [
            span
            for request in self.requests
            for resource_spans in request.resource_spans
            for scope in resource_spans.scope_spans
            for span in scope.spans
        ]


def _trace(count: int) -> tuple[bytes, int]:
    spans = [_span(f"s{n}", INTERNAL, 0) for n in range(count)]
    return tracing.encode_spans(tracing.new_trace_id(), "", 1, 0, spans), count


def test_batches_hold_at_most_the_batch_size_and_lose_nothing():
    collector = Collector()
    exporter = tracing.Exporter(
        collector.send, {"service.name": "t"}, schedule_delay=3600, max_queue=1000, max_batch=10
    )
    try:
        for _ in range(30):
            exporter.submit(*_trace(5))
        exporter.flush()
    finally:
        exporter.shutdown()
    assert len(collector.spans()) == 150
    sizes = [len(r.resource_spans[0].scope_spans[0].spans) for r in collector.requests]
    assert max(sizes) <= 10 and sum(sizes) == 150
    assert exporter.exported == 150 and exporter.dropped == 0


def test_a_full_queue_drops_traces_and_counts_them_instead_of_waiting():
    collector = Collector()
    exporter = tracing.Exporter(
        collector.send, {}, schedule_delay=3600, max_queue=12, max_batch=100
    )
    try:
        for _ in range(4):
            exporter.submit(*_trace(5))  # the third and fourth do not fit
        assert exporter.dropped == 10
        exporter.flush()
    finally:
        exporter.shutdown()
    assert len(collector.spans()) == 10


def test_the_thread_posts_on_its_schedule_and_shutdown_flushes_the_rest():
    collector = Collector()
    exporter = tracing.Exporter(
        collector.send, {}, schedule_delay=0.05, max_queue=1000, max_batch=500
    )
    exporter.submit(*_trace(5))
    for _ in range(100):
        if collector.spans():
            break
        threading.Event().wait(0.05)
    assert len(collector.spans()) == 5  # without a flush: the schedule sent it
    exporter.submit(*_trace(3))
    exporter.shutdown()
    assert len(collector.spans()) == 8
    exporter.submit(*_trace(2))  # after shutdown: dropped, never queued
    assert exporter.dropped == 2


def test_a_failing_collector_never_reaches_the_request(caplog):
    exporter = tracing.Exporter(
        Collector(fail=True).send, {}, schedule_delay=3600, max_queue=100, max_batch=10
    )
    try:
        exporter.submit(*_trace(5))
        exporter.flush()  # logs, does not raise
    finally:
        exporter.shutdown()
    assert exporter.exported == 0
    assert "trace export failed: ConnectionError" in caplog.text
    assert "collector down" not in caplog.text  # the class, never the message


def test_the_batch_variables_are_read(monkeypatch, settings):
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "250")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "64")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "not-a-number")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    tracing.configure(endpoint="http://127.0.0.1:9/v1/traces")
    try:
        exporter = tracing._exporter
        assert exporter is not None
        assert (exporter._delay, exporter._max_queue, exporter._max_batch) == (0.25, 64, 64)
        assert tracing.sampler().name == "always_off"
    finally:
        tracing.reset()
    assert tracing._exporter is None


def test_a_process_that_exits_without_shutdown_still_sends_its_spans(otlp):
    """No ASGI lifespan, no reset(): the exit hook flushes what is queued (the batch
    would otherwise have left in a minute)."""
    script = (
        "import django; django.setup()\n"
        "from inferia import tracing\n"
        f"tracing.configure(endpoint={otlp.endpoint!r}, service_name='exit-hook',"
        " schedule_delay_millis=60000)\n"
        "span = (0, 0, tracing.span_head('at-exit', tracing.SERVER), 1, 2, b'', '')\n"
        "tracing.export(tracing.new_trace_id(), '', 1, 0, [span])\n"
    )
    subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "inferia.test_settings"},
        check=True,
        timeout=120,
        capture_output=True,
    )
    spans = otlp.wait_for(lambda spans: any(s.name == "at-exit" for s in spans))
    assert next(s for s in spans if s.name == "at-exit").resource["service.name"] == "exit-hook"
