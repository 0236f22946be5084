"""``/scim/v2``: the SCIM 2.0 service provider (RFC 7644) an identity provider calls.

An edge like ``inferia.api.OrgAPIView``: it authenticates the bearer SCIM token
(``scim.auth``, the token names the org), checks the permission each method needs,
activates the org's tenant scope, calls ``scim.services`` and shapes SCIM JSON
(``scim.v2.resources``). Errors use SCIM's error schema (``scim.errors``). Every
request leaves an audit record (``AuditedRequestMixin``); changes are recorded by
the services with the token as actor.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from rest_framework import status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit import services as audit
from inferia.api import ScopedRequestMixin, request_meta
from inferia.authentication import credential_from
from inferia.errors import AuthenticationFailed, NotFound, PermissionDenied
from inferia.request_meta import public_url
from orgs.access import Access
from orgs.scoping import activate
from scim import selectors, services
from scim.auth import scim_token_authenticate
from scim.errors import SCIM_MEDIA_TYPE, ScimInvalid, scim_exception_handler
from scim.filters import filter_query
from scim.v2 import discovery, resources

DEFAULT_COUNT = 100
MAX_COUNT = discovery.MAX_RESULTS


class ScimJSONParser(JSONParser):
    media_type = SCIM_MEDIA_TYPE


class ScimJSONRenderer(JSONRenderer):
    media_type = SCIM_MEDIA_TYPE
    format = "scim"


class AlwaysScim(BaseContentNegotiation):
    """SCIM answers ``application/scim+json`` whatever the client's Accept says
    (identity providers send ``application/json``, ``*/*`` or nothing)."""

    def select_parser(self, request, parsers):
        content_type = (request.content_type or "").split(";")[0].strip().lower()
        for parser in parsers:
            if parser.media_type == content_type:
                return parser
        return None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ScimView(ScopedRequestMixin, APIView):
    """Base of every ``/scim/v2`` endpoint: SCIM token, declared permission, scope."""

    required_permissions: ClassVar[dict[str, str]] = {}
    # No DRF authentication or permission classes: ``initial`` checks the SCIM token.
    authentication_classes = ()
    permission_classes = ()
    parser_classes = [ScimJSONParser, JSONParser]
    renderer_classes = [ScimJSONRenderer]
    content_negotiation_class = AlwaysScim
    # Not in the OpenAPI schema of /api/v1: SCIM describes itself (/Schemas, /ResourceTypes).
    schema = None
    access: Access

    def get_exception_handler(self):
        return scim_exception_handler

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if request.method == "OPTIONS":
            return  # the methods of a path, the same for every caller: no token read
        meta = request.META
        raw = credential_from(meta.get("HTTP_AUTHORIZATION", ""))
        if raw is None:
            raise AuthenticationFailed(
                "Send the organization's SCIM token as 'Authorization: Bearer <token>'"
            )
        access = scim_token_authenticate(raw)
        self.access = access
        request._request.access = access  # type: ignore[attr-defined]
        self._scope_token = activate(access.org)
        method = "GET" if request.method in ("HEAD", "OPTIONS") else (request.method or "")
        if not hasattr(self, method.lower()):
            return  # DRF answers 405
        permission = self.required_permissions.get(method)
        if permission is None:
            raise PermissionDenied(f"{method} is not allowed here")
        if not access.can(permission):
            audit.record(
                action=permission,
                outcome="denied",
                org=access.org,
                actor_label=access.actor_label,
                status_code=403,
                meta=request_meta(request),
                data={"path": request.path, "method": request.method, "via": "scim"},
            )
            raise PermissionDenied(f"Missing permission {permission}")

    @property
    def base_url(self) -> str:
        return public_url(request_meta(self.request)).rstrip("/")

    def page(self, request: Request) -> tuple[int, int]:
        """``startIndex`` (1-based) and ``count`` of a list request (RFC 7644 3.4.2.4)."""

        def number(name: str, default: int) -> int:
            raw = request.query_params.get(name)
            if raw is None or raw == "":
                return default
            try:
                return int(raw)
            except ValueError as exc:
                raise ScimInvalid(f"{name} must be an integer") from exc

        start = max(1, number("startIndex", 1))
        count = min(MAX_COUNT, max(0, number("count", DEFAULT_COUNT)))
        return start, count

    def input(self, request: Request) -> Any:
        return request.data


# --- discovery -----------------------------------------------------------------------


class ServiceProviderConfigView(ScimView):
    required_permissions = {"GET": "member:view"}

    def get(self, request):
        return Response(discovery.service_provider_config(self.base_url))


class ResourceTypeListView(ScimView):
    required_permissions = {"GET": "member:view"}

    def get(self, request):
        types = discovery.resource_types(self.base_url)
        return Response(resources.list_response(types, len(types), 1))


class ResourceTypeDetailView(ScimView):
    required_permissions = {"GET": "member:view"}

    def get(self, request, name):
        for resource_type in discovery.resource_types(self.base_url):
            if resource_type["id"] == name:
                return Response(resource_type)
        raise NotFound(f"Unknown resource type {name}")


class SchemaListView(ScimView):
    required_permissions = {"GET": "member:view"}

    def get(self, request):
        schemas = discovery.schemas(self.base_url)
        return Response(resources.list_response(schemas, len(schemas), 1))


class SchemaDetailView(ScimView):
    required_permissions = {"GET": "member:view"}

    def get(self, request, urn):
        for schema in discovery.schemas(self.base_url):
            if schema["id"] == urn:
                return Response(schema)
        raise NotFound(f"Unknown schema {urn}")


# --- users ---------------------------------------------------------------------------


def _user_or_404(user_id: str):
    user = selectors.scim_user_get(user_id) if _is_uuid(user_id) else None
    if user is None:
        raise NotFound("User not found")
    return user


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class UserListView(ScimView):
    required_permissions = {"GET": "member:view", "POST": "member:invite"}

    def get(self, request):
        start, count = self.page(request)
        queryset = selectors.scim_user_list()
        text = request.query_params.get("filter")
        if text:
            queryset = queryset.filter(
                filter_query(text, selectors.USER_FILTERS, schema=selectors.USER_SCHEMA)
            )
        total = queryset.count()
        users = list(queryset[start - 1 : start - 1 + count]) if count else []
        teams = selectors.team_ids_by_user([u.pk for u in users])
        body = [resources.user_resource(u, teams.get(str(u.pk), []), self.base_url) for u in users]
        return Response(resources.list_response(body, total, start))

    def post(self, request):
        attributes = resources.parse_user(self.input(request))
        user = services.scim_user_create(
            access=self.access, attributes=attributes, meta=request_meta(request)
        )
        return _user_response(user, self.base_url, status.HTTP_201_CREATED)


def _user_response(user, base_url: str, code: int = status.HTTP_200_OK) -> Response:
    user = _user_or_404(str(user.pk))
    teams = selectors.team_ids_by_user([user.pk]).get(str(user.pk), [])
    body = resources.user_resource(user, teams, base_url)
    return Response(body, status=code, headers={"Location": body["meta"]["location"]})


class UserDetailView(ScimView):
    required_permissions = {
        "GET": "member:view",
        "PUT": "member:update",
        "PATCH": "member:update",
        "DELETE": "member:delete",
    }

    def get(self, request, id):
        return _user_response(_user_or_404(id), self.base_url)

    def put(self, request, id):
        user = _user_or_404(id)
        attributes = resources.parse_user(self.input(request))
        services.scim_user_replace(
            access=self.access, user=user, attributes=attributes, meta=request_meta(request)
        )
        return _user_response(user, self.base_url)

    def patch(self, request, id):
        user = _user_or_404(id)
        current = resources.user_resource(user, [], self.base_url)
        attributes = resources.apply_user_patch(current, self.input(request))
        services.scim_user_replace(
            access=self.access, user=user, attributes=attributes, meta=request_meta(request)
        )
        return _user_response(user, self.base_url)

    def delete(self, request, id):
        services.scim_user_delete(
            access=self.access, user=_user_or_404(id), meta=request_meta(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- groups --------------------------------------------------------------------------


def _group_or_404(team_id: str):
    team = selectors.scim_group_get(team_id) if _is_uuid(team_id) else None
    if team is None:
        raise NotFound("Group not found")
    return team


def _wants_members(request: Request) -> bool:
    excluded = request.query_params.get("excludedAttributes", "")
    return "members" not in {part.strip().lower() for part in excluded.split(",")}


def _group_response(team, request: Request, base_url: str, code: int = 200) -> Response:
    team = _group_or_404(str(team.pk))
    members = selectors.group_members([team]).get(str(team.pk), [])
    body = resources.group_resource(team, members, base_url, with_members=_wants_members(request))
    return Response(body, status=code, headers={"Location": body["meta"]["location"]})


class GroupListView(ScimView):
    required_permissions = {"GET": "member:view", "POST": "team:manage"}

    def get(self, request):
        start, count = self.page(request)
        queryset = selectors.scim_group_list()
        text = request.query_params.get("filter")
        if text:
            queryset = queryset.filter(
                filter_query(text, selectors.GROUP_FILTERS, schema=selectors.GROUP_SCHEMA)
            )
        total = queryset.count()
        teams = list(queryset[start - 1 : start - 1 + count]) if count else []
        with_members = _wants_members(request)
        members = selectors.group_members(teams) if with_members else {}
        body = [
            resources.group_resource(
                team, members.get(str(team.pk), []), self.base_url, with_members=with_members
            )
            for team in teams
        ]
        return Response(resources.list_response(body, total, start))

    def post(self, request):
        display_name, external_id, member_ids = resources.parse_group(self.input(request))
        team = services.scim_group_create(
            access=self.access,
            display_name=display_name,
            external_id=external_id,
            member_ids=member_ids,
            meta=request_meta(request),
        )
        return _group_response(team, request, self.base_url, status.HTTP_201_CREATED)


class GroupDetailView(ScimView):
    required_permissions = {
        "GET": "member:view",
        "PUT": "team:manage",
        "PATCH": "team:manage",
        "DELETE": "team:manage",
    }

    def get(self, request, id):
        return _group_response(_group_or_404(id), request, self.base_url)

    def put(self, request, id):
        team = _group_or_404(id)
        display_name, external_id, member_ids = resources.parse_group(self.input(request))
        services.scim_group_update(
            access=self.access,
            team=team,
            display_name=display_name,
            external_id=external_id,
            members_set=member_ids,
            meta=request_meta(request),
        )
        return _group_response(team, request, self.base_url)

    def patch(self, request, id):
        team = _group_or_404(id)
        changes = resources.parse_group_patch(self.input(request))
        services.scim_group_update(
            access=self.access, team=team, meta=request_meta(request), **changes
        )
        return _group_response(team, request, self.base_url)

    def delete(self, request, id):
        services.scim_group_delete(
            access=self.access, team=_group_or_404(id), meta=request_meta(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class UnknownEndpointView(ScimView):
    """Any other path under /scim/v2: SCIM's 404, after the token is checked."""

    required_permissions = {m: "member:view" for m in ("GET", "POST", "PUT", "PATCH", "DELETE")}

    def _missing(self, request, *args, **kwargs):
        raise NotFound("Unknown SCIM endpoint")

    get = post = put = patch = delete = _missing
