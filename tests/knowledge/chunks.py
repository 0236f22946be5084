"""Chunks written straight into the database for the search tests (what ingestion
would write: a document and its chunks with ``fake_embedding`` vectors), so search is
tested without the upload pipeline."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from django.db import connection

from gateway.fake_upstream import fake_embedding
from knowledge import vectors
from knowledge.models import Chunk, Document, DocumentStatus, KnowledgeBase
from orgs.scoping import org_scope
from tests.knowledge.conftest import EMBED_MODEL

DIMS = 64


def kb_row(org, name: str = "handbook", model: str = EMBED_MODEL) -> KnowledgeBase:
    """The org's collection ``name``, made directly when it does not exist yet (another
    org's collections cannot be made through Acme's API)."""
    with org_scope(org):
        kb = KnowledgeBase.objects.filter(name=name).first()
        if kb is None:
            kb = KnowledgeBase.objects.create(org=org, name=name, embedding_model=model)
        return kb


def seed(
    org,
    kb_name: str,
    texts: Sequence[str],
    *,
    document: str = "doc.md",
    status: str = DocumentStatus.READY,
    metadata: Sequence[dict[str, Any]] | dict[str, Any] | None = None,
    embeddings: Sequence[Sequence[float]] | None = None,
    dims: int = DIMS,
) -> list[Chunk]:
    """A document of ``texts`` (one chunk each) in the org's collection ``kb_name``."""
    kb = kb_row(org, kb_name)
    with org_scope(org):
        version = Document.objects.filter(knowledge_base=kb, name=document).count() + 1
        doc = Document.objects.create(
            org=org,
            knowledge_base=kb,
            name=document,
            version=version,
            content_type="text/markdown",
            size_bytes=sum(len(t) for t in texts),
            sha256=hashlib.sha256("".join(texts).encode()).hexdigest(),
            status=status,
            chunks_total=len(texts),
            chunks_done=len(texts),
        )
        chunks = Chunk.objects.bulk_create(
            [
                Chunk(
                    org=org,
                    knowledge_base=kb,
                    document=doc,
                    ordinal=index,
                    text=text,
                    metadata=(
                        metadata[index]
                        if isinstance(metadata, list | tuple)
                        else dict(metadata or {})
                    ),
                    dims=dims,
                    embedding=list(embeddings[index]) if embeddings else fake_embedding(text, dims),
                )
                for index, text in enumerate(texts)
            ]
        )
        if kb.dimensions != dims:
            kb.dimensions = dims
            kb.save(update_fields=["dimensions"])
    if connection.vendor == "postgresql":
        vectors.ensure_index(dims)
    return chunks


def search(org, kb_name: str, query: str, **options) -> list[vectors.Hit]:
    """``knowledge.vectors.search`` with the fake model's vector of ``query``."""
    kb = kb_row(org, kb_name)
    return vectors.search(kb, fake_embedding(query, DIMS), query, **options)
