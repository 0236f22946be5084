"""SSO pages: ``/auth/sso/{org}`` (start; a picker when several providers), the OIDC
callback, the SAML ACS and metadata, the finishing step, "Sign in with SSO" by
e-mail, and the org's SSO settings pages (providers, domains, mapping rules,
``enforce_sso``).

Starting is a POST from our own page (CSRF token): a link elsewhere cannot start a
flow in someone's browser. A dashboard flow ends only in the browser session that
started it (the flow id is kept in that session), so nobody can sign a victim into
the attacker's account (login CSRF).
"""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import login as django_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from inferia.errors import InferiaError
from inferia.request_meta import RequestMeta, public_url
from inferia.request_types import OrgPageRequest
from orgs import selectors as org_selectors
from orgs.models import Organization
from orgs.pages import (
    apply_error,
    confirmation_page,
    error_page,
    org_page,
    page_context,
    post_action,
)
from orgs.scoping import org_scope
from orgs.services import auth, tenancy
from sso import forms, protocols, selectors, services
from sso.errors import SsoError
from sso.models import FlowPurpose, IdentityProvider, ProviderKind, SsoFlow

SESSION_FLOWS_KEY = "sso_flows"
MAX_SESSION_FLOWS = 5


def _meta(request: HttpRequest) -> RequestMeta | None:
    return RequestMeta.from_http(request)


def _base_url(request: HttpRequest) -> str:
    return public_url(_meta(request))


def _org(slug: str) -> Organization | None:
    return Organization.objects.filter(slug=slug).first()


def _by_id(queryset, value: str | None):
    """The row of a posted id in a scoped queryset; None for a missing or malformed id."""
    try:
        return queryset.filter(pk=uuid.UUID(str(value))).first()
    except ValueError:
        return None


def _done(call, message: str):
    """``post_action``'s action: run the service, then the success message."""

    def action() -> str:
        call()
        return message

    return action


def _refused_page(request: HttpRequest, org: Organization, message: str, status: int = 403):
    return render(request, "sso/refused.html", {"sso_org": org, "message": message}, status=status)


# --- signing in ------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def start(request: HttpRequest, org: str) -> HttpResponse:
    """GET: the org's providers (a button each). POST (CSRF-checked): start one."""
    organization = _org(org)
    providers: list[IdentityProvider] = []
    if organization is not None:
        with org_scope(organization):
            providers = list(selectors.identity_provider_enabled_list())
    if organization is None or not providers:
        return error_page(request, 404, "This organization has no single sign-on.")
    next_url = request.POST.get("next") or request.GET.get("next", "")
    if request.method == "GET":
        return render(
            request,
            "sso/start.html",
            {"sso_org": organization, "providers": providers, "next": next_url},
        )
    provider = next((p for p in providers if str(p.pk) == request.POST.get("provider")), None)
    if provider is None and len(providers) == 1:
        provider = providers[0]
    if provider is None:
        return error_page(request, 404, "Choose one of the identity providers.")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = ""
    try:
        url, flow = services.flow_start(
            org=organization,
            provider=provider,
            purpose=FlowPurpose.DASHBOARD,
            base_url=_base_url(request),
            next_url=next_url,
        )
    except SsoError as exc:
        services.sso_refusal_record(
            org=organization, provider=provider, reason=exc.reason, meta=_meta(request)
        )
        return _refused_page(request, organization, exc.message, status=502)
    flows = [str(flow.pk), *request.session.get(SESSION_FLOWS_KEY, [])][:MAX_SESSION_FLOWS]
    request.session[SESSION_FLOWS_KEY] = flows
    return redirect(url)


@require_GET
def oidc_callback(request: HttpRequest, org: str) -> HttpResponse:
    organization = _org(org)
    if organization is None:
        return error_page(request, 404)
    taken = services.flow_take(org=organization, state=request.GET.get("state", ""))
    if taken is None:
        services.sso_refusal_record(
            org=organization, provider=None, reason="bad_state", meta=_meta(request)
        )
        return _refused_page(
            request, organization, "This sign-in link is invalid, used or expired."
        )
    flow, kept = taken
    try:
        claims = protocols.complete_oidc(
            flow.provider,
            base_url=_base_url(request),
            # Every value of every parameter: a repeated one is refused, never picked.
            query=dict(request.GET.lists()),
            kept=kept,
        )
    except SsoError as exc:
        return _protocol_refused(request, flow, exc)
    return _after_protocol(request, flow, claims)


@csrf_exempt  # the IdP posts cross-site; the signed response and the flow are the proof
@require_POST
def saml_acs(request: HttpRequest, org: str, provider_id) -> HttpResponse:
    organization = _org(org)
    if organization is None:
        return error_page(request, 404)
    taken = services.flow_take(org=organization, state=request.POST.get("RelayState", ""))
    if taken is None or str(taken[0].provider_id) != str(provider_id):
        services.sso_refusal_record(
            org=organization, provider=None, reason="bad_state", meta=_meta(request)
        )
        return _refused_page(request, organization, "This sign-in is invalid, used or expired.")
    flow, kept = taken
    try:
        claims = protocols.complete_saml(
            flow.provider,
            base_url=_base_url(request),
            saml_response=request.POST.get("SAMLResponse", ""),
            kept=kept,
        )
    except SsoError as exc:
        return _protocol_refused(request, flow, exc)
    return _after_protocol(request, flow, claims)


@require_GET
def saml_metadata(request: HttpRequest, org: str, provider_id) -> HttpResponse:
    organization = _org(org)
    if organization is None:
        return error_page(request, 404)
    with org_scope(organization):
        provider = selectors.identity_provider_get(provider_id)
    if provider is None or provider.kind != ProviderKind.SAML:
        return error_page(request, 404)
    xml = protocols.sp_metadata(provider, base_url=_base_url(request))
    return HttpResponse(xml, content_type="application/samlmetadata+xml")


def _protocol_refused(request: HttpRequest, flow: SsoFlow, exc: SsoError) -> HttpResponse:
    services.sso_refusal_record(
        org=flow.provider.org, provider=flow.provider, reason=exc.reason, meta=_meta(request)
    )
    message = f"Sign-in refused: {exc.message}"
    if flow.purpose == FlowPurpose.API:
        return _to_client(flow, error=message)
    return _refused_page(request, flow.provider.org, message)


def _to_client(flow: SsoFlow, *, code: str = "", error: str = "") -> HttpResponse:
    """The end of an API flow: back to the client's loopback ``redirect_uri`` with the
    one-time ``code``, or with ``error=access_denied`` and the reason (RFC 6749
    4.1.2.1), so the waiting CLI learns the outcome instead of timing out."""
    if code:
        query = {"code": code}
    else:
        query = {"error": "access_denied", "error_description": error[:300]}
    return redirect(f"{flow.client_redirect_uri}?{urlencode(query)}")


def _after_protocol(request: HttpRequest, flow: SsoFlow, claims) -> HttpResponse:
    org = flow.provider.org
    if flow.purpose == FlowPurpose.API:
        try:
            user = services.sign_in(
                org=org, provider=flow.provider, claims=claims, meta=_meta(request)
            )
        except InferiaError as exc:
            return _to_client(flow, error=exc.message)
        return _to_client(flow, code=services.flow_exchange_code(flow=flow, user=user))
    services.flow_keep_claims(flow=flow, claims=claims)
    return redirect(reverse("sso:finish", kwargs={"org": org.slug}) + f"?flow={flow.pk}")


@require_GET
def finish(request: HttpRequest, org: str) -> HttpResponse:
    """The browser that started a dashboard flow signs in with its verified claims."""
    organization = _org(org)
    flow_id = request.GET.get("flow", "")
    if organization is None:
        return error_page(request, 404)
    if flow_id not in request.session.get(SESSION_FLOWS_KEY, []):
        services.sso_refusal_record(
            org=organization, provider=None, reason="session_mismatch", meta=_meta(request)
        )
        return _refused_page(
            request, organization, "This sign-in was started in another browser session."
        )
    taken = services.flow_take_claims(org=organization, flow_id=flow_id)
    if taken is None:
        return _refused_page(request, organization, "This sign-in is invalid, used or expired.")
    flow, claims = taken
    request.session[SESSION_FLOWS_KEY] = [
        f for f in request.session.get(SESSION_FLOWS_KEY, []) if f != flow_id
    ]
    try:
        user = services.sign_in(
            org=organization, provider=flow.provider, claims=claims, meta=_meta(request)
        )
    except InferiaError as exc:
        return _refused_page(request, organization, exc.message)
    # A new session (rotated key, its own login family through user_logged_in).
    django_login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    auth.login_record(meta=_meta(request), user=user, via="sso")
    messages.success(request, f"Signed in as {user.username} through {flow.provider.label}.")
    return redirect(
        flow.next_url or reverse("keys:org-overview", kwargs={"org": organization.slug})
    )


@require_http_methods(["GET", "POST"])
def by_email(request: HttpRequest) -> HttpResponse:
    """ "Sign in with SSO" on the login page: the org that verified the e-mail's domain."""
    form = forms.SsoEmailForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        providers = services.providers_for_email(form.cleaned_data["email"])
        if providers:
            target = reverse("sso:start", kwargs={"org": providers[0].org.slug})
            next_url = request.POST.get("next", "")
            return redirect(target + (f"?{urlencode({'next': next_url})}" if next_url else ""))
        form.add_error("email", "No organization signs in this e-mail domain with SSO.")
    return render(
        request,
        "sso/by_email.html",
        {"form": form, "next": request.POST.get("next") or request.GET.get("next", "")},
        status=400 if form.errors else 200,
    )


# --- the org's SSO settings ------------------------------------------------------------------


@org_page("sso:manage")
def settings_page(request: OrgPageRequest, org: Organization) -> HttpResponse:
    """Providers (add OIDC / SAML), domains (claim, confirm), ``enforce_sso``."""
    roles = list(org_selectors.role_list())
    op = request.POST.get("op") if request.method == "POST" else None
    provider_form = forms.IdentityProviderForm(
        request.POST if op == "provider_create" else None, roles=roles, creating=True
    )
    domain_form = forms.DomainClaimForm(request.POST if op == "domain_claim" else None)
    meta = _meta(request)
    here = reverse("sso:settings", kwargs={"org": org.slug})
    if op == "provider_create" and provider_form.is_valid():
        try:
            data = provider_form.service_fields()
            provider = services.identity_provider_create(access=request.access, meta=meta, **data)
        except InferiaError as exc:
            apply_error(provider_form, request, exc)
        else:
            messages.success(request, f"Identity provider {provider.name} added.")
            return redirect("sso:provider-update", org=org.slug, provider_id=provider.pk)
    elif op == "domain_claim" and domain_form.is_valid():
        try:
            claimed = services.domain_claim(
                access=request.access, domain=domain_form.cleaned_data["domain"], meta=meta
            )
        except InferiaError as exc:
            apply_error(domain_form, request, exc)
        else:
            messages.success(request, f"{claimed.domain} claimed; an Owner confirms it.")
            return redirect(here)
    elif op in ("domain_confirm", "domain_delete", "enforce_sso"):
        return _settings_action(request, org, op, here)
    failed = bool(provider_form.errors or domain_form.errors)
    return render(
        request,
        "sso/settings.html",
        page_context(
            request,
            providers=list(selectors.identity_provider_list()),
            domains=list(selectors.domain_list()),
            provider_form=provider_form,
            domain_form=domain_form,
            enforce_sso=org.policy.enforce_sso,
            base_url=_base_url(request),
        ),
        status=400 if failed else 200,
    )


def _settings_action(request: OrgPageRequest, org: Organization, op: str, here: str):
    meta = _meta(request)
    if op == "enforce_sso":
        wanted = request.POST.get("enforce_sso") == "on"

        def toggle() -> str:
            tenancy.organization_update(
                access=request.access, changes={"settings": {"enforce_sso": wanted}}, meta=meta
            )
            return "SSO is now enforced." if wanted else "SSO is no longer enforced."

        return post_action(request, toggle, redirect_to=here)
    domain = _by_id(selectors.domain_list(), request.POST.get("domain_id"))
    if domain is None:
        return error_page(request, 404)
    if op == "domain_delete":
        if ask := confirmation_page(
            request,
            title=f"Give up {domain.domain}?",
            consequence="People of this domain are no longer provisioned or linked by SSO.",
            button="Yes, remove it",
            cancel_url=here,
        ):
            return ask
        return post_action(
            request,
            _done(
                lambda: services.domain_delete(access=request.access, domain=domain, meta=meta),
                f"{domain.domain} removed.",
            ),
            redirect_to=here,
        )
    return post_action(
        request,
        lambda: services.domain_confirm(
            access=request.access,
            domain=domain,
            challenge=request.POST.get("challenge", ""),
            meta=meta,
        ).domain
        + " is verified.",
        redirect_to=here,
    )


@org_page("sso:manage")
def provider_update(request: OrgPageRequest, org: Organization, provider_id) -> HttpResponse:
    """Edit, disable or delete a provider; its group mapping rules."""
    provider = selectors.identity_provider_get(provider_id)
    if provider is None:
        return error_page(request, 404)
    roles = list(org_selectors.role_list())
    teams = list(org_selectors.team_list())
    op = request.POST.get("op") if request.method == "POST" else None
    meta = _meta(request)
    here = reverse("sso:provider-update", kwargs={"org": org.slug, "provider_id": provider.pk})
    form = forms.IdentityProviderForm(
        request.POST if op == "update" else None,
        roles=roles,
        creating=False,
        kind=provider.kind,
        initial=forms.IdentityProviderForm.initial_for(provider),
    )
    mapping_form = forms.MappingForm(
        request.POST if op == "mapping_create" else None, roles=roles, teams=teams
    )
    if op == "update" and form.is_valid():
        try:
            data = form.service_fields()
            enabled = data.pop("is_enabled", provider.is_enabled)
            services.identity_provider_set_enabled(
                access=request.access, provider=provider, enabled=enabled, meta=meta
            )
            services.identity_provider_update(
                access=request.access,
                provider=provider,
                changes={
                    k: v
                    for k, v in data.items()
                    if k not in ("name", "kind", "client_secret", "otp_code")
                },
                client_secret=data.get("client_secret") or None,
                otp_code=data.get("otp_code") or None,
                meta=meta,
            )
        except InferiaError as exc:
            apply_error(form, request, exc)
        else:
            messages.success(request, f"{provider.name} saved.")
            return redirect(here)
    elif op == "mapping_create" and mapping_form.is_valid():
        data = mapping_form.cleaned_data
        try:
            services.mapping_create(
                access=request.access,
                provider=provider,
                group=data["group"],
                role=org_selectors.role_get_by_ref(data["role"]) if data["role"] else None,
                team=next((t for t in teams if t.slug == data["team"]), None),
                meta=meta,
            )
        except InferiaError as exc:
            apply_error(mapping_form, request, exc)
        else:
            messages.success(request, f"Rule for group {data['group']} added.")
            return redirect(here)
    elif op == "mapping_delete":
        rule = _by_id(selectors.mapping_list(provider), request.POST.get("rule_id"))
        if rule is None:
            return error_page(request, 404)
        return post_action(
            request,
            _done(
                lambda: services.mapping_delete(access=request.access, rule=rule, meta=meta),
                f"Rule for group {rule.group} deleted.",
            ),
            redirect_to=here,
        )
    elif op == "delete":
        if ask := confirmation_page(
            request,
            title=f"Delete identity provider {provider.name}?",
            consequence="Its links, mapping rules and sign-ins stop; roles and teams it "
            "granted stay as they are.",
            button="Yes, delete it",
            cancel_url=here,
        ):
            return ask
        return post_action(
            request,
            _done(
                lambda: services.identity_provider_delete(
                    access=request.access, provider=provider, meta=meta
                ),
                f"{provider.name} deleted.",
            ),
            redirect_to=reverse("sso:settings", kwargs={"org": org.slug}),
        )
    failed = bool(form.errors or mapping_form.errors)
    return render(
        request,
        "sso/provider_form.html",
        page_context(
            request,
            provider=provider,
            form=form,
            mapping_form=mapping_form,
            mappings=list(selectors.mapping_list(provider)),
            redirect_uri=protocols.oidc_redirect_uri(_base_url(request), provider),
            acs_url=protocols.saml_acs_url(_base_url(request), provider),
            sp_entity_id=protocols.saml_entity_id(_base_url(request), provider),
        ),
        status=400 if failed else 200,
    )
