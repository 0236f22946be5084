"""``/scim/v2``: RFC 7644 endpoints, their paths spelled as the RFC spells them."""

from __future__ import annotations

from django.urls import path, re_path

from scim.v2 import views

app_name = "scim"

urlpatterns = [
    path(
        "ServiceProviderConfig",
        views.ServiceProviderConfigView.as_view(),
        name="service-provider-config",
    ),
    path("ResourceTypes", views.ResourceTypeListView.as_view(), name="resource-type-list"),
    path(
        "ResourceTypes/<str:name>",
        views.ResourceTypeDetailView.as_view(),
        name="resource-type-detail",
    ),
    path("Schemas", views.SchemaListView.as_view(), name="schema-list"),
    path("Schemas/<str:urn>", views.SchemaDetailView.as_view(), name="schema-detail"),
    path("Users", views.UserListView.as_view(), name="user-list"),
    path("Users/<str:id>", views.UserDetailView.as_view(), name="user-detail"),
    path("Groups", views.GroupListView.as_view(), name="group-list"),
    path("Groups/<str:id>", views.GroupDetailView.as_view(), name="group-detail"),
    re_path(r"^.*$", views.UnknownEndpointView.as_view(), name="unknown"),
]
