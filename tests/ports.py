"""Ports of the servers the tests start on 127.0.0.1.

``INFERIA_TEST_PORTS=9100-9149`` confines them to a range (a shared machine where each
developer or CI job owns some ports); without it each helper keeps its own default.
Under pytest-xdist each worker takes its own slice of the range.
"""

from __future__ import annotations

import os
import socket


def port_range(default: range | None) -> range | None:
    """The range of ``INFERIA_TEST_PORTS`` when set, else ``default`` (None: any free
    port the system picks)."""
    value = os.environ.get("INFERIA_TEST_PORTS", "").strip()
    if not value:
        return default
    low, _, high = value.partition("-")
    ports = range(int(low), int(high or low) + 1)
    if not ports or ports.start < 1024 or ports.stop > 65536:
        raise ValueError(f"INFERIA_TEST_PORTS={value!r}: give LOW-HIGH, above 1023")
    return ports


def worker_slice(ports: range) -> range:
    """This xdist worker's share of ``ports``."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    count = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), 1)
    size = max(len(ports) // count, 1)
    start = ports.start + (index % count) * size
    return range(start, min(start + size, ports.stop))


_handed_out: list[int] = []  # the ports given last, most recent first


def free_port(default: range | None = None) -> int:
    """A port nobody listens on now, from this worker's slice of the range. A caller
    often asks for several before it binds any (two server processes): the ports
    handed out lately are skipped, as the system does for port 0."""
    ports = port_range(default)
    if ports is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    candidates = list(worker_slice(ports))
    recent = set(_handed_out[: max(len(candidates) // 2, 1)])
    for port in [p for p in candidates if p not in recent] + [p for p in candidates if p in recent]:
        with socket.socket() as probe:
            # As the servers bind (Python's HTTPServer, uvicorn and Node set
            # SO_REUSEADDR): the connections a stopped server leaves in TIME_WAIT do
            # not hold its port.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.insert(0, port)
        del _handed_out[64:]
        return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")
