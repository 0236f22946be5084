"""REST endpoints of deployments: ``/api/v1/orgs/{org}/deployments`` and its YAML twin.

Deployments are addressed by name (``/deployments/chat``), the name the gateway calls
(``deployment/chat``). Views read through ``deployments.selectors`` and change through
``deployments.services``; the rules live there.
"""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from deployments import documents, selectors, services
from deployments.api import serializers as s
from inferia.api import ANY_MEMBER, RAW_BODY, OrgAPIView, request_meta
from inferia.yaml_api import YamlAliasParser, YamlEndpointNegotiation, YamlTextParser
from keys import access_rules


class DeploymentListView(OrgAPIView):
    input_serializers = {"POST": s.DeploymentCreateInput}
    required_permissions = {"GET": "deployment:view", "POST": "deployment:create"}
    serializer_class = s.DeploymentOutput

    def get_scoped_queryset(self):
        return selectors.deployment_list()

    @extend_schema(responses={200: s.DeploymentOutput(many=True)})
    def get(self, request, org):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.DeploymentOutput(page, many=True).data)

    @extend_schema(responses={201: s.DeploymentOutput})
    def post(self, request, org):
        data = self.input(request)
        deployment = services.deployment_create(
            access=request.access,
            name=data["name"],
            description=data["description"],
            config=documents.routing_document(data),
            launcher=data.get("launcher"),
            comment=data["comment"],
            meta=request_meta(request),
        )
        return Response(s.DeploymentOutput(deployment).data, status=status.HTTP_201_CREATED)


class DeploymentDetailView(OrgAPIView):
    input_serializers = {"PATCH": s.DeploymentUpdateInput}
    required_permissions = {
        "GET": "deployment:view",
        "PATCH": "deployment:update",
        "DELETE": "deployment:delete",
    }
    serializer_class = s.DeploymentOutput

    def get_scoped_queryset(self):
        return selectors.deployment_list()

    @extend_schema(responses={200: s.DeploymentOutput})
    def get(self, request, org, name):
        return Response(s.DeploymentOutput(selectors.deployment_get(name)).data)

    @extend_schema(responses={200: s.DeploymentOutput})
    def patch(self, request, org, name):
        deployment = selectors.deployment_get(name)
        data = self.input(request)
        changes = documents.routing_document(data)
        meta = request_meta(request)
        if changes or "description" in data:
            deployment = services.deployment_update(
                access=request.access,
                deployment=deployment,
                # The fields given replace those of the current document.
                config={**deployment.config, **changes} if changes else None,
                description=data.get("description"),
                comment=data["comment"],
                meta=meta,
            )
        if "status" in data:
            deployment = services.deployment_set_status(
                access=request.access, deployment=deployment, status=data["status"], meta=meta
            )
        return Response(s.DeploymentOutput(deployment).data)

    @extend_schema(responses={204: None})
    def delete(self, request, org, name):
        services.deployment_delete(
            access=request.access,
            deployment=selectors.deployment_get(name),
            meta=request_meta(request),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeploymentVersionListView(OrgAPIView):
    required_permissions = {"GET": "deployment:view"}
    serializer_class = s.DeploymentVersionOutput

    def get_scoped_queryset(self):
        return selectors.deployment_list()

    @extend_schema(responses={200: s.DeploymentVersionOutput(many=True)})
    def get(self, request, org, name):
        versions = selectors.deployment_version_list(selectors.deployment_get(name))
        page = self.paginate_queryset(versions)
        return self.get_paginated_response(s.DeploymentVersionOutput(page, many=True).data)


class DeploymentRollbackView(OrgAPIView):
    input_serializers = {"POST": s.DeploymentRollbackInput}
    required_permissions = {"POST": "deployment:update"}
    serializer_class = s.DeploymentOutput

    def get_scoped_queryset(self):
        return selectors.deployment_list()

    @extend_schema(responses={200: s.DeploymentOutput})
    def post(self, request, org, name):
        deployment = selectors.deployment_get(name)
        data = self.input(request)
        deployment = services.deployment_rollback(
            access=request.access,
            deployment=deployment,
            version=data["version"],
            comment=data["comment"],
            meta=request_meta(request),
        )
        return Response(s.DeploymentOutput(deployment).data)


class DeploymentHealthView(OrgAPIView):
    required_permissions = {"GET": "deployment:view"}
    serializer_class = s.DeploymentHealthOutput

    def get_scoped_queryset(self):
        return selectors.deployment_list()

    @extend_schema(responses={200: s.DeploymentHealthOutput})
    def get(self, request, org, name):
        return Response(selectors.deployment_health(selectors.deployment_get(name)))


class DeploymentsYamlView(OrgAPIView):
    """Every deployment as YAML (``deployments:``); PUT replaces them all or nothing."""

    input_serializers = {"PUT": RAW_BODY}
    # PUT: deployment:view, and create/update/delete for what the document changes (service).
    required_permissions = {"GET": "deployment:view", "PUT": ANY_MEMBER}
    parser_classes = [YamlTextParser, YamlAliasParser, JSONParser]
    content_negotiation_class = YamlEndpointNegotiation

    def get_scoped_queryset(self):
        return selectors.deployment_list()

    @extend_schema(responses={(200, "application/yaml"): s.DeploymentsDocument})
    def get(self, request, org):
        return HttpResponse(documents.export_yaml(), content_type="application/yaml; charset=utf-8")

    @extend_schema(
        request={
            "application/yaml": s.DeploymentsDocument,
            "application/json": s.DeploymentsDocument,
        },
        responses={200: s.DeploymentsReplacedOutput},
    )
    def put(self, request, org):
        data = request.data
        document = access_rules.load_yaml(data) if isinstance(data, str) else data
        plan = services.deployments_replace(
            access=request.access, document=document, meta=request_meta(request), source="yaml"
        )
        results = s.DeploymentOutput(selectors.deployment_list(), many=True).data
        return Response({**plan.changes, "results": results})
