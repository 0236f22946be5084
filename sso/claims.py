"""What an identity provider asserted about a person, after the protocol code
(``sso.oidc``, ``sso.saml``) verified it.

The protocol modules return a ``Claims``; ``sso.services.sign_in`` decides what it
means for the org. ``raw`` keeps the verified claims / attributes for the audit
trail: never a token, a secret, a code or a signature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Claims:
    provider_kind: str  # "oidc" or "saml"
    subject: str  # the IdP's stable id for the person (OIDC "sub", SAML NameID)
    email: str
    email_verified: bool  # OIDC "email_verified"; SAML: True only when the IdP config says so
    name: str
    groups: tuple[str, ...]
    raw: dict[str, Any] = field(default_factory=dict)  # verified claims, no secrets
