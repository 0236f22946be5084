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

from sso.services.common import EXCHANGE_SECONDS, FLOW_SECONDS
from sso.services.domains import domain_claim, domain_confirm, domain_delete, normalize_domain
from sso.services.flows import (
    flow_exchange_code,
    flow_keep_claims,
    flow_purge,
    flow_start,
    flow_take,
    flow_take_claims,
    pkce_challenge,
    providers_for_email,
    sso_refusal_record,
    token_exchange,
)
from sso.services.mappings import mapping_create, mapping_delete
from sso.services.providers import (
    identity_provider_create,
    identity_provider_delete,
    identity_provider_disable_by_operator,
    identity_provider_set_enabled,
    identity_provider_update,
)
from sso.services.signin import sign_in

__all__ = [
    "EXCHANGE_SECONDS",
    "FLOW_SECONDS",
    "domain_claim",
    "domain_confirm",
    "domain_delete",
    "flow_exchange_code",
    "flow_keep_claims",
    "flow_purge",
    "flow_start",
    "flow_take",
    "flow_take_claims",
    "identity_provider_create",
    "identity_provider_delete",
    "identity_provider_disable_by_operator",
    "identity_provider_set_enabled",
    "identity_provider_update",
    "mapping_create",
    "mapping_delete",
    "normalize_domain",
    "pkce_challenge",
    "providers_for_email",
    "sign_in",
    "sso_refusal_record",
    "token_exchange",
]
