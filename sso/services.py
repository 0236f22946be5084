"""Every state change of sso/: identity providers, verified domains, group mapping
rules, sign-in flows and the sign-in decision itself.

Rules live here: configuring SSO needs ``sso:manage`` and a signed-in user (a
mapping grants roles: never an API key); a rule grants only what its maker holds,
checked when made and again at every use; only an Owner confirms a domain; a
domain is verified by one org; JIT provisioning only for verified e-mails of the
org's verified domains; no account is ever linked by an unverified e-mail; SSO
removes only what SSO granted and never the last Owner. Every decision is audited.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cryptography import x509
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import services as audit
from inferia import clock, crypto
from inferia.errors import Conflict, NotFound, PermissionDenied, ValidationError
from inferia.request_meta import RequestMeta
from keys.services import fresh_confirmation_require
from orgs import access as acl
from orgs.access import Access, bounded_role_permissions
from orgs.models import Membership, Organization, Role, Team, TeamMember, User, token_digest
from orgs.scoping import org_scope
from orgs.services import auth
from orgs.signals import access_changed
from sso import fetch
from sso.claims import Claims
from sso.models import (
    DomainStatus,
    FlowPurpose,
    GroupMapping,
    IdentityProvider,
    ProviderKind,
    SsoFlow,
    SsoIdentity,
    SsoRoleGrant,
    SsoTeamGrant,
    VerifiedDomain,
)

FLOW_SECONDS = 600
EXCHANGE_SECONDS = 120
DEFAULT_OIDC_SCOPES = ["openid", "email", "profile"]
OIDC_FIELDS = ("issuer", "client_id", "scopes", "groups_claim")
SAML_FIELDS = (
    "metadata_url",
    "metadata_xml",
    "idp_entity_id",
    "sso_url",
    "signing_certificates",
    "groups_attribute",
    "emails_verified",
)
COMMON_FIELDS = ("display_name", "is_enabled")


def _record(access: Access, action: str, target: Any, meta: RequestMeta | None, **data: Any):
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


def _manage(access: Access) -> Membership:
    """``sso:manage`` held by a signed-in user (SSO decides who gets in and with
    which role: never an API key)."""
    access.require("sso:manage")
    _user, membership = access.require_human()
    return membership


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
    _manage(access)
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
            _record(
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
    _manage(access)
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
        _record(access, "sso:manage", provider, meta, op="provider_update", changed=changed)
    return provider


def identity_provider_delete(
    *, access: Access, provider: IdentityProvider, meta: RequestMeta | None = None
) -> None:
    """Delete a provider with its links, rules and grant records (the roles and teams
    it granted stay as they are now). Refused while it is the last enabled provider of
    an org that enforces SSO."""
    _manage(access)
    with transaction.atomic():
        _refuse_last_enforced_provider(access, provider)
        _record(access, "sso:manage", provider, meta, op="provider_delete", name=provider.name)
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
    _manage(access)
    if provider.is_enabled == enabled:
        return provider
    with transaction.atomic():
        if not enabled:
            _refuse_last_enforced_provider(access, provider)
        provider.is_enabled = enabled
        provider.save(update_fields=["is_enabled", "updated_at"])
        _record(
            access,
            "sso:manage",
            provider,
            meta,
            op="provider_enable" if enabled else "provider_disable",
        )
    return provider


# --- verified domains --------------------------------------------------------------------

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalize_domain(value: str) -> str:
    """Lower case, IDNA; at least two labels. Raises VALIDATION_ERROR."""
    domain = value.strip().lower().rstrip(".")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValidationError("Invalid domain", details={"domain": ["Not a domain."]}) from exc
    labels = domain.split(".")
    if len(labels) < 2 or len(domain) > 253 or not all(_LABEL.match(x) for x in labels):
        raise ValidationError(
            "Invalid domain", details={"domain": ["Give a domain such as example.com."]}
        )
    return domain


def domain_claim(*, access: Access, domain: str, meta: RequestMeta | None = None) -> VerifiedDomain:
    """Claim an e-mail domain: pending, with a random challenge an Owner confirms."""
    _manage(access)
    domain = normalize_domain(domain)
    if VerifiedDomain.all_orgs.filter(domain=domain, status=DomainStatus.VERIFIED).exists():
        raise Conflict(
            "This domain is verified by an organization already",
            details={"domain": ["Already verified."]},
        )
    try:
        with transaction.atomic():
            claimed = VerifiedDomain.objects.create(
                org=access.org,
                domain=domain,
                challenge=f"inferia-domain-{secrets.token_urlsafe(24)}",
                claimed_by=access.user,
            )
            _record(access, "sso:manage", claimed, meta, op="domain_claim", domain=domain)
    except IntegrityError as exc:
        raise Conflict("This domain is claimed already", details={"domain": ["Claimed."]}) from exc
    return claimed


def domain_confirm(
    *,
    access: Access,
    domain: VerifiedDomain,
    challenge: str,
    meta: RequestMeta | None = None,
) -> VerifiedDomain:
    """An Owner confirms a pending domain by entering its challenge (the stand-in for a
    DNS TXT record). Raises PERMISSION_DENIED (not an Owner), VALIDATION_ERROR (wrong
    challenge, audited), CONFLICT (verified by another org meanwhile)."""
    _manage(access)
    if not access.is_owner:
        raise PermissionDenied("Only an Owner can confirm a domain")
    if domain.status == DomainStatus.VERIFIED:
        return domain
    if not domain.challenge_matches(challenge):
        audit.record(
            action="sso:manage",
            outcome="failure",
            org=access.org,
            actor=access.user,
            target=domain,
            status_code=400,
            meta=meta,
            data={"op": "domain_confirm", "reason": "bad_challenge", "domain": domain.domain},
        )
        raise ValidationError(
            "The challenge does not match", details={"challenge": ["Wrong challenge."]}
        )
    try:
        with transaction.atomic():
            domain.status = DomainStatus.VERIFIED
            domain.verified_by = access.user
            domain.verified_at = timezone.now()
            domain.save(update_fields=["status", "verified_by", "verified_at"])
            _record(access, "sso:manage", domain, meta, op="domain_confirm", domain=domain.domain)
    except IntegrityError as exc:
        raise Conflict(
            "This domain is verified by an organization already",
            details={"domain": ["Already verified."]},
        ) from exc
    return domain


def domain_delete(
    *, access: Access, domain: VerifiedDomain, meta: RequestMeta | None = None
) -> None:
    """Give a domain up. A verified one only by an Owner (it decides who may be
    provisioned and linked)."""
    _manage(access)
    if domain.status == DomainStatus.VERIFIED and not access.is_owner:
        raise PermissionDenied("Only an Owner can remove a verified domain")
    with transaction.atomic():
        _record(access, "sso:manage", domain, meta, op="domain_delete", domain=domain.domain)
        domain.delete()


def _verified_domains(org: Organization) -> set[str]:
    return set(
        VerifiedDomain.all_orgs.filter(org=org, status=DomainStatus.VERIFIED).values_list(
            "domain", flat=True
        )
    )


def email_domain(email: str) -> str:
    return email.rsplit("@", 1)[1].lower() if "@" in email else ""


# --- group mapping rules -----------------------------------------------------------------


def mapping_create(
    *,
    access: Access,
    provider: IdentityProvider,
    group: str,
    role: Role | None = None,
    team: Team | None = None,
    meta: RequestMeta | None = None,
) -> GroupMapping:
    """A rule: IdP group -> role and/or team. Its maker must hold every permission of
    the role (only an Owner maps to Owner) and ``team:manage`` for a team."""
    actor_membership = _manage(access)
    group = group.strip()
    if not group:
        raise ValidationError("Give a group", details={"group": ["Required."]})
    if role is None and team is None:
        raise ValidationError(
            "Give a role or a team", details={"role": ["Give a role, a team or both."]}
        )
    if role is not None:
        if role.org_id not in (None, access.org.pk):
            raise ValidationError("Unknown role", details={"role": ["No such role."]})
        if role.is_builtin and role.slug == acl.OWNER and not access.is_owner:
            raise PermissionDenied("Only an Owner can map a group to the Owner role")
        access.require_all(role.permissions, what="map a group to a role with")
    if team is not None:
        access.require("team:manage")
    try:
        with transaction.atomic():
            rule = GroupMapping.objects.create(
                org=access.org,
                provider=provider,
                group=group,
                role=role,
                team=team,
                granted_by_membership=actor_membership,
            )
            _record(
                access,
                "sso:manage",
                rule,
                meta,
                op="mapping_create",
                provider=provider.name,
                group=group,
                role=role.slug if role else None,
                team=team.slug if team else None,
            )
    except IntegrityError as exc:
        raise Conflict(
            "This group has a rule already", details={"group": ["Already mapped."]}
        ) from exc
    return rule


def mapping_delete(*, access: Access, rule: GroupMapping, meta: RequestMeta | None = None) -> None:
    """Delete a rule; what it granted goes at each member's next SSO sign-in."""
    _manage(access)
    with transaction.atomic():
        _record(access, "sso:manage", rule, meta, op="mapping_delete", group=rule.group)
        rule.delete()


# --- sign-in flows -----------------------------------------------------------------------


def _state_digest(state: str) -> str:
    return token_digest(state)


def flow_start(
    *,
    org: Organization,
    provider: IdentityProvider,
    purpose: str,
    base_url: str,
    next_url: str = "",
    client_redirect_uri: str = "",
    client_code_challenge: str = "",
) -> tuple[str, SsoFlow]:
    """Ask the provider where to send the browser; keep the flow server-side
    (encrypted, expiring, single use). Returns (IdP URL, flow)."""
    from sso import protocols

    if not provider.is_enabled:
        raise NotFound("No such identity provider")
    relay_state = secrets.token_urlsafe(32)
    url, kept = protocols.start(provider, base_url=base_url, state=relay_state)
    state = str(kept.get("state") or relay_state)
    with org_scope(org):
        flow = SsoFlow(
            org=org,
            provider=provider,
            purpose=purpose,
            state_digest=_state_digest(state),
            next_url=next_url[:500],
            client_redirect_uri=client_redirect_uri,
            client_code_challenge=client_code_challenge,
            expires_at=clock.now() + timedelta(seconds=FLOW_SECONDS),
            encrypted_kept="",
        )
        flow.encrypted_kept = crypto.encrypt(
            json.dumps(kept).encode(), context=flow.kept_context()
        )
        flow.save()
    return url, flow


def flow_take(*, org: Organization, state: str) -> tuple[SsoFlow, dict[str, Any]] | None:
    """The flow of ``state`` and what it kept, marked used (a second answer with the
    same state finds nothing); None when unknown, expired or used."""
    if not state:
        return None
    with org_scope(org), transaction.atomic():
        flow = (
            SsoFlow.objects.select_for_update()
            .select_related("provider", "provider__org")
            .filter(state_digest=_state_digest(state), completed_at__isnull=True)
            .first()
        )
        if flow is None or flow.is_expired:
            return None
        flow.completed_at = clock.now()
        flow.save(update_fields=["completed_at"])
    kept = json.loads(crypto.decrypt(flow.encrypted_kept, context=flow.kept_context()))
    return flow, kept


def flow_exchange_code(*, flow: SsoFlow, user: User) -> str:
    """An API flow ended in a sign-in: a one-time code for the client's loopback."""
    code = secrets.token_urlsafe(32)
    with org_scope(flow.provider.org):
        flow.user = user
        flow.exchange_digest = token_digest(code)
        flow.expires_at = clock.now() + timedelta(seconds=EXCHANGE_SECONDS)
        flow.save(update_fields=["user", "exchange_digest", "expires_at"])
    return code


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", errors="replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token_exchange(*, code: str, code_verifier: str, meta: RequestMeta | None) -> auth.TokenPair:
    """The one-time code and the client's PKCE verifier -> the usual access/refresh
    pair. Single use; a wrong verifier burns the code. AUTHENTICATION_FAILED otherwise."""
    from inferia.errors import AuthenticationFailed

    digest = token_digest(code)
    with transaction.atomic():
        # Cross-org by design: the code names its flow (like an invitation token).
        flow = (
            SsoFlow.all_orgs.select_for_update()
            .select_related("user", "org")
            .filter(exchange_digest=digest, exchanged_at__isnull=True)
            .first()
        )
        if flow is None or flow.user is None or flow.is_expired:
            audit.record(
                action="auth:sso_token",
                outcome="denied",
                status_code=401,
                meta=meta,
                data={"reason": "bad_code"},
            )
            raise AuthenticationFailed("The code is invalid, expired or used")
        SsoFlow.all_orgs.filter(pk=flow.pk).update(exchanged_at=clock.now())
        expected = flow.client_code_challenge
        ok = secrets.compare_digest(pkce_challenge(code_verifier), expected)
        user = flow.user
        if not ok or not user.is_active:
            reason = "bad_verifier" if not ok else "user_inactive"
            audit.record(
                action="auth:sso_token",
                outcome="denied",
                org=flow.org,
                actor=user,
                status_code=401,
                meta=meta,
                data={"reason": reason},
            )
    if not ok or not user.is_active:
        raise AuthenticationFailed("The code is invalid, expired or used")
    with transaction.atomic():
        pair = auth.token_pair_issue(user=user)
        auth.login_record(meta=meta, user=user, via="sso_api")
    return pair


# --- the sign-in decision ----------------------------------------------------------------


@dataclass
class _Decision:
    org: Organization
    provider: IdentityProvider
    claims: Claims
    meta: RequestMeta | None

    def record(self, action: str, outcome: str, user: User | None = None, **data: Any) -> None:
        audit.record(
            action=action,
            outcome=outcome,
            org=self.org,
            actor=user,
            actor_label="" if user else f"sso:{self.provider.name}",
            target=self.provider,
            status_code=200 if outcome == "success" else 403,
            meta=self.meta,
            data={
                "provider": self.provider.name,
                "kind": self.provider.kind,
                "subject": self.claims.subject[:200],
                **data,
            },
        )

    def refuse(self, reason: str, message: str) -> _Refused:
        """Raised out of the transaction; ``sign_in`` audits it after the rollback."""
        return _Refused(reason, message)


class _Refused(Exception):
    def __init__(self, reason: str, message: str) -> None:
        self.reason, self.message = reason, message
        super().__init__(reason)


def _username_for(email: str, subject: str) -> str:
    base = re.sub(r"[^\w.@+-]", "", email.split("@", 1)[0])[:100] or "user"
    candidate = base
    while User.objects.filter(username__iexact=candidate).exists():
        candidate = f"{base}-{secrets.token_hex(3)}"
    return candidate


def sign_in(
    *, org: Organization, provider: IdentityProvider, claims: Claims, meta: RequestMeta | None
) -> User:
    """Who ``claims`` (verified by the protocol code) is in ``org``; returns the user.

    Linked (provider, subject): that user. Else an account with the e-mail is linked
    only when the e-mail is verified, its domain is verified by this org, the account
    is a member of this org and of no other (the org's IdP then speaks for it); else a
    new account is provisioned just in time under the same e-mail conditions. A
    linked user who is no longer a member is provisioned again under them. Then the
    mapping rules set roles and teams. Raises PERMISSION_DENIED with
    ``details.reason``; every decision is audited.
    """
    decision = _Decision(org=org, provider=provider, claims=claims, meta=meta)
    try:
        user = _sign_in(decision)
    except _Refused as refused:
        decision.record("auth:sso_login", "denied", reason=refused.reason)
        raise PermissionDenied(refused.message, details={"reason": refused.reason}) from None
    access_changed.send(sender=SsoIdentity, org_ids=[org.pk])
    return user


def _sign_in(decision: _Decision) -> User:
    org, provider, claims = decision.org, decision.provider, decision.claims
    if provider.org_id != org.pk or not provider.is_enabled:
        raise decision.refuse("provider_disabled", "This identity provider is not enabled")
    if not claims.subject:
        raise decision.refuse("no_subject", "The identity provider sent no subject")
    email = claims.email.strip().lower()
    domain_ok = bool(email) and email_domain(email) in _verified_domains(org)
    email_trusted = claims.email_verified and domain_ok
    with org_scope(org), transaction.atomic():
        identity = (
            SsoIdentity.objects.select_for_update()
            .select_related("user")
            .filter(provider=provider, subject=claims.subject)
            .first()
        )
        user: User | None = identity.user if identity else None
        membership = None
        created_user = False
        if user is None and email:
            existing = list(User.objects.filter(email__iexact=email)[:2])
            if existing:
                if not claims.email_verified:
                    raise decision.refuse(
                        "email_unverified",
                        "An account with this e-mail exists; the identity provider did not "
                        "verify the e-mail, so it cannot be linked",
                    )
                if not domain_ok:
                    raise decision.refuse(
                        "domain_unverified",
                        "An account with this e-mail exists and its domain is not verified "
                        "by this organization, so it cannot be linked",
                    )
                if len(existing) > 1:
                    raise decision.refuse(
                        "email_ambiguous", "Several accounts use this e-mail; ask an admin"
                    )
                candidate = existing[0]
                member_here = Membership.objects.filter(user=candidate).exists()
                elsewhere = Membership.all_orgs.filter(user=candidate).exclude(org=org).exists()
                if not member_here or elsewhere:
                    raise decision.refuse(
                        "link_refused",
                        "An account with this e-mail exists; it can be linked only when it "
                        "belongs to this organization alone. Ask an admin",
                    )
                user = candidate
                identity = SsoIdentity.objects.create(
                    org=org, provider=provider, subject=claims.subject, user=user
                )
                decision.record("auth:sso_link", "success", user, via="verified_email")
        if user is None:
            if not email_trusted:
                reason = "email_unverified" if domain_ok else "domain_unverified"
                raise decision.refuse(
                    reason,
                    "No account is linked to this identity, and new accounts are created only "
                    "for verified e-mail addresses of the organization's verified domains",
                )
            user = User(username=_username_for(email, claims.subject), email=email)
            user.first_name = claims.name[:150]
            user.set_unusable_password()
            user.save()
            created_user = True
            identity = SsoIdentity.objects.create(
                org=org, provider=provider, subject=claims.subject, user=user
            )
            decision.record("auth:sso_provision", "success", user, op="user_create")
        assert identity is not None and user is not None
        if not user.is_active:
            raise decision.refuse("user_inactive", "This account is deactivated")
        membership = (
            Membership.objects.select_for_update()
            .select_related("role")
            .filter(user=user)
            .first()
        )
        jit_membership = False
        if membership is None:
            if not email_trusted:
                raise decision.refuse(
                    "not_a_member",
                    "You are not a member of this organization; ask an admin for an invitation",
                )
            membership = Membership.objects.create(
                org=org, user=user, role=provider.default_role
            )
            SsoRoleGrant.objects.create(
                org=org, membership=membership, provider=provider, role=provider.default_role
            )
            jit_membership = True
            decision.record(
                "auth:sso_provision",
                "success",
                user,
                op="membership_create",
                role=provider.default_role.slug,
            )
        _apply_mappings(decision, membership, user)
        SsoIdentity.objects.filter(pk=identity.pk).update(last_login_at=clock.now())
        decision.record(
            "auth:sso_login",
            "success",
            user,
            created_user=created_user,
            created_membership=jit_membership,
        )
    return user


def _rule_usable(rule: GroupMapping) -> bool:
    """Bounded delegation at every use: the rule's maker (still a member) holds today
    every permission of the role it grants (and is an Owner for the Owner role), and
    ``team:manage`` for its team."""
    grantor = rule.granted_by_membership
    if grantor is None:
        return False
    held = bounded_role_permissions(grantor.role, grantor.granted_by_membership, grantor)
    if rule.role is not None:
        if not set(rule.role.permissions) <= held:
            return False
        is_owner_grantor = grantor.role.is_builtin and grantor.role.slug == acl.OWNER
        if rule.role.is_builtin and rule.role.slug == acl.OWNER and not is_owner_grantor:
            return False
    return not (rule.team is not None and "team:manage" not in held)


def _wider(role: Role, than: Role) -> bool:
    """Strictly more permissions: SSO raises a manual role only to a superset of it."""
    return set(role.permissions) > set(than.permissions)


def _best_role(roles: list[Role]) -> Role | None:
    """The mapped role with the most permissions (ties: the first rule's)."""
    best = None
    for role in roles:
        if best is None or len(set(role.permissions)) > len(set(best.permissions)):
            best = role
    return best


def _is_owner_role(role: Role) -> bool:
    return role.is_builtin and role.slug == acl.OWNER


def _apply_mappings(decision: _Decision, membership: Membership, user: User) -> None:
    """Re-evaluate the provider's rules against the groups of this sign-in."""
    provider = decision.provider
    groups = set(decision.claims.groups)
    rules = list(
        GroupMapping.objects.filter(provider=provider)
        .select_related(
            "role", "team", "granted_by_membership__role", "granted_by_membership__user"
        )
        .order_by("created_at")
    )
    matching = [rule for rule in rules if rule.group in groups]
    usable = []
    for rule in matching:
        if _rule_usable(rule):
            usable.append(rule)
        else:
            decision.record(
                "auth:sso_mapping", "denied", user, reason="rule_grantor_lacks_permissions",
                group=rule.group,
            )
    _sync_role(decision, membership, user, [r.role for r in usable if r.role is not None], usable)
    _sync_teams(decision, user, {r.team.pk: r for r in usable if r.team is not None})


def _sync_role(
    decision: _Decision,
    membership: Membership,
    user: User,
    mapped_roles: list[Role],
    rules: list[GroupMapping],
) -> None:
    grant = SsoRoleGrant.objects.select_related("role", "replaced_role").filter(
        membership=membership
    ).first()
    if grant is not None and grant.role_id != membership.role_id:
        grant.delete()  # someone changed the role by hand since: the manual role stands
        grant = None
    mapped = _best_role(mapped_roles)
    current = membership.role
    if grant is None:
        if mapped is None or mapped.pk == current.pk:
            return
        if not _wider(mapped, current):
            decision.record(
                "auth:sso_mapping", "denied", user, reason="manual_role_kept",
                role=current.slug, mapped=mapped.slug,
            )
            return
        target, replaced, keep_grant = mapped, current, True
    else:
        fallback = grant.replaced_role or decision.provider.default_role
        if grant.replaced_role is not None:
            wider = mapped is not None and _wider(mapped, fallback)
            target = mapped if (mapped is not None and wider) else fallback
            keep_grant = target.pk != fallback.pk
        else:
            target, keep_grant = (mapped or fallback), True
        replaced = grant.replaced_role
    if target.pk == current.pk:
        return
    if _is_owner_role(current) and not _is_owner_role(target):
        owners = Membership.objects.select_for_update().filter(
            role__org__isnull=True, role__slug=acl.OWNER
        )
        if len(list(owners)) <= 1:
            decision.record(
                "auth:sso_mapping", "denied", user, reason="last_owner_kept", role=current.slug
            )
            return
    grantor = next(
        (r.granted_by_membership for r in rules if r.role is not None and r.role.pk == target.pk),
        None,
    )
    membership.role = target
    if _is_owner_role(target):
        membership.granted_by_membership = None
    elif grantor is not None:
        membership.granted_by_membership = grantor
    membership.save(update_fields=["role", "granted_by_membership", "updated_at"])
    if keep_grant:
        SsoRoleGrant.objects.update_or_create(
            membership=membership,
            defaults={
                "org": decision.org,
                "provider": decision.provider,
                "role": target,
                "replaced_role": replaced,
            },
        )
    elif grant is not None:
        grant.delete()
    audit.record(
        action="member:update",
        outcome="success",
        org=decision.org,
        actor=user,
        actor_label=f"sso:{decision.provider.name}",
        target=membership,
        meta=decision.meta,
        data={
            "role_before": current.slug,
            "role_after": target.slug,
            "user": user.username,
            "via": "sso",
            "groups": sorted(decision.claims.groups)[:50],
        },
    )


def _sync_teams(decision: _Decision, user: User, wanted: dict[Any, GroupMapping]) -> None:
    granted = {g.team_id: g for g in SsoTeamGrant.objects.filter(user=user)}
    for team_id, rule in wanted.items():
        team = rule.team
        assert team is not None
        if team_id in granted:
            if not TeamMember.objects.filter(team=team, user=user).exists():
                TeamMember.objects.create(org=decision.org, team=team, user=user)
            continue
        if TeamMember.objects.filter(team=team, user=user).exists():
            continue  # a manual team membership: SSO neither records nor removes it
        TeamMember.objects.create(org=decision.org, team=team, user=user)
        SsoTeamGrant.objects.create(
            org=decision.org, team=team, user=user, provider=decision.provider
        )
        _team_record(decision, user, team, "member_add")
    for team_id, grant in granted.items():
        if team_id in wanted:
            continue
        TeamMember.objects.filter(team_id=team_id, user=user).delete()
        grant.delete()
        _team_record(decision, user, grant.team, "member_remove")


def _team_record(decision: _Decision, user: User, team: Team, op: str) -> None:
    audit.record(
        action="team:manage",
        outcome="success",
        org=decision.org,
        actor=user,
        actor_label=f"sso:{decision.provider.name}",
        target=team,
        meta=decision.meta,
        data={"op": op, "user": user.username, "via": "sso"},
    )


def sso_refusal_record(
    *,
    org: Organization,
    provider: IdentityProvider | None,
    reason: str,
    meta: RequestMeta | None,
) -> None:
    """A sign-in that failed before any claims (the protocol refused the answer, a bad
    or replayed state): one audit record with the protocol's reason."""
    audit.record(
        action="auth:sso_login",
        outcome="denied",
        org=org,
        actor_label=f"sso:{provider.name}" if provider else "sso",
        target=provider,
        status_code=403,
        meta=meta,
        data={"reason": reason, "provider": provider.name if provider else None},
    )


def providers_for_email(email: str) -> list[IdentityProvider]:
    """The enabled providers of the org that verified this e-mail's domain ("Sign in
    with SSO" by e-mail on the login page). Cross-org by design: the domain names it."""
    domain = email_domain(email.strip())
    if not domain:
        return []
    claim = (
        VerifiedDomain.all_orgs.select_related("org")
        .filter(domain=domain, status=DomainStatus.VERIFIED)
        .first()
    )
    if claim is None:
        return []
    return list(
        IdentityProvider.all_orgs.filter(org=claim.org, is_enabled=True).select_related("org")
    )



def flow_keep_claims(*, flow: SsoFlow, claims: Claims) -> None:
    """A dashboard flow's verified claims wait (encrypted, until the flow expires) for
    the browser that started it: the SAML answer arrives as a cross-site POST without
    the session cookie, so the sign-in itself happens on the redirect that follows."""
    payload = json.dumps(
        {
            "provider_kind": claims.provider_kind,
            "subject": claims.subject,
            "email": claims.email,
            "email_verified": claims.email_verified,
            "name": claims.name,
            "groups": list(claims.groups),
            "raw": claims.raw,
        },
        default=str,
    )
    with org_scope(flow.provider.org):
        flow.encrypted_claims = crypto.encrypt(
            payload.encode(), context=flow.kept_context() + ":claims"
        )
        flow.save(update_fields=["encrypted_claims"])


def flow_take_claims(*, org: Organization, flow_id: str) -> tuple[SsoFlow, Claims] | None:
    """The waiting claims of a dashboard flow, once; None when unknown, expired or
    taken."""
    with org_scope(org), transaction.atomic():
        flow = (
            SsoFlow.objects.select_for_update()
            .select_related("provider", "provider__org")
            .filter(pk=flow_id, purpose=FlowPurpose.DASHBOARD, exchanged_at__isnull=True)
            .exclude(encrypted_claims="")
            .first()
        )
        if flow is None or flow.is_expired:
            return None
        flow.exchanged_at = clock.now()
        flow.save(update_fields=["exchanged_at"])
    data = json.loads(
        crypto.decrypt(flow.encrypted_claims, context=flow.kept_context() + ":claims")
    )
    data["groups"] = tuple(data["groups"])
    return flow, Claims(**data)


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
