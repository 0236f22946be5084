"""What the SSO services share: the constants, the manage check and the audit helper."""

from __future__ import annotations

from typing import Any

from audit import services as audit
from inferia.request_meta import RequestMeta
from orgs.access import Access
from orgs.models import Membership

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


def config_record(access: Access, action: str, target: Any, meta: RequestMeta | None, **data: Any):
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


def manage_require(access: Access) -> Membership:
    """``sso:manage`` held by a signed-in user (SSO decides who gets in and with
    which role: never an API key)."""
    access.require("sso:manage")
    _user, membership = access.require_human()
    return membership
