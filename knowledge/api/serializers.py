"""Input and output serializers of the knowledge-base API."""

from __future__ import annotations

from rest_framework import serializers

from inferia.serializers import InputSerializer
from knowledge.models import Document, KnowledgeBase
from orgs.models import slug_validator


class KnowledgeBaseCreateInput(InputSerializer):
    name = serializers.CharField(max_length=50, validators=[slug_validator])
    description = serializers.CharField(
        max_length=500, required=False, allow_blank=True, default=""
    )
    embedding_model = serializers.CharField(
        max_length=200,
        help_text="The model that embeds documents and queries: an FQN (account/model) or "
        "deployment/<name> that you may use.",
    )
    chunk_size = serializers.IntegerField(
        required=False, default=1000, min_value=100, max_value=8000, help_text="Characters."
    )
    chunk_overlap = serializers.IntegerField(
        required=False, default=200, min_value=0, max_value=4000, help_text="Characters."
    )


class KnowledgeBaseUpdateInput(InputSerializer):
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    embedding_model = serializers.CharField(max_length=200, required=False)
    chunk_size = serializers.IntegerField(required=False, min_value=100, max_value=8000)
    chunk_overlap = serializers.IntegerField(required=False, min_value=0, max_value=4000)


class KnowledgeBaseOutput(serializers.ModelSerializer):
    document_count = serializers.SerializerMethodField()

    class Meta:
        model = KnowledgeBase
        fields = [
            "id",
            "name",
            "description",
            "embedding_model",
            "dimensions",
            "chunk_size",
            "chunk_overlap",
            "document_count",
            "created_at",
            "updated_at",
        ]

    def get_document_count(self, kb) -> int:
        count = getattr(kb, "document_count", None)
        if count is None:
            count = kb.documents.filter(status="ready").count()
        return int(count)


UPLOAD_CONTENT_TYPES = ["text/plain", "text/markdown", "text/html"]


class DocumentUploadInput(InputSerializer):
    """What ``POST .../documents`` takes, multipart or JSON (the view checks that exactly
    one of ``file`` and ``text`` is given; the service checks the rest)."""

    file = serializers.FileField(required=False, allow_empty_file=True, use_url=False)
    text = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    name = serializers.CharField(required=False, max_length=255)
    content_type = serializers.CharField(required=False, max_length=100)
    # A JSON object; in a multipart form, its JSON text.
    metadata = serializers.JSONField(required=False)


class DocumentUploadMultipart(serializers.Serializer):
    file = serializers.FileField(
        help_text="The file: text/plain, text/markdown, text/html (UTF-8) or application/pdf, "
        "at most INFERIA_KB_MAX_FILE_BYTES (20 MiB). Its part's Content-Type names the "
        "type (or the file name's extension when it is application/octet-stream)."
    )
    name = serializers.CharField(
        required=False,
        max_length=255,
        help_text="The document's name (default: the file name). Uploading a name again "
        "replaces that document once the new version is ready.",
    )
    content_type = serializers.CharField(
        required=False, max_length=100, help_text="Overrides the part's Content-Type."
    )
    metadata = serializers.CharField(
        required=False,
        help_text='A JSON object as text, e.g. {"team": "hr", "year": 2026}: string, number '
        "or boolean values, at most 32 keys; every chunk carries it (query filters).",
    )


class DocumentUploadJson(serializers.Serializer):
    name = serializers.CharField(max_length=255, help_text="The document's name.")
    text = serializers.CharField(help_text="The document itself (UTF-8 text).")
    content_type = serializers.ChoiceField(
        choices=UPLOAD_CONTENT_TYPES, required=False, default="text/plain"
    )
    metadata = serializers.DictField(
        required=False,
        help_text="String, number or boolean values, at most 32 keys; every chunk carries "
        "it (query filters).",
    )


class DocumentOutput(serializers.ModelSerializer):
    knowledge_base = serializers.CharField(source="knowledge_base.name", read_only=True)

    class Meta:
        model = Document
        fields = [
            "id",
            "knowledge_base",
            "name",
            "version",
            "status",
            "status_reason",
            "chunks_done",
            "chunks_total",
            "pages",
            "size_bytes",
            "content_type",
            "sha256",
            "metadata",
            "created_at",
            "ready_at",
        ]


class KnowledgeBaseQueryInput(InputSerializer):
    query = serializers.CharField(
        max_length=2000,
        trim_whitespace=False,
        help_text="What to look for: embedded for the vector ranking and matched as full "
        'text in web-search syntax (all words, "a phrase", or, -excluded).',
    )
    top_k = serializers.IntegerField(required=False, default=5, min_value=1, max_value=50)
    min_score = serializers.FloatField(
        required=False,
        allow_null=True,
        default=None,
        min_value=-1,
        max_value=1,
        help_text="Drop hits whose cosine similarity to the query is lower.",
    )
    filters = serializers.DictField(
        required=False,
        default=dict,
        help_text='Chunk metadata equality: {"key": string, number or boolean}.',
    )


class QueryHitOutput(serializers.Serializer):
    chunk_id = serializers.IntegerField()
    document_id = serializers.UUIDField()
    document = serializers.CharField(help_text="The document's name.")
    ordinal = serializers.IntegerField(help_text="The chunk's position in its document.")
    text = serializers.CharField()
    metadata = serializers.DictField()
    score = serializers.FloatField(
        help_text="Reciprocal Rank Fusion (k=60) of the vector and full-text rankings, "
        "scaled so that 1.0 is first in both (first by vector only: 0.5)."
    )
    similarity = serializers.FloatField(help_text="Cosine similarity to the query.")
    text_rank = serializers.FloatField(
        allow_null=True,
        help_text="Full-text rank (higher is better; comparable within one answer), "
        "null when the chunk did not match the query's words.",
    )


class KnowledgeBaseQueryOutput(serializers.Serializer):
    results = QueryHitOutput(many=True)
    knowledge_base = serializers.CharField()
    embedding_model = serializers.CharField()
