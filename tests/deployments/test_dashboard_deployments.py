"""The deployments pages: list, create form, detail with health and versions, edit,
rollback, pause, delete with confirmation; the nav link; the read-only admin."""

from __future__ import annotations

import pytest

from audit.models import AuditRecord
from deployments.models import Deployment
from tests.dashboard.conftest import page_client
from tests.deployments.mgmt_fixtures import create

LIST = "/orgs/acme/deployments"
DETAIL = "/orgs/acme/deployments/chat"

ROUTING = """\
strategy: priority
targets:
  - name: primary
    account: openai-main
    model: gpt-4o
"""


@pytest.fixture
def alice_page(cast):
    return page_client(cast.alice)


@pytest.fixture
def vera_page(cast):
    return page_client(cast.vera)


def test_the_list_shows_deployments_and_the_nav_links_to_it(world, alice_client, vera_page):
    assert create(alice_client).status_code == 201
    page = vera_page.get(LIST)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-nav="deployments"' in html and 'aria-current="page"' in html
    assert ">chat</a>" in html and "openai-main/gpt-4o-mini" in html and "v1" in html
    # A viewer may look, not create: no form.
    assert "Create deployment" not in html
    assert 'data-nav="deployments"' in vera_page.get("/orgs/acme/").content.decode()


def test_pages_of_another_org_are_404_and_anonymous_goes_to_login(world, alice_client, cast):
    assert create(alice_client).status_code == 201
    charlie = page_client(cast.charlie)
    assert charlie.get(LIST).status_code == 404
    assert charlie.get("/orgs/globex/deployments/chat").status_code == 404
    from django.test import Client

    assert Client().get(LIST).status_code == 302


def test_create_through_the_form(world, alice_page):
    form = alice_page.get(LIST).content.decode()
    assert "Create deployment" in form and "account: cheap-llm" in form  # a sample document
    response = alice_page.post(
        LIST, {"name": "chat", "description": "Chat", "config": ROUTING, "comment": "first"}
    )
    assert response.status_code == 302 and response["Location"] == DETAIL
    row = Deployment.all_orgs.get(name="chat")
    assert row.status == "ready" and row.config["targets"][0]["model"] == "gpt-4o"
    record = AuditRecord.objects.get(action="deployment:create")
    assert record.data["source"] == "dashboard" and record.actor_user_id == row.created_by_id


def test_form_errors_are_shown_and_nothing_is_made(world, alice_page):
    bad_yaml = alice_page.post(LIST, {"name": "chat", "config": "targets: [\n"})
    assert bad_yaml.status_code == 400 and "Malformed YAML" in bad_yaml.content.decode()
    foreign = alice_page.post(
        LIST, {"name": "chat", "config": ROUTING.replace("openai-main", "globex-ai")}
    )
    assert foreign.status_code == 400
    assert "targets[0].account: No such provider account." in foreign.content.decode()
    zero = alice_page.post(
        LIST,
        {
            "name": "chat",
            "config": ROUTING.replace("priority", "weighted") + "    weight: 0\n",
        },
    )
    assert zero.status_code == 400 and "weights sum to zero" in zero.content.decode()
    assert not Deployment.all_orgs.exists()


def test_a_viewer_cannot_post(world, vera_page):
    response = vera_page.post(LIST, {"name": "chat", "config": ROUTING})
    assert response.status_code == 403
    assert not Deployment.all_orgs.exists()


def test_detail_edit_rollback_pause_and_delete(world, alice_client, alice_page):
    assert create(alice_client).status_code == 201
    page = alice_page.get(DETAIL)
    assert page.status_code == 200
    html = page.content.decode()
    assert "deployment/chat" in html and 'data-health="primary"' in html
    assert "v1 (current)" in html and "Save as a new version" in html

    edited = alice_page.post(
        DETAIL,
        {"op": "update", "description": "Edited", "config": ROUTING, "comment": "one target"},
    )
    assert edited.status_code == 302
    row = Deployment.all_orgs.get(name="chat")
    assert row.version == 2 and len(row.config["targets"]) == 1 and row.description == "Edited"
    assert "Roll back to v1" in alice_page.get(DETAIL).content.decode()

    rolled = alice_page.post(DETAIL, {"op": "rollback", "version": "1"})
    assert rolled.status_code == 302
    row.refresh_from_db()
    assert row.version == 3 and len(row.config["targets"]) == 2

    assert alice_page.post(DETAIL, {"op": "stop"}).status_code == 302
    row.refresh_from_db()
    assert row.status == "stopped"
    assert alice_page.post(DETAIL, {"op": "resume"}).status_code == 302
    row.refresh_from_db()
    assert row.status == "ready"

    # Delete asks first (the confirmation page), then acts.
    ask = alice_page.post(DETAIL, {"op": "delete"})
    assert ask.status_code == 200 and "Delete deployment chat?" in ask.content.decode()
    assert Deployment.all_orgs.filter(name="chat").exists()
    done = alice_page.post(DETAIL, {"op": "delete", "confirm": "yes"})
    assert done.status_code == 302 and done["Location"] == LIST
    assert not Deployment.all_orgs.exists()


def test_an_edit_the_service_refuses_stays_on_the_form(world, alice_client, alice_page):
    assert create(alice_client).status_code == 201
    response = alice_page.post(
        DETAIL, {"op": "update", "config": ROUTING.replace("gpt-4o", "gpt-5")}
    )
    assert response.status_code == 400
    assert (
        "targets[0].model: &#x27;gpt-5&#x27; is not an enabled model" in response.content.decode()
    )
    assert Deployment.all_orgs.get(name="chat").version == 1


def test_a_viewer_sees_the_detail_but_cannot_change_it(world, alice_client, vera_page):
    assert create(alice_client).status_code == 201
    html = vera_page.get(DETAIL).content.decode()
    assert "Save as a new version" not in html and "Delete deployment" not in html
    assert "strategy: priority" in html
    for op in ("update", "rollback", "stop", "delete"):
        assert vera_page.post(DETAIL, {"op": op, "config": ROUTING}).status_code == 403
    assert Deployment.all_orgs.get(name="chat").version == 1


def test_yaml_export_download(world, alice_client, vera_page):
    assert create(alice_client).status_code == 201
    response = vera_page.get("/orgs/acme/deployments.yaml")
    assert response.status_code == 200
    assert 'filename="deployments-acme.yaml"' in response["Content-Disposition"]
    assert "name: chat" in response.content.decode()


def test_admin_shows_deployments_read_only(world, alice_client, cast):
    assert create(alice_client).status_code == 201
    cast.alice.is_staff = cast.alice.is_superuser = True
    cast.alice.save()
    admin = page_client(cast.alice)
    row = Deployment.all_orgs.get(name="chat")
    listing = admin.get("/admin/deployments/deployment/")
    assert listing.status_code == 200 and "chat" in listing.content.decode()
    change = admin.get(f"/admin/deployments/deployment/{row.pk}/change/")
    assert change.status_code == 200 and "gpt-4o-mini" in change.content.decode()
    assert admin.get("/admin/deployments/deploymentversion/").status_code == 200
    assert admin.get("/admin/deployments/deployment/add/").status_code == 403
    assert admin.post(f"/admin/deployments/deployment/{row.pk}/delete/").status_code == 403
