"""REST endpoints of knowledge bases: ``/api/v1/orgs/{org}/knowledge-bases``.

Collections are addressed by name. Views read through ``knowledge.selectors`` and
change through ``knowledge.services`` / ``knowledge.documents``; who may do what is
``knowledge.policy``.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response

from inferia.api import OrgAPIView, request_meta
from inferia.errors import PayloadTooLarge, ValidationError
from knowledge import documents, policy, retrieval, selectors, services
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


# Room for a multipart form's boundaries, headers and small fields around the file.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def _upload(data: dict) -> tuple[bytes, str, str]:
    """The bytes, file name and declared content type of an upload, from a multipart
    ``file`` or a JSON ``text``."""
    upload, text = data.get("file"), data.get("text")
    if upload is not None and text is None:
        limit = settings.INFERIA_KB_MAX_FILE_BYTES
        if upload.size > limit:  # before reading it into memory
            raise PayloadTooLarge(
                f"The file is {upload.size:,} bytes, over the limit of {limit:,} bytes "
                "(INFERIA_KB_MAX_FILE_BYTES)",
                details={"file": [f"At most {limit:,} bytes."]},
            )
        declared = data.get("content_type") or upload.content_type or ""
        return upload.read(), upload.name or "", declared
    if text is not None and upload is None:
        declared = data.get("content_type") or "text/plain"
        if declared not in s.UPLOAD_CONTENT_TYPES:
            message = f"One of {', '.join(s.UPLOAD_CONTENT_TYPES)} (upload a PDF as a file)."
            raise ValidationError(message, details={"content_type": [message]})
        if not data.get("name"):
            raise ValidationError(
                "A name is required",
                details={"name": ["Name the document (text has no file name)."]},
            )
        return str(text).encode("utf-8"), "", declared
    message = "Send a file (multipart/form-data) or text (JSON), one of the two."
    raise ValidationError(message, details={"file": [message]})


class DocumentListView(OrgAPIView):
    """``.../knowledge-bases/{name}/documents``: list (search grant) and upload (add_data)."""

    input_serializers = {"POST": s.DocumentUploadInput}
    required_permissions = {"GET": "knowledge_base:view", "POST": "knowledge_base:add_data"}
    serializer_class = s.DocumentOutput
    parser_classes = [JSONParser, MultiPartParser]

    @classmethod
    def body_limit_bytes(cls, method: str) -> int | None:
        """Uploads may exceed ``INFERIA_MAX_BODY_BYTES`` up to the file limit
        (``inferia.middleware.BodySizeLimitMiddleware`` asks)."""
        if method != "POST":
            return None
        return settings.INFERIA_KB_MAX_FILE_BYTES + MULTIPART_OVERHEAD_BYTES

    def get_scoped_queryset(self):
        kb = selectors.kb_get(self.request.access, self.kwargs["name"])
        policy.require_search(self.request.access, kb)
        return selectors.document_list(kb).select_related("knowledge_base")

    @extend_schema(responses={200: s.DocumentOutput(many=True)})
    def get(self, request, org, name):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.DocumentOutput(page, many=True).data)

    @extend_schema(
        request={
            "multipart/form-data": s.DocumentUploadMultipart,
            "application/json": s.DocumentUploadJson,
        },
        responses={202: s.DocumentOutput},
    )
    def post(self, request, org, name):
        kb = selectors.kb_get(request.access, name)
        data = self.input(request)
        raw, filename, declared = _upload(data)
        document = documents.document_upload(
            access=request.access,
            kb=kb,
            name=data.get("name") or filename,
            data=raw,
            content_type=declared,
            metadata=data.get("metadata"),
            filename=filename,
            meta=request_meta(request),
        )
        # An eager or fast worker may have moved it on already.
        document.refresh_from_db()
        return Response(s.DocumentOutput(document).data, status=status.HTTP_202_ACCEPTED)


class DocumentDetailView(OrgAPIView):
    """``.../documents/{id}``: one document's state (search grant), or delete (add_data)."""

    required_permissions = {"GET": "knowledge_base:view", "DELETE": "knowledge_base:add_data"}
    serializer_class = s.DocumentOutput

    def get_scoped_queryset(self):
        kb = selectors.kb_get(self.request.access, self.kwargs["name"])
        return selectors.document_list(kb)

    @extend_schema(responses={200: s.DocumentOutput})
    def get(self, request, org, name, id):
        kb = selectors.kb_get(request.access, name)
        policy.require_search(request.access, kb)
        return Response(s.DocumentOutput(selectors.document_get(kb, id)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, org, name, id):
        kb = selectors.kb_get(request.access, name)
        documents.document_delete(
            access=request.access,
            document=selectors.document_get(kb, id),
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
