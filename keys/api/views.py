"""REST endpoints of keys/: service accounts, API keys, provider accounts, access rules."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from inferia.api import ANY_MEMBER, RAW_BODY, OrgAPIView, request_meta
from inferia.errors import NotFound, ValidationError
from inferia.request_types import OrgAPIRequest
from inferia.yaml_api import YamlAliasParser, YamlEndpointNegotiation, YamlTextParser
from keys import access_rules, grants, selectors, services
from keys.api import serializers as s
from orgs import selectors as org_selectors
from orgs.models import User

# --- service accounts -------------------------------------------------------------------


class ServiceAccountListView(OrgAPIView):
    input_serializers = {"POST": s.ServiceAccountCreateInput}
    required_permissions = {"GET": "member:view", "POST": "service_account:manage"}
    serializer_class = s.ServiceAccountOutput

    def get_scoped_queryset(self):
        return selectors.service_account_list()

    @extend_schema(
        parameters=[OpenApiParameter("role", str, description="Role id, slug or name")],
        responses={200: s.ServiceAccountOutput(many=True)},
    )
    def get(self, request, org):
        queryset = self.get_queryset()
        if "role" in request.query_params:
            role = org_selectors.role_require_by_ref(request.query_params["role"])
            queryset = queryset.filter(role=role)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(s.ServiceAccountOutput(page, many=True).data)

    @extend_schema(responses={201: s.ServiceAccountOutput})
    def post(self, request, org):
        data = self.input(request)
        account = services.service_account_create(
            access=request.access,
            slug=data["slug"],
            name=data["name"],
            description=data["description"],
            role=org_selectors.role_require_by_ref(data["role"]),
            meta=request_meta(request),
        )
        return Response(s.ServiceAccountOutput(account).data, status=status.HTTP_201_CREATED)


class ServiceAccountDetailView(OrgAPIView):
    input_serializers = {"PATCH": s.ServiceAccountUpdateInput}
    required_permissions = {
        "GET": "member:view",
        "PATCH": "service_account:manage",
        "DELETE": "service_account:manage",
    }
    serializer_class = s.ServiceAccountOutput

    def get_scoped_queryset(self):
        return selectors.service_account_list()

    @extend_schema(responses={200: s.ServiceAccountOutput})
    def get(self, request, org, id):
        return Response(s.ServiceAccountOutput(self.get_object()).data)

    @extend_schema(responses={200: s.ServiceAccountOutput})
    def patch(self, request, org, id):
        account = self.get_object()
        data = dict(self.input(request))
        if "role" in data:
            data["role"] = org_selectors.role_require_by_ref(data["role"])
        account = services.service_account_update(
            access=request.access, account=account, changes=data, meta=request_meta(request)
        )
        return Response(s.ServiceAccountOutput(account).data)

    @extend_schema(responses={204: None})
    def delete(self, request, org, id):
        services.service_account_delete(
            access=request.access, account=self.get_object(), meta=request_meta(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- API keys ---------------------------------------------------------------------------


class ApiKeyListView(OrgAPIView):
    input_serializers = {"POST": s.ApiKeyCreateInput}
    request: OrgAPIRequest
    # GET: everyone sees their own keys; api_key:view shows all (selector).
    required_permissions = {"GET": ANY_MEMBER, "POST": "api_key:create"}
    serializer_class = s.ApiKeyOutput

    def get_scoped_queryset(self):
        return selectors.api_key_list_for(self.request.access)

    @extend_schema(responses={200: s.ApiKeyOutput(many=True)})
    def get(self, request, org):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.ApiKeyOutput(page, many=True).data)

    @extend_schema(responses={201: s.ApiKeyCreatedOutput})
    def post(self, request, org):
        data = self.input(request)
        service_account = None
        if data.get("service_account"):
            service_account = selectors.service_account_get_by_ref(data["service_account"])
            if service_account is None:
                raise ValidationError(
                    "Unknown service account",
                    details={"service_account": ["No such service account."]},
                )
        key, plaintext = services.api_key_create(
            access=request.access,
            name=data["name"],
            permissions=data["permissions"],
            expires_in_days=data.get("expires_in_days"),
            service_account=service_account,
            models=data.get("models"),
            meta=request_meta(request),
        )
        body = s.ApiKeyOutput(key).data | {"key": plaintext}
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})


class ApiKeyDetailView(OrgAPIView):
    request: OrgAPIRequest
    # Own keys for everyone; others' with api_key:view / api_key:revoke (service).
    required_permissions = {"GET": ANY_MEMBER, "DELETE": ANY_MEMBER}
    serializer_class = s.ApiKeyOutput

    def get_scoped_queryset(self):
        return selectors.api_key_list_for(self.request.access)

    @extend_schema(responses={200: s.ApiKeyOutput})
    def get(self, request, org, id):
        return Response(s.ApiKeyOutput(self.get_object()).data)

    @extend_schema(responses={200: s.ApiKeyOutput})
    def delete(self, request, org, id):
        key = services.api_key_revoke(
            access=request.access, key=self.get_object(), meta=request_meta(request)
        )
        return Response(s.ApiKeyOutput(key).data)


class ApiKeyRotateView(OrgAPIView):
    input_serializers = {"POST": s.ApiKeyRotateInput}
    request: OrgAPIRequest
    required_permissions = {"POST": ANY_MEMBER}
    serializer_class = s.ApiKeyCreatedOutput

    def get_scoped_queryset(self):
        return selectors.api_key_list_for(self.request.access)

    @extend_schema(responses={201: s.ApiKeyCreatedOutput})
    def post(self, request, org, id):
        data = self.input(request)
        key, plaintext = services.api_key_rotate(
            access=request.access,
            key=self.get_object(),
            grace_seconds=data["grace_seconds"],
            meta=request_meta(request),
        )
        body = s.ApiKeyOutput(key).data | {"key": plaintext}
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})


# --- provider accounts ------------------------------------------------------------------


class ProviderAccountListView(OrgAPIView):
    input_serializers = {"POST": s.ProviderAccountCreateInput}
    required_permissions = {"GET": "provider_account:view", "POST": "provider_account:manage"}
    serializer_class = s.ProviderAccountOutput

    def get_scoped_queryset(self):
        return selectors.provider_account_list()

    @extend_schema(responses={200: s.ProviderAccountOutput(many=True)})
    def get(self, request, org):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.ProviderAccountOutput(page, many=True).data)

    @extend_schema(responses={201: s.ProviderAccountOutput})
    def post(self, request, org):
        data = self.input(request)
        account = services.provider_account_create(
            access=request.access, meta=request_meta(request), **data
        )
        return Response(s.ProviderAccountOutput(account).data, status=status.HTTP_201_CREATED)


class ProviderAccountDetailView(OrgAPIView):
    input_serializers = {"PATCH": s.ProviderAccountUpdateInput}
    # PATCH/DELETE: provider_account:manage from the role or granted on this account (service).
    required_permissions = {
        "GET": "provider_account:view",
        "PATCH": ANY_MEMBER,
        "DELETE": ANY_MEMBER,
    }
    serializer_class = s.ProviderAccountOutput

    def get_scoped_queryset(self):
        return selectors.provider_account_list()

    @extend_schema(responses={200: s.ProviderAccountOutput})
    def get(self, request, org, id):
        return Response(s.ProviderAccountOutput(self.get_object()).data)

    @extend_schema(responses={200: s.ProviderAccountOutput})
    def patch(self, request, org, id):
        account = self.get_object()
        data = dict(self.input(request))
        otp_code = data.pop("otp_code", None) or None
        account = services.provider_account_update(
            access=request.access,
            account=account,
            changes=data,
            otp_code=otp_code,
            meta=request_meta(request),
        )
        return Response(s.ProviderAccountOutput(account).data)

    @extend_schema(responses={204: None})
    def delete(self, request, org, id):
        services.provider_account_delete(
            access=request.access, account=self.get_object(), meta=request_meta(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProviderSecretView(OrgAPIView):
    input_serializers = {"PUT": s.ProviderSecretInput}
    required_permissions = {"PUT": ANY_MEMBER}  # role or object grant (service)
    serializer_class = s.ProviderAccountOutput

    def get_scoped_queryset(self):
        return selectors.provider_account_list()

    @extend_schema(responses={200: s.ProviderAccountOutput})
    def put(self, request, org, id):
        account = self.get_object()
        data = self.input(request)
        account = services.provider_account_set_secret(
            access=request.access,
            account=account,
            secret=data.get("secret"),
            secret_ref=data.get("secret_ref"),
            otp_code=data.get("otp_code") or None,
            meta=request_meta(request),
        )
        return Response(s.ProviderAccountOutput(account).data)


class ProviderGrantView(OrgAPIView):
    """Who may manage this one account besides role holders: POST grants, DELETE revokes."""

    input_serializers = {"POST": s.ProviderGrantInput, "DELETE": s.ProviderGrantInput}

    required_permissions = {
        "GET": "provider_account:view",
        "POST": "provider_account:manage",
        "DELETE": "provider_account:manage",
    }

    def get_scoped_queryset(self):
        return selectors.provider_account_list()

    def _holder(self, request):
        data = self.input(request)
        if bool(data.get("team")) == bool(data.get("user")):
            raise ValidationError(
                "Give a team or a user", details={"team": ["Give exactly one of team, user."]}
            )
        if data.get("team"):
            team = org_selectors.team_list().filter(slug=data["team"]).first()
            if team is None:
                raise ValidationError("Unknown team", details={"team": ["No such team."]})
            return {"team": team}
        member = org_selectors.member_list().filter(user__username=data["user"]).first()
        if member is None:
            raise ValidationError("Unknown member", details={"user": ["No such member."]})
        return {"user": member.user}

    @extend_schema(responses={200: s.ProviderGrantsOutput})
    def get(self, request, org, id):
        return Response(grants.provider_account_grants(self.get_object()))

    @extend_schema(responses={200: s.ProviderGrantsOutput})
    def post(self, request, org, id):
        account = self.get_object()
        result = grants.provider_account_grant(
            access=request.access,
            account=account,
            meta=request_meta(request),
            **self._holder(request),
        )
        return Response(result)

    @extend_schema(responses={200: s.ProviderGrantsOutput})
    def delete(self, request, org, id):
        account = self.get_object()
        result = grants.provider_account_grant(
            access=request.access,
            account=account,
            revoke=True,
            meta=request_meta(request),
            **self._holder(request),
        )
        return Response(result)


# --- access rules -----------------------------------------------------------------------


class AccessRuleListView(OrgAPIView):
    input_serializers = {"POST": s.AccessRuleInput}
    required_permissions = {"GET": "model:read", "POST": "policy:manage"}
    serializer_class = s.AccessRuleOutput

    def get_scoped_queryset(self):
        return selectors.access_rule_list()

    @extend_schema(responses={200: s.AccessRuleOutput(many=True)})
    def get(self, request, org):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.AccessRuleOutput(page, many=True).data)

    @extend_schema(responses={201: s.AccessRuleOutput})
    def post(self, request, org):
        if not isinstance(request.data, dict):
            raise ValidationError("Expected a JSON object")
        rule = access_rules.access_rule_create(
            access=request.access, rule=request.data, meta=request_meta(request)
        )
        return Response(s.AccessRuleOutput(rule).data, status=status.HTTP_201_CREATED)


class AccessRuleDetailView(OrgAPIView):
    required_permissions = {"GET": "model:read", "DELETE": "policy:manage"}
    serializer_class = s.AccessRuleOutput

    def get_scoped_queryset(self):
        return selectors.access_rule_list()

    @extend_schema(responses={200: s.AccessRuleOutput})
    def get(self, request, org, id):
        return Response(s.AccessRuleOutput(self.get_object()).data)

    @extend_schema(responses={204: None})
    def delete(self, request, org, id):
        access_rules.access_rule_delete(
            access=request.access, rule=self.get_object(), meta=request_meta(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class AccessRulesYamlView(OrgAPIView):
    """The whole rule set as YAML (``authz_rules:``); PUT replaces it atomically."""

    input_serializers = {"PUT": RAW_BODY}

    required_permissions = {"GET": "model:read", "PUT": "policy:manage"}
    parser_classes = [YamlTextParser, YamlAliasParser, JSONParser]
    content_negotiation_class = YamlEndpointNegotiation

    def get_scoped_queryset(self):
        return selectors.access_rule_list()

    @extend_schema(responses={(200, "application/yaml"): s.AccessRulesDocument})
    def get(self, request, org):
        return HttpResponse(
            access_rules.export_yaml(request.access), content_type="application/yaml; charset=utf-8"
        )

    @extend_schema(
        request={
            "application/yaml": s.AccessRulesDocument,
            "application/json": s.AccessRulesDocument,
        },
        responses={200: s.AccessRulesReplacedOutput},
    )
    def put(self, request, org):
        data = request.data
        document = access_rules.load_yaml(data) if isinstance(data, str) else data
        rules = access_rules.access_rules_replace(
            access=request.access, document=document, meta=request_meta(request)
        )
        return Response({"count": len(rules), "results": s.AccessRuleOutput(rules, many=True).data})


class EffectiveAccessView(OrgAPIView):
    """``?user=`` / ``?service_account=`` -> models; ``?model=`` -> who may use it."""

    required_permissions = {"GET": "model:read"}

    def get_scoped_queryset(self):
        return selectors.access_rule_list()

    @extend_schema(
        parameters=[
            OpenApiParameter("user", str),
            OpenApiParameter("service_account", str),
            OpenApiParameter("model", str),
        ],
        responses={200: dict},
    )
    def get(self, request, org):
        params = request.query_params
        if "model" in params:
            return Response({"model": params["model"], **access_rules.who_may_use(params["model"])})
        if "service_account" in params:
            account = selectors.service_account_get_by_ref(params["service_account"])
            if account is None:
                raise NotFound("Service account not found")
            account_subject = access_rules.subject_for_service_account(account)
            return Response(
                {
                    "service_account": account.slug,
                    "models": access_rules.allowed_models(account_subject),
                }
            )
        if "user" in params:
            user = User.objects.filter(username=params["user"]).first()
            user_subject = access_rules.subject_for_user(user) if user else None
            if user is None or user_subject is None:
                raise NotFound("Member not found")
            return Response(
                {"user": user.username, "models": access_rules.allowed_models(user_subject)}
            )
        subject = access_rules.subject_for_access(request.access)
        return Response(
            {"models": access_rules.allowed_models(subject, key=request.access.api_key)}
        )
