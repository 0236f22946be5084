"""The one adapter between an ``IdentityProvider`` row and the protocol modules
(``sso.oidc``: authlib; ``sso.saml``: pysaml2). Views and services call these
functions; only here are the protocol configs built (the client secret is
decrypted here, just before the protocol call, into a ``*_plaintext`` local).

Every function returns plain data or ``Claims`` and raises ``SsoError``.
"""

from __future__ import annotations

import importlib
from typing import Any

from django.urls import reverse

from inferia import crypto
from sso.claims import Claims
from sso.errors import SsoError
from sso.models import IdentityProvider, ProviderKind


def oidc_redirect_uri(base_url: str, provider: IdentityProvider) -> str:
    return base_url + reverse("sso:oidc-callback", kwargs={"org": provider.org.slug})


def saml_acs_url(base_url: str, provider: IdentityProvider) -> str:
    return base_url + reverse(
        "sso:saml-acs", kwargs={"org": provider.org.slug, "provider_id": provider.pk}
    )


def saml_entity_id(base_url: str, provider: IdentityProvider) -> str:
    """Our SP entity id for this provider: the URL of our metadata."""
    return base_url + reverse(
        "sso:saml-metadata", kwargs={"org": provider.org.slug, "provider_id": provider.pk}
    )


def client_secret_plaintext(provider: IdentityProvider) -> str:
    """The OIDC client secret in clear, for the token request only."""
    if not provider.encrypted_client_secret:
        return ""
    return crypto.decrypt(
        provider.encrypted_client_secret, context=provider.secret_context()
    ).decode()


def _protocol(name: str) -> Any:
    """``sso.oidc`` or ``sso.saml``, imported when first used (their libraries load
    only for the protocol an org uses)."""
    return importlib.import_module(f"sso.{name}")


def _oidc_config(provider: IdentityProvider):
    oidc = _protocol("oidc")

    return oidc.OidcConfig(
        issuer=provider.issuer,
        client_id=provider.client_id,
        client_secret=client_secret_plaintext(provider),
        scopes=tuple(provider.scopes),
        allowed_private_hosts=tuple(provider.org.policy.allowed_private_hosts),
        groups_claim=provider.groups_claim or "groups",
    )


def _saml_configs(provider: IdentityProvider, base_url: str):
    saml = _protocol("saml")

    sp = saml.SpConfig(
        entity_id=saml_entity_id(base_url, provider),
        acs_url=saml_acs_url(base_url, provider),
    )
    # The org's settings for this IdP. IdP-initiated sign-ins stay refused: every
    # answer must come back to a flow this server started (RelayState, request id).
    idp = saml.IdpConfig(
        entity_id=provider.idp_entity_id,
        sso_url=provider.sso_url,
        signing_certs=tuple(provider.signing_certificates),
        emails_verified=bool(provider.emails_verified),
        allow_idp_initiated=False,
        email_attribute=provider.email_attribute,
        name_attribute=provider.name_attribute,
        groups_attribute=provider.groups_attribute,
        subject_attribute=provider.subject_attribute,
    )
    return sp, idp


def start(provider: IdentityProvider, *, base_url: str, state: str) -> tuple[str, dict[str, Any]]:
    """Where to send the browser, and what to keep server-side until the answer.

    OIDC: the library makes its own ``state`` (kept, and the flow is found by it);
    SAML: ``state`` travels as RelayState, the request id is kept.
    """
    if provider.kind == ProviderKind.OIDC:
        oidc = _protocol("oidc")

        url, kept = oidc.authorization_request(
            _oidc_config(provider), oidc_redirect_uri(base_url, provider)
        )
        return url, dict(kept)
    saml = _protocol("saml")

    sp, idp = _saml_configs(provider, base_url)
    url, request_id = saml.authn_request(sp, idp, state)
    return url, {"state": state, "request_id": request_id}


def complete_oidc(
    provider: IdentityProvider,
    *,
    base_url: str,
    query: dict[str, list[str]],
    kept: dict[str, Any],
) -> Claims:
    """The verified claims of the callback's ``query`` (every value as a list, as
    ``QueryDict.lists()`` gives them: ``sso.oidc`` refuses a repeated parameter)."""
    if provider.kind != ProviderKind.OIDC:
        raise SsoError("bad_flow", "The sign-in was started for another identity provider.")
    oidc = _protocol("oidc")

    return oidc.complete(_oidc_config(provider), oidc_redirect_uri(base_url, provider), query, kept)


def complete_saml(
    provider: IdentityProvider, *, base_url: str, saml_response: str, kept: dict[str, Any]
) -> Claims:
    """The verified claims of the ``SAMLResponse`` posted for the flow ``kept``. SAML
    has no per-assertion ``email_verified``: the provider's ``emails_verified`` (passed
    in the IdP config) decides it."""
    if provider.kind != ProviderKind.SAML:
        raise SsoError("bad_flow", "The sign-in was started for another identity provider.")
    saml = _protocol("saml")

    sp, idp = _saml_configs(provider, base_url)
    request_id = kept.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        # Never None: that would ask sso.saml for an IdP-initiated sign-in.
        raise SsoError("bad_flow", "The sign-in was not started here.")
    return saml.complete(sp, idp, saml_response, request_id)


def sp_metadata(provider: IdentityProvider, *, base_url: str) -> str:
    saml = _protocol("saml")

    sp, _idp = _saml_configs(provider, base_url)
    return saml.sp_metadata(sp)


def parse_idp_metadata(xml: str) -> tuple[str, str, tuple[str, ...]]:
    """(entity id, SSO URL, signing certificates) of an IdP's metadata XML."""
    saml = _protocol("saml")

    idp = saml.parse_idp_metadata(xml)
    return idp.entity_id, idp.sso_url, tuple(idp.signing_certs)
