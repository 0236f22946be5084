"""The deployments API: create, read, change (versions), roll back, pause, delete;
who may do what, tenant isolation, the routing checks, audit and epochs."""

from __future__ import annotations

import pytest

from audit.models import AuditRecord
from deployments.models import Deployment, DeploymentVersion
from inferia import store
from keys.models import AccessRule
from orgs.access import BUILTIN_ROLES, PERMISSION_DESCRIPTIONS, PERMISSIONS
from tests.conftest import assert_error
from tests.deployments.mgmt_fixtures import URL, create, grant
from tests.keys.conftest import key_client, mint


def _rows(org) -> list[str]:
    return list(Deployment.all_orgs.filter(org=org).values_list("name", flat=True))


# --- create and read ------------------------------------------------------------------------


def test_create_then_list_and_show(world, alice_client, vera_client):
    response = create(alice_client)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "chat" and body["fqn"] == "deployment/chat"
    assert body["status"] == "ready" and body["version"] == 1
    assert body["strategy"] == "priority" and body["retries"] == 1
    assert [(t["name"], t["account"], t["model"]) for t in body["targets"]] == [
        ("primary", "openai-main", "gpt-4o"),
        ("cheap", "openai-main", "gpt-4o-mini"),
    ]
    assert body["targets"][1]["priority"] == 1 and body["created_by"] == "alice"
    assert body["launcher"] == {} and body["fallback_on"] == ["429", "5xx", "timeout", "connect"]
    row = Deployment.all_orgs.get(name="chat")
    assert row.org_id == world.cast.acme.pk and row.config["targets"][0]["weight"] == 1.0
    assert list(
        DeploymentVersion.all_orgs.filter(deployment=row).values_list("number", flat=True)
    ) == [1]
    # A viewer sees it (deployment:view), in the list and alone.
    listed = vera_client.get(URL)
    assert listed.status_code == 200
    assert [d["name"] for d in listed.json()["results"]] == ["chat"]
    shown = vera_client.get(f"{URL}/chat")
    assert shown.status_code == 200 and shown.json()["id"] == body["id"]


def test_create_is_audited_and_bumps_the_epoch(
    world, alice_client, django_capture_on_commit_callbacks
):
    before = store.epoch(world.cast.acme.pk)
    with django_capture_on_commit_callbacks(execute=True):
        assert create(alice_client).status_code == 201
    assert store.epoch(world.cast.acme.pk) > before
    record = AuditRecord.objects.get(action="deployment:create")
    assert record.outcome == "success" and record.actor_user_id == world.cast.alice.pk
    assert record.org_id == world.cast.acme.pk and record.target_type == "deployments.deployment"
    assert record.data["name"] == "chat" and record.data["before"] is None
    assert record.data["after"]["version"] == 1
    assert record.data["after"]["config"]["targets"][0]["model"] == "gpt-4o"


def test_the_same_name_twice_is_a_conflict(world, alice_client):
    assert create(alice_client).status_code == 201
    error = assert_error(create(alice_client), 409, "CONFLICT")
    assert error["details"] == {"name": ["Already taken."]}
    assert Deployment.all_orgs.filter(name="chat").count() == 1


def test_names_are_per_org(world, alice_client, charlie_client):
    assert create(alice_client).status_code == 201
    globex = {
        "name": "chat",
        "targets": [{"name": "only", "account": "globex-ai", "model": "gpt-4o"}],
    }
    assert create(charlie_client, globex, org="globex").status_code == 201
    assert Deployment.all_orgs.filter(name="chat").count() == 2


# --- permissions --------------------------------------------------------------------------


def test_member_and_viewer_cannot_create(world, bob_client, vera_client):
    for client in (bob_client, vera_client):
        error = assert_error(create(client), 403, "PERMISSION_DENIED")
        assert "deployment:create" in error["message"]
    assert _rows(world.cast.acme) == []


def test_each_write_needs_its_own_permission(world, alice_client):
    assert create(alice_client).status_code == 201
    view_only = key_client(mint(alice_client, permissions=["deployment:view"])["key"])
    assert view_only.get(f"{URL}/chat").status_code == 200
    cases = [
        (lambda c: create(c, name="other"), "deployment:create"),
        (lambda c: c.patch(f"{URL}/chat", {"retries": 2}, format="json"), "deployment:update"),
        (
            lambda c: c.post(f"{URL}/chat/rollback", {"version": 1}, format="json"),
            "deployment:update",
        ),
        (lambda c: c.delete(f"{URL}/chat"), "deployment:delete"),
    ]
    for call, permission in cases:
        error = assert_error(call(view_only), 403, "PERMISSION_DENIED")
        assert permission in error["message"]
    # Holding the one permission is enough for its write (the key acts with alice's models).
    creator = key_client(mint(alice_client, permissions=["deployment:create"])["key"])
    assert create(creator, name="other").status_code == 201
    updater = key_client(mint(alice_client, permissions=["deployment:update"])["key"])
    assert updater.patch(f"{URL}/chat", {"retries": 2}, format="json").status_code == 200
    deleter = key_client(mint(alice_client, permissions=["deployment:delete"])["key"])
    assert deleter.delete(f"{URL}/chat").status_code == 204
    assert _rows(world.cast.acme) == ["other"]


def test_reading_needs_deployment_view(world, alice_client):
    assert create(alice_client).status_code == 201
    none = key_client(mint(alice_client, permissions=["model:read"])["key"])
    for path in ("", "/chat", "/chat/versions", "/chat/health"):
        assert_error(none.get(f"{URL}{path}"), 403, "PERMISSION_DENIED")


def test_unauthenticated_is_401(world, anon_client):
    assert_error(anon_client.get(URL), 401, "AUTHENTICATION_FAILED")
    assert_error(create(anon_client), 401, "AUTHENTICATION_FAILED")


def test_deployment_update_is_in_the_vocabulary_and_the_builtin_roles():
    assert "deployment:update" in PERMISSIONS and "deployment:update" in PERMISSION_DESCRIPTIONS
    assert list(PERMISSION_DESCRIPTIONS) == list(PERMISSIONS)
    holders = {slug for slug, (_, perms) in BUILTIN_ROLES.items() if "deployment:update" in perms}
    creators = {slug for slug, (_, perms) in BUILTIN_ROLES.items() if "deployment:create" in perms}
    assert holders == creators == {"owner", "admin"}


@pytest.mark.django_db
def test_builtin_role_rows_hold_deployment_update():
    from orgs.models import Role

    rows = {r.slug: set(r.permissions) for r in Role.objects.filter(org__isnull=True)}
    assert "deployment:update" in rows["owner"] and "deployment:update" in rows["admin"]
    assert "deployment:update" not in rows["member"] | rows["viewer"]


# --- tenant isolation -------------------------------------------------------------------------


def test_another_orgs_deployment_is_404(world, alice_client, charlie_client):
    assert create(alice_client).status_code == 201
    for call in (
        lambda: charlie_client.get("/api/v1/orgs/globex/deployments/chat"),
        lambda: charlie_client.patch(
            "/api/v1/orgs/globex/deployments/chat", {"retries": 0}, format="json"
        ),
        lambda: charlie_client.delete("/api/v1/orgs/globex/deployments/chat"),
        lambda: charlie_client.get("/api/v1/orgs/globex/deployments/chat/versions"),
        lambda: charlie_client.get("/api/v1/orgs/acme/deployments/chat"),
    ):
        assert_error(call(), 404, "NOT_FOUND")
    assert charlie_client.get("/api/v1/orgs/globex/deployments").json()["results"] == []
    assert Deployment.all_orgs.get(name="chat").config["retries"] == 1


def test_a_target_naming_another_orgs_account_is_404_naming_the_field(world, alice_client):
    body = {"name": "sneaky", "targets": [{"name": "t", "account": "globex-ai", "model": "gpt-4o"}]}
    error = assert_error(create(alice_client, body), 404, "NOT_FOUND")
    assert error["details"] == {"targets[0].account": ["No such provider account."]}
    # The same answer as an account that exists nowhere: nothing reveals Globex's.
    body["targets"][0]["account"] = "no-such-account"
    assert assert_error(create(alice_client, body), 404, "NOT_FOUND")["details"] == {
        "targets[0].account": ["No such provider account."]
    }
    assert _rows(world.cast.acme) == []


# --- the routing checks -----------------------------------------------------------------------


def test_a_target_naming_a_deployment_is_refused(world, alice_client):
    assert create(alice_client).status_code == 201
    body = {"name": "loop", "targets": [{"name": "t", "account": "deployment", "model": "chat"}]}
    error = assert_error(create(alice_client, body), 400, "VALIDATION_ERROR")
    assert error["details"] == {"targets[0].account": ["A deployment cannot target a deployment."]}
    # Nor may a deployment be changed to target itself.
    response = alice_client.patch(
        f"{URL}/chat",
        {"targets": [{"name": "self", "account": "deployment", "model": "chat"}]},
        format="json",
    )
    assert "targets[0].account" in assert_error(response, 400, "VALIDATION_ERROR")["details"]
    assert _rows(world.cast.acme) == ["chat"]


def test_weights_summing_to_zero_are_refused(world, alice_client):
    body = {
        "name": "split",
        "strategy": "weighted",
        "targets": [
            {"name": "a", "account": "openai-main", "model": "gpt-4o", "weight": 0},
            {"name": "b", "account": "openai-main", "model": "gpt-4o-mini", "weight": 0},
        ],
    }
    error = assert_error(create(alice_client, body), 400, "VALIDATION_ERROR")
    assert error["details"] == {
        "targets": ["The weights sum to zero: no target would ever be chosen."]
    }
    body["targets"][1]["weight"] = 3
    assert create(alice_client, body).status_code == 201


def test_unknown_fields_are_named(world, alice_client):
    error = assert_error(create(alice_client, colour="blue"), 400, "VALIDATION_ERROR")
    assert error["details"] == {"colour": ["Unknown field."]}
    body = {
        "name": "odd",
        "targets": [{"name": "t", "account": "openai-main", "model": "gpt-4o", "colour": "x"}],
        "breaker": {"failures": 3, "speed": 1},
    }
    error = assert_error(create(alice_client, body), 400, "VALIDATION_ERROR")
    assert error["details"] == {
        "targets[0].colour": ["Unknown field."],
        "breaker.speed": ["Unknown field."],
    }
    assert _rows(world.cast.acme) == []


def test_a_model_the_account_does_not_enable_is_400(world, alice_client):
    body = {"name": "x", "targets": [{"name": "t", "account": "openai-main", "model": "gpt-5"}]}
    error = assert_error(create(alice_client, body), 400, "VALIDATION_ERROR")
    assert error["details"] == {
        "targets[0].model": ["'gpt-5' is not an enabled model of openai-main."]
    }


def test_a_creator_who_may_not_use_a_target_model_is_refused(world, alice_client, dave_client):
    # dave (admin: deployment:create) may use openai-main/gpt-4o-mini only.
    error = assert_error(create(dave_client), 403, "PERMISSION_DENIED")
    assert error["details"] == {"targets[0].model": ["openai-main/gpt-4o is not granted to you."]}
    assert _rows(world.cast.acme) == []
    mini_only = {
        "name": "mini",
        "targets": [{"name": "t", "account": "openai-main", "model": "gpt-4o-mini"}],
    }
    assert create(dave_client, mini_only).status_code == 201
    # Nor can he re-route an existing deployment to a model he may not call.
    response = dave_client.patch(
        f"{URL}/mini",
        {"targets": [{"name": "t", "account": "cheap-llm", "model": "llama-3"}]},
        format="json",
    )
    assert_error(response, 403, "PERMISSION_DENIED")
    assert Deployment.all_orgs.get(name="mini").version == 1


def test_a_key_restricted_to_some_models_cannot_route_to_others(world, alice_client):
    narrow = key_client(
        mint(alice_client, permissions=["deployment:create"], models=["cheap-llm/*"])["key"]
    )
    assert_error(create(narrow), 403, "PERMISSION_DENIED")
    ok = {"name": "llama", "targets": [{"name": "t", "account": "cheap-llm", "model": "llama-3"}]}
    assert create(narrow, ok).status_code == 201


# --- versions and rollback --------------------------------------------------------------------


def test_patch_makes_a_new_version_and_rollback_copies_an_old_one(
    world, alice_client, django_capture_on_commit_callbacks
):
    assert create(alice_client).status_code == 201
    response = alice_client.patch(
        f"{URL}/chat",
        {"strategy": "weighted", "retries": 3, "comment": "split traffic"},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["version"] == 2 and body["strategy"] == "weighted" and body["retries"] == 3
    # Fields not given are kept.
    assert [t["name"] for t in body["targets"]] == ["primary", "cheap"]
    versions = alice_client.get(f"{URL}/chat/versions").json()["results"]
    assert [(v["number"], v["comment"]) for v in versions] == [(2, "split traffic"), (1, "")]
    assert versions[1]["config"]["strategy"] == "priority"

    epoch = store.epoch(world.cast.acme.pk)
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(f"{URL}/chat/rollback", {"version": 1}, format="json")
    assert response.status_code == 200, response.content
    assert store.epoch(world.cast.acme.pk) > epoch
    body = response.json()
    assert body["version"] == 3 and body["strategy"] == "priority" and body["retries"] == 1
    latest = alice_client.get(f"{URL}/chat/versions").json()["results"][0]
    assert latest["number"] == 3 and latest["rolled_back_from"] == 1
    assert latest["config"] == versions[1]["config"] and latest["created_by"] == "alice"
    record = AuditRecord.objects.filter(action="deployment:update").order_by("-seq").first()
    assert record.data["op"] == "rollback" and record.data["rolled_back_from"] == 1
    assert record.data["before"]["version"] == 2 and record.data["after"]["version"] == 3
    assert record.data["before"]["config"]["strategy"] == "weighted"


def test_rollback_to_an_unknown_or_the_current_version(world, alice_client):
    assert create(alice_client).status_code == 201
    error = assert_error(
        alice_client.post(f"{URL}/chat/rollback", {"version": 9}, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    assert error["details"] == {"version": ["Deployment chat has no version 9."]}
    assert_error(
        alice_client.post(f"{URL}/chat/rollback", {"version": 1}, format="json"), 409, "CONFLICT"
    )
    assert_error(
        alice_client.post(f"{URL}/chat/rollback", {"version": 0}, format="json"),
        400,
        "VALIDATION_ERROR",
    )


def test_rollback_is_checked_as_if_written_now(world, alice_client):
    assert create(alice_client).status_code == 201
    response = alice_client.patch(
        f"{URL}/chat",
        {"targets": [{"name": "llama", "account": "cheap-llm", "model": "llama-3"}]},
        format="json",
    )
    assert response.status_code == 200
    # openai-main goes: version 1 now names an account that does not exist.
    account_id = alice_client.get("/api/v1/orgs/acme/provider-accounts").json()["results"]
    openai_id = next(a["id"] for a in account_id if a["name"] == "openai-main")
    assert (
        alice_client.delete(f"/api/v1/orgs/acme/provider-accounts/{openai_id}").status_code == 204
    )
    response = alice_client.post(f"{URL}/chat/rollback", {"version": 1}, format="json")
    assert assert_error(response, 404, "NOT_FOUND")["details"] == {
        "targets[0].account": ["No such provider account."]
    }
    assert Deployment.all_orgs.get(name="chat").version == 2


def test_an_unchanged_patch_makes_no_version(world, alice_client):
    assert create(alice_client).status_code == 201
    response = alice_client.patch(f"{URL}/chat", {"strategy": "priority"}, format="json")
    assert response.status_code == 200 and response.json()["version"] == 1
    response = alice_client.patch(f"{URL}/chat", {"description": "New words"}, format="json")
    assert response.json()["description"] == "New words" and response.json()["version"] == 1
    assert DeploymentVersion.all_orgs.count() == 1


def test_pause_and_resume(world, alice_client, django_capture_on_commit_callbacks):
    assert create(alice_client).status_code == 201
    epoch = store.epoch(world.cast.acme.pk)
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.patch(f"{URL}/chat", {"status": "stopped"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "stopped"
    assert store.epoch(world.cast.acme.pk) > epoch
    assert (
        alice_client.patch(f"{URL}/chat", {"status": "ready"}, format="json").json()["status"]
        == "ready"
    )
    error = assert_error(
        alice_client.patch(f"{URL}/chat", {"status": "creating"}, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    assert "status" in error["details"]
    ops = list(
        AuditRecord.objects.filter(action="deployment:update", data__op="status")
        .order_by("seq")
        .values_list("data__after__status", flat=True)
    )
    assert ops == ["stopped", "ready"]


# --- delete -----------------------------------------------------------------------------------


def test_delete_removes_it_and_its_versions_and_keeps_the_rules_naming_it(
    world, alice_client, django_capture_on_commit_callbacks
):
    assert create(alice_client).status_code == 201
    grant(alice_client, ["deployment/chat"], ["bob"])
    epoch = store.epoch(world.cast.acme.pk)
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.delete(f"{URL}/chat")
    assert response.status_code == 204
    assert store.epoch(world.cast.acme.pk) > epoch
    assert _rows(world.cast.acme) == [] and not DeploymentVersion.all_orgs.exists()
    assert AccessRule.all_orgs.filter(model_patterns=["deployment/chat"]).exists()
    record = AuditRecord.objects.get(action="deployment:delete")
    assert record.outcome == "success" and record.data["before"]["version"] == 1
    assert record.data["after"] is None
    assert_error(alice_client.get(f"{URL}/chat"), 404, "NOT_FOUND")
    # The rule grants nothing now: bob's models do not include the deleted deployment.
    models = alice_client.get("/api/v1/orgs/acme/access-rules/effective", {"user": "bob"})
    assert "deployment/chat" not in models.json()["models"]


def test_a_granted_deployment_is_a_model_of_the_grantee(world, alice_client):
    assert create(alice_client).status_code == 201
    grant(alice_client, ["deployment/*"], ["bob"])
    models = alice_client.get("/api/v1/orgs/acme/access-rules/effective", {"user": "bob"})
    assert models.json()["models"] == ["deployment/chat"]


# --- health -----------------------------------------------------------------------------------


def test_health_names_every_target(world, alice_client, vera_client):
    assert create(alice_client).status_code == 201
    response = vera_client.get(f"{URL}/chat/health")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready"
    assert [(t["name"], t["fqn"]) for t in body["targets"]] == [
        ("primary", "openai-main/gpt-4o"),
        ("cheap", "openai-main/gpt-4o-mini"),
    ]
    assert all(isinstance(t["state"], str) and t["state"] for t in body["targets"])
    assert_error(vera_client.get(f"{URL}/nothing/health"), 404, "NOT_FOUND")
