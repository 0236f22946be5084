"""Summarise a py-spy raw (collapsed stacks) profile: the functions with most samples,
or (``--phases``) the share of each phase of a gateway request, in milliseconds of CPU
per request when ``--ms-per-request`` (the bench's "Server CPU time per request") is given.

python bench/profile_summary.py /tmp/prof/inferia.txt [--top 40] [--self]
python bench/profile_summary.py /tmp/prof/inferia.txt --phases --ms-per-request 0.43
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

# A stack belongs to the phase of its innermost frame that matches (first rule wins
# among those at the same depth); samples matching none are the server and event loop.
PHASES = [
    ("logging: the per-request log line", ("logging/__init__.py", "audit/logging.py")),
    ("usage record + settlement (Redis, 2nd round trip)", ("usage.py:", "_record (gateway")),
    ("limits + epoch (Redis script, 1st round trip)", ("_limits_check", "ratelimit.py")),
    ("upstream call (gateway/http.py, SSRF check)", ("gateway/http.py", "httptools/")),
    ("body: read, parse, authorize, size", ("_read_body", "_prepare", "sizing.py")),
    ("caller: credential, cached principal", ("_load_principal", "principals.py")),
    ("response: JSON, headers, CORS", ("_send_json", "_header_list", "cors.py", "_stream")),
    ("request object, routing, request id", ("Request.__init__", "route_for", "Call.__init__")),
    ("gateway glue (app.py)", ("gateway/app.py",)),
    ("uvicorn: HTTP parsing, ASGI", ("uvicorn/",)),
]
OTHER = "event loop, sockets, GC and the rest"


def phase_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, needles in PHASES:
            if any(needle in frame for needle in needles):
                return name
    return OTHER


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--self", action="store_true", help="count only the innermost frame")
    parser.add_argument("--phases", action="store_true", help="group samples by request phase")
    parser.add_argument("--ms-per-request", type=float, help="CPU ms per request, to scale shares")
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    phases: Counter[str] = Counter()
    total = 0
    for line in args.path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        phases[phase_of(frames)] += n
        if args.self:
            inclusive[frames[-1]] += n
        else:
            for frame in set(frames):
                inclusive[frame] += n
    print(f"{total} samples")
    if args.phases:
        for name, n in phases.most_common():
            share = n / total
            ms = f"  {share * args.ms_per_request:.3f} ms" if args.ms_per_request else ""
            print(f"{100 * share:6.1f}%{ms}  {name}")
        return
    for frame, n in inclusive.most_common(args.top):
        print(f"{100 * n / total:6.1f}%  {frame[:160]}")


if __name__ == "__main__":
    main()
