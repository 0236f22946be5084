"""/api/v1/orgs/{org}/identity-providers, /sso-domains and mapping rules: who may,
cross-org 404s, validation errors in the envelope, write-only secrets, SSRF, audit."""

from __future__ import annotations

from audit.models import AuditRecord
from sso.models import IdentityProvider, VerifiedDomain
from tests.conftest import assert_error, client_for
from tests.sso.conftest import make_oidc, self_signed_pem

URL = "/api/v1/orgs/{org}/identity-providers"
OIDC = {
    "name": "okta",
    "kind": "oidc",
    "issuer": "https://idp.example.com",
    "client_id": "inferia",
    "client_secret": "s3cret-plaintext-value",
}


def test_owner_creates_oidc_provider_secret_is_write_only_and_encrypted(cast, alice_client):
    response = alice_client.post(URL.format(org="acme"), OIDC, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["has_client_secret"] is True
    assert "client_secret" not in body and "s3cret-plaintext-value" not in response.content.decode()
    assert body["redirect_uri"].endswith("/auth/sso/acme/oidc/callback")
    assert body["default_role"]["slug"] == "member"
    row = IdentityProvider.all_orgs.get(pk=body["id"])
    assert row.encrypted_client_secret and "s3cret" not in row.encrypted_client_secret
    from sso.protocols import client_secret_plaintext

    assert client_secret_plaintext(row) == "s3cret-plaintext-value"
    record = AuditRecord.objects.get(action="sso:manage", target_id=str(row.pk))
    assert record.outcome == "success" and "s3cret" not in str(record.data)
    listed = alice_client.get(URL.format(org="acme")).json()
    assert [p["name"] for p in listed["results"]] == ["okta"]
    assert "s3cret" not in str(listed)


def test_admin_may_member_viewer_may_not_anonymous_401(
    cast, dave_client, bob_client, vera_client, anon_client
):
    assert dave_client.post(URL.format(org="acme"), OIDC, format="json").status_code == 201
    assert_error(bob_client.get(URL.format(org="acme")), 403, "PERMISSION_DENIED")
    assert_error(
        vera_client.post(URL.format(org="acme"), OIDC, format="json"), 403, "PERMISSION_DENIED"
    )
    assert_error(anon_client.get(URL.format(org="acme")), 401, "AUTHENTICATION_FAILED")


def test_other_org_gets_404_for_list_and_for_a_provider_id(cast, charlie_client):
    provider = make_oidc(cast)
    assert_error(charlie_client.get(URL.format(org="acme")), 404, "NOT_FOUND")
    for method in ("get", "patch", "delete"):
        response = getattr(charlie_client, method)(
            f"{URL.format(org='globex')}/{provider.pk}", {}, format="json"
        )
        assert_error(response, 404, "NOT_FOUND")
    assert IdentityProvider.all_orgs.filter(pk=provider.pk).exists()


def test_validation_errors_in_the_envelope(cast, alice_client):
    missing = dict(OIDC)
    del missing["issuer"], missing["client_secret"]
    error = assert_error(
        alice_client.post(URL.format(org="acme"), missing, format="json"), 400, "VALIDATION_ERROR"
    )
    assert "issuer" in error["details"]
    wrong_kind = {**OIDC, "sso_url": "https://idp.example.com/sso"}
    error = assert_error(
        alice_client.post(URL.format(org="acme"), wrong_kind, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    assert "sso_url" in error["details"]
    unknown = {**OIDC, "encrypted_client_secret": "x"}
    error = assert_error(
        alice_client.post(URL.format(org="acme"), unknown, format="json"), 400, "VALIDATION_ERROR"
    )
    assert "encrypted_client_secret" in error["details"]
    no_openid = {**OIDC, "scopes": ["email"]}
    error = assert_error(
        alice_client.post(URL.format(org="acme"), no_openid, format="json"), 400, "VALIDATION_ERROR"
    )
    assert "scopes" in error["details"]
    assert not IdentityProvider.all_orgs.exists()


def test_private_issuer_refused_unless_the_org_lists_it(cast, alice_client, settings):
    settings.INFERIA_PRIVATE_HOSTS_ALLOWED = ["127.0.0.1"]
    local = {**OIDC, "issuer": "http://127.0.0.1:9101"}
    error = assert_error(
        alice_client.post(URL.format(org="acme"), local, format="json"), 400, "VALIDATION_ERROR"
    )
    assert "issuer" in error["details"]
    metadata = {"name": "saml", "kind": "saml", "metadata_url": "http://169.254.169.254/latest"}
    error = assert_error(
        alice_client.post(URL.format(org="acme"), metadata, format="json"), 400, "VALIDATION_ERROR"
    )
    assert "metadata_url" in error["details"]
    response = alice_client.patch(
        "/api/v1/orgs/acme",
        {"settings": {"allowed_private_hosts": ["127.0.0.1:9101"]}},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert alice_client.post(URL.format(org="acme"), local, format="json").status_code == 201


def test_saml_provider_shows_our_sp_entity_id_and_acs_url(cast, alice_client):
    body = {
        "name": "adfs",
        "kind": "saml",
        "idp_entity_id": "https://idp.example.com/saml",
        "sso_url": "https://idp.example.com/saml/sso",
        "signing_certificates": [self_signed_pem()],
        "emails_verified": True,
    }
    response = alice_client.post(URL.format(org="acme"), body, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["acs_url"].endswith(f"/auth/sso/acme/saml/{data['id']}/acs")
    assert data["sp_entity_id"].endswith(f"/auth/sso/acme/saml/{data['id']}/metadata")
    bad = {**body, "name": "bad", "signing_certificates": ["not a certificate"]}
    error = assert_error(
        alice_client.post(URL.format(org="acme"), bad, format="json"), 400, "VALIDATION_ERROR"
    )
    assert "signing_certificates" in error["details"]


def test_saml_provider_from_metadata_xml_with_its_attribute_names(cast, alice_client, idp):
    """The IdP's metadata fills entity id, SSO URL and certificate (``sso.saml``'s
    parser); the attribute names are the org's and reach the protocol config."""
    from orgs.scoping import org_scope
    from sso import protocols

    body = {
        "name": "corp",
        "kind": "saml",
        "metadata_xml": idp.metadata(),
        "groups_attribute": "memberOf",
        "email_attribute": "mail",
        "name_attribute": "cn",
        "subject_attribute": "employeeNumber",
        "emails_verified": True,
    }
    response = alice_client.post(URL.format(org="acme"), body, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert (data["idp_entity_id"], data["sso_url"]) == (idp.entity_id, idp.sso_url)
    assert [c.split() for c in data["signing_certificates"]] == [idp.cert_pem.decode().split()]
    assert (data["groups_attribute"], data["email_attribute"]) == ("memberOf", "mail")
    assert (data["name_attribute"], data["subject_attribute"]) == ("cn", "employeeNumber")
    provider = IdentityProvider.all_orgs.get(pk=data["id"])
    with org_scope(cast.acme):
        _sp, config = protocols._saml_configs(provider, "https://inferia.example.com")
    assert (config.groups_attribute, config.email_attribute) == ("memberOf", "mail")
    assert (config.name_attribute, config.subject_attribute) == ("cn", "employeeNumber")
    assert config.emails_verified is True and config.allow_idp_initiated is False

    # Without a groups attribute given: "groups"; an empty one: no groups.
    other = alice_client.post(
        URL.format(org="acme"),
        {"name": "plain", "kind": "saml", "metadata_xml": idp.metadata()},
        format="json",
    )
    assert other.json()["groups_attribute"] == "groups"
    patched = alice_client.patch(
        f"{URL.format(org='acme')}/{other.json()['id']}", {"groups_attribute": ""}, format="json"
    )
    assert patched.status_code == 200 and patched.json()["groups_attribute"] == ""

    bad = {**body, "name": "bad", "metadata_xml": "<!DOCTYPE x><EntityDescriptor/>"}
    error = assert_error(
        alice_client.post(URL.format(org="acme"), bad, format="json"), 400, "VALIDATION_ERROR"
    )
    assert "metadata_xml" in error["details"]
    oidc_field = {**body, "name": "mixed", "groups_claim": "groups"}
    error = assert_error(
        alice_client.post(URL.format(org="acme"), oidc_field, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    assert "groups_claim" in error["details"]


def test_replacing_the_secret_and_deleting_are_audited(cast, alice_client):
    provider = make_oidc(cast)
    before = IdentityProvider.all_orgs.get(pk=provider.pk).encrypted_client_secret
    url = f"{URL.format(org='acme')}/{provider.pk}"
    response = alice_client.patch(url, {"client_secret": "new-secret-value"}, format="json")
    assert response.status_code == 200, response.content
    assert IdentityProvider.all_orgs.get(pk=provider.pk).encrypted_client_secret != before
    assert (
        alice_client.patch(url, {"is_enabled": False}, format="json").json()["is_enabled"] is False
    )
    assert alice_client.delete(url).status_code == 204
    ops = sorted(
        AuditRecord.objects.filter(action="sso:manage", target_id=str(provider.pk)).values_list(
            "data__op", flat=True
        )
    )
    assert ops == ["provider_create", "provider_delete", "provider_disable", "provider_update"]


# --- domains -------------------------------------------------------------------------------

DOMAINS = "/api/v1/orgs/{org}/sso-domains"


def test_admin_claims_only_owner_confirms_with_the_challenge(cast, dave_client, alice_client):
    response = dave_client.post(
        DOMAINS.format(org="acme"), {"domain": "Acme.Example.com"}, format="json"
    )
    assert response.status_code == 201, response.content
    claimed = response.json()
    assert claimed["status"] == "pending" and claimed["domain"] == "acme.example.com"
    assert claimed["challenge"] is None  # shown to Owners only
    confirm = f"{DOMAINS.format(org='acme')}/{claimed['id']}/confirm"
    challenge = VerifiedDomain.all_orgs.get(pk=claimed["id"]).challenge
    assert_error(
        dave_client.post(confirm, {"challenge": challenge}, format="json"), 403, "PERMISSION_DENIED"
    )
    shown = alice_client.get(DOMAINS.format(org="acme")).json()["results"][0]["challenge"]
    assert shown == challenge
    assert_error(
        alice_client.post(confirm, {"challenge": "wrong"}, format="json"), 400, "VALIDATION_ERROR"
    )
    failed = AuditRecord.objects.get(action="sso:manage", outcome="failure")
    assert failed.data["reason"] == "bad_challenge"
    response = alice_client.post(confirm, {"challenge": challenge}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "verified"


def test_a_domain_is_verified_by_one_org_only(cast, alice_client, charlie_client):
    from tests.sso.conftest import verify_domain

    verify_domain(cast, "acme.example.com")
    error = assert_error(
        charlie_client.post(
            DOMAINS.format(org="globex"), {"domain": "acme.example.com"}, format="json"
        ),
        409,
        "CONFLICT",
    )
    assert "domain" in error["details"]
    # A claim still pending in another org cannot be confirmed once one org verified it.
    assert_error(
        alice_client.post(DOMAINS.format(org="acme"), {"domain": "not a domain"}, format="json"),
        400,
        "VALIDATION_ERROR",
    )


def test_other_org_domain_is_404(cast, charlie_client):
    from tests.sso.conftest import verify_domain

    verified = verify_domain(cast)
    url = f"{DOMAINS.format(org='globex')}/{verified.pk}"
    assert_error(charlie_client.get(url), 404, "NOT_FOUND")
    assert_error(
        charlie_client.post(url + "/confirm", {"challenge": "x"}, format="json"), 404, "NOT_FOUND"
    )
    assert_error(charlie_client.delete(url), 404, "NOT_FOUND")


# --- mapping rules -------------------------------------------------------------------------


def test_mapping_rules_bounded_by_their_maker(cast, alice_client, dave_client, charlie_client):
    provider = make_oidc(cast)
    url = f"{URL.format(org='acme')}/{provider.pk}/mappings"
    assert_error(
        dave_client.post(url, {"group": "root", "role": "owner"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    response = dave_client.post(url, {"group": "eng-admins", "role": "admin"}, format="json")
    assert response.status_code == 201, response.content
    assert_error(
        dave_client.post(url, {"group": "nothing"}, format="json"), 400, "VALIDATION_ERROR"
    )
    assert_error(
        dave_client.post(url, {"group": "eng-admins", "role": "member"}, format="json"),
        409,
        "CONFLICT",
    )
    assert (
        alice_client.post(url, {"group": "root", "role": "owner"}, format="json").status_code == 201
    )
    assert [r["group"] for r in alice_client.get(url).json()["results"]] == ["eng-admins", "root"]
    assert_error(
        charlie_client.get(f"{URL.format(org='globex')}/{provider.pk}/mappings"), 404, "NOT_FOUND"
    )
    rule_id = response.json()["id"]
    assert dave_client.delete(f"{url}/{rule_id}").status_code == 204


def test_api_keys_cannot_configure_sso(cast, alice_client):
    response = alice_client.post(
        "/api/v1/orgs/acme/api-keys", {"name": "k", "permissions": ["sso:manage"]}, format="json"
    )
    assert response.status_code == 201, response.content
    from rest_framework.test import APIClient

    key_client = APIClient()
    key_client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['key']}")
    assert_error(
        key_client.post(URL.format(org="acme"), OIDC, format="json"), 403, "PERMISSION_DENIED"
    )
    assert client_for(cast.alice).get(URL.format(org="acme")).json()["count"] == 0
