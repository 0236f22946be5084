from __future__ import annotations

from django.urls import path

from keys.api import views

app_name = "keys-api"

urlpatterns = [
    path(
        "orgs/<slug:org>/service-accounts",
        views.ServiceAccountListView.as_view(),
        name="service-account-list",
    ),
    path(
        "orgs/<slug:org>/service-accounts/<uuid:id>",
        views.ServiceAccountDetailView.as_view(),
        name="service-account-detail",
    ),
    path("orgs/<slug:org>/api-keys", views.ApiKeyListView.as_view(), name="api-key-list"),
    path(
        "orgs/<slug:org>/api-keys/<uuid:id>",
        views.ApiKeyDetailView.as_view(),
        name="api-key-detail",
    ),
    path(
        "orgs/<slug:org>/api-keys/<uuid:id>/rotate",
        views.ApiKeyRotateView.as_view(),
        name="api-key-rotate",
    ),
    path(
        "orgs/<slug:org>/provider-accounts",
        views.ProviderAccountListView.as_view(),
        name="provider-account-list",
    ),
    path(
        "orgs/<slug:org>/provider-accounts/<uuid:id>",
        views.ProviderAccountDetailView.as_view(),
        name="provider-account-detail",
    ),
    path(
        "orgs/<slug:org>/provider-accounts/<uuid:id>/secret",
        views.ProviderSecretView.as_view(),
        name="provider-account-secret",
    ),
    path(
        "orgs/<slug:org>/provider-accounts/<uuid:id>/grants",
        views.ProviderGrantView.as_view(),
        name="provider-account-grants",
    ),
    path(
        "orgs/<slug:org>/access-rules", views.AccessRuleListView.as_view(), name="access-rule-list"
    ),
    path(
        "orgs/<slug:org>/access-rules.yaml",
        views.AccessRulesYamlView.as_view(),
        name="access-rules-yaml",
    ),
    path(
        "orgs/<slug:org>/access-rules/effective",
        views.EffectiveAccessView.as_view(),
        name="effective-access",
    ),
    path(
        "orgs/<slug:org>/access-rules/<uuid:id>",
        views.AccessRuleDetailView.as_view(),
        name="access-rule-detail",
    ),
]
