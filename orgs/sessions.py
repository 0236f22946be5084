"""Every Django login (dashboard, admin, test clients) gets a server-side session family;
every Django logout revokes it (see ``orgs.services.auth.dashboard_session_start``)."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.dispatch import receiver


@receiver(user_logged_in, dispatch_uid="orgs-session-family-start")
def _session_started(sender, request, user, **kwargs) -> None:
    from orgs.services.auth import dashboard_session_start

    if request is not None and hasattr(request, "session"):
        dashboard_session_start(request=request, user=user)


@receiver(user_logged_out, dispatch_uid="orgs-session-family-end")
def _session_ended(sender, request, user, **kwargs) -> None:
    from orgs.services.auth import SESSION_FAMILY_KEY, session_family_end

    family = request.session.get(SESSION_FAMILY_KEY) if request is not None else None
    if family and user is not None:
        session_family_end(user=user, family=family)
