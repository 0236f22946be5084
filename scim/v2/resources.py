"""The SCIM wire format of Users and Groups: parse request bodies into typed values,
apply PATCH operations, and shape resources for responses (RFC 7643, RFC 7644 3.5.2).

Attributes Inferia keeps are validated; other attributes an identity provider sends
(``title``, ``phoneNumbers``, the enterprise extension...) are accepted and ignored,
as ``/Schemas`` tells: refusing them would break every provider's default mapping.
A password is refused: SCIM never sets one.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email

from orgs.models import Team, User
from scim.errors import ScimInvalid
from scim.selectors import GROUP_SCHEMA, USER_SCHEMA
from scim.services import UserAttributes

PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
MAX_OPERATIONS = 1000
MAX_MEMBERS = 1000

_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9_.:\-$]*(\[[^\]]*\])?(\.[A-Za-z][A-Za-z0-9_\-$]*)?$")
_EMAIL_VALUE_PATH = re.compile(
    r'^emails\[\s*(type\s+eq\s+"[^"]*"|primary\s+eq\s+true)\s*\]\.value$', re.IGNORECASE
)
_MEMBER_PATH = re.compile(r'^members\[\s*value\s+eq\s+"([^"]+)"\s*\]$', re.IGNORECASE)


def _require_schema(body: Any, schema: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ScimInvalid("The request body must be a JSON object", scim_type="invalidSyntax")
    schemas = body.get("schemas")
    if not isinstance(schemas, list) or schema not in schemas:
        raise ScimInvalid(f"The request must name the schema {schema}", scim_type="invalidSyntax")
    return body


def _string(body: dict[str, Any], key: str, *, max_length: int, required: bool = False) -> str:
    value = body.get(key)
    if value is None:
        if required:
            raise ScimInvalid(f"{key} is required", details={key: ["Required."]})
        return ""
    if not isinstance(value, str):
        raise ScimInvalid(f"{key} must be a string", details={key: ["Not a string."]})
    value = value.strip()
    if required and not value:
        raise ScimInvalid(f"{key} is required", details={key: ["Required."]})
    if len(value) > max_length:
        raise ScimInvalid(
            f"{key} is too long", details={key: [f"At most {max_length} characters."]}
        )
    return value


def _boolean(value: Any, key: str) -> bool:
    # Azure AD sends booleans as the strings "True" and "False".
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ScimInvalid(f"{key} must be a boolean", details={key: ["Not a boolean."]})


def _email(value: str, key: str) -> str:
    try:
        validate_email(value)
    except DjangoValidationError as exc:
        raise ScimInvalid(f"{key} is not an e-mail address", details={key: ["Invalid."]}) from exc
    return value


def _primary_email(body: dict[str, Any]) -> str:
    emails = body.get("emails")
    if emails is None:
        return ""
    if not isinstance(emails, list) or not all(isinstance(e, dict) for e in emails):
        raise ScimInvalid("emails must be a list of objects", details={"emails": ["Invalid."]})
    chosen = next((e for e in emails if e.get("primary") in (True, "true", "True")), None)
    if chosen is None and emails:
        chosen = emails[0]
    if chosen is None:
        return ""
    return _email(_string(chosen, "value", max_length=254, required=True), "emails")


def parse_user(body: Any) -> UserAttributes:
    """The attributes of a User body (POST, PUT). Raises ScimInvalid."""
    body = _require_schema(body, USER_SCHEMA)
    if "password" in body:
        raise ScimInvalid(
            "Inferia does not take passwords through SCIM; members sign in through single sign-on",
            details={"password": ["Not accepted."]},
        )
    user_name = _string(body, "userName", max_length=150, required=True)
    name = body.get("name") or {}
    if not isinstance(name, dict):
        raise ScimInvalid("name must be an object", details={"name": ["Invalid."]})
    email = _primary_email(body)
    if not email and "@" in user_name:
        email = _email(user_name, "userName")
    active = _boolean(body["active"], "active") if "active" in body else True
    return UserAttributes(
        user_name=user_name,
        external_id=_string(body, "externalId", max_length=255),
        given_name=_string(name, "givenName", max_length=150),
        family_name=_string(name, "familyName", max_length=150),
        display_name=_string(body, "displayName", max_length=300),
        email=email,
        active=active,
    )


def _meta(resource_type: str, location: str, created, modified) -> dict[str, Any]:
    return {
        "resourceType": resource_type,
        "created": created.isoformat() if created else None,
        "lastModified": (modified or created).isoformat() if (modified or created) else None,
        "location": location,
    }


def user_resource(user: User, teams: list[Team], base_url: str) -> dict[str, Any]:
    """A user of ``scim.selectors.scim_user_list`` (annotated) as a SCIM User."""
    location = f"{base_url}/scim/v2/Users/{user.pk}"
    resource: dict[str, Any] = {
        "schemas": [USER_SCHEMA],
        "id": str(user.pk),
        "userName": user.scim_user_name,  # type: ignore[attr-defined]
        "name": {
            "givenName": user.scim_given_name,  # type: ignore[attr-defined]
            "familyName": user.scim_family_name,  # type: ignore[attr-defined]
        },
        "active": bool(user.scim_active),  # type: ignore[attr-defined]
        "emails": [],
        "groups": [
            {
                "value": str(team.pk),
                "display": team.name,
                "$ref": f"{base_url}/scim/v2/Groups/{team.pk}",
            }
            for team in teams
        ],
        "meta": _meta(
            "User",
            location,
            user.date_joined,
            user.scim_updated_at,  # type: ignore[attr-defined]
        ),
    }
    if user.scim_external_id:  # type: ignore[attr-defined]
        resource["externalId"] = user.scim_external_id  # type: ignore[attr-defined]
    if user.scim_display_name:  # type: ignore[attr-defined]
        resource["displayName"] = user.scim_display_name  # type: ignore[attr-defined]
    if user.scim_email:  # type: ignore[attr-defined]
        resource["emails"] = [
            {"value": user.scim_email, "primary": True, "type": "work"}  # type: ignore[attr-defined]
        ]
    return resource


def group_resource(
    team: Team, members: list[User], base_url: str, *, with_members: bool = True
) -> dict[str, Any]:
    """A team of ``scim.selectors.scim_group_list`` (annotated) as a SCIM Group."""
    location = f"{base_url}/scim/v2/Groups/{team.pk}"
    resource: dict[str, Any] = {
        "schemas": [GROUP_SCHEMA],
        "id": str(team.pk),
        "displayName": team.name,
        "meta": _meta("Group", location, team.created_at, None),
    }
    if team.scim_external_id:  # type: ignore[attr-defined]
        resource["externalId"] = team.scim_external_id  # type: ignore[attr-defined]
    if with_members:
        resource["members"] = [
            {
                "value": str(user.pk),
                "display": user.scim_user_name,  # type: ignore[attr-defined]
                "$ref": f"{base_url}/scim/v2/Users/{user.pk}",
            }
            for user in members
        ]
    return resource


def list_response(resources: list[dict[str, Any]], total: int, start_index: int) -> dict[str, Any]:
    return {
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }


# --- PATCH ------------------------------------------------------------------------------


def _operations(body: Any) -> list[dict[str, Any]]:
    body = _require_schema(body, PATCH_SCHEMA)
    operations = body.get("Operations")
    if not isinstance(operations, list) or not operations:
        raise ScimInvalid("Operations must be a non-empty list", scim_type="invalidSyntax")
    if len(operations) > MAX_OPERATIONS:
        raise ScimInvalid(f"At most {MAX_OPERATIONS} operations", scim_type="tooMany")
    for operation in operations:
        if not isinstance(operation, dict):
            raise ScimInvalid("Each operation must be an object", scim_type="invalidSyntax")
        op = operation.get("op")
        if not isinstance(op, str) or op.lower() not in ("add", "replace", "remove"):
            raise ScimInvalid("op must be add, replace or remove", scim_type="invalidSyntax")
        path = operation.get("path")
        if path is not None and (not isinstance(path, str) or not _PATH.match(path.strip())):
            raise ScimInvalid(f"Invalid path {path!r}", scim_type="invalidPath")
        if op.lower() == "remove" and not path:
            raise ScimInvalid("remove needs a path", scim_type="noTarget")
        if op.lower() != "remove" and "value" not in operation:
            raise ScimInvalid(f"{op} needs a value", scim_type="invalidValue")
    return operations


def _strip_schema(path: str, schema: str) -> str | None:
    """The attribute path without the core schema's URN; None for another schema's
    attribute (an extension Inferia does not keep)."""
    if path.lower().startswith(schema.lower() + ":"):
        return path[len(schema) + 1 :]
    if path.lower().startswith("urn:"):
        return None
    return path


def _set_user_attribute(state: dict[str, Any], path: str, value: Any, *, remove: bool) -> None:
    key = _strip_schema(path.strip(), USER_SCHEMA)
    if key is None:
        return  # an extension attribute: not kept
    lowered = key.lower()
    if _EMAIL_VALUE_PATH.match(key) or lowered in ("emails", "emails.value"):
        if remove:
            state["emails"] = []
        elif isinstance(value, list):
            state["emails"] = value
        elif isinstance(value, str):
            state["emails"] = [{"value": value, "primary": True}]
        else:
            raise ScimInvalid("emails takes a list or a string", details={"emails": ["Invalid."]})
        return
    simple = {
        "username": "userName",
        "externalid": "externalId",
        "displayname": "displayName",
        "active": "active",
    }
    if lowered in simple:
        name = simple[lowered]
        if remove:
            if name in ("userName", "active"):
                raise ScimInvalid(f"{name} cannot be removed", scim_type="mutability")
            state.pop(name, None)
        else:
            state[name] = value
        return
    if lowered in ("name.givenname", "name.familyname"):
        sub = "givenName" if lowered.endswith("givenname") else "familyName"
        name_state = state.setdefault("name", {})
        if not isinstance(name_state, dict):
            name_state = state["name"] = {}
        if remove:
            name_state.pop(sub, None)
        else:
            name_state[sub] = value
        return
    if lowered == "name":
        if remove:
            state["name"] = {}
        elif isinstance(value, dict):
            state["name"] = {**(state.get("name") or {}), **value}
        else:
            raise ScimInvalid("name takes an object", details={"name": ["Invalid."]})
        return
    if lowered in ("id", "meta", "groups", "schemas") or lowered.startswith(("meta.", "groups")):
        raise ScimInvalid(f"{key} is read-only", scim_type="mutability")
    if lowered == "password":
        raise ScimInvalid("Inferia does not take passwords through SCIM", scim_type="mutability")
    # Any other attribute (title, phoneNumbers, locale...): not kept.


def apply_user_patch(current: dict[str, Any], body: Any) -> UserAttributes:
    """The attributes after applying a PatchOp body to the user's current resource,
    in Okta's (no path, a value object) and Azure AD's (a path per attribute) styles."""
    state = copy.deepcopy(current)
    for operation in _operations(body):
        op = operation["op"].lower()
        path = operation.get("path")
        value = operation.get("value")
        if path:
            _set_user_attribute(state, path, value, remove=op == "remove")
            continue
        if not isinstance(value, dict):
            raise ScimInvalid(f"{op} without a path takes an object", scim_type="invalidValue")
        for key, item in value.items():
            _set_user_attribute(state, str(key), item, remove=False)
    state["schemas"] = [USER_SCHEMA]
    for key in ("id", "meta", "groups"):
        state.pop(key, None)
    return parse_user(state)


def parse_group(body: Any) -> tuple[str, str, list[str]]:
    """displayName, externalId and member user ids of a Group body (POST, PUT)."""
    body = _require_schema(body, GROUP_SCHEMA)
    display_name = _string(body, "displayName", max_length=200, required=True)
    external_id = _string(body, "externalId", max_length=255)
    return display_name, external_id, _member_ids(body.get("members") or [])


def _member_ids(value: Any) -> list[str]:
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(
        isinstance(m, dict) and isinstance(m.get("value"), str) for m in value
    ):
        raise ScimInvalid(
            'members must be a list of {"value": "<user id>"}', details={"members": ["Invalid."]}
        )
    if len(value) > MAX_MEMBERS:
        raise ScimInvalid(f"At most {MAX_MEMBERS} members at once", scim_type="tooMany")
    return [m["value"] for m in value]


def _members_change(
    changes: dict[str, Any], *, add: Sequence[str] = (), remove: Sequence[str] = ()
) -> None:
    """Operations apply in order: after a replace of all members, add and remove edit it."""
    if "members_set" in changes:
        removed = set(remove)
        kept = [value for value in changes["members_set"] if value not in removed]
        changes["members_set"] = kept + [value for value in add if value not in kept]
    else:
        changes["members_add"].extend(add)
        changes["members_remove"].extend(remove)


def parse_group_patch(body: Any) -> dict[str, Any]:
    """The changes of a Group PatchOp: ``display_name``, ``external_id``,
    ``members_set`` or ``members_add``/``members_remove`` (for ``scim_group_update``)."""
    changes: dict[str, Any] = {"members_add": [], "members_remove": []}
    for operation in _operations(body):
        op = operation["op"].lower()
        raw_path = operation.get("path")
        value = operation.get("value")
        if not raw_path:
            if not isinstance(value, dict):
                raise ScimInvalid(f"{op} without a path takes an object")
            items = list(value.items())
        else:
            items = [(raw_path, value)]
        for raw_key, item in items:
            key = _strip_schema(str(raw_key).strip(), GROUP_SCHEMA)
            member = _MEMBER_PATH.match(key or "")
            lowered = (key or "").lower()
            if member and op == "remove":
                _members_change(changes, remove=[member.group(1)])
            elif lowered == "members":
                if op == "remove":
                    if item is None:
                        changes["members_set"] = []
                    else:
                        _members_change(changes, remove=_member_ids(item))
                elif op == "add":
                    _members_change(changes, add=_member_ids(item))
                else:
                    changes["members_set"] = _member_ids(item)
            elif lowered == "displayname" and op != "remove":
                if not isinstance(item, str) or not item.strip():
                    raise ScimInvalid("displayName must be a non-empty string")
                changes["display_name"] = item.strip()[:200]
            elif lowered == "externalid":
                if op == "remove":
                    changes["external_id"] = ""
                elif isinstance(item, str):
                    changes["external_id"] = item.strip()[:255]
                else:
                    raise ScimInvalid("externalId must be a string")
            elif lowered == "id" and not raw_path:
                continue  # Okta repeats the id in a rename; it cannot change
            else:
                raise ScimInvalid(f"Cannot {op} {raw_key} of a group", scim_type="invalidPath")
    return changes
