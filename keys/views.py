"""Dashboard pages of keys/: the org overview, API keys, service accounts,
provider accounts and access rules.

Key pages are for those who may mint keys (``api_key:create``), provider pages
for those who manage providers (``provider_account:manage``): a Viewer, who may
do neither, gets 403 and no link. Secrets are shown once (new keys) or never
(provider secrets).
"""

from __future__ import annotations

import copy
from datetime import timedelta

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from audit import selectors as audit_selectors
from audit.charts import bar_chart
from inferia import crypto
from inferia.errors import InferiaError
from inferia.request_meta import RequestMeta
from inferia.request_types import OrgPageRequest
from keys import access_rules, forms, selectors, services
from keys.models import ApiKey, ProviderAccount
from orgs import selectors as org_selectors
from orgs.models import Organization
from orgs.pages import (
    CONFIRM_FIELD,
    CONFIRM_VALUE,
    apply_error,
    confirmation_page,
    error_page,
    form_page,
    org_page,
    page_context,
    post_action,
    post_refused,
)

EXPIRING_SOON_DAYS = 14


# --- overview ---------------------------------------------------------------------------


@org_page("org:view")
def org_overview(request: OrgPageRequest, org: Organization) -> HttpResponse:
    """Counts, usage charts over 14 days and by model, keys expiring soon."""
    now = timezone.now()
    since = now - timedelta(days=13)
    since = since.replace(hour=0, minute=0, second=0, microsecond=0)
    context = page_context(
        request,
        counts={
            "members": org_selectors.member_list().count(),
            "teams": org_selectors.team_list().count(),
            "active_keys": ApiKey.objects.active().count(),
            "providers": selectors.provider_account_list().count(),
        },
    )
    if request.access.can("usage:view"):
        daily = {row["day"]: row for row in audit_selectors.usage_by_day(since=since)}
        days = [(since + timedelta(days=offset)).date() for offset in range(14)]

        def series(name):
            return [(day.strftime("%d %b"), int(daily.get(day, {}).get(name) or 0)) for day in days]

        tokens = [
            (label, p + c)
            for (label, p), (_, c) in zip(
                series("prompt_tokens"), series("completion_tokens"), strict=True
            )
        ]
        by_model = audit_selectors.usage_by("model", since=since)
        by_key = audit_selectors.usage_by("key_prefix", since=since)
        context.update(
            charts=[
                bar_chart("Requests a day", series("requests")),
                bar_chart("Tokens a day", tokens),
                bar_chart("Errors a day", series("errors")),
                bar_chart(
                    "Requests by model (14 days)",
                    [(row["model"] or "(none)", row["requests"]) for row in by_model],
                ),
                bar_chart(
                    "Requests by key (14 days)",
                    [(row["key_prefix"] or "(no key)", row["requests"]) for row in by_key],
                ),
            ],
            top_models=by_model,
            top_keys=by_key,
            total_requests=sum(value for _, value in series("requests")),
        )
    if request.access.can("audit_log:view"):
        context["alerts"] = list(audit_selectors.alert_list())
    if request.access.can("api_key:view"):
        context["expiring"] = list(
            ApiKey.objects.active()
            .filter(expires_at__lte=now + timedelta(days=EXPIRING_SOON_DAYS))
            .select_related("owner_user", "service_account")
            .order_by("expires_at")[:20]
        )
    return render(request, "keys/org_overview.html", context)


# --- API keys -------------------------------------------------------------------------------


def _key_form(request: OrgPageRequest, data=None) -> forms.ApiKeyCreateForm:
    access = request.access
    accounts = (
        list(selectors.service_account_list()) if access.can("service_account:manage") else []
    )
    return forms.ApiKeyCreateForm(
        data,
        permissions=sorted(access.permissions),
        service_accounts=accounts,
        # What a key is usually for, among what the user holds: calling (and streaming
        # from) models. Streaming is preselected because SDKs stream by default.
        initial={
            "permissions": [
                name
                for name in ("inference:run", "inference:stream", "model:read")
                if access.can(name)
            ]
        },
    )


NEW_KEY_SLOT = "new_api_keys"
NEW_KEY_SLOTS_MAX = 5


def _secret_slot_fill(request: HttpRequest, key: ApiKey, plaintext: str) -> HttpResponse:
    """After a key is minted (or rotated): its secret goes to a one-time slot of the
    session (encrypted, bound to the key) and the browser is sent to the page that shows
    it (POST-redirect-GET), so a reload never mints a second key."""
    slots = request.session.get(NEW_KEY_SLOT)
    slots = dict(slots) if isinstance(slots, dict) else {}
    # One slot per key (two tabs minting at once each get theirs), a few at most.
    for stale in list(slots)[: max(0, len(slots) - NEW_KEY_SLOTS_MAX + 1)]:
        del slots[stale]
    slots[str(key.pk)] = crypto.encrypt(plaintext.encode(), context=_slot_context(key))
    request.session[NEW_KEY_SLOT] = slots
    return redirect("keys:api-key-created", org=key.org.slug, key_id=key.pk)


def _slot_context(key: ApiKey) -> str:
    return f"dashboard.new_api_key:{key.org_id}:{key.pk}"


@org_page("api_key:create")
def api_key_created(request: OrgPageRequest, org: Organization, key_id) -> HttpResponse:
    """The one page that shows a new key's secret, once: the slot is emptied as it is read;
    a reload (or another tab) says it was already shown. Never cached."""
    key = selectors.api_key_list_for(request.access).filter(pk=key_id).first()
    if key is None:
        return error_page(request, 404)
    slots = request.session.get(NEW_KEY_SLOT)
    slots = dict(slots) if isinstance(slots, dict) else {}
    plaintext = None
    if str(key.pk) in slots:
        token = slots.pop(str(key.pk))
        request.session[NEW_KEY_SLOT] = slots
        plaintext = crypto.decrypt(token, context=_slot_context(key)).decode()
    response = render(
        request, "keys/api_key_secret.html", page_context(request, key=key, plaintext=plaintext)
    )
    response["Cache-Control"] = "no-store"
    return response


@org_page("api_key:create")
def api_key_list(request: OrgPageRequest, org: Organization) -> HttpResponse:
    """Everyone who may mint keys: their keys (all keys with ``api_key:view``), and the form."""
    form = _key_form(request, request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        account = (
            selectors.service_account_get_by_ref(data["service_account"])
            if data.get("service_account")
            else None
        )
        try:
            key, plaintext = services.api_key_create(
                access=request.access,
                name=data["name"],
                permissions=data["permissions"],
                expires_in_days=data["expires_in_days"],
                service_account=account,
                models=data["models"],
                meta=RequestMeta.from_http(request),
            )
        except InferiaError as exc:
            apply_error(form, request, exc)
        else:
            messages.success(request, f"API key {key.prefix} created.")
            return _secret_slot_fill(request, key, plaintext)
    keys = list(selectors.api_key_list_for(request.access)[:200])
    return render(
        request,
        "keys/api_key_list.html",
        page_context(request, keys=keys, form=form),
        status=400 if form.errors else 200,
    )


@org_page("api_key:create")
def api_key_action(request: OrgPageRequest, org: Organization, key_id, action: str) -> HttpResponse:
    """GET: the confirmation page; POST: revoke or rotate (a rotated secret is shown once)."""
    key = selectors.api_key_list_for(request.access).filter(pk=key_id).first()
    if key is None:
        return error_page(request, 404)
    # Only a POST from the confirmation page (it carries the flag) acts: a bare POST
    # (a replayed form, a script without the flag) gets the question, not the change.
    if request.method != "POST" or request.POST.get(CONFIRM_FIELD) != CONFIRM_VALUE:
        return render(
            request,
            "keys/api_key_confirm.html",
            page_context(
                request,
                key=key,
                action=action,
                confirm_field=CONFIRM_FIELD,
                confirm_value=CONFIRM_VALUE,
            ),
        )
    try:
        if action == "revoke":
            services.api_key_revoke(
                access=request.access, key=key, meta=RequestMeta.from_http(request)
            )
            messages.success(request, f"API key {key.prefix} revoked.")
        else:
            replacement, plaintext = services.api_key_rotate(
                access=request.access, key=key, meta=RequestMeta.from_http(request)
            )
            messages.success(
                request, f"API key {key.prefix} rotated; the old secret stopped working."
            )
            return _secret_slot_fill(request, replacement, plaintext)
    except InferiaError as exc:
        apply_error(None, request, exc)
    return redirect("keys:api-key-list", org=org.slug)


# --- service accounts -----------------------------------------------------------------------------


@org_page("member:view")
def service_account_list(request: OrgPageRequest, org: Organization) -> HttpResponse:
    if refused := post_refused(request, "service_account:manage"):
        return refused
    roles = [r for r in org_selectors.role_list() if r.slug != "owner"]
    form = forms.ServiceAccountForm(request.POST or None, roles=roles)
    return form_page(
        request,
        form,
        save=lambda: services.service_account_create(
            access=request.access,
            slug=form.cleaned_data["slug"],
            name=form.cleaned_data["name"],
            description=form.cleaned_data["description"],
            role=org_selectors.role_require_by_ref(form.cleaned_data["role"]),
            meta=RequestMeta.from_http(request),
        ),
        success=lambda account: f"Service account {account.slug} created.",
        redirect_to=reverse("keys:service-account-list", kwargs={"org": org.slug}),
        template="keys/service_account_list.html",
        context=lambda: page_context(
            request, accounts=list(selectors.service_account_list()), form=form
        ),
    )


@require_POST
@org_page("service_account:manage")
def service_account_update(request: OrgPageRequest, org: Organization, account_id) -> HttpResponse:
    account = selectors.service_account_list().filter(pk=account_id).first()
    if account is None:
        return error_page(request, 404)
    op = request.POST.get("op")
    if op == "delete" and (
        ask := confirmation_page(
            request,
            title=f"Delete service account {account.slug}?",
            consequence="Its API keys stop working at once and are deleted with it. "
            "This cannot be undone.",
            button="Yes, delete it",
            cancel_url=reverse("keys:service-account-list", kwargs={"org": org.slug}),
        )
    ):
        return ask

    def change() -> str:
        if op == "delete":
            services.service_account_delete(
                access=request.access, account=account, meta=RequestMeta.from_http(request)
            )
            return f"Service account {account.slug} and its keys deleted."
        disable = op == "disable"
        services.service_account_update(
            access=request.access,
            account=account,
            changes={"disabled": disable},
            meta=RequestMeta.from_http(request),
        )
        return f"Service account {account.slug} {'disabled' if disable else 'enabled'}."

    return post_action(
        request, change, redirect_to=reverse("keys:service-account-list", kwargs={"org": org.slug})
    )


# --- provider accounts ---------------------------------------------------------------------------


@org_page("provider_account:manage")
def provider_account_list(request: OrgPageRequest, org: Organization) -> HttpResponse:
    form = forms.ProviderAccountForm(request.POST or None, initial={"provider_type": "openai"})

    def save() -> ProviderAccount:
        data = form.cleaned_data
        return services.provider_account_create(
            access=request.access,
            name=data["name"],
            provider_type=data["provider_type"],
            base_url=data["base_url"],
            api_version=data["api_version"],
            models=data["models"],
            tags=data["tags"],
            secret=data["secret"] or None,
            meta=RequestMeta.from_http(request),
        )

    return form_page(
        request,
        form,
        save=save,
        success=lambda account: f"Provider account {account.name} created.",
        redirect_to=reverse("keys:provider-account-list", kwargs={"org": org.slug}),
        template="keys/provider_account_list.html",
        context=lambda: page_context(
            request, accounts=list(selectors.provider_account_list()), form=form
        ),
    )


@org_page("provider_account:manage")
def provider_account_update(request: OrgPageRequest, org: Organization, account_id) -> HttpResponse:
    account = selectors.provider_account_list().filter(pk=account_id).first()
    if account is None:
        return error_page(request, 404)
    initial = {
        "name": account.name,
        "provider_type": account.provider_type,
        "base_url": account.base_url,
        "api_version": account.api_version,
        "models": "\n".join(account.model_names),
        "tags": "\n".join(f"{k}={v}" for k, v in account.tags.items()),
    }
    op = request.POST.get("op") if request.method == "POST" else None
    form = forms.ProviderAccountForm(request.POST if op == "update" else None, initial=initial)
    form.add_price_fields(account.enabled_models)
    for name in ("name", "provider_type"):
        form.fields[name].disabled = True
    del form.fields["secret"]
    needs_code = account.has_secret and request.user.has_confirmed_totp
    if needs_code:
        # Moving the base URL of an account with a secret needs a fresh code too.
        form.fields["otp_code"] = copy.deepcopy(forms.ProviderSecretForm.base_fields["otp_code"])
        form.fields[
            "otp_code"
        ].help_text = (
            "Changing the base URL needs a fresh code when you use two-factor authentication."
        )
    secret_form = forms.ProviderSecretForm(request.POST if op == "secret" else None)
    try:
        if op == "update" and form.is_valid():
            data = form.cleaned_data
            try:
                services.provider_account_update(
                    access=request.access,
                    account=account,
                    meta=RequestMeta.from_http(request),
                    changes={
                        "base_url": data["base_url"],
                        "api_version": data["api_version"],
                        "models": form.models_with_prices(account.enabled_models),
                        "tags": data["tags"],
                    },
                    otp_code=data.get("otp_code") or None,
                )
            except InferiaError as exc:
                apply_error(form, request, exc)
            else:
                messages.success(request, f"Provider account {account.name} saved.")
                return redirect("keys:provider-account-update", org=org.slug, account_id=account.pk)
        elif op == "secret" and secret_form.is_valid():
            try:
                services.provider_account_set_secret(
                    access=request.access,
                    account=account,
                    secret=secret_form.cleaned_data["secret"],
                    otp_code=secret_form.cleaned_data["otp_code"] or None,
                    meta=RequestMeta.from_http(request),
                )
            except InferiaError as exc:
                apply_error(secret_form, request, exc)
            else:
                messages.success(request, f"Secret of {account.name} saved.")
                return redirect("keys:provider-account-update", org=org.slug, account_id=account.pk)
        elif op == "delete":
            if ask := confirmation_page(
                request,
                title=f"Delete provider account {account.name}?",
                consequence=f"Every model of {account.name} stops answering through the "
                "gateway and its encrypted secret is deleted. This cannot be undone.",
                button="Yes, delete it",
                cancel_url=reverse(
                    "keys:provider-account-update",
                    kwargs={"org": org.slug, "account_id": account.pk},
                ),
            ):
                return ask
            services.provider_account_delete(
                access=request.access, account=account, meta=RequestMeta.from_http(request)
            )
            messages.success(request, f"Provider account {account.name} deleted.")
            return redirect("keys:provider-account-list", org=org.slug)
    except InferiaError as exc:
        apply_error(None, request, exc)
    failed = form.errors or secret_form.errors
    return render(
        request,
        "keys/provider_account_form.html",
        page_context(
            request,
            account=account,
            form=form,
            secret_form=secret_form,
            needs_code=needs_code,
        ),
        status=400 if failed else 200,
    )


# --- access rules ----------------------------------------------------------------------------------


def _rule_errors(details) -> dict[int, list[str]]:
    """``authz_rules[2].teams: [...]`` -> {2: ["teams: ..."]}; others under -1."""
    import re

    by_rule: dict[int, list[str]] = {}
    for key, problems in (details or {}).items():
        match = re.match(r"^authz_rules\[(\d+)\](?:\.(\w+))?$", str(key))
        index = int(match.group(1)) if match else -1
        field = match.group(2) if match else str(key)
        for problem in problems if isinstance(problems, list) else [problems]:
            by_rule.setdefault(index, []).append(f"{field}: {problem}" if field else str(problem))
    return by_rule


@org_page("model:read")
def access_rule_list(request: OrgPageRequest, org: Organization) -> HttpResponse:
    """The rules, the effective access (who may use which model), and the YAML import."""
    if refused := post_refused(request, "policy:manage"):
        return refused
    current_yaml = access_rules.export_yaml(request.access)
    adding = request.POST.get("op") == "add"
    form = forms.AccessRulesImportForm(
        request.POST if request.method == "POST" and not adding else None,
        initial={"document": current_yaml},
    )
    rule_form = forms.AccessRuleForm(request.POST if adding else None)
    rule_errors: dict[int, list[str]] = {}
    submitted_rules: list = []
    if adding and rule_form.is_valid():
        try:
            access_rules.access_rule_create(
                access=request.access, rule=rule_form.rule(), meta=RequestMeta.from_http(request)
            )
        except InferiaError as exc:
            apply_error(rule_form, request, exc)
        else:
            messages.success(request, "Access rule added.")
            return redirect("keys:access-rule-list", org=org.slug)
    if request.method == "POST" and not adding and form.is_valid():
        text = form.cleaned_data["document"]
        try:
            document = access_rules.load_yaml(text)
            if isinstance(document, dict) and isinstance(document.get("authz_rules"), list):
                submitted_rules = document["authz_rules"]
            # A document that parses replaces every rule: ask first (malformed YAML is
            # refused at once, without asking).
            if ask := confirmation_page(
                request,
                title="Replace every access rule?",
                consequence="The rules in the document replace all of the organization's "
                "rules; whoever only the current rules grant loses that access.",
                button="Yes, replace them",
                cancel_url=reverse("keys:access-rule-list", kwargs={"org": org.slug}),
                permission="policy:manage",
            ):
                return ask
            access_rules.access_rules_replace(
                access=request.access,
                document=document,
                meta=RequestMeta.from_http(request),
                source="dashboard",
            )
        except InferiaError as exc:
            form.add_error(None, exc.message)
            rule_errors = _rule_errors(exc.details)
        else:
            messages.success(request, "Access rules imported.")
            return redirect("keys:access-rule-list", org=org.slug)
    catalog = access_rules.Catalog.load()
    effective = [(fqn, access_rules.who_may_use(fqn)) for fqn in sorted(catalog.models)]
    mine = access_rules.allowed_models(
        access_rules.subject_for_access(request.access), catalog=catalog
    )
    context = page_context(
        request,
        rules=list(selectors.access_rule_list()),
        form=form,
        rule_form=rule_form,
        effective=effective,
        mine=mine,
        rule_errors=sorted(rule_errors.items()),
        submitted=[
            (index, rule, rule_errors.get(index, [])) for index, rule in enumerate(submitted_rules)
        ],
    )
    return render(
        request,
        "keys/access_rule_list.html",
        context,
        status=400 if form.errors or rule_form.errors else 200,
    )


@require_POST
@org_page("policy:manage")
def access_rule_delete(request: OrgPageRequest, org: Organization, rule_id) -> HttpResponse:
    rule = selectors.access_rule_list().filter(pk=rule_id).first()
    if rule is None:
        return error_page(request, 404)
    if ask := confirmation_page(
        request,
        title="Delete this access rule?",
        consequence=f"Whoever it grants ({', '.join(rule.model_patterns)}) loses that access "
        "at once, unless another rule grants it.",
        button="Yes, delete it",
        cancel_url=reverse("keys:access-rule-list", kwargs={"org": org.slug}),
    ):
        return ask

    def delete() -> str:
        access_rules.access_rule_delete(
            access=request.access, rule=rule, meta=RequestMeta.from_http(request)
        )
        return "Access rule deleted."

    return post_action(
        request, delete, redirect_to=reverse("keys:access-rule-list", kwargs={"org": org.slug})
    )


@org_page("model:read")
def access_rule_export(request: OrgPageRequest, org: Organization) -> HttpResponse:
    response = HttpResponse(
        access_rules.export_yaml(request.access), content_type="application/yaml; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="access-rules-{org.slug}.yaml"'
    return response
