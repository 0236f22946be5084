"""Dashboard pages of deployments/ (mounted at /)."""

from django.urls import path

from deployments import views

app_name = "deployments"

urlpatterns = [
    path("orgs/<slug:org>/deployments", views.deployment_list, name="deployment-list"),
    path("orgs/<slug:org>/deployments.yaml", views.deployment_export, name="deployment-export"),
    path(
        "orgs/<slug:org>/deployments/<slug:name>",
        views.deployment_detail,
        name="deployment-detail",
    ),
]
