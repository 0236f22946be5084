"""Deployments with a launcher spec: create starts the endpoint and keeps the launcher's
state, delete stops it; a launcher that fails leaves nothing half-made. The launcher is a
tiny recording one registered for the test (``mgmt_fixtures.RecordingLauncher``)."""

from __future__ import annotations

import pytest

from audit.models import AuditRecord
from deployments import services
from deployments.models import Deployment, DeploymentVersion
from inferia import store
from inferia.errors import ValidationError
from orgs.access import resolve_member
from orgs.scoping import org_scope
from tests.conftest import assert_error
from tests.deployments.mgmt_fixtures import (
    LAUNCHED,
    URL,
    create,
)


def test_create_starts_the_launcher_and_keeps_its_state(world, alice_client, test_launcher):
    response = create(alice_client, LAUNCHED)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "ready" and body["launcher"] == {"kind": "test", "model": "llama-3"}
    row = Deployment.all_orgs.get(name="local-llama")
    assert test_launcher.calls == [("start", str(row.pk), {"kind": "test", "model": "llama-3"})]
    assert row.launcher_state == {
        "base_url": "http://127.0.0.1:9000/v1",
        "handle": f"proc-{str(row.pk)[:8]}",
    }
    assert body["launcher_state"] == row.launcher_state
    ops = list(
        AuditRecord.objects.filter(action="deployment:create")
        .order_by("seq")
        .values_list("data__op", "outcome", "data__status")
    )
    assert ops == [("create", "success", "creating"), ("launch", "success", "ready")]


def test_delete_stops_what_the_launcher_started(
    world, alice_client, test_launcher, django_capture_on_commit_callbacks
):
    assert create(alice_client, LAUNCHED).status_code == 201
    row = Deployment.all_orgs.get(name="local-llama")
    epoch = store.epoch(world.cast.acme.pk)
    with django_capture_on_commit_callbacks(execute=True):
        assert alice_client.delete(f"{URL}/local-llama").status_code == 204
    assert test_launcher.calls[-1] == ("stop", str(row.pk), row.launcher_state)
    assert not Deployment.all_orgs.exists() and not DeploymentVersion.all_orgs.exists()
    assert store.epoch(world.cast.acme.pk) > epoch
    assert AuditRecord.objects.get(action="deployment:delete").data["launcher"] == "test"


def test_a_launcher_that_fails_to_start_leaves_no_row(world, alice_client, test_launcher):
    test_launcher.fail_start = "no GPU left on node-3"
    error = assert_error(create(alice_client, LAUNCHED), 502, "UPSTREAM_ERROR")
    assert "could not start deployment local-llama" in error["message"]
    assert error["details"] == {"launcher": ["RuntimeError: no GPU left on node-3"]}
    assert not Deployment.all_orgs.exists() and not DeploymentVersion.all_orgs.exists()
    failed = AuditRecord.objects.get(action="deployment:create", outcome="failure")
    assert failed.data["reason"] == "RuntimeError: no GPU left on node-3"
    assert failed.data["status"] == "stopped"
    # Nothing stands in the way of trying again.
    test_launcher.fail_start = ""
    assert create(alice_client, LAUNCHED).status_code == 201


def test_a_launcher_that_fails_to_stop_keeps_the_deployment_stopped(
    world, alice_client, test_launcher
):
    assert create(alice_client, LAUNCHED).status_code == 201
    test_launcher.fail_stop = "cluster unreachable"
    error = assert_error(alice_client.delete(f"{URL}/local-llama"), 502, "UPSTREAM_ERROR")
    assert "delete it again" in error["message"]
    row = Deployment.all_orgs.get(name="local-llama")
    assert row.status == "stopped"
    assert row.status_reason == "Stopping failed: RuntimeError: cluster unreachable"
    assert AuditRecord.objects.get(action="deployment:delete").outcome == "failure"
    test_launcher.fail_stop = ""
    assert alice_client.delete(f"{URL}/local-llama").status_code == 204
    assert not Deployment.all_orgs.exists()


def test_a_launched_target_needs_a_launcher_spec(world, alice_client, test_launcher):
    body = {k: v for k, v in LAUNCHED.items() if k != "launcher"}
    error = assert_error(create(alice_client, body), 400, "VALIDATION_ERROR")
    assert list(error["details"]) == ["targets[0].launched"]
    assert test_launcher.calls == []


def test_the_launcher_validates_its_spec(world, alice_client, test_launcher):
    error = assert_error(
        create(alice_client, LAUNCHED, launcher={"kind": "test"}), 400, "VALIDATION_ERROR"
    )
    assert error["details"] == {"launcher.model": ["Required."]}
    error = assert_error(
        create(alice_client, LAUNCHED, launcher={"kind": "no-such-kind"}), 400, "VALIDATION_ERROR"
    )
    assert list(error["details"]) == ["launcher.kind"]
    assert test_launcher.calls == [] and not Deployment.all_orgs.exists()


def test_the_launcher_spec_cannot_be_patched(world, alice_client, test_launcher):
    assert create(alice_client, LAUNCHED).status_code == 201
    response = alice_client.patch(
        f"{URL}/local-llama", {"launcher": {"kind": "test", "model": "other"}}, format="json"
    )
    assert assert_error(response, 400, "VALIDATION_ERROR")["details"] == {
        "launcher": ["Unknown field."]
    }


def test_services_refuse_a_status_users_may_not_set(world, alice_client):
    body = {"name": "x", "targets": [{"name": "t", "account": "openai-main", "model": "gpt-4o"}]}
    assert create(alice_client, body).status_code == 201
    with org_scope(world.cast.acme):
        access = resolve_member(world.cast.acme, world.cast.alice)
        deployment = Deployment.objects.get(name="x")
        # ``degraded`` is the health checks' to report, ``creating`` the launch's.
        with pytest.raises(ValidationError) as refused:
            services.deployment_set_status(access=access, deployment=deployment, status="degraded")
        assert refused.value.details == {"status": ["One of: ready, stopped."]}
        assert Deployment.objects.get(name="x").status == "ready"
