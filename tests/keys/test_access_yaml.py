"""Access rules as YAML: export in the contract's ``authz_rules`` shape, import
(application/yaml, text/yaml, JSON) that replaces everything or nothing, the
round trip, and ``manage.py apply_access_rules`` for GitOps."""

from __future__ import annotations

import io
import json

import pytest
import yaml
from django.core.management import CommandError, call_command

from audit.models import AuditRecord
from keys.models import AccessRule
from tests.conftest import assert_error, client_for
from tests.keys.conftest import (
    DECISIONS,
    RULES_YAML,
    effective,
    key_client,
    mint,
    put_rules_yaml,
    rule_rows,
)

URL = "/api/v1/orgs/acme/access-rules.yaml"


def export(client) -> str:
    response = client.get(URL)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/yaml")
    return response.content.decode()


def replaces(org) -> list[AuditRecord]:
    return list(
        AuditRecord.objects.filter(
            org=org, action="policy:manage", data__op="access_rules_replace"
        ).order_by("created_at")
    )


# --- export -------------------------------------------------------------------------------


def test_export_is_the_contract_shape(access_world, vera_client):
    document = yaml.safe_load(export(vera_client))
    assert list(document) == ["authz_rules"]
    assert document == yaml.safe_load(RULES_YAML)
    first = document["authz_rules"][0]
    assert list(first) == [
        "models",
        "description",
        "users",
    ]  # models first, empty subject lists left out
    assert document["authz_rules"][3] == {"models": ["env=prod"], "service_accounts": ["prod-bot"]}


@pytest.mark.parametrize("accept", ["application/yaml", "text/yaml", "application/json", "*/*"])
def test_export_whatever_the_client_accepts(access_world, alice_client, accept):
    response = alice_client.get(URL, HTTP_ACCEPT=accept)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/yaml")
    assert yaml.safe_load(response.content) == yaml.safe_load(RULES_YAML)
    # An import asking for YAML back is not refused either; results and errors stay JSON.
    put = alice_client.put(
        URL, response.content.decode(), content_type="application/yaml", HTTP_ACCEPT=accept
    )
    assert put.status_code == 200 and put.json()["count"] == 7
    bad = alice_client.put(
        URL, "authz_rules: 1\n", content_type="application/yaml", HTTP_ACCEPT=accept
    )
    assert "authz_rules" in assert_error(bad, 400, "VALIDATION_ERROR")["details"]


def test_export_of_no_rules(cast, alice_client):
    assert yaml.safe_load(export(alice_client)) == {"authz_rules": []}


def test_export_needs_authentication(cast, anon_client):
    assert_error(anon_client.get(URL), 401, "AUTHENTICATION_FAILED")


# --- import -------------------------------------------------------------------------------

NEW_RULES = {
    "authz_rules": [
        {"models": ["azure-prod/*"], "users": ["vera", "bob"]},
        {"models": ["env=staging", "local/phi-3"], "roles": ["member"], "description": "devs"},
    ]
}


@pytest.mark.parametrize(
    "content_type",
    ["application/yaml", "text/yaml", "application/yaml; charset=utf-8", "application/json"],
)
def test_put_replaces_every_rule(access_world, alice_client, content_type):
    old_ids = set(AccessRule.all_orgs.values_list("pk", flat=True))
    body = (
        json.dumps(NEW_RULES) if content_type == "application/json" else yaml.safe_dump(NEW_RULES)
    )
    response = put_rules_yaml(alice_client, body, content_type=content_type)
    assert response.status_code == 200, response.content
    result = response.json()
    assert result["count"] == 2 and [r["models"] for r in result["results"]] == [
        ["azure-prod/*"],
        ["env=staging", "local/phi-3"],
    ]
    assert rule_rows(access_world.cast.acme) == [
        (0, ["azure-prod/*"], ["bob", "vera"], [], [], []),
        (1, ["env=staging", "local/phi-3"], [], [], ["member"], []),
    ]
    assert not AccessRule.all_orgs.filter(pk__in=old_ids).exists()
    # Decisions follow at once.
    assert effective(alice_client, user="vera")["models"] == ["azure-prod/gpt-4o"]
    assert effective(alice_client, user="alice")["models"] == []


def test_put_of_an_empty_list_removes_every_rule(access_world, alice_client):
    response = put_rules_yaml(alice_client, "authz_rules: []\n")
    assert response.status_code == 200 and response.json() == {"count": 0, "results": []}
    assert not AccessRule.all_orgs.filter(org=access_world.cast.acme).exists()
    assert all(effective(alice_client, user=u)["models"] == [] for u in ("alice", "bob", "frank"))


def test_unsupported_media_type(access_world, alice_client):
    before = rule_rows(access_world.cast.acme)
    response = put_rules_yaml(alice_client, RULES_YAML, content_type="text/plain")
    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert rule_rows(access_world.cast.acme) == before


def test_round_trip_is_identical(access_world, alice_client):
    first = export(alice_client)
    assert put_rules_yaml(alice_client, first).status_code == 200
    assert export(alice_client) == first
    # The same through JSON, as a script would send it.
    response = alice_client.put(URL, yaml.safe_load(first), format="json")
    assert response.status_code == 200, response.content
    assert export(alice_client) == first
    assert effective(alice_client, user="erin")["models"] == sorted(DECISIONS["erin"])


def test_round_trip_survives_the_deletion_of_a_rules_only_subject(access_world, alice_client):
    # The team was the only subject of rule 1: the rule grants nothing any more,
    # and the exported document must still import.
    response = alice_client.delete(f"/api/v1/orgs/acme/teams/{access_world.team['id']}")
    assert response.status_code == 204, response.content
    first = export(alice_client)
    assert "ml-platform" not in first
    response = put_rules_yaml(alice_client, first)
    assert response.status_code == 200, response.content
    assert export(alice_client) == first
    assert effective(alice_client, user="erin")["models"] == [
        "vllm-staging/llama-3",
        "vllm-staging/mistral",
    ]


def test_replace_is_audited_with_before_and_after(access_world, alice_client, dave_client):
    before = yaml.safe_load(export(alice_client))["authz_rules"]
    response = put_rules_yaml(dave_client, yaml.safe_dump(NEW_RULES))
    assert response.status_code == 200, response.content
    record = replaces(access_world.cast.acme)[-1]
    assert record.actor_user == access_world.cast.dave and record.outcome == "success"
    assert record.target_type == "keys.accessrule"
    assert record.data["source"] == "api" and record.data["count"] == 2
    assert record.data["before"] == before
    assert record.data["after"] == [
        {"models": ["azure-prod/*"], "users": ["bob", "vera"]},
        {"models": ["env=staging", "local/phi-3"], "description": "devs", "roles": ["member"]},
    ]


GOOD = [
    "  - models: [local/*]\n    users: [bob]\n",
    "  - models: [env=prod]\n    roles: [viewer]\n",
]


def document(bad_rule: str) -> str:
    """Two good rules, then ``bad_rule`` at index 2."""
    return "authz_rules:\n" + "".join(GOOD) + bad_rule


@pytest.mark.parametrize(
    ("bad_rule", "field", "says"),
    [
        (
            "  - models: [local/*]\n    teams: [no-such-team]\n",
            "authz_rules[2].teams",
            "no-such-team",
        ),
        ("  - models: [local/*]\n    users: [nobody]\n", "authz_rules[2].users", "nobody"),
        (
            "  - models: [local/*]\n    users: [charlie]\n",
            "authz_rules[2].users",
            "charlie",
        ),  # globex's owner
        (
            "  - models: [local/*]\n    roles: [no-such-role]\n",
            "authz_rules[2].roles",
            "no-such-role",
        ),
        (
            "  - models: [local/*]\n    service_accounts: [ghost]\n",
            "authz_rules[2].service_accounts",
            "ghost",
        ),
        ("  - models: [gpt-4o]\n    users: [bob]\n", "authz_rules[2].models", "gpt-4o"),
        ("  - models: ['local/']\n    users: [bob]\n", "authz_rules[2].models", "local/"),
        ("  - users: [bob]\n", "authz_rules[2].models", "required"),
        ("  - models: []\n    users: [bob]\n", "authz_rules[2].models", "required"),
        ("  - models: local/*\n    users: [bob]\n", "authz_rules[2].models", "required"),
        (
            "  - models: [local/*]\n    users: [bob]\n    groups: [ml]\n",
            "authz_rules[2].groups",
            "unknown field",
        ),
        ("  - models: [local/*]\n    users: bob\n", "authz_rules[2].users", "list"),
        ("  - models: [local/*]\n", "authz_rules[2]", "at least one"),
        ("  - local/*\n", "authz_rules[2]", "mapping"),
    ],
    ids=[
        "unknown-team",
        "unknown-user",
        "other-org-member",
        "unknown-role",
        "unknown-sa",
        "bare-model",
        "empty-model-name",
        "missing-models",
        "empty-models",
        "models-not-a-list",
        "unknown-field",
        "users-not-a-list",
        "no-subject",
        "rule-not-a-mapping",
    ],
)
def test_one_bad_rule_changes_nothing_and_is_named(
    access_world, alice_client, bad_rule, field, says
):
    acme = access_world.cast.acme
    before, exported, audits = rule_rows(acme), export(alice_client), len(replaces(acme))
    ids = set(AccessRule.all_orgs.values_list("pk", flat=True))
    response = put_rules_yaml(alice_client, document(bad_rule))
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert set(error["details"]) == {field}, error
    assert says.lower() in " ".join(error["details"][field]).lower(), error
    assert rule_rows(acme) == before and export(alice_client) == exported
    assert set(AccessRule.all_orgs.values_list("pk", flat=True)) == ids
    assert len(replaces(acme)) == audits


def test_every_bad_rule_is_reported_at_once(access_world, alice_client):
    text = (
        "authz_rules:\n  - models: [local/*]\n    teams: [nope]\n"
        + GOOD[0]
        + "  - models: [bad]\n    users: [bob]\n"
    )
    error = assert_error(put_rules_yaml(alice_client, text), 400, "VALIDATION_ERROR")
    assert set(error["details"]) == {"authz_rules[0].teams", "authz_rules[2].models"}


@pytest.mark.parametrize(
    ("text", "content_type", "field"),
    [
        ("authz_rules: {models: [local/*]}\n", "application/yaml", "authz_rules"),
        ("- models: [local/*]\n  users: [bob]\n", "application/yaml", "authz_rules"),
        ("", "application/yaml", "authz_rules"),
        ("rules: []\n", "application/yaml", "authz_rules"),
        ('{"authz_rules": "all"}', "application/json", "authz_rules"),
        ('[{"models": ["local/*"]}]', "application/json", "authz_rules"),
    ],
    ids=[
        "rules-not-a-list",
        "top-level-list",
        "empty-body",
        "wrong-key",
        "json-not-a-list",
        "json-list",
    ],
)
def test_a_document_without_an_authz_rules_list_changes_nothing(
    access_world, alice_client, text, content_type, field
):
    before = rule_rows(access_world.cast.acme)
    error = assert_error(
        put_rules_yaml(alice_client, text, content_type=content_type), 400, "VALIDATION_ERROR"
    )
    assert field in error["details"], error
    assert rule_rows(access_world.cast.acme) == before


def test_malformed_yaml_names_the_line(access_world, alice_client):
    before = rule_rows(access_world.cast.acme)
    text = "authz_rules:\n  - models: [local/*]\n    users: [bob\n  - models: [x/y]\n"
    error = assert_error(put_rules_yaml(alice_client, text), 400, "VALIDATION_ERROR")
    assert "line 4" in error["message"], error
    assert "yaml" in error["details"]
    error = assert_error(
        put_rules_yaml(alice_client, "authz_rules:\n\t- bad tab\n"), 400, "VALIDATION_ERROR"
    )
    assert "line 2" in error["message"], error
    assert rule_rows(access_world.cast.acme) == before


def test_malformed_json_is_a_validation_error(access_world, alice_client):
    before = rule_rows(access_world.cast.acme)
    response = put_rules_yaml(alice_client, '{"authz_rules": [', content_type="application/json")
    assert_error(response, 400, "VALIDATION_ERROR")
    assert rule_rows(access_world.cast.acme) == before


def test_members_names_are_this_orgs_only(access_world, alice_client, charlie_client):
    # Charlie (another org) cannot be named in acme; acme's bob cannot be named in globex.
    error = assert_error(
        put_rules_yaml(alice_client, "authz_rules:\n  - models: ['*']\n    users: [charlie]\n"),
        400,
        "VALIDATION_ERROR",
    )
    assert error["details"] == {"authz_rules[0].users": ["Unknown user: charlie"]}
    error = assert_error(
        put_rules_yaml(
            charlie_client,
            "authz_rules:\n  - models: ['*']\n    users: [bob]\n    teams: [ml-platform]\n",
            org="globex",
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert set(error["details"]) == {"authz_rules[0].users", "authz_rules[0].teams"}
    assert not AccessRule.all_orgs.filter(org=access_world.cast.globex).exists()


def test_a_key_with_policy_manage_may_import(access_world, dave_client):
    body = mint(dave_client, permissions=["model:read", "policy:manage"])
    response = put_rules_yaml(key_client(body["key"]), yaml.safe_dump(NEW_RULES))
    assert response.status_code == 200, response.content
    record = replaces(access_world.cast.acme)[-1]
    assert (
        record.actor_label == f"dave via {body['prefix']}"
        and record.actor_user == access_world.cast.dave
    )
    reader = mint(dave_client, permissions=["model:read"])
    assert_error(put_rules_yaml(key_client(reader["key"]), RULES_YAML), 403, "PERMISSION_DENIED")
    assert len(rule_rows(access_world.cast.acme)) == 2


# --- manage.py apply_access_rules -------------------------------------------------------------


def apply(path, *args, org: str = "acme") -> str:
    out = io.StringIO()
    call_command("apply_access_rules", str(path), f"--org={org}", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def rules_file(tmp_path):
    def write(text: str, name: str = "rules.yaml"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def test_command_applies_a_file(access_world, alice_client, rules_file):
    output = apply(rules_file(yaml.safe_dump(NEW_RULES)))
    assert output.strip() == "applied 2 rule(s) to acme"
    assert rule_rows(access_world.cast.acme)[0] == (
        0,
        ["azure-prod/*"],
        ["bob", "vera"],
        [],
        [],
        [],
    )
    record = replaces(access_world.cast.acme)[-1]
    assert record.actor_user is None and record.actor_label == "operator"
    assert record.data["source"] == "command" and record.data["count"] == 2
    assert record.data["before"] == yaml.safe_load(RULES_YAML)["authz_rules"]
    # vera and bob by name, and bob's Member role the env=staging models.
    assert effective(alice_client, user="bob")["models"] == [
        "azure-prod/gpt-4o",
        "local/phi-3",
        "vllm-staging/llama-3",
        "vllm-staging/mistral",
    ]


def test_command_applies_an_exported_file_unchanged(access_world, alice_client, rules_file):
    exported = export(alice_client)
    assert apply(rules_file(exported)).strip() == "applied 7 rule(s) to acme"
    assert export(alice_client) == exported


def test_command_dry_run_validates_without_changing(access_world, rules_file):
    acme = access_world.cast.acme
    before, audits = rule_rows(acme), len(replaces(acme))
    assert apply(rules_file(yaml.safe_dump(NEW_RULES)), "--dry-run").strip() == "valid: 2 rule(s)"
    assert rule_rows(acme) == before and len(replaces(acme)) == audits
    with pytest.raises(CommandError) as raised:
        apply(rules_file(document("  - models: [local/*]\n    teams: [nope]\n")), "--dry-run")
    assert "authz_rules[2].teams" in str(raised.value) and "nope" in str(raised.value)
    assert rule_rows(acme) == before


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            document("  - models: [local/*]\n    teams: [nope]\n"),
            "authz_rules[2].teams: Unknown team: nope",
        ),
        (document("  - models: [gpt-4o]\n    users: [bob]\n"), "authz_rules[2].models"),
        ("authz_rules:\n  - models: [local/*]\n    users: [bob\n", "line 4"),
        ("authz_rules: nope\n", "authz_rules"),
    ],
    ids=["unknown-team", "bad-model", "malformed-yaml", "not-a-list"],
)
def test_command_refuses_a_bad_file_and_changes_nothing(access_world, rules_file, text, expected):
    acme = access_world.cast.acme
    before, audits = rule_rows(acme), len(replaces(acme))
    with pytest.raises(CommandError) as raised:
        apply(rules_file(text))
    assert expected in str(raised.value)
    assert rule_rows(acme) == before and len(replaces(acme)) == audits


def test_command_refuses_a_missing_or_unreadable_file(access_world, tmp_path, rules_file):
    before = rule_rows(access_world.cast.acme)
    with pytest.raises(CommandError) as raised:
        apply(tmp_path / "absent.yaml")
    assert "absent.yaml" in str(raised.value)
    binary = tmp_path / "rules.bin"
    binary.write_bytes(b"\xff\xfe\x00authz_rules")
    with pytest.raises(CommandError):
        apply(binary)
    assert rule_rows(access_world.cast.acme) == before


def test_command_refuses_an_unknown_org(access_world, rules_file):
    before = rule_rows(access_world.cast.acme)
    with pytest.raises(CommandError) as raised:
        apply(rules_file(RULES_YAML), org="no-such-org")
    assert "no-such-org" in str(raised.value)
    assert rule_rows(access_world.cast.acme) == before


def test_command_resolves_names_in_the_given_org_only(access_world, rules_file):
    # acme's team and members are unknown in globex; acme keeps its rules.
    before = rule_rows(access_world.cast.acme)
    with pytest.raises(CommandError) as raised:
        apply(rules_file(RULES_YAML), org="globex")
    message = str(raised.value)
    assert "authz_rules[0].users" in message and "authz_rules[1].teams" in message
    assert not AccessRule.all_orgs.filter(org=access_world.cast.globex).exists()
    assert rule_rows(access_world.cast.acme) == before
    assert yaml.safe_load(export_for(access_world.cast.charlie, "globex")) == {"authz_rules": []}


def export_for(user, org: str) -> str:
    response = client_for(user).get(f"/api/v1/orgs/{org}/access-rules.yaml")
    assert response.status_code == 200, response.content
    return response.content.decode()
