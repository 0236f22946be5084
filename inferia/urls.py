from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from inferia import health, metrics_endpoint
from inferia.docs import DocsView

# admin.site is an OTPAdminSite when INFERIA_ADMIN_REQUIRES_OTP (inferia.admin_config).
admin.site.site_header = "Inferia operations"
admin.site.site_title = "Inferia admin"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # Prometheus (docs/metrics.md): the operator's scrape token, or an org's metrics:read.
    path("metrics", metrics_endpoint.metrics_page, name="metrics"),
    path("api/v1/", include("orgs.api.urls")),
    path("api/v1/", include("keys.api.urls")),
    path("api/v1/", include("audit.api.urls")),
    path("api/v1/", include("sso.api.urls")),
    path("api/v1/", include("scim.api.urls")),
    path("api/v1/", include("deployments.api.urls")),
    path("api/v1/", include("knowledge.api.urls")),
    # SCIM 2.0 for identity providers (RFC 7644): its own error shape (scim/errors.py).
    path("scim/v2/", include("scim.v2.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", DocsView.as_view(url_name="schema"), name="docs"),
    path("admin/", admin.site.urls),
    # Dashboard pages (server-rendered) at /login, /orgs/<slug>/...
    path("", include("orgs.urls")),
    path("", include("keys.urls")),
    path("", include("audit.urls")),
    path("", include("sso.urls")),
    path("", include("deployments.urls")),
    path("", include("knowledge.urls")),
    path("", include("gateway.urls")),
]

handler400 = "inferia.errors.handler400"
handler403 = "inferia.errors.handler403"
handler404 = "inferia.errors.handler404"
handler500 = "inferia.errors.handler500"
