"""How a call to ``deployment/<name>`` picks its targets (docs/deployments.md, Routing).

The gateway's principal snapshot holds a :class:`DeploymentRoute` per deployment
the caller may use: the parsed routing configuration and, per target, the
regular gateway ``Route`` to call (``gateway.principals.route_of``, with the
target's own prices) and whether this caller may use the target's model
(``requires_access``). :func:`plan` turns it into the order in which a call
tries the targets, leaving out those it must skip:

- the caller may not use a ``requires_access`` target (its callers fall through
  to the next target: "GPT-4 for managers");
- a ``max_quota_percent`` target once the org's monthly token or cost quota is
  used to that percent (the gateway's limit check reports the use);
- a target whose circuit breaker is open, or half-open while another call holds
  its probe (``deployments.health``).

Strategies: ``priority`` (lowest first, configuration order on ties),
``weighted`` (random by weight, without replacement; zero-weight targets only
as fallbacks, in configuration order), ``least_busy`` (fewest calls in flight
*in this process*) and ``lowest_latency`` (the lowest moving average of recent
latencies *in this process*; targets without one first). In-flight counts and
latencies are per process on purpose: they are read on every call, and a
process balancing its own load is what keeps the shared store out of the hot
path.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deployments.config import RoutingConfig, Target
from inferia.store.breaker import HALF_OPEN, OPEN, BreakerState

if TYPE_CHECKING:
    from gateway.principals import Route

# Why a target was left out of a call's plan.
SKIP_ACCESS, SKIP_QUOTA, SKIP_OPEN, SKIP_PROBING = "access", "quota", "open", "probing"
# Weight of the newest latency in a target's moving average.
LATENCY_ALPHA = 0.3


@dataclass(frozen=True)
class TargetRoute:
    """One usable target of a deployment, as the gateway calls it."""

    target: Target
    route: Route
    caller_allowed: bool = True
    # A launched endpoint's host:port: allowed past the SSRF guard for this target's
    # calls only (the org's allowed_private_hosts still apply to every other).
    private_hosts: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def fqn(self) -> str:
        """The model FQN the target calls (``""`` for a launched endpoint)."""
        return self.target.fqn


@dataclass(frozen=True)
class DeploymentRoute:
    """A deployment as the principal snapshot holds it: everything a call needs."""

    deployment_id: str
    org_id: Any
    name: str
    version: int
    status: str
    config: RoutingConfig
    targets: tuple[TargetRoute, ...] = ()

    @property
    def fqn(self) -> str:
        return f"deployment/{self.name}"

    def max_cost_micros(self, prompt_tokens: int, completion_tokens: int) -> int:
        """The most a call may cost (whichever target answers): what the quota reserves."""
        return max(
            (t.route.cost_micros(prompt_tokens, completion_tokens) for t in self.targets),
            default=0,
        )


@dataclass
class Plan:
    """The targets a call tries, in order, and those it left out (with the reason)."""

    candidates: list[TargetRoute] = field(default_factory=list)
    skipped: list[tuple[TargetRoute, str]] = field(default_factory=list)

    @property
    def only_access_denied(self) -> bool:
        """Nothing to try and every target was left out because of the caller's access."""
        return (
            not self.candidates
            and bool(self.skipped)
            and all(reason == SKIP_ACCESS for _t, reason in self.skipped)
        )


# --- per-process statistics ------------------------------------------------------------------

_INFLIGHT: dict[tuple[str, str], int] = {}
_LATENCY_MS: dict[tuple[str, str], float] = {}


def began(deployment: DeploymentRoute, target: TargetRoute) -> None:
    """A call to ``target`` started (``least_busy``)."""
    key = (deployment.deployment_id, target.name)
    _INFLIGHT[key] = _INFLIGHT.get(key, 0) + 1


def ended(deployment: DeploymentRoute, target: TargetRoute) -> None:
    key = (deployment.deployment_id, target.name)
    left = _INFLIGHT.get(key, 0) - 1
    if left > 0:
        _INFLIGHT[key] = left
    else:
        _INFLIGHT.pop(key, None)


def in_flight(deployment: DeploymentRoute, target: TargetRoute) -> int:
    return _INFLIGHT.get((deployment.deployment_id, target.name), 0)


def observe_latency(deployment: DeploymentRoute, target: TargetRoute, latency_ms: float) -> None:
    """Fold one latency (until the answer's headers) into the target's moving average."""
    key = (deployment.deployment_id, target.name)
    previous = _LATENCY_MS.get(key)
    _LATENCY_MS[key] = (
        latency_ms
        if previous is None
        else LATENCY_ALPHA * latency_ms + (1 - LATENCY_ALPHA) * previous
    )


def latency_ms(deployment: DeploymentRoute, target: TargetRoute) -> float | None:
    return _LATENCY_MS.get((deployment.deployment_id, target.name))


def reset_statistics() -> None:
    """Forget in-flight counts and latencies (tests)."""
    _INFLIGHT.clear()
    _LATENCY_MS.clear()


# --- the plan -----------------------------------------------------------------------------


def _weighted(targets: list[TargetRoute], rng: random.Random | Any) -> list[TargetRoute]:
    """Random order by weight, without replacement; zero-weight targets last, in order."""
    weighted = [t for t in targets if t.target.weight > 0]
    fallbacks = [t for t in targets if t.target.weight <= 0]
    ordered = []
    while weighted:
        total = sum(t.target.weight for t in weighted)
        point = rng.random() * total
        for index, candidate in enumerate(weighted):
            point -= candidate.target.weight
            if point < 0 or index == len(weighted) - 1:
                ordered.append(weighted.pop(index))
                break
    return ordered + fallbacks


def order(
    deployment: DeploymentRoute, targets: list[TargetRoute], rng: random.Random | Any = random
) -> list[TargetRoute]:
    """``targets`` (in configuration order) in the order the strategy tries them."""
    strategy = deployment.config.strategy
    position = {t.name: index for index, t in enumerate(targets)}
    if strategy == "weighted":
        return _weighted(targets, rng)
    if strategy == "least_busy":
        return sorted(targets, key=lambda t: (in_flight(deployment, t), position[t.name]))
    if strategy == "lowest_latency":

        def by_latency(t: TargetRoute) -> tuple[int, float, int]:
            seen = latency_ms(deployment, t)
            return (0, 0.0, position[t.name]) if seen is None else (1, seen, position[t.name])

        return sorted(targets, key=by_latency)
    return sorted(targets, key=lambda t: (t.target.priority, position[t.name]))


def plan(
    deployment: DeploymentRoute,
    *,
    states: dict[str, BreakerState],
    now: float,
    quota_percent: float | None,
    rng: random.Random | Any = random,
) -> Plan:
    """The targets one call tries, in order, and the ones it skips (and why).

    ``states``: the breakers by target name (missing: closed); ``quota_percent``: the
    org's monthly quota use (the higher of tokens and cost), None when the org has no
    quota or the limits could not be read (then no target is skipped for it)."""
    result = Plan()
    usable = []
    for target in deployment.targets:
        spec = target.target
        breaker = states.get(target.name)
        effective = breaker.effective(now) if breaker is not None else "closed"
        if spec.requires_access and not target.caller_allowed:
            result.skipped.append((target, SKIP_ACCESS))
        elif (
            spec.max_quota_percent is not None
            and quota_percent is not None
            and quota_percent >= spec.max_quota_percent
        ):
            result.skipped.append((target, SKIP_QUOTA))
        elif effective == OPEN:
            result.skipped.append((target, SKIP_OPEN))
        elif effective == HALF_OPEN and breaker is not None and not breaker.probe_free(now):
            result.skipped.append((target, SKIP_PROBING))
        else:
            usable.append(target)
    result.candidates = order(deployment, usable, rng)
    return result


def retry_after_seconds(
    deployment: DeploymentRoute, states: dict[str, BreakerState], now: float
) -> int:
    """Seconds until the first breaker of the deployment lets a call through (at least 1)."""
    waits = []
    for target in deployment.targets:
        breaker = states.get(target.name)
        if breaker is None:
            continue
        effective = breaker.effective(now)
        if effective == OPEN:
            waits.append(breaker.open_until - now)
        elif effective == HALF_OPEN and breaker.probe_until > now:
            waits.append(breaker.probe_until - now)
    return max(1, int(min(waits, default=1) + 0.999))
