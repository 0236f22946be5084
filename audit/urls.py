"""Dashboard pages of audit/ (mounted at /)."""

from django.urls import path

from audit import views

app_name = "audit"

urlpatterns = [
    path("orgs/<slug:org>/audit-log", views.audit_record_list, name="audit-record-list"),
    path("orgs/<slug:org>/audit-log.csv", views.audit_record_export, name="audit-record-export"),
    path("orgs/<slug:org>/usage", views.usage, name="usage"),
    path("orgs/<slug:org>/requests", views.request_list, name="request-list"),
    path("orgs/<slug:org>/requests/<uuid:record_id>", views.request_detail, name="request-detail"),
]
