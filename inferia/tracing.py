"""OpenTelemetry traces, exported over OTLP/HTTP: off unless an endpoint is configured.

``configure_from_settings()`` runs once per web process (``inferia.asgi``): with
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` set (read by
``inferia.settings``) it starts this module's exporter. ``shutdown()`` flushes what is
queued. Off, nothing is imported from OpenTelemetry and ``ENABLED`` is False: callers
test it (or an object that exists only when it is True) before any tracing work, so
the gateway's hot path pays one attribute read.

Why spans are not the SDK's ``Span`` objects: measured with ``bench/observability.py``,
the SDK's span objects (about 95 us for a request's five spans) and its protobuf
encoder (about 80 us more, in the batch thread of the same process) cost three
quarters of a gateway request's CPU. Here an ended span is a tuple (``SpanTuple``),
and a request's spans are written straight to the OTLP wire format (protobuf, field
numbers of ``opentelemetry/proto/trace/v1/trace.proto``) from fragments encoded once.
The OpenTelemetry packages still do what is not on the hot path:

- ``opentelemetry-exporter-otlp-proto-http`` sends each batch (the standard variables
  for headers, compression, certificates and timeout; its retries and back-off), over
  its urllib3 transport;
- ``opentelemetry-sdk``'s ``Resource`` builds the resource (``OTEL_SERVICE_NAME``,
  ``OTEL_RESOURCE_ATTRIBUTES``, ``telemetry.sdk.*``);
- ``opentelemetry-api``'s W3C propagator parses a caller's ``traceparent`` and
  ``tracestate`` (only when a request has one).

Sampling follows ``OTEL_TRACES_SAMPLER`` and ``_ARG`` (the six standard samplers, with
the SDK's trace-id ratio rule), batching ``OTEL_BSP_*``. What the spans hold, and what
they never hold, is ``gateway/spans.py``'s business (docs/tracing.md).
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

logger = logging.getLogger("inferia.tracing")

ENABLED = False
_exporter: Exporter | None = None
_sampler: Sampler | None = None
_propagator: Any = None  # the W3C TraceContextTextMapPropagator, while ENABLED
_exit_hooked = False

# SpanKind and StatusCode of trace.proto.
INTERNAL, SERVER, CLIENT = 1, 2, 3
# W3C trace flags: sampled, and (Trace Context level 2) a random trace id.
SAMPLED, RANDOM = 0x01, 0x02
# Span.flags: the trace flags, plus "whether the parent is remote is known" and "it is".
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200
SCOPE_NAME = "inferia.gateway"

_getrandbits = random.getrandbits
time_ns = time.time_ns


# --- ids and the W3C context ------------------------------------------------------


def new_trace_id() -> int:
    trace_id = _getrandbits(128)
    while not trace_id:  # all zeros is the invalid id
        trace_id = _getrandbits(128)
    return trace_id


def new_span_id() -> int:
    span_id = _getrandbits(64)
    while not span_id:
        span_id = _getrandbits(64)
    return span_id


_FLAGS_HEX = tuple(f"-{n:02x}" for n in range(256))


def traceparent(trace_id: int, span_id: int, flags: int) -> str:
    """The ``traceparent`` header naming a span (version 00)."""
    # bytes.hex: a third of what format specs cost for a 128-bit int.
    return (
        "00-"
        + trace_id.to_bytes(16, "big").hex()
        + "-"
        + span_id.to_bytes(8, "big").hex()
        + _FLAGS_HEX[flags & 0xFF]
    )


def extract(headers: Mapping[str, str]) -> tuple[int, int, int, str] | None:
    """A caller's valid W3C context: (trace id, span id, flags, tracestate header) or
    None for a missing or malformed ``traceparent`` (a new trace, never an error)."""
    from opentelemetry import trace as otel

    parent = otel.get_current_span(_propagator.extract(headers)).get_span_context()
    if not parent.is_valid:
        return None
    return parent.trace_id, parent.span_id, int(parent.trace_flags), parent.trace_state.to_header()


class Sampler:
    """``OTEL_TRACES_SAMPLER`` (``_ARG``): whether a request's trace is recorded.

    ``always_on``, ``always_off``, ``traceidratio`` and their ``parentbased_`` forms
    (the default ``parentbased_always_on``). A ratio keeps a trace when the low 64 bits
    of its id are below ``ratio * 2**64``, the SDK's rule, so every service sampling
    at one ratio keeps the same traces. ``parentbased_``: a caller's sampled flag
    decides for it."""

    NAMES = (
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    )

    def __init__(self, name: str = "parentbased_always_on", ratio: float = 1.0) -> None:
        if name not in self.NAMES:
            raise ValueError(f"unknown sampler {name!r}")
        self.name = name
        self.parent_based = name.startswith("parentbased_")
        root = name.removeprefix("parentbased_")
        ratio = min(max(ratio, 0.0), 1.0) if root == "traceidratio" else 1.0
        self.ratio = ratio if root != "always_off" else 0.0
        self.bound = round(self.ratio * (1 << 64))

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Sampler:
        name = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_always_on"
        if name not in cls.NAMES:
            logger.warning("OTEL_TRACES_SAMPLER=%r is not supported: parentbased_always_on", name)
            name = "parentbased_always_on"
        ratio = 1.0
        argument = environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
        if argument and name.endswith("traceidratio"):
            try:
                ratio = float(argument)
            except ValueError:
                logger.warning("OTEL_TRACES_SAMPLER_ARG=%r is not a number: 1.0", argument)
            else:
                if not 0.0 <= ratio <= 1.0:
                    logger.warning("OTEL_TRACES_SAMPLER_ARG=%r is not in [0, 1]: 1.0", argument)
                    ratio = 1.0
        return cls(name, ratio)

    def sample(self, trace_id: int, parent_flags: int | None) -> bool:
        """``parent_flags``: the caller's trace flags, None without a caller context."""
        if parent_flags is not None and self.parent_based:
            return bool(parent_flags & SAMPLED)
        return (trace_id & 0xFFFFFFFFFFFFFFFF) < self.bound


# --- spans and their wire format --------------------------------------------------


def _varint_slow(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Varints of the lengths a span's parts have (and small ints), looked up, not computed.
_VARINTS = [_varint_slow(n) for n in range(1 << 14)]


def _varint(value: int) -> bytes:
    return _VARINTS[value] if value < 16384 else _varint_slow(value)


_pack_d = struct.Struct("<d").pack
_pack_i = struct.Struct("<I").pack
# Field 1 (trace_id) is the trace's; 2 (span_id), 4 (parent_span_id), 7 and 8 (start
# and end, fixed64) are packed in one call each.
_pack_ids = struct.Struct(">2sQ2sQ").pack
_pack_id = struct.Struct(">2sQ").pack
_pack_times = struct.Struct("<BQBQ").pack


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field (``tag``: its key byte(s))."""
    length = len(payload)
    return tag + (_VARINTS[length] if length < 16384 else _varint_slow(length)) + payload


def _any_value(value: Any) -> bytes:
    """``AnyValue``: string 1, bool 2, int 3, double 4, array 5."""
    if isinstance(value, str):
        return _field(b"\x0a", value.encode("utf-8", "replace"))
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return b"\x21" + _pack_d(value)
    if isinstance(value, list | tuple):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _any_value(v)) for v in value))
    return _field(b"\x0a", str(value).encode("utf-8", "replace"))


_KEYS: dict[str, bytes] = {}


def encode_attribute(key: str, value: Any) -> bytes:
    """Span field 9 (attributes): one ``KeyValue``, tag included."""
    encoded_key = _KEYS.get(key)
    if encoded_key is None:
        encoded_key = _KEYS[key] = _field(b"\x0a", key.encode())
    if type(value) is str:
        raw = value.encode("utf-8", "replace")
        length = len(raw)
        pair = len(encoded_key) + length + 4
        if pair < 128:  # every length a single byte: one join (a request id)
            return b"".join(
                (
                    b"\x4a",
                    _VARINTS[pair],
                    encoded_key,
                    b"\x12",
                    _VARINTS[length + 2],
                    b"\x0a",
                    _VARINTS[length],
                    raw,
                )
            )
    return _field(b"\x4a", encoded_key + _field(b"\x12", _any_value(value)))


# Encoded pairs seen before (org slug, model, status, token counts...), keyed with the
# value's type (True == 1). Bounded: cleared when full.
_PAIRS: dict[tuple[str, type, Any], bytes] = {}
_PAIRS_LIMIT = 4096


def attribute(key: str, value: Any) -> bytes:
    """``encode_attribute``, from a bounded cache for a string, bool or int value (use
    ``encode_attribute`` for a value never repeated, such as a request id)."""
    kind = type(value)
    if kind is not str and kind is not bool and kind is not int:
        return encode_attribute(key, value)
    pair = (key, kind, value)
    encoded = _PAIRS.get(pair)
    if encoded is None:
        if len(_PAIRS) >= _PAIRS_LIMIT:
            _PAIRS.clear()
        encoded = _PAIRS[pair] = encode_attribute(key, value)
    return encoded


def attributes(pairs: Mapping[str, Any]) -> bytes:
    """Several attributes, encoded (for groups a caller caches itself)."""
    return b"".join(encode_attribute(key, value) for key, value in pairs.items())


_HEADS: dict[tuple[str, int], bytes] = {}


def span_head(name: str, kind: int) -> bytes:
    """A span's name and kind fields (5, 6), encoded once per name."""
    head = _HEADS.get((name, kind))
    if head is None:
        if len(_HEADS) >= _PAIRS_LIMIT:
            _HEADS.clear()
        head = _HEADS[(name, kind)] = (
            _field(b"\x2a", name.encode("utf-8", "replace")) + b"\x30" + _varint(kind)
        )
    return head


# An ended span: (span id (0: draw one now), parent span id (0: none), head (its name
# and kind, ``span_head``), start and end (ns since the epoch), attributes (encoded),
# error type ("": status unset; else status ERROR with it as the message)).
SpanTuple = tuple[int, int, bytes, int, int, bytes, str]


def encode_spans(
    trace_id: int,
    trace_state: str,
    flags: int,
    remote_parent: int,
    spans: Iterable[SpanTuple],
) -> bytes:
    """The spans of one trace, each as a ``ScopeSpans.spans`` field (tag 2): the part of
    an export request this trace adds. ``remote_parent``: the caller's span id (0: none),
    the parent of the span whose parent id it is."""
    trace = b"\x0a\x10" + trace_id.to_bytes(16, "big")
    if trace_state:
        trace += _field(b"\x1a", trace_state.encode("ascii", "replace"))
    # Field 16 (flags, fixed32): the trace flags, "whether the parent is remote is known",
    # and for the span whose parent is the caller's, "it is".
    local = b"\x85\x01" + _pack_i(flags & 0xFF | _HAS_IS_REMOTE)
    remote = b"\x85\x01" + _pack_i(flags & 0xFF | _HAS_IS_REMOTE | _IS_REMOTE)
    out: list[bytes] = []
    append = out.append
    for span_id, parent, head, start, end, encoded_attributes, error in spans:
        body = b"".join(
            (
                trace,
                _pack_ids(b"\x12\x08", span_id or new_span_id(), b"\x22\x08", parent)
                if parent
                else _pack_id(b"\x12\x08", span_id or new_span_id()),
                head,
                _pack_times(0x39, start, 0x41, end),
                encoded_attributes,
                # Status: message 2, code 3 (ERROR = 2).
                _field(b"\x7a", _field(b"\x12", error.encode("utf-8", "replace")) + b"\x18\x02")
                if error
                else b"",
                remote if parent and parent == remote_parent else local,
            )
        )
        length = len(body)
        append(b"\x12" + (_VARINTS[length] if length < 16384 else _varint_slow(length)))
        append(body)
    return b"".join(out)


def encode_request(resource: Mapping[str, Any], spans: Iterable[bytes]) -> bytes:
    """An ``ExportTraceServiceRequest`` of one resource and this module's scope."""
    resource_part = b"".join(
        _field(b"\x0a", _field(b"\x0a", key.encode()) + _field(b"\x12", _any_value(value)))
        for key, value in resource.items()
    )
    scope = _field(b"\x0a", _field(b"\x0a", SCOPE_NAME.encode()))
    scope_spans = _field(b"\x12", scope + b"".join(spans))
    resource_spans = _field(b"\x0a", _field(b"\x0a", resource_part) + scope_spans)
    return resource_spans


# --- the exporter -----------------------------------------------------------------


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        logger.warning("%s=%r is not a number: %s", name, raw, default)
        return default
    return value if value > 0 else default


class Exporter:
    """Batches encoded traces and posts them from a background thread.

    ``submit`` (the request's side) appends under a lock and never blocks on the
    network: beyond ``max_queue`` waiting spans a trace is dropped (and counted). The
    thread posts every ``schedule_delay`` seconds, or as soon as ``max_batch`` spans
    wait, through the OTLP/HTTP exporter's client."""

    def __init__(
        self,
        send: Callable[[bytes], Any],
        resource: Mapping[str, Any],
        *,
        schedule_delay: float,
        max_queue: int,
        max_batch: int,
        close: Callable[[], None] = lambda: None,
    ) -> None:
        self._send = send
        self._close = close
        self._resource = dict(resource)
        self._delay = schedule_delay
        self._max_queue = max_queue
        self._max_batch = min(max_batch, max_queue)
        self._queue: deque[tuple[bytes, int]] = deque()
        self._waiting = 0
        self._lock = threading.Lock()
        self._exporting = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self.dropped = 0
        self.exported = 0
        self._thread = threading.Thread(target=self._run, name="inferia-otlp", daemon=True)
        self._thread.start()

    def submit(self, encoded: bytes, count: int) -> None:
        with self._lock:
            if self._stopping or self._waiting + count > self._max_queue:
                self.dropped += count
                return
            self._queue.append((encoded, count))
            waiting = self._waiting = self._waiting + count
        # Wake the thread once, when a batch fills (not again for every trace after).
        if waiting >= self._max_batch > waiting - count:
            self._wake.set()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._delay)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Post everything waiting now (the in-flight batch of the thread first)."""
        with self._exporting:
            while True:
                with self._lock:
                    if not self._queue:
                        return
                    batch, count = [], 0
                    while self._queue and count < self._max_batch:
                        encoded, spans = self._queue.popleft()
                        batch.append(encoded)
                        count += spans
                    self._waiting -= count
                try:
                    result = self._send(encode_request(self._resource, batch))
                except Exception as exc:  # the network's business, never the request's
                    logger.warning("trace export failed: %s", type(exc).__name__)
                    continue
                if getattr(result, "success", True):
                    self.exported += count

    def shutdown(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        self.flush()
        self._close()


def _first(*names: str) -> str | None:
    return next((os.environ[name] for name in names if os.environ.get(name)), None)


def _transport() -> Any:
    """The exporter package's urllib3 transport, with the TLS settings of the standard
    variables (``OTEL_EXPORTER_OTLP_(TRACES_)CERTIFICATE``, ``_CLIENT_KEY``,
    ``_CLIENT_CERTIFICATE``), as its default requests transport would read them: it
    posts a batch for about half the CPU. None (the default transport) when a credential
    provider (a requests session) is configured."""
    if _first(
        "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
        "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER",
    ):
        return None
    from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport

    key = _first("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY")
    certificate = _first(
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"
    )
    return Urllib3HTTPTransport(
        verify=_first("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE")
        or True,
        cert=(certificate, key) if certificate and key else certificate,
    )


def configure(
    *,
    endpoint: str,
    service_name: str = "inferia",
    schedule_delay_millis: float | None = None,
) -> None:
    """Trace to the OTLP/HTTP ``endpoint`` (the full URL, ``.../v1/traces``) from now on.

    Replaces (and flushes) an exporter configured before: tests point one process at
    their own receiver and ``reset()`` it afterwards."""
    global ENABLED, _exporter, _sampler, _propagator, _exit_hooked
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    reset()
    otlp = OTLPSpanExporter(endpoint=endpoint, _transport=_transport())
    # The exporter's HTTP client takes serialized requests (its export() would encode
    # SDK spans first). The package is pinned; a change of this internal fails here.
    send = getattr(getattr(otlp, "_client", None), "export", None)
    if not callable(send):
        raise RuntimeError(
            "opentelemetry-exporter-otlp-proto-http has no _client.export: "
            "inferia/tracing.py needs the pinned version"
        )
    # Only the service name and what OTEL_RESOURCE_ATTRIBUTES says: no process detector
    # (its command line could carry a secret given as an argument).
    resource = Resource.create({"service.name": service_name}).attributes
    delay = (
        schedule_delay_millis
        if schedule_delay_millis is not None
        else _positive_int("OTEL_BSP_SCHEDULE_DELAY", 5000)
    )
    _sampler = Sampler.from_environment()
    _propagator = TraceContextTextMapPropagator()
    _exporter = Exporter(
        send,
        resource,
        schedule_delay=delay / 1000,
        max_queue=_positive_int("OTEL_BSP_MAX_QUEUE_SIZE", 2048),
        max_batch=_positive_int("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512),
        close=otlp.shutdown,
    )
    ENABLED = True
    if not _exit_hooked:
        # A process that exits without the ASGI lifespan's shutdown still flushes.
        atexit.register(reset)
        _exit_hooked = True


def configure_from_settings() -> bool:
    """Configure from the settings (the standard OTel variables); True when tracing is on."""
    endpoint = settings.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    if not endpoint:
        return False
    configure(endpoint=endpoint, service_name=settings.OTEL_SERVICE_NAME)
    # Scheme, host, port and path only: a collector URL may carry credentials (user
    # information, a token in the query); the export headers are never logged.
    parts = urlsplit(endpoint)
    shown = f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"
    logger.info("traces export over OTLP/HTTP to %s%s", shown, parts.path)
    return True


def sampler() -> Sampler:
    """The configured sampler (only while ``ENABLED``)."""
    if _sampler is None:
        raise RuntimeError("tracing is not configured")
    return _sampler


def export(
    trace_id: int, trace_state: str, flags: int, remote_parent: int, spans: list[SpanTuple]
) -> None:
    """Queue a finished trace's spans for export (a no-op when tracing is off)."""
    exporter = _exporter
    if exporter is not None:
        exporter.submit(
            encode_spans(trace_id, trace_state, flags, remote_parent, spans), len(spans)
        )


def force_flush() -> bool:
    """Export every finished trace now (tests, and before a process stops); the
    exporter's own timeout bounds each post."""
    if _exporter is not None:
        _exporter.flush()
    return True


def shutdown() -> None:
    """Flush and stop the exporter (the ASGI lifespan's shutdown); tracing is off after."""
    reset()


def reset() -> None:
    """Back to the unconfigured state, flushing and stopping the exporter if any."""
    global ENABLED, _exporter, _sampler, _propagator
    exporter = _exporter
    ENABLED, _exporter, _sampler, _propagator = False, None, None, None
    if exporter is not None:
        exporter.shutdown()
