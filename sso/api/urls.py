from __future__ import annotations

from django.urls import path

from sso.api import views

app_name = "sso-api"

urlpatterns = [
    path("auth/sso/token", views.SsoTokenView.as_view(), name="sso-token"),
    path("auth/sso/<slug:org>", views.SsoStartView.as_view(), name="sso-start"),
    path(
        "orgs/<slug:org>/identity-providers",
        views.IdentityProviderListView.as_view(),
        name="identity-provider-list",
    ),
    path(
        "orgs/<slug:org>/identity-providers/<uuid:id>",
        views.IdentityProviderDetailView.as_view(),
        name="identity-provider-detail",
    ),
    path(
        "orgs/<slug:org>/identity-providers/<uuid:id>/mappings",
        views.MappingListView.as_view(),
        name="mapping-list",
    ),
    path(
        "orgs/<slug:org>/identity-providers/<uuid:id>/mappings/<uuid:rule_id>",
        views.MappingDetailView.as_view(),
        name="mapping-detail",
    ),
    path("orgs/<slug:org>/sso-domains", views.DomainListView.as_view(), name="domain-list"),
    path(
        "orgs/<slug:org>/sso-domains/<uuid:id>",
        views.DomainDetailView.as_view(),
        name="domain-detail",
    ),
    path(
        "orgs/<slug:org>/sso-domains/<uuid:id>/confirm",
        views.DomainConfirmView.as_view(),
        name="domain-confirm",
    ),
]
