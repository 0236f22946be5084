"""The operator console lists every org's collections and documents (status, progress)
read-only: no add, change or delete that would skip the services."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from knowledge.models import Document, KnowledgeBase
from orgs.models import User
from tests.knowledge.uploads import upload_text, uploaded

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("model", [KnowledgeBase, Document])
def test_collections_and_documents_render_read_only(kb_world, client, model):
    kb_world.create_kb()
    uploaded(upload_text(kb_world.alice, "policy", "Vacation policy."))
    root = User.objects.create_superuser("root", "root@example.com", "a-long-root-passphrase")
    client.force_login(root)
    opts = model._meta
    changelist = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    assert changelist.status_code == 200
    assert changelist.context["cl"].result_count == 1
    page = changelist.content.decode()
    assert ("handbook" if model is KnowledgeBase else "1 / 1") in page
    assert client.get(changelist.request["PATH_INFO"], {"q": "hand"}).status_code == 200
    row = model.all_orgs.get()
    change = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[row.pk]))
    assert change.status_code == 200
    model_admin = admin.site._registry[model]
    assert not model_admin.has_add_permission(change.wsgi_request)
    assert not model_admin.has_change_permission(change.wsgi_request, row)
    assert not model_admin.has_delete_permission(change.wsgi_request, row)
