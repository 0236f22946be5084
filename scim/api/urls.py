from __future__ import annotations

from django.urls import path

from scim.api import views

app_name = "scim-api"

urlpatterns = [
    path("orgs/<slug:org>/scim-tokens", views.ScimTokenListView.as_view(), name="scim-token-list"),
    path(
        "orgs/<slug:org>/scim-tokens/<uuid:id>",
        views.ScimTokenDetailView.as_view(),
        name="scim-token-detail",
    ),
]
