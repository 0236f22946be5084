"""Django admin's app config and site: one login for operators, with the product's rules.

``INSTALLED_APPS`` names this config instead of ``django.contrib.admin``, so
``admin.site`` is an ``InferiaAdminSite`` from the start. Its login goes through
``orgs.services.auth.admin_login_verify`` (the API's per-username and per-IP
throttles, ``auth:login`` audit records, the second factor of every staff user who
enrolled one, in every deployment); with ``INFERIA_ADMIN_REQUIRES_OTP`` (always on
in production) staff without 2FA must enrol before they get in.
"""

from __future__ import annotations

from django import forms
from django.contrib.admin import AdminSite
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest, HttpResponse


class InferiaAdminConfig(AdminConfig):
    default_site = "inferia.admin_config.InferiaAdminSite"


class AdminLoginForm(forms.Form):
    username = forms.CharField(max_length=150)
    password = forms.CharField(strip=False, widget=forms.PasswordInput)
    # Named like django-otp's admin form, so password managers and scripts keep working.
    otp_token = forms.CharField(
        required=False, max_length=40, label="One-time code (if you use two-factor)"
    )


class InferiaAdminSite(AdminSite):
    login_template = "admin/inferia_login.html"

    def has_permission(self, request: HttpRequest) -> bool:
        from orgs.services.auth import admin_second_factor_needed

        user = request.user
        if not (user.is_active and user.is_staff):
            return False
        if admin_second_factor_needed(user):
            # Set by django-otp's middleware once the admin login checked a code.
            return bool(getattr(user, "is_verified", lambda: False)())
        return True

    def login(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        import django_otp
        from django.contrib.auth import login as django_login
        from django.shortcuts import redirect
        from django.template.response import TemplateResponse
        from django.urls import reverse
        from django.utils.http import url_has_allowed_host_and_scheme

        from inferia.errors import InferiaError, OtpRequired
        from inferia.request_meta import RequestMeta
        from orgs.services import auth

        next_url = request.POST.get("next") or request.GET.get("next") or ""
        if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
            next_url = ""
        next_url = next_url or reverse("admin:index", current_app=self.name)
        if request.method == "GET" and self.has_permission(request):
            return redirect(next_url)
        form = AdminLoginForm(request.POST if request.method == "POST" else None)
        status = 200
        if request.method == "POST":
            status = 400
            if form.is_valid():
                try:
                    user, device = auth.admin_login_verify(
                        request=request,
                        username=form.cleaned_data["username"],
                        password=form.cleaned_data["password"],
                        otp_code=form.cleaned_data["otp_token"] or None,
                    )
                except OtpRequired as exc:
                    form.add_error("otp_token", exc.message)
                    status = exc.status
                except InferiaError as exc:
                    form.add_error(None, exc.message)
                    status = exc.status
                else:
                    django_login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                    if device is not None:
                        django_otp.login(request, device)
                    auth.login_record(meta=RequestMeta.from_http(request), user=user, via="admin")
                    return redirect(next_url)
        context = {
            **self.each_context(request),
            "title": "Log in",
            "subtitle": None,
            "app_path": request.get_full_path(),
            "username": request.user.get_username(),
            "form": form,
            "next": next_url,
            **(extra_context or {}),
        }
        request.current_app = self.name
        return TemplateResponse(request, self.login_template, context, status=status)
