"""The system check: every method an OrgAPIView handles declares a known permission."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.urls import include, path
from rest_framework.response import Response

import inferia.urls
from inferia.api import ANY_MEMBER, OrgAPIView
from inferia.checks import check_required_permissions


class TypoPermissionView(OrgAPIView):
    required_permissions = {"GET": "model:reed", "POST": ANY_MEMBER}

    def get(self, request, org):
        return Response({})

    def post(self, request, org):
        return Response({})


class UndeclaredMethodView(OrgAPIView):
    required_permissions = {"GET": "member:view"}

    def get(self, request, org):
        return Response({})

    def delete(self, request, org):
        return Response(status=204)


class WellDeclaredView(OrgAPIView):
    required_permissions = {"GET": "member:view", "PUT": "policy:manage", "PATCH": ANY_MEMBER}

    def get(self, request, org):
        return Response({})

    def put(self, request, org):
        return Response({})

    def patch(self, request, org):
        return Response({})


# This module is the URLconf of the tests below: the real routes plus three views.
urlpatterns = [
    path("test/<slug:org>/typo", TypoPermissionView.as_view()),
    path("test/<slug:org>/undeclared", UndeclaredMethodView.as_view()),
    path("nested/", include([path("<slug:org>/fine", WellDeclaredView.as_view())])),
    path("", include(inferia.urls.urlpatterns)),
]


def test_the_project_passes_the_check():
    assert check_required_permissions(None) == []


def test_unknown_permission_and_undeclared_method_are_errors(settings):
    settings.ROOT_URLCONF = __name__
    errors = check_required_permissions(None)
    by_id = {}
    for error in errors:
        by_id.setdefault(error.id, []).append(error.msg)
    assert by_id == {
        "inferia.E002": ["TypoPermissionView GET requires unknown permission 'model:reed'"],
        "inferia.E001": ["UndeclaredMethodView handles DELETE without a required permission"],
    }


def test_manage_check_fails_on_them(settings):
    settings.ROOT_URLCONF = __name__
    with pytest.raises(SystemCheckError) as raised:
        call_command("check")
    assert "inferia.E001" in str(raised.value) and "inferia.E002" in str(raised.value)


def test_an_undeclared_method_is_refused_at_run_time_too(settings, alice_client):
    settings.ROOT_URLCONF = __name__
    response = alice_client.delete("/test/acme/undeclared")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "PERMISSION_DENIED"
