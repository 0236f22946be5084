"""Tenant-scoped reads of knowledge bases (the visibility rule is ``knowledge.policy``)."""

from __future__ import annotations

import uuid

from django.db.models import Count, Q, QuerySet

from inferia.errors import NotFound
from knowledge import policy
from knowledge.models import Document, DocumentStatus, KnowledgeBase
from orgs.access import Access


def kb_list(access: Access) -> QuerySet[KnowledgeBase]:
    return (
        policy.visible(access)
        .annotate(
            document_count=Count("documents", filter=Q(documents__status=DocumentStatus.READY))
        )
        .order_by("name")
    )


def kb_get(access: Access, name: str) -> KnowledgeBase:
    return policy.get_visible(access, name)


def document_list(kb: KnowledgeBase) -> QuerySet[Document]:
    return Document.objects.filter(knowledge_base=kb).order_by("name", "-version")


def document_get(kb: KnowledgeBase, document_id: uuid.UUID | str) -> Document:
    """A document of ``kb`` (any version and status); NOT_FOUND for another collection's
    or org's id, like an unknown one."""
    document = Document.objects.filter(knowledge_base=kb, pk=document_id).first()
    if document is None:
        raise NotFound("Document not found")
    return document
