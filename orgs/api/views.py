"""REST endpoints of orgs/: thin views over selectors and services."""

from __future__ import annotations

from collections.abc import Mapping

from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import FormParser, JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from inferia.api import ANY_MEMBER, RAW_BODY, OrgAPIView, UserAPIView, request_meta
from inferia.errors import NotFound
from inferia.request_types import SignedInAPIRequest
from orgs import selectors
from orgs.access import membership_permissions
from orgs.api import serializers as s
from orgs.models import Organization, User
from orgs.policy import OrgPolicy
from orgs.services import auth, cache, device, tenancy, two_factor


def _pair_response(pair: auth.TokenPair, status_code: int = 200) -> Response:
    data = s.TokenPairOutput(
        {
            "access_token": pair.access_token,
            "refresh_token": pair.refresh_token,
            "token_type": "Bearer",
            "expires_at": pair.expires_at,
            "user": pair.user,
        }
    ).data
    return Response(data, status=status_code, headers={"Cache-Control": "no-store"})


# --- auth -----------------------------------------------------------------------------


@method_decorator(never_cache, name="dispatch")
class LoginView(UserAPIView):
    input_serializers = {"POST": s.LoginInput}
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses={200: s.TokenPairOutput}, auth=[])
    def post(self, request):
        data = self.input(request)
        pair = auth.login(
            request=request._request,
            username=data["username"],
            password=data["password"],
            otp_code=data.get("otp_code") or None,
        )
        return _pair_response(pair)


class RefreshView(UserAPIView):
    input_serializers = {"POST": s.RefreshInput}
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses={200: s.TokenPairOutput}, auth=[])
    def post(self, request):
        data = self.input(request)
        return _pair_response(
            auth.token_refresh(meta=request_meta(request), refresh_token=data["refresh_token"])
        )


class LogoutView(UserAPIView):
    input_serializers = {"POST": s.RefreshInput}
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses={204: None}, auth=[])
    def post(self, request):
        data = self.input(request)
        auth.logout(meta=request_meta(request), refresh_token=data["refresh_token"])
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- the device authorization grant (RFC 8628) ----------------------------------------
# OAuth clients parse these answers: errors take RFC 6749 section 5.2's shape
# ({"error": "authorization_pending", "error_description": ...}), not the envelope;
# failures outside OAuth's grammar (429, 503, 405, 500) keep the envelope (docs/cli.md).

_OAUTH_ERRORS = {400: s.OAuthErrorOutput, 401: s.OAuthErrorOutput}
_OAUTH_MEDIA = ("application/x-www-form-urlencoded", "application/json")
MAX_OAUTH_PARAM_CHARS = 512


def _oauth_params(request, names: tuple[str, ...]) -> dict[str, str]:
    """The named parameters of a form-encoded or JSON body, each at most once (RFC 6749
    section 3.1: repeated is invalid_request, unknown ones are ignored, empty is omitted)."""
    try:
        data = request.data
    except ParseError as exc:
        raise device.DeviceGrantError("invalid_request", "The body cannot be parsed") from exc
    if not isinstance(data, Mapping):
        raise device.DeviceGrantError(
            "invalid_request", "Send the parameters form-encoded or as a JSON object"
        )
    params: dict[str, str] = {}
    for name in names:
        found = data.getlist(name) if hasattr(data, "getlist") else [data.get(name, "")]
        if len(found) > 1:
            raise device.DeviceGrantError("invalid_request", f"{name} is repeated")
        value = found[0] if found else ""
        if value is None:
            value = ""
        if not isinstance(value, str) or len(value) > MAX_OAUTH_PARAM_CHARS:
            raise device.DeviceGrantError("invalid_request", f"{name} is not a valid value")
        params[name] = value
    return params


def _oauth_error(error: device.DeviceGrantError) -> Response:
    body: dict = {"error": error.error, "error_description": error.description}
    if error.interval is not None:
        body["interval"] = error.interval
    return Response(
        body, status=error.status, headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
    )


@method_decorator(never_cache, name="dispatch")
class OAuthEndpoint(UserAPIView):
    """An OAuth endpoint of a public client: no credential, form-encoded or JSON
    parameters read by ``_oauth_params`` (unknown ones ignored), answers never cached."""

    input_serializers = {"POST": RAW_BODY}
    parser_classes = [FormParser, JSONParser]
    authentication_classes: list = []
    permission_classes = [AllowAny]


class DeviceCodeView(OAuthEndpoint):
    @extend_schema(
        request={media: s.DeviceCodeInput for media in _OAUTH_MEDIA},
        responses={200: s.DeviceCodeOutput, **_OAUTH_ERRORS},
        auth=[],
    )
    def post(self, request):
        try:
            params = _oauth_params(request, ("client_id", "org"))
            if not params["client_id"]:
                raise device.DeviceGrantError("invalid_request", "client_id is required")
            issued = device.device_authorization_request(
                meta=request_meta(request), client_id=params["client_id"], org_slug=params["org"]
            )
        except device.DeviceGrantError as error:
            return _oauth_error(error)
        data = s.DeviceCodeOutput(
            {
                "device_code": issued.device_code,
                "user_code": issued.user_code,
                "verification_uri": issued.verification_uri,
                "verification_uri_complete": issued.verification_uri_complete,
                "expires_in": issued.expires_in,
                "interval": issued.interval,
            }
        ).data
        return Response(data, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


class DeviceTokenView(OAuthEndpoint):
    @extend_schema(
        request={media: s.DeviceTokenInput for media in _OAUTH_MEDIA},
        responses={200: s.DeviceTokenOutput, **_OAUTH_ERRORS},
        auth=[],
    )
    def post(self, request):
        try:
            params = _oauth_params(request, ("grant_type", "device_code", "client_id"))
            if params["grant_type"] != device.GRANT_TYPE:
                raise device.DeviceGrantError(
                    "unsupported_grant_type", f"grant_type must be {device.GRANT_TYPE}"
                )
            if not params["device_code"] or not params["client_id"]:
                raise device.DeviceGrantError(
                    "invalid_request", "device_code and client_id are required"
                )
            pair = device.device_token_exchange(
                meta=request_meta(request),
                client_id=params["client_id"],
                device_code=params["device_code"],
            )
        except device.DeviceGrantError as error:
            return _oauth_error(error)
        data = s.DeviceTokenOutput(
            {
                "access_token": pair.access_token,
                "refresh_token": pair.refresh_token,
                "token_type": "Bearer",
                "expires_at": pair.expires_at,
                # simplejwt stamps ``exp`` from the wall clock.
                "expires_in": max(0, int((pair.expires_at - timezone.now()).total_seconds())),
                "user": pair.user,
            }
        ).data
        return Response(data, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


class MeView(UserAPIView):
    @extend_schema(responses={200: s.MeOutput})
    def get(self, request):
        memberships = [
            {"membership": m, "permissions": sorted(membership_permissions(m))}
            for m in selectors.membership_list_for_user(request.user)
        ]
        return Response(s.MeOutput({"user": request.user, "memberships": memberships}).data)


class PasswordChangeView(UserAPIView):
    input_serializers = {"POST": s.PasswordChangeInput}

    @extend_schema(responses={200: s.TokenPairOutput})
    def post(self, request):
        data = self.input(request)
        pair = auth.password_change(
            user=request.user,
            current_password=data["current_password"],
            new_password=data["new_password"],
            meta=request_meta(request),
        )
        return _pair_response(pair)


class TwoFactorSetupView(UserAPIView):
    input_serializers = {"POST": None}

    @extend_schema(responses={200: s.TotpSetupOutput})
    def post(self, request):
        setup = two_factor.totp_setup(user=request.user, meta=request_meta(request))
        return Response(
            s.TotpSetupOutput({"otpauth_uri": setup.otpauth_uri, "qr_svg": setup.qr_svg}).data,
            headers={"Cache-Control": "no-store"},
        )


class TwoFactorConfirmView(UserAPIView):
    input_serializers = {"POST": s.OtpCodeInput}

    @extend_schema(responses={200: s.RecoveryCodesOutput})
    def post(self, request):
        data = self.input(request)
        codes = two_factor.totp_confirm(
            user=request.user, otp_code=data["otp_code"], meta=request_meta(request)
        )
        return Response({"recovery_codes": codes}, headers={"Cache-Control": "no-store"})


class TwoFactorDisableView(UserAPIView):
    input_serializers = {"POST": s.OtpCodeInput}

    @extend_schema(responses={204: None})
    def post(self, request):
        data = self.input(request)
        two_factor.totp_disable(
            user=request.user, otp_code=data["otp_code"], meta=request_meta(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class RecoveryCodesView(UserAPIView):
    input_serializers = {"POST": s.OtpCodeInput}

    @extend_schema(responses={200: s.RecoveryCodesOutput})
    def post(self, request):
        data = self.input(request)
        codes = two_factor.recovery_codes_regenerate(
            user=request.user, otp_code=data["otp_code"], meta=request_meta(request)
        )
        return Response({"recovery_codes": codes}, headers={"Cache-Control": "no-store"})


# --- organizations -------------------------------------------------------------------


class OrgListView(UserAPIView):
    input_serializers = {"POST": s.OrganizationCreateInput}
    request: SignedInAPIRequest
    serializer_class = s.OrganizationOutput

    def get_queryset(self):
        return selectors.organization_list_for_user(self.request.user)

    @extend_schema(responses={200: s.OrganizationOutput(many=True)})
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.OrganizationOutput(page, many=True).data)

    @extend_schema(responses={201: s.OrganizationOutput})
    def post(self, request):
        data = self.input(request)
        org = tenancy.organization_create(
            user=request.user, slug=data["slug"], name=data["name"], meta=request_meta(request)
        )
        return Response(s.OrganizationOutput(org).data, status=status.HTTP_201_CREATED)


class OrgDetailView(OrgAPIView):
    input_serializers = {"PATCH": s.OrganizationUpdateInput, "DELETE": s.SensitiveActionInput}
    required_permissions = {"GET": "org:view", "PATCH": "org:update", "DELETE": "org:delete"}
    serializer_class = s.OrganizationOutput

    def get_scoped_queryset(self):
        user = self.request.user
        if not isinstance(user, User):  # a service account's key: no user, no memberships
            return Organization.objects.none()
        return selectors.organization_list_for_user(user)

    @extend_schema(responses={200: s.OrganizationOutput})
    def get(self, request, org):
        return Response(s.OrganizationOutput(request.access.org).data)

    @extend_schema(responses={200: s.OrganizationOutput})
    def patch(self, request, org):
        data = self.input(request)
        updated = tenancy.organization_update(
            access=request.access, changes=data, meta=request_meta(request)
        )
        return Response(s.OrganizationOutput(updated).data)

    @extend_schema(responses={204: None})
    def delete(self, request, org):
        data = self.input(request)
        tenancy.organization_delete(
            access=request.access,
            otp_code=data.get("otp_code") or None,
            password=data.get("password") or None,
            meta=request_meta(request),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class OrgCacheView(OrgAPIView):
    """The gateway's response cache of the org: settings, what it holds, purges."""

    input_serializers = {"PATCH": s.CacheSettingsInput, "PUT": s.CacheSettingsInput}
    required_permissions = {
        "GET": "org:view",
        "PATCH": "cache:manage",
        "PUT": "cache:manage",
        "DELETE": "cache:manage",
    }
    serializer_class = s.CacheOutput

    def get_scoped_queryset(self):
        return Organization.objects.none()  # one org, the one in the path

    @extend_schema(responses={200: s.CacheOutput})
    def get(self, request, org):
        return Response(s.CacheOutput(cache.cache_state(request.access)).data)

    def _update(self, request, data: Mapping) -> Response:
        cache.cache_settings_update(
            access=request.access,
            changes={cache.FIELDS[name]: value for name, value in data.items()},
            meta=request_meta(request),
        )
        return Response(s.CacheOutput(cache.cache_state(request.access)).data)

    @extend_schema(responses={200: s.CacheOutput})
    def patch(self, request, org):
        return self._update(request, self.input(request))

    @extend_schema(responses={200: s.CacheOutput})
    def put(self, request, org):
        defaults = OrgPolicy()
        data = {name: getattr(defaults, knob) for name, knob in cache.FIELDS.items()}
        return self._update(request, {**data, **self.input(request)})

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "model", str, description="Purge this model FQN's entries only (default: all)"
            )
        ],
        responses={200: s.CachePurgeOutput},
    )
    def delete(self, request, org):
        model = request.query_params.get("model") or None
        purged = cache.cache_purge(access=request.access, model=model, meta=request_meta(request))
        return Response(s.CachePurgeOutput({"model": model, "purged": purged}).data)


class OrgTransferOwnershipView(OrgAPIView):
    input_serializers = {"POST": s.TransferOwnershipInput}
    # Owner-only: the service checks the role (no permission name means "owner").
    required_permissions = {"POST": ANY_MEMBER}

    def get_scoped_queryset(self):
        return selectors.member_list()

    @extend_schema(responses={200: s.MembershipOutput})
    def post(self, request, org):
        data = self.input(request)
        target = selectors.member_get(data["member_id"])
        if target is None:
            raise NotFound("Member not found")
        membership = tenancy.ownership_transfer(
            access=request.access,
            target=target,
            otp_code=data.get("otp_code") or None,
            password=data.get("password") or None,
            meta=request_meta(request),
        )
        return Response(s.MembershipOutput(membership).data)


# --- members -----------------------------------------------------------------------------


class MemberListView(OrgAPIView):
    required_permissions = {"GET": "member:view"}
    serializer_class = s.MembershipOutput

    def get_scoped_queryset(self):
        return selectors.member_list()

    @extend_schema(
        parameters=[OpenApiParameter("role", str, description="Role id, slug or name")],
        responses={200: s.MembershipOutput(many=True)},
    )
    def get(self, request, org):
        queryset = self.get_queryset()
        if "role" in request.query_params:
            role = selectors.role_require_by_ref(request.query_params["role"])
            queryset = queryset.filter(role=role)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(s.MembershipOutput(page, many=True).data)


class MemberDetailView(OrgAPIView):
    input_serializers = {"PATCH": s.MemberUpdateInput}
    # DELETE: anyone may leave; removing others needs member:delete (service).
    required_permissions = {"GET": "member:view", "PATCH": "member:update", "DELETE": ANY_MEMBER}
    serializer_class = s.MembershipOutput

    def get_scoped_queryset(self):
        return selectors.member_list()

    @extend_schema(responses={200: s.MembershipOutput})
    def get(self, request, org, id):
        return Response(s.MembershipOutput(self.get_object()).data)

    @extend_schema(responses={200: s.MembershipOutput})
    def patch(self, request, org, id):
        membership = self.get_object()
        data = self.input(request)
        updated = tenancy.member_change_role(
            access=request.access,
            membership=membership,
            role=selectors.role_require_by_ref(data["role"]),
            meta=request_meta(request),
        )
        return Response(s.MembershipOutput(updated).data)

    @extend_schema(responses={204: None})
    def delete(self, request, org, id):
        tenancy.member_remove(
            access=request.access, membership=self.get_object(), meta=request_meta(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- roles --------------------------------------------------------------------------------


class RoleListView(OrgAPIView):
    input_serializers = {"POST": s.RoleCreateInput}
    required_permissions = {"GET": "member:view", "POST": "policy:manage"}
    serializer_class = s.RoleOutput

    def get_scoped_queryset(self):
        return selectors.role_list()

    @extend_schema(responses={200: s.RoleOutput(many=True)})
    def get(self, request, org):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.RoleOutput(page, many=True).data)

    @extend_schema(responses={201: s.RoleOutput})
    def post(self, request, org):
        data = self.input(request)
        role = tenancy.role_create(access=request.access, meta=request_meta(request), **data)
        return Response(s.RoleOutput(role).data, status=status.HTTP_201_CREATED)


class RoleDetailView(OrgAPIView):
    input_serializers = {"PATCH": s.RoleUpdateInput}
    required_permissions = {
        "GET": "member:view",
        "PATCH": "policy:manage",
        "DELETE": "policy:manage",
    }
    serializer_class = s.RoleOutput

    def get_scoped_queryset(self):
        return selectors.role_list()

    @extend_schema(responses={200: s.RoleOutput})
    def get(self, request, org, id):
        return Response(s.RoleOutput(self.get_object()).data)

    @extend_schema(responses={200: s.RoleOutput})
    def patch(self, request, org, id):
        role = self.get_object()
        data = self.input(request)
        role = tenancy.role_update(
            access=request.access, role=role, changes=data, meta=request_meta(request)
        )
        return Response(s.RoleOutput(role).data)

    @extend_schema(responses={204: None})
    def delete(self, request, org, id):
        tenancy.role_delete(
            access=request.access, role=self.get_object(), meta=request_meta(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- teams -------------------------------------------------------------------------------


class TeamListView(OrgAPIView):
    input_serializers = {"POST": s.TeamCreateInput}
    required_permissions = {"GET": "member:view", "POST": "team:manage"}
    serializer_class = s.TeamOutput

    def get_scoped_queryset(self):
        return selectors.team_list()

    @extend_schema(responses={200: s.TeamOutput(many=True)})
    def get(self, request, org):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.TeamOutput(page, many=True).data)

    @extend_schema(responses={201: s.TeamOutput})
    def post(self, request, org):
        data = self.input(request)
        team = tenancy.team_create(access=request.access, meta=request_meta(request), **data)
        return Response(s.TeamOutput(team).data, status=status.HTTP_201_CREATED)


class TeamDetailView(OrgAPIView):
    input_serializers = {"PATCH": s.TeamUpdateInput}
    required_permissions = {"GET": "member:view", "PATCH": "team:manage", "DELETE": "team:manage"}
    serializer_class = s.TeamOutput

    def get_scoped_queryset(self):
        return selectors.team_list()

    @extend_schema(responses={200: s.TeamOutput})
    def get(self, request, org, id):
        return Response(s.TeamOutput(self.get_object()).data)

    @extend_schema(responses={200: s.TeamOutput})
    def patch(self, request, org, id):
        team = self.get_object()
        data = self.input(request)
        team = tenancy.team_update(
            access=request.access, team=team, changes=data, meta=request_meta(request)
        )
        return Response(s.TeamOutput(team).data)

    @extend_schema(responses={204: None})
    def delete(self, request, org, id):
        tenancy.team_delete(
            access=request.access, team=self.get_object(), meta=request_meta(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


def _member_by_user_or_404(user_id):
    membership = selectors.member_get_by_user(user_id)
    if membership is None:
        raise NotFound("Member not found")
    return membership


class TeamMemberListView(OrgAPIView):
    input_serializers = {"POST": s.TeamMemberInput}
    required_permissions = {"GET": "member:view", "POST": "team:manage"}
    serializer_class = s.TeamMemberOutput

    def get_scoped_queryset(self):
        return selectors.team_list()

    @extend_schema(responses={200: s.TeamMemberOutput(many=True)})
    def get(self, request, org, id):
        team = self.get_object()
        page = self.paginate_queryset(selectors.team_member_list(team))
        return self.get_paginated_response(s.TeamMemberOutput(page, many=True).data)

    @extend_schema(responses={201: s.TeamMemberOutput})
    def post(self, request, org, id):
        team = self.get_object()
        data = self.input(request)
        member = tenancy.team_member_add(
            access=request.access,
            team=team,
            membership=_member_by_user_or_404(data["user_id"]),
            meta=request_meta(request),
        )
        return Response(s.TeamMemberOutput(member).data, status=status.HTTP_201_CREATED)


class TeamMemberDetailView(OrgAPIView):
    required_permissions = {"DELETE": "team:manage"}

    def get_scoped_queryset(self):
        return selectors.team_list()

    @extend_schema(responses={204: None})
    def delete(self, request, org, id, user_id):
        team = self.get_object()
        tenancy.team_member_remove(
            access=request.access,
            team=team,
            membership=_member_by_user_or_404(user_id),
            meta=request_meta(request),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- invitations ---------------------------------------------------------------------


class InvitationListView(OrgAPIView):
    input_serializers = {"POST": s.InvitationCreateInput}
    required_permissions = {"GET": "member:view", "POST": "member:invite"}
    serializer_class = s.InvitationOutput

    def get_scoped_queryset(self):
        return selectors.invitation_list()

    @extend_schema(responses={200: s.InvitationOutput(many=True)})
    def get(self, request, org):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.InvitationOutput(page, many=True).data)

    @extend_schema(responses={201: s.InvitationOutput})
    def post(self, request, org):
        data = self.input(request)
        invitation = tenancy.invitation_create(
            access=request.access,
            email=data["email"],
            role=selectors.role_require_by_ref(data["role"]),
            meta=request_meta(request),
        )
        return Response(s.InvitationOutput(invitation).data, status=status.HTTP_201_CREATED)


class InvitationDetailView(OrgAPIView):
    required_permissions = {"GET": "member:view", "DELETE": "member:invite"}
    serializer_class = s.InvitationOutput

    def get_scoped_queryset(self):
        return selectors.invitation_list()

    @extend_schema(responses={200: s.InvitationOutput})
    def get(self, request, org, id):
        return Response(s.InvitationOutput(self.get_object()).data)

    @extend_schema(responses={200: s.InvitationOutput})
    def delete(self, request, org, id):
        invitation = tenancy.invitation_revoke(
            access=request.access, invitation=self.get_object(), meta=request_meta(request)
        )
        return Response(s.InvitationOutput(invitation).data)


class InvitationResendView(OrgAPIView):
    input_serializers = {"POST": None}
    required_permissions = {"POST": "member:invite"}
    serializer_class = s.InvitationOutput

    def get_scoped_queryset(self):
        return selectors.invitation_list()

    @extend_schema(responses={200: s.InvitationOutput})
    def post(self, request, org, id):
        invitation = tenancy.invitation_resend(
            access=request.access, invitation=self.get_object(), meta=request_meta(request)
        )
        return Response(s.InvitationOutput(invitation).data)


class InvitationAcceptView(UserAPIView):
    """Accept with a logged-in account, or create one with username and password."""

    input_serializers = {"POST": s.InvitationAcceptInput}

    permission_classes = [AllowAny]

    @extend_schema(responses={201: s.MembershipOutput})
    def post(self, request, token):
        data = self.input(request)
        membership = tenancy.invitation_accept(
            token=token,
            user=request.user,
            username=data.get("username"),
            password=data.get("password"),
            meta=request_meta(request),
        )
        return Response(s.MembershipOutput(membership).data, status=status.HTTP_201_CREATED)
