"""The operator caps what orgs may list as private hosts (``INFERIA_PRIVATE_HOSTS_ALLOWED``):
an entry outside the cap is refused when the org saves it (API and dashboard, one
service rule), not only ignored at connect time."""

from __future__ import annotations

import pytest

from orgs.models import Organization
from tests.conftest import assert_error
from tests.dashboard.conftest import page_client


def _patch(client, hosts):
    return client.patch(
        "/api/v1/orgs/acme", {"settings": {"allowed_private_hosts": hosts}}, format="json"
    )


def test_an_entry_outside_the_cap_is_refused_and_nothing_is_written(cast, alice_client, settings):
    settings.INFERIA_PRIVATE_HOSTS_ALLOWED = ["vllm.internal", "10.0.0.0/8"]
    error = assert_error(
        _patch(alice_client, ["vllm.internal:8000", "127.0.0.1:9000"]), 400, "VALIDATION_ERROR"
    )
    assert error["details"]["allowed_private_hosts"] == [
        "127.0.0.1:9000 is not among the hosts the operator lets organizations list"
    ]
    assert "allowed_private_hosts" not in Organization.objects.get(pk=cast.acme.pk).settings


@pytest.mark.parametrize(
    ("cap", "entry"),
    [
        (["*"], "127.0.0.1:9000"),
        (["vllm.internal"], "vllm.internal:8000"),
        (["vllm.internal:8000"], "vllm.internal:8000"),
        (["127.0.0.0/8"], "127.0.0.1:9000"),
        (["10.0.0.0/8"], "gpu.internal"),  # a name: its addresses are checked at connect
    ],
)
def test_entries_the_cap_covers_are_saved(cast, alice_client, settings, cap, entry):
    settings.INFERIA_PRIVATE_HOSTS_ALLOWED = cap
    assert _patch(alice_client, [entry]).status_code == 200
    assert Organization.objects.get(pk=cast.acme.pk).settings["allowed_private_hosts"] == [entry]


@pytest.mark.parametrize(
    ("cap", "entry"),
    [
        ([], "127.0.0.1:9000"),
        (["vllm.internal:8000"], "vllm.internal"),  # every port is more than the cap allows
        (["vllm.internal:8000"], "vllm.internal:9000"),
        (["127.0.0.0/8"], "192.168.1.5"),
        (["127.0.0.1"], "[::1]:9000"),
    ],
)
def test_entries_outside_the_cap_are_refused(cast, alice_client, settings, cap, entry):
    settings.INFERIA_PRIVATE_HOSTS_ALLOWED = cap
    assert_error(_patch(alice_client, [entry]), 400, "VALIDATION_ERROR")


def test_the_dashboard_refuses_it_on_the_field(cast, settings):
    alice_page = page_client(cast.alice)
    settings.INFERIA_PRIVATE_HOSTS_ALLOWED = ["vllm.internal"]
    response = alice_page.post(
        "/orgs/acme/settings",
        {"name": "Acme", "require_2fa": "", "allowed_private_hosts": "127.0.0.1:9000"},
    )
    assert response.status_code == 400
    assert b"not among the hosts the operator lets organizations list" in response.content
    assert "allowed_private_hosts" not in Organization.objects.get(pk=cast.acme.pk).settings
