"""Deleting an org takes its custom roles, memberships and invitations with it."""

from __future__ import annotations

from orgs.access import access_for_user
from orgs.models import Invitation, Membership, Organization, Role
from orgs.scoping import org_scope
from orgs.services import tenancy
from tests.conftest import PASSWORD, add_member, make_user


def test_deleting_an_org_removes_its_custom_roles_members_and_invitations(
    db, django_capture_on_commit_callbacks
):
    alice = make_user("alice")
    bob = make_user("bob")
    org = tenancy.organization_create(user=alice, slug="acme", name="Acme")
    with org_scope(org):
        access = access_for_user(org, alice)
        role = tenancy.role_create(access=access, slug="ops", name="Ops", permissions=["org:view"])
        m = add_member(org, bob, "member")
        tenancy.member_change_role(access=access, membership=m, role=role)
        with django_capture_on_commit_callbacks(execute=True):
            tenancy.invitation_create(access=access, email="x@example.com", role=role)
        tenancy.organization_delete(access=access, otp_code=None, password=PASSWORD)
    assert not Organization.objects.exists()
    assert not Membership.all_orgs.exists()
    assert not Invitation.all_orgs.exists()
    assert not Role.objects.filter(org__isnull=False).exists()
    assert Role.objects.filter(org__isnull=True).count() == 4
