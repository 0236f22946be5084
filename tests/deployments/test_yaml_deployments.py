"""Deployments as YAML: ``deployments.yaml`` export and all-or-nothing import, and the
``deployments:`` section of the access-rules document (one transaction with the rules)."""

from __future__ import annotations

import io

import pytest
import yaml
from django.core.management import CommandError, call_command

from audit.models import AuditRecord
from deployments.models import Deployment, DeploymentVersion
from keys.models import AccessRule
from tests.conftest import assert_error
from tests.deployments.mgmt_fixtures import CHAT, LAUNCHED, create
from tests.keys.conftest import key_client, mint

YAML_URL = "/api/v1/orgs/acme/deployments.yaml"
RULES_URL = "/api/v1/orgs/acme/access-rules.yaml"

DOCUMENT = """\
deployments:
  - name: chat
    description: Chat for everyone
    strategy: priority
    targets:
      - {name: primary, account: openai-main, model: gpt-4o}
      - {name: cheap, account: openai-main, model: gpt-4o-mini, priority: 1}
  - name: bulk
    strategy: weighted
    targets:
      - {name: a, account: openai-main, model: gpt-4o-mini, weight: 3}
      - {name: b, account: cheap-llm, model: llama-3, weight: 1}
"""


def put(client, text: str, url: str = YAML_URL):
    return client.put(url, text, content_type="application/yaml")


def state(org) -> dict[str, tuple[int, str]]:
    return {
        d.name: (d.version, d.config["strategy"])
        for d in Deployment.all_orgs.filter(org=org).order_by("name")
    }


def test_export_is_a_deployments_document_that_imports_back_unchanged(
    world, alice_client, vera_client
):
    assert create(alice_client).status_code == 201
    response = vera_client.get(YAML_URL)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/yaml")
    document = yaml.safe_load(response.content)
    assert list(document) == ["deployments"]
    (entry,) = document["deployments"]
    assert list(entry)[:3] == ["name", "description", "strategy"]
    assert entry["targets"][1] == {
        "name": "cheap",
        "account": "openai-main",
        "model": "gpt-4o-mini",
        "weight": 1.0,
        "priority": 1,
        "timeout_seconds": 30.0,
        "requires_access": False,
    }
    result = put(alice_client, response.content.decode())
    assert result.status_code == 200, result.content
    assert result.json() | {"results": None} == {
        "created": [],
        "updated": [],
        "deleted": [],
        "results": None,
    }
    assert DeploymentVersion.all_orgs.count() == 1


def test_import_creates_updates_and_deletes_to_match(world, alice_client):
    assert create(alice_client, CHAT, name="old").status_code == 201
    assert create(alice_client).status_code == 201
    text = DOCUMENT.replace("model: gpt-4o-mini, priority: 1", "model: gpt-4o-mini, priority: 2")
    response = put(alice_client, text)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["created"], body["updated"], body["deleted"]) == (["bulk"], ["chat"], ["old"])
    assert [d["name"] for d in body["results"]] == ["bulk", "chat"]
    assert state(world.cast.acme) == {"bulk": (1, "weighted"), "chat": (2, "priority")}
    imported = AuditRecord.objects.filter(data__source="yaml").order_by("seq")
    assert [(r.action, r.data["name"]) for r in imported] == [
        ("deployment:delete", "old"),
        ("deployment:update", "chat"),
        ("deployment:create", "bulk"),
    ]
    update = imported[1]
    assert update.data["before"]["config"]["targets"][1]["priority"] == 1
    assert update.data["after"]["config"]["targets"][1]["priority"] == 2


def test_import_is_all_or_nothing_with_errors_named_by_path(world, alice_client):
    assert create(alice_client).status_code == 201
    text = DOCUMENT.replace("weight: 3}", "weight: -1}").replace(
        "priority: 1}", "priority: 1, colour: red}"
    )
    error = assert_error(put(alice_client, text), 400, "VALIDATION_ERROR")
    assert error["details"] == {
        "deployments[0].targets[1].colour": ["Unknown field."],
        "deployments[1].targets[0].weight": ["Must be a number from 0 to 1e+06."],
    }
    assert state(world.cast.acme) == {"chat": (1, "priority")}
    # Another org's account: 404 naming the path; still nothing changed.
    text = DOCUMENT.replace("account: cheap-llm", "account: globex-ai")
    error = assert_error(put(alice_client, text), 404, "NOT_FOUND")
    assert error["details"] == {"deployments[1].targets[1].account": ["No such provider account."]}
    assert state(world.cast.acme) == {"chat": (1, "priority")}


def test_import_refuses_duplicates_cycles_and_unknown_fields(world, alice_client):
    text = DOCUMENT.replace("name: bulk", "name: chat").replace(
        "account: cheap-llm", "account: deployment"
    )
    text += "extra: 1\n"
    error = assert_error(put(alice_client, text), 400, "VALIDATION_ERROR")
    assert error["details"] == {"extra": ["Unknown field."]}
    error = assert_error(put(alice_client, text.replace("extra: 1\n", "")), 400, "VALIDATION_ERROR")
    assert error["details"] == {
        "deployments[1].name": ["Another deployment is named 'chat'."],
        "deployments[1].targets[1].account": ["A deployment cannot target a deployment."],
    }
    assert_error(put(alice_client, "deployments: {}\n"), 400, "VALIDATION_ERROR")
    assert_error(put(alice_client, "deployments: [\n"), 400, "VALIDATION_ERROR")
    assert not Deployment.all_orgs.exists()


def test_import_needs_the_permission_for_each_kind_of_change(world, alice_client):
    assert create(alice_client).status_code == 201
    creator = key_client(
        mint(alice_client, permissions=["deployment:view", "deployment:create"])["key"]
    )
    # Adding bulk is a create; dropping nothing else, keeping chat as it is.
    keep_chat = DOCUMENT
    assert put(creator, keep_chat).status_code == 200
    assert set(state(world.cast.acme)) == {"bulk", "chat"}
    # Removing chat is a delete: refused, nothing changed.
    only_bulk = "deployments:\n  - name: bulk\n" + DOCUMENT.split("  - name: bulk\n", 1)[1]
    error = assert_error(put(creator, only_bulk), 403, "PERMISSION_DENIED")
    assert "deployment:delete" in error["message"]
    assert set(state(world.cast.acme)) == {"bulk", "chat"}
    viewer = key_client(mint(alice_client, permissions=["model:read"])["key"])
    assert_error(put(viewer, DOCUMENT), 403, "PERMISSION_DENIED")


def test_import_starts_new_launched_deployments_and_stops_deleted_ones(
    world, alice_client, test_launcher, django_capture_on_commit_callbacks
):
    launched = yaml.safe_dump({"deployments": [LAUNCHED]})
    with django_capture_on_commit_callbacks(execute=True):
        assert put(alice_client, launched).status_code == 200
    row = Deployment.all_orgs.get(name="local-llama")
    assert row.status == "ready" and row.launcher_state["base_url"]
    assert [c[0] for c in test_launcher.calls] == ["start"]
    with django_capture_on_commit_callbacks(execute=True):
        assert put(alice_client, "deployments: []\n").status_code == 200
    assert test_launcher.calls[-1] == ("stop", str(row.pk), row.launcher_state)
    assert not Deployment.all_orgs.exists()


def test_a_launcher_failing_during_an_import_undoes_everything(world, alice_client, test_launcher):
    second = dict(LAUNCHED, name="second")
    document = yaml.safe_dump({"deployments": [LAUNCHED, second]})
    # The first start works, the second fails: the first endpoint is stopped again.
    original = test_launcher.start
    starts = []

    def start(deployment_id, spec):
        starts.append(deployment_id)
        if len(starts) == 2:
            raise RuntimeError("quota exhausted")
        return original(deployment_id, spec)

    test_launcher.start = start
    error = assert_error(put(alice_client, document), 502, "UPSTREAM_ERROR")
    assert "quota exhausted" in error["message"]
    assert not Deployment.all_orgs.exists()
    assert [c[0] for c in test_launcher.calls] == ["start", "stop"]
    assert test_launcher.calls[1][1] == starts[0]


# --- the deployments: section of the access-rules document ----------------------------------

RULES_WITH_DEPLOYMENTS = (
    """\
authz_rules:
  - models: [deployment/chat]
    users: [bob]
"""
    + DOCUMENT
)


def test_rules_may_name_deployments_defined_in_the_same_file(world, alice_client):
    response = put(alice_client, RULES_WITH_DEPLOYMENTS, RULES_URL)
    assert response.status_code == 200, response.content
    assert set(state(world.cast.acme)) == {"bulk", "chat"}
    models = alice_client.get("/api/v1/orgs/acme/access-rules/effective", {"user": "bob"})
    assert models.json()["models"] == ["deployment/chat"]
    record = AuditRecord.objects.get(action="policy:manage", data__op="access_rules_replace")
    assert sorted(record.data["deployments"]["created"]) == ["bulk", "chat"]
    # The export carries both sections; imported back, nothing changes.
    exported = alice_client.get(RULES_URL).content.decode()
    assert list(yaml.safe_load(exported)) == ["authz_rules", "deployments"]
    assert put(alice_client, exported, RULES_URL).status_code == 200
    assert state(world.cast.acme) == {"bulk": (1, "weighted"), "chat": (1, "priority")}


def test_without_the_section_deployments_are_untouched(world, alice_client):
    assert create(alice_client).status_code == 201
    response = put(alice_client, "authz_rules:\n  - models: ['*']\n    users: [alice]\n", RULES_URL)
    assert response.status_code == 200, response.content
    assert state(world.cast.acme) == {"chat": (1, "priority")}


def test_an_error_in_either_section_changes_neither(world, alice_client):
    rules_before = AccessRule.all_orgs.count()
    bad_deployment = RULES_WITH_DEPLOYMENTS.replace("weight: 3}", "weight: 0}").replace(
        "weight: 1}", "weight: 0}"
    )
    bad_rule = RULES_WITH_DEPLOYMENTS.replace("users: [bob]", "users: [nobody]")
    error = assert_error(put(alice_client, bad_deployment, RULES_URL), 400, "VALIDATION_ERROR")
    assert error["details"] == {
        "deployments[1].targets": ["The weights sum to zero: no target would ever be chosen."]
    }
    error = assert_error(
        put(alice_client, bad_rule.replace("weight: 3}", "weight: x}"), RULES_URL),
        400,
        "VALIDATION_ERROR",
    )
    assert set(error["details"]) == {"authz_rules[0].users", "deployments[1].targets[0].weight"}
    assert not Deployment.all_orgs.exists()
    assert AccessRule.all_orgs.count() == rules_before


def test_the_section_needs_the_deployment_permissions_too(world, alice_client):
    policy_only = key_client(mint(alice_client, permissions=["policy:manage", "model:read"])["key"])
    error = assert_error(
        put(policy_only, RULES_WITH_DEPLOYMENTS, RULES_URL), 403, "PERMISSION_DENIED"
    )
    assert "deployment:create" in error["message"]
    assert not Deployment.all_orgs.exists()
    assert not AccessRule.all_orgs.filter(model_patterns=["deployment/chat"]).exists()


def test_the_rules_export_shows_deployments_only_to_who_may_see_them(world, alice_client):
    assert create(alice_client).status_code == 201
    rules_reader = key_client(mint(alice_client, permissions=["model:read"])["key"])
    assert list(yaml.safe_load(rules_reader.get(RULES_URL).content)) == ["authz_rules"]
    both = key_client(mint(alice_client, permissions=["model:read", "deployment:view"])["key"])
    document = yaml.safe_load(both.get(RULES_URL).content)
    assert [d["name"] for d in document["deployments"]] == ["chat"]


def test_the_command_applies_the_section_and_refuses_routing_it_cannot_vouch_for(
    world, alice_client, tmp_path
):
    def apply(text: str, *args: str) -> str:
        path = tmp_path / "rules.yaml"
        path.write_text(text)
        out = io.StringIO()
        call_command("apply_access_rules", str(path), "--org=acme", *args, stdout=out)
        return out.getvalue()

    assert create(alice_client).status_code == 201
    exported = alice_client.get(RULES_URL).content.decode()
    # An unchanged section needs no routing check: the export applies as it is.
    assert "applied" in apply(exported)
    assert "'created': []" in apply(exported, "--dry-run")
    # The operator is no member whose model access the rules decide: it cannot vouch
    # for a new route to a provider's model (a clean error, nothing changed).
    with pytest.raises(CommandError) as refused:
        apply(RULES_WITH_DEPLOYMENTS, "--dry-run")
    assert "cannot route a deployment" in str(refused.value)
    with pytest.raises(CommandError):
        apply(RULES_WITH_DEPLOYMENTS)
    assert state(world.cast.acme) == {"chat": (1, "priority")}
