"""Tenant-scoped reads of knowledge bases (the visibility rule is ``knowledge.policy``)."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from knowledge import policy
from knowledge.models import Document, DocumentStatus, KnowledgeBase
from orgs.access import Access


def kb_list(access: Access) -> QuerySet[KnowledgeBase]:
    return policy.visible(access).annotate(
        document_count=Count("documents", filter=Q(documents__status=DocumentStatus.READY))
    ).order_by("name")


def kb_get(access: Access, name: str) -> KnowledgeBase:
    return policy.get_visible(access, name)


def document_list(kb: KnowledgeBase) -> QuerySet[Document]:
    return Document.objects.filter(knowledge_base=kb).order_by("name", "-version")
