"""SSO pages (mounted at /)."""

from django.urls import path

from sso import views

app_name = "sso"

urlpatterns = [
    path("auth/sso", views.by_email, name="by-email"),
    path("auth/sso/<slug:org>", views.start, name="start"),
    path("auth/sso/<slug:org>/oidc/callback", views.oidc_callback, name="oidc-callback"),
    path("auth/sso/<slug:org>/finish", views.finish, name="finish"),
    path("auth/sso/<slug:org>/saml/<uuid:provider_id>/acs", views.saml_acs, name="saml-acs"),
    path(
        "auth/sso/<slug:org>/saml/<uuid:provider_id>/metadata",
        views.saml_metadata,
        name="saml-metadata",
    ),
    path("orgs/<slug:org>/sso", views.settings_page, name="settings"),
    path(
        "orgs/<slug:org>/sso/providers/<uuid:provider_id>",
        views.provider_update,
        name="provider-update",
    ),
]
