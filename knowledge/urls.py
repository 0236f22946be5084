"""Dashboard pages of knowledge/ (mounted at /)."""

from django.urls import path

from knowledge import views

app_name = "knowledge"

urlpatterns = [
    path("orgs/<slug:org>/knowledge-bases", views.kb_list, name="kb-list"),
    path("orgs/<slug:org>/knowledge-bases/<slug:name>", views.kb_detail, name="kb-detail"),
    path(
        "orgs/<slug:org>/knowledge-bases/<slug:name>/documents/<uuid:document>/progress",
        views.document_progress,
        name="document-progress",
    ),
]
