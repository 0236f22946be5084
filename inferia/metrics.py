"""Prometheus metrics: every series Inferia exports and the helpers that record them.

docs/metrics.md documents each series (name, labels, meaning). Recording goes through
the functions here (``gateway_call``, ``usage_recorded``, the Celery signal handlers),
the scrape through ``exposition``; nothing else touches ``prometheus_client``.

A gateway request adds to plain numbers of its process (``_GatewaySeries``); they
reach prometheus_client once a second, before a scrape of that process, and at
shutdown (``flush``): a scrape of another process may miss the last second.

Processes: with ``PROMETHEUS_MULTIPROC_DIR`` set (``manage.py serve`` sets it for its
uvicorn workers, Celery worker and beat) every process writes its samples to files
there and a scrape sums them (``prometheus_client.multiprocess``); without it the
process's own registry is scraped (tests, a lone process). Only counters and
histograms are recorded; the gauges are read when scraped (``_ScrapeTimeCollector``),
so no gauge needs a multiprocess mode.

Labels are bounded by construction: an org's slug, a fixed endpoint name, the FQN of
a route or deployment the request was authorized to use (a model name a caller made
up, or one refused, is ""), the provider account of that route, a status class or
error code from the contract's list, a Celery task's registered name. Never a key,
user, request id, client address or anything copied from a request body.

``INFERIA_METRICS_ENABLED`` off: nothing is recorded and ``/metrics`` answers 404.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from django.conf import settings
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric

logger = logging.getLogger(__name__)

# ``*_created`` series would double every counter's series for a timestamp no
# dashboard reads (multiprocess mode never exports them): the same page either way.
disable_created_metrics()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NONE = ""  # a label with no value: no model authorized, no provider account, no org

# Whole requests and upstream calls: milliseconds (a refusal) to minutes (a long stream).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# The gateway's own time: a warm request spends well under a millisecond.
OVERHEAD_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0)

REQUEST_LABELS = ("org", "endpoint", "model", "provider_account", "status_class")
USAGE_LABELS = ("org", "model", "provider_account")

GATEWAY_REQUESTS = Counter(
    "inferia_gateway_requests",
    "Gateway requests answered, by org, endpoint, model FQN, provider account, status class.",
    REQUEST_LABELS,
)
GATEWAY_REQUEST_SECONDS = Histogram(
    "inferia_gateway_request_duration_seconds",
    "Gateway requests from arrival to the last byte (upstream included).",
    REQUEST_LABELS,
    buckets=LATENCY_BUCKETS,
)
GATEWAY_ERRORS = Counter(
    "inferia_gateway_errors",
    "Gateway requests that ended in an error, by error code (the contract's list).",
    ("org", "endpoint", "model", "provider_account", "code"),
)
GATEWAY_DENIALS = Counter(
    "inferia_gateway_denials",
    "Gateway requests refused with 401, 403 or 404, by reason (error code); "
    "org is empty when the caller was not identified.",
    ("org", "endpoint", "status", "reason"),
)
GATEWAY_OVERHEAD_SECONDS = Histogram(
    "inferia_gateway_overhead_seconds",
    "Time spent in the gateway for a request, the upstream excluded.",
    ("org", "endpoint"),
    buckets=OVERHEAD_BUCKETS,
)
GATEWAY_UPSTREAM_SECONDS = Histogram(
    "inferia_gateway_upstream_duration_seconds",
    "Time spent waiting for the upstream (all attempts of a request).",
    USAGE_LABELS,
    buckets=LATENCY_BUCKETS,
)
GATEWAY_PROMPT_TOKENS = Counter(
    "inferia_gateway_prompt_tokens", "Prompt tokens charged (as metered).", USAGE_LABELS
)
GATEWAY_COMPLETION_TOKENS = Counter(
    "inferia_gateway_completion_tokens", "Completion tokens charged (as metered).", USAGE_LABELS
)
GATEWAY_COST = Counter(
    "inferia_gateway_cost",
    "Cost charged, in the currency of the models' prices.",
    USAGE_LABELS,
)
GATEWAY_LIMIT_REFUSALS = Counter(
    "inferia_gateway_limit_refusals",
    "Requests refused by a rate limit or quota: scope key, principal, org or ip; "
    "kind requests, tokens, quota_tokens or quota_cost.",
    ("org", "scope", "kind"),
)
GATEWAY_DEGRADED = Counter(
    "inferia_gateway_degraded_decisions",
    "Requests decided by the org's *_on_backend_error settings while the limit store "
    "was unreachable: decision allowed or denied.",
    ("org", "decision"),
)
USAGE_RECORDS = Counter(
    "inferia_usage_records",
    "Usage entries written to the database (by the ingest worker, or directly).",
)
USAGE_DEAD_LETTERS = Counter(
    "inferia_usage_dead_letters",
    "Usage entries that could not be recorded and became dead letters.",
)
CELERY_TASKS = Counter(
    "inferia_celery_tasks",
    "Celery task runs by task name and outcome (success, failure, retry).",
    ("task", "outcome"),
)
CELERY_TASK_SECONDS = Histogram(
    "inferia_celery_task_duration_seconds",
    "Celery task run time, by task name.",
    ("task",),
    buckets=TASK_BUCKETS,
)

# The series read when scraped (gauges): name -> help.
SCRAPE_TIME_SERIES = {
    "inferia_usage_stream_length": "Usage entries in the Redis stream, not yet recorded.",
    "inferia_usage_stream_pending": "Usage entries read by an ingest worker, not yet acknowledged.",
    "inferia_usage_stream_lag_seconds": "Age of the oldest usage entry not yet recorded.",
    "inferia_usage_dead_letters_stored": "Dead usage entries kept for an operator.",
}


def enabled() -> bool:
    return bool(settings.INFERIA_METRICS_ENABLED)


def multiprocess_dir() -> str:
    return settings.PROMETHEUS_MULTIPROC_DIR


# --- the gateway --------------------------------------------------------------------------


class _Principal(Protocol):
    @property
    def org_slug(self) -> str: ...


class _Route(Protocol):
    @property
    def fqn(self) -> str: ...

    @property
    def account_name(self) -> str: ...

    def cost_micros(self, prompt_tokens: int, completion_tokens: int) -> int: ...


class GatewayCall(Protocol):
    """What ``gateway_call`` reads of ``gateway.app.Call`` (it never imports the gateway)."""

    started: float
    endpoint: str
    status: int
    error_code: str
    upstream_seconds: float
    deployment_route: Any
    prompt_tokens: int
    completion_tokens: int
    cost: float
    refusal: tuple[str, str] | None
    degraded: str

    @property
    def principal(self) -> _Principal | None: ...

    @property
    def route(self) -> _Route | None: ...


def status_class(status: int) -> str:
    """2xx, 3xx, 4xx or 5xx; a request that never got an answer (0) counts as 5xx."""
    if 200 <= status < 600:
        return f"{status // 100}xx"
    return "5xx"


class _Histogram:
    """Observations of one histogram child not yet written to it: their sum and a count
    per bucket (prometheus_client's own layout: one value per bucket, +Inf last)."""

    __slots__ = ("bounds", "child", "counts", "total")

    def __init__(self, child: Any, bounds: tuple[float, ...]) -> None:
        # The client's storage is what a batch is written into (no bulk observe exists);
        # checked here, when a series is first made, not on a request.
        if len(child._buckets) != len(bounds) + 1:
            raise RuntimeError("prometheus_client's histogram layout changed")
        self.child, self.bounds = child, bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def take(self) -> tuple[list[int], float]:
        counts, total = self.counts, self.total
        self.counts, self.total = [0] * len(counts), 0.0
        return counts, total

    def write(self, counts: list[int], total: float) -> None:
        if not any(counts):
            return
        self.child._sum.inc(total)
        for value, count in zip(self.child._buckets, counts, strict=True):
            if count:
                value.inc(count)


class _GatewaySeries:
    """One kind of gateway request (its label values): the label children it records
    into, made once, and what it recorded since the last ``flush``.

    A request adds to plain numbers here under one uncontended lock; ``flush`` (once
    a second on the event loop, and before every scrape) writes the sums into
    prometheus_client, whose every write takes a lock and, in multiprocess mode, an
    mmap write: ten of them per request were most of the cost of recording."""

    __slots__ = (
        "completion",
        "completion_tokens",
        "cost",
        "cost_units",
        "denial",
        "duration",
        "error",
        "overhead",
        "pending",
        "prompt",
        "prompt_tokens",
        "requests",
        "requests_seen",
        "upstream",
    )

    def __init__(
        self, org: str, endpoint: str, model: str, account: str, status: int, code: str
    ) -> None:
        klass = status_class(status)
        self.requests = GATEWAY_REQUESTS.labels(org, endpoint, model, account, klass)
        self.duration = _Histogram(
            GATEWAY_REQUEST_SECONDS.labels(org, endpoint, model, account, klass), LATENCY_BUCKETS
        )
        self.overhead = _Histogram(GATEWAY_OVERHEAD_SECONDS.labels(org, endpoint), OVERHEAD_BUCKETS)
        self.upstream = _Histogram(
            GATEWAY_UPSTREAM_SECONDS.labels(org, model, account), LATENCY_BUCKETS
        )
        self.prompt = GATEWAY_PROMPT_TOKENS.labels(org, model, account)
        self.completion = GATEWAY_COMPLETION_TOKENS.labels(org, model, account)
        self.cost = GATEWAY_COST.labels(org, model, account)
        self.error = GATEWAY_ERRORS.labels(org, endpoint, model, account, code) if code else None
        self.denial = (
            GATEWAY_DENIALS.labels(org, endpoint, str(status), code)
            if status in (401, 403, 404)
            else None
        )
        self.pending = False
        self.requests_seen = self.prompt_tokens = self.completion_tokens = 0
        self.cost_units = 0.0

    def take(self) -> tuple:
        taken = (
            self.requests_seen,
            self.prompt_tokens,
            self.completion_tokens,
            self.cost_units,
            self.duration.take(),
            self.overhead.take(),
            self.upstream.take(),
        )
        self.requests_seen = self.prompt_tokens = self.completion_tokens = 0
        self.cost_units = 0.0
        self.pending = False
        return taken

    def write(self, taken: tuple) -> None:
        requests, prompt, completion, cost, duration, overhead, upstream = taken
        if requests:
            self.requests.inc(requests)
            if self.error is not None:
                self.error.inc(requests)
            if self.denial is not None:
                self.denial.inc(requests)
        if prompt or completion:
            self.prompt.inc(prompt)
            self.completion.inc(completion)
            self.cost.inc(cost)
        self.duration.write(*duration)
        self.overhead.write(*overhead)
        self.upstream.write(*upstream)


FLUSH_SECONDS = 1.0
_GATEWAY: dict[tuple[str, str, str, str, int, str], _GatewaySeries] = {}
_PENDING: list[_GatewaySeries] = []
# Requests run on the event loop; a scrape flushes from a Django thread of the same
# process: the one lock both take (never held while prometheus_client writes).
_LOCK = threading.Lock()
_flush_due = 0.0  # when the scheduled flush runs (perf_counter); 0: none scheduled


def gateway_call(call: GatewayCall) -> None:
    """Record one finished gateway request (called once, at its very end).

    The model label is the FQN of the route or deployment the call was authorized to
    use, never the ``model`` the client sent: a made-up name cannot add a series."""
    if not settings.INFERIA_METRICS_ENABLED:
        return
    now = time.perf_counter()
    elapsed = now - call.started
    principal = call.principal
    org = principal.org_slug if principal is not None else NONE
    route = call.route
    deployment = call.deployment_route
    if deployment is not None:
        model = deployment.fqn
    else:
        model = route.fqn if route is not None else NONE
    account = route.account_name if route is not None else NONE
    key = (org, call.endpoint, model, account, call.status, call.error_code)
    series = _GATEWAY.get(key)
    if series is None:
        series = _GATEWAY.setdefault(key, _GatewaySeries(*key))
    upstream = call.upstream_seconds
    prompt, completion = call.prompt_tokens, call.completion_tokens
    with _LOCK:
        series.requests_seen += 1
        series.duration.observe(elapsed)
        series.overhead.observe(elapsed - upstream if elapsed > upstream else 0.0)
        if upstream:
            series.upstream.observe(upstream)
        if prompt or completion:
            series.prompt_tokens += prompt
            series.completion_tokens += completion
            series.cost_units += call.cost
        if not series.pending:
            series.pending = True
            _PENDING.append(series)
    if call.refusal is not None:
        GATEWAY_LIMIT_REFUSALS.labels(org, *call.refusal).inc()
    if call.degraded:
        GATEWAY_DEGRADED.labels(org, call.degraded).inc()
    if now > _flush_due:
        _schedule_flush(now)


def _schedule_flush(now: float) -> None:
    """Flush in a second on the running loop (the requests of that second share it);
    without a loop, at once. A loop that stopped before its flush ran is replaced
    after a second more."""
    global _flush_due
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        flush()
        return
    _flush_due = now + FLUSH_SECONDS * 2
    loop.call_later(FLUSH_SECONDS, _scheduled_flush)


def _scheduled_flush() -> None:
    global _flush_due
    _flush_due = 0.0
    flush()


def flush() -> None:
    """Write what this process's gateway requests recorded into prometheus_client
    (before a scrape, once a second, at shutdown)."""
    with _LOCK:
        if not _PENDING:
            return
        taken = [(series, series.take()) for series in _PENDING]
        _PENDING.clear()
    for series, numbers in taken:
        series.write(numbers)


# --- usage ingestion and Celery -----------------------------------------------------------


def usage_recorded(written: int, dead: int) -> None:
    """Usage entries written and set aside as dead letters by one ``record_usage``."""
    if not settings.INFERIA_METRICS_ENABLED:
        return
    if written:
        USAGE_RECORDS.inc(written)
    if dead:
        USAGE_DEAD_LETTERS.inc(dead)


_task_started: dict[str, float] = {}


def _task_name(sender: Any) -> str:
    # A registered task's name (bounded by the code); anything else is "other".
    name = getattr(sender, "name", None)
    return name if isinstance(name, str) and name else "other"


def task_prerun(task_id: str | None = None, **kwargs: Any) -> None:
    if task_id and settings.INFERIA_METRICS_ENABLED:
        _task_started[task_id] = time.perf_counter()


def task_postrun(task_id: str | None = None, sender: Any = None, **kwargs: Any) -> None:
    started = _task_started.pop(task_id, None) if task_id else None
    if started is not None and settings.INFERIA_METRICS_ENABLED:
        CELERY_TASK_SECONDS.labels(_task_name(sender)).observe(time.perf_counter() - started)


def task_outcome(outcome: str):
    """A handler of Celery's task_success / task_failure / task_retry signal."""

    def handler(sender: Any = None, **kwargs: Any) -> None:
        if settings.INFERIA_METRICS_ENABLED:
            CELERY_TASKS.labels(_task_name(sender), outcome).inc()

    return handler


def connect_celery_signals() -> None:
    """Count every task's outcome and time in the process that runs it (``inferia.celery``)."""
    from celery import signals

    signals.task_prerun.connect(task_prerun, weak=False, dispatch_uid="inferia.metrics.prerun")
    signals.task_postrun.connect(task_postrun, weak=False, dispatch_uid="inferia.metrics.postrun")
    for outcome, signal in (
        ("success", signals.task_success),
        ("failure", signals.task_failure),
        ("retry", signals.task_retry),
    ):
        signal.connect(
            task_outcome(outcome), weak=False, dispatch_uid=f"inferia.metrics.task_{outcome}"
        )


# --- the scrape ---------------------------------------------------------------------------


def _usage_stream_state() -> tuple[int, int, float] | None:
    """(entries waiting, entries pending, age in seconds of the oldest) of the usage
    stream; zeros when embedded (entries are written directly); None when Redis is down."""
    from inferia import clock, store

    if not store.redis_enabled():
        return 0, 0, 0.0
    from inferia.store import redis_store

    try:
        length, pending, oldest_ms = redis_store.usage_stream_state()
    except store.StoreUnavailable:
        logger.warning("metrics: the usage stream cannot be read")
        return None
    lag = max(0.0, clock.time() - oldest_ms / 1000) if oldest_ms is not None else 0.0
    return length, pending, lag


def _dead_letters_stored() -> int | None:
    from django.db import DatabaseError

    from audit.models import UsageDeadLetter

    try:
        return UsageDeadLetter.objects.count()
    except DatabaseError:
        logger.warning("metrics: the dead letters cannot be counted")
        return None


class _ScrapeTimeCollector:
    """The gauges read when scraped (global: no org label)."""

    def collect(self) -> Iterator[Metric]:
        state = _usage_stream_state()
        if state is not None:
            values = dict(
                zip(
                    (
                        "inferia_usage_stream_length",
                        "inferia_usage_stream_pending",
                        "inferia_usage_stream_lag_seconds",
                    ),
                    state,
                    strict=True,
                )
            )
            for name, value in values.items():
                yield GaugeMetricFamily(name, SCRAPE_TIME_SERIES[name], value=value)
        dead = _dead_letters_stored()
        if dead is not None:
            name = "inferia_usage_dead_letters_stored"
            yield GaugeMetricFamily(name, SCRAPE_TIME_SERIES[name], value=dead)


class _Collectors:
    def __init__(self, *collectors: Any) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


class _OrgView:
    """Only the samples whose ``org`` label is this org: a series without an org label
    (process, stream, Celery) or of another org never reaches an org's scrape."""

    def __init__(self, source: Any, org_slug: str) -> None:
        self.source, self.org_slug = source, org_slug

    def collect(self) -> Iterable[Metric]:
        for family in self.source.collect():
            samples = [s for s in family.samples if s.labels.get("org") == self.org_slug]
            if not samples:
                continue
            kept = Metric(family.name, family.documentation, family.type, family.unit)
            kept.samples = samples
            yield kept


def _source() -> Any:
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return _Collectors(registry, _ScrapeTimeCollector())
    return _Collectors(REGISTRY, _ScrapeTimeCollector())


def exposition(org_slug: str | None = None) -> bytes:
    """The text exposition of every series (``org_slug`` None: the operator's scrape),
    or of one org's series only."""
    flush()
    source = _source()
    if org_slug is not None:
        return generate_latest(_OrgView(source, org_slug))
    return generate_latest(source)
