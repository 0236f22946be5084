"""``/api/v1/orgs/{org}/identity-providers``, ``/sso-domains``, mapping rules, and the
API's SSO sign-in (``/api/v1/auth/sso/{org}`` then ``/api/v1/auth/sso/token``)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from inferia.api import OrgAPIView, UserAPIView, request_meta
from inferia.errors import NotFound, UpstreamError, ValidationError
from inferia.request_meta import RequestMeta, public_url
from orgs import selectors as org_selectors
from orgs.api.serializers import TokenPairOutput
from orgs.models import Organization
from sso import selectors, services
from sso.api import serializers as s
from sso.errors import SsoError
from sso.models import FlowPurpose, IdentityProvider
from sso.redirects import loopback_redirect_uri


def _base_url(request) -> str:
    return public_url(RequestMeta.from_http(request._request))


def _provider_fields(data: dict[str, Any]) -> dict[str, Any]:
    fields = dict(data)
    if "default_role" in fields:
        fields["default_role"] = org_selectors.role_require_by_ref(
            fields["default_role"], "default_role"
        )
    return fields


class IdentityProviderListView(OrgAPIView):
    input_serializers = {"POST": s.IdentityProviderCreateInput}
    required_permissions = {"GET": "sso:manage", "POST": "sso:manage"}
    serializer_class = s.IdentityProviderOutput

    def get_scoped_queryset(self):
        return selectors.identity_provider_list()

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "base_url": _base_url(self.request)}

    @extend_schema(responses={200: s.IdentityProviderOutput(many=True)})
    def get(self, request, org):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(responses={201: s.IdentityProviderOutput})
    def post(self, request, org):
        data = _provider_fields(self.input(request))
        provider = services.identity_provider_create(
            access=request.access,
            name=data.pop("name"),
            kind=data.pop("kind"),
            default_role=data.pop("default_role", None),
            client_secret=data.pop("client_secret", None),
            meta=request_meta(request),
            **data,
        )
        return Response(self.get_serializer(provider).data, status=status.HTTP_201_CREATED)


class IdentityProviderDetailView(OrgAPIView):
    input_serializers = {"PATCH": s.IdentityProviderUpdateInput}
    required_permissions = {"GET": "sso:manage", "PATCH": "sso:manage", "DELETE": "sso:manage"}
    serializer_class = s.IdentityProviderOutput

    def get_scoped_queryset(self):
        return selectors.identity_provider_list()

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "base_url": _base_url(self.request)}

    @extend_schema(responses={200: s.IdentityProviderOutput})
    def get(self, request, org, id):
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(responses={200: s.IdentityProviderOutput})
    def patch(self, request, org, id):
        provider = self.get_object()
        data = _provider_fields(self.input(request))
        client_secret = data.pop("client_secret", None)
        otp_code = data.pop("otp_code", None) or None
        enabled = data.pop("is_enabled", None)
        if enabled is not None:
            services.identity_provider_set_enabled(
                access=request.access,
                provider=provider,
                enabled=enabled,
                meta=request_meta(request),
            )
        provider = services.identity_provider_update(
            access=request.access,
            provider=provider,
            changes=data,
            client_secret=client_secret,
            otp_code=otp_code,
            meta=request_meta(request),
        )
        return Response(self.get_serializer(provider).data)

    @extend_schema(responses={204: None})
    def delete(self, request, org, id):
        services.identity_provider_delete(
            access=request.access, provider=self.get_object(), meta=request_meta(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class MappingListView(OrgAPIView):
    input_serializers = {"POST": s.MappingInput}
    required_permissions = {"GET": "sso:manage", "POST": "sso:manage"}
    serializer_class = s.MappingOutput

    def get_scoped_queryset(self):
        return selectors.identity_provider_list()

    @extend_schema(responses={200: s.MappingOutput(many=True)})
    def get(self, request, org, id):
        provider = self.get_object()
        page = self.paginate_queryset(selectors.mapping_list(provider))
        return self.get_paginated_response(s.MappingOutput(page, many=True).data)

    @extend_schema(responses={201: s.MappingOutput})
    def post(self, request, org, id):
        provider = self.get_object()
        data = self.input(request)
        role = team = None
        if data.get("role"):
            role = org_selectors.role_require_by_ref(data["role"])
        if data.get("team"):
            team = org_selectors.team_list().filter(slug=data["team"]).first()
            if team is None:
                raise ValidationError("Unknown team", details={"team": ["No such team."]})
        rule = services.mapping_create(
            access=request.access,
            provider=provider,
            group=data["group"],
            role=role,
            team=team,
            meta=request_meta(request),
        )
        return Response(s.MappingOutput(rule).data, status=status.HTTP_201_CREATED)


class MappingDetailView(OrgAPIView):
    required_permissions = {"DELETE": "sso:manage"}

    def get_scoped_queryset(self):
        return selectors.mapping_list()

    @extend_schema(responses={204: None})
    def delete(self, request, org, id, rule_id):
        rule = selectors.mapping_list().filter(provider_id=id, pk=rule_id).first()
        if rule is None:
            raise NotFound()
        services.mapping_delete(access=request.access, rule=rule, meta=request_meta(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class DomainListView(OrgAPIView):
    input_serializers = {"POST": s.DomainClaimInput}
    required_permissions = {"GET": "sso:manage", "POST": "sso:manage"}
    serializer_class = s.DomainOutput

    def get_scoped_queryset(self):
        return selectors.domain_list()

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "is_owner": self.request.access.is_owner}

    @extend_schema(responses={200: s.DomainOutput(many=True)})
    def get(self, request, org):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(responses={201: s.DomainOutput})
    def post(self, request, org):
        domain = services.domain_claim(
            access=request.access, domain=self.input(request)["domain"], meta=request_meta(request)
        )
        return Response(self.get_serializer(domain).data, status=status.HTTP_201_CREATED)


class DomainDetailView(OrgAPIView):
    required_permissions = {"GET": "sso:manage", "DELETE": "sso:manage"}
    serializer_class = s.DomainOutput

    def get_scoped_queryset(self):
        return selectors.domain_list()

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "is_owner": self.request.access.is_owner}

    @extend_schema(responses={200: s.DomainOutput})
    def get(self, request, org, id):
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(responses={204: None})
    def delete(self, request, org, id):
        services.domain_delete(
            access=request.access, domain=self.get_object(), meta=request_meta(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class DomainConfirmView(OrgAPIView):
    input_serializers = {"POST": s.DomainConfirmInput}
    # sso:manage, and the service admits Owners only.
    required_permissions = {"POST": "sso:manage"}
    serializer_class = s.DomainOutput

    def get_scoped_queryset(self):
        return selectors.domain_list()

    @extend_schema(responses={200: s.DomainOutput})
    def post(self, request, org, id):
        domain = services.domain_confirm(
            access=request.access,
            domain=self.get_object(),
            challenge=self.input(request)["challenge"],
            meta=request_meta(request),
        )
        return Response(s.DomainOutput(domain, context={"is_owner": True}).data)


# --- the API's sign-in ----------------------------------------------------------------------


class SsoStartView(UserAPIView):
    """Start an SSO sign-in for a CLI or SDK: the answer is the URL to open in a
    browser; the sign-in ends on the client's loopback ``redirect_uri`` with a
    one-time ``code`` for ``POST /api/v1/auth/sso/token``."""

    input_serializers = {"POST": s.SsoStartInput}
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses={200: s.SsoStartOutput}, auth=[])
    def post(self, request, org):
        data = self.input(request)
        organization = Organization.objects.filter(slug=org).first()
        provider = _api_provider(organization, data.get("provider"))
        redirect_uri = loopback_redirect_uri(data["redirect_uri"])
        try:
            url, _flow = services.flow_start(
                org=provider.org,
                provider=provider,
                purpose=FlowPurpose.API,
                base_url=_base_url(request),
                client_redirect_uri=redirect_uri,
                client_code_challenge=data["code_challenge"],
            )
        except SsoError as exc:
            # The provider could not be asked (discovery failed, a bad configuration).
            services.sso_refusal_record(
                org=provider.org, provider=provider, reason=exc.reason, meta=request_meta(request)
            )
            raise UpstreamError(exc.message, details={"reason": exc.reason}) from None
        return Response(
            {"authorization_url": url, "expires_in": services.FLOW_SECONDS},
            headers={"Cache-Control": "no-store"},
        )


def _api_provider(org: Organization | None, name: str | None) -> IdentityProvider:
    from orgs.scoping import org_scope

    if org is None:
        raise NotFound("No such organization")
    with org_scope(org):
        providers = list(selectors.identity_provider_enabled_list())
    if name:
        providers = [p for p in providers if p.name == name]
    if not providers:
        raise NotFound("No such identity provider")
    if len(providers) > 1:
        raise ValidationError(
            "Choose an identity provider",
            details={"provider": [f"One of {', '.join(p.name for p in providers)}."]},
        )
    return providers[0]


class SsoTokenView(UserAPIView):
    input_serializers = {"POST": s.SsoTokenInput}
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses={200: TokenPairOutput}, auth=[])
    def post(self, request):
        data = self.input(request)
        pair = services.token_exchange(
            code=data["code"], code_verifier=data["code_verifier"], meta=request_meta(request)
        )
        body = TokenPairOutput(
            {
                "access_token": pair.access_token,
                "refresh_token": pair.refresh_token,
                "token_type": "Bearer",
                "expires_at": pair.expires_at,
                "user": pair.user,
            }
        ).data
        return Response(body, headers={"Cache-Control": "no-store"})
