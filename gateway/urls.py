"""Dashboard pages of gateway/ (mounted at /)."""

from django.urls import path

from gateway import pages

app_name = "gateway"

urlpatterns = [
    path(
        "orgs/<slug:org>/provider-accounts/<uuid:account_id>/test",
        pages.provider_account_test,
        name="provider-account-test",
    ),
]
