"""Model access rules: the decision table (users x teams x roles x service
accounts x tags x wildcards x exact FQNs x a key's own restriction), default
deny, and single rules through /access-rules (create, list, detail, delete)."""

from __future__ import annotations

import pytest

from audit.models import AuditRecord
from keys.models import AccessRule
from orgs.models import Membership, TeamMember
from tests.conftest import add_member, assert_error, client_for, make_user
from tests.keys.conftest import (
    AZURE,
    DECISIONS,
    ENABLED,
    GPT4O,
    LLAMA,
    MINI,
    MISTRAL,
    NOT_ENABLED,
    PHI,
    create_provider_account,
    create_service_account,
    create_team,
    effective,
    key_client,
    mint,
    put_rules_yaml,
    rule_rows,
)

USERS = sorted(p for p in DECISIONS if ":" not in p)
SERVICE_ACCOUNTS = sorted(p[3:] for p in DECISIONS if p.startswith("sa:"))


# --- the decision table -------------------------------------------------------------------


def test_the_table_has_allowed_and_denied_cells_of_every_kind():
    # Guards against a vacuous table: every kind of principal appears allowed and denied.
    kinds = {
        "user": USERS,
        "sa": [f"sa:{s}" for s in SERVICE_ACCOUNTS],
        "key": [p for p in DECISIONS if p[:4] == "key:"],
    }
    for kind, principals in kinds.items():
        rows = [DECISIONS[p] for p in principals]
        assert len(rows) >= 3 and any(rows) and not all(rows), kind
    assert all(NOT_ENABLED not in models for models in DECISIONS.values())


@pytest.mark.parametrize("principal", sorted(DECISIONS))
def test_access_decision_table(access_world, alice_client, principal):
    expected = DECISIONS[principal]
    if principal.startswith("key:"):
        got = effective(access_world.client(principal))["models"]
    elif principal.startswith("sa:"):
        got = effective(alice_client, service_account=principal[3:])
        assert got["service_account"] == principal[3:]
        got = got["models"]
    else:
        asked = effective(alice_client, user=principal)
        assert asked["user"] == principal
        got = asked["models"]
        # The member asking about themself gets the same answer.
        assert effective(access_world.client(principal))["models"] == got
    assert got == sorted(expected), principal
    if principal.startswith("key:"):
        return
    # The other direction agrees: ?model= names this principal for exactly these models.
    for fqn in [*ENABLED, NOT_ENABLED]:
        who = effective(alice_client, model=fqn)
        listed = (
            principal[3:] in who["service_accounts"]
            if principal.startswith("sa:")
            else principal in who["users"]
        )
        assert listed is (fqn in expected), (principal, fqn, who)


def test_who_may_use_each_model_is_exactly_the_table(access_world, vera_client):
    for fqn in [*ENABLED, NOT_ENABLED, "nowhere/model"]:
        who = effective(vera_client, model=fqn)
        assert who == {
            "model": fqn,
            "users": sorted(u for u in USERS if fqn in DECISIONS[u]),
            "service_accounts": sorted(s for s in SERVICE_ACCOUNTS if fqn in DECISIONS[f"sa:{s}"]),
        }, fqn


def test_a_model_enabled_on_no_account_is_never_allowed(access_world, alice_client):
    # frank's rule names openai-main/gpt-5 exactly and alice's Owner rule is '*'.
    assert effective(alice_client, model=NOT_ENABLED) == {
        "model": NOT_ENABLED,
        "users": [],
        "service_accounts": [],
    }
    # Once the account enables it, both rules grant it.
    accounts = alice_client.get("/api/v1/orgs/acme/provider-accounts").json()["results"]
    openai_main = next(a for a in accounts if a["name"] == "openai-main")
    response = alice_client.patch(
        f"/api/v1/orgs/acme/provider-accounts/{openai_main['id']}",
        {"models": ["gpt-4o", "gpt-4o-mini", "gpt-5"]},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert effective(alice_client, model=NOT_ENABLED)["users"] == ["alice", "frank"]
    assert effective(access_world.client("key:frank-gpt5"))["models"] == [NOT_ENABLED]


def test_no_rule_no_model(cast, catalog, alice_client, dave_client):
    assert AccessRule.all_orgs.count() == 0
    for client in (alice_client, dave_client):
        assert effective(client)["models"] == []
    for fqn in ENABLED:
        assert effective(alice_client, model=fqn) == {
            "model": fqn,
            "users": [],
            "service_accounts": [],
        }
    # An unrestricted Owner key is no exception.
    owner_key = mint(alice_client, permissions=["model:read", "policy:manage"])
    assert effective(key_client(owner_key["key"]))["models"] == []


def test_no_account_no_model(cast, alice_client):
    response = put_rules_yaml(alice_client, "authz_rules:\n  - models: ['*']\n    roles: [owner]\n")
    assert response.status_code == 200, response.content
    assert effective(alice_client)["models"] == []


def test_leaving_a_team_loses_its_models(access_world, alice_client):
    team_id = access_world.team["id"]
    removed = alice_client.delete(
        f"/api/v1/orgs/acme/teams/{team_id}/members/{access_world.cast.bob.pk}"
    )
    assert removed.status_code == 204, removed.content
    assert effective(alice_client, user="bob")["models"] == [MINI]
    assert "bob" not in effective(alice_client, model=LLAMA)["users"]
    # bob's narrowed key follows its owner.
    assert effective(access_world.client("key:bob-llama"))["models"] == []


def test_a_role_change_moves_the_role_rules(access_world, alice_client):
    vera = Membership.all_orgs.get(org=access_world.cast.acme, user=access_world.cast.vera)
    response = alice_client.patch(
        f"/api/v1/orgs/acme/members/{vera.pk}", {"role": "member"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert effective(alice_client, user="vera")["models"] == [MINI]
    who = effective(alice_client, model=MISTRAL)["users"]
    assert "vera" not in who and "erin" in who


def test_retagging_an_account_moves_its_models_between_tag_selectors(access_world, alice_client):
    accounts = alice_client.get("/api/v1/orgs/acme/provider-accounts").json()["results"]
    staging = next(a for a in accounts if a["name"] == "vllm-staging")
    response = alice_client.patch(
        f"/api/v1/orgs/acme/provider-accounts/{staging['id']}",
        {"tags": {"env": "prod"}},
        format="json",
    )
    assert response.status_code == 200, response.content
    # vera had it only through env=staging; prod-bot gains it through env=prod.
    assert effective(alice_client, user="vera")["models"] == []
    assert effective(alice_client, service_account="prod-bot")["models"] == sorted(
        {GPT4O, MINI, AZURE, LLAMA, MISTRAL}
    )
    # erin keeps llama-3 through the team's exact FQN.
    assert effective(alice_client, user="erin")["models"] == [PHI, LLAMA]


def test_a_custom_role_is_a_rule_subject(cast, catalog, alice_client):
    role = alice_client.post(
        "/api/v1/orgs/acme/roles",
        {"slug": "ml-eng", "name": "ML eng", "permissions": ["model:read"]},
        format="json",
    )
    assert role.status_code == 201, role.content
    mia = make_user("mia")
    membership = add_member(cast.acme, mia, "viewer")
    changed = alice_client.patch(
        f"/api/v1/orgs/acme/members/{membership.pk}", {"role": "ml-eng"}, format="json"
    )
    assert changed.status_code == 200, changed.content
    response = put_rules_yaml(
        alice_client, "authz_rules:\n  - models: [azure-prod/*]\n    roles: [ml-eng]\n"
    )
    assert response.status_code == 200, response.content
    assert effective(client_for(mia))["models"] == [AZURE]
    assert effective(alice_client, model=AZURE)["users"] == ["mia"]
    assert effective(alice_client, user="vera")["models"] == []


def test_a_disabled_service_account_may_use_nothing_until_enabled(access_world, alice_client):
    off_bot = access_world.service_accounts["off-bot"]
    assert effective(alice_client, service_account="off-bot")["models"] == []
    assert effective(alice_client, service_account=off_bot["id"])["models"] == []
    enabled = alice_client.patch(
        f"/api/v1/orgs/acme/service-accounts/{off_bot['id']}", {"disabled": False}, format="json"
    )
    assert enabled.status_code == 200, enabled.content
    assert effective(alice_client, service_account="off-bot")["models"] == ENABLED
    assert all(
        "off-bot" in effective(alice_client, model=fqn)["service_accounts"] for fqn in ENABLED
    )


def test_a_deactivated_user_may_use_nothing(access_world, alice_client):
    frank = access_world.users["frank"]
    frank.is_active = False
    frank.save(update_fields=["is_active"])
    assert effective(alice_client, user="frank")["models"] == []
    assert "frank" not in effective(alice_client, model=GPT4O)["users"]
    assert_error(
        access_world.client("key:frank-openai").get("/api/v1/orgs/acme/access-rules/effective"),
        401,
        "AUTHENTICATION_FAILED",
    )


@pytest.mark.parametrize("how", ["removed", "left"])
def test_a_member_who_leaves_drops_out_of_the_rules_for_good(cast, catalog, alice_client, how):
    response = put_rules_yaml(
        alice_client,
        "authz_rules:\n  - models: ['*']\n    users: [bob, vera]\n"
        "  - models: [local/*]\n    users: [bob]\n",
    )
    assert response.status_code == 200, response.content
    bob = Membership.all_orgs.get(org=cast.acme, user=cast.bob)
    client = alice_client if how == "removed" else client_for(cast.bob)
    assert client.delete(f"/api/v1/orgs/acme/members/{bob.pk}").status_code == 204
    assert rule_rows(cast.acme) == [
        (0, ["*"], ["vera"], [], [], []),
        (1, ["local/*"], [], [], [], []),
    ]
    # The export names current members only, and imports back unchanged.
    exported = alice_client.get("/api/v1/orgs/acme/access-rules.yaml").content.decode()
    assert "bob" not in exported
    assert put_rules_yaml(alice_client, exported).status_code == 200
    assert alice_client.get("/api/v1/orgs/acme/access-rules.yaml").content.decode() == exported
    # Rejoining (here as a Viewer) brings none of the old grants back.
    add_member(cast.acme, cast.bob, "viewer")
    assert effective(alice_client, user="bob")["models"] == []
    assert effective(alice_client, user="vera")["models"] == ENABLED


def test_a_tag_selector_value_may_contain_a_slash(cast, catalog, alice_client):
    # 'pool=gpu/a100' passes validation as a tag selector, so it must match as one.
    create_provider_account(alice_client, "gpu", ["llama-70b"], {"pool": "gpu/a100"})
    response = put_rules_yaml(
        alice_client, "authz_rules:\n  - models: [pool=gpu/a100]\n    users: [bob]\n"
    )
    assert response.status_code == 200, response.content
    assert effective(alice_client, user="bob")["models"] == ["gpu/llama-70b"]


def test_an_api_key_narrowed_to_one_fqn(access_world, alice_client):
    # alice may use everything; her key restricted to one FQN sees only that one.
    body = mint(alice_client, permissions=["model:read"], models=[GPT4O])
    assert body["models"] == [GPT4O]
    assert effective(key_client(body["key"]))["models"] == [GPT4O]
    # The restriction narrows only the key: asking about alice by name is unchanged.
    assert effective(key_client(body["key"]), user="alice")["models"] == ENABLED


# --- single rules -----------------------------------------------------------------------


RULE = {
    "models": ["vllm-staging/*", "env=prod"],
    "teams": ["ml-platform"],
    "users": ["vera"],
    "description": "staging for ML",
}
ALL_BUT_LOCAL = sorted({GPT4O, MINI, AZURE, LLAMA, MISTRAL})  # what RULE grants


@pytest.fixture
def ml_team(cast, catalog, alice_client):
    return create_team(alice_client, "ml-platform", [cast.bob])


def test_admin_creates_a_rule(cast, ml_team, dave_client):
    response = dave_client.post("/api/v1/orgs/acme/access-rules", RULE, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert {
        k: body[k]
        for k in (
            "position",
            "description",
            "models",
            "users",
            "teams",
            "roles",
            "service_accounts",
        )
    } == {
        "position": 0,
        "description": "staging for ML",
        "models": ["vllm-staging/*", "env=prod"],
        "users": ["vera"],
        "teams": ["ml-platform"],
        "roles": [],
        "service_accounts": [],
    }
    assert rule_rows(cast.acme) == [
        (0, ["vllm-staging/*", "env=prod"], ["vera"], ["ml-platform"], [], [])
    ]
    record = AuditRecord.objects.get(action="policy:manage", data__op="access_rule_create")
    assert (
        record.actor_user == cast.dave and record.org == cast.acme and record.outcome == "success"
    )
    assert record.target_id == body["id"] and record.data["models"] == RULE["models"]
    # It takes effect at once, and the next rule is appended after it.
    assert effective(dave_client, user="bob")["models"] == ALL_BUT_LOCAL
    second = dave_client.post(
        "/api/v1/orgs/acme/access-rules",
        {"models": ["local/*"], "roles": ["viewer"]},
        format="json",
    )
    assert second.status_code == 201 and second.json()["position"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**RULE, "teams": ["no-such-team"]}, "teams"),
        ({**RULE, "users": ["nobody"]}, "users"),
        ({**RULE, "users": ["charlie"]}, "users"),  # a member of another org
        ({**RULE, "roles": ["no-such-role"]}, "roles"),
        ({**RULE, "service_accounts": ["ghost-bot"]}, "service_accounts"),
        ({**RULE, "models": ["gpt-4o"]}, "models"),
        ({**RULE, "models": ["Open AI/gpt-4o"]}, "models"),
        ({**RULE, "models": []}, "models"),
        ({key: v for key, v in RULE.items() if key != "models"}, "models"),
        ({**RULE, "users": "vera"}, "users"),
    ],
    ids=[
        "unknown-team",
        "unknown-user",
        "other-org-user",
        "unknown-role",
        "unknown-sa",
        "bare-model",
        "bad-account",
        "empty-models",
        "missing-models",
        "users-not-a-list",
    ],
)
def test_an_invalid_rule_is_refused_naming_the_field(cast, ml_team, dave_client, body, field):
    response = dave_client.post("/api/v1/orgs/acme/access-rules", body, format="json")
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert set(error["details"]) == {field}, error
    assert AccessRule.all_orgs.count() == 0
    assert not AuditRecord.objects.filter(action="policy:manage", outcome="success").exists()


def test_a_rule_without_subjects_or_with_unknown_fields_is_refused(cast, ml_team, dave_client):
    for body in ({"models": ["local/*"]}, {**RULE, "groups": ["ml"]}, ["not", "an", "object"]):
        response = dave_client.post("/api/v1/orgs/acme/access-rules", body, format="json")
        error = assert_error(response, 400, "VALIDATION_ERROR")
        assert error["message"]
    assert AccessRule.all_orgs.count() == 0


def test_any_member_with_model_read_lists_and_reads_rules(cast, ml_team, alice_client, vera_client):
    first = alice_client.post("/api/v1/orgs/acme/access-rules", RULE, format="json").json()
    second = alice_client.post(
        "/api/v1/orgs/acme/access-rules", {"models": ["*"], "roles": ["owner"]}, format="json"
    ).json()
    listing = vera_client.get("/api/v1/orgs/acme/access-rules")
    assert listing.status_code == 200, listing.content
    body = listing.json()
    assert body["count"] == 2 and [r["id"] for r in body["results"]] == [first["id"], second["id"]]
    detail = vera_client.get(f"/api/v1/orgs/acme/access-rules/{second['id']}")
    assert (
        detail.status_code == 200
        and detail.json()["roles"] == ["owner"]
        and detail.json()["models"] == ["*"]
    )
    assert_error(
        vera_client.get("/api/v1/orgs/acme/access-rules/00000000-0000-0000-0000-000000000000"),
        404,
        "NOT_FOUND",
    )


def test_reading_rules_needs_model_read(cast, ml_team, alice_client):
    rule = alice_client.post("/api/v1/orgs/acme/access-rules", RULE, format="json").json()
    made = alice_client.post(
        "/api/v1/orgs/acme/roles",
        {"slug": "counter", "name": "Counter", "permissions": ["usage:view"]},
        format="json",
    )
    assert made.status_code == 201, made.content
    mia = make_user("mia")
    membership = add_member(cast.acme, mia, "viewer")
    assert (
        alice_client.patch(
            f"/api/v1/orgs/acme/members/{membership.pk}", {"role": "counter"}, format="json"
        ).status_code
        == 200
    )
    mia_client = client_for(mia)
    for url in (
        "/api/v1/orgs/acme/access-rules",
        f"/api/v1/orgs/acme/access-rules/{rule['id']}",
        "/api/v1/orgs/acme/access-rules.yaml",
        "/api/v1/orgs/acme/access-rules/effective",
    ):
        error = assert_error(mia_client.get(url), 403, "PERMISSION_DENIED")
        assert "model:read" in error["message"]
    assert (
        AuditRecord.objects.filter(actor_user=mia, outcome="denied", action="model:read").count()
        == 4
    )


def test_admin_deletes_a_rule(cast, ml_team, alice_client, dave_client):
    rule = alice_client.post("/api/v1/orgs/acme/access-rules", RULE, format="json").json()
    assert effective(dave_client, user="vera")["models"] == ALL_BUT_LOCAL
    response = dave_client.delete(f"/api/v1/orgs/acme/access-rules/{rule['id']}")
    assert response.status_code == 204, response.content
    assert not AccessRule.all_orgs.filter(pk=rule["id"]).exists()
    record = AuditRecord.objects.get(action="policy:manage", data__op="access_rule_delete")
    assert record.actor_user == cast.dave and record.target_id == rule["id"]
    assert record.data["models"] == RULE["models"]
    assert effective(dave_client, user="vera")["models"] == []
    assert_error(
        dave_client.delete(f"/api/v1/orgs/acme/access-rules/{rule['id']}"), 404, "NOT_FOUND"
    )


@pytest.mark.parametrize("who", ["bob", "vera"])
def test_members_and_viewers_cannot_change_rules(cast, ml_team, alice_client, who):
    rule = alice_client.post("/api/v1/orgs/acme/access-rules", RULE, format="json").json()
    before = rule_rows(cast.acme)
    client = client_for(getattr(cast, who))
    attempts = [
        client.post(
            "/api/v1/orgs/acme/access-rules", {"models": ["*"], "users": [who]}, format="json"
        ),
        client.delete(f"/api/v1/orgs/acme/access-rules/{rule['id']}"),
        put_rules_yaml(client, f"authz_rules:\n  - models: ['*']\n    users: [{who}]\n"),
    ]
    for response in attempts:
        error = assert_error(response, 403, "PERMISSION_DENIED")
        assert "policy:manage" in error["message"]
    assert rule_rows(cast.acme) == before
    denied = AuditRecord.objects.filter(actor_user=getattr(cast, who), outcome="denied")
    assert denied.count() == 3 and set(denied.values_list("action", flat=True)) == {"policy:manage"}
    assert effective(alice_client, user=who)["models"] == ALL_BUT_LOCAL


def test_a_key_writes_rules_only_with_policy_manage(cast, ml_team, dave_client):
    reader = mint(dave_client, permissions=["model:read"])
    writer = mint(dave_client, permissions=["model:read", "policy:manage"])
    assert_error(
        key_client(reader["key"]).post("/api/v1/orgs/acme/access-rules", RULE, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert AccessRule.all_orgs.count() == 0
    response = key_client(writer["key"]).post("/api/v1/orgs/acme/access-rules", RULE, format="json")
    assert response.status_code == 201, response.content
    record = AuditRecord.objects.get(action="policy:manage", data__op="access_rule_create")
    assert record.actor_label == f"dave via {writer['prefix']}"


def test_rules_reference_this_orgs_subjects_only(cast, ml_team, alice_client, charlie_client):
    create_team(charlie_client, "g-team", org="globex")
    create_service_account(charlie_client, "g-bot", "member", org="globex")
    for body, field in (
        ({"models": ["*"], "teams": ["g-team"]}, "teams"),
        ({"models": ["*"], "service_accounts": ["g-bot"]}, "service_accounts"),
    ):
        error = assert_error(
            alice_client.post("/api/v1/orgs/acme/access-rules", body, format="json"),
            400,
            "VALIDATION_ERROR",
        )
        assert set(error["details"]) == {field}
    assert AccessRule.all_orgs.count() == 0


def test_unauthenticated_is_401(anon_client, cast):
    for method, url in (
        ("get", "/api/v1/orgs/acme/access-rules"),
        ("post", "/api/v1/orgs/acme/access-rules"),
        ("get", "/api/v1/orgs/acme/access-rules.yaml"),
        ("get", "/api/v1/orgs/acme/access-rules/effective"),
    ):
        assert_error(getattr(anon_client, method)(url), 401, "AUTHENTICATION_FAILED")
    assert not TeamMember.all_orgs.exists() and AccessRule.all_orgs.count() == 0
