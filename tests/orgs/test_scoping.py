"""Tenant scoping: the scoped manager fails loudly, hides other orgs and refuses foreign writes."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from datetime import timedelta

import pytest

from inferia import clock
from inferia.api import OrgAPIView
from orgs import scoping
from orgs.models import Invitation, Membership, Team, TeamMember
from orgs.scoping import OrgScopeError, current_org, current_org_or_none, org_scope
from tests.conftest import builtin_role

SCOPED_MODELS = [Membership, Team, TeamMember, Invitation]


@pytest.fixture
def teams(cast):
    return (
        Team.all_orgs.create(org=cast.acme, slug="acme-team", name="Acme team"),
        Team.all_orgs.create(org=cast.globex, slug="globex-team", name="Globex team"),
    )


@pytest.mark.parametrize("model", SCOPED_MODELS, ids=lambda m: m.__name__)
def test_scoped_manager_raises_without_a_scope(cast, model):
    assert current_org_or_none() is None
    with pytest.raises(OrgScopeError):
        model.objects.all()
    with pytest.raises(OrgScopeError):
        model.objects.count()
    with pytest.raises(OrgScopeError):
        model.objects.filter(org=cast.acme).exists()  # even an explicit filter needs the scope
    with pytest.raises(OrgScopeError):
        current_org()


def test_invitation_queryset_methods_are_scoped_too(cast):
    with pytest.raises(OrgScopeError):
        Invitation.objects.pending()


def test_all_orgs_is_the_explicit_cross_org_manager(cast, teams):
    assert Team.all_orgs.count() == 2
    assert Membership.all_orgs.filter(org=cast.globex).count() == 1


def test_other_orgs_rows_are_invisible_inside_a_scope(cast, teams):
    acme_team, globex_team = teams
    with org_scope(cast.acme):
        assert list(Team.objects.all()) == [acme_team]
        assert not Team.objects.filter(pk=globex_team.pk).exists()
        with pytest.raises(Team.DoesNotExist):
            Team.objects.get(pk=globex_team.pk)
        assert set(Membership.objects.values_list("user__username", flat=True)) == {
            "alice",
            "bob",
            "vera",
            "dave",
        }
        # Filtering for the other org explicitly still yields nothing.
        assert not Membership.objects.filter(org=cast.globex).exists()
    with org_scope(cast.globex):
        assert list(Team.objects.all()) == [globex_team]
        assert list(Membership.objects.values_list("user__username", flat=True)) == ["charlie"]


def test_bulk_update_and_delete_stay_inside_the_scope(cast, teams):
    acme_team, globex_team = teams
    with org_scope(cast.acme):
        assert Team.objects.update(name="Renamed") == 1
        assert Team.objects.all().delete()[0] == 1
    globex_team.refresh_from_db()
    assert globex_team.name == "Globex team"
    assert not Team.all_orgs.filter(pk=acme_team.pk).exists()


def test_saving_a_row_for_another_org_inside_a_scope_raises(cast, teams):
    _, globex_team = teams
    with org_scope(cast.acme):
        with pytest.raises(OrgScopeError):
            Team(org=cast.globex, slug="sneaky", name="Sneaky").save()
        with pytest.raises(OrgScopeError):
            Team.objects.create(org=cast.globex, slug="sneaky", name="Sneaky")
        # An existing foreign row, fetched cross-org, cannot be written either.
        foreign = Team.all_orgs.get(pk=globex_team.pk)
        foreign.name = "Hijacked"
        with pytest.raises(OrgScopeError):
            foreign.save(update_fields=["name"])
        with pytest.raises(OrgScopeError):
            Membership(org=cast.globex, user=cast.bob, role=builtin_role("member")).save()
    assert not Team.all_orgs.filter(slug="sneaky").exists()
    globex_team.refresh_from_db()
    assert globex_team.name == "Globex team"
    assert not Membership.all_orgs.filter(org=cast.globex, user=cast.bob).exists()


def test_saving_a_row_for_the_active_org_works(cast):
    with org_scope(cast.acme):
        team = Team.objects.create(org=cast.acme, slug="fine", name="Fine")
        TeamMember.objects.create(org=cast.acme, team=team, user=cast.bob)
        Invitation.objects.create(
            org=cast.acme,
            email="x@example.com",
            role=builtin_role("member"),
            token_digest=hashlib.sha256(b"t").hexdigest(),
            expires_at=clock.now() + timedelta(days=1),
        )
    assert Team.all_orgs.get(slug="fine").org == cast.acme


def test_scopes_nest_and_restore(cast):
    with org_scope(cast.acme):
        assert current_org() == cast.acme
        with org_scope(cast.globex):
            assert current_org() == cast.globex
        assert current_org() == cast.acme
    assert current_org_or_none() is None


def test_scope_is_restored_after_an_exception(cast):
    with pytest.raises(ZeroDivisionError), org_scope(cast.acme):
        1 / 0  # noqa: B018
    assert current_org_or_none() is None


def test_activate_and_deactivate(cast):
    token = scoping.activate(cast.globex)
    try:
        assert current_org() == cast.globex
    finally:
        scoping.deactivate(token)
    assert current_org_or_none() is None


def test_scope_does_not_leak_into_another_thread(cast):
    seen = []
    with org_scope(cast.acme):
        thread = threading.Thread(target=lambda: seen.append(current_org_or_none()))
        thread.start()
        thread.join()
    assert seen == [None]


def test_scope_is_per_async_task(cast):
    async def in_scope(org, results):
        with org_scope(org):
            await asyncio.sleep(0)
            results.append(current_org().slug)

    async def main():
        results = []
        await asyncio.gather(in_scope(cast.acme, results), in_scope(cast.globex, results))
        return results

    assert sorted(asyncio.run(main())) == ["acme", "globex"]
    assert current_org_or_none() is None


def test_a_request_leaves_no_scope_behind(cast, alice_client, charlie_client):
    assert alice_client.get("/api/v1/orgs/acme/members").status_code == 200
    assert current_org_or_none() is None
    assert charlie_client.get("/api/v1/orgs/acme/members").status_code == 404
    assert current_org_or_none() is None


@pytest.mark.parametrize("owned", ["get_queryset", "get_object", "dispatch", "initial"])
def test_org_views_cannot_override_the_owned_methods(owned):
    with pytest.raises(TypeError, match=owned):
        type(
            "BadView",
            (OrgAPIView,),
            {owned: lambda self, *a, **k: None, "required_permissions": {}},
        )


def test_org_view_with_get_scoped_queryset_is_accepted():
    class GoodView(OrgAPIView):
        required_permissions = {"GET": "member:view"}

        def get_scoped_queryset(self):
            return Team.objects.all()

    assert GoodView.required_permissions == {"GET": "member:view"}


def test_subclass_of_a_good_view_is_checked_too():
    class GoodView(OrgAPIView):
        def get_scoped_queryset(self):
            return Team.objects.all()

    with pytest.raises(TypeError):

        class Sneaky(GoodView):  # noqa: F841
            def get_queryset(self):
                return Team.all_orgs.all()


@pytest.mark.parametrize("manager", ["objects", "all_orgs"])
def test_bulk_create_of_a_foreign_row_inside_a_scope_raises(cast, manager):
    with org_scope(cast.acme), pytest.raises(OrgScopeError):
        getattr(Team, manager).bulk_create([Team(org=cast.globex, slug="sneaky", name="Sneaky")])
    with org_scope(cast.acme), pytest.raises(OrgScopeError):
        getattr(Invitation, manager).bulk_create(
            [
                Invitation(
                    org=cast.globex,
                    email="x@example.com",
                    role=builtin_role("member"),
                    token_digest=hashlib.sha256(b"t").hexdigest(),
                    expires_at=clock.now() + timedelta(days=1),
                )
            ]
        )
    assert not Team.all_orgs.filter(slug="sneaky").exists()
    assert not Invitation.all_orgs.exists()
    with org_scope(cast.acme):
        getattr(Team, manager).bulk_create([Team(org=cast.acme, slug="fine", name="Fine")])
    assert Team.all_orgs.get(slug="fine").org == cast.acme


@pytest.mark.parametrize("manager", ["objects", "all_orgs"])
def test_moving_rows_to_another_org_inside_a_scope_raises(cast, teams, manager):
    acme_team, _ = teams
    with org_scope(cast.acme):
        with pytest.raises(OrgScopeError):
            getattr(Team, manager).filter(pk=acme_team.pk).update(org=cast.globex)
        with pytest.raises(OrgScopeError):
            getattr(Team, manager).filter(pk=acme_team.pk).update(org_id=cast.globex.pk)
        # Updating other fields, or "moving" to the active org, is fine.
        assert (
            getattr(Team, manager).filter(pk=acme_team.pk).update(name="Renamed", org=cast.acme)
            == 1
        )
    acme_team.refresh_from_db()
    assert acme_team.org == cast.acme and acme_team.name == "Renamed"


def test_cross_org_writes_without_a_scope_stay_possible_for_operators(cast, teams):
    """Admin and migrations work without a scope through all_orgs."""
    acme_team, _ = teams
    assert Team.all_orgs.filter(pk=acme_team.pk).update(name="By operator") == 1
    Team.all_orgs.bulk_create([Team(org=cast.globex, slug="ops-made", name="Ops made")])
    assert Team.all_orgs.filter(slug="ops-made", org=cast.globex).exists()
