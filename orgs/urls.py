"""Dashboard pages of orgs/ (mounted at /)."""

from django.urls import path

from orgs import views

app_name = "orgs"

urlpatterns = [
    path("login", views.login_view, name="login"),
    path("logout", views.logout_view, name="logout"),
    path("account/password", views.password_change_view, name="password-change"),
    path("account/2fa", views.two_factor_view, name="2fa-setup"),
    # RFC 8628's verification_uri: a person approves a CLI's sign-in here.
    path("device", views.device_view, name="device"),
    path("", views.org_list, name="org-list"),
    # The token is the secret: the request log records the route, never this path.
    path("invitations/<str:token>", views.invitation_accept_page, name="invitation-accept"),
    path("orgs/<slug:org>/settings", views.org_settings, name="settings-update"),
    path("orgs/<slug:org>/cache", views.cache_page, name="cache"),
    path("orgs/<slug:org>/cache/purge", views.cache_purge_page, name="cache-purge"),
    path("orgs/<slug:org>/members", views.member_list, name="member-list"),
    path("orgs/<slug:org>/members/<uuid:member_id>", views.member_update, name="member-update"),
    path(
        "orgs/<slug:org>/invitations/<uuid:invitation_id>",
        views.invitation_update,
        name="invitation-update",
    ),
    path("orgs/<slug:org>/teams", views.team_list, name="team-list"),
    path("orgs/<slug:org>/teams/<uuid:team_id>", views.team_update, name="team-update"),
    path("orgs/<slug:org>/roles", views.role_list, name="role-list"),
    path("orgs/<slug:org>/roles/<uuid:role_id>", views.role_update, name="role-update"),
]
