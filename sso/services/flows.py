"""Sign-in flows: the server-side, encrypted, expiring, single-use record between the redirect to the IdP and its answer; the API's one-time code and PKCE exchange."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from datetime import timedelta
from typing import Any

from django.db import transaction

from audit import services as audit
from inferia import clock, crypto
from inferia.errors import NotFound
from inferia.request_meta import RequestMeta
from orgs.models import Organization, User, token_digest
from orgs.scoping import org_scope
from orgs.services import auth
from sso.claims import Claims
from sso.models import (
    DomainStatus,
    FlowPurpose,
    IdentityProvider,
    SsoFlow,
    VerifiedDomain,
)
from sso.services.common import EXCHANGE_SECONDS, FLOW_SECONDS
from sso.services.domains import email_domain

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
        flow.encrypted_kept = crypto.encrypt(json.dumps(kept).encode(), context=flow.kept_context())
        flow.save()
    return url, flow


def flow_take(*, org: Organization, state: str) -> tuple[SsoFlow, dict[str, Any]] | None:
    """The flow of ``state`` and what it kept, marked used (a second answer with the
    same state finds nothing); None when unknown, expired or used."""
    if not state:
        return None
    with org_scope(org), transaction.atomic():
        flow = (
            SsoFlow.objects.select_for_update(of=("self",))
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


def flow_purge() -> int:
    """Delete every expired sign-in flow, of every org (a beat job): once expired a flow
    can neither finish nor be exchanged, and it still holds encrypted claims (e-mail,
    name, groups) that have no reason to stay. Their audit records stay. Returns how
    many were deleted."""
    deleted, _ = SsoFlow.all_orgs.filter(expires_at__lte=clock.now()).delete()
    return deleted


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
    # One transaction holds the flow's row lock from the lookup to the mark that uses it
    # up; refusals are recorded inside it and raised after it (a raise inside would
    # roll the refusal's audit record back).
    with transaction.atomic():
        # Cross-org by design: the code names its flow (like an invitation token).
        flow = (
            SsoFlow.all_orgs.select_for_update(of=("self",))
            .select_related("user", "org")
            .filter(exchange_digest=digest, exchanged_at__isnull=True)
            .first()
        )
        user = flow.user if flow is not None else None
        if flow is None or user is None or flow.is_expired:
            reason = "bad_code"
        else:
            SsoFlow.all_orgs.filter(pk=flow.pk).update(exchanged_at=clock.now())
            ok = secrets.compare_digest(pkce_challenge(code_verifier), flow.client_code_challenge)
            reason = "" if ok and user.is_active else ("user_inactive" if ok else "bad_verifier")
        if reason:
            audit.record(
                action="auth:sso_token",
                outcome="denied",
                org=flow.org if flow is not None else None,
                actor=user,
                status_code=401,
                meta=meta,
                data={"reason": reason},
            )
    if reason or user is None:
        raise AuthenticationFailed("The code is invalid, expired or used")
    with transaction.atomic():
        pair = auth.token_pair_issue(user=user)
        auth.login_record(meta=meta, user=user, via="sso_api")
    return pair


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
            SsoFlow.objects.select_for_update(of=("self",))
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
