"""The model-access page edits single rules too: add one with a form (validated like an
import, nothing written on an error), delete one; both need policy:manage."""

from __future__ import annotations

from audit.models import AuditRecord
from keys.models import AccessRule
from orgs.scoping import org_scope

PAGE = "/orgs/acme/access-rules"


def _rules(org) -> list[AccessRule]:
    with org_scope(org):
        return list(AccessRule.objects.prefetch_related("users", "teams"))


def _add(client, **fields):
    return client.post(PAGE, {"op": "add", **fields})


def test_an_admin_adds_a_rule_from_the_form(cast, alice_page):
    response = _add(
        alice_page,
        models="openai-main/gpt-4o, vllm-local/meta-llama/*",
        users="bob",
        description="bob's models",
    )
    assert response.status_code == 302 and response["Location"] == PAGE
    (rule,) = _rules(cast.acme)
    assert rule.model_patterns == ["openai-main/gpt-4o", "vllm-local/meta-llama/*"]
    assert [u.username for u in rule.users.all()] == ["bob"]
    assert rule.description == "bob's models"
    assert AuditRecord.objects.filter(
        org=cast.acme, action="policy:manage", target_id=str(rule.pk)
    ).exists()
    assert b"openai-main/gpt-4o" in alice_page.get(PAGE).content


def test_a_bad_rule_is_refused_with_the_field_named_and_nothing_written(cast, alice_page):
    response = _add(alice_page, models="openai-main/gpt-4o", users="nobody")
    assert response.status_code == 400
    assert "nobody" in response.context["rule_form"].errors["users"][0]
    response = _add(alice_page, models="not a//pattern", teams="")
    assert response.status_code == 400
    assert response.context["rule_form"].errors["models"]
    assert _rules(cast.acme) == []


def test_members_cannot_add_or_delete_rules(cast, alice_page, bob_page):
    assert _add(bob_page, models="openai-main/*", users="bob").status_code == 403
    assert _add(alice_page, models="openai-main/*", users="bob").status_code == 302
    (rule,) = _rules(cast.acme)
    assert bob_page.post(f"{PAGE}/{rule.pk}/delete").status_code == 403
    assert b"Add a rule" not in bob_page.get(PAGE).content
    assert len(_rules(cast.acme)) == 1


def test_an_admin_deletes_a_rule_and_another_orgs_rule_is_404(cast, alice_page, charlie_page):
    _add(alice_page, models="openai-main/*", users="bob")
    (rule,) = _rules(cast.acme)
    assert charlie_page.post(f"/orgs/globex/access-rules/{rule.pk}/delete").status_code == 404
    asked = alice_page.post(f"{PAGE}/{rule.pk}/delete")
    assert asked.status_code == 200 and b'name="confirm" value="yes"' in asked.content
    assert len(_rules(cast.acme)) == 1  # a bare POST only asks
    deleted = alice_page.post(f"{PAGE}/{rule.pk}/delete", {"confirm": "yes"})
    assert deleted.status_code == 302
    assert _rules(cast.acme) == []
