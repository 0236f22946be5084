"""Writes of knowledge bases (collections). Documents: ``knowledge.documents``.

Every change is audited in its transaction and bumps the org's epoch on commit, so
the gateway's cached principals (which carry the collections they may search) are
rebuilt at once.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from audit import services as audit
from inferia import store
from inferia.errors import Conflict, PermissionDenied, ValidationError
from inferia.request_meta import RequestMeta
from keys import access_rules
from keys.models import AccessRule
from knowledge import policy
from knowledge.models import KnowledgeBase
from orgs.access import Access
from orgs.models import slug_validator

CHUNK_SIZE_RANGE = (100, 8000)
MAX_DESCRIPTION = 500


def _record(
    access: Access, action: str, kb: KnowledgeBase, meta: RequestMeta | None, **data: Any
) -> None:
    audit.record(
        action=action,
        outcome="success",
        org=access.org,
        actor=access.user,
        actor_label=access.actor_label,
        target=kb,
        meta=meta,
        data={"name": kb.name, **data},
    )


def _settings(kb: KnowledgeBase) -> dict[str, Any]:
    return {
        "description": kb.description,
        "embedding_model": kb.embedding_model,
        "chunk_size": kb.chunk_size,
        "chunk_overlap": kb.chunk_overlap,
    }


def validate_embedding_model(access: Access, model: Any) -> str:
    """The embedding model: a model (or ``deployment/<name>``) of the org that ``access``
    may itself use; a collection cannot make anyone embed with a model they may not."""
    if not isinstance(model, str) or not model:
        raise ValidationError(
            "Invalid embedding model", details={"embedding_model": ["A model name is required."]}
        )
    if model not in access_rules.Catalog.load().models:
        raise ValidationError(
            "Unknown embedding model",
            details={"embedding_model": [f"No enabled model or deployment {model!r} in this org."]},
        )
    if not access_rules.may_use_model(access, model):
        raise PermissionDenied(f"No access rule lets you use {model}")
    return model


def _validate_chunking(chunk_size: Any, chunk_overlap: Any) -> tuple[int, int]:
    errors: dict[str, list[str]] = {}
    low, high = CHUNK_SIZE_RANGE
    if (
        not isinstance(chunk_size, int)
        or isinstance(chunk_size, bool)
        or not low <= chunk_size <= high
    ):
        errors["chunk_size"] = [f"An integer from {low} to {high} (characters)."]
    elif (
        not isinstance(chunk_overlap, int)
        or isinstance(chunk_overlap, bool)
        or not 0 <= chunk_overlap < chunk_size // 2 + 1
    ):
        errors["chunk_overlap"] = ["An integer from 0 to half the chunk size."]
    if errors:
        raise ValidationError("Invalid chunking settings", details=errors)
    return chunk_size, chunk_overlap


def kb_create(
    *,
    access: Access,
    name: str,
    embedding_model: str,
    description: str = "",
    chunk_size: int = 1000,
    chunk_overlap: int = 200,
    meta: RequestMeta | None = None,
) -> KnowledgeBase:
    """Create a collection. Needs ``knowledge_base:create`` and the right to use the
    embedding model. The creator is granted it by an access rule created with it (a
    plain rule, visible and removable in the access rules; nobody else is)."""
    access.require(policy.CREATE)
    try:
        slug_validator(name)
    except Exception as exc:  # django's ValidationError
        raise ValidationError(
            "Invalid knowledge base name",
            details={"name": ["Use 1-50 lowercase letters, digits and hyphens."]},
        ) from exc
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise ValidationError(
            "Invalid description", details={"description": ["At most 500 characters."]}
        )
    model = validate_embedding_model(access, embedding_model)
    chunk_size, chunk_overlap = _validate_chunking(chunk_size, chunk_overlap)
    try:
        with transaction.atomic():
            kb = KnowledgeBase.objects.create(
                org=access.org,
                name=name,
                description=description,
                embedding_model=model,
                chunk_size=chunk_size,
                chunk_overlap=chunk_overlap,
                created_by=access.user,
                created_by_service_account=access.service_account,
            )
            _grant_creator(access, kb)
            _record(access, policy.CREATE, kb, meta, op="create", after=_settings(kb))
            store.bump_epoch(access.org.pk)
    except IntegrityError as exc:
        raise Conflict(
            "A knowledge base with this name exists", details={"name": ["Already taken."]}
        ) from exc
    return kb


def _grant_creator(access: Access, kb: KnowledgeBase) -> None:
    last = AccessRule.objects.order_by("-position").values_list("position", flat=True).first()
    rule = AccessRule.objects.create(
        org=access.org,
        position=0 if last is None else last + 1,
        description=f"Creator of knowledge base {kb.name}",
        model_patterns=[],
        knowledge_base_patterns=[kb.name],
    )
    if access.service_account is not None:
        rule.service_accounts.set([access.service_account])
    elif access.user is not None:
        rule.users.set([access.user])


def kb_update(
    *,
    access: Access,
    kb: KnowledgeBase,
    description: str | None = None,
    embedding_model: str | None = None,
    chunk_size: int | None = None,
    chunk_overlap: int | None = None,
    meta: RequestMeta | None = None,
) -> KnowledgeBase:
    """Change a collection's description or settings (``knowledge_base:create`` plus a
    grant to add data). The embedding model may change only while it holds no vectors:
    vectors of two models cannot be compared."""
    access.require(policy.CREATE)
    policy.require_add_data(access, kb)
    before = _settings(kb)
    errors: dict[str, list[str]] = {}
    if description is not None:
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
            errors["description"] = ["At most 500 characters."]
        else:
            kb.description = description
    if embedding_model is not None and embedding_model != kb.embedding_model:
        if kb.documents.exists():
            errors["embedding_model"] = [
                "Cannot change the embedding model of a collection holding documents; "
                "create a new collection."
            ]
        else:
            kb.embedding_model = validate_embedding_model(access, embedding_model)
            kb.dimensions = None
    if errors:
        raise ValidationError("Invalid knowledge base settings", details=errors)
    if chunk_size is not None or chunk_overlap is not None:
        kb.chunk_size, kb.chunk_overlap = _validate_chunking(
            kb.chunk_size if chunk_size is None else chunk_size,
            kb.chunk_overlap if chunk_overlap is None else chunk_overlap,
        )
    with transaction.atomic():
        kb.save()
        _record(access, policy.CREATE, kb, meta, op="update", before=before, after=_settings(kb))
    return kb


def kb_delete(*, access: Access, kb: KnowledgeBase, meta: RequestMeta | None = None) -> None:
    """Delete a collection with every document, chunk and vector (``knowledge_base:delete``)."""
    access.require(policy.DELETE)
    with transaction.atomic():
        counts = {"documents": kb.documents.count()}
        _record(access, policy.DELETE, kb, meta, op="delete", before=_settings(kb), **counts)
        kb.delete()
        store.bump_epoch(access.org.pk)
