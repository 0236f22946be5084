"""Verified e-mail domains: an Admin claims, an Owner confirms with the challenge; one org per domain."""

from __future__ import annotations

import re
import secrets

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import services as audit
from inferia.errors import Conflict, PermissionDenied, ValidationError
from inferia.request_meta import RequestMeta
from orgs.access import Access
from orgs.models import Organization
from sso.models import (
    DomainStatus,
    VerifiedDomain,
)
from sso.services.common import config_record, manage_require

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
    manage_require(access)
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
            config_record(access, "sso:manage", claimed, meta, op="domain_claim", domain=domain)
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
    manage_require(access)
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
            config_record(
                access, "sso:manage", domain, meta, op="domain_confirm", domain=domain.domain
            )
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
    manage_require(access)
    if domain.status == DomainStatus.VERIFIED and not access.is_owner:
        raise PermissionDenied("Only an Owner can remove a verified domain")
    with transaction.atomic():
        config_record(access, "sso:manage", domain, meta, op="domain_delete", domain=domain.domain)
        domain.delete()


def verified_domains(org: Organization) -> set[str]:
    return set(
        VerifiedDomain.all_orgs.filter(org=org, status=DomainStatus.VERIFIED).values_list(
            "domain", flat=True
        )
    )


def email_domain(email: str) -> str:
    return email.rsplit("@", 1)[1].lower() if "@" in email else ""
