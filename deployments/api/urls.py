from __future__ import annotations

from django.urls import path

from deployments.api import views

app_name = "deployments-api"

urlpatterns = [
    path("orgs/<slug:org>/deployments", views.DeploymentListView.as_view(), name="deployment-list"),
    path(
        "orgs/<slug:org>/deployments.yaml",
        views.DeploymentsYamlView.as_view(),
        name="deployments-yaml",
    ),
    path(
        "orgs/<slug:org>/deployments/<slug:name>",
        views.DeploymentDetailView.as_view(),
        name="deployment-detail",
    ),
    path(
        "orgs/<slug:org>/deployments/<slug:name>/versions",
        views.DeploymentVersionListView.as_view(),
        name="deployment-versions",
    ),
    path(
        "orgs/<slug:org>/deployments/<slug:name>/rollback",
        views.DeploymentRollbackView.as_view(),
        name="deployment-rollback",
    ),
    path(
        "orgs/<slug:org>/deployments/<slug:name>/health",
        views.DeploymentHealthView.as_view(),
        name="deployment-health",
    ),
]
