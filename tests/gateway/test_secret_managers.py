"""Provider secrets read from external secret managers, end to end through the gateway.

Each backend is its vendor's official client against the most real local server:
moto in server mode for AWS (IAM enforced), and local servers speaking the
documented APIs of Vault KV v2, Google Secret Manager (REST) and Azure Key Vault
(HTTPS, challenge auth). The fake upstream records the Authorization header it got.
"""

from __future__ import annotations

import json
import socket

import pytest

from audit.models import AuditRecord
from gateway import principals
from inferia.errors import ValidationError
from keys import secret_refs
from keys.models import ProviderAccount
from tests.gateway.conftest import assert_gateway_error

CHAT = {"model": "", "messages": [{"role": "user", "content": "hi"}]}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _account_with_ref(llm, ref: str, name: str = "managed") -> str:
    """A provider account whose secret is ``ref`` (through the API), granted to bob."""
    llm.add_account(
        name, "openai", f"{llm.upstream.url}/v1", [{"name": "gpt-4o"}], secret=None, secret_ref=ref
    )
    llm.grant("authz_rules:\n  - models: ['*']\n    users: [bob]\n")
    return f"{name}/gpt-4o"


def _chat(llm, key: str, model: str):
    return llm.post("/chat/completions", key, {**CHAT, "model": model})


def _sent_secret(upstream_requests) -> str:
    return upstream_requests[-1]["headers"]["authorization"].removeprefix("Bearer ")


def _failure_record(model: str) -> AuditRecord:
    return AuditRecord.objects.get(
        action="inference:run", outcome="failure", data__op="secret_ref_resolve", data__model=model
    )


def _assert_secret_failure(response, status: int, code: str, backend: str, words: str, *hidden):
    error = assert_gateway_error(response, status, code)
    assert backend in error["message"] and words in error["message"], error
    for text in hidden:
        assert text not in response.text
    return error


# --- AWS SSM Parameter Store and Secrets Manager (moto server, IAM enforced) ---------------


@pytest.mark.parametrize("parameter_type", ["SecureString", "String"])
def test_aws_ssm_parameter_reaches_the_upstream(aws, llm, upstream_requests, parameter_type):
    name = aws.name("/inferia/openai")
    value = f"sk-from-aws-ssm-{parameter_type}-0123456789"
    aws.ssm.put_parameter(Name=name, Value=value, Type=parameter_type)
    model = _account_with_ref(llm, f"aws-ssm:{name}")
    response = _chat(llm, llm.key(), model)
    assert response.status_code == 200, response.text
    assert _sent_secret(upstream_requests) == value


def test_aws_ssm_arn_form_resolves_when_the_operator_allows_arns(aws, settings):
    name = aws.name("/inferia/by-arn")
    aws.ssm.put_parameter(Name=name, Value="sk-from-ssm-arn-0123456789", Type="SecureString")
    arn = f"arn:aws:ssm:us-east-1:123456789012:parameter{name}"
    with pytest.raises(ValidationError):  # a name prefix does not allow ARNs
        secret_refs.validate_ref(f"aws-ssm:{arn}")
    settings.INFERIA_SECRET_REF_ALLOWLIST = [
        "aws-ssm:arn:aws:ssm:us-east-1:123456789012:parameter/inferia/"
    ]
    assert secret_refs.resolve_ref(f"aws-ssm:{arn}") == "sk-from-ssm-arn-0123456789"


def test_aws_secrets_manager_string_and_json_key(aws, llm, upstream_requests):
    plain = aws.name("inferia/plain")
    document = aws.name("inferia/doc")
    aws.sm.create_secret(Name=plain, SecretString="sk-from-aws-sm-plain-0123456789")
    aws.sm.create_secret(
        Name=document,
        SecretString=json.dumps({"api_key": "sk-from-aws-sm-json-0123456789", "other": "x"}),
    )
    key = llm.key()
    assert _chat(llm, key, _account_with_ref(llm, f"aws-sm:{plain}", "sm-plain")).status_code == 200
    assert _sent_secret(upstream_requests) == "sk-from-aws-sm-plain-0123456789"
    model = _account_with_ref(llm, f"aws-sm:{document}#api_key", "sm-json")
    assert _chat(llm, key, model).status_code == 200
    assert _sent_secret(upstream_requests) == "sk-from-aws-sm-json-0123456789"


def test_aws_secrets_manager_missing_json_key_is_502(aws, llm, upstream_requests):
    document = aws.name("inferia/doc")
    aws.sm.create_secret(
        Name=document, SecretString=json.dumps({"api_key": "sk-json-0123456789abc"})
    )
    model = _account_with_ref(llm, f"aws-sm:{document}#missing")
    response = _chat(llm, llm.key(), model)
    _assert_secret_failure(
        response, 502, "UPSTREAM_ERROR", "aws-sm", "no usable value", "sk-json-0123456789abc"
    )
    assert upstream_requests == []


def test_aws_missing_parameter_is_502_not_found_and_audited(aws, llm, upstream_requests):
    name = aws.name("/inferia/never-created")
    model = _account_with_ref(llm, f"aws-ssm:{name}")
    response = _chat(llm, llm.key(), model)
    _assert_secret_failure(response, 502, "UPSTREAM_ERROR", "aws-ssm", "not found", name)
    assert upstream_requests == []
    record = _failure_record(model)
    assert record.data["backend"] == "aws-ssm"
    assert record.data["failure"] == "not_found"
    assert name not in json.dumps(record.data)


def test_aws_access_denied_by_iam_is_502_access_denied(aws, llm, upstream_requests):
    name = aws.name("/inferia/guarded")
    aws.ssm.put_parameter(Name=name, Value="sk-guarded-value-0123456789", Type="SecureString")
    model = _account_with_ref(llm, f"aws-ssm:{name}")
    # The server's identity loses the permission (moto enforces IAM; it does not
    # evaluate a policy's Resource element, so the denial is per identity).
    aws.as_user("outsider")
    response = _chat(llm, llm.key(), model)
    _assert_secret_failure(
        response, 502, "UPSTREAM_ERROR", "aws-ssm", "access denied", "sk-guarded-value"
    )
    assert _failure_record(model).data["failure"] == "access_denied"
    assert upstream_requests == []
    aws.as_user("reader")  # the same reference with the permission: not vacuous
    assert _chat(llm, llm.key(), model).status_code == 200
    assert _sent_secret(upstream_requests) == "sk-guarded-value-0123456789"


def test_aws_rotation_is_picked_up_after_the_ttl(
    aws, llm, upstream_requests, settings, clock_shift
):
    settings.INFERIA_SECRET_REF_TTL_SECONDS = 120
    name = aws.name("/inferia/rotating")
    aws.ssm.put_parameter(Name=name, Value="sk-rotation-one-0123456789", Type="SecureString")
    model = _account_with_ref(llm, f"aws-ssm:{name}")
    key = llm.key()
    assert _chat(llm, key, model).status_code == 200
    aws.ssm.put_parameter(
        Name=name, Value="sk-rotation-two-0123456789", Type="SecureString", Overwrite=True
    )
    clock_shift(100)  # inside the TTL: the cached value
    assert _chat(llm, key, model).status_code == 200
    assert _sent_secret(upstream_requests) == "sk-rotation-one-0123456789"
    clock_shift(21)  # past it: the manager is asked again
    assert _chat(llm, key, model).status_code == 200
    assert _sent_secret(upstream_requests) == "sk-rotation-two-0123456789"


def test_gateway_secret_cache_never_outlives_the_reference_ttl(
    aws, llm, upstream_requests, settings, clock_shift
):
    """The gateway's own secret cache (INFERIA_GATEWAY_SECRET_CACHE_SECONDS) takes the
    reference's remaining lifetime: one lifetime, not two caches that disagree."""
    settings.INFERIA_GATEWAY_SECRET_CACHE_SECONDS = 3600
    settings.INFERIA_SECRET_REF_TTL_SECONDS = 60
    name = aws.name("/inferia/short")
    aws.ssm.put_parameter(Name=name, Value="sk-short-one-0123456789", Type="SecureString")
    model = _account_with_ref(llm, f"aws-ssm:{name}")
    key = llm.key()
    assert _chat(llm, key, model).status_code == 200
    aws.ssm.put_parameter(
        Name=name, Value="sk-short-two-0123456789", Type="SecureString", Overwrite=True
    )
    clock_shift(61)
    assert _chat(llm, key, model).status_code == 200
    assert _sent_secret(upstream_requests) == "sk-short-two-0123456789"


def test_unreachable_manager_serves_the_last_value_for_a_bounded_grace_then_503(
    aws, llm, upstream_requests, settings, clock_shift
):
    settings.INFERIA_SECRET_REF_TTL_SECONDS = 60
    settings.INFERIA_SECRET_REF_STALE_SECONDS = 300
    name = aws.name("/inferia/outage")
    aws.ssm.put_parameter(Name=name, Value="sk-outage-value-0123456789", Type="SecureString")
    model = _account_with_ref(llm, f"aws-ssm:{name}")
    key = llm.key()
    assert _chat(llm, key, model).status_code == 200
    settings.INFERIA_AWS_ENDPOINT_URL = f"http://127.0.0.1:{_closed_port()}"
    clock_shift(61)  # expired, manager down: the last value, within the grace
    assert _chat(llm, key, model).status_code == 200
    assert _sent_secret(upstream_requests) == "sk-outage-value-0123456789"
    clock_shift(300)  # past TTL + grace: refused, and nothing reaches the upstream
    upstream_requests.clear()
    response = _chat(llm, key, model)
    _assert_secret_failure(response, 503, "SERVICE_UNAVAILABLE", "aws-ssm", "unreachable")
    assert response.headers["Retry-After"]
    assert upstream_requests == []
    assert _failure_record(model).data["failure"] == "unreachable"


def test_deleted_secret_fails_at_once_without_the_grace(aws, llm, upstream_requests, clock_shift):
    """A manager that says 'not found' (or 'denied') ends the cached value: a
    revocation in the manager takes effect at the next fetch, not after a grace."""
    name = aws.name("/inferia/deleted")
    aws.ssm.put_parameter(Name=name, Value="sk-deleted-value-0123456789", Type="SecureString")
    model = _account_with_ref(llm, f"aws-ssm:{name}")
    key = llm.key()
    assert _chat(llm, key, model).status_code == 200
    aws.ssm.delete_parameter(Name=name)
    clock_shift(301)
    _assert_secret_failure(_chat(llm, key, model), 502, "UPSTREAM_ERROR", "aws-ssm", "not found")


def test_a_failure_is_cached_briefly(aws, settings, clock_shift):
    settings.INFERIA_SECRET_REF_FAILURE_SECONDS = 5
    name = aws.name("/inferia/late")
    ref = f"aws-ssm:{name}"
    with pytest.raises(secret_refs.SecretRefError) as first:
        secret_refs.resolve_ref(ref)
    assert first.value.failure == secret_refs.Failure.NOT_FOUND
    aws.ssm.put_parameter(Name=name, Value="sk-late-value-0123456789", Type="SecureString")
    with pytest.raises(secret_refs.SecretRefError):  # within the failure lifetime
        secret_refs.resolve_ref(ref)
    clock_shift(6)
    assert secret_refs.resolve_ref(ref) == "sk-late-value-0123456789"


# --- HashiCorp Vault KV v2 (hvac against a local KV v2 server) -----------------------------


def test_vault_kv2_secret_reaches_the_upstream(vault, llm, upstream_requests):
    vault.put("secret", "inferia/openai", {"api_key": "sk-from-vault-0123456789", "org": "x"})
    model = _account_with_ref(llm, "vault:secret/inferia/openai#api_key")
    assert _chat(llm, llm.key(), model).status_code == 200
    assert _sent_secret(upstream_requests) == "sk-from-vault-0123456789"
    assert vault.requests[-1]["path"] == "/v1/secret/data/inferia/openai"


@pytest.mark.parametrize(
    ("setup", "status", "code", "words", "failure"),
    [
        ("missing", 502, "UPSTREAM_ERROR", "not found", "not_found"),
        ("denied", 502, "UPSTREAM_ERROR", "access denied", "access_denied"),
        ("no-key", 502, "UPSTREAM_ERROR", "no usable value", "invalid_value"),
        ("down", 503, "SERVICE_UNAVAILABLE", "unreachable", "unreachable"),
    ],
)
def test_vault_failures(
    vault, llm, upstream_requests, settings, setup, status, code, words, failure
):
    vault.put("secret", "inferia/openai", {"other": "sk-other-field-0123456789"})
    if setup == "missing":
        vault.secrets.clear()
    if setup == "denied":
        vault.tokens["inferia-token"] = ["secret/somewhere-else/"]
    if setup == "down":
        settings.VAULT_ADDR = f"http://127.0.0.1:{_closed_port()}"
    model = _account_with_ref(llm, "vault:secret/inferia/openai#api_key")
    response = _chat(llm, llm.key(), model)
    _assert_secret_failure(
        response, status, code, "vault", words, "sk-other-field", "inferia-token"
    )
    assert _failure_record(model).data == {
        "op": "secret_ref_resolve",
        "model": model,
        "backend": "vault",
        "failure": failure,
    }
    assert upstream_requests == []


# --- Google Secret Manager (official client, REST transport, local server) -----------------


def test_gcp_secret_version_reaches_the_upstream(gcp, llm, upstream_requests):
    secret = "projects/acme-prod/secrets/inferia-openai"
    gcp.secrets[secret] = ["sk-from-gcp-v1-0123456789", "sk-from-gcp-v2-0123456789"]
    key = llm.key()
    latest = _account_with_ref(llm, f"gcp-sm:{secret}/versions/latest", "gcp-latest")
    assert _chat(llm, key, latest).status_code == 200
    assert _sent_secret(upstream_requests) == "sk-from-gcp-v2-0123456789"
    pinned = _account_with_ref(llm, f"gcp-sm:{secret}/versions/1", "gcp-pinned")
    assert _chat(llm, key, pinned).status_code == 200
    assert _sent_secret(upstream_requests) == "sk-from-gcp-v1-0123456789"
    assert gcp.requests[-1]["path"].split("?")[0] == f"/v1/{secret}/versions/1:access"


@pytest.mark.parametrize(
    ("setup", "words", "failure"),
    [("missing", "not found", "not_found"), ("denied", "access denied", "access_denied")],
)
def test_gcp_failures_are_502(gcp, llm, upstream_requests, setup, words, failure):
    secret = "projects/acme-prod/secrets/inferia-openai"
    if setup == "denied":
        gcp.secrets[secret] = ["sk-denied-gcp-0123456789"]
        gcp.denied.add(secret)
    model = _account_with_ref(llm, f"gcp-sm:{secret}/versions/latest")
    response = _chat(llm, llm.key(), model)
    _assert_secret_failure(
        response, 502, "UPSTREAM_ERROR", "gcp-sm", words, "sk-denied-gcp", "secretmanager.versions"
    )
    assert _failure_record(model).data["failure"] == failure
    assert upstream_requests == []


# --- Azure Key Vault (SecretClient over HTTPS with the challenge flow) ---------------------


def test_azure_key_vault_secret_reaches_the_upstream(azure, llm, upstream_requests):
    first = azure.put("inferia-openai", "sk-from-azure-v1-0123456789")
    azure.put("inferia-openai", "sk-from-azure-v2-0123456789")
    key = llm.key()
    # Names are case-insensitive in Azure; the reference is stored in lower case.
    latest = _account_with_ref(llm, "azure-kv:Acme-Prod/Inferia-OpenAI", "az-latest")
    row = ProviderAccount.all_orgs.get(name="az-latest")
    assert row.secret_ref == "azure-kv:acme-prod/inferia-openai"
    assert _chat(llm, key, latest).status_code == 200
    assert _sent_secret(upstream_requests) == "sk-from-azure-v2-0123456789"
    pinned = _account_with_ref(llm, f"azure-kv:acme-prod/inferia-openai/{first}", "az-pinned")
    assert _chat(llm, key, pinned).status_code == 200
    assert _sent_secret(upstream_requests) == "sk-from-azure-v1-0123456789"
    # Key Vault's challenge: the first request went without a token, got 401 and
    # WWW-Authenticate; the SDK asked the credential for the vault's scope and tenant.
    assert azure.requests[0]["authorized"] is False
    assert azure.requests[1]["authorized"] is True
    assert azure.credential.asked[0] == (
        ("https://vault.azure.net/.default",),
        azure.TENANT,
    )


@pytest.mark.parametrize(
    ("setup", "words", "failure"),
    [("missing", "not found", "not_found"), ("denied", "access denied", "access_denied")],
)
def test_azure_failures_are_502(azure, llm, upstream_requests, setup, words, failure):
    if setup == "denied":
        azure.put("inferia-openai", "sk-denied-azure-0123456789")
        azure.tokens["reader-token"] = {"some-other-secret"}
    model = _account_with_ref(llm, "azure-kv:acme-prod/inferia-openai")
    response = _chat(llm, llm.key(), model)
    _assert_secret_failure(
        response, 502, "UPSTREAM_ERROR", "azure-kv", words, "sk-denied-azure", "ForbiddenByRbac"
    )
    assert _failure_record(model).data["failure"] == failure
    assert upstream_requests == []


def test_gcp_and_azure_unreachable_are_503(gcp, azure, llm, upstream_requests, settings):
    settings.INFERIA_GCP_SECRET_MANAGER_ENDPOINT = f"http://127.0.0.1:{_closed_port()}"
    settings.INFERIA_AZURE_KEYVAULT_URL = f"https://127.0.0.1:{_closed_port()}"
    key = llm.key()
    for backend, ref in (
        ("gcp-sm", "gcp-sm:projects/acme-prod/secrets/inferia-openai/versions/latest"),
        ("azure-kv", "azure-kv:acme-prod/inferia-openai"),
    ):
        model = _account_with_ref(llm, ref, f"down-{backend}")
        response = _chat(llm, key, model)
        _assert_secret_failure(response, 503, "SERVICE_UNAVAILABLE", backend, "unreachable")
        assert _failure_record(model).data["failure"] == "unreachable"
    assert upstream_requests == []


# --- a client that is not installed ----------------------------------------------------------


def test_reference_of_a_backend_without_its_client_is_503_at_use(
    vault, llm, upstream_requests, monkeypatch
):
    vault.put("secret", "inferia/openai", {"api_key": "sk-from-vault-0123456789"})
    model = _account_with_ref(llm, "vault:secret/inferia/openai#api_key")
    monkeypatch.setitem(__import__("sys").modules, "hvac", None)  # uninstalled
    response = _chat(llm, llm.key(), model)
    _assert_secret_failure(response, 503, "SERVICE_UNAVAILABLE", "vault", "not installed")
    assert upstream_requests == []


def test_reference_the_operator_no_longer_allows_is_502_at_use(
    vault, llm, upstream_requests, settings
):
    vault.put("secret", "inferia/openai", {"api_key": "sk-from-vault-0123456789"})
    model = _account_with_ref(llm, "vault:secret/inferia/openai#api_key")
    key = llm.key()
    assert _chat(llm, key, model).status_code == 200
    settings.INFERIA_SECRET_REF_ALLOWLIST = ["vault:secret/other/"]
    principals.clear()  # as after the restart that changes a setting: no cached secret
    upstream_requests.clear()
    response = _chat(llm, key, model)
    error = assert_gateway_error(response, 502, "UPSTREAM_ERROR")
    assert "no longer allowed by the operator" in error["message"]
    assert _failure_record(model).data["failure"] == "not_allowed"
    assert upstream_requests == []
