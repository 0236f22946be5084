"""What the service provider supports (RFC 7644 section 4; RFC 7643 sections 5-7):
ServiceProviderConfig, ResourceTypes and Schemas, describing exactly the attributes
Inferia keeps, filters and returns."""

from __future__ import annotations

from typing import Any

from scim.selectors import GROUP_SCHEMA, USER_SCHEMA

CONFIG_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RESOURCE_TYPE_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"
MAX_RESULTS = 200  # the largest page (count) a list returns


def service_provider_config(base_url: str) -> dict[str, Any]:
    return {
        "schemas": [CONFIG_SCHEMA],
        "documentationUri": f"{base_url}/api/docs/",
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": False},
        "sort": {"supported": False},
        "etag": {"supported": False},
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "SCIM bearer token",
                "description": "A per-organization SCIM token (ifs_...) in "
                "'Authorization: Bearer <token>', created at "
                "/api/v1/orgs/{org}/scim-tokens by a member holding sso:manage.",
                "primary": True,
            }
        ],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": f"{base_url}/scim/v2/ServiceProviderConfig",
        },
    }


def resource_types(base_url: str) -> list[dict[str, Any]]:
    return [
        {
            "schemas": [RESOURCE_TYPE_SCHEMA],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "description": "A member of the organization (deactivated: no longer a member)",
            "schema": USER_SCHEMA,
            "meta": {
                "resourceType": "ResourceType",
                "location": f"{base_url}/scim/v2/ResourceTypes/User",
            },
        },
        {
            "schemas": [RESOURCE_TYPE_SCHEMA],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "A team of the organization",
            "schema": GROUP_SCHEMA,
            "meta": {
                "resourceType": "ResourceType",
                "location": f"{base_url}/scim/v2/ResourceTypes/Group",
            },
        },
    ]


def _attribute(
    name: str,
    *,
    type_: str = "string",
    multi: bool = False,
    required: bool = False,
    case_exact: bool = False,
    mutability: str = "readWrite",
    uniqueness: str = "none",
    description: str = "",
    sub: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    attribute: dict[str, Any] = {
        "name": name,
        "type": type_,
        "multiValued": multi,
        "description": description,
        "required": required,
        "caseExact": case_exact,
        "mutability": mutability,
        "returned": "default",
        "uniqueness": uniqueness,
    }
    if sub is not None:
        attribute["subAttributes"] = sub
    return attribute


def schemas(base_url: str) -> list[dict[str, Any]]:
    user = [
        _attribute(
            "userName",
            required=True,
            uniqueness="server",
            description="The person's e-mail address at the identity provider.",
        ),
        _attribute("externalId", case_exact=True, description="The identity provider's id."),
        _attribute(
            "name",
            type_="complex",
            sub=[_attribute("givenName"), _attribute("familyName")],
        ),
        _attribute("displayName"),
        _attribute(
            "emails",
            type_="complex",
            multi=True,
            description="The primary address is kept.",
            sub=[
                _attribute("value"),
                _attribute("type"),
                _attribute("primary", type_="boolean"),
            ],
        ),
        _attribute(
            "active",
            type_="boolean",
            description="false removes the membership and ends the person's sessions and "
            "personal API keys at once.",
        ),
        _attribute(
            "groups",
            type_="complex",
            multi=True,
            mutability="readOnly",
            description="The teams of the person; change them through /Groups.",
            sub=[
                _attribute("value", mutability="readOnly"),
                _attribute("display", mutability="readOnly"),
            ],
        ),
    ]
    group = [
        _attribute(
            "displayName", required=True, uniqueness="server", description="The team's name."
        ),
        _attribute("externalId", case_exact=True),
        _attribute(
            "members",
            type_="complex",
            multi=True,
            description="Members of the organization (their User ids).",
            sub=[
                _attribute("value", mutability="immutable"),
                _attribute("display", mutability="readOnly"),
            ],
        ),
    ]
    return [
        {
            "schemas": [SCHEMA_SCHEMA],
            "id": USER_SCHEMA,
            "name": "User",
            "description": "A member of the organization",
            "attributes": user,
            "meta": {
                "resourceType": "Schema",
                "location": f"{base_url}/scim/v2/Schemas/{USER_SCHEMA}",
            },
        },
        {
            "schemas": [SCHEMA_SCHEMA],
            "id": GROUP_SCHEMA,
            "name": "Group",
            "description": "A team of the organization",
            "attributes": group,
            "meta": {
                "resourceType": "Schema",
                "location": f"{base_url}/scim/v2/Schemas/{GROUP_SCHEMA}",
            },
        },
    ]
