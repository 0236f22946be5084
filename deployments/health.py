"""The health of deployment targets: circuit breakers and active checks.

Every target (org, deployment id, target name) has a passive circuit breaker in
the shared store (``inferia.store.breaker``: Redis when ``REDIS_URL`` is set,
else the database), so every process sees the same state: it opens after
``breaker.failures`` failed calls within ``breaker.window_seconds``, stays open
``breaker.cooldown_seconds``, then lets one probe call through (claimed in the
store, so one process probes); the probe's success closes it, its failure opens
it again.

The gateway reads the breakers of a deployment at most once a second per process
(:data:`CACHE_SECONDS`), so a warm call adds no round trip; a failure, a probe and
a transition write through at once and refresh this process's copy. When the store
cannot answer, routing goes on as if every breaker were closed (the breaker saves
callers time; it never decides access) and the failure is logged.

The active check (:func:`check_org`, run by ``deployments.tasks`` every 15 s) calls
each target whose ``health_check.interval_seconds`` has passed: ``GET {base_url}/models``
for OpenAI and OpenAI-compatible upstreams, else a one-token chat, through the
gateway's upstream client and SSRF rules, within the target's timeout. A failed check
opens the breaker, a passed one closes it; the deployment's ``status`` follows
(``degraded`` while a target is open, ``ready`` when none is).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from deployments.models import Deployment, DeploymentStatus
from deployments.routing import DeploymentRoute, TargetRoute
from inferia import clock, store
from inferia.store.breaker import CLOSED, HALF_OPEN, BreakerState, Event

logger = logging.getLogger(__name__)

CACHE_SECONDS = 1.0  # how long a process trusts its copy of a deployment's breakers
PROBE_BODY = {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}

_STATES: dict[tuple[str, str], tuple[float, dict[str, BreakerState]]] = {}


def breaker_key(org_id: Any, deployment_id: Any, target_name: str) -> str:
    """Hash-tagged by the org, like the org's counters (one slot on a Redis Cluster)."""
    return store.keys.tagged(str(org_id), "breaker", str(deployment_id), target_name)


def _keys(deployment: DeploymentRoute) -> list[str]:
    return [
        breaker_key(deployment.org_id, deployment.deployment_id, t.name) for t in deployment.targets
    ]


def clear() -> None:
    """Forget this process's copies (tests)."""
    _STATES.clear()


# --- the hot path (async) -----------------------------------------------------------------


async def states(deployment: DeploymentRoute) -> dict[str, BreakerState]:
    """The deployment's breakers by target name: this process's copy when younger than
    :data:`CACHE_SECONDS`, else read in one round trip (nothing known: empty)."""
    cache_key = (str(deployment.org_id), deployment.deployment_id)
    hit = _STATES.get(cache_key)
    moment = time.monotonic()
    if hit is not None and moment - hit[0] < CACHE_SECONDS:
        return hit[1]
    if not deployment.targets:
        return {}
    try:
        read = await store.breaker_read(_keys(deployment))
    except store.StoreUnavailable as exc:
        logger.warning("breakers of deployment %s unreadable: %s", deployment.name, exc)
        read = []
    found = {t.name: s for t, s in zip(deployment.targets, read, strict=False) if s.known}
    _STATES[cache_key] = (moment, found)
    return found


def _remember(deployment: DeploymentRoute, target: TargetRoute, state: BreakerState) -> None:
    cache_key = (str(deployment.org_id), deployment.deployment_id)
    hit = _STATES.get(cache_key)
    if hit is None:
        return
    hit[1][target.name] = state  # the copy keeps its age: the other targets may be stale


async def _update(
    deployment: DeploymentRoute, target: TargetRoute, event: Event
) -> tuple[bool, BreakerState | None]:
    key = breaker_key(deployment.org_id, deployment.deployment_id, target.name)
    try:
        granted, state = await store.breaker_update(key, event)
    except store.StoreUnavailable as exc:
        logger.warning("breaker of %s/%s not updated: %s", deployment.name, target.name, exc)
        return False, None
    _remember(deployment, target, state)
    return granted, state


def _event(kind: str, deployment: DeploymentRoute, target: TargetRoute, now: float) -> Event:
    breaker = deployment.config.breaker
    return Event(
        kind=kind,
        now=now,
        threshold=breaker.failures,
        window_seconds=breaker.window_seconds,
        cooldown_seconds=breaker.cooldown_seconds,
        # The probe is held as long as one attempt may last.
        probe_seconds=target.target.timeout_seconds + 1,
    )


async def failed(deployment: DeploymentRoute, target: TargetRoute, now: float) -> None:
    """A call to ``target`` failed (written through: the breaker may open now)."""
    await _update(deployment, target, _event("fail", deployment, target, now))


async def succeeded(
    deployment: DeploymentRoute, target: TargetRoute, known: BreakerState | None, now: float
) -> None:
    """A call to ``target`` succeeded: written only when the breaker was not closed
    (a probe's success closes it); a closed breaker costs nothing."""
    if known is None or known.state == CLOSED:
        return
    await _update(deployment, target, _event("ok", deployment, target, now))


async def claim_probe(deployment: DeploymentRoute, target: TargetRoute, now: float) -> bool:
    """Claim the half-open probe of ``target`` (one caller on every process wins)."""
    granted, _state = await _update(deployment, target, _event("probe", deployment, target, now))
    return granted


def forget(deployment: Deployment) -> None:
    """Drop the breakers of a deployment's targets (when it is deleted; a new deployment
    of the same name has another id, so it never inherits them). Best effort: Redis
    expires them anyway (``inferia.store.breaker.TTL_SECONDS``)."""
    from deployments import config

    try:
        names = [t.name for t in config.parse(deployment.config).targets]
    except Exception:  # noqa: BLE001 - a document that no longer parses names no target
        return
    try:
        store.breaker_delete_sync(
            [breaker_key(deployment.org_id, deployment.pk, name) for name in names]
        )
    except store.StoreUnavailable as exc:
        logger.warning("breakers of deployment %s not dropped: %s", deployment.name, exc)


# --- the API's view -----------------------------------------------------------------------


def _at(seconds: float) -> str | None:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat() if seconds else None


def snapshot(deployment: Deployment) -> list[dict[str, Any]]:
    """Per target of the deployment's current configuration: ``{name, fqn, state,
    failures, open_until, last_check: {ok, at, latency_ms, error}}``; ``state`` is
    ``closed``, ``open``, ``half_open`` or ``unknown`` (never called nor checked,
    or the store cannot tell). Reads the store once (sync)."""
    from deployments import config

    try:
        targets = config.parse(deployment.config).targets
    except Exception:  # noqa: BLE001 - a stored document that no longer parses has no targets
        targets = ()
    if not targets:
        return []
    keys = [breaker_key(deployment.org_id, deployment.pk, t.name) for t in targets]
    try:
        read = store.breaker_read_sync(keys)
    except store.StoreUnavailable:
        read = [BreakerState() for _ in targets]
    now = clock.time()
    out = []
    for target, state in zip(targets, read, strict=True):
        out.append(
            {
                "name": target.name,
                "fqn": target.fqn,
                "state": state.effective(now) if state.known else "unknown",
                "failures": state.failures,
                "open_until": _at(state.open_until) if state.effective(now) != CLOSED else None,
                "last_check": None
                if not state.checked_at
                else {
                    "ok": state.check_ok,
                    "at": _at(state.checked_at),
                    "latency_ms": state.check_latency_ms,
                    "error": state.check_error,
                },
            }
        )
    return out


# --- active checks (the beat task) --------------------------------------------------------


async def _probe(target: TargetRoute, secret_plaintext: str | None, allowed: tuple[str, ...]):
    """One cheap call to the target: (ok, latency in ms, error text without secrets)."""
    from gateway import http
    from gateway.upstream import ADAPTERS
    from gateway.upstream.base import join

    route = target.route
    started = time.perf_counter()
    try:
        async with asyncio.timeout(target.target.timeout_seconds):
            if route.provider_type in ("openai", "openai_compatible"):
                headers = {"Accept": "application/json"}
                if secret_plaintext:
                    headers["Authorization"] = f"Bearer {secret_plaintext}"
                response = await http.get(
                    join(route.base_url, "models"), headers, allowed_private_hosts=allowed
                )
            else:
                call = ADAPTERS[route.provider_type].prepare(
                    route, "chat", dict(PROBE_BODY), secret_plaintext
                )
                response = await http.post(
                    call.url, call.headers, orjson.dumps(call.body), allowed_private_hosts=allowed
                )
            await response.read()
    except http.UpstreamRefused:
        return False, None, "refused: the address is not allowed"
    except (TimeoutError, http.UpstreamTimeout):
        return False, None, "timed out"
    except http.UpstreamUnreachable:
        return False, None, "could not connect"
    latency_ms = round((time.perf_counter() - started) * 1000, 1)
    if 200 <= response.status < 300:
        return True, latency_ms, ""
    return False, latency_ms, f"HTTP {response.status}"


def _due(deployment: DeploymentRoute, states_now: list[BreakerState], now: float) -> list[int]:
    interval = deployment.config.health_check.interval_seconds
    return [
        index
        for index, state in enumerate(states_now)
        if not state.checked_at or now - state.checked_at >= interval
    ]


def check_deployment(deployment: Deployment, *, force: bool = False) -> dict[str, bool]:
    """Check the targets of one deployment that are due (all with ``force``); record
    each result on its breaker; set the deployment's ``status`` from the breakers.
    Runs inside the deployment's org scope. Returns {target name: ok} of the checks."""
    from gateway import http, principals
    from keys.models import ProviderAccount

    accounts = {account.name: account for account in ProviderAccount.objects.all()}
    route = principals.deployment_route(deployment, accounts)
    if not route.targets or not route.config.health_check.enabled:
        return {}
    keys = _keys(route)
    now = clock.time()
    current = store.breaker_read_sync(keys)
    due = range(len(route.targets)) if force else _due(route, current, now)
    if not due:
        _status_from(deployment, current, route, now)
        return {}
    org_hosts = tuple(deployment.org.policy.allowed_private_hosts)
    secrets: dict[int, str | None] = {}
    unreadable: set[int] = set()
    for index in due:
        target = route.targets[index]
        if target.route.account_id is None:
            secrets[index] = None
            continue
        try:
            secrets[index] = principals.secret_for(target.route)
        except Exception:  # noqa: BLE001 - a secret that cannot be read fails the check
            secrets[index], unreadable = None, unreadable | {index}

    async def one(index: int) -> tuple[bool, float | None, str]:
        if index in unreadable:
            return False, None, "the provider secret cannot be read"
        target = route.targets[index]
        return await _probe(target, secrets[index], (*org_hosts, *target.private_hosts))

    async def run() -> list[tuple[bool, float | None, str]]:
        try:
            return list(await asyncio.gather(*(one(index) for index in due)))
        finally:
            await http.close_current()

    results = asyncio.run(run())
    outcome = {}
    after = list(current)
    for index, (ok, latency_ms, error) in zip(due, results, strict=True):
        target = route.targets[index]
        event = Event(
            kind="check",
            now=clock.time(),
            cooldown_seconds=route.config.breaker.cooldown_seconds,
            check_ok=ok,
            check_latency_ms=latency_ms or 0.0,
            check_error=error,
        )
        _granted, after[index] = store.breaker_update_sync(keys[index], event)
        outcome[target.name] = ok
        if not ok:
            logger.warning(
                "deployment %s target %s failed its health check: %s",
                deployment.name,
                target.name,
                error,
            )
    _status_from(deployment, after, route, clock.time())
    return outcome


def _status_from(
    deployment: Deployment, states_now: list[BreakerState], route: DeploymentRoute, now: float
) -> None:
    """``degraded`` while some target's breaker is open, ``ready`` when none is (only
    for a deployment that is ready or degraded: creating and stopped are the
    lifecycle's)."""
    if deployment.status not in (DeploymentStatus.READY, DeploymentStatus.DEGRADED):
        return
    down = [
        t.name
        for t, s in zip(route.targets, states_now, strict=True)
        if s.known and s.effective(now) not in (CLOSED, HALF_OPEN)
    ]
    status = DeploymentStatus.DEGRADED if down else DeploymentStatus.READY
    reason = f"Down: {', '.join(down)}"[:500] if down else ""
    if deployment.status == status and deployment.status_reason == reason:
        return
    deployment.status, deployment.status_reason = status, reason
    deployment.save(update_fields=["status", "status_reason", "updated_at"])


def check_org(org_id: Any) -> dict[str, dict[str, bool]]:
    """Check the due targets of every deployment of the org (inside its scope)."""
    results = {}
    for deployment in Deployment.objects.select_related("org"):
        if deployment.status == DeploymentStatus.STOPPED:
            continue
        try:
            results[deployment.name] = check_deployment(deployment)
        except store.StoreUnavailable as exc:
            logger.warning("health of deployment %s not checked: %s", deployment.name, exc)
    return results
