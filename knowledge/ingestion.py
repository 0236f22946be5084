"""Ingestion of one uploaded document: parse, chunk, embed as the uploader, swap in.

Run by the Celery task ``knowledge.tasks.ingest_document`` inside the document's org
scope. The document moves queued -> parsing -> embedding (``chunks_done`` of
``chunks_total`` saved after each batch, so a client polling it sees progress) ->
ready, or -> failed with a ``status_reason`` a person can act on (never a stack trace
or a secret; the gateway's own error message when it refused an embedding call).

- The uploader must still be allowed to add to the collection when the task starts
  (``knowledge.policy``, on their Access as the one resolver rebuilds it now).
- Embedding goes through the gateway's own path (``knowledge.embedding.embed_as``) as
  whoever uploaded: the API key they used, else the user. The gateway checks, at every
  batch, that they may still use the collection's model (a revoked key or grant fails
  the document with the gateway's reason), and applies their limits, quotas, cost,
  usage and audit.
- Nothing half-ingested: on failure the document's chunks are deleted.
- Atomic replace: a document becomes ready in one transaction that also deletes the
  older ready version(s) of its name, so a search finds the old text until the new is
  complete, and never both. An older version that finishes after a newer one is ready
  discards itself.
- Safe to run twice: a ready or failed document is left alone; an interrupted one starts
  over (or resumes after a rate-limit pause, see ``Deferred``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from audit import services as audit
from inferia.errors import (
    AuthenticationFailed,
    ErrorCode,
    InferiaError,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from keys import delegation, resolver
from knowledge import chunking, parsing, policy, vectors
from knowledge.embedding import EmbeddingRefused, embed_as
from knowledge.models import Chunk, Document, DocumentSource, DocumentStatus, KnowledgeBase

logger = logging.getLogger(__name__)

# Gateway answers worth waiting for: a limit (429) or a store briefly down (503).
_RETRYABLE = {ErrorCode.RATE_LIMITED, ErrorCode.SERVICE_UNAVAILABLE}
MAX_DEFER_SECONDS = 300
INTERNAL_FAILURE = (
    "Ingestion failed because of an internal error; upload the document again, or ask "
    "the operator to look at the worker's log."
)


class Deferred(Exception):
    """The gateway asked to wait (rate limit or quota window, store unavailable): the
    task retries after ``countdown`` seconds, resuming where it stopped."""

    def __init__(self, reason: str, countdown: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.countdown = countdown


class _Gone(Exception):
    """The document was deleted while it was being ingested."""


def _save(document: Document, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(document, name, value)
    try:
        document.save(update_fields=[*fields, "updated_at"])
    except DatabaseError as exc:
        # Django's own refusal (no SQL error): the UPDATE matched no row.
        if type(exc) is DatabaseError:
            raise _Gone() from exc
        raise


def _embedder(document: Document) -> dict[str, Any]:
    """Who the embedding calls are made as: the API key of the upload, else the user."""
    if document.uploaded_by_key_id is not None:
        return {"user": None, "api_key": document.uploaded_by_key}
    if document.uploaded_by_service_account_id is not None:
        raise ValidationError("The API key this document was uploaded with no longer exists.")
    if document.uploaded_by_id is not None:
        return {"user": document.uploaded_by, "api_key": None}
    raise ValidationError("The person who uploaded this document no longer exists.")


def _require_uploader_may_add(document: Document, kb: KnowledgeBase) -> None:
    """The uploader may still add to the collection, as the one resolver sees them now
    (the same delegated credential the gateway gets): a revoked grant, permission, key
    or membership stops a queued ingestion. The gateway checks the model itself."""
    who = _embedder(document)
    raw = delegation.mint(
        org_id=document.org_id,
        model=kb.embedding_model,
        user_id=getattr(who["user"], "pk", None),
        key_id=getattr(who["api_key"], "pk", None),
    )
    try:
        access = resolver.resolve_for_org_id(raw, document.org_id)
    except AuthenticationFailed as exc:
        key = who["api_key"]
        raise PermissionDenied(
            f"The API key {key.prefix} this document was uploaded with is no longer valid "
            "(revoked or expired)"
            if key is not None
            else "The uploader's account is no longer active"
        ) from exc
    except NotFound as exc:
        raise PermissionDenied("The uploader is no longer a member of this organization") from exc
    policy.require_add_data(access, kb)


def _embed(document: Document, kb: KnowledgeBase, texts: list[str]) -> list[list[float]]:
    try:
        return embed_as(
            org=document.org, model=kb.embedding_model, texts=texts, **_embedder(document)
        )
    except EmbeddingRefused as refused:
        if refused.code in _RETRYABLE:
            countdown = min(max(int(refused.retry_after or 10), 1), MAX_DEFER_SECONDS)
            raise Deferred(refused.message, countdown) from refused
        raise


def _claim_dimensions(kb: KnowledgeBase, dims: int) -> None:
    """The collection's vectors all have ``dims`` dimensions: the first success sets it."""
    if kb.dimensions is None:
        KnowledgeBase.objects.filter(pk=kb.pk, dimensions__isnull=True).update(dimensions=dims)
        kb.refresh_from_db(fields=["dimensions"])
    if kb.dimensions != dims:
        raise ValidationError(
            f"The embedding model {kb.embedding_model} returned {dims}-dimensional vectors, "
            f"but knowledge base {kb.name} holds {kb.dimensions}-dimensional ones: they "
            "cannot be searched together."
        )
    # Outside any transaction: CREATE INDEX takes its own lock, once per dimension.
    vectors.ensure_index(dims)


def _pieces(document: Document, kb: KnowledgeBase, data: bytes) -> list[chunking.Piece]:
    pages = parsing.extract(data, document.content_type)
    pieces = chunking.chunk_pages(pages, kb.chunk_size, kb.chunk_overlap)
    if not pieces:
        raise ValidationError("The document holds no text.")
    return pieces


def _write_chunks(
    document: Document,
    kb: KnowledgeBase,
    pieces: Sequence[chunking.Piece],
    first: int,
    vectors_: list[list[float]],
) -> None:
    dims = len(vectors_[0])
    with transaction.atomic():
        Chunk.objects.bulk_create(
            [
                Chunk(
                    org_id=document.org_id,
                    knowledge_base=kb,
                    document=document,
                    ordinal=first + offset,
                    text=piece.text,
                    metadata=(
                        {**document.metadata, "page": piece.page}
                        if piece.page is not None
                        else dict(document.metadata)
                    ),
                    dims=dims,
                    embedding=vector,
                )
                for offset, (piece, vector) in enumerate(zip(pieces, vectors_, strict=True))
            ]
        )
        _save(document, chunks_done=first + len(pieces))


def _embed_all(document: Document, kb: KnowledgeBase, pieces: list[chunking.Piece]) -> None:
    resume = (
        document.status == DocumentStatus.EMBEDDING
        and document.chunks_total == len(pieces)
        and Chunk.objects.filter(document=document).count() == document.chunks_done
    )
    if not resume:
        Chunk.objects.filter(document=document).delete()
        _save(
            document,
            status=DocumentStatus.EMBEDDING,
            chunks_total=len(pieces),
            chunks_done=0,
            status_reason="",
        )
    max_chars = int(document.org.policy.applied("max_prompt_chars"))
    batch_size = settings.INFERIA_KB_EMBED_BATCH
    done, checked = document.chunks_done, False
    while done < len(pieces):
        batch = _take(pieces, done, batch_size, max_chars)
        embedded = _embed(document, kb, [piece.text for piece in batch])
        if not checked or len(embedded[0]) != kb.dimensions:
            _claim_dimensions(kb, len(embedded[0]))
            checked = True
        _write_chunks(document, kb, batch, done, embedded)
        done += len(batch)


def _take(
    pieces: Sequence[chunking.Piece], start: int, max_items: int, max_chars: int
) -> Sequence[chunking.Piece]:
    """The next embedding batch from ``start``: at most ``max_items`` chunks and, past
    its first chunk, ``max_chars`` characters (the gateway's prompt limit)."""
    end, chars = start, 0
    while end < len(pieces) and end - start < max_items:
        length = len(pieces[end].text)
        if end > start and chars + length > max_chars:
            break
        chars += length
        end += 1
    return pieces[start:end]


def _swap_in(document: Document) -> str:
    """Make ``document`` the ready version of its name, in one transaction with deleting
    the older ready one(s); or discard it when a newer version is already ready."""
    with transaction.atomic():
        versions = list(
            Document.objects.select_for_update()
            .filter(knowledge_base_id=document.knowledge_base_id, name=document.name)
            .order_by("version")
        )
        current = next((row for row in versions if row.pk == document.pk), None)
        if current is None:
            raise _Gone()
        if any(
            row.version > current.version and row.status == DocumentStatus.READY for row in versions
        ):
            current.delete()
            return "discarded"
        older = [
            row.pk
            for row in versions
            if row.version < current.version and row.status == DocumentStatus.READY
        ]
        if older:
            Document.objects.filter(pk__in=older).delete()
        _save(document, status=DocumentStatus.READY, status_reason="", ready_at=timezone.now())
    return DocumentStatus.READY


def document_fail(document_id: Any, reason: str) -> None:
    """Mark a document failed with ``reason``, without any of its chunks."""
    with transaction.atomic():
        Chunk.objects.filter(document_id=document_id).delete()
        Document.objects.filter(pk=document_id).exclude(status=DocumentStatus.READY).update(
            status=DocumentStatus.FAILED,
            status_reason=reason[:500],
            chunks_done=0,
            updated_at=timezone.now(),
        )
    DocumentSource.objects.filter(document_id=document_id).delete()


def _actor_label(document: Document) -> str:
    """As ``Access.actor_label`` names the uploader: ``alice``, ``alice via <prefix>``."""
    key = document.uploaded_by_key
    if document.uploaded_by is not None:
        who = document.uploaded_by.username
    elif key is not None and key.service_account is not None:
        who = f"sa:{key.service_account.slug}"
    else:
        who = "unknown"
    return f"{who} via {key.prefix}" if key is not None else who


def _record(document: Document, outcome: str, **data: Any) -> None:
    audit.record(
        action=policy.ADD_DATA,
        outcome=outcome,
        org=document.org,
        actor=document.uploaded_by,
        actor_label=_actor_label(document),
        target=document,
        data={
            "op": "ingest",
            "knowledge_base": document.knowledge_base.name,
            "name": document.name,
            "version": document.version,
            **data,
        },
    )


def document_ingest(document_id: Any, *, last_attempt: bool = True) -> str:
    """Ingest one document (see the module's docstring); returns the status it ends in
    (``ready``, ``failed``, ``discarded``, ``gone``, or the unchanged status of a settled
    document). When the gateway asks to wait, raises ``Deferred`` unless this is the
    ``last_attempt`` (then the document fails with the gateway's reason)."""
    document = (
        Document.objects.select_related(
            "knowledge_base", "org", "uploaded_by", "uploaded_by_key__service_account"
        )
        .filter(pk=document_id)
        .first()
    )
    if document is None:
        return "gone"
    if document.status in (DocumentStatus.READY, DocumentStatus.FAILED):
        return document.status
    kb = document.knowledge_base
    try:
        source = DocumentSource.objects.filter(document=document).values_list("data", flat=True)
        data = source.first()
        if data is None:
            raise ValidationError("The uploaded file is no longer stored; upload it again.")
        _require_uploader_may_add(document, kb)
        if document.status == DocumentStatus.QUEUED:
            _save(document, status=DocumentStatus.PARSING)
        pieces = _pieces(document, kb, bytes(data))
        _embed_all(document, kb, pieces)
        outcome = _swap_in(document)
    except Deferred as deferred:
        if not last_attempt:
            raise
        return _fail(document, deferred.reason)
    except _Gone:
        return "gone"
    except InferiaError as error:
        return _fail(document, error.message)
    except Exception:
        if not Document.objects.filter(pk=document.pk).exists():
            return "gone"  # deleted mid-way: its chunks went with it
        logger.exception("ingestion of document %s failed", document.pk)
        return _fail(document, INTERNAL_FAILURE)
    DocumentSource.objects.filter(document_id=document.pk).delete()
    if outcome == DocumentStatus.READY:
        _record(document, "success", chunks=document.chunks_total, pages=document.pages)
    logger.info(
        "document_ingest id=%s outcome=%s chunks=%s", document.pk, outcome, document.chunks_total
    )
    return outcome


def _fail(document: Document, reason: str) -> str:
    if not Document.objects.filter(pk=document.pk).exists():
        return "gone"
    document_fail(document.pk, reason)
    _record(document, "failure", reason=reason[:500])
    logger.info("document_ingest id=%s outcome=failed reason=%s", document.pk, reason[:200])
    return DocumentStatus.FAILED
