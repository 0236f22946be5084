"""``GET /metrics``: the Prometheus text exposition (docs/metrics.md, "Scraping").

Two ways in, both as ``Authorization: Bearer <credential>``:

- the operator's scrape token ``INFERIA_METRICS_TOKEN`` (compared in constant time):
  every series of every process;
- an Inferia API key or access token whose org grants ``metrics:read``: that org's
  series only (samples labelled ``org=<its slug>``; nothing global). The org is the
  key's own, or for an access token the one named by ``?org=<slug>`` (or the user's
  only membership), resolved by the one resolver (``keys.resolver``) exactly as the
  gateway resolves ``OpenAI-Organization``.

No credential: 401; a credential without ``metrics:read``: 403; an org the credential
does not belong to: 404. Each decision on an Inferia credential is audited
(``auth:metrics`` before an org is known, ``metrics:read`` after); the operator's
token is not an Inferia principal and its scrapes are not audited.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from audit.services import record as audit_record
from inferia import metrics
from inferia.authentication import CREDENTIAL_HELP, bearer_credential
from inferia.errors import (
    AuthenticationFailed,
    ErrorCode,
    InferiaError,
    NotFound,
    PermissionDenied,
    error_response,
    response_for_error,
)
from inferia.request_meta import RequestMeta
from keys import delegation, resolver
from orgs.access import Access
from orgs.models import slug_validator

PERMISSION = "metrics:read"


def _page(body: bytes) -> HttpResponse:
    return HttpResponse(body, content_type=metrics.CONTENT_TYPE)


def _org_access(raw: str, org_hint: str) -> Access:
    """The Access of an Inferia credential in the org it scrapes; raises
    AUTHENTICATION_FAILED, NOT_FOUND, TWO_FACTOR_REQUIRED or SERVICE_UNAVAILABLE."""
    if delegation.looks_delegated(raw):
        # A delegated credential serves the gateway's embedding calls only.
        raise AuthenticationFailed(f"Not a credential for /metrics. {CREDENTIAL_HELP}")
    if org_hint:
        # Anything that cannot be a slug names no org (and never reaches the database).
        try:
            slug_validator(org_hint)
        except DjangoValidationError:
            raise NotFound("Organization not found") from None
    org_id = resolver.gateway_org_id(raw, org_hint)
    access = resolver.resolve_for_org_id(raw, org_id)
    if org_hint and access.org.slug != org_hint:
        # A key belongs to one org: naming another one finds nothing.
        raise NotFound("Organization not found")
    return access


# Bearer credentials only, never a session cookie: nothing for CSRF to protect, and a
# POST gets the contract's 405 rather than a CSRF page.
@csrf_exempt
@never_cache
@require_GET
def metrics_page(request: HttpRequest) -> HttpResponse:
    if not metrics.enabled():
        return error_response(ErrorCode.NOT_FOUND, "Not found", 404)
    meta = RequestMeta.from_http(request)
    access: Access | None = None
    try:
        raw = bearer_credential(request)
        if raw is None:
            raise AuthenticationFailed(
                f"Send the scrape token or an Inferia credential as 'Authorization: Bearer <x>'"
                f" ({CREDENTIAL_HELP})"
            )
        token = settings.INFERIA_METRICS_TOKEN
        if token and hmac.compare_digest(raw.encode(), token.encode()):
            return _page(metrics.exposition())
        access = _org_access(raw, request.GET.get("org", "").strip())
        if not access.can(PERMISSION):
            raise PermissionDenied(f"Missing permission {PERMISSION}")
    except InferiaError as error:
        if access is None:
            audit_record(
                action="auth:metrics",
                outcome="denied",
                status_code=error.status,
                meta=meta,
                data={"error_code": str(error.code)},
            )
        else:
            _audit_scrape(access, "denied", error.status, meta)
        response = response_for_error(error)
        if error.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    _audit_scrape(access, "allowed", 200, meta)
    return _page(metrics.exposition(access.org.slug))


def _audit_scrape(access: Access, outcome: str, status: int, meta: RequestMeta | None) -> None:
    """The audit record of an org-scoped scrape's decision."""
    audit_record(
        action=PERMISSION,
        outcome=outcome,
        org=access.org,
        actor=access.user,
        actor_label=access.actor_label,
        status_code=status,
        meta=meta,
    )
