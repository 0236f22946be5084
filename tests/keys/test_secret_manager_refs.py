"""Secret-manager references at save: syntax, the operator's allow-list (prefix match
on the canonical form), and a backend whose client is not installed. A save never
contacts the manager; nothing is stored when a reference is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from inferia.errors import ValidationError
from keys import secret_refs
from keys.models import ProviderAccount
from tests.conftest import assert_error
from tests.keys.providers import PUBLIC_URL, accounts_url, create_account, put_secret
from tests.keys.secret_manager_fixtures import ALLOWLIST

ARN = "arn:aws:ssm:us-east-1:123456789012:parameter"


@pytest.fixture
def allowlist(settings):
    settings.INFERIA_SECRET_REF_ALLOWLIST = list(ALLOWLIST)
    return settings.INFERIA_SECRET_REF_ALLOWLIST


@pytest.fixture
def resolutions(monkeypatch):
    """Every name a secret backend was asked to resolve (a save must ask none)."""
    calls: list[str] = []
    for backend in secret_refs.BACKENDS.values():

        def spy(name, _original=backend.resolve):
            calls.append(name)
            return _original(name)

        monkeypatch.setattr(backend, "resolve", spy)
    return calls


def _post(client, ref: str):
    return client.post(
        accounts_url(),
        {"name": "managed", "provider_type": "openai", "base_url": PUBLIC_URL, "secret_ref": ref},
        format="json",
    )


ACCEPTED = [
    ("aws-ssm:/inferia/openai", "aws-ssm:/inferia/openai"),
    ("aws-sm:inferia/openai", "aws-sm:inferia/openai"),
    ("aws-sm:inferia/openai#api_key", "aws-sm:inferia/openai#api_key"),
    (
        "gcp-sm:projects/acme-prod/secrets/inferia-openai/versions/latest",
        "gcp-sm:projects/acme-prod/secrets/inferia-openai/versions/latest",
    ),
    (
        "gcp-sm:projects/acme-prod/secrets/inferia-openai/versions/3",
        "gcp-sm:projects/acme-prod/secrets/inferia-openai/versions/3",
    ),
    # Azure vault and secret names are case-insensitive: stored in lower case.
    ("azure-kv:Acme-Prod/Inferia-OpenAI", "azure-kv:acme-prod/inferia-openai"),
    (
        "azure-kv:acme-prod/inferia-openai/0123456789abcdef0123456789ABCDEF",
        "azure-kv:acme-prod/inferia-openai/0123456789abcdef0123456789abcdef",
    ),
    ("vault:secret/inferia/openai#api_key", "vault:secret/inferia/openai#api_key"),
]


@pytest.mark.parametrize(("ref", "canonical"), ACCEPTED)
def test_allowed_reference_is_stored_in_canonical_form_without_contacting_the_manager(
    cast, alice_client, allowlist, resolutions, ref, canonical
):
    body = create_account(alice_client, secret_ref=ref)
    assert body["has_secret"] is True and body["secret_kind"] == "reference"
    assert ProviderAccount.all_orgs.get(pk=body["id"]).secret_ref == canonical
    assert resolutions == []


REFUSED = [
    # Prefix tricks: traversal, empty and dot segments, twins of the allowed prefix.
    "aws-ssm:/inferia/../other",
    "aws-ssm:/inferia/./openai",
    "aws-ssm:/inferia//openai",
    "aws-ssm:/inferia-twin/openai",
    "aws-ssm:/other/inferia/openai",
    "aws-ssm:inferia/openai",  # another parameter than /inferia/openai
    # Case: SSM, Secrets Manager and Vault names are case-sensitive; schemes are exact.
    "aws-ssm:/INFERIA/openai",
    "AWS-SSM:/inferia/openai",
    "aws-sm:Inferia/openai",
    "vault:Secret/inferia/openai#api_key",
    # ARN vs name: a name prefix does not allow the ARN form (region and account).
    f"aws-ssm:{ARN}/inferia/openai",
    "aws-sm:arn:aws:secretsmanager:us-east-1:123456789012:secret:inferia/openai-AbCdEf",
    "aws-ssm:ARN:aws:ssm:us-east-1:123456789012:parameter/inferia/openai",
    f"aws-ssm:{ARN}/inferia/../other",
    "aws-sm:inferia/../other#api_key",
    "aws-sm:inferia/openai#",
    "aws-sm:inferia/openai#a#b",
    "gcp-sm:projects/acme-prod/secrets/other/versions/latest",
    "gcp-sm:projects/acme-prod/secrets/inferia-openai",
    "gcp-sm:projects/acme-prod/secrets/inferia-openai/versions/latest/../../other",
    "gcp-sm:projects/other-prod/secrets/inferia-openai/versions/latest",
    "gcp-sm:projects/Acme-Prod/secrets/inferia-openai/versions/latest",
    # A reference never names a host: the operator's settings do.
    "azure-kv:https://acme-prod.vault.azure.net/secrets/inferia-openai",
    "azure-kv:https://evil.example/secrets/inferia-openai",
    "azure-kv:acme-prod/other",
    "azure-kv:acme-prodx/inferia-openai",
    "azure-kv:acme-prod/inferia-openai/not-a-version",
    "vault:http://evil.example/secret/inferia/openai#api_key",
    "vault:secret/inferia/openai",  # the key is required
    "vault:secret/inferia/../admin#api_key",
    "vault:secret/inferiax/openai#api_key",
    "vault:secret/inferia/#api_key",
]


@pytest.mark.parametrize("ref", REFUSED)
def test_reference_outside_the_allowlist_or_malformed_is_400_and_nothing_is_stored(
    cast, alice_client, allowlist, resolutions, ref
):
    response = _post(alice_client, ref)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "secret_ref" in error["details"]
    assert resolutions == []
    assert not ProviderAccount.all_orgs.exists()
    # The same reference is refused when replacing a secret, and the old one stays.
    body = create_account(alice_client, name="kept", secret_ref="aws-ssm:/inferia/openai")
    replaced = put_secret(alice_client, body["id"], secret_ref=ref)
    assert "secret_ref" in assert_error(replaced, 400, "VALIDATION_ERROR")["details"]
    assert ProviderAccount.all_orgs.get(pk=body["id"]).secret_ref == "aws-ssm:/inferia/openai"


def test_arn_form_is_accepted_under_an_arn_prefix(cast, alice_client, settings, resolutions):
    settings.INFERIA_SECRET_REF_ALLOWLIST = [f"aws-ssm:{ARN}/inferia/"]
    body = create_account(alice_client, secret_ref=f"aws-ssm:{ARN}/inferia/openai")
    assert ProviderAccount.all_orgs.get(pk=body["id"]).secret_ref == f"aws-ssm:{ARN}/inferia/openai"
    # ...and the ARN prefix does not allow the name form.
    assert_error(_post(alice_client, "aws-ssm:/inferia/other"), 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    ("module", "ref"),
    [
        ("boto3", "aws-ssm:/inferia/openai"),
        ("boto3", "aws-sm:inferia/openai"),
        ("google.cloud.secretmanager", "gcp-sm:projects/acme-prod/secrets/inferia-x/versions/1"),
        ("azure.keyvault.secrets", "azure-kv:acme-prod/inferia-openai"),
        ("azure.identity", "azure-kv:acme-prod/inferia-openai"),
        ("hvac", "vault:secret/inferia/openai#api_key"),
    ],
)
def test_reference_to_a_backend_without_its_client_is_400(
    cast, alice_client, allowlist, resolutions, monkeypatch, module, ref
):
    assert create_account(alice_client, name="before", secret_ref=ref)["has_secret"]
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    response = _post(alice_client, ref)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "not installed" in error["message"] and "secret_ref" in error["details"]
    assert ProviderAccount.all_orgs.count() == 1
    with pytest.raises(secret_refs.SecretRefError) as failure:  # and at use
        secret_refs.resolve_ref(ref)
    assert failure.value.failure == secret_refs.Failure.NOT_CONFIGURED
    assert resolutions == []


def test_references_are_checked_against_the_allowlist_again_at_use(
    cast, alice_client, allowlist, resolutions, settings
):
    body = create_account(alice_client, secret_ref="vault:secret/inferia/openai#api_key")
    settings.INFERIA_SECRET_REF_ALLOWLIST = ["vault:secret/other/"]
    with pytest.raises(ValidationError):
        secret_refs.resolve_ref(ProviderAccount.all_orgs.get(pk=body["id"]).secret_ref)
    assert resolutions == []


def test_the_core_runs_without_any_secret_manager_client(tmp_path):
    """A server without ``inferia[secret-managers]``: everything imports, env:
    references resolve, and a manager's reference is refused with a clear reason."""
    script = tmp_path / "without_clients.py"
    script.write_text(
        """
import subprocess
import sys
from pathlib import Path
BLOCKED = ("boto3", "botocore", "google.cloud.secretmanager", "azure", "hvac")

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.startswith(BLOCKED):
            raise ImportError(f"{name} is not installed")
        return None

sys.meta_path.insert(0, Block())
import os
os.environ["DJANGO_SETTINGS_MODULE"] = "inferia.test_settings"
os.environ["INFERIA_UPSTREAM_X"] = "env-value"
import django
django.setup()
import gateway.app, keys.services  # noqa: E401,F401
from django.conf import settings
from inferia.errors import ValidationError
from keys import secret_refs
settings.INFERIA_SECRET_REF_ALLOWLIST = ["env:INFERIA_UPSTREAM_", "vault:secret/"]
assert secret_refs.resolve_ref("env:INFERIA_UPSTREAM_X") == "env-value"
try:
    secret_refs.validate_ref("vault:secret/x#k")
except ValidationError as exc:
    print("refused:", exc.message)
assert not any(name.startswith(BLOCKED) for name in sys.modules)
"""
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "refused: The vault client is not installed on this server" in result.stdout


def test_admin_checks_references_like_the_api(cast, admin_client, allowlist):
    data = {
        "org": cast.acme.pk,
        "name": "admin-ref",
        "provider_type": "openai",
        "base_url": PUBLIC_URL,
        "api_version": "",
        "deployments": "{}",
        "enabled_models": "[]",
        "tags": "{}",
        "secret_ref": "aws-ssm:/inferia/../other",
        "new_secret": "",
    }
    response = admin_client.post("/admin/keys/provideraccount/add/", data)
    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    assert not ProviderAccount.all_orgs.filter(name="admin-ref").exists()
    data["secret_ref"] = "azure-kv:Acme-Prod/Inferia-OpenAI"
    response = admin_client.post("/admin/keys/provideraccount/add/", data)
    assert response.status_code == 302
    row = ProviderAccount.all_orgs.get(name="admin-ref")
    assert row.secret_ref == "azure-kv:acme-prod/inferia-openai"
