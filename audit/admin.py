from __future__ import annotations

from django.contrib import admin

from audit.models import (
    Alert,
    AuditChainHead,
    AuditRecord,
    Payload,
    UsageDeadLetter,
    UsageRecord,
    UsageRollup,
)


@admin.register(AuditRecord)
class AuditRecordAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "org",
        "actor_label",
        "action",
        "outcome",
        "status_code",
        "client_ip",
    )
    list_filter = ("outcome", "action", "org")
    search_fields = ("actor_label", "action", "target_id", "request_id")
    date_hierarchy = "created_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AuditChainHead)
class AuditChainHeadAdmin(ReadOnlyAdmin):
    list_display = ("chain", "seq", "last_hash")
    list_filter = ("seq",)
    search_fields = ("chain",)


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "org",
        "key_prefix",
        "model",
        "status_code",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "latency_ms",
    )
    list_filter = ("status_code", "streamed", "org")
    search_fields = ("model", "key_prefix", "request_id", "provider_account")
    date_hierarchy = "created_at"


@admin.register(UsageRollup)
class UsageRollupAdmin(ReadOnlyAdmin):
    list_display = (
        "period",
        "period_start",
        "org_id",
        "model",
        "key_prefix",
        "requests",
        "errors",
        "denied",
        "prompt_tokens",
        "completion_tokens",
        "cost",
    )
    list_filter = ("period",)
    search_fields = ("model", "key_prefix")


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "org", "kind", "message")
    list_filter = ("kind", "org")
    search_fields = ("message", "dedupe_key")


@admin.register(Payload)
class PayloadAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "org_id", "request_id")
    list_filter = ("created_at",)
    search_fields = ("request_id", "usage_id")
    exclude = ("encrypted",)


@admin.register(UsageDeadLetter)
class UsageDeadLetterAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "org_id", "stream_id", "reason")
    list_filter = ("created_at",)
    search_fields = ("stream_id", "reason")
