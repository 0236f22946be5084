"""Authentication events of an org's members (failed logins, lockouts, 2FA changes,
refresh-token reuse) show in that org's audit log, for ``audit_log:view`` holders;
events of non-members, and of other orgs, never do."""

from __future__ import annotations

from rest_framework.test import APIClient

from audit.models import AuditRecord
from tests.conftest import PASSWORD, assert_error, enable_totp, to_step_start

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"


def actions(client, org: str, **query) -> list[tuple[str, str, str]]:
    response = client.get(f"/api/v1/orgs/{org}/audit-logs", {"page_size": 500, **query})
    assert response.status_code == 200, response.content
    return [(r["action"], r["outcome"], r["actor"]) for r in response.json()["results"]]


def test_member_auth_events_are_visible_to_their_org_only(cast, alice_client, charlie_client):
    anon = APIClient()
    # bob (Acme member): a failed login, a login, a refresh-token reuse.
    assert (
        anon.post(LOGIN, {"username": "bob", "password": "nope"}, format="json").status_code == 401
    )
    tokens = anon.post(LOGIN, {"username": "bob", "password": PASSWORD}, format="json").json()
    assert (
        anon.post(REFRESH, {"refresh_token": tokens["refresh_token"]}, format="json").status_code
        == 200
    )
    reuse = anon.post(REFRESH, {"refresh_token": tokens["refresh_token"]}, format="json")
    assert_error(reuse, 401, "AUTHENTICATION_FAILED")
    # charlie (Globex only): a failed login and 2FA turned on.
    anon.post(LOGIN, {"username": "charlie", "password": "nope"}, format="json")
    to_step_start()
    enable_totp(charlie_client, cast.charlie)
    assert AuditRecord.objects.filter(org__isnull=True, action="auth:refresh_reuse").exists()

    acme = actions(alice_client, "acme", action="auth:*")
    assert ("auth:login", "failure", "bob") in acme
    assert ("auth:login", "success", "bob") in acme
    assert ("auth:refresh_reuse", "denied", "bob") in acme
    assert all(label != "charlie" for _a, _o, label in acme)

    globex = actions(charlie_client, "globex", action="auth:*")
    assert ("auth:login", "failure", "charlie") in globex
    assert ("auth:2fa_enable", "success", "charlie") in globex
    assert all(label != "bob" for _a, _o, label in globex)


def test_events_of_a_removed_member_or_a_stranger_do_not_show(cast, alice_client):
    anon = APIClient()
    anon.post(LOGIN, {"username": "charlie", "password": "nope"}, format="json")
    anon.post(LOGIN, {"username": "ghost", "password": "nope"}, format="json")
    labels = {label for _a, _o, label in actions(alice_client, "acme", action="auth:*")}
    assert "charlie" not in labels and "ghost" not in labels
