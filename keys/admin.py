"""Operator console for keys/: every model across orgs; secrets are write-only.

"Revoke selected keys" calls the same audited service as the API.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import transaction

from audit import services as audit
from inferia import clock, crypto
from inferia.errors import ValidationError as InferiaValidationError
from inferia.request_meta import RequestMeta
from keys import secret_refs, services, ssrf
from keys.models import AccessRule, ApiKey, ProviderAccount, ServiceAccount
from orgs.admin import AllOrgsAdmin


@admin.register(ServiceAccount)
class ServiceAccountAdmin(AllOrgsAdmin):
    list_display = ("slug", "name", "org", "role", "created_at", "disabled_at")
    list_filter = ("org", "role")
    search_fields = ("slug", "name", "org__slug")
    raw_id_fields = ("granted_by_membership", "created_by")
    # Its role and state decide what its keys may do: changed through the API (audited).
    readonly_fields = ("role", "disabled_at")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(AllOrgsAdmin):
    list_display = (
        "prefix",
        "name",
        "org",
        "owner_user",
        "service_account",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    )
    list_filter = ("org", "revoked_at")
    search_fields = (
        "public_id",
        "name",
        "owner_user__username",
        "service_account__slug",
        "org__slug",
    )
    exclude = ("secret_digest",)
    readonly_fields = (
        "public_id",
        "last_four",
        "created_at",
        "last_used_at",
        "last_used_ip",
        "replaced_by",
        "revoked_at",
        "owner_user",
        "service_account",
        "created_by",
        "org",
        "permissions",
        "model_patterns",
        "expires_at",
    )
    actions = ["revoke_selected"]

    def has_add_permission(self, request) -> bool:
        return False  # keys are minted through the API, where the secret is shown once

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoke instead (audited, the record stays)

    @admin.action(description="Revoke selected keys (emergency)")
    def revoke_selected(self, request, queryset) -> None:
        count = services.api_key_revoke_by_operator(
            operator=request.user,
            key_ids=list(queryset.values_list("pk", flat=True)),
            meta=RequestMeta.from_http(request),
        )
        self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)


class ProviderAccountForm(forms.ModelForm):
    new_secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only: set or replace the upstream secret. It is never shown.",
    )

    class Meta:
        model = ProviderAccount
        # Listed, not "all but the ciphertext": a secret column added later stays out.
        fields = (
            "org",
            "name",
            "provider_type",
            "base_url",
            "api_version",
            "deployments",
            "enabled_models",
            "tags",
            "secret_ref",
        )

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        # An emptied JSON box means "none": the columns are NOT NULL (else a 500 on save).
        for name, empty in (("deployments", dict), ("enabled_models", list), ("tags", dict)):
            if name in cleaned and cleaned[name] is None:
                cleaned[name] = empty()
        secret_ref = cleaned.get("secret_ref")
        if secret_ref:
            # The same syntax, allow-list and canonical form as the API (keys.secret_refs).
            try:
                cleaned["secret_ref"] = secret_refs.validate_ref(secret_ref)
            except InferiaValidationError as exc:
                self.add_error(
                    "secret_ref", "; ".join((exc.details or {}).get("secret_ref", [exc.message]))
                )
        org, base_url = cleaned.get("org"), cleaned.get("base_url")
        if org is not None and base_url:
            try:
                cleaned["base_url"] = ssrf.check_base_url(
                    base_url, allowed_private_hosts=list(org.policy.allowed_private_hosts)
                )
            except InferiaValidationError as exc:
                self.add_error(
                    "base_url", "; ".join((exc.details or {}).get("base_url", [exc.message]))
                )
        return cleaned


@admin.register(ProviderAccount)
class ProviderAccountAdmin(AllOrgsAdmin):
    form = ProviderAccountForm
    list_display = ("name", "org", "provider_type", "base_url", "has_secret", "secret_updated_at")
    list_filter = ("org", "provider_type")
    search_fields = ("name", "base_url", "org__slug")
    readonly_fields = ("secret_updated_at", "created_at", "updated_at")

    @admin.display(boolean=True)
    def has_secret(self, obj: ProviderAccount) -> bool:
        return obj.has_secret

    def save_model(self, request, obj: ProviderAccount, form, change) -> None:
        secret_plaintext = form.cleaned_data.get("new_secret")
        with transaction.atomic():
            if secret_plaintext:
                obj.encrypted_secret = crypto.encrypt(
                    secret_plaintext.encode(), context=obj.secret_context()
                )
                obj.secret_ref = ""
                obj.secret_updated_at = clock.now()
            super().save_model(request, obj, form, change)
            audit.record(
                action="provider_account:manage",
                outcome="success",
                org=obj.org,
                actor=request.user,
                actor_label=f"admin:{request.user.username}",
                target=obj,
                meta=RequestMeta.from_http(request),
                data={
                    "op": "admin_change" if change else "admin_create",
                    "secret_set": bool(secret_plaintext),
                },
            )


@admin.register(AccessRule)
class AccessRuleAdmin(AllOrgsAdmin):
    list_display = ("__str__", "org", "position", "created_at")
    search_fields = ("description", "org__slug")
    filter_horizontal = ("users", "teams", "roles", "service_accounts")
