"""Dashboard pages of keys/ (mounted at /)."""

from django.urls import path

from keys import views

app_name = "keys"

urlpatterns = [
    path("orgs/<slug:org>/", views.org_overview, name="org-overview"),
    path("orgs/<slug:org>/api-keys", views.api_key_list, name="api-key-list"),
    path(
        "orgs/<slug:org>/api-keys/<uuid:key_id>/created",
        views.api_key_created,
        name="api-key-created",
    ),
    path(
        "orgs/<slug:org>/api-keys/<uuid:key_id>/revoke",
        views.api_key_action,
        {"action": "revoke"},
        name="api-key-revoke",
    ),
    path(
        "orgs/<slug:org>/api-keys/<uuid:key_id>/rotate",
        views.api_key_action,
        {"action": "rotate"},
        name="api-key-rotate",
    ),
    path(
        "orgs/<slug:org>/service-accounts", views.service_account_list, name="service-account-list"
    ),
    path(
        "orgs/<slug:org>/service-accounts/<uuid:account_id>",
        views.service_account_update,
        name="service-account-update",
    ),
    path(
        "orgs/<slug:org>/provider-accounts",
        views.provider_account_list,
        name="provider-account-list",
    ),
    path(
        "orgs/<slug:org>/provider-accounts/<uuid:account_id>",
        views.provider_account_update,
        name="provider-account-update",
    ),
    path("orgs/<slug:org>/access-rules", views.access_rule_list, name="access-rule-list"),
    path("orgs/<slug:org>/access-rules.yaml", views.access_rule_export, name="access-rule-export"),
    path(
        "orgs/<slug:org>/access-rules/<uuid:rule_id>/delete",
        views.access_rule_delete,
        name="access-rule-delete",
    ),
]
