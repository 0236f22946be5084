from __future__ import annotations

from django.urls import path

from audit.api import views

app_name = "audit-api"

urlpatterns = [
    path("orgs/<slug:org>/audit-logs", views.AuditLogListView.as_view(), name="audit-log-list"),
    path("orgs/<slug:org>/usage", views.UsageView.as_view(), name="usage"),
]
