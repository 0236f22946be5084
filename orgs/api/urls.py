from __future__ import annotations

from django.urls import path

from orgs.api import views

app_name = "orgs-api"

urlpatterns = [
    path("auth/login", views.LoginView.as_view(), name="auth-login"),
    path("auth/refresh", views.RefreshView.as_view(), name="auth-refresh"),
    path("auth/logout", views.LogoutView.as_view(), name="auth-logout"),
    path("auth/me", views.MeView.as_view(), name="auth-me"),
    path("auth/device/code", views.DeviceCodeView.as_view(), name="auth-device-code"),
    path("auth/device/token", views.DeviceTokenView.as_view(), name="auth-device-token"),
    path("auth/password", views.PasswordChangeView.as_view(), name="auth-password"),
    path("auth/2fa/setup", views.TwoFactorSetupView.as_view(), name="2fa-setup"),
    path("auth/2fa/confirm", views.TwoFactorConfirmView.as_view(), name="2fa-confirm"),
    path("auth/2fa/disable", views.TwoFactorDisableView.as_view(), name="2fa-disable"),
    path("auth/2fa/recovery-codes", views.RecoveryCodesView.as_view(), name="2fa-recovery-codes"),
    path(
        "invitations/<str:token>/accept",
        views.InvitationAcceptView.as_view(),
        name="invitation-accept",
    ),
    path("orgs", views.OrgListView.as_view(), name="org-list"),
    path("orgs/<slug:org>", views.OrgDetailView.as_view(), name="org-detail"),
    path("orgs/<slug:org>/cache", views.OrgCacheView.as_view(), name="org-cache"),
    path(
        "orgs/<slug:org>/transfer-ownership",
        views.OrgTransferOwnershipView.as_view(),
        name="org-transfer",
    ),
    path("orgs/<slug:org>/members", views.MemberListView.as_view(), name="member-list"),
    path(
        "orgs/<slug:org>/members/<uuid:id>", views.MemberDetailView.as_view(), name="member-detail"
    ),
    path("orgs/<slug:org>/roles", views.RoleListView.as_view(), name="role-list"),
    path("orgs/<slug:org>/roles/<uuid:id>", views.RoleDetailView.as_view(), name="role-detail"),
    path("orgs/<slug:org>/teams", views.TeamListView.as_view(), name="team-list"),
    path("orgs/<slug:org>/teams/<uuid:id>", views.TeamDetailView.as_view(), name="team-detail"),
    path(
        "orgs/<slug:org>/teams/<uuid:id>/members",
        views.TeamMemberListView.as_view(),
        name="team-member-list",
    ),
    path(
        "orgs/<slug:org>/teams/<uuid:id>/members/<uuid:user_id>",
        views.TeamMemberDetailView.as_view(),
        name="team-member-detail",
    ),
    path("orgs/<slug:org>/invitations", views.InvitationListView.as_view(), name="invitation-list"),
    path(
        "orgs/<slug:org>/invitations/<uuid:id>",
        views.InvitationDetailView.as_view(),
        name="invitation-detail",
    ),
    path(
        "orgs/<slug:org>/invitations/<uuid:id>/resend",
        views.InvitationResendView.as_view(),
        name="invitation-resend",
    ),
]
