"""The org switcher: the signed-in user's organizations, for ``base.html``."""

from __future__ import annotations

from orgs.selectors import organization_list_for_user


def dashboard(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or request.path.startswith(("/api/", "/admin/")):
        return {}
    return {"user_orgs": list(organization_list_for_user(user))}
