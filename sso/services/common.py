"""What the SSO services share: the constants, the manage check and the audit helper."""

from __future__ import annotations

from keys.services import access_record
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
    "email_attribute",
    "name_attribute",
    "subject_attribute",
    "emails_verified",
)
COMMON_FIELDS = ("display_name", "is_enabled")


# A successful change by ``access``, audited (the keys app's one helper for it).
config_record = access_record


def manage_require(access: Access) -> Membership:
    """``sso:manage`` held by a signed-in user (SSO decides who gets in and with
    which role: never an API key)."""
    access.require("sso:manage")
    _user, membership = access.require_human()
    return membership
