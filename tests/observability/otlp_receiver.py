"""An in-process OTLP/HTTP trace receiver: what a collector would get, decoded.

A ``ThreadingHTTPServer`` on 127.0.0.1 accepts ``POST /v1/traces`` (protobuf,
optionally gzip), decodes the ``ExportTraceServiceRequest`` with opentelemetry-proto
and keeps every span, with its resource, as plain data; the raw bodies are kept too,
so a test can search the bytes as they travelled.
"""

from __future__ import annotations

import gzip
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests import ports

KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
STATUSES = {0: "UNSET", 1: "OK", 2: "ERROR"}


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which) if which else None


@dataclass
class ExportedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: str
    attributes: dict[str, Any]
    status: str
    status_message: str
    events: list[dict[str, Any]]
    links: list[dict[str, Any]]
    trace_state: str
    resource: dict[str, Any]
    scope: str
    start_ns: int
    end_ns: int

    def strings(self) -> list[str]:
        """Every text this span carries, for leak scans."""
        out = [self.name, self.status_message, self.trace_state, self.scope]
        for mapping in (self.attributes, self.resource):
            out += [f"{k}={v}" for k, v in mapping.items()]
        for event in self.events:
            out.append(event["name"])
            out += [f"{k}={v}" for k, v in event["attributes"].items()]
        for link in self.links:
            out += [f"{k}={v}" for k, v in link["attributes"].items()]
        return out


@dataclass
class Receiver:
    url: str
    spans: list[ExportedSpan] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        return f"{self.url}/v1/traces"

    def clear(self) -> None:
        with self.lock:
            self.spans.clear()
            self.bodies.clear()
            self.requests.clear()

    def wait_for(self, predicate, timeout: float = 15.0, what: str = "spans") -> list[ExportedSpan]:
        """The spans once ``predicate(spans)`` holds (exports arrive from another thread
        or process)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                spans = list(self.spans)
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                names = [s.name for s in spans]
                raise AssertionError(f"timed out waiting for {what}; received {names}")
            time.sleep(0.05)

    def add(self, body: bytes, headers: dict[str, str]) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        found: list[ExportedSpan] = []
        for resource_spans in request.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        ExportedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            kind=KINDS[span.kind],
                            attributes={kv.key: _value(kv.value) for kv in span.attributes},
                            status=STATUSES[span.status.code],
                            status_message=span.status.message,
                            events=[
                                {
                                    "name": e.name,
                                    "attributes": {kv.key: _value(kv.value) for kv in e.attributes},
                                }
                                for e in span.events
                            ],
                            links=[
                                {
                                    "trace_id": link.trace_id.hex(),
                                    "attributes": {
                                        kv.key: _value(kv.value) for kv in link.attributes
                                    },
                                }
                                for link in span.links
                            ],
                            trace_state=span.trace_state,
                            resource=resource,
                            scope=scope_spans.scope.name,
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                        )
                    )
        with self.lock:
            self.bodies.append(body)
            self.requests.append(headers)
            self.spans.extend(found)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.headers.get("Content-Encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            receiver.add(body, {k.lower(): v for k, v in self.headers.items()})
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


class ReceiverServer:
    """The receiver served on a free port in a daemon thread."""

    def __init__(self) -> None:
        port = ports.free_port()
        self.receiver = Receiver(url=f"http://127.0.0.1:{port}")
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self.receiver))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Receiver:
        self.thread.start()
        return self.receiver

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
