"""Dashboard pages of gateway/: the provider account's "test connection" button (it
calls the provider through the gateway's own upstream path, so it lives here; keys/
may not import gateway/)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from gateway import probe
from inferia.errors import InferiaError
from inferia.request_meta import RequestMeta
from inferia.request_types import OrgPageRequest
from keys import selectors
from orgs.models import Organization
from orgs.pages import apply_error, error_page, org_page


@require_POST
@org_page("provider_account:manage")
def provider_account_test(request: OrgPageRequest, org: Organization, account_id) -> HttpResponse:
    account = selectors.provider_account_list().filter(pk=account_id).first()
    if account is None:
        return error_page(request, 404)
    try:
        result = probe.provider_account_test(
            access=request.access, account=account, meta=RequestMeta.from_http(request)
        )
    except InferiaError as exc:
        apply_error(None, request, exc)
    else:
        if result.ok:
            messages.success(request, f"Connection test passed. {result.message}")
        else:
            messages.error(request, f"Connection test failed. {result.message}")
    return redirect("keys:provider-account-update", org=org.slug, account_id=account.pk)
