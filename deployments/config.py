"""The routing document of a deployment: its grammar and validation, in one place.

```yaml
strategy: priority          # priority | weighted | least_busy | lowest_latency
targets:                    # 1 to 16, tried in this order by ``priority`` ties
  - name: primary           # slug, unique in the deployment; X-Inferia-Target names it
    account: openai-main    # a provider account of the org ...
    model: gpt-4o           # ... and one of its enabled models
    # launched: true        # instead of account: the endpoint the deployment's launcher started
    weight: 1               # weighted: share of the traffic (>= 0; the sum must be > 0)
    priority: 0             # priority: lower is tried first
    timeout_seconds: 30     # per attempt
    input_price_per_million: 2.5   # optional: this target's prices (else the account's)
    output_price_per_million: 10
    requires_access: false  # true: only callers granted account/model are served by it
    max_quota_percent: 80   # optional: skipped once the org used this much of a monthly quota
retries: 1                  # extra attempts on other targets after the first (0..5)
fallback_on: [429, 5xx, timeout, connect]
breaker: {failures: 5, window_seconds: 30, cooldown_seconds: 30}
health_check: {enabled: true, interval_seconds: 60}
```

``parse`` checks the document alone (shape, ranges, names, cycles: a target
never names a deployment); whether the accounts and models exist in the org and
whether the editor may use them is the services' check (``deployments.services``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inferia.errors import ValidationError
from keys import names

STRATEGIES = ("priority", "weighted", "least_busy", "lowest_latency")
FALLBACK_ON = ("429", "5xx", "timeout", "connect")
MAX_TARGETS = 16
FQN_ACCOUNT = "deployment"

_TARGET_FIELDS = {
    "name",
    "account",
    "model",
    "launched",
    "weight",
    "priority",
    "timeout_seconds",
    "input_price_per_million",
    "output_price_per_million",
    "requires_access",
    "max_quota_percent",
}
_FIELDS = {"strategy", "targets", "retries", "fallback_on", "breaker", "health_check"}


@dataclass(frozen=True)
class Breaker:
    failures: int = 5
    window_seconds: int = 30
    cooldown_seconds: int = 30


@dataclass(frozen=True)
class HealthCheck:
    enabled: bool = True
    interval_seconds: int = 60


@dataclass(frozen=True)
class Target:
    name: str
    account: str  # "" for a launched target
    model: str
    launched: bool = False
    weight: float = 1.0
    priority: int = 0
    timeout_seconds: float = 30.0
    input_price_per_million: float | None = None
    output_price_per_million: float | None = None
    requires_access: bool = False
    max_quota_percent: float | None = None

    @property
    def fqn(self) -> str:
        """The model FQN this target calls (``account/model``); launched: ``""``."""
        return "" if self.launched else f"{self.account}/{self.model}"


@dataclass(frozen=True)
class RoutingConfig:
    strategy: str
    targets: tuple[Target, ...]
    retries: int = 1
    fallback_on: frozenset[str] = frozenset(FALLBACK_ON)
    breaker: Breaker = field(default_factory=Breaker)
    health_check: HealthCheck = field(default_factory=HealthCheck)


def _number(
    raw: dict,
    key: str,
    where: str,
    errors: dict,
    *,
    low: float,
    high: float,
    default,
    integer=False,
):
    value = raw.get(key, default)
    if value is None and default is None:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and integer and not float(value).is_integer():
        ok = False
    if not ok or not (low <= value <= high):
        kind = "an integer" if integer else "a number"
        errors[f"{where}{key}"] = [f"Must be {kind} from {low:g} to {high:g}."]
        return default
    return int(value) if integer else float(value)


def _unknown(raw: dict, allowed: set[str], where: str, errors: dict) -> None:
    for key in sorted(map(str, set(raw) - allowed)):
        errors[f"{where}{key}"] = ["Unknown field."]


def _target(raw: Any, index: int, errors: dict) -> Target | None:
    where = f"targets[{index}]."
    if not isinstance(raw, dict):
        errors[f"targets[{index}]"] = ["Each target must be a mapping."]
        return None
    _unknown(raw, _TARGET_FIELDS, where, errors)
    name = raw.get("name", f"target-{index + 1}")
    if not isinstance(name, str) or names.ACCOUNT_RE.fullmatch(name) is None:
        errors[f"{where}name"] = ["1-50 lowercase letters, digits and hyphens."]
    launched = raw.get("launched", False)
    if not isinstance(launched, bool):
        errors[f"{where}launched"] = ["Must be true or false."]
        launched = False
    account = raw.get("account", "")
    model = raw.get("model", "")
    if launched:
        if account:
            errors[f"{where}account"] = ["A launched target has no account."]
    elif not isinstance(account, str) or names.ACCOUNT_RE.fullmatch(account) is None:
        errors[f"{where}account"] = ["Required: the name of a provider account of the org."]
    elif account == FQN_ACCOUNT:
        errors[f"{where}account"] = ["A deployment cannot target a deployment."]
    if not names.is_model_name(model):
        errors[f"{where}model"] = ["Required: a model name."]
    requires_access = raw.get("requires_access", False)
    if not isinstance(requires_access, bool):
        errors[f"{where}requires_access"] = ["Must be true or false."]
        requires_access = False
    if launched and requires_access:
        errors[f"{where}requires_access"] = ["A launched target has no model FQN to grant."]
    prices = {
        key: _number(raw, key, where, errors, low=0, high=1e6, default=None)
        for key in ("input_price_per_million", "output_price_per_million")
    }
    return Target(
        name=name if isinstance(name, str) else "",
        account=account if isinstance(account, str) and not launched else "",
        model=model if isinstance(model, str) else "",
        launched=launched,
        weight=_number(raw, "weight", where, errors, low=0, high=1e6, default=1.0),
        priority=_number(raw, "priority", where, errors, low=0, high=1000, default=0, integer=True),
        timeout_seconds=_number(
            raw, "timeout_seconds", where, errors, low=0.1, high=600, default=30.0
        ),
        requires_access=requires_access,
        max_quota_percent=_number(
            raw, "max_quota_percent", where, errors, low=0, high=100, default=None
        ),
        **prices,
    )


def parse(document: Any) -> RoutingConfig:
    """Validate a routing document; errors name the field (``targets[1].weight``)."""
    errors: dict[str, list[str]] = {}
    if not isinstance(document, dict):
        raise ValidationError(
            "The routing configuration must be a mapping", details={"config": ["Required mapping."]}
        )
    _unknown(document, _FIELDS, "", errors)
    strategy = document.get("strategy", "priority")
    if strategy not in STRATEGIES:
        errors["strategy"] = [f"One of: {', '.join(STRATEGIES)}."]
    raw_targets = document.get("targets")
    targets: list[Target] = []
    if not isinstance(raw_targets, list) or not raw_targets:
        errors["targets"] = ["A non-empty list of targets is required."]
    elif len(raw_targets) > MAX_TARGETS:
        errors["targets"] = [f"At most {MAX_TARGETS} targets."]
    else:
        for index, raw in enumerate(raw_targets):
            target = _target(raw, index, errors)
            if target is not None:
                targets.append(target)
        seen: set[str] = set()
        for index, target in enumerate(targets):
            if target.name in seen:
                errors[f"targets[{index}].name"] = [f"Another target is named {target.name!r}."]
            seen.add(target.name)
        if strategy == "weighted" and targets and sum(t.weight for t in targets) <= 0:
            errors["targets"] = ["The weights sum to zero: no target would ever be chosen."]
    retries = _number(document, "retries", "", errors, low=0, high=5, default=1, integer=True)
    fallback = document.get("fallback_on", list(FALLBACK_ON))
    if not isinstance(fallback, list) or not all(str(f) in FALLBACK_ON for f in fallback):
        errors["fallback_on"] = [f"A list of: {', '.join(FALLBACK_ON)}."]
        fallback = list(FALLBACK_ON)
    breaker_raw = document.get("breaker", {})
    health_raw = document.get("health_check", {})
    breaker, health = Breaker(), HealthCheck()
    if not isinstance(breaker_raw, dict):
        errors["breaker"] = ["Must be a mapping."]
    else:
        _unknown(
            breaker_raw, {"failures", "window_seconds", "cooldown_seconds"}, "breaker.", errors
        )
        breaker = Breaker(
            failures=_number(
                breaker_raw,
                "failures",
                "breaker.",
                errors,
                low=1,
                high=1000,
                default=Breaker.failures,
                integer=True,
            ),
            window_seconds=_number(
                breaker_raw,
                "window_seconds",
                "breaker.",
                errors,
                low=1,
                high=3600,
                default=Breaker.window_seconds,
                integer=True,
            ),
            cooldown_seconds=_number(
                breaker_raw,
                "cooldown_seconds",
                "breaker.",
                errors,
                low=1,
                high=3600,
                default=Breaker.cooldown_seconds,
                integer=True,
            ),
        )
    if not isinstance(health_raw, dict):
        errors["health_check"] = ["Must be a mapping."]
    else:
        _unknown(health_raw, {"enabled", "interval_seconds"}, "health_check.", errors)
        enabled = health_raw.get("enabled", True)
        if not isinstance(enabled, bool):
            errors["health_check.enabled"] = ["Must be true or false."]
            enabled = True
        health = HealthCheck(
            enabled=enabled,
            interval_seconds=_number(
                health_raw,
                "interval_seconds",
                "health_check.",
                errors,
                low=5,
                high=86400,
                default=HealthCheck.interval_seconds,
                integer=True,
            ),
        )
    if errors:
        raise ValidationError(
            "The routing configuration is invalid; nothing was changed", details=errors
        )
    return RoutingConfig(
        strategy=strategy,
        targets=tuple(targets),
        retries=retries,
        fallback_on=frozenset(str(f) for f in fallback),
        breaker=breaker,
        health_check=health,
    )


def to_document(config: RoutingConfig) -> dict[str, Any]:
    """The canonical document of a parsed configuration (``parse`` accepts it back)."""
    targets = []
    for t in config.targets:
        entry: dict[str, Any] = {"name": t.name}
        if t.launched:
            entry["launched"] = True
        else:
            entry["account"] = t.account
        entry |= {
            "model": t.model,
            "weight": t.weight,
            "priority": t.priority,
            "timeout_seconds": t.timeout_seconds,
            "requires_access": t.requires_access,
        }
        for key in ("input_price_per_million", "output_price_per_million", "max_quota_percent"):
            if getattr(t, key) is not None:
                entry[key] = getattr(t, key)
        targets.append(entry)
    return {
        "strategy": config.strategy,
        "targets": targets,
        "retries": config.retries,
        "fallback_on": [f for f in FALLBACK_ON if f in config.fallback_on],
        "breaker": {
            "failures": config.breaker.failures,
            "window_seconds": config.breaker.window_seconds,
            "cooldown_seconds": config.breaker.cooldown_seconds,
        },
        "health_check": {
            "enabled": config.health_check.enabled,
            "interval_seconds": config.health_check.interval_seconds,
        },
    }
