"""OpenTelemetry traces, exported over OTLP/HTTP: off unless an endpoint is configured.

``configure_from_settings()`` runs once per web process (``inferia.asgi``): with
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` set (read by
``inferia.settings``) it builds this module's own ``TracerProvider`` (never the OTel
global one, which can be set only once per process) with a ``BatchSpanProcessor`` and
the OTLP/HTTP protobuf exporter; the SDK itself honours the other standard variables
(``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_TRACES_SAMPLER`` and ``_ARG``,
``OTEL_BSP_*``, ``OTEL_RESOURCE_ATTRIBUTES``). ``shutdown()`` flushes what is queued.

Off, nothing is imported from the SDK and ``ENABLED`` is False: callers test it (or an
object that exists only when it is True) before doing any tracing work, so the
gateway's hot path pays one attribute read. What the spans hold, and what they never
hold, is ``gateway/spans.py``'s business (docs/tracing.md).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.conf import settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

logger = logging.getLogger("inferia.tracing")

ENABLED = False
_provider: TracerProvider | None = None
_tracer: Tracer | None = None
_propagator: TraceContextTextMapPropagator | None = None


def configure(
    *,
    endpoint: str,
    service_name: str = "inferia",
    schedule_delay_millis: float | None = None,
) -> None:
    """Trace to the OTLP/HTTP ``endpoint`` (the full URL, ``.../v1/traces``) from now on.

    Replaces (and flushes) a provider configured before: tests point one process at
    their own receiver and ``reset()`` it afterwards."""
    global ENABLED, _provider, _tracer, _propagator
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    reset()
    # Only the service name and what OTEL_RESOURCE_ATTRIBUTES says: no process detector
    # (its command line could carry a secret given as an argument).
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=endpoint), schedule_delay_millis=schedule_delay_millis
        )
    )
    _provider = provider
    _tracer = provider.get_tracer("inferia.gateway")
    _propagator = TraceContextTextMapPropagator()
    ENABLED = True


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


def tracer() -> Tracer:
    """The tracer of the configured provider (only while ``ENABLED``)."""
    if _tracer is None:
        raise RuntimeError("tracing is not configured")
    return _tracer


def propagator() -> TraceContextTextMapPropagator:
    """W3C Trace Context (``traceparent``, ``tracestate``), only while ``ENABLED``."""
    if _propagator is None:
        raise RuntimeError("tracing is not configured")
    return _propagator


def force_flush(timeout_millis: int = 10_000) -> bool:
    """Export every ended span now (tests, and before a process stops)."""
    return _provider.force_flush(timeout_millis) if _provider is not None else True


def shutdown() -> None:
    """Flush and stop the exporter (the ASGI lifespan's shutdown); tracing is off after."""
    reset()


def reset() -> None:
    """Back to the unconfigured state, flushing and shutting down the provider if any."""
    global ENABLED, _provider, _tracer, _propagator
    provider = _provider
    ENABLED, _provider, _tracer, _propagator = False, None, None, None
    if provider is not None:
        provider.shutdown()
