"""sso.services.sign_in with the Claims the protocol modules return: just-in-time
provisioning, linking (never by an unverified e-mail), mapping rules added and taken
back at every sign-in, manual grants and the last Owner kept; every decision audited."""

from __future__ import annotations

import pytest

from audit.models import AuditRecord
from inferia.errors import PermissionDenied
from orgs.models import Membership, Role, TeamMember, User
from orgs.scoping import org_scope
from orgs.services import tenancy
from sso import services
from sso.models import SsoIdentity
from tests.conftest import add_member, make_user
from tests.sso.conftest import claims, make_oidc, owner_access


def sign_in(cast, provider, **changes):
    return services.sign_in(org=cast.acme, provider=provider, claims=claims(**changes), meta=None)


def refused_reason(cast, provider, **changes) -> str:
    with pytest.raises(PermissionDenied) as caught:
        sign_in(cast, provider, **changes)
    reason = caught.value.details["reason"]
    record = AuditRecord.objects.filter(action="auth:sso_login", outcome="denied").latest("seq")
    assert record.data["reason"] == reason and record.org_id == cast.acme.pk
    return reason


def role_of(org, user) -> str:
    return Membership.all_orgs.select_related("role").get(org=org, user=user).role.slug


def test_jit_provisions_a_verified_email_of_a_verified_domain(cast, oidc, domain):
    user = sign_in(cast, oidc)
    assert user.email == "erin@acme.example.com" and not user.has_usable_password()
    assert role_of(cast.acme, user) == "member"
    assert SsoIdentity.all_orgs.get(provider=oidc, subject="sub-1").user == user
    actions = set(AuditRecord.objects.filter(actor_user=user).values_list("action", "data__op"))
    assert ("auth:sso_provision", "user_create") in actions
    assert ("auth:sso_provision", "membership_create") in actions
    assert AuditRecord.objects.filter(
        action="auth:sso_login", outcome="success", actor_user=user
    ).exists()
    # The next sign-in finds the link: the same user, nothing provisioned again.
    assert sign_in(cast, oidc) == user
    assert User.objects.filter(email="erin@acme.example.com").count() == 1


def test_no_jit_for_unverified_email_or_unverified_domain(cast, oidc, domain):
    assert refused_reason(cast, oidc, email_verified=False) == "email_unverified"
    assert refused_reason(cast, oidc, email="erin@elsewhere.example.org") == "domain_unverified"
    assert not User.objects.filter(
        email__in=["erin@acme.example.com", "erin@elsewhere.example.org"]
    ).exists()


def test_existing_account_is_never_linked_by_an_unverified_email(cast, oidc, domain):
    victim = make_user("erin", email="erin@acme.example.com")
    add_member(cast.acme, victim, "member")
    assert refused_reason(cast, oidc, email_verified=False) == "email_unverified"
    assert not SsoIdentity.all_orgs.exists()


def test_existing_account_linked_only_when_it_belongs_to_this_org_alone(cast, oidc, domain):
    erin = make_user("erin", email="Erin@Acme.example.com")
    # Not a member here: not linked (the org's IdP does not speak for strangers).
    assert refused_reason(cast, oidc) == "link_refused"
    add_member(cast.acme, erin, "member")
    add_member(cast.globex, erin, "viewer")
    # Also a member of another org: the org's IdP could take over that access too.
    assert refused_reason(cast, oidc) == "link_refused"
    Membership.all_orgs.filter(org=cast.globex, user=erin).delete()
    assert sign_in(cast, oidc) == erin
    link = AuditRecord.objects.get(action="auth:sso_link")
    assert link.actor_user == erin and link.data["via"] == "verified_email"


def test_a_linked_person_removed_from_the_org_needs_the_jit_conditions(cast, oidc, domain):
    user = sign_in(cast, oidc)
    Membership.all_orgs.filter(org=cast.acme, user=user).delete()
    assert refused_reason(cast, oidc, email_verified=False) == "not_a_member"
    assert sign_in(cast, oidc) == user  # verified again: provisioned again
    assert role_of(cast.acme, user) == "member"


def test_disabled_provider_and_inactive_user_refused(cast, oidc, domain):
    user = sign_in(cast, oidc)
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert refused_reason(cast, oidc) == "user_inactive"
    with org_scope(cast.acme):
        services.identity_provider_set_enabled(
            access=owner_access(cast.acme, cast.alice), provider=oidc, enabled=False
        )
    oidc.refresh_from_db()
    assert refused_reason(cast, oidc) == "provider_disabled"


def _rule(cast, provider, group, role=None, team=None, actor=None):
    with org_scope(cast.acme):
        return services.mapping_create(
            access=owner_access(cast.acme, actor or cast.alice),
            provider=provider,
            group=group,
            role=Role.objects.get(org__isnull=True, slug=role) if role else None,
            team=team,
        )


def test_groups_map_to_role_and_team_and_removed_groups_take_them_back(cast, oidc, domain):
    with org_scope(cast.acme):
        team = tenancy.team_create(access=owner_access(cast.acme, cast.alice), slug="ml", name="ML")
    _rule(cast, oidc, "admins", role="admin")
    _rule(cast, oidc, "ml", team=team)
    user = sign_in(cast, oidc, groups=("admins", "ml"))
    assert role_of(cast.acme, user) == "admin"
    assert TeamMember.all_orgs.filter(team=team, user=user).exists()
    change = AuditRecord.objects.get(action="member:update", data__via="sso")
    assert change.data["role_before"] == "member" and change.data["role_after"] == "admin"
    # Removed at the IdP: the role SSO gave and the team SSO joined are gone.
    sign_in(cast, oidc, groups=())
    assert role_of(cast.acme, user) == "member"
    assert not TeamMember.all_orgs.filter(team=team, user=user).exists()


def test_sso_raises_a_manual_role_and_restores_it_never_lowers_it(cast, oidc, domain):
    _rule(cast, oidc, "admins", role="admin")
    _rule(cast, oidc, "viewers", role="viewer")
    erin = make_user("erin", email="erin@acme.example.com")
    add_member(cast.acme, erin, "member")  # given by hand (an invitation)
    sign_in(cast, oidc, groups=("viewers",))
    assert role_of(cast.acme, erin) == "member"  # a narrower mapped role never lowers it
    kept = AuditRecord.objects.get(action="auth:sso_mapping", data__reason="manual_role_kept")
    assert kept.outcome == "denied"
    sign_in(cast, oidc, groups=("admins", "viewers"))
    assert role_of(cast.acme, erin) == "admin"  # the widest mapped role
    sign_in(cast, oidc, groups=())
    assert role_of(cast.acme, erin) == "member"  # the manual role comes back


def test_a_manual_change_after_sso_wins_and_a_manual_team_is_never_removed(cast, oidc, domain):
    with org_scope(cast.acme):
        team = tenancy.team_create(
            access=owner_access(cast.acme, cast.alice), slug="ops", name="Ops"
        )
    _rule(cast, oidc, "admins", role="admin")
    _rule(cast, oidc, "ops", team=team)
    user = sign_in(cast, oidc, groups=("admins",))
    with org_scope(cast.acme):
        membership = Membership.objects.get(user=user)
        tenancy.member_change_role(
            access=owner_access(cast.acme, cast.alice),
            membership=membership,
            role=Role.objects.get(org__isnull=True, slug="viewer"),
        )
        tenancy.team_member_add(
            access=owner_access(cast.acme, cast.alice), team=team, membership=membership
        )
    sign_in(cast, oidc, groups=())
    assert role_of(cast.acme, user) == "viewer"
    assert TeamMember.all_orgs.filter(team=team, user=user).exists()


def test_the_last_owner_is_never_demoted_by_sso(cast, oidc, domain):
    _rule(cast, oidc, "root", role="owner")
    user = sign_in(cast, oidc, groups=("root",))
    assert role_of(cast.acme, user) == "owner"
    with org_scope(cast.acme):
        Membership.objects.filter(user=cast.alice).update(
            role=Role.objects.get(org__isnull=True, slug="admin")
        )
    sign_in(cast, oidc, groups=())
    assert role_of(cast.acme, user) == "owner"
    assert AuditRecord.objects.filter(
        action="auth:sso_mapping", data__reason="last_owner_kept"
    ).exists()


def test_a_rule_is_bounded_by_its_maker_at_every_use(cast, oidc, domain):
    _rule(cast, oidc, "admins", role="admin", actor=cast.dave)
    user = sign_in(cast, oidc, groups=("admins",))
    assert role_of(cast.acme, user) == "admin"
    with org_scope(cast.acme):
        # The rule's maker was demoted since: the rule grants nothing any more.
        Membership.objects.filter(user=cast.dave).update(
            role=Role.objects.get(org__isnull=True, slug="member")
        )
    other = sign_in(cast, oidc, subject="sub-2", email="finn@acme.example.com", groups=("admins",))
    assert role_of(cast.acme, other) == "member"
    assert AuditRecord.objects.filter(
        action="auth:sso_mapping", data__reason="rule_grantor_lacks_permissions"
    ).exists()


def test_identities_are_per_provider_and_per_org(cast, oidc, domain):
    user = sign_in(cast, oidc)
    globex_idp = make_oidc(cast, org=cast.globex, owner=cast.charlie)
    with pytest.raises(PermissionDenied):
        # Globex has not verified acme.example.com: no JIT, no link there.
        services.sign_in(org=cast.globex, provider=globex_idp, claims=claims(), meta=None)
    with pytest.raises(PermissionDenied):
        # A provider of another org is never accepted for this one.
        services.sign_in(org=cast.acme, provider=globex_idp, claims=claims(), meta=None)
    assert not Membership.all_orgs.filter(org=cast.globex, user=user).exists()
