"""Django admin's app config: in the production profile the site requires OTP.

``INSTALLED_APPS`` names this class instead of ``django.contrib.admin``, so
``admin.site`` is an ``OTPAdminSite`` from the start (not only once the
URLconf is imported) whenever ``INFERIA_ADMIN_REQUIRES_OTP`` is on.
"""

from __future__ import annotations

from django.contrib.admin.apps import AdminConfig


class InferiaAdminConfig(AdminConfig):
    # A property where AdminConfig has a plain attribute, so that the setting is read
    # when admin.site is first used, not at import.
    @property
    def default_site(self) -> str:  # type: ignore[override]
        from django.conf import settings

        if settings.INFERIA_ADMIN_REQUIRES_OTP:
            return "django_otp.admin.OTPAdminSite"
        return "django.contrib.admin.sites.AdminSite"
