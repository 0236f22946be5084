"""Writes of knowledge-base documents: upload and delete (ingestion: ``knowledge.ingestion``).

An upload is checked synchronously (who may add to the collection and embed with its
model, the file's size and type, the org's storage), stored as a queued ``Document``
with its bytes in a ``DocumentSource``, audited, and handed to the ingestion task when
the transaction commits. A document's metadata is the uploader's data: stored and
returned, matched by filters, never interpreted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Sum

from audit import services as audit
from inferia.errors import Conflict, PayloadTooLarge, PermissionDenied, ValidationError
from inferia.request_meta import RequestMeta
from keys import access_rules
from knowledge import parsing, policy
from knowledge.models import Document, DocumentSource, DocumentStatus, KnowledgeBase
from orgs.access import Access
from orgs.models import Organization

logger = logging.getLogger(__name__)

MAX_NAME_CHARS = 255
# Metadata: a flat object, small, with keys a query filter can name.
METADATA_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
MAX_METADATA_KEYS = 32
MAX_METADATA_STRING_CHARS = 500
MAX_METADATA_BYTES = 8192
# Set by the server on every chunk of a PDF (the page it lies on).
RESERVED_METADATA_KEYS = frozenset({"page"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _invalid(field: str, message: str) -> ValidationError:
    return ValidationError(message, details={field: [message]})


def validate_name(name: Any) -> str:
    if not isinstance(name, str):
        raise _invalid("name", "A document name is required.")
    name = name.strip()
    if not name or len(name) > MAX_NAME_CHARS:
        raise _invalid("name", f"A document name of 1 to {MAX_NAME_CHARS} characters.")
    if _CONTROL.search(name):
        raise _invalid("name", "A document name cannot hold control characters.")
    return name


def validate_metadata(metadata: Any) -> dict[str, str | int | float | bool]:
    """A flat JSON object of string, number or boolean values, with at most
    ``MAX_METADATA_KEYS`` keys that match ``METADATA_KEY``; VALIDATION_ERROR naming the
    key otherwise."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise _invalid("metadata", "Metadata is a JSON object of keys to values.")
    if len(metadata) > MAX_METADATA_KEYS:
        raise _invalid("metadata", f"At most {MAX_METADATA_KEYS} keys.")
    errors: dict[str, list[str]] = {}
    clean: dict[str, str | int | float | bool] = {}
    for key, value in metadata.items():
        shown = f"metadata.{str(key)[:64]}"
        if not isinstance(key, str) or not METADATA_KEY.fullmatch(key):
            errors[shown] = [
                "Keys are 1-64 letters, digits, '_', '.' or '-', not starting with '.' or '-'."
            ]
        elif key in RESERVED_METADATA_KEYS:
            errors[shown] = [f"'{key}' is set by the server (the page of a PDF's chunk)."]
        elif isinstance(value, str):
            if len(value) > MAX_METADATA_STRING_CHARS:
                errors[shown] = [f"At most {MAX_METADATA_STRING_CHARS} characters."]
            else:
                clean[key] = value
        elif isinstance(value, bool | int):
            clean[key] = value
        elif isinstance(value, float) and math.isfinite(value):
            clean[key] = value
        else:
            errors[shown] = ["A string, a number or a boolean (no objects, lists or null)."]
    if errors:
        raise ValidationError("Invalid metadata", details=errors)
    if len(json.dumps(clean)) > MAX_METADATA_BYTES:
        raise _invalid("metadata", f"At most {MAX_METADATA_BYTES} bytes of JSON.")
    return clean


def require_embedding(access: Access, kb: KnowledgeBase) -> None:
    """The uploader's documents are embedded as them: refuse at once (403) what the
    gateway would refuse later (no ``inference:run``, or no rule for the model)."""
    access.require("inference:run")
    if not access_rules.may_use_model(access, kb.embedding_model):
        raise PermissionDenied(
            f"No access rule lets you use {kb.embedding_model}, the embedding model of "
            f"knowledge base {kb.name}"
        )


def _storage_used(org: Organization) -> int:
    # Ready and pending documents; a failed one keeps no bytes and no chunks.
    used = (
        Document.objects.filter(org=org)
        .exclude(status=DocumentStatus.FAILED)
        .aggregate(total=Sum("size_bytes"))["total"]
    )
    return int(used or 0)


def _record(
    access: Access, document: Document, meta: RequestMeta | None, *, op: str, **data: Any
) -> None:
    audit.record(
        action=policy.ADD_DATA,
        outcome="success",
        org=access.org,
        actor=access.user,
        actor_label=access.actor_label,
        target=document,
        meta=meta,
        data={
            "op": op,
            "knowledge_base": document.knowledge_base.name,
            "name": document.name,
            "version": document.version,
            **data,
        },
    )


def document_upload(
    *,
    access: Access,
    kb: KnowledgeBase,
    name: str,
    data: bytes,
    content_type: str,
    metadata: dict[str, Any] | None = None,
    filename: str = "",
    meta: RequestMeta | None = None,
) -> Document:
    """Store an upload as the next version of document ``name`` and queue its ingestion.

    Needs ``knowledge_base:add_data`` and a rule granting the collection
    (``knowledge.policy``), ``inference:run`` and the right to use the collection's
    embedding model. Raises VALIDATION_ERROR (``details``: ``file``, ``name``,
    ``metadata``) for a bad file or field, PAYLOAD_TOO_LARGE over the file limit or
    the org's storage limit (``INFERIA_KB_MAX_ORG_BYTES``), PERMISSION_DENIED.
    The document answers ``queued``; ``knowledge.ingestion`` does the rest."""
    policy.require_add_data(access, kb)
    require_embedding(access, kb)
    name = validate_name(name)
    clean_metadata = validate_metadata(metadata)
    # An unknown type goes by the file's extension (else the document name's).
    content_type = parsing.normalize_content_type(content_type, filename or name, data)
    pages = parsing.validate_upload(data, content_type)
    size = len(data)
    limit = settings.INFERIA_KB_MAX_ORG_BYTES
    try:
        with transaction.atomic():
            # One upload of the org at a time past this point (PostgreSQL), so two
            # cannot both fit in the room left for one.
            Organization.objects.select_for_update().filter(pk=access.org.pk).first()
            used = _storage_used(access.org)
            if used + size > limit:
                raise PayloadTooLarge(
                    f"Storage limit reached: the organization's documents take {used:,} "
                    f"bytes and this file {size:,} more, over its limit of {limit:,} bytes "
                    "(INFERIA_KB_MAX_ORG_BYTES). Delete documents to make room.",
                    details={"file": ["Over the organization's document storage limit."]},
                )
            latest = Document.objects.filter(knowledge_base=kb, name=name).aggregate(
                latest=Max("version")
            )["latest"]
            document = Document.objects.create(
                org=access.org,
                knowledge_base=kb,
                name=name,
                version=(latest or 0) + 1,
                content_type=content_type,
                size_bytes=size,
                sha256=hashlib.sha256(data).hexdigest(),
                metadata=clean_metadata,
                status=DocumentStatus.QUEUED,
                pages=pages,
                uploaded_by=access.user,
                uploaded_by_service_account=access.service_account,
                uploaded_by_key=access.api_key,
            )
            DocumentSource.objects.create(org=access.org, document=document, data=data)
            _record(
                access,
                document,
                meta,
                op="upload",
                content_type=content_type,
                size_bytes=size,
                sha256=document.sha256,
            )
            transaction.on_commit(lambda: _enqueue(document))
    except IntegrityError as exc:
        # The same name uploaded twice at once (SQLite, which has no row locks).
        raise Conflict(
            "Another upload of this document is being stored; try again",
            details={"name": ["Uploaded twice at once."]},
        ) from exc
    return document


def _enqueue(document: Document) -> None:
    from knowledge import ingestion, tasks

    try:
        tasks.ingest_document.delay(str(document.org_id), str(document.pk))
    except Exception:  # the broker is down: say so on the document, not as a 500
        if settings.CELERY_TASK_ALWAYS_EAGER:
            raise
        logger.exception("could not queue the ingestion of document %s", document.pk)
        ingestion.document_fail(
            document.pk,
            "Ingestion could not be queued (the task queue is unavailable); upload again.",
        )


def document_delete(*, access: Access, document: Document, meta: RequestMeta | None = None) -> None:
    """Delete a document (any version, any status) with every chunk and vector, and its
    stored bytes. Needs ``knowledge_base:add_data`` and a grant of its collection. An
    ingestion still running notices and stops."""
    kb = document.knowledge_base
    policy.require_add_data(access, kb)
    with transaction.atomic():
        _record(
            access,
            document,
            meta,
            op="delete",
            status=document.status,
            chunks=document.chunks_done,
        )
        document.delete()
