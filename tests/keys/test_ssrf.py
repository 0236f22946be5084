"""SSRF guard on provider base URLs: loopback, private, link-local, metadata and
non-http URLs are refused (VALIDATION_ERROR on base_url) unless the org lists
the exact host or host:port in allowed_private_hosts. No network is needed:
IP literals need no DNS, and host names go through a fake resolver."""

from __future__ import annotations

import re
import socket

import pytest

from keys.models import ProviderAccount
from tests.conftest import assert_error
from tests.keys.providers import PUBLIC_URL, accounts_url, create_account

REFUSED = [
    "http://127.0.0.1/v1",
    "http://127.0.0.1:9000/v1",  # the allowed port of another org's setting does not matter here
    "http://localhost:8000",
    "http://LOCALHOST./v1",
    "http://[::1]:8080",
    "http://10.0.0.8",
    "http://10.255.255.254:443",
    "http://172.16.0.1",
    "http://172.31.255.255",
    "http://192.168.1.10/v1",
    "http://169.254.169.254/latest/meta-data",
    "http://metadata.google.internal/computeMetadata/v1",
    "http://metadata.google.internal.",
    "http://0.0.0.0:8000",
    "http://0",
    "http://[::]",
    "http://[::ffff:127.0.0.1]",
    "http://[::ffff:169.254.169.254]",
    "http://[fe80::1]",
    "http://[fc00::1]",  # unique local
    "http://[2002:7f00:1::]",  # 6to4 wrapping 127.0.0.1
    "http://[2002:a9fe:a9fe::]",  # 6to4 wrapping 169.254.169.254
    "http://2130706433",  # 127.0.0.1 as one decimal number
    "http://0x7f000001",
    "http://127.1",
    "http://100.64.0.1",  # carrier-grade NAT
    "http://224.0.0.1",  # multicast
    "http://192.0.2.1",  # documentation range
    "file:///etc/passwd",
    "gopher://8.8.8.8:70/_",
    "ftp://8.8.8.8/",
    "dict://8.8.8.8:11211/",
    "8.8.8.8",  # no scheme
    "http://user:pass@8.8.8.8/v1",
    "http://token@8.8.8.8",
    "http://8.8.8.8\\@127.0.0.1/",
    "http://8.8.8.8/v1?target=127.0.0.1",
    "http://8.8.8.8/#frag",
    "http:///v1",
    "http://8.8.8.8:99999",
]

ACCEPTED = [
    ("https://8.8.8.8/v1", "https://8.8.8.8/v1"),
    ("https://8.8.8.8/v1/", "https://8.8.8.8/v1"),
    ("http://1.1.1.1:8443", "http://1.1.1.1:8443"),
    ("https://172.32.0.1", "https://172.32.0.1"),  # just outside 172.16.0.0/12
    ("https://[2001:4860:4860::8888]/v1", "https://[2001:4860:4860::8888]/v1"),
]

FAKE_DNS = {
    "api.public.test": ["8.8.8.8"],
    "rebind.test": ["8.8.8.8", "10.0.0.1"],  # one public, one private answer
    "internal-v6.test": ["fe80::1"],
    "metadata-alias.test": ["169.254.169.254"],
    "vllm.internal": ["10.0.0.5"],
    # Even if a resolver answered with a public address, the name itself is refused.
    "metadata.google.internal": ["8.8.8.8"],
    "metadata": ["8.8.8.8"],
}


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch):
    """Host names under our control resolve to fixed answers; others (.test) fail."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name in FAKE_DNS:
            asked.append(name)
            return [
                (
                    socket.AF_INET6 if ":" in address else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (address, port) if ":" not in address else (address, port, 0, 0),
                )
                for address in FAKE_DNS[name]
            ]
        if name and name.endswith(".test"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def _create(client, base_url, org="acme", name="target"):
    return client.post(
        accounts_url(org),
        {"name": name, "provider_type": "openai_compatible", "base_url": base_url},
        format="json",
    )


def _allow(org, hosts):
    org.settings = {**org.settings, "allowed_private_hosts": hosts}
    org.save(update_fields=["settings"])


@pytest.mark.parametrize("url", REFUSED)
def test_private_or_malformed_base_url_is_refused_on_create(cast, alice_client, url):
    error = assert_error(_create(alice_client, url), 400, "VALIDATION_ERROR")
    assert list(error["details"]) == ["base_url"], error
    assert error["details"]["base_url"] and all(
        isinstance(m, str) for m in error["details"]["base_url"]
    )
    assert not ProviderAccount.all_orgs.exists()


@pytest.mark.parametrize("url", REFUSED)
def test_private_or_malformed_base_url_is_refused_on_patch(cast, alice_client, url):
    account = create_account(alice_client)
    response = alice_client.patch(
        accounts_url("acme", account["id"]), {"base_url": url}, format="json"
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "base_url" in error["details"]
    assert ProviderAccount.all_orgs.get(pk=account["id"]).base_url == PUBLIC_URL


@pytest.mark.parametrize(("url", "stored"), ACCEPTED)
def test_public_ip_literal_is_accepted(cast, alice_client, url, stored):
    response = _create(alice_client, url)
    assert response.status_code == 201, response.content
    assert response.json()["base_url"] == stored
    assert ProviderAccount.all_orgs.get().base_url == stored


def test_public_host_name_is_accepted(cast, alice_client, fake_dns):
    response = _create(alice_client, "https://api.public.test/v1")
    assert response.status_code == 201, response.content
    assert fake_dns == ["api.public.test"]  # it was resolved and checked


@pytest.mark.parametrize(
    "url",
    ["http://metadata.google.internal", "http://METADATA.google.internal./x", "http://metadata"],
)
def test_metadata_host_names_are_refused_by_name(cast, alice_client, url):
    error = assert_error(_create(alice_client, url), 400, "VALIDATION_ERROR")
    assert any("metadata" in message for message in error["details"]["base_url"]), error
    assert not ProviderAccount.all_orgs.exists()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://rebind.test/v1", "non-public"),
        ("https://internal-v6.test", "non-public"),
        ("http://metadata-alias.test", "non-public"),
        ("https://nowhere.test", "does not resolve"),
    ],
)
def test_host_name_resolving_to_a_private_address_is_refused(cast, alice_client, url, why):
    error = assert_error(_create(alice_client, url), 400, "VALIDATION_ERROR")
    assert any(why in message for message in error["details"]["base_url"]), error
    assert not ProviderAccount.all_orgs.exists()


def test_allowed_private_host_and_port_allows_exactly_that(cast, alice_client):
    _allow(cast.acme, ["127.0.0.1:9000"])
    ok = _create(alice_client, "http://127.0.0.1:9000/v1", name="vllm")
    assert ok.status_code == 201, ok.content
    assert ok.json()["base_url"] == "http://127.0.0.1:9000/v1"
    for url in (
        "http://127.0.0.1:9001/v1",
        "http://127.0.0.1/v1",
        "http://localhost:9000/v1",
        "http://[::1]:9000",
        "http://10.0.0.1:9000",
    ):
        error = assert_error(_create(alice_client, url, name="other"), 400, "VALIDATION_ERROR")
        assert "base_url" in error["details"], url
    assert list(ProviderAccount.all_orgs.values_list("name", flat=True)) == ["vllm"]


def test_allowed_host_without_port_allows_any_port(cast, alice_client):
    _allow(cast.acme, ["vllm.internal"])
    for port, name in ((8000, "a"), (9999, "b")):
        response = _create(alice_client, f"http://vllm.internal:{port}/v1", name=name)
        assert response.status_code == 201, response.content
    error = assert_error(
        _create(alice_client, "http://10.0.0.5:8000/v1", name="c"), 400, "VALIDATION_ERROR"
    )
    assert "base_url" in error["details"]  # the address behind the name is not listed itself


def test_one_orgs_allowed_hosts_do_not_apply_to_another(cast, alice_client, charlie_client):
    _allow(cast.acme, ["127.0.0.1:9000"])
    assert _create(alice_client, "http://127.0.0.1:9000").status_code == 201
    error = assert_error(
        _create(charlie_client, "http://127.0.0.1:9000", org="globex"), 400, "VALIDATION_ERROR"
    )
    assert "base_url" in error["details"]
    assert not ProviderAccount.all_orgs.filter(org=cast.globex).exists()


def test_patch_base_url_is_checked_against_the_allowlist(cast, alice_client):
    _allow(cast.acme, ["127.0.0.1:9000"])
    account = create_account(alice_client)
    url = accounts_url("acme", account["id"])
    refused = alice_client.patch(url, {"base_url": "http://127.0.0.1:9001"}, format="json")
    assert "base_url" in assert_error(refused, 400, "VALIDATION_ERROR")["details"]
    allowed = alice_client.patch(url, {"base_url": "http://127.0.0.1:9000/v1"}, format="json")
    assert allowed.status_code == 200, allowed.content
    assert ProviderAccount.all_orgs.get(pk=account["id"]).base_url == "http://127.0.0.1:9000/v1"


def test_permission_is_checked_before_the_url(
    cast, vera_client, bob_client, alice_client, anon_client
):
    for client in (vera_client, bob_client):
        assert_error(_create(client, "http://169.254.169.254"), 403, "PERMISSION_DENIED")
    assert_error(_create(anon_client, "http://169.254.169.254"), 401, "AUTHENTICATION_FAILED")
    account = create_account(alice_client)
    assert_error(
        bob_client.patch(
            accounts_url("acme", account["id"]), {"base_url": PUBLIC_URL}, format="json"
        ),
        403,
        "PERMISSION_DENIED",
    )
    assert ProviderAccount.all_orgs.count() == 1


def test_other_org_cannot_repoint_an_account(cast, alice_client, charlie_client):
    _allow(cast.globex, ["127.0.0.1:9000"])
    account = create_account(alice_client)
    for org in ("acme", "globex"):
        response = charlie_client.patch(
            accounts_url(org, account["id"]), {"base_url": "http://127.0.0.1:9000"}, format="json"
        )
        assert_error(response, 404, "NOT_FOUND")
    assert ProviderAccount.all_orgs.get(pk=account["id"]).base_url == PUBLIC_URL


# --- the operator's admin form applies the same guard ------------------------------------------


def _admin_form(org, **overrides):
    data = {
        "org": org.pk,
        "name": "admin-made",
        "provider_type": "openai_compatible",
        "base_url": PUBLIC_URL,
        "api_version": "",
        "deployments": "{}",
        "enabled_models": "[]",
        "tags": "{}",
        "secret_ref": "",
        "new_secret": "",
    }
    data.update(overrides)
    return data


def _form_errors(response) -> list[str]:
    return re.findall(
        r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', response.content.decode(), re.S
    )


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest", "http://127.0.0.1:9001", "http://10.0.0.8"]
)
def test_admin_form_refuses_a_private_url(cast, admin_client, url):
    _allow(cast.acme, ["127.0.0.1:9000"])
    response = admin_client.post(
        "/admin/keys/provideraccount/add/", _admin_form(cast.acme, base_url=url)
    )
    assert response.status_code == 200  # the form again, with the error
    errors = " ".join(_form_errors(response))
    assert "non-public address" in errors, errors
    assert not ProviderAccount.all_orgs.exists()


def test_admin_form_accepts_the_orgs_allowed_host(cast, admin_client):
    _allow(cast.acme, ["127.0.0.1:9000"])
    response = admin_client.post(
        "/admin/keys/provideraccount/add/",
        _admin_form(cast.acme, base_url="http://127.0.0.1:9000/v1/"),
    )
    assert response.status_code == 302, _form_errors(response)
    assert ProviderAccount.all_orgs.get().base_url == "http://127.0.0.1:9000/v1"


def test_admin_form_refuses_repointing_an_account_to_a_private_url(
    cast, admin_client, alice_client
):
    account = ProviderAccount.all_orgs.get(pk=create_account(alice_client)["id"])
    data = _admin_form(
        cast.acme,
        name=account.name,
        provider_type=account.provider_type,
        base_url="http://[::ffff:127.0.0.1]:8080",
    )
    response = admin_client.post(f"/admin/keys/provideraccount/{account.pk}/change/", data)
    assert response.status_code == 200
    assert "non-public address" in " ".join(_form_errors(response))
    assert ProviderAccount.all_orgs.get(pk=account.pk).base_url == PUBLIC_URL
