"""Every state change of keys/: API keys, service accounts and provider accounts.

Bounded delegation is enforced here: a key's scopes are a subset of what the
actor holds and of what the key's owner holds; a service account's role is
one the actor could grant. Secrets are encrypted before they touch a row.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.dispatch import receiver

from audit import services as audit
from deployments.models import FQN_ACCOUNT
from inferia import clock, crypto
from inferia.errors import Conflict, NotFound, PermissionDenied, ValidationError
from inferia.request_meta import RequestMeta
from keys import apikeys, names, secret_refs, ssrf
from keys.models import ApiKey, ProviderAccount, ProviderType, ServiceAccount
from keys.principals import MAX_KEY_CHAIN_DEPTH, key_ancestors, service_account_permissions
from orgs import access as acl
from orgs.access import Access
from orgs.models import Membership, Role, User
from orgs.services import two_factor
from orgs.signals import access_changed, member_removed

MAX_GRACE_SECONDS = 7 * 24 * 3600


def access_record(
    access: Access, action: str, target: Any, meta: RequestMeta | None, **data: Any
) -> None:
    """Audit a successful change made by ``access`` (keys' and sso's services)."""
    audit.record(
        action=action,
        outcome="success",
        org=access.org,
        actor=access.user,
        actor_label=access.actor_label,
        target=target,
        meta=meta,
        data=data,
    )


def validate_model_patterns(patterns: list[str], *, field: str = "models") -> list[str]:
    bad = [p for p in patterns if not names.is_model_pattern(p)]
    if bad:
        raise ValidationError(
            "Invalid model name",
            details={
                field: [
                    f"{p!r} is not 'account/model', 'account/*' or 'account/prefix/*'" for p in bad
                ]
            },
        )
    return sorted(set(patterns))


# --- API keys ---------------------------------------------------------------------------


def _expiry(access: Access, expires_in_days: int | None):
    limit = access.policy.max_key_lifetime_days
    if expires_in_days is None and limit:
        expires_in_days = int(limit)
    if expires_in_days is not None and limit and expires_in_days > int(limit):
        raise ValidationError(
            "Key lifetime exceeds the organization's policy",
            details={"expires_in_days": [f"At most {limit} days in this organization."]},
        )
    return clock.now() + timedelta(days=expires_in_days) if expires_in_days else None


# Per-key limits; null means "the org's key defaults".
KEY_LIMIT_FIELDS = (
    "requests_per_minute",
    "tokens_per_minute",
    "monthly_token_quota",
    "monthly_cost_quota",
)


def _tighter(child: Any, parent: Any) -> Any:
    """The stricter of two limits, where None means unlimited."""
    if parent is None:
        return child
    if child is None:
        return parent
    return min(child, parent)


def api_key_create(
    *,
    access: Access,
    name: str,
    permissions: list[str],
    expires_in_days: int | None = None,
    service_account: ServiceAccount | None = None,
    models: list[str] | None = None,
    meta: RequestMeta | None = None,
) -> tuple[ApiKey, str]:
    """Mint a key; returns it with its plaintext (the only time it is shown).

    The scopes must be held by the actor (a key minting a key: by that key) and
    by the key's owner. Raises PERMISSION_DENIED otherwise. A key minted by a
    key is bounded by its parent: its models stay within the parent's (none
    given: the parent's), it expires no later and its limits are never looser
    (an unlimited child of a limited parent gets the parent's limits). It records
    its parent, which bounds it again at every use (``keys.principals.access_for_key``).
    """
    access.require("api_key:create")
    scopes = acl.normalize_permissions(permissions)
    access.require_all(scopes, what="give a key")
    owner_user = None
    if service_account is not None:
        access.require("service_account:manage")
    elif access.service_account is not None:
        service_account = access.service_account
    else:
        owner_user = access.user
    if service_account is not None:
        missing = sorted(scopes - service_account_permissions(service_account))
        if missing:
            raise PermissionDenied(
                f"The service account does not hold: {', '.join(missing)}",
                details={"missing_permissions": missing},
            )
    if owner_user is not None:
        owner_label = owner_user.username
    elif service_account is not None:
        owner_label = f"sa:{service_account.slug}"
    else:
        raise PermissionDenied("A key needs an owner: a member or a service account")
    expires_at = _expiry(access, expires_in_days)
    patterns = validate_model_patterns(models or [])
    limits: dict[str, Any] = dict.fromkeys(KEY_LIMIT_FIELDS)
    parent = access.api_key
    if parent is not None:
        if parent.model_patterns and not patterns:
            patterns = list(parent.model_patterns)
        if not names.patterns_cover(parent.model_patterns, patterns):
            outside = [
                p
                for p in patterns
                if not any(names.pattern_covers(o, p) for o in parent.model_patterns)
            ]
            raise PermissionDenied(
                f"Cannot give a key models the key {parent.prefix} does not cover",
                details={"models": [f"{p} is outside the parent key's models" for p in outside]},
            )
        if parent.expires_at is not None and (expires_at is None or expires_at > parent.expires_at):
            expires_at = parent.expires_at
        limits = {f: _tighter(limits[f], getattr(parent, f)) for f in KEY_LIMIT_FIELDS}
        if len(key_ancestors(parent)) + 1 >= MAX_KEY_CHAIN_DEPTH:
            raise PermissionDenied(
                f"API key {parent.prefix} cannot mint keys: keys minted by keys nest at most "
                f"{MAX_KEY_CHAIN_DEPTH} deep"
            )
    for _attempt in range(3):
        new = apikeys.generate()
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(
                    org=access.org,
                    public_id=new.public_id,
                    secret_digest=new.digest,
                    last_four=new.last_four,
                    name=name,
                    permissions=sorted(scopes),
                    model_patterns=patterns,
                    owner_user=owner_user,
                    service_account=service_account,
                    created_by=access.user,
                    expires_at=expires_at,
                    parent=parent,
                    **limits,
                )
                access_record(
                    access,
                    "api_key:create",
                    key,
                    meta,
                    prefix=key.prefix,
                    permissions=key.permissions,
                    models=patterns,
                    owner=owner_label,
                    expires_at=expires_at.isoformat() if expires_at else None,
                    parent=parent.prefix if parent is not None else None,
                )
            return key, new.plaintext
        except IntegrityError:
            continue  # public id collision: draw again
    raise Conflict("Could not allocate a key id; try again")


def _is_own_key(access: Access, key: ApiKey) -> bool:
    """Whether ``key`` belongs to the principal acting (the user, or the service account)."""
    if key.service_account_id is not None:
        return (
            access.service_account is not None
            and access.service_account.pk == key.service_account_id
        )
    return (
        access.user is not None
        and key.owner_user_id == access.user.pk
        and access.service_account is None
    )


def _key_covers(parent: ApiKey, key: ApiKey) -> bool:
    """Whether ``parent``'s scopes and models include all of ``key``'s."""
    return set(key.permissions) <= set(parent.permissions) and names.patterns_cover(
        parent.model_patterns, key.model_patterns
    )


def _require_key_admin(access: Access, key: ApiKey) -> None:
    """Who may revoke or rotate ``key``.

    A key acting on itself always may. A key acting on another key needs
    ``api_key:revoke`` and must cover that key's scopes and models ("same owner"
    alone is not enough: a narrow key never manages a broader one). A user
    acting as themselves manages their own keys, others' with ``api_key:revoke``.
    A service account's keys also need ``service_account:manage`` from outside it.
    """
    acting_key = access.api_key
    if acting_key is not None and acting_key.pk == key.pk:
        return
    if acting_key is not None:
        if not _key_covers(acting_key, key):
            raise PermissionDenied(
                f"API key {acting_key.prefix} does not cover the scopes and models of {key.prefix}"
            )
        access.require("api_key:revoke")
    elif not _is_own_key(access, key):
        access.require("api_key:revoke")
    if key.service_account_id is not None and not _is_own_key(access, key):
        access.require("service_account:manage")


def api_key_revoke(*, access: Access, key: ApiKey, meta: RequestMeta | None = None) -> ApiKey:
    """Revoke now. Everyone may revoke their own keys; others need ``api_key:revoke``."""
    _require_key_admin(access, key)
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        if key.is_revoked:
            raise Conflict(f"API key {key.prefix} is already revoked")
        key.revoked_at = clock.now()
        key.save(update_fields=["revoked_at"])
        access_record(access, "api_key:revoke", key, meta, prefix=key.prefix)
    return key


def api_key_revoke_by_operator(
    *, operator: User, key_ids: list, meta: RequestMeta | None = None
) -> int:
    """Platform staff revoke keys of any org (the admin's emergency action); each
    revocation is audited in the key's org. Already revoked keys are skipped.
    Returns how many were revoked."""
    count = 0
    with transaction.atomic():
        for key in ApiKey.all_orgs.select_for_update().filter(
            pk__in=key_ids, revoked_at__isnull=True
        ):
            key.revoked_at = clock.now()
            key.save(update_fields=["revoked_at"])
            audit.record(
                action="api_key:revoke",
                outcome="success",
                org=key.org,
                actor=operator,
                actor_label=f"admin:{operator.username}",
                target=key,
                meta=meta,
                data={"prefix": key.prefix, "via": "admin"},
            )
            count += 1
    return count


def api_key_rotate(
    *, access: Access, key: ApiKey, grace_seconds: int = 0, meta: RequestMeta | None = None
) -> tuple[ApiKey, str]:
    """Issue a new secret with the same scopes, models, expiry and limits; the old key
    dies now or after a grace period.

    The new secret goes to whoever rotates, so only the key's owner may: the user
    themself (signed in, or through a key of theirs that covers it), or for a
    service account's key that account or a human who manages service accounts and
    holds the key's scopes. Anyone else gets PERMISSION_DENIED and may revoke instead.
    """
    _require_key_admin(access, key)
    if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
        raise ValidationError(
            "Grace period out of range",
            details={"grace_seconds": [f"Between 0 and {MAX_GRACE_SECONDS}."]},
        )
    if not _is_own_key(access, key):
        if key.service_account_id is None:
            raise PermissionDenied(
                f"Only the owner of API key {key.prefix} can rotate it "
                "(the new secret goes to whoever rotates); revoke it instead"
            )
        access.require_human()
        access.require_all(key.permissions, what="re-issue a key with")
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        if key.is_revoked or key.is_expired:
            raise Conflict(f"API key {key.prefix} is {key.status}")
        new = apikeys.generate()
        replacement = ApiKey.objects.create(
            org=key.org,
            public_id=new.public_id,
            secret_digest=new.digest,
            last_four=new.last_four,
            name=key.name,
            permissions=key.permissions,
            model_patterns=key.model_patterns,
            owner_user=key.owner_user,
            service_account=key.service_account,
            created_by=access.user,
            expires_at=key.expires_at,
            # The same place in the delegation tree: a rotated child stays bounded by
            # its parent, and the keys it minted move to the replacement (same scopes,
            # models, expiry and limits), so a rotation is not a revocation for them.
            parent=key.parent,
            **{f: getattr(key, f) for f in KEY_LIMIT_FIELDS},
        )
        children = ApiKey.objects.filter(parent=key).update(parent=replacement)
        now = clock.now()
        key.replaced_by = replacement
        fields = ["replaced_by"]
        if grace_seconds:
            grace_end = now + timedelta(seconds=grace_seconds)
            key.expires_at = min(key.expires_at, grace_end) if key.expires_at else grace_end
            fields.append("expires_at")
        else:
            key.revoked_at = now
            fields.append("revoked_at")
        key.save(update_fields=fields)
        access_record(
            access,
            "api_key:rotate",
            key,
            meta,
            prefix=key.prefix,
            new_prefix=replacement.prefix,
            grace_seconds=grace_seconds,
            children_moved=children,
        )
    return replacement, new.plaintext


def api_keys_revoke_for_member(
    *, access: Access, membership: Membership, meta: RequestMeta | None = None
) -> int:
    """Revoke every personal key of a member who is removed or leaves (audited, one
    record a key); returns how many. Runs in the removal's transaction, so the
    keys stay dead if the person is invited again: validity never comes back
    from a new membership."""
    now = clock.now()
    keys = list(
        ApiKey.objects.select_for_update().filter(
            owner_user_id=membership.user_id, revoked_at__isnull=True
        )
    )
    for key in keys:
        key.revoked_at = now
        key.save(update_fields=["revoked_at"])
        access_record(
            access, "api_key:revoke", key, meta, prefix=key.prefix, reason="member_removed"
        )
    return len(keys)


@receiver(member_removed, dispatch_uid="keys-member-removed-revoke-keys")
def _member_removed(
    sender: Any,
    membership: Membership,
    access: Access,
    meta: RequestMeta | None = None,
    **kwargs: Any,
) -> None:
    api_keys_revoke_for_member(access=access, membership=membership, meta=meta)


# --- service accounts ------------------------------------------------------------------


def _grantable_role(access: Access, role: Role) -> Role:
    if role.org_id not in (None, access.org.pk):
        raise NotFound("Role not found")
    if role.is_builtin and role.slug == acl.OWNER:
        raise PermissionDenied("A service account cannot be an Owner")
    access.require_all(role.permissions, what="grant a role with")
    return role


def service_account_create(
    *,
    access: Access,
    slug: str,
    name: str,
    role: Role,
    description: str = "",
    meta: RequestMeta | None = None,
) -> ServiceAccount:
    access.require("service_account:manage")
    access.require_human()
    _grantable_role(access, role)
    try:
        with transaction.atomic():
            account = ServiceAccount.objects.create(
                org=access.org,
                slug=slug,
                name=name,
                description=description,
                role=role,
                granted_by_membership=access.membership,
                created_by=access.user,
            )
            access_record(
                access, "service_account:manage", account, meta, op="create", role=role.slug
            )
    except IntegrityError as exc:
        raise Conflict(
            "A service account with this slug exists", details={"slug": ["Already taken."]}
        ) from exc
    return account


def service_account_update(
    *,
    access: Access,
    account: ServiceAccount,
    changes: dict[str, Any],
    meta: RequestMeta | None = None,
) -> ServiceAccount:
    access.require("service_account:manage")
    fields = []
    if "role" in changes:
        access.require_human()
        account.role = _grantable_role(access, changes["role"])
        account.granted_by_membership = access.membership
        fields += ["role", "granted_by_membership"]
    for name in ("name", "description"):
        if name in changes:
            setattr(account, name, changes[name])
            fields.append(name)
    if "disabled" in changes:
        account.disabled_at = clock.now() if changes["disabled"] else None
        fields.append("disabled_at")
    if fields:
        with transaction.atomic():
            account.save(update_fields=fields)
            access_record(
                access, "service_account:manage", account, meta, op="update", changed=fields
            )
    return account


def service_account_delete(
    *, access: Access, account: ServiceAccount, meta: RequestMeta | None = None
) -> None:
    """Delete the account and its keys."""
    access.require("service_account:manage")
    with transaction.atomic():
        access_record(
            access, "service_account:manage", account, meta, op="delete", slug=account.slug
        )
        account.delete()


# --- provider accounts --------------------------------------------------------------------


def _validate_models(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    cleaned = []
    for entry in entries:
        name = entry["name"]
        if not names.is_model_name(name):
            raise ValidationError(
                "Invalid model name", details={"models": [f"{name!r} is not a model name"]}
            )
        if name in seen:
            raise ValidationError(
                "Duplicate model", details={"models": [f"{name} is listed twice"]}
            )
        seen.add(name)
        for price in ("input_price_per_million", "output_price_per_million"):
            value = entry.get(price)
            if value is None:
                continue
            # Edges validate too (serializer, form); this is the rule they share.
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValidationError(
                    "Invalid price",
                    details={"models": [f"{name}: {price} must be a non-negative number"]},
                )
        cleaned.append(entry)
    return cleaned


def _set_secret(
    account: ProviderAccount, secret_plaintext: str | None, secret_ref: str | None
) -> None:
    if secret_plaintext and secret_ref:
        raise ValidationError(
            "Give a secret or a secret reference, not both", details={"secret": ["Choose one."]}
        )
    if secret_plaintext:
        account.encrypted_secret = crypto.encrypt(
            secret_plaintext.encode(), context=account.secret_context()
        )
        account.secret_ref = ""
    elif secret_ref:
        account.secret_ref = secret_refs.validate_ref(secret_ref)
        account.encrypted_secret = ""
    else:
        raise ValidationError(
            "Give a secret or a secret reference", details={"secret": ["Required."]}
        )
    account.secret_updated_at = clock.now()


def provider_account_create(
    *,
    access: Access,
    name: str,
    provider_type: str,
    base_url: str,
    api_version: str = "",
    deployments: dict[str, str] | None = None,
    models: list[dict[str, Any]] | None = None,
    tags: dict[str, str] | None = None,
    secret: str | None = None,
    secret_ref: str | None = None,
    meta: RequestMeta | None = None,
) -> ProviderAccount:
    access.require("provider_account:manage")
    if provider_type not in ProviderType.values:
        raise ValidationError(
            "Unknown provider type", details={"provider_type": [f"One of {ProviderType.values}."]}
        )
    if name == FQN_ACCOUNT:
        raise ValidationError(
            "Reserved name",
            details={"name": [f"'{FQN_ACCOUNT}' names deployments (deployment/<name>)."]},
        )
    url = ssrf.check_base_url(
        base_url, allowed_private_hosts=list(access.policy.allowed_private_hosts)
    )
    account = ProviderAccount(
        org=access.org,
        name=name,
        provider_type=provider_type,
        base_url=url,
        api_version=api_version,
        deployments=deployments or {},
        enabled_models=_validate_models(models or []),
        tags=tags or {},
    )
    if secret or secret_ref:
        _set_secret(account, secret, secret_ref)
    try:
        with transaction.atomic():
            account.save()
            access_record(
                access,
                "provider_account:manage",
                account,
                meta,
                op="create",
                name=name,
                base_url=url,
                has_secret=account.has_secret,
            )
    except IntegrityError as exc:
        raise Conflict(
            "A provider account with this name exists", details={"name": ["Already taken."]}
        ) from exc
    return account


def fresh_confirmation_require(
    access: Access, otp_code: str | None, meta: RequestMeta | None
) -> None:
    """Changing where an existing secret goes, or what it is: a signed-in user (never
    an API key), with a fresh code when they use 2FA. Raises PERMISSION_DENIED,
    OTP_REQUIRED or AUTHENTICATION_FAILED."""
    user, _membership = access.require_human()
    if user.has_confirmed_totp:
        two_factor.verify_fresh(user=user, otp_code=otp_code, password=None, meta=meta)


def _upstream_changed(account: ProviderAccount) -> None:
    """Every gateway process uses the new base URL or secret from the next call on:
    the org's epoch is bumped when the transaction commits."""
    access_changed.send(sender=ProviderAccount, org_ids=[account.org_id])


def provider_account_update(
    *,
    access: Access,
    account: ProviderAccount,
    changes: dict[str, Any],
    otp_code: str | None = None,
    meta: RequestMeta | None = None,
) -> ProviderAccount:
    """Change an account's settings. Pointing an account that has a secret at another
    base URL is as sensitive as replacing the secret (it decides where the secret
    is sent): a signed-in user, with a fresh code when they use 2FA."""
    access.require_on("provider_account:manage", account)
    fields = []
    if "base_url" in changes:
        url = ssrf.check_base_url(
            changes["base_url"],
            allowed_private_hosts=list(access.policy.allowed_private_hosts),
        )
        if url != account.base_url:
            if account.has_secret:
                fresh_confirmation_require(access, otp_code, meta)
            account.base_url = url
            fields.append("base_url")
    if "models" in changes:
        account.enabled_models = _validate_models(changes["models"])
        fields.append("enabled_models")
    for name in ("api_version", "deployments", "tags"):
        if name in changes:
            setattr(account, name, changes[name])
            fields.append(name)
    if fields:
        with transaction.atomic():
            account.save(update_fields=[*fields, "updated_at"])
            access_record(
                access, "provider_account:manage", account, meta, op="update", changed=fields
            )
            if "base_url" in fields:
                _upstream_changed(account)
    return account


def provider_account_set_secret(
    *,
    access: Access,
    account: ProviderAccount,
    secret: str | None = None,
    secret_ref: str | None = None,
    otp_code: str | None = None,
    meta: RequestMeta | None = None,
) -> ProviderAccount:
    """Set or replace the upstream secret. Replacing one asks a user with 2FA for a fresh code."""
    access.require_on("provider_account:manage", account)
    if not (secret or secret_ref):
        raise ValidationError(
            "Give a secret or a secret reference", details={"secret": ["Required."]}
        )
    if account.has_secret:
        fresh_confirmation_require(access, otp_code, meta)
    _set_secret(account, secret, secret_ref)
    with transaction.atomic():
        account.save(
            update_fields=["encrypted_secret", "secret_ref", "secret_updated_at", "updated_at"]
        )
        access_record(
            access,
            "provider_account:manage",
            account,
            meta,
            op="set_secret",
            kind="reference" if account.secret_ref else "encrypted",
        )
        _upstream_changed(account)
    return account


def provider_account_delete(
    *, access: Access, account: ProviderAccount, meta: RequestMeta | None = None
) -> None:
    access.require_on("provider_account:manage", account)
    with transaction.atomic():
        access_record(
            access, "provider_account:manage", account, meta, op="delete", name=account.name
        )
        account.delete()


def provider_secret_plaintext(account: ProviderAccount) -> str:
    """The upstream secret in clear, for the upstream call only. Raises on bad ciphertext."""
    if account.secret_ref:
        return secret_refs.resolve_ref(account.secret_ref)
    if not account.encrypted_secret:
        raise ValidationError(f"Provider account {account.name} has no secret")
    return crypto.decrypt(account.encrypted_secret, context=account.secret_context()).decode()
