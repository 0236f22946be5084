"""REST endpoints of SCIM provisioning: the org's SCIM tokens (``sso:manage``)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from inferia.api import OrgAPIView, request_meta
from inferia.request_meta import public_url
from orgs import selectors as org_selectors
from scim import selectors, services
from scim.api import serializers as s


class ScimTokenListView(OrgAPIView):
    input_serializers = {"POST": s.ScimTokenCreateInput}
    required_permissions = {"GET": "sso:manage", "POST": "sso:manage"}
    serializer_class = s.ScimTokenOutput

    def get_scoped_queryset(self):
        return selectors.scim_token_list()

    @extend_schema(responses={200: s.ScimTokenOutput(many=True)})
    def get(self, request, org):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.ScimTokenOutput(page, many=True).data)

    @extend_schema(responses={201: s.ScimTokenCreatedOutput})
    def post(self, request, org):
        data = self.input(request)
        meta = request_meta(request)
        token, plaintext = services.scim_token_create(
            access=request.access,
            name=data["name"],
            role=org_selectors.role_require_by_ref(data["role"]),
            meta=meta,
        )
        body = s.ScimTokenOutput(token).data | {
            "token": plaintext,
            "scim_base_url": public_url(meta).rstrip("/") + "/scim/v2",
        }
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})


class ScimTokenDetailView(OrgAPIView):
    required_permissions = {"GET": "sso:manage", "DELETE": "sso:manage"}
    serializer_class = s.ScimTokenOutput

    def get_scoped_queryset(self):
        return selectors.scim_token_list()

    @extend_schema(responses={200: s.ScimTokenOutput})
    def get(self, request, org, id):
        return Response(s.ScimTokenOutput(self.get_object()).data)

    @extend_schema(responses={200: s.ScimTokenOutput})
    def delete(self, request, org, id):
        token = services.scim_token_revoke(
            access=request.access, token=self.get_object(), meta=request_meta(request)
        )
        return Response(s.ScimTokenOutput(token).data)
