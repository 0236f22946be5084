from __future__ import annotations

from django.contrib import admin

from audit.models import AuditRecord


@admin.register(AuditRecord)
class AuditRecordAdmin(admin.ModelAdmin):
    list_display = ("created_at", "org", "actor_label", "action", "outcome", "status_code", "client_ip")
    list_filter = ("outcome", "action", "org")
    search_fields = ("actor_label", "action", "target_id", "request_id")
    date_hierarchy = "created_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
