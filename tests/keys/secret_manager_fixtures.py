"""Fixtures: each secret manager as the most real local server available.

AWS is moto in server mode (a separate process) with IAM enforcement switched on
after setup, so Inferia signs with an IAM user's keys and a user without the
permission really gets AccessDenied. Vault, Google and Azure are the local
servers of ``tests/keys/secret_servers.py``, reached by the official clients.
Import the fixtures a module needs by name.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from types import SimpleNamespace

import httpx
import pytest

from keys import secret_refs
from keys.secret_refs import azure as azure_backend
from tests.keys.secret_servers import AzureKeyVaultServer, GcpSecretManagerServer, VaultServer

ALLOWLIST = [
    "aws-ssm:/inferia/",
    "aws-sm:inferia/",
    "gcp-sm:projects/acme-prod/secrets/inferia-",
    "azure-kv:acme-prod/inferia-",
    "vault:secret/inferia/",
]
REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _policy(*actions: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}],
        }
    )


@pytest.fixture(scope="session")
def moto_server():
    """``python -m moto.server`` on 127.0.0.1; IAM users ``admin`` (everything),
    ``reader`` (GetParameter, GetSecretValue, kms:Decrypt) and ``outsider``
    (DescribeParameters only); then every call must be signed by one of them."""
    import boto3

    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{url}/moto-api/data.json", timeout=2)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.1)
    iam = boto3.client(
        "iam",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    keys = {}
    for user, actions in (
        ("admin", ("*",)),
        ("reader", ("ssm:GetParameter", "secretsmanager:GetSecretValue", "kms:Decrypt")),
        ("outsider", ("ssm:DescribeParameters",)),
    ):
        iam.create_user(UserName=user)
        iam.put_user_policy(
            UserName=user, PolicyName=f"{user}-policy", PolicyDocument=_policy(*actions)
        )
        created = iam.create_access_key(UserName=user)["AccessKey"]
        keys[user] = (created["AccessKeyId"], created["SecretAccessKey"])
    # From here on moto authenticates and authorizes every call (IAM enforcement).
    httpx.post(f"{url}/moto-api/reset-auth", content=b"0", timeout=5).raise_for_status()
    yield SimpleNamespace(url=url, keys=keys)
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def aws(moto_server, settings, monkeypatch):
    """Inferia's AWS settings point at moto as the ``reader`` user (the operator's
    environment); ``ssm``/``sm`` are admin clients to create and rotate values;
    ``name(...)`` makes a name unique to this test (the server lives all session)."""
    import boto3

    def as_user(user: str) -> None:
        access_key, secret_key = moto_server.keys[user]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret_key)
        secret_refs.clear_cache()

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    settings.INFERIA_AWS_ENDPOINT_URL = moto_server.url
    settings.INFERIA_SECRET_REF_ALLOWLIST = ALLOWLIST
    as_user("reader")
    admin_key, admin_secret = moto_server.keys["admin"]
    admin = {
        "endpoint_url": moto_server.url,
        "region_name": REGION,
        "aws_access_key_id": admin_key,
        "aws_secret_access_key": admin_secret,
    }
    suffix = uuid.uuid4().hex[:10]
    yield SimpleNamespace(
        url=moto_server.url,
        ssm=boto3.client("ssm", **admin),
        sm=boto3.client("secretsmanager", **admin),
        as_user=as_user,
        name=lambda base: f"{base}-{suffix}",
    )
    secret_refs.clear_cache()


@pytest.fixture(scope="session")
def vault_server():
    server = VaultServer().start()
    yield server
    server.stop()


@pytest.fixture
def vault(vault_server, settings):
    """Inferia's Vault settings (VAULT_ADDR, VAULT_TOKEN) point at the local KV v2 server."""
    vault_server.secrets.clear()
    vault_server.tokens.clear()
    vault_server.requests.clear()
    vault_server.tokens["inferia-token"] = ["secret/inferia/"]
    settings.VAULT_ADDR = vault_server.url
    settings.VAULT_TOKEN = "inferia-token"
    settings.INFERIA_SECRET_REF_ALLOWLIST = ALLOWLIST
    secret_refs.clear_cache()
    yield vault_server
    secret_refs.clear_cache()


@pytest.fixture(scope="session")
def gcp_server():
    server = GcpSecretManagerServer().start()
    yield server
    server.stop()


@pytest.fixture
def gcp(gcp_server, settings):
    """The official client, REST transport, anonymous credentials, on the local server."""
    gcp_server.secrets.clear()
    gcp_server.denied.clear()
    gcp_server.requests.clear()
    settings.INFERIA_GCP_SECRET_MANAGER_ENDPOINT = gcp_server.url
    settings.INFERIA_GCP_CREDENTIALS = "anonymous"
    settings.INFERIA_SECRET_REF_ALLOWLIST = ALLOWLIST
    secret_refs.clear_cache()
    yield gcp_server
    secret_refs.clear_cache()


@pytest.fixture(scope="session")
def azure_server(tmp_path_factory):
    server = AzureKeyVaultServer(tmp_path_factory.mktemp("azure-kv")).start()
    yield server
    server.stop()


class StaticTokenCredential:
    """An Azure credential whose tokens are fixed (the server knows them); it records
    the scopes and tenant the SDK asked for after Key Vault's challenge."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.asked: list[tuple[tuple[str, ...], str | None]] = []

    def get_token(self, *scopes: str, **kwargs):
        from azure.core.credentials import AccessToken

        self.asked.append((scopes, kwargs.get("tenant_id")))
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture
def azure(azure_server, settings, monkeypatch):
    """SecretClient on the local HTTPS vault: the operator's URL template and CA
    bundle, a static-token credential in place of DefaultAzureCredential."""
    azure_server.secrets.clear()
    azure_server.versions.clear()
    azure_server.tokens.clear()
    azure_server.requests.clear()
    azure_server.tokens["reader-token"] = None
    credential = StaticTokenCredential("reader-token")
    monkeypatch.setattr(azure_backend, "_credential", lambda: credential)
    # Every vault name maps to the one local server (the template has no {vault}).
    settings.INFERIA_AZURE_KEYVAULT_URL = azure_server.url
    settings.INFERIA_AZURE_KEYVAULT_CA_BUNDLE = str(azure_server.cert_path)
    settings.INFERIA_AZURE_KEYVAULT_VERIFY_CHALLENGE_RESOURCE = False
    settings.INFERIA_SECRET_REF_ALLOWLIST = ALLOWLIST
    secret_refs.clear_cache()
    azure_server.credential = credential
    yield azure_server
    secret_refs.clear_cache()
