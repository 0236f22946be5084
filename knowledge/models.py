"""Knowledge bases: governed document collections an org searches and chats over.

A :class:`KnowledgeBase` names the model that embeds it (a model FQN or
``deployment/<name>``, called through the gateway's own path as the uploader) and
how its documents are cut into chunks. Who may search or add to which collection is
decided by the org's access rules (``keys.access_rules``: a rule's
``knowledge_bases``) together with the caller's permissions
(``knowledge_base:view`` to search, ``knowledge_base:add_data`` to upload).

A :class:`Document` is one uploaded file, ingested by a Celery task
(``knowledge.tasks``) through queued, parsing, embedding n/m to ready or failed.
Only ready documents are searched. A re-upload under the same name is a new row with
the next ``version``: the old one stays searchable until the new one is ready, then
both change in one transaction. :class:`Chunk` rows carry the text, metadata and
vector of one passage (``knowledge.vectors`` searches them).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from knowledge.fields import VectorField
from orgs.models import slug_validator
from orgs.scoping import OrgOwnedModel


class KnowledgeBase(OrgOwnedModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=50, validators=[slug_validator])
    description = models.CharField(max_length=500, blank=True)
    # The model that embeds documents and queries: an FQN or ``deployment/<name>``.
    embedding_model = models.CharField(max_length=200)
    # Learned from the first embedding (every vector of the collection has it).
    dimensions = models.PositiveIntegerField(null=True, blank=True)
    # Chunking, in characters.
    chunk_size = models.PositiveIntegerField(default=1000)
    chunk_overlap = models.PositiveIntegerField(default=200)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_service_account = models.ForeignKey(
        "keys.ServiceAccount", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(OrgOwnedModel.Meta):
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["org", "name"], name="uniq_knowledge_base_name")
        ]

    def __str__(self) -> str:
        return self.name


class DocumentStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    PARSING = "parsing", "Parsing"
    EMBEDDING = "embedding", "Embedding"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


# Not yet settled: a newer upload of the same name waits behind none of these.
PENDING_STATUSES = (DocumentStatus.QUEUED, DocumentStatus.PARSING, DocumentStatus.EMBEDDING)


class Document(OrgOwnedModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    knowledge_base = models.ForeignKey(
        KnowledgeBase, on_delete=models.CASCADE, related_name="documents"
    )
    name = models.CharField(max_length=255)
    version = models.PositiveIntegerField(default=1)
    # Normalized: text/plain, text/markdown, text/html or application/pdf.
    content_type = models.CharField(max_length=100)
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    # The uploader's key/value pairs; every chunk carries them (query filters read them).
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16, choices=DocumentStatus.choices, default=DocumentStatus.QUEUED
    )
    status_reason = models.CharField(max_length=500, blank=True)
    pages = models.PositiveIntegerField(default=0)
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    # Who uploaded it: embedding calls are made as them (user, service account, key).
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    uploaded_by_service_account = models.ForeignKey(
        "keys.ServiceAccount", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    uploaded_by_key = models.ForeignKey(
        "keys.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ready_at = models.DateTimeField(null=True, blank=True)

    class Meta(OrgOwnedModel.Meta):
        ordering = ["knowledge_base", "name", "-version"]
        constraints = [
            # One searchable document per name: a re-upload swaps in one transaction.
            models.UniqueConstraint(
                fields=["knowledge_base", "name"],
                condition=Q(status="ready"),
                name="uniq_knowledge_document_ready_name",
            ),
            models.UniqueConstraint(
                fields=["knowledge_base", "name", "version"],
                name="uniq_knowledge_document_version",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class DocumentSource(OrgOwnedModel):
    """The uploaded bytes, kept until ingestion ends (then deleted)."""

    document = models.OneToOneField(Document, on_delete=models.CASCADE, related_name="source")
    data = models.BinaryField()

    class Meta(OrgOwnedModel.Meta):
        pass


class Chunk(OrgOwnedModel):
    # An integer key: SQLite's full-text index (FTS5, external content) keys rows by it.
    id = models.BigAutoField(primary_key=True)
    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="+")
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    ordinal = models.PositiveIntegerField()
    text = models.TextField()
    # The document's metadata plus where the passage is (``page`` for PDFs).
    metadata = models.JSONField(default=dict, blank=True)
    dims = models.PositiveIntegerField(null=True, blank=True)
    embedding = VectorField(null=True, blank=True)

    class Meta(OrgOwnedModel.Meta):
        ordering = ["document", "ordinal"]
        indexes = [
            models.Index(fields=["knowledge_base", "document"], name="knowledge_chunk_kb_doc")
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.ordinal}"
