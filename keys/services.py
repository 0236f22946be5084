"""Every state change of keys/: API keys, service accounts and provider accounts.

Bounded delegation is enforced here: a key's scopes are a subset of what the
actor holds and of what the key's owner holds; a service account's role is
one the actor could grant. Secrets are encrypted before they touch a row.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpRequest

from audit import services as audit
from inferia import clock, crypto
from inferia.errors import Conflict, NotFound, PermissionDenied, ValidationError
from keys import apikeys, names, secret_refs, ssrf
from keys.models import ApiKey, ProviderAccount, ProviderType, ServiceAccount
from keys.principals import service_account_permissions
from orgs import access as acl
from orgs.access import Access
from orgs.models import Role
from orgs.services import two_factor

MAX_GRACE_SECONDS = 7 * 24 * 3600


def _record(
    access: Access, action: str, target: Any, request: HttpRequest | None, **data: Any
) -> None:
    audit.record(
        action=action,
        outcome="success",
        org=access.org,
        actor=access.user,
        actor_label=access.actor_label,
        target=target,
        request=request,
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
    limit = access.org.settings.get("max_key_lifetime_days")
    if expires_in_days is None and limit:
        expires_in_days = int(limit)
    if expires_in_days is not None and limit and expires_in_days > int(limit):
        raise ValidationError(
            "Key lifetime exceeds the organization's policy",
            details={"expires_in_days": [f"At most {limit} days in this organization."]},
        )
    return clock.now() + timedelta(days=expires_in_days) if expires_in_days else None


def api_key_create(
    *,
    access: Access,
    name: str,
    permissions: list[str],
    expires_in_days: int | None = None,
    service_account: ServiceAccount | None = None,
    models: list[str] | None = None,
    request: HttpRequest | None = None,
) -> tuple[ApiKey, str]:
    """Mint a key; returns it with its plaintext (the only time it is shown).

    The scopes must be held by the actor (a key minting a key: by that key) and
    by the key's owner. Raises PERMISSION_DENIED otherwise.
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
    expires_at = _expiry(access, expires_in_days)
    patterns = validate_model_patterns(models or [])
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
                )
                _record(
                    access,
                    "api_key:create",
                    key,
                    request,
                    prefix=key.prefix,
                    permissions=key.permissions,
                    models=patterns,
                    owner=owner_user.username if owner_user else f"sa:{service_account.slug}",
                    expires_at=expires_at.isoformat() if expires_at else None,
                )
            return key, new.plaintext
        except IntegrityError:
            continue  # public id collision: draw again
    raise Conflict("Could not allocate a key id; try again")


def _is_own_key(access: Access, key: ApiKey) -> bool:
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


def _require_key_admin(access: Access, key: ApiKey) -> None:
    if _is_own_key(access, key):
        return
    access.require("api_key:revoke")
    if key.service_account_id is not None:
        access.require("service_account:manage")


def api_key_revoke(*, access: Access, key: ApiKey, request: HttpRequest | None = None) -> ApiKey:
    """Revoke now. Everyone may revoke their own keys; others need ``api_key:revoke``."""
    _require_key_admin(access, key)
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        if key.is_revoked:
            raise Conflict(f"API key {key.prefix} is already revoked")
        key.revoked_at = clock.now()
        key.save(update_fields=["revoked_at"])
        _record(access, "api_key:revoke", key, request, prefix=key.prefix)
    return key


def api_key_revoke_by_operator(
    *, operator, key_ids: list, request: HttpRequest | None = None
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
                request=request,
                data={"prefix": key.prefix, "via": "admin"},
            )
            count += 1
    return count


def api_key_rotate(
    *, access: Access, key: ApiKey, grace_seconds: int = 0, request: HttpRequest | None = None
) -> tuple[ApiKey, str]:
    """Issue a new secret with the same scopes; the old key dies now or after a grace period."""
    _require_key_admin(access, key)
    if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
        raise ValidationError(
            "Grace period out of range",
            details={"grace_seconds": [f"Between 0 and {MAX_GRACE_SECONDS}."]},
        )
    if not _is_own_key(access, key):
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
        )
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
        _record(
            access,
            "api_key:rotate",
            key,
            request,
            prefix=key.prefix,
            new_prefix=replacement.prefix,
            grace_seconds=grace_seconds,
        )
    return replacement, new.plaintext


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
    request: HttpRequest | None = None,
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
            _record(access, "service_account:manage", account, request, op="create", role=role.slug)
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
    request: HttpRequest | None = None,
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
            _record(access, "service_account:manage", account, request, op="update", changed=fields)
    return account


def service_account_delete(
    *, access: Access, account: ServiceAccount, request: HttpRequest | None = None
) -> None:
    """Delete the account and its keys."""
    access.require("service_account:manage")
    with transaction.atomic():
        _record(access, "service_account:manage", account, request, op="delete", slug=account.slug)
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
    else:
        account.secret_ref = secret_refs.validate_ref(secret_ref)
        account.encrypted_secret = ""
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
    request: HttpRequest | None = None,
) -> ProviderAccount:
    access.require("provider_account:manage")
    if provider_type not in ProviderType.values:
        raise ValidationError(
            "Unknown provider type", details={"provider_type": [f"One of {ProviderType.values}."]}
        )
    url = ssrf.check_base_url(
        base_url, allowed_private_hosts=access.org.settings.get("allowed_private_hosts", [])
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
            _record(
                access,
                "provider_account:manage",
                account,
                request,
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


def provider_account_update(
    *,
    access: Access,
    account: ProviderAccount,
    changes: dict[str, Any],
    request: HttpRequest | None = None,
) -> ProviderAccount:
    access.require_on("provider_account:manage", account)
    fields = []
    if "base_url" in changes:
        account.base_url = ssrf.check_base_url(
            changes["base_url"],
            allowed_private_hosts=access.org.settings.get("allowed_private_hosts", []),
        )
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
            _record(
                access, "provider_account:manage", account, request, op="update", changed=fields
            )
    return account


def provider_account_set_secret(
    *,
    access: Access,
    account: ProviderAccount,
    secret: str | None = None,
    secret_ref: str | None = None,
    otp_code: str | None = None,
    request: HttpRequest | None = None,
) -> ProviderAccount:
    """Set or replace the upstream secret. Replacing one asks a user with 2FA for a fresh code."""
    access.require_on("provider_account:manage", account)
    if not (secret or secret_ref):
        raise ValidationError(
            "Give a secret or a secret reference", details={"secret": ["Required."]}
        )
    if account.has_secret:
        access.require_human()
        if access.user.has_confirmed_totp:
            two_factor.verify_fresh(
                user=access.user, otp_code=otp_code, password=None, request=request
            )
    _set_secret(account, secret, secret_ref)
    with transaction.atomic():
        account.save(
            update_fields=["encrypted_secret", "secret_ref", "secret_updated_at", "updated_at"]
        )
        _record(
            access,
            "provider_account:manage",
            account,
            request,
            op="set_secret",
            kind="reference" if account.secret_ref else "encrypted",
        )
    return account


def provider_account_delete(
    *, access: Access, account: ProviderAccount, request: HttpRequest | None = None
) -> None:
    access.require_on("provider_account:manage", account)
    with transaction.atomic():
        _record(access, "provider_account:manage", account, request, op="delete", name=account.name)
        account.delete()


def provider_secret_plaintext(account: ProviderAccount) -> str:
    """The upstream secret in clear, for the upstream call only. Raises on bad ciphertext."""
    if account.secret_ref:
        return secret_refs.resolve_ref(account.secret_ref)
    if not account.encrypted_secret:
        raise ValidationError(f"Provider account {account.name} has no secret")
    return crypto.decrypt(account.encrypted_secret, context=account.secret_context()).decode()
