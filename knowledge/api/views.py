"""REST endpoints of knowledge bases: ``/api/v1/orgs/{org}/knowledge-bases``.

Collections are addressed by name. Views read through ``knowledge.selectors`` and
change through ``knowledge.services`` / ``knowledge.documents``; who may do what is
``knowledge.policy``.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from inferia.api import OrgAPIView, request_meta
from knowledge import retrieval, selectors, services
from knowledge.api import serializers as s


class KnowledgeBaseListView(OrgAPIView):
    input_serializers = {"POST": s.KnowledgeBaseCreateInput}
    required_permissions = {"GET": "knowledge_base:view", "POST": "knowledge_base:create"}
    serializer_class = s.KnowledgeBaseOutput

    def get_scoped_queryset(self):
        return selectors.kb_list(self.request.access)

    @extend_schema(responses={200: s.KnowledgeBaseOutput(many=True)})
    def get(self, request, org):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.KnowledgeBaseOutput(page, many=True).data)

    @extend_schema(responses={201: s.KnowledgeBaseOutput})
    def post(self, request, org):
        data = self.input(request)
        kb = services.kb_create(access=request.access, meta=request_meta(request), **data)
        return Response(s.KnowledgeBaseOutput(kb).data, status=status.HTTP_201_CREATED)


class KnowledgeBaseDetailView(OrgAPIView):
    input_serializers = {"PATCH": s.KnowledgeBaseUpdateInput}
    required_permissions = {
        "GET": "knowledge_base:view",
        "PATCH": "knowledge_base:create",
        "DELETE": "knowledge_base:delete",
    }
    serializer_class = s.KnowledgeBaseOutput

    def get_scoped_queryset(self):
        return selectors.kb_list(self.request.access)

    @extend_schema(responses={200: s.KnowledgeBaseOutput})
    def get(self, request, org, name):
        return Response(s.KnowledgeBaseOutput(selectors.kb_get(request.access, name)).data)

    @extend_schema(responses={200: s.KnowledgeBaseOutput})
    def patch(self, request, org, name):
        kb = selectors.kb_get(request.access, name)
        kb = services.kb_update(
            access=request.access, kb=kb, meta=request_meta(request), **self.input(request)
        )
        return Response(s.KnowledgeBaseOutput(kb).data)

    @extend_schema(responses={204: None})
    def delete(self, request, org, name):
        services.kb_delete(
            access=request.access,
            kb=selectors.kb_get(request.access, name),
            meta=request_meta(request),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class KnowledgeBaseQueryView(OrgAPIView):
    """Search a collection: its policy (``knowledge.policy``: 404 unless visible, 403
    without a grant to search), the query embedded as the caller through the gateway
    (its 403/429 come back as they are), then the hybrid search."""

    input_serializers = {"POST": s.KnowledgeBaseQueryInput}
    required_permissions = {"POST": "knowledge_base:view"}
    serializer_class = s.KnowledgeBaseQueryOutput

    def get_scoped_queryset(self):
        return selectors.kb_list(self.request.access)

    @extend_schema(responses={200: s.KnowledgeBaseQueryOutput})
    def post(self, request, org, name):
        data = self.input(request)
        kb = selectors.kb_get(request.access, name)
        hits = retrieval.kb_query(access=request.access, kb=kb, meta=request_meta(request), **data)
        return Response(
            {
                "results": [hit.as_dict() for hit in hits],
                "knowledge_base": kb.name,
                "embedding_model": kb.embedding_model,
            }
        )
