"""Operator console for knowledge/: every org's collections and documents, read-only.

Collections change through ``knowledge.services`` and documents through
``knowledge.documents`` (who may, the storage limit, the audit record, the ingestion
task); an edit here would skip all of that. Document bytes and vectors are not shown.
"""

from __future__ import annotations

from django.contrib import admin

from knowledge.models import Document, KnowledgeBase
from orgs.admin import AllOrgsAdmin


class ReadOnlyAdmin(AllOrgsAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(KnowledgeBase)
class KnowledgeBaseAdmin(ReadOnlyAdmin):
    list_display = ("name", "org", "embedding_model", "dimensions", "chunk_size", "created_at")
    list_filter = ("org",)
    search_fields = ("name", "description", "embedding_model", "org__slug")
    fields = (
        "org",
        "name",
        "description",
        "embedding_model",
        "dimensions",
        "chunk_size",
        "chunk_overlap",
        "created_by",
        "created_by_service_account",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields


@admin.register(Document)
class DocumentAdmin(ReadOnlyAdmin):
    list_display = ("name", "version", "knowledge_base", "org", "status", "progress", "created_at")
    list_filter = ("org", "status", "content_type")
    search_fields = ("name", "sha256", "knowledge_base__name", "org__slug")
    list_select_related = ("knowledge_base", "org")
    fields = (
        "org",
        "knowledge_base",
        "name",
        "version",
        "status",
        "status_reason",
        "progress",
        "pages",
        "content_type",
        "size_bytes",
        "sha256",
        "metadata",
        "uploaded_by",
        "uploaded_by_service_account",
        "uploaded_by_key",
        "created_at",
        "updated_at",
        "ready_at",
    )
    readonly_fields = fields

    @admin.display(description="Chunks embedded")
    def progress(self, obj: Document) -> str:
        return f"{obj.chunks_done} / {obj.chunks_total}"
