"""Identity providers: connect, change, enable/disable, delete; the client secret is envelope-encrypted."""

from __future__ import annotations

import re
from typing import Any

from cryptography import x509
from django.db import IntegrityError, transaction

from audit import services as audit
from inferia import clock, crypto
from inferia.errors import Conflict, ValidationError
from inferia.request_meta import RequestMeta
from keys.services import fresh_confirmation_require
from orgs import access as acl
from orgs.access import Access
from orgs.models import Role, User
from sso import fetch
from sso.models import (
    IdentityProvider,
    ProviderKind,
)
from sso.services.common import (
    COMMON_FIELDS,
    DEFAULT_OIDC_SCOPES,
    OIDC_FIELDS,
    SAML_FIELDS,
    config_record,
    manage_require,
)

# --- identity providers ------------------------------------------------------------------


def _default_role(access: Access, role: Role | None) -> Role:
    role = role or Role.objects.get(org__isnull=True, slug=acl.MEMBER)
    if role.org_id not in (None, access.org.pk):
        raise ValidationError("Unknown role", details={"default_role": ["No such role."]})
    if role.is_builtin and role.slug == acl.OWNER:
        raise ValidationError(
            "Owner cannot be a default role",
            details={"default_role": ["Members provisioned by SSO cannot become Owners."]},
        )
    access.require_all(role.permissions, what="give new members a role with")
    return role


def _clean_certificates(certificates: list[str]) -> list[str]:
    cleaned = []
    for index, pem in enumerate(certificates):
        text = pem.strip()
        if "BEGIN CERTIFICATE" not in text:
            body = re.sub(r"\s+", "", text)
            text = "-----BEGIN CERTIFICATE-----\n" + body + "\n-----END CERTIFICATE-----"
        try:
            x509.load_pem_x509_certificate(text.encode())
        except ValueError as exc:
            raise ValidationError(
                "Invalid certificate",
                details={"signing_certificates": [f"Certificate {index + 1} is not a PEM X.509."]},
            ) from exc
        cleaned.append(text)
    return cleaned


def _apply_saml_metadata(provider: IdentityProvider, access: Access) -> None:
    """Fill entity id, SSO URL and certificates from the metadata (XML given, or
    fetched from its URL under the SSRF rule)."""
    from sso import protocols
    from sso.errors import SsoError

    if provider.metadata_url and not provider.metadata_xml:
        hosts = access.policy.allowed_private_hosts
        try:
            provider.metadata_xml = fetch.guarded_get(
                provider.metadata_url, allowed_private_hosts=hosts
            ).decode("utf-8", errors="replace")
        except ValidationError as exc:
            raise ValidationError(
                exc.message, details={"metadata_url": _messages(exc.details)}
            ) from exc
        except SsoError as exc:
            raise ValidationError(exc.message, details={"metadata_url": [exc.message]}) from exc
    if provider.metadata_xml:
        try:
            entity_id, sso_url, certificates = protocols.parse_idp_metadata(provider.metadata_xml)
        except SsoError as exc:
            raise ValidationError(exc.message, details={"metadata_xml": [exc.message]}) from exc
        provider.idp_entity_id = entity_id
        provider.sso_url = sso_url
        provider.signing_certificates = list(certificates)


def _messages(details: Any) -> list[str]:
    if isinstance(details, dict):
        return [str(m) for problems in details.values() for m in problems]
    return [str(details)]


def _validate_provider(provider: IdentityProvider, access: Access) -> None:
    hosts = access.policy.allowed_private_hosts
    if provider.kind == ProviderKind.OIDC:
        problems: dict[str, list[str]] = {}
        if not provider.issuer:
            problems["issuer"] = ["Required for OIDC."]
        if not provider.client_id:
            problems["client_id"] = ["Required for OIDC."]
        if "openid" not in provider.scopes:
            problems["scopes"] = ["Must include openid."]
        if problems:
            raise ValidationError("Invalid identity provider", details=problems)
        # Discovery and JWKS are fetched from the issuer: the SSRF rule applies now
        # and again at every fetch (sso.oidc).
        provider.issuer = fetch.check_url(
            provider.issuer, field="issuer", allowed_private_hosts=hosts
        )
        return
    _apply_saml_metadata(provider, access)
    problems = {}
    if not provider.idp_entity_id:
        problems["idp_entity_id"] = ["Required for SAML (or give metadata)."]
    if not re.match(r"^https?://", provider.sso_url or ""):
        problems["sso_url"] = ["An http(s) URL is required for SAML (or give metadata)."]
    if not provider.signing_certificates:
        problems["signing_certificates"] = ["At least one IdP signing certificate is required."]
    if problems:
        raise ValidationError("Invalid identity provider", details=problems)
    provider.signing_certificates = _clean_certificates(provider.signing_certificates)


def _set_client_secret(provider: IdentityProvider, secret_plaintext: str) -> None:
    provider.encrypted_client_secret = crypto.encrypt(
        secret_plaintext.encode(), context=provider.secret_context()
    )
    provider.secret_updated_at = clock.now()


def identity_provider_create(
    *,
    access: Access,
    name: str,
    kind: str,
    default_role: Role | None = None,
    client_secret: str | None = None,
    meta: RequestMeta | None = None,
    **fields: Any,
) -> IdentityProvider:
    """Connect an OIDC or SAML identity provider. OIDC needs issuer, client id and
    secret (encrypted, bound to the row); SAML metadata (XML or URL) or entity id, SSO
    URL and signing certificates. Raises VALIDATION_ERROR, CONFLICT, PERMISSION_DENIED."""
    manage_require(access)
    if kind not in ProviderKind.values:
        raise ValidationError("Unknown kind", details={"kind": [f"One of {ProviderKind.values}."]})
    allowed = {*COMMON_FIELDS, *(OIDC_FIELDS if kind == ProviderKind.OIDC else SAML_FIELDS)}
    foreign = sorted(set(fields) - allowed)
    if foreign or (client_secret and kind != ProviderKind.OIDC):
        names = foreign + (["client_secret"] if client_secret and kind != "oidc" else [])
        raise ValidationError(
            f"Not a {kind} setting",
            details={name: [f"Not used by a {kind} provider."] for name in names},
        )
    provider = IdentityProvider(
        org=access.org, name=name, kind=kind, default_role=_default_role(access, default_role)
    )
    if kind == ProviderKind.OIDC:
        provider.scopes = list(DEFAULT_OIDC_SCOPES)
    for key, value in fields.items():
        setattr(provider, key, value)
    _validate_provider(provider, access)
    if kind == ProviderKind.OIDC and not client_secret:
        raise ValidationError(
            "A client secret is required", details={"client_secret": ["Required for OIDC."]}
        )
    try:
        with transaction.atomic():
            provider.save()
            if client_secret:
                # The secret is bound to the row's id: encrypt once the row exists.
                _set_client_secret(provider, client_secret)
                provider.save(update_fields=["encrypted_client_secret", "secret_updated_at"])
            config_record(
                access,
                "sso:manage",
                provider,
                meta,
                op="provider_create",
                name=name,
                kind=kind,
                has_client_secret=provider.has_client_secret,
            )
    except IntegrityError as exc:
        raise Conflict(
            "An identity provider with this name exists", details={"name": ["Already taken."]}
        ) from exc
    return provider


def identity_provider_update(
    *,
    access: Access,
    provider: IdentityProvider,
    changes: dict[str, Any],
    client_secret: str | None = None,
    otp_code: str | None = None,
    meta: RequestMeta | None = None,
) -> IdentityProvider:
    """Change a provider. Replacing the client secret, or moving the issuer of a provider
    that has one (where the secret is sent), asks a 2FA user for a fresh code."""
    manage_require(access)
    kind_fields = OIDC_FIELDS if provider.kind == ProviderKind.OIDC else SAML_FIELDS
    allowed = {*COMMON_FIELDS, *kind_fields, "default_role"}
    foreign = sorted(set(changes) - allowed)
    if foreign or (client_secret and provider.kind != ProviderKind.OIDC):
        names = foreign + (["client_secret"] if client_secret else [])
        raise ValidationError(
            f"Not a {provider.kind} setting",
            details={name: [f"Not used by a {provider.kind} provider."] for name in names},
        )
    changed = []
    issuer_before = provider.issuer
    for key, value in changes.items():
        if key == "default_role":
            value = _default_role(access, value)
        if getattr(provider, key) != value:
            setattr(provider, key, value)
            changed.append(key)
    if provider.kind == ProviderKind.SAML and "metadata_url" in changed:
        provider.metadata_xml = changes.get("metadata_xml", "")
    _validate_provider(provider, access)
    if provider.kind == ProviderKind.OIDC and provider.has_client_secret:
        if client_secret or provider.issuer != issuer_before:
            fresh_confirmation_require(access, otp_code, meta)
    if client_secret:
        _set_client_secret(provider, client_secret)
        changed.append("client_secret")
    if not changed:
        return provider
    with transaction.atomic():
        provider.save()
        config_record(access, "sso:manage", provider, meta, op="provider_update", changed=changed)
    return provider


def identity_provider_delete(
    *, access: Access, provider: IdentityProvider, meta: RequestMeta | None = None
) -> None:
    """Delete a provider with its links, rules and grant records (the roles and teams
    it granted stay as they are now). Refused while it is the last enabled provider of
    an org that enforces SSO."""
    manage_require(access)
    with transaction.atomic():
        _refuse_last_enforced_provider(access, provider)
        config_record(
            access, "sso:manage", provider, meta, op="provider_delete", name=provider.name
        )
        provider.delete()


def _refuse_last_enforced_provider(access: Access, provider: IdentityProvider) -> None:
    if not access.org.policy.enforce_sso:
        return
    others = IdentityProvider.objects.filter(is_enabled=True).exclude(pk=provider.pk)
    if not others.exists():
        raise Conflict("This organization enforces SSO: keep one enabled identity provider")


def identity_provider_set_enabled(
    *, access: Access, provider: IdentityProvider, enabled: bool, meta: RequestMeta | None = None
) -> IdentityProvider:
    manage_require(access)
    if provider.is_enabled == enabled:
        return provider
    with transaction.atomic():
        if not enabled:
            _refuse_last_enforced_provider(access, provider)
        provider.is_enabled = enabled
        provider.save(update_fields=["is_enabled", "updated_at"])
        config_record(
            access,
            "sso:manage",
            provider,
            meta,
            op="provider_enable" if enabled else "provider_disable",
        )
    return provider


def identity_provider_disable_by_operator(
    *, operator: User, provider: IdentityProvider, meta: RequestMeta | None = None
) -> None:
    """Platform staff stop sign-ins through a provider (emergency, from the admin):
    no org rule applies to them, the audit record names them."""
    with transaction.atomic():
        IdentityProvider.all_orgs.filter(pk=provider.pk).update(is_enabled=False)
        audit.record(
            action="sso:manage",
            outcome="success",
            org=provider.org,
            actor=operator,
            actor_label=f"admin:{operator.username}",
            target=provider,
            meta=meta,
            data={"op": "provider_disable", "via": "admin"},
        )
