"""What every dashboard page shares: ``org_page`` (org, Access, scope), error pages,
turning a service's ``InferiaError`` into form errors, and the two shapes of a page
that changes something: ``form_page`` (a form, then a redirect) and ``post_action``
(a POST that acts, then a redirect).

Pages in every app import these from here (``orgs.views`` re-exports ``org_page``),
so apps do not import each other's views.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse

from audit import services as audit
from inferia.errors import InferiaError, NotFound, TwoFactorRequired
from inferia.request_meta import RequestMeta
from inferia.request_types import OrgPageRequest
from orgs.access import PERMISSION_SET, resolve_member
from orgs.models import Organization, User
from orgs.scoping import org_scope

T = TypeVar("T")


def login_redirect(request: HttpRequest) -> HttpResponse:
    return redirect(f"{reverse('orgs:login')}?{urlencode({'next': request.get_full_path()})}")


def error_page(request: HttpRequest, status: int, message: str = "") -> HttpResponse:
    titles = {403: "Permission denied", 404: "Not found"}
    # Inside an org (a 403, or an unknown id of a page the user may open) the page keeps
    # the org's navigation: ``page_context`` carries what ``org_page`` resolved.
    return render(
        request,
        "errors/error.html",
        page_context(request, status=status, title=titles.get(status, "Error"), message=message),
        status=status,
    )


CONFIRM_FIELD = "confirm"
CONFIRM_VALUE = "yes"


def confirmation_page(
    request: HttpRequest,
    *,
    title: str,
    consequence: str,
    button: str,
    cancel_url: str,
    permission: str | None = None,
) -> HttpResponse | None:
    """Destructive POSTs ask first: ``None`` when the POST carries the confirmation
    flag (go on and act), else a page repeating the POST's fields with the flag set
    (nothing is changed yet). A plain form, so it works without JavaScript; with it,
    ``inferia.js`` asks in a ``<dialog>`` and sends the flag itself."""
    if request.POST.get(CONFIRM_FIELD) == CONFIRM_VALUE:
        return None
    access = getattr(request, "access", None)
    if permission is not None and (access is None or not access.can(permission)):
        # Nothing to confirm: the service refuses it, with its own message.
        return None
    fields = [
        (name, value)
        for name, values in request.POST.lists()
        if name not in ("csrfmiddlewaretoken", CONFIRM_FIELD)
        for value in values
    ]
    return render(
        request,
        "includes/confirm.html",
        page_context(
            request,
            title=title,
            consequence=consequence,
            button=button,
            cancel_url=cancel_url,
            fields=fields,
            action=request.path,
            confirm_field=CONFIRM_FIELD,
            confirm_value=CONFIRM_VALUE,
        ),
    )


def two_factor_setup_redirect(
    request: HttpRequest, organization: Organization, next_url: str | None = None
) -> HttpResponse:
    """The page's answer to TWO_FACTOR_REQUIRED: to 2FA setup, then back to ``next_url``
    (default: this page)."""
    messages.warning(
        request, f"{organization.name} requires two-factor authentication. Set it up first."
    )
    back = next_url or request.get_full_path()
    return redirect(f"{reverse('orgs:2fa-setup')}?{urlencode({'next': back})}")


class OrgPageView(Protocol):
    """A view wrapped by ``org_page``: called with the org's slug, it knows its permission."""

    required_permission: str

    def __call__(
        self, request: HttpRequest, org: str, *args: Any, **kwargs: Any
    ) -> HttpResponseBase: ...


def org_page(permission: str) -> Callable[[Callable[..., HttpResponseBase]], OrgPageView]:
    """A page of one org: a signed-in member (others: 404), 2FA when the org asks
    for it, ``permission`` held (else 403); the org scope is active in the view and
    ``request.access``/``request.org`` are set. The view takes ``(request, org, ...)``."""
    if permission not in PERMISSION_SET:
        raise ValueError(f"Unknown permission {permission}")

    def decorate(view: Callable[..., HttpResponseBase]) -> OrgPageView:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, org: str, *args: Any, **kwargs: Any) -> HttpResponseBase:
            user = request.user
            if not user.is_authenticated or not isinstance(user, User):
                return login_redirect(request)
            organization = Organization.objects.filter(slug=org).first()
            if organization is None:
                return error_page(request, 404, "No such organization, or you are not a member.")
            # The one resolver's user part; this edge maps its refusals to pages.
            try:
                access = resolve_member(organization, user)
            except NotFound:
                return error_page(request, 404, "No such organization, or you are not a member.")
            except TwoFactorRequired:
                audit.record(
                    action="auth:2fa_required",
                    outcome="denied",
                    org=organization,
                    actor=user,
                    status_code=302,
                    meta=RequestMeta.from_http(request),
                    data={"path": request.path, "method": request.method},
                )
                return two_factor_setup_redirect(request, organization)
            # From here on the request is an OrgPageRequest: the views rely on it.
            page_request = cast(OrgPageRequest, request)
            page_request.access = access
            page_request.org = organization
            with org_scope(organization):
                if not access.can(permission):
                    audit.record(
                        action=permission,
                        outcome="denied",
                        org=organization,
                        actor=user,
                        status_code=403,
                        meta=RequestMeta.from_http(request),
                        data={"path": request.path, "page": True},
                    )
                    return error_page(request, 403, f"Your role does not include {permission}.")
                return view(page_request, organization, *args, **kwargs)

        page = cast(OrgPageView, wrapper)
        page.required_permission = permission
        return page

    return decorate


def apply_error(form: forms.Form | None, request: HttpRequest, exc: InferiaError) -> None:
    """Show a service's refusal: details keyed by a form field go to that field, the
    rest (and the message) to the form's non-field errors, or a message without a form."""
    details = exc.details if isinstance(exc.details, dict) else {}
    placed = False
    if form is not None:
        for key, problems in details.items():
            problems = problems if isinstance(problems, list) else [problems]
            if key in form.fields:
                for problem in problems:
                    form.add_error(key, str(problem))
                placed = True
        form.add_error(None, exc.message)
        if not placed:
            for key, problems in details.items():
                if key not in form.fields and isinstance(problems, list):
                    for problem in problems:
                        form.add_error(None, f"{key}: {problem}")
    else:
        messages.error(request, exc.message)


def post_refused(request: OrgPageRequest, permission: str) -> HttpResponse | None:
    """A POST to a page that also shows read-only content: 403 unless ``permission`` is held
    (the service would refuse too; this answers before a form is even read)."""
    if request.method == "POST" and not request.access.can(permission):
        audit.record(
            action=permission,
            outcome="denied",
            org=request.access.org,
            actor=request.user,
            status_code=403,
            meta=RequestMeta.from_http(request),
            data={"path": request.path, "page": True},
        )
        return error_page(request, 403, f"Your role does not include {permission}.")
    return None


def page_context(request: HttpRequest, **extra) -> dict:
    return {
        "org": getattr(request, "org", None),
        "access": getattr(request, "access", None),
        **extra,
    }


def form_page(
    request: HttpRequest,
    form: forms.Form,
    *,
    save: Callable[[], T],
    success: str | Callable[[T], str],
    redirect_to: str | Callable[[T], str],
    template: str,
    context: Callable[[], dict],
) -> HttpResponse:
    """A page with a form that a service saves: on a valid POST, ``save()``; done, the
    ``success`` message and a redirect (both may depend on what ``save`` returned);
    refused, the error on the form. Else the page, with ``context()`` built only then,
    and 400 while the form has errors."""
    if request.method == "POST" and form.is_valid():
        try:
            saved = save()
        except InferiaError as exc:
            apply_error(form, request, exc)
        else:
            messages.success(request, success(saved) if callable(success) else success)
            return redirect(redirect_to(saved) if callable(redirect_to) else redirect_to)
    return render(request, template, context(), status=400 if form.errors else 200)


def post_action(
    request: HttpRequest, action: Callable[[], str], *, redirect_to: str
) -> HttpResponse:
    """A POST that acts and goes back to ``redirect_to``: ``action()`` calls the service and
    returns the success message; a refusal (``InferiaError``) becomes an error message."""
    try:
        done = action()
    except InferiaError as exc:
        apply_error(None, request, exc)
    else:
        messages.success(request, done)
    return redirect(redirect_to)
