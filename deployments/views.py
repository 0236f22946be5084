"""Dashboard pages of deployments/: the list with the create form, one deployment (its
routing, health, versions with rollback, edit, pause/resume, delete), the YAML export.

Everyone with ``deployment:view`` sees them; each change needs its permission, which the
service checks (the page answers 403 first, without reading the form).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from deployments import documents, forms, selectors, services
from deployments.config import _FIELDS as ROUTING_FIELDS
from deployments.models import Deployment, DeploymentStatus
from inferia.errors import InferiaError, NotFound
from inferia.request_meta import RequestMeta
from inferia.request_types import OrgPageRequest
from keys import selectors as key_selectors
from orgs.models import Organization
from orgs.pages import (
    confirmation_page,
    error_page,
    org_page,
    page_context,
    post_refused,
)

# What each POST of the detail page needs (the service checks it again).
OP_PERMISSIONS = {
    "update": "deployment:update",
    "rollback": "deployment:update",
    "stop": "deployment:update",
    "resume": "deployment:update",
    "delete": "deployment:delete",
}


def _show_error(form: forms.DeploymentForm, exc: InferiaError) -> None:
    """A service's refusal on the form: routing paths (``targets[0].account``) on the
    routing box, ``launcher.*`` on the launcher box, the message on top."""
    details = exc.details if isinstance(exc.details, dict) else {}
    for key, problems in details.items():
        problems = problems if isinstance(problems, list) else [problems]
        head = str(key).split(".", 1)[0].split("[", 1)[0]
        if key in form.fields and key != "config":
            target = key
        elif head == "launcher" and "launcher" in form.fields:
            target = "launcher"
        elif head in ROUTING_FIELDS:
            target = "config"
        else:
            target = None
        for problem in problems:
            prefix = "" if target == key else f"{key}: "
            form.add_error(target, f"{prefix}{problem}")
    form.add_error(None, exc.message)


def _sample_config() -> str:
    """A starting document naming the org's first enabled model, if there is one."""
    for account in key_selectors.provider_account_list():
        if account.model_names:
            return forms.config_text(
                {
                    "strategy": "priority",
                    "targets": [
                        {
                            "name": "primary",
                            "account": account.name,
                            "model": account.model_names[0],
                        }
                    ],
                }
            )
    return "strategy: priority\ntargets:\n  - name: primary\n    account: \n    model: \n"


@org_page("deployment:view")
def deployment_list(request: OrgPageRequest, org: Organization) -> HttpResponse:
    if refused := post_refused(request, "deployment:create"):
        return refused
    can_create = request.access.can("deployment:create")
    form = forms.DeploymentForm(
        request.POST if request.method == "POST" else None,
        initial={"config": _sample_config()} if can_create else None,
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            deployment = services.deployment_create(
                access=request.access,
                name=data["name"],
                description=data["description"],
                config=data["config"],
                launcher=data["launcher"] or None,
                comment=data["comment"],
                meta=RequestMeta.from_http(request),
                source="dashboard",
            )
        except InferiaError as exc:
            _show_error(form, exc)
        else:
            messages.success(request, f"Deployment {deployment.name} created.")
            return redirect("deployments:deployment-detail", org=org.slug, name=deployment.name)
    return render(
        request,
        "deployments/deployment_list.html",
        page_context(
            request,
            deployments=list(selectors.deployment_list()),
            form=form if can_create else None,
        ),
        status=400 if form.errors else 200,
    )


def _act(request: OrgPageRequest, deployment: Deployment, op: str) -> str:
    """Carry out a POST of the detail page (not ``update``); the success message."""
    meta = RequestMeta.from_http(request)
    if op == "rollback":
        try:
            version = int(request.POST.get("version", ""))
        except ValueError:
            version = 0
        services.deployment_rollback(
            access=request.access, deployment=deployment, version=version, meta=meta
        )
        return f"Deployment {deployment.name} rolled back to version {version}."
    if op in ("stop", "resume"):
        status = DeploymentStatus.STOPPED if op == "stop" else DeploymentStatus.READY
        services.deployment_set_status(
            access=request.access,
            deployment=deployment,
            status=status,
            reason="Paused from the dashboard" if op == "stop" else "",
            meta=meta,
        )
        return f"Deployment {deployment.name} {'paused' if op == 'stop' else 'resumed'}."
    services.deployment_delete(access=request.access, deployment=deployment, meta=meta)
    return f"Deployment {deployment.name} deleted."


@org_page("deployment:view")
def deployment_detail(request: OrgPageRequest, org: Organization, name: str) -> HttpResponse:
    try:
        deployment = selectors.deployment_get(name)
    except NotFound:
        return error_page(request, 404)
    op = request.POST.get("op", "") if request.method == "POST" else ""
    if request.method == "POST":
        if op not in OP_PERMISSIONS:
            return error_page(request, 400, "Unknown action.")
        if refused := post_refused(request, OP_PERMISSIONS[op]):
            return refused
    initial: dict[str, Any] = {
        "description": deployment.description,
        "config": forms.config_text(documents.canonical(deployment.config)),
    }
    form = forms.DeploymentForm(
        request.POST if op == "update" else None, initial=initial, editing=True
    )
    detail_url = reverse("deployments:deployment-detail", kwargs={"org": org.slug, "name": name})
    if op == "update" and form.is_valid():
        data = form.cleaned_data
        try:
            services.deployment_update(
                access=request.access,
                deployment=deployment,
                config=data["config"],
                description=data["description"],
                comment=data["comment"],
                meta=RequestMeta.from_http(request),
                source="dashboard",
            )
        except InferiaError as exc:
            _show_error(form, exc)
        else:
            messages.success(request, f"Deployment {deployment.name} saved.")
            return redirect(detail_url)
    elif op and op != "update":
        if op == "delete" and (
            ask := confirmation_page(
                request,
                title=f"Delete deployment {deployment.name}?",
                consequence=f"Calls to {deployment.fqn} stop at once, what its launcher started "
                "is stopped, and its versions are deleted. This cannot be undone.",
                button="Yes, delete it",
                cancel_url=detail_url,
            )
        ):
            return ask
        try:
            done = _act(request, deployment, op)
        except InferiaError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, done)
            if op == "delete":
                return redirect("deployments:deployment-list", org=org.slug)
        return redirect(detail_url)
    health = selectors.deployment_health(deployment)
    states = {t.get("name"): t for t in health.get("targets", [])}
    targets = [
        (target, states.get(target.get("name")) or {"state": "unknown"})
        for target in deployment.config.get("targets", [])
    ]
    return render(
        request,
        "deployments/deployment_detail.html",
        page_context(
            request,
            deployment=deployment,
            targets=targets,
            health=health,
            versions=list(selectors.deployment_version_list(deployment)[:50]),
            form=form if request.access.can("deployment:update") else None,
            config_yaml=forms.config_text(documents.canonical(deployment.config)),
            launcher_yaml=forms.config_text(deployment.launcher),
        ),
        status=400 if form.errors else 200,
    )


@org_page("deployment:view")
def deployment_export(request: OrgPageRequest, org: Organization) -> HttpResponse:
    response = HttpResponse(documents.export_yaml(), content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="deployments-{org.slug}.yaml"'
    return response
