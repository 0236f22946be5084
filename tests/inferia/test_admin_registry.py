"""Django admin: every model of orgs, audit and inferia is there, searchable,
filterable, and its pages render for a superuser (default profile)."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from inferia import clock, store
from orgs.models import Invitation
from tests.conftest import client_for, enable_totp

APPS = ("orgs", "audit", "inferia")
MODELS = [model for label in APPS for model in apps.get_app_config(label).get_models()]


def _ids(model) -> str:
    return f"{model._meta.app_label}.{model.__name__}"


@pytest.fixture
def admin_data(cast, django_capture_on_commit_callbacks, settings):
    """At least one row of every model, so lists and change pages have something to show."""
    alice = client_for(cast.alice)  # a refresh token record
    enable_totp(alice, cast.alice)  # a TOTP device and recovery codes
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post(
            "/api/v1/orgs/acme/invitations",
            {"email": "frank@example.com", "role": "member"},
            format="json",
        )
    assert response.status_code == 201, response.content
    response = alice.post("/api/v1/orgs/acme/teams", {"slug": "ml", "name": "ML"}, format="json")
    assert response.status_code == 201, response.content
    team_id = response.json()["id"]
    response = alice.post(
        f"/api/v1/orgs/acme/teams/{team_id}/members", {"user_id": str(cast.bob.pk)}, format="json"
    )
    assert response.status_code == 201, response.content
    settings.REDIS_URL = ""  # the database counter store, whatever this run uses
    store.hit("admin-test", window_seconds=60)
    from inferia.store.breaker import Event

    store.breaker_update_sync("admin-test-breaker", Event(kind="fail", now=clock.time()))
    # A gateway call's usage row, written as the embedded writer does, and its rollup.
    from django.utils import timezone

    from audit import rollups
    from gateway import usage

    usage._write_db(
        {
            "created_at": timezone.now().timestamp(),
            "org_id": str(cast.acme.pk),
            "request_id": "admin-test",
            "endpoint": "chat",
            "model": "openai-main/gpt-4o",
            "status_code": 200,
            "prompt_tokens": 3,
            "completion_tokens": 5,
        },
        [],
    )
    rollups.usage_rollup(period="hour", moment=timezone.now())
    from audit.models import Alert

    Alert.objects.create(org=cast.acme, kind="denials", message="test", dedupe_key="admin-test")
    from audit.models import Payload

    Payload.objects.create(org_id=cast.acme.pk, request_id="admin-test", encrypted="{}")
    from audit.models import UsageDeadLetter

    UsageDeadLetter.objects.create(org_id=cast.acme.pk, reason="admin-test", raw="{}")
    from orgs.services import device

    device.device_authorization_request(meta=None, client_id="inferia-cli")
    return cast


@pytest.mark.parametrize("model", MODELS, ids=_ids)
def test_every_model_is_registered_with_search_and_filters(model):
    model_admin = admin.site._registry.get(model)
    assert model_admin is not None, f"{_ids(model)} is not in admin"
    assert model_admin.search_fields, f"{_ids(model)} has no search_fields"
    assert model_admin.list_filter, f"{_ids(model)} has no list_filter"


@pytest.mark.parametrize("model", MODELS, ids=_ids)
def test_admin_pages_render_for_a_superuser(model, admin_client, admin_data):
    assert model._default_manager.model is model
    manager = getattr(model, "all_orgs", model._default_manager)
    assert manager.exists(), f"the fixture made no {_ids(model)} row"
    opts = model._meta
    changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")

    response = admin_client.get(changelist)
    assert response.status_code == 200, response.content[:1000]
    assert response.context["cl"].result_count >= 1

    # Search and every filter run their queries without error.
    response = admin_client.get(changelist, {"q": "a"})
    assert response.status_code == 200
    for spec in response.context["cl"].filter_specs:
        for choice in spec.choices(response.context["cl"]):
            query = choice["query_string"]
            filtered = admin_client.get(changelist + query)
            assert filtered.status_code == 200, (query, filtered.status_code)

    obj = manager.first()
    change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    response = admin_client.get(change)
    assert response.status_code == 200, response.content[:1000]

    add = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
    can_add = admin.site._registry[model].has_add_permission(response.wsgi_request)
    response = admin_client.get(add)
    assert response.status_code == (200 if can_add else 403), response.content[:1000]


def test_admin_never_shows_secrets(admin_client, admin_data):
    invitation = Invitation.all_orgs.get()
    page = admin_client.get(
        reverse("admin:orgs_invitation_change", args=[invitation.pk])
    ).content.decode()
    assert invitation.token_digest not in page
    device = admin_data.alice.totpdevice_set.get()
    page = admin_client.get(
        reverse("admin:orgs_totpdevice_change", args=[device.pk])
    ).content.decode()
    assert device.encrypted_seed not in page and "encrypted_seed" not in page
    assert device.seed_plaintext().hex() not in page
    from orgs.models import DeviceAuthorization

    request = DeviceAuthorization.objects.get()
    page = admin_client.get(
        reverse("admin:orgs_deviceauthorization_change", args=[request.pk])
    ).content.decode()
    assert request.device_code_digest not in page and request.user_code_digest not in page


def test_default_profile_admin_is_the_inferia_site(settings):
    from inferia.admin_config import InferiaAdminSite

    # One site in every profile: its login has the product's throttles, audit and 2FA;
    # the development profile only lets staff without 2FA in.
    assert settings.INFERIA_ADMIN_REQUIRES_OTP is False
    assert isinstance(admin.site, InferiaAdminSite)
