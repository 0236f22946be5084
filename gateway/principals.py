"""Who is calling the gateway, cached in-process and checked against the org epoch.

A ``Principal`` snapshot is the one resolver's ``Access`` (``keys.resolver``)
projected for the gateway: its effective permissions, the org's policy and the
credential's expiry, plus the models it may use with their routes and its limits,
and the deployments it may use with the routes to their targets (``DeploymentRoute``).
Snapshots are keyed by a SHA-256 of the credential (never the credential), live
at most ``INFERIA_GATEWAY_CACHE_SECONDS``, and are dropped as soon as the org's
epoch moves (checked on every request), so a revoke takes effect at once.
The epoch is read *before* the rows, so a change racing a rebuild is caught.
While the database cannot rebuild one, a snapshot up to
``INFERIA_GATEWAY_CACHE_STALE_SECONDS`` past its lifetime stands in (``stale``):
the epoch check in Redis still refuses it as soon as the org's access changes,
and the credential's expiry is still checked on every use.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError

from audit.services import record as audit_record
from deployments import config as routing_config
from deployments.models import Deployment
from deployments.routing import DeploymentRoute, TargetRoute
from inferia import clock, crypto, store
from inferia.errors import AuthenticationFailed, ServiceUnavailable, ValidationError
from inferia.request_meta import RequestMeta
from keys import access_rules, resolver, secret_refs, ssrf
from keys.models import ApiKey, ProviderAccount
from knowledge import policy as knowledge_policy
from orgs.access import API_KEY, Access
from orgs.models import Organization
from orgs.policy import OrgPolicy
from orgs.scoping import org_scope


@dataclass(frozen=True)
class Route:
    fqn: str
    org_id: Any
    account_id: Any
    account_name: str
    provider_type: str
    base_url: str
    api_version: str
    deployments: dict
    upstream_model: str
    input_price_per_million: float
    output_price_per_million: float
    secret_version: str  # changes when the secret does

    def cost_micros(self, prompt_tokens: int, completion_tokens: int) -> int:
        return int(
            prompt_tokens * self.input_price_per_million
            + completion_tokens * self.output_price_per_million
        )


@dataclass(frozen=True)
class Principal:
    """An epoch-tagged projection of the resolver's ``Access`` (plus routes and limits)."""

    org_id: Any
    org_slug: str
    policy: OrgPolicy
    epoch: int
    permissions: frozenset[str]
    label: str
    credential_kind: str = API_KEY
    # When the credential stops being valid: for a key minted by a key, the first key
    # of its chain to expire; ``key_expires_at`` is the key's own expiry.
    expires_at: datetime | None = None
    key_expires_at: datetime | None = None
    user_id: Any = None
    service_account_id: Any = None
    key_id: Any = None
    key_prefix: str = ""
    key_limits: dict = field(default_factory=dict)
    routes: dict[str, Route] = field(default_factory=dict)
    # The deployments it may use (``deployment/<name>``), routes to their targets included.
    deployments: dict[str, DeploymentRoute] = field(default_factory=dict)
    catalog: frozenset[str] = frozenset()
    # Knowledge bases it may search (``knowledge.policy.searchable``): chat retrieval.
    knowledge_bases: frozenset[str] = frozenset()
    built_at: float = 0.0

    @property
    def principal_subject(self) -> str:
        return (
            f"sa-{self.service_account_id}" if self.service_account_id else f"user-{self.user_id}"
        )


_CACHE: OrderedDict[str, Principal] = OrderedDict()
_LOCK = threading.Lock()
_SECRETS: dict[tuple, tuple[str, float]] = {}


def cache_key(raw: str, org_hint: str) -> str:
    return hashlib.sha256(f"{raw}\x00{org_hint}".encode()).hexdigest()


def cached(raw: str, org_hint: str, *, stale: bool = False) -> Principal | None:
    """The live snapshot; with ``stale``, one past its lifetime by at most
    ``INFERIA_GATEWAY_CACHE_STALE_SECONDS`` (for when the database is down)."""
    key = cache_key(raw, org_hint)
    with _LOCK:
        entry = _CACHE.get(key)
        if entry is None:
            return None
        age = time.monotonic() - entry.built_at
        lifetime = settings.INFERIA_GATEWAY_CACHE_SECONDS
        if age > lifetime + settings.INFERIA_GATEWAY_CACHE_STALE_SECONDS:
            _CACHE.pop(key, None)
            return None
        if age > lifetime and not stale:
            return None  # kept (LRU-bounded) to stand in while the database is down
        _CACHE.move_to_end(key)
        return entry


def remember(raw: str, org_hint: str, principal: Principal) -> None:
    key = cache_key(raw, org_hint)
    with _LOCK:
        _CACHE[key] = principal
        _CACHE.move_to_end(key)
        while len(_CACHE) > settings.INFERIA_GATEWAY_CACHE_SIZE:
            _CACHE.popitem(last=False)


def forget(raw: str, org_hint: str) -> None:
    with _LOCK:
        _CACHE.pop(cache_key(raw, org_hint), None)


def clear() -> None:
    with _LOCK:
        _CACHE.clear()
        _SECRETS.clear()
    secret_refs.clear_cache()


def _routes(
    org: Organization, allowed: list[str]
) -> tuple[dict[str, Route], dict[str, DeploymentRoute], frozenset[str]]:
    routes: dict[str, Route] = {}
    catalog: set[str] = set()
    wanted = set(allowed)
    accounts = list(ProviderAccount.objects.all())
    for account in accounts:
        for entry in account.enabled_models:
            fqn = f"{account.name}/{entry['name']}"
            catalog.add(fqn)
            if fqn not in wanted:
                continue
            routes[fqn] = route_of(account, entry)
    deployments: dict[str, DeploymentRoute] = {}
    by_name = {account.name: account for account in accounts}
    for deployment in Deployment.objects.all():
        catalog.add(deployment.fqn)
        if deployment.fqn in wanted:
            deployments[deployment.fqn] = deployment_route(deployment, by_name, allowed=wanted)
    return routes, deployments, frozenset(catalog)


def deployment_route(
    deployment: Deployment,
    accounts: dict[str, ProviderAccount],
    *,
    allowed: set[str] | None = None,
) -> DeploymentRoute:
    """A deployment's routes: per target, the regular route to its account's model
    (``route_of``, with the target's own prices when it sets them) or to the endpoint
    its launcher started. Targets whose account, model or endpoint is gone are left
    out (no target left: every call answers 503). ``allowed``: the caller's FQNs,
    for ``requires_access`` targets (None: every target counts as allowed)."""
    try:
        config = routing_config.parse(deployment.config)
    except ValidationError:
        config = routing_config.RoutingConfig(strategy="priority", targets=())
    targets: list[TargetRoute] = []
    for target in config.targets:
        if target.launched:
            route = _launched_route(deployment, target)
            private_hosts = (_host_port(route.base_url),) if route is not None else ()
        else:
            route = _account_route(deployment, target, accounts.get(target.account))
            private_hosts = ()
        if route is None:
            continue
        targets.append(
            TargetRoute(
                target=target,
                route=route,
                caller_allowed=allowed is None or target.launched or target.fqn in allowed,
                private_hosts=private_hosts,
            )
        )
    return DeploymentRoute(
        deployment_id=str(deployment.pk),
        org_id=deployment.org_id,
        name=deployment.name,
        version=deployment.version,
        status=deployment.status,
        config=config,
        targets=tuple(targets),
    )


def _priced(route: Route, target: routing_config.Target, fqn: str) -> Route:
    """The route named as the deployment (answers say ``deployment/<name>``), at the
    target's prices where it sets them."""
    return dataclasses.replace(
        route,
        fqn=fqn,
        input_price_per_million=route.input_price_per_million
        if target.input_price_per_million is None
        else float(target.input_price_per_million),
        output_price_per_million=route.output_price_per_million
        if target.output_price_per_million is None
        else float(target.output_price_per_million),
    )


def _account_route(
    deployment: Deployment, target: routing_config.Target, account: ProviderAccount | None
) -> Route | None:
    if account is None:
        return None
    entry = next((e for e in account.enabled_models if e.get("name") == target.model), None)
    if entry is None:
        return None
    return _priced(route_of(account, entry), target, deployment.fqn)


def _launched_route(deployment: Deployment, target: routing_config.Target) -> Route | None:
    """The OpenAI-compatible endpoint the deployment's launcher started (no secret)."""
    base_url = (deployment.launcher_state or {}).get("base_url")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        return None
    route = Route(
        fqn=deployment.fqn,
        org_id=deployment.org_id,
        account_id=None,
        account_name="",
        provider_type="openai_compatible",
        base_url=base_url.rstrip("/"),
        api_version="",
        deployments={},
        upstream_model=target.model,
        input_price_per_million=0.0,
        output_price_per_million=0.0,
        secret_version="",
    )
    return _priced(route, target, deployment.fqn)


def _host_port(url: str) -> str:
    host, port = ssrf.host_and_port(url)
    return f"{host}:{port}"


def route_of(account: ProviderAccount, entry: dict) -> Route:
    """The route to one enabled model of a provider account (``entry`` of its
    ``enabled_models``): where and how the gateway calls it, and what it costs."""
    return Route(
        fqn=f"{account.name}/{entry['name']}",
        org_id=account.org_id,
        account_id=account.pk,
        account_name=account.name,
        provider_type=account.provider_type,
        base_url=account.base_url,
        api_version=account.api_version,
        deployments=dict(account.deployments),
        upstream_model=entry["name"],
        input_price_per_million=float(entry.get("input_price_per_million") or 0),
        output_price_per_million=float(entry.get("output_price_per_million") or 0),
        secret_version=f"{account.secret_updated_at}:{account.secret_ref}",
    )


class DatabaseUnavailable(ServiceUnavailable):
    """The database could not resolve the credential (Redis answered)."""


class EpochUnavailable(ServiceUnavailable):
    """Redis cannot tell the org's epoch: the principal can only be built ``verify_only``."""


def _epoch(org_id, verify_only: bool) -> int:
    if verify_only:
        return -1
    try:
        return store.epoch(org_id)
    except store.StoreUnavailable as exc:
        raise EpochUnavailable("Cannot verify credentials right now") from exc


def _key_limits(key: ApiKey | None) -> dict:
    if key is None:
        return {}
    return {
        "requests_per_minute": key.requests_per_minute,
        "tokens_per_minute": key.tokens_per_minute,
        "monthly_token_quota": key.monthly_token_quota,
        "monthly_cost_quota": key.monthly_cost_quota,
    }


def project(access: Access, *, epoch: int) -> Principal:
    """The gateway's view of the resolver's ``Access``: the same decision, plus the
    routes the access rules give it and the key's limits (never a second builder)."""
    key = access.api_key
    with org_scope(access.org):
        allowed = access_rules.allowed_for_access(access)
        routes, deployments, catalog = _routes(access.org, allowed)
        knowledge_bases = frozenset(knowledge_policy.searchable(access))
    return Principal(
        org_id=access.org.pk,
        org_slug=access.org.slug,
        policy=access.policy,
        epoch=epoch,
        permissions=access.permissions,
        label=access.actor_label,
        credential_kind=access.credential_kind,
        expires_at=access.expires_at,
        user_id=access.user.pk if access.user else None,
        service_account_id=access.service_account.pk if access.service_account else None,
        key_id=key.pk if key is not None else None,
        key_prefix=key.prefix if key is not None else "",
        key_expires_at=key.expires_at if key is not None else None,
        key_limits=_key_limits(key),
        routes=routes,
        deployments=deployments,
        catalog=catalog,
        knowledge_bases=knowledge_bases,
        built_at=time.monotonic(),
    )


def build(raw: str, org_hint: str, *, verify_only: bool = False) -> Principal:
    """Resolve the credential (``keys.resolver``) and project it (sync). The org's
    epoch is read before the rows, so a change racing the build is caught. Fails
    closed: a database or Redis error (the org epoch lives there) is 503.
    ``verify_only``: without the epoch (Redis is down), for one request and never
    cached."""
    try:
        org_id = resolver.gateway_org_id(raw, org_hint)
        epoch = _epoch(org_id, verify_only)
        access = resolver.resolve_for_org_id(raw, org_id)
        return project(access, epoch=epoch)
    except EpochUnavailable:
        raise
    except DatabaseError as exc:
        raise DatabaseUnavailable("Cannot verify credentials right now") from exc
    except store.StoreUnavailable as exc:
        raise ServiceUnavailable("Cannot verify credentials right now") from exc


def expired(principal: Principal) -> bool:
    """The credential behind a cached principal has expired (checked on every use,
    cache hit or not: a key's expiry or an access token's ``exp``)."""
    return principal.expires_at is not None and principal.expires_at <= clock.now()


def expired_error(principal: Principal) -> AuthenticationFailed:
    """The resolver's words for an expiry seen on a cached principal."""
    if principal.key_prefix:
        own = principal.key_expires_at
        if own is None or own > clock.now():
            return AuthenticationFailed(
                f"API key {principal.key_prefix} is no longer valid: "
                "the key that created it is expired"
            )
        return AuthenticationFailed(f"API key {principal.key_prefix} is expired")
    return AuthenticationFailed("Access token is invalid or expired")


def secret_for(route: Route) -> str | None:
    """The decrypted upstream secret, from a short-lived in-process cache (sync).

    A secret reference's entry lives no longer than its value may be cached by
    ``keys.secret_refs`` (one lifetime, not two caches that disagree). Raises
    ``secret_refs.SecretRefError`` when a reference cannot be resolved now, and
    ValidationError when the operator no longer allows it."""
    cache_key = (route.account_id, route.secret_version)
    hit = _SECRETS.get(cache_key)
    if hit is not None and clock.time() < hit[1]:
        return hit[0]
    # Bound to the route's org (the hot path's cold branch has no org scope active).
    account = ProviderAccount.all_orgs.filter(pk=route.account_id, org_id=route.org_id).first()
    if account is None or not account.has_secret:
        return None
    lifetime = float(settings.INFERIA_GATEWAY_SECRET_CACHE_SECONDS)
    if account.secret_ref:
        secret_plaintext, ref_lifetime = secret_refs.resolve_ref_for(account.secret_ref)
        if ref_lifetime is not None:
            lifetime = min(lifetime, ref_lifetime)
    else:
        secret_plaintext = crypto.decrypt(
            account.encrypted_secret, context=account.secret_context()
        ).decode()
    now = clock.time()
    if len(_SECRETS) >= settings.INFERIA_GATEWAY_CACHE_SIZE:
        # Bounded: drop what expired, then the oldest entries.
        for stale in [k for k, (_value, until) in _SECRETS.items() if until <= now]:
            _SECRETS.pop(stale, None)
        while len(_SECRETS) >= settings.INFERIA_GATEWAY_CACHE_SIZE:
            _SECRETS.pop(next(iter(_SECRETS)))
    _SECRETS[cache_key] = (secret_plaintext, now + lifetime)
    return secret_plaintext


def secret_failure_record(
    route: Route, error: secret_refs.SecretRefError | ValidationError, meta: RequestMeta | None
) -> None:
    """Audit a provider secret that could not be read (backend and failure class,
    never the secret, the reference's path or the vendor's text)."""
    account = ProviderAccount.all_orgs.filter(pk=route.account_id, org_id=route.org_id).first()
    if account is None:
        return
    if isinstance(error, secret_refs.SecretRefError):
        data = {"backend": error.scheme, "failure": str(error.failure)}
    else:
        data = {
            "backend": secret_refs.scheme_of(account.secret_ref),
            "failure": "not_allowed",
        }
    audit_record(
        action="inference:run",
        outcome="failure",
        org=Organization.objects.get(pk=route.org_id),
        target=account,
        meta=meta,
        data={"op": "secret_ref_resolve", "model": route.fqn, **data},
    )


def secret_cached(route: Route) -> tuple[bool, str | None]:
    hit = _SECRETS.get((route.account_id, route.secret_version))
    if hit is not None and clock.time() < hit[1]:
        return True, hit[0]
    return False, None
