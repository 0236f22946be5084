from __future__ import annotations

from django.urls import path

from knowledge.api import views

app_name = "knowledge-api"

urlpatterns = [
    path(
        "orgs/<slug:org>/knowledge-bases",
        views.KnowledgeBaseListView.as_view(),
        name="kb-list",
    ),
    path(
        "orgs/<slug:org>/knowledge-bases/<slug:name>",
        views.KnowledgeBaseDetailView.as_view(),
        name="kb-detail",
    ),
    path(
        "orgs/<slug:org>/knowledge-bases/<slug:name>/documents",
        views.DocumentListView.as_view(),
        name="document-list",
    ),
    path(
        "orgs/<slug:org>/knowledge-bases/<slug:name>/documents/<uuid:id>",
        views.DocumentDetailView.as_view(),
        name="document-detail",
    ),
    path(
        "orgs/<slug:org>/knowledge-bases/<slug:name>/query",
        views.KnowledgeBaseQueryView.as_view(),
        name="kb-query",
    ),
]
