"""OpenID Connect, the protocol half: discovery, the authorization request and the
verified completion of the authorization code flow (with PKCE), as pure functions.

``authorization_request(config, redirect_uri)`` returns the URL to send the browser
to and ``kept``, what the caller stores server-side (the signed session) until the
browser comes back; ``complete(config, redirect_uri, query, kept)`` checks the
answer, redeems the code and returns verified :class:`~sso.claims.Claims`, or
raises :class:`~sso.errors.SsoError`. Nothing here touches the database: what an
identity means for an org (provisioning, roles, audit) is ``sso.services``'.

What ``complete`` enforces:

- ``state`` equals the kept one (constant-time), and ``kept`` belongs to this
  issuer and redirect URI; an ``iss`` authorization response parameter (RFC 9207),
  required when the provider announces it, equals the issuer (mix-up defense);
- the provider's ``error`` parameter becomes ``idp_error``; a token endpoint error
  becomes ``token_error`` (its ``error`` code in the message);
- PKCE with S256 on every request (the verifier never leaves the server before the
  token request);
- the ID token's signature against the provider's JWKS, with an algorithm the
  provider announces in ``id_token_signing_alg_values_supported`` *and* that is
  asymmetric (``ALGORITHMS``): never ``none``, never HMAC (so never an HMAC keyed
  with a public key); the key is chosen by ``kid`` and must match the algorithm's
  key type. An unknown ``kid`` refetches the JWKS once (the provider rotated its
  keys) and then fails with ``unknown_key``;
- ``iss`` equals the issuer, ``aud`` contains the client id, ``azp`` equals the
  client id when present and is required when there are several audiences,
  ``exp``/``iat`` required and ``nbf`` honoured with ``LEEWAY_SECONDS`` of clock
  skew, ``nonce`` equals the kept one (constant-time), ``at_hash`` matches the
  access token when present;
- userinfo (when the provider has the endpoint) must answer for the same ``sub``;
  the ID token's claims win over userinfo's, and ``email`` with ``email_verified``
  are taken together from one source: ``email_verified`` is True only when that
  source says JSON ``true`` (the default is False; nothing is inferred from a
  domain); groups come from ``config.groups_claim`` (a list of strings, one
  string, or a dotted path into nested claims such as ``realm_access.roles``).

Every outbound call (discovery, JWKS, token, userinfo) goes through
``keys.ssrf_http.guarded_client`` with the org's ``allowed_private_hosts``: the
SSRF rule of ``keys/ssrf.py`` on every connection, timeouts, no redirects, a
response size cap. URLs must be https; plain http only for a host the org lists
as private (a self-hosted or test provider). The client secret travels only in
the token request's Basic authorization header; it is not in ``OidcConfig``'s
repr, in any SsoError, in ``kept``, or in a log line.

Libraries, and why: Authlib's OAuth 2.0 client core (``authlib.oauth2.client``,
the framework-agnostic one) builds the authorization URL with the S256 challenge,
the token request and client authentication, and turns an ``error`` answer into
an exception; joserfc (Authlib's JOSE library, the successor of
``authlib.jose``, with required explicit algorithms and key-type checks) parses
the JWKS, verifies the JWS and validates the registered claims. Both are well
kept, by one maintainer team, typed, and used by many OpenID relying parties. We
use httpx (already a dependency) rather than Authlib's httpx integration, whose
transport the SSRF guard could not reach and which switches to the ``httpx2``
package whenever that happens to be installed. mozilla-django-oidc was not
chosen: it is one global provider from settings, while Inferia has one per org.

Caches: the discovery document and the JWKS are cached per process for
``DISCOVERY_TTL_SECONDS`` / ``JWKS_TTL_SECONDS``, per issuer and the org's
private-host list (an org never reuses a document fetched under another org's
list). A key the provider removed stays trusted at most ``JWKS_TTL_SECONDS``.

Reasons (``SsoError.reason``): ``address_refused``, ``fetch_failed``,
``bad_response``, ``bad_issuer``, ``bad_state``, ``bad_flow``, ``idp_error``,
``token_error``, ``bad_algorithm``, ``unknown_key``, ``bad_signature``,
``bad_audience``, ``bad_nonce``, ``expired``, ``not_yet_valid``,
``missing_claim``, ``bad_token``, ``bad_subject``.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.client import OAuth2Client
from authlib.oidc.core.util import create_half_hash
from joserfc import jws
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from inferia import clock
from keys.ssrf_http import AddressRefused, ResponseTooLarge, guarded_client
from sso.claims import Claims
from sso.errors import SsoError

# Asymmetric signature algorithms accepted for ID tokens, with the key type each needs.
# HMAC (HS*) is left out on purpose: it would be keyed with the client secret, and an
# attacker who makes a verifier treat a public key as an HMAC secret forges tokens.
ALGORITHMS = {
    "RS256": "RSA",
    "RS384": "RSA",
    "RS512": "RSA",
    "PS256": "RSA",
    "PS384": "RSA",
    "PS512": "RSA",
    "ES256": "EC",
    "ES384": "EC",
    "ES512": "EC",
    "EdDSA": "OKP",
    "Ed25519": "OKP",
}
LEEWAY_SECONDS = 60
DISCOVERY_TTL_SECONDS = 3600
JWKS_TTL_SECONDS = 300
TIMEOUT_SECONDS = 10.0
MAX_RESPONSE_BYTES = 512 * 1024
# How long a ``kept`` flow stays usable (the person has this long to sign in at the IdP).
FLOW_TTL_SECONDS = 15 * 60


@dataclass(frozen=True)
class OidcConfig:
    """One org's OpenID provider, as the protocol code needs it."""

    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    allowed_private_hosts: tuple[str, ...] = ()
    groups_claim: str = "groups"


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of the discovery document this module uses (URLs already checked)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    id_token_algorithms: tuple[str, ...]
    token_endpoint_auth_methods: tuple[str, ...]
    iss_parameter_supported: bool
    raw: dict[str, Any]


_lock = threading.Lock()
_discovery_cache: dict[tuple[str, tuple[str, ...]], tuple[float, ProviderMetadata]] = {}
_jwks_cache: dict[tuple[str, tuple[str, ...]], tuple[float, KeySet]] = {}


def cache_clear() -> None:
    """Forget every cached discovery document and key set (tests, operators)."""
    with _lock:
        _discovery_cache.clear()
        _jwks_cache.clear()


# --- outbound HTTP --------------------------------------------------------------------


def _client(config: OidcConfig) -> httpx.Client:
    return guarded_client(
        allowed_private_hosts=config.allowed_private_hosts,
        timeout_seconds=TIMEOUT_SECONDS,
        max_response_bytes=MAX_RESPONSE_BYTES,
    )


def _transport_error(what: str, exc: Exception) -> SsoError:
    if isinstance(exc, AddressRefused):
        return SsoError(
            "address_refused",
            f"The {what} is on an address this organization may not reach "
            "(list the host in allowed_private_hosts for a self-hosted provider).",
        )
    if isinstance(exc, ResponseTooLarge):
        return SsoError("fetch_failed", f"The {what} answer is too large.")
    if isinstance(exc, httpx.TimeoutException):
        return SsoError("fetch_failed", f"The {what} did not answer in time.")
    return SsoError("fetch_failed", f"The {what} could not be reached.")


def _check_url(config: OidcConfig, url: object, what: str) -> str:
    """An https URL, or http for a host the org lists as private; nothing else."""
    if not isinstance(url, str) or not url:
        raise SsoError("bad_response", f"The provider announces no {what}.")
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host or parts.username or parts.password or parts.fragment:
        raise SsoError("bad_response", f"The provider's {what} is not a usable URL.")
    if parts.scheme == "https":
        return url
    try:
        port = parts.port or 80
    except ValueError:
        raise SsoError("bad_response", f"The provider's {what} is not a usable URL.") from None
    listed = {entry.strip().lower() for entry in config.allowed_private_hosts}
    if parts.scheme == "http" and (host in listed or f"{host}:{port}" in listed):
        return url
    raise SsoError("address_refused", f"The provider's {what} must use https.")


def _get_json(
    client: httpx.Client, url: str, what: str, headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    try:
        response = client.get(url, headers={"Accept": "application/json", **(headers or {})})
    except httpx.HTTPError as exc:
        raise _transport_error(what, exc) from None
    if response.status_code != 200:
        raise SsoError("fetch_failed", f"The {what} answered HTTP {response.status_code}.")
    try:
        document = response.json()
    except ValueError:
        raise SsoError("bad_response", f"The {what} did not answer JSON.") from None
    if not isinstance(document, dict):
        raise SsoError("bad_response", f"The {what} did not answer a JSON object.")
    return document


# --- discovery and keys --------------------------------------------------------------


def _cache_key(config: OidcConfig, url: str) -> tuple[str, tuple[str, ...]]:
    return url, tuple(sorted(entry.strip().lower() for entry in config.allowed_private_hosts))


def discover(config: OidcConfig) -> ProviderMetadata:
    """The provider's discovery document, fetched or from the cache.

    Raises SsoError: ``bad_issuer`` when the document's issuer is not exactly the
    configured one, ``address_refused``/``fetch_failed``/``bad_response`` otherwise.
    """
    issuer = _check_url(config, config.issuer, "issuer")
    if urlsplit(issuer).query:
        raise SsoError("bad_response", "An issuer has no query string.")
    key = _cache_key(config, issuer)
    with _lock:
        cached = _discovery_cache.get(key)
    if cached is not None and clock.time() < cached[0]:
        return cached[1]
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    with _client(config) as client:
        document = _get_json(client, url, "discovery document")
    metadata = _parse_metadata(config, document)
    with _lock:
        _discovery_cache[key] = (clock.time() + DISCOVERY_TTL_SECONDS, metadata)
    return metadata


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(item for item in value if isinstance(item, str))
    return ()


def _parse_metadata(config: OidcConfig, document: dict[str, Any]) -> ProviderMetadata:
    # OpenID Connect Discovery 1.0, section 4.3: the issuer in the document MUST be
    # identical to the one the document was fetched for; compared as exact strings.
    if document.get("issuer") != config.issuer:
        raise SsoError(
            "bad_issuer",
            "The provider's discovery document names another issuer than the one configured.",
        )
    algorithms = _strings(document.get("id_token_signing_alg_values_supported"))
    userinfo = document.get("userinfo_endpoint")
    methods = _strings(document.get("token_endpoint_auth_methods_supported"))
    return ProviderMetadata(
        issuer=config.issuer,
        authorization_endpoint=_check_url(
            config, document.get("authorization_endpoint"), "authorization endpoint"
        ),
        token_endpoint=_check_url(config, document.get("token_endpoint"), "token endpoint"),
        jwks_uri=_check_url(config, document.get("jwks_uri"), "key set (jwks_uri)"),
        userinfo_endpoint=(
            _check_url(config, userinfo, "userinfo endpoint") if userinfo is not None else None
        ),
        id_token_algorithms=algorithms,
        token_endpoint_auth_methods=methods or ("client_secret_basic",),
        iss_parameter_supported=document.get("authorization_response_iss_parameter_supported")
        is True,
        raw=document,
    )


def _key_set(
    config: OidcConfig, metadata: ProviderMetadata, client: httpx.Client, *, refresh: bool
) -> KeySet:
    key = _cache_key(config, metadata.jwks_uri)
    with _lock:
        cached = _jwks_cache.get(key)
    if cached is not None and not refresh and clock.time() < cached[0]:
        return cached[1]
    document = _get_json(client, metadata.jwks_uri, "key set (jwks_uri)")
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise SsoError("bad_response", "The provider's key set has no keys.")
    usable = []
    for entry in keys:
        # Keys for encryption, private keys and keys of other types are not ours to use.
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or "d" in entry:
            continue
        if entry.get("kty") not in ("RSA", "EC", "OKP"):
            continue
        try:
            usable.append(KeySet.import_key_set({"keys": [entry]}).keys[0])
        except (JoseError, ValueError, TypeError):
            continue  # one malformed key does not take the others down
    key_set = KeySet(usable)
    with _lock:
        _jwks_cache[key] = (clock.time() + JWKS_TTL_SECONDS, key_set)
    return key_set


def _pick_key(key_set: KeySet, kid: object, key_type: str) -> Any | None:
    candidates = [key for key in key_set.keys if key.key_type == key_type]
    if isinstance(kid, str):
        candidates = [key for key in candidates if key.kid == kid]
        return candidates[0] if candidates else None
    # No kid: only unambiguous when the set has one key of the algorithm's type.
    return candidates[0] if len(candidates) == 1 else None


# --- the flow ----------------------------------------------------------------------------


class _HttpxClientAuth(httpx.Auth):
    """Authlib's client authentication (``client_secret_basic``/``_post``) as an httpx auth."""

    requires_request_body = True

    def __init__(self, client_id: str, client_secret: str, auth_method: str) -> None:
        self._auth = ClientAuth(client_id, client_secret, auth_method)

    def auth_flow(self, request: httpx.Request):
        url, headers, body = self._auth.prepare(
            request.method, str(request.url), dict(request.headers), request.content.decode()
        )
        headers.pop("Content-Length", None)
        headers.pop("content-length", None)
        yield httpx.Request(request.method, url, headers=headers, content=body.encode())


class _OAuthClient(OAuth2Client):
    client_auth_class = _HttpxClientAuth


def _oauth_client(
    config: OidcConfig, metadata: ProviderMetadata, session: httpx.Client | None
) -> _OAuthClient:
    methods = metadata.token_endpoint_auth_methods
    method = "client_secret_basic"
    if "client_secret_basic" not in methods and "client_secret_post" in methods:
        method = "client_secret_post"
    return _OAuthClient(
        session,
        client_id=config.client_id,
        client_secret=config.client_secret,
        token_endpoint_auth_method=method,
        code_challenge_method="S256",
    )


def authorization_request(
    config: OidcConfig, redirect_uri: str, *, login_hint: str | None = None
) -> tuple[str, dict[str, Any]]:
    """The URL that starts a sign-in at the provider, and what to keep until it returns.

    ``kept`` (state, nonce, PKCE verifier, issuer, redirect URI, start time) holds
    no client secret; keep it server-side or in a signed session, never in the URL.
    Raises SsoError from discovery.
    """
    metadata = discover(config)
    state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(32)
    code_verifier = secrets.token_urlsafe(64)  # 86 unreserved characters (RFC 7636: 43-128)
    scopes = list(dict.fromkeys(("openid", *config.scopes)))
    extra = {"login_hint": login_hint} if login_hint else {}
    url, _ = _oauth_client(config, metadata, None).create_authorization_url(
        metadata.authorization_endpoint,
        state=state,
        code_verifier=code_verifier,
        nonce=nonce,
        redirect_uri=redirect_uri,
        scope=" ".join(scopes),
        **extra,
    )
    kept = {
        "issuer": config.issuer,
        "client_id": config.client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "nonce": nonce,
        "code_verifier": code_verifier,
        "started_at": int(clock.time()),
    }
    return url, kept


def _param(query: Mapping[str, Any], name: str) -> str | None:
    value = query.get(name)
    if isinstance(value, list | tuple):
        if len(value) != 1:  # repeated: never pick one of several
            raise SsoError("bad_response", f"The sign-in answer repeats {name}.")
        value = value[0]
    return value if isinstance(value, str) else None


def _same(a: object, b: object) -> bool:
    return isinstance(a, str) and isinstance(b, str) and hmac.compare_digest(a, b)


_SAFE_TEXT = re.compile(r"[^\w .,:;'()/+-]")


def _safe_text(text: str | None, limit: int = 200) -> str:
    """A provider-supplied string fit for a message shown to people (no markup, short)."""
    return _SAFE_TEXT.sub("", text or "")[:limit].strip()


def complete(
    config: OidcConfig, redirect_uri: str, query: Mapping[str, Any], kept: Mapping[str, Any]
) -> Claims:
    """Check the provider's answer at ``redirect_uri``, redeem the code, verify the
    ID token (and userinfo) and return the person's claims.

    ``query`` is the callback's query parameters; ``kept`` what
    ``authorization_request`` returned. Raises SsoError (reasons in the module
    docstring); never returns unverified claims.
    """
    # The flow: the answer belongs to the request this browser started.
    if not _same(_param(query, "state"), kept.get("state")):
        raise SsoError("bad_state", "The sign-in answer does not match a sign-in in progress.")
    if (
        kept.get("issuer") != config.issuer
        or kept.get("client_id") != config.client_id
        or kept.get("redirect_uri") != redirect_uri
    ):
        raise SsoError("bad_flow", "The sign-in was started for another identity provider.")
    started_at = kept.get("started_at")
    if not isinstance(started_at, int) or clock.time() - started_at > FLOW_TTL_SECONDS:
        raise SsoError("bad_flow", "The sign-in took too long; start again.")
    metadata = discover(config)
    iss = _param(query, "iss")
    if iss is not None or metadata.iss_parameter_supported:
        if iss != metadata.issuer:
            raise SsoError("bad_issuer", "The sign-in answer comes from another issuer.")
    error = _param(query, "error")
    if error is not None:
        description = _safe_text(_param(query, "error_description"))
        detail = f" ({description})" if description else ""
        raise SsoError(
            "idp_error",
            f"The identity provider refused the sign-in: {_safe_text(error, 64)}{detail}.",
        )
    code = _param(query, "code")
    if not code:
        raise SsoError("bad_response", "The sign-in answer carries no authorization code.")

    with _client(config) as client:
        token = _redeem(config, metadata, client, redirect_uri, code, kept)
        id_claims = _verify_id_token(config, metadata, client, token, kept)
        userinfo: dict[str, Any] = {}
        if metadata.userinfo_endpoint is not None:
            userinfo = _userinfo(metadata.userinfo_endpoint, client, token, id_claims["sub"])
    return _claims(config, id_claims, userinfo)


def _redeem(
    config: OidcConfig,
    metadata: ProviderMetadata,
    client: httpx.Client,
    redirect_uri: str,
    code: str,
    kept: Mapping[str, Any],
) -> dict[str, Any]:
    oauth = _oauth_client(config, metadata, client)
    try:
        token = oauth.fetch_token(
            metadata.token_endpoint,
            grant_type="authorization_code",
            code=code,
            redirect_uri=redirect_uri,
            code_verifier=kept.get("code_verifier"),
        )
    except OAuth2Error as exc:
        # The provider's own error code (invalid_grant, invalid_client, ...); its
        # description is shown trimmed: it is the provider's text, not ours.
        description = _safe_text(exc.description).replace(config.client_secret, "")
        detail = f" ({description})" if description else ""
        raise SsoError(
            "token_error",
            f"The identity provider refused to redeem the sign-in: "
            f"{_safe_text(exc.error, 64)}{detail}.",
        ) from None
    except httpx.HTTPStatusError as exc:
        raise SsoError(
            "token_error",
            f"The token endpoint answered HTTP {exc.response.status_code}.",
        ) from None
    except httpx.HTTPError as exc:
        raise _transport_error("token endpoint", exc) from None
    except ValueError:
        raise SsoError("bad_response", "The token endpoint did not answer JSON.") from None
    if str(token.get("token_type", "")).lower() != "bearer":
        raise SsoError("bad_response", "The token endpoint answered no bearer token.")
    if not isinstance(token.get("id_token"), str):
        raise SsoError("bad_response", "The token endpoint answered no ID token.")
    return dict(token)


def _verify_id_token(
    config: OidcConfig,
    metadata: ProviderMetadata,
    client: httpx.Client,
    token: Mapping[str, Any],
    kept: Mapping[str, Any],
) -> dict[str, Any]:
    id_token = token["id_token"]
    try:
        header = jws.extract_compact(id_token.encode()).protected
    except (JoseError, ValueError, TypeError):
        raise SsoError("bad_token", "The ID token is not a signed JWT.") from None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        raise SsoError("bad_algorithm", "The ID token's signature algorithm is not accepted.")
    if alg not in metadata.id_token_algorithms:
        raise SsoError(
            "bad_algorithm", "The ID token is signed with an algorithm the provider does not use."
        )
    key_type = ALGORITHMS[alg]
    kid = header.get("kid")
    key = _pick_key(_key_set(config, metadata, client, refresh=False), kid, key_type)
    if key is None:
        # Key rotation: the provider may have published a new key since we cached its set.
        key = _pick_key(_key_set(config, metadata, client, refresh=True), kid, key_type)
    if key is None:
        raise SsoError(
            "unknown_key", "The ID token is signed with a key the provider does not list."
        )
    try:
        verified = jws.deserialize_compact(id_token, key, algorithms=[alg])
    except BadSignatureError:
        raise SsoError("bad_signature", "The ID token's signature is not valid.") from None
    except (JoseError, ValueError, TypeError):
        raise SsoError("bad_token", "The ID token could not be verified.") from None
    try:
        claims = json.loads(verified.payload)
    except ValueError:
        raise SsoError("bad_token", "The ID token's payload is not JSON.") from None
    if not isinstance(claims, dict):
        raise SsoError("bad_token", "The ID token's payload is not a JSON object.")
    _validate_claims(config, claims, kept, token, alg)
    return claims


_CLAIM_REASONS = {
    "iss": ("bad_issuer", "The ID token comes from another issuer."),
    "aud": ("bad_audience", "The ID token was issued for another application."),
    "exp": ("expired", "The ID token has expired."),
    "nbf": ("not_yet_valid", "The ID token is not valid yet."),
    "iat": ("not_yet_valid", "The ID token was issued in the future."),
    "sub": ("missing_claim", "The ID token names no subject."),
}


def _validate_claims(
    config: OidcConfig,
    claims: dict[str, Any],
    kept: Mapping[str, Any],
    token: Mapping[str, Any],
    alg: str,
) -> None:
    registry = JWTClaimsRegistry(
        now=lambda: int(clock.time()),
        leeway=LEEWAY_SECONDS,
        iss={"essential": True, "value": config.issuer},
        aud={"essential": True, "value": config.client_id},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
    )
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        raise SsoError("expired", "The ID token has expired.") from None
    except MissingClaimError as exc:
        raise SsoError("missing_claim", f"The ID token lacks {exc.claim}.") from None
    except ClaimError as exc:
        reason, message = _CLAIM_REASONS.get(exc.claim, ("bad_token", "The ID token is invalid."))
        raise SsoError(reason, message) from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    azp = claims.get("azp")
    if azp is not None and azp != config.client_id:
        raise SsoError("bad_audience", "The ID token was issued for another application.")
    if len(audiences) > 1 and azp is None:
        raise SsoError("bad_audience", "The ID token has several audiences and no azp.")
    if not _same(claims.get("nonce"), kept.get("nonce")):
        raise SsoError("bad_nonce", "The ID token does not belong to this sign-in (nonce).")
    at_hash = claims.get("at_hash")
    access_token = token.get("access_token")
    if at_hash is not None:
        hash_alg = "EdDSA" if ALGORITHMS[alg] == "OKP" else alg  # Ed25519 hashes with SHA-512
        expected = (
            create_half_hash(access_token, hash_alg) if isinstance(access_token, str) else None
        )
        if expected is None or not _same(at_hash, expected.decode()):
            raise SsoError("bad_token", "The ID token does not match the access token (at_hash).")


def _userinfo(
    url: str, client: httpx.Client, token: Mapping[str, Any], subject: str
) -> dict[str, Any]:
    access_token = token.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        return {}
    document = _get_json(
        client, url, "userinfo endpoint", headers={"Authorization": f"Bearer {access_token}"}
    )
    # OpenID Connect Core 5.3.2: the userinfo sub MUST equal the ID token's, or the
    # answer must not be used (it could be another person's).
    if document.get("sub") != subject:
        raise SsoError("bad_subject", "The userinfo answer is about another person.")
    return document


def _lookup(claims: Mapping[str, Any], name: str) -> object:
    if name in claims:
        return claims[name]
    value: object = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _groups(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, Iterable) and not isinstance(value, Mapping | bytes):
        return tuple(dict.fromkeys(item for item in value if isinstance(item, str) and item))
    return ()


def _claims(config: OidcConfig, id_claims: dict[str, Any], userinfo: dict[str, Any]) -> Claims:
    merged = {**userinfo, **id_claims}  # the signed ID token wins
    # email and email_verified from one source, so a verified flag never vouches for
    # an address it was not issued with.
    source = id_claims if isinstance(id_claims.get("email"), str) else userinfo
    email = source.get("email")
    email = email.strip() if isinstance(email, str) else ""
    email_verified = bool(email) and source.get("email_verified") is True
    name = merged.get("name")
    if not isinstance(name, str) or not name:
        given = " ".join(
            part
            for part in (merged.get("given_name"), merged.get("family_name"))
            if isinstance(part, str)
        )
        name = given
    raw = {key: value for key, value in merged.items() if key not in ("nonce", "at_hash")}
    return Claims(
        provider_kind="oidc",
        subject=id_claims["sub"],
        email=email,
        email_verified=email_verified,
        name=name.strip(),
        groups=_groups(_lookup(merged, config.groups_claim)),
        raw=raw,
    )
