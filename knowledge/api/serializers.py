"""Input and output serializers of the knowledge-base API."""

from __future__ import annotations

from rest_framework import serializers

from inferia.serializers import InputSerializer
from knowledge.models import KnowledgeBase
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
