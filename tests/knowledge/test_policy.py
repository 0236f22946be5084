"""Who may see, search and add to which knowledge base: permission plus access-rule
grant, default deny, and nothing across orgs (``knowledge.policy``)."""

from __future__ import annotations

import pytest
import yaml

from keys import access_rules
from knowledge import policy
from knowledge.models import KnowledgeBase
from orgs.access import resolve_member
from orgs.models import Membership
from orgs.scoping import org_scope
from tests.conftest import assert_error, client_for
from tests.deployments.mgmt_fixtures import grant
from tests.keys.conftest import allow_private_upstream, create_provider_account, create_team

URL = "/api/v1/orgs/acme/knowledge-bases"
MODEL = "openai-main/text-embed"


@pytest.fixture
def acme(cast, alice_client, charlie_client):
    allow_private_upstream(cast.acme)
    allow_private_upstream(cast.globex)
    create_provider_account(alice_client, "openai-main", ["text-embed", "gpt-4o"])
    create_provider_account(charlie_client, "globex-ai", ["text-embed"], org="globex")
    grant(alice_client, ["openai-main/*"], ["alice", "dave"])
    grant(charlie_client, ["globex-ai/*"], ["charlie"], org="globex")
    return cast


def create(client, name="handbook", model=MODEL, org="acme", **fields):
    return client.post(
        f"/api/v1/orgs/{org}/knowledge-bases",
        {"name": name, "embedding_model": model, **fields},
        format="json",
    )


def names(client, org="acme") -> list[str]:
    response = client.get(f"/api/v1/orgs/{org}/knowledge-bases")
    assert response.status_code == 200, response.content
    return [kb["name"] for kb in response.json()["results"]]


def rules_yaml(client) -> dict:
    response = client.get(f"{URL.rsplit('/', 1)[0]}/access-rules.yaml")
    assert response.status_code == 200, response.content
    return yaml.safe_load(response.content)


def put_rules(client, document: dict):
    return client.put(
        "/api/v1/orgs/acme/access-rules.yaml",
        yaml.safe_dump(document),
        content_type="application/yaml",
    )


def searchable(org, user) -> list[str]:
    with org_scope(org):
        return policy.searchable(resolve_member(org, user))


def test_the_creator_is_granted_the_new_collection_and_nobody_else(acme, alice_client):
    assert create(alice_client).status_code == 201
    assert searchable(acme.acme, acme.alice) == ["handbook"]
    # dave is an admin (a manager): he sees it listed, but may not search it.
    assert searchable(acme.acme, acme.dave) == []
    assert "handbook" in names(client_for(acme.dave))
    # bob is a member with knowledge_base:view and no grant: it is not even listed.
    assert names(client_for(acme.bob)) == []
    assert_error(client_for(acme.bob).get(f"{URL}/handbook"), 404, "NOT_FOUND")
    rule = [r for r in rules_yaml(alice_client)["authz_rules"] if "knowledge_bases" in r]
    assert rule == [
        {
            "knowledge_bases": ["handbook"],
            "description": "Creator of knowledge base handbook",
            "users": ["alice"],
        }
    ]


def test_grants_by_team_role_and_prefix(acme, alice_client):
    for name in ("support-eu", "support-us", "legal"):
        assert create(alice_client, name).status_code == 201
    create_team(alice_client, "helpdesk", members=[acme.bob])
    document = rules_yaml(alice_client)
    document["authz_rules"] += [
        {"knowledge_bases": ["support-*"], "teams": ["helpdesk"]},
        {"knowledge_bases": ["legal"], "roles": ["viewer"]},
    ]
    assert put_rules(alice_client, document).status_code == 200
    assert searchable(acme.acme, acme.bob) == ["support-eu", "support-us"]
    assert names(client_for(acme.bob)) == ["support-eu", "support-us"]
    assert searchable(acme.acme, acme.vera) == ["legal"]
    # A collection created later under a granted prefix is granted too.
    assert create(alice_client, "support-apac").status_code == 201
    assert "support-apac" in searchable(acme.acme, acme.bob)


def test_no_view_permission_no_search_even_with_a_grant(acme, alice_client):
    assert create(alice_client).status_code == 201
    custom = alice_client.post(
        "/api/v1/orgs/acme/roles",
        {"name": "Uploader", "permissions": ["knowledge_base:add_data"]},
        format="json",
    )
    assert custom.status_code == 201, custom.content
    with org_scope(acme.acme):
        membership = Membership.objects.get(user=acme.bob)
    changed = alice_client.patch(
        f"/api/v1/orgs/acme/members/{membership.pk}", {"role": custom.json()["id"]}, format="json"
    )
    assert changed.status_code == 200, changed.content
    document = rules_yaml(alice_client)
    document["authz_rules"].append({"knowledge_bases": ["*"], "users": ["bob"]})
    assert put_rules(alice_client, document).status_code == 200
    assert searchable(acme.acme, acme.bob) == []
    with org_scope(acme.acme):
        access = resolve_member(acme.acme, acme.bob)
        kb = KnowledgeBase.objects.get(name="handbook")
        policy.require_add_data(access, kb)  # granted and permitted: no error
        with pytest.raises(Exception) as denied:
            policy.require_search(access, kb)
    assert "knowledge_base:view" in str(denied.value)


def test_collections_never_cross_orgs(acme, alice_client, charlie_client):
    assert create(alice_client).status_code == 201
    assert create(charlie_client, model="globex-ai/text-embed", org="globex").status_code == 201
    # Same name in both orgs: each sees its own; a path naming the other org is 404.
    assert names(charlie_client, org="globex") == ["handbook"]
    assert_error(charlie_client.get(f"{URL}/handbook"), 404, "NOT_FOUND")
    assert_error(
        alice_client.delete("/api/v1/orgs/globex/knowledge-bases/handbook"), 404, "NOT_FOUND"
    )
    with org_scope(acme.globex):
        assert KnowledgeBase.objects.get(name="handbook").embedding_model == "globex-ai/text-embed"
    # A rule of Acme granting '*' never reaches Globex's collection.
    assert searchable(acme.acme, acme.alice) == ["handbook"]
    assert searchable(acme.globex, acme.charlie) == ["handbook"]


def test_the_embedding_model_must_be_usable_by_the_creator(acme, alice_client):
    # bob may create nothing (no knowledge_base:create): 403 before anything else.
    assert_error(create(client_for(acme.bob)), 403, "PERMISSION_DENIED")
    # dave (admin) may use openai-main/* but not Globex's model, which Acme doesn't have.
    assert_error(
        create(client_for(acme.dave), model="globex-ai/text-embed"), 400, "VALIDATION_ERROR"
    )
    grant(alice_client, ["openai-main/gpt-4o"], ["vera"])
    # An admin whose rules don't reach the model gets 403 (the API cannot route him past them).
    alice_client.put(
        "/api/v1/orgs/acme/access-rules.yaml",
        "authz_rules:\n  - models: ['openai-main/gpt-4o']\n    users: [dave]\n",
        content_type="application/yaml",
    )
    assert_error(create(client_for(acme.dave)), 403, "PERMISSION_DENIED")
    assert create(client_for(acme.dave), model="openai-main/gpt-4o").status_code == 201


def test_bad_names_and_settings_are_named(acme, alice_client):
    body = assert_error(create(alice_client, name="Bad Name"), 400, "VALIDATION_ERROR")
    assert "name" in body["details"]
    body = assert_error(create(alice_client, chunk_size=50), 400, "VALIDATION_ERROR")
    assert "chunk_size" in body["details"]
    body = assert_error(
        create(alice_client, chunk_size=500, chunk_overlap=400), 400, "VALIDATION_ERROR"
    )
    assert "chunk_overlap" in body["details"]
    assert create(alice_client).status_code == 201
    assert_error(create(alice_client), 409, "CONFLICT")


def test_rule_documents_validate_knowledge_base_patterns(acme, alice_client):
    response = put_rules(
        alice_client, {"authz_rules": [{"knowledge_bases": ["Bad*Name"], "users": ["alice"]}]}
    )
    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert "authz_rules[0].knowledge_bases" in body["details"]
    response = put_rules(alice_client, {"authz_rules": [{"users": ["alice"]}]})
    assert_error(response, 400, "VALIDATION_ERROR")


def test_delete_needs_the_permission(acme, alice_client):
    assert create(alice_client).status_code == 201
    assert_error(client_for(acme.bob).delete(f"{URL}/handbook"), 403, "PERMISSION_DENIED")
    assert client_for(acme.dave).delete(f"{URL}/handbook").status_code == 204
    assert names(alice_client) == []


def test_allowed_knowledge_bases_of_an_inactive_subject_is_empty(acme, alice_client):
    assert create(alice_client).status_code == 201
    with org_scope(acme.acme):
        subject = access_rules.subject_for_user(acme.alice)
        assert access_rules.allowed_knowledge_bases(subject) == ["handbook"]
        acme.alice.is_active = False
        assert access_rules.allowed_knowledge_bases(subject) == []
