"""Model names holding '/' (Hugging Face style names served by vLLM).

An FQN is ``account/model`` and splits at the first '/': account names never
hold one, model names may (``vllm-local/meta-llama/Llama-3.1-8B-Instruct`` is
account ``vllm-local``, model ``meta-llama/Llama-3.1-8B-Instruct``). Such names
go through every door: provider accounts (API and dashboard), access rules
(exact FQN, ``account/*``, ``account/prefix/*``), a key's model restriction,
the effective-access listing and the gateway's routes. Malformed names are
refused everywhere.
"""

from __future__ import annotations

import pytest
import yaml
from django.test import Client

from gateway import principals as gateway_principals
from inferia.errors import ValidationError
from keys import names, services
from keys.access_rules import pattern_matches
from keys.models import ApiKey, ProviderAccount
from orgs.scoping import org_scope
from tests.conftest import assert_error
from tests.keys.conftest import (
    allow_private_upstream,
    create_provider_account,
    effective,
    key_client,
    mint,
    put_rules_yaml,
)

ACCOUNT = "vllm-local"
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
QWEN = "Qwen/Qwen2.5-7B-Instruct"
LLAMA_FQN, QWEN_FQN, PHI_FQN = f"{ACCOUNT}/{LLAMA}", f"{ACCOUNT}/{QWEN}", f"{ACCOUNT}/phi-3"
GPT4O_FQN = "openai-main/gpt-4o"
ALL_VLLM = sorted([LLAMA_FQN, QWEN_FQN, PHI_FQN])

# Refused as a model name everywhere.
BAD_NAMES = [
    "a//b",
    "/x",
    "x/",
    "..",
    "a/../b",
    "../x",
    "x/..",
    ".",
    "./x",
    "a/./b",
    "a b",
    "a\tb",
    "a/ b",
    "a/*/b",
    "-x",
    "a/-b",
    "x" * 201,
]
# A provider's model is never a wildcard (though account/* and account/prefix/* are patterns).
WILDCARDS = ["*", "meta-llama/*"]
# ...and these too, though the API's string fields trim edge whitespace before
# validation (so over JSON " x" arrives as "x"); the names layer refuses them.
EDGE_WHITESPACE = [" x", "x ", "x\n", "\tx", "a/b\n"]
CONTROL = ["a\x00b", "a\x1bb", "a/\x7fb"]


# --- the grammar ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "gpt-4o",
        LLAMA,
        QWEN,
        "org/sub/model-v1.0",
        "mistralai/Mistral-7B-Instruct-v0.3",
        "a" * 200,
        "a/" * 99 + "bc",
        "model:tag@v1+x",
    ],
)
def test_good_model_names(name):
    assert names.is_model_name(name)
    assert names.is_model_pattern(f"{ACCOUNT}/{name}")
    assert names.split_fqn(f"{ACCOUNT}/{name}") == (ACCOUNT, name)


@pytest.mark.parametrize("name", BAD_NAMES + EDGE_WHITESPACE + CONTROL + ["", "é", "a/b\u00a0"])
def test_bad_model_names(name):
    assert not names.is_model_name(name)
    assert not names.is_model_pattern(f"{ACCOUNT}/{name}")


@pytest.mark.parametrize("name", WILDCARDS)
def test_a_wildcard_is_no_model_name(name):
    assert not names.is_model_name(name)


@pytest.mark.parametrize(
    "pattern",
    [f"{ACCOUNT}/*", LLAMA_FQN, f"{ACCOUNT}/meta-llama/*", f"{ACCOUNT}/a/b/*", GPT4O_FQN],
)
def test_good_patterns(pattern):
    assert names.is_model_pattern(pattern)
    assert services.validate_model_patterns([pattern]) == [pattern]


@pytest.mark.parametrize(
    "pattern",
    [
        "*",
        "x",
        "/x",
        "//x",
        f"{ACCOUNT}/",
        f"{ACCOUNT}//x",
        f"{ACCOUNT}/x/",
        f"{ACCOUNT}/a//b",
        f"{ACCOUNT}/ x",
        f" {ACCOUNT}/x",
        f"{ACCOUNT}/x ",
        f"{ACCOUNT}/x\n",
        f"{ACCOUNT}/..",
        f"{ACCOUNT}/../x",
        f"{ACCOUNT}/**",
        f"{ACCOUNT}/a/**",
        f"{ACCOUNT}/*/x",
        f"{ACCOUNT}/a*",
        "Vllm-Local/x",
        "-vllm/x",
        "env=prod",
        f"{ACCOUNT}/" + "x" * 201,
    ],
)
def test_bad_patterns(pattern):
    assert not names.is_model_pattern(pattern)
    with pytest.raises(ValidationError):
        services.validate_model_patterns([pattern])


@pytest.mark.parametrize(
    ("pattern", "fqn", "matches"),
    [
        (LLAMA_FQN, LLAMA_FQN, True),
        (f"{ACCOUNT}/*", LLAMA_FQN, True),
        (f"{ACCOUNT}/meta-llama/*", LLAMA_FQN, True),
        (f"{ACCOUNT}/meta-llama/*", f"{ACCOUNT}/meta-llama-guard/x", False),  # a prefix ends at '/'
        (f"{ACCOUNT}/meta-llama/*", f"{ACCOUNT}/meta-llama", False),
        (f"{ACCOUNT}/meta-llama", LLAMA_FQN, False),  # exact means exact
        (f"{ACCOUNT}/Qwen/*", LLAMA_FQN, False),
        ("other/*", LLAMA_FQN, False),
        ("vllm/*", LLAMA_FQN, False),  # the account is the part before the first '/'
        ("*", LLAMA_FQN, True),
    ],
)
def test_pattern_matching_splits_at_the_first_slash(pattern, fqn, matches):
    assert pattern_matches(pattern, fqn, {}) is matches


# --- provider accounts ----------------------------------------------------------------------


@pytest.fixture
def hf_catalog(cast, alice_client) -> dict[str, dict]:
    allow_private_upstream(cast.acme)
    return {
        ACCOUNT: create_provider_account(
            alice_client, ACCOUNT, [LLAMA, QWEN, "phi-3"], {"env": "staging"}
        ),
        "openai-main": create_provider_account(
            alice_client, "openai-main", ["gpt-4o"], {"env": "prod"}
        ),
    }


def test_provider_account_accepts_model_names_with_slashes(hf_catalog, alice_client, cast):
    assert [m["name"] for m in hf_catalog[ACCOUNT]["models"]] == [LLAMA, QWEN, "phi-3"]
    with org_scope(cast.acme):
        assert ProviderAccount.objects.get(name=ACCOUNT).model_names == [LLAMA, QWEN, "phi-3"]
    response = alice_client.patch(
        f"/api/v1/orgs/acme/provider-accounts/{hf_catalog[ACCOUNT]['id']}",
        {
            "models": [
                LLAMA,
                {"name": "mistralai/Mistral-7B-Instruct-v0.3", "input_price_per_million": 0.1},
            ]
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    assert [m["name"] for m in response.json()["models"]] == [
        LLAMA,
        "mistralai/Mistral-7B-Instruct-v0.3",
    ]


@pytest.mark.parametrize("name", BAD_NAMES + WILDCARDS + CONTROL)
def test_provider_account_refuses_malformed_model_names(cast, alice_client, name):
    allow_private_upstream(cast.acme)
    response = alice_client.post(
        "/api/v1/orgs/acme/provider-accounts",
        {
            "name": ACCOUNT,
            "provider_type": "openai_compatible",
            "base_url": "http://127.0.0.1:9000/v1",
            "models": [name],
        },
        format="json",
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "models" in error["details"], error
    assert not ProviderAccount.all_orgs.exists()


@pytest.mark.parametrize("name", ["a//b", "/x", "x/", "..", "meta-llama/../x"])
def test_provider_account_update_refuses_malformed_model_names(
    hf_catalog, alice_client, cast, name
):
    response = alice_client.patch(
        f"/api/v1/orgs/acme/provider-accounts/{hf_catalog[ACCOUNT]['id']}",
        {"models": [LLAMA, name]},
        format="json",
    )
    assert "models" in assert_error(response, 400, "VALIDATION_ERROR")["details"]
    with org_scope(cast.acme):
        assert ProviderAccount.objects.get(name=ACCOUNT).model_names == [LLAMA, QWEN, "phi-3"]


def _dashboard(user) -> Client:
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def test_dashboard_form_takes_model_names_with_slashes(cast):
    page = _dashboard(cast.alice)
    data = {
        "name": "hf-main",
        "provider_type": "openai_compatible",
        "base_url": "https://8.8.8.8/v1",
        "models": f"{LLAMA}, {QWEN}\nphi-3",
        "tags": "",
    }
    assert page.post("/orgs/acme/provider-accounts", data).status_code == 302
    with org_scope(cast.acme):
        assert ProviderAccount.objects.get(name="hf-main").model_names == [LLAMA, QWEN, "phi-3"]
    response = page.post(
        "/orgs/acme/provider-accounts", {**data, "name": "hf-bad", "models": "a//b"}
    )
    assert response.status_code == 400
    assert not ProviderAccount.all_orgs.filter(name="hf-bad").exists()


# --- access rules, keys, effective access ---------------------------------------------------

RULES = f"""\
authz_rules:
  - models: [{LLAMA_FQN}]
    users: [bob]
  - models: ['{ACCOUNT}/*']
    users: [vera]
  - models: ['{ACCOUNT}/Qwen/*']
    users: [dave]
  - models: ['{ACCOUNT}/*', {GPT4O_FQN}]
    users: [alice]
"""


@pytest.fixture
def hf_rules(hf_catalog, alice_client):
    response = put_rules_yaml(alice_client, RULES)
    assert response.status_code == 200, response.content


def test_rules_grant_by_exact_fqn_account_wildcard_and_prefix(hf_rules, alice_client):
    assert effective(alice_client, user="bob")["models"] == [LLAMA_FQN]
    assert effective(alice_client, user="vera")["models"] == ALL_VLLM
    assert effective(alice_client, user="dave")["models"] == [QWEN_FQN]
    assert effective(alice_client)["models"] == sorted([*ALL_VLLM, GPT4O_FQN])
    assert effective(alice_client, model=LLAMA_FQN) == {
        "model": LLAMA_FQN,
        "users": ["alice", "bob", "vera"],
        "service_accounts": [],
    }
    assert effective(alice_client, model=QWEN_FQN)["users"] == ["alice", "dave", "vera"]
    assert effective(alice_client, model=PHI_FQN)["users"] == ["alice", "vera"]


def test_rules_with_slashed_names_round_trip(hf_rules, alice_client):
    response = alice_client.get("/api/v1/orgs/acme/access-rules.yaml")
    assert response.status_code == 200, response.content
    assert yaml.safe_load(response.content) == yaml.safe_load(RULES)
    again = put_rules_yaml(alice_client, response.content.decode())
    assert again.status_code == 200, again.content
    assert effective(alice_client, user="bob")["models"] == [LLAMA_FQN]


def test_single_rule_with_a_slashed_fqn(hf_catalog, alice_client):
    response = alice_client.post(
        "/api/v1/orgs/acme/access-rules", {"models": [QWEN_FQN], "users": ["bob"]}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["models"] == [QWEN_FQN]
    assert effective(alice_client, user="bob")["models"] == [QWEN_FQN]


@pytest.mark.parametrize(
    "pattern",
    [
        f"{ACCOUNT}/a//b",
        f"{ACCOUNT}//x",
        "/x",
        f"{ACCOUNT}/x/",
        f"{ACCOUNT}/ x",
        f"{ACCOUNT}/x ",
        f"{ACCOUNT}/..",
        f"{ACCOUNT}/meta-llama/../x",
        f"{ACCOUNT}/*/x",
        f"{ACCOUNT}/a\\tb",
        f"{ACCOUNT}/x\\n",
    ],
)
def test_rules_refuse_malformed_names(hf_rules, alice_client, pattern):
    # Double-quoted YAML: \t and \n are a real tab and newline; edge spaces are kept.
    document = f'authz_rules:\n  - models: ["{pattern}"]\n    users: [bob]\n'
    error = assert_error(put_rules_yaml(alice_client, document), 400, "VALIDATION_ERROR")
    assert set(error["details"]) == {"authz_rules[0].models"}, error
    assert effective(alice_client, user="bob")["models"] == [LLAMA_FQN]  # nothing changed


@pytest.mark.parametrize(
    ("restriction", "expected"),
    [
        ([LLAMA_FQN], [LLAMA_FQN]),
        ([f"{ACCOUNT}/*"], ALL_VLLM),
        ([f"{ACCOUNT}/meta-llama/*"], [LLAMA_FQN]),
        ([QWEN_FQN, GPT4O_FQN], [GPT4O_FQN, QWEN_FQN]),
        ([], sorted([*ALL_VLLM, GPT4O_FQN])),
    ],
)
def test_key_restriction_with_slashed_names(hf_rules, alice_client, cast, restriction, expected):
    body = mint(alice_client, permissions=["model:read", "inference:run"], models=restriction)
    assert body["models"] == sorted(restriction)
    assert effective(key_client(body["key"]))["models"] == expected
    # The gateway routes the FQN to the account, with the model name as the upstream sees it.
    principal = gateway_principals.build(body["key"], "")
    assert sorted(principal.routes) == expected
    assert principal.catalog == frozenset([*ALL_VLLM, GPT4O_FQN])
    if LLAMA_FQN in expected:
        route = principal.routes[LLAMA_FQN]
        assert (route.account_name, route.upstream_model) == (ACCOUNT, LLAMA)


def test_a_key_cannot_widen_its_owner_by_a_slashed_name(hf_rules, bob_client):
    body = mint(bob_client, models=[QWEN_FQN, LLAMA_FQN])
    assert effective(key_client(body["key"]))["models"] == [LLAMA_FQN]
    narrowed = mint(bob_client, models=[QWEN_FQN])
    assert effective(key_client(narrowed["key"]))["models"] == []


@pytest.mark.parametrize(
    "pattern",
    [
        f"{ACCOUNT}/a//b",
        "/x",
        f"{ACCOUNT}/x/",
        f"{ACCOUNT}/..",
        f"{ACCOUNT}/../x",
        f"{ACCOUNT}/a b",
        f"{ACCOUNT}/*/x",
        "*",
        f"{ACCOUNT}/" + "x" * 201,
    ],
)
def test_key_restriction_refuses_malformed_names(hf_catalog, alice_client, pattern):
    response = alice_client.post(
        "/api/v1/orgs/acme/api-keys",
        {"name": "k", "permissions": ["model:read"], "models": [pattern]},
        format="json",
    )
    assert "models" in assert_error(response, 400, "VALIDATION_ERROR")["details"]
    assert not ApiKey.all_orgs.exists()
