"""Who may do what with which knowledge base: the one place every edge asks.

Two halves, both required (default deny):
- the permission (role, narrowed by an API key's scopes): ``knowledge_base:view`` to
  list and search, ``knowledge_base:add_data`` to upload or remove documents,
  ``knowledge_base:create`` / ``knowledge_base:delete`` for collections;
- the grant: an access rule naming the subject (user, team, role, service account)
  whose ``knowledge_bases`` match the collection (``keys.access_rules``).

Managers (``knowledge_base:delete`` or ``policy:manage``) see every collection of the
org to administer it, and still search or upload only what a rule grants them. The
gateway's chat retrieval reads ``searchable`` once per principal build (cached under
the org's epoch, so a revoked grant stops at once).
"""

from __future__ import annotations

from django.db.models import QuerySet

from inferia.errors import NotFound, PermissionDenied
from keys import access_rules
from knowledge.models import KnowledgeBase
from orgs.access import Access

VIEW = "knowledge_base:view"
CREATE = "knowledge_base:create"
ADD_DATA = "knowledge_base:add_data"
DELETE = "knowledge_base:delete"


def _granted(access: Access) -> list[str]:
    return access_rules.allowed_knowledge_bases(access_rules.subject_for_access(access))


def searchable(access: Access) -> list[str]:
    """Names of the collections ``access`` may search."""
    return _granted(access) if access.can(VIEW) else []


def is_manager(access: Access) -> bool:
    return access.can(DELETE) or access.can("policy:manage")


def visible(access: Access) -> QuerySet[KnowledgeBase]:
    """The collections ``access`` may see listed: all for managers, else those granted."""
    if is_manager(access):
        return KnowledgeBase.objects.all()
    if not (access.can(VIEW) or access.can(ADD_DATA)):
        return KnowledgeBase.objects.none()
    return KnowledgeBase.objects.filter(name__in=_granted(access))


def get_visible(access: Access, name: str) -> KnowledgeBase:
    """The collection named ``name`` if ``access`` may see it; NOT_FOUND otherwise (a
    collection of another org or one not granted reads as absent)."""
    kb = visible(access).filter(name=name).first()
    if kb is None:
        raise NotFound("Knowledge base not found")
    return kb


def may_search(access: Access, kb: KnowledgeBase) -> bool:
    return access.can(VIEW) and kb.name in _granted(access)


def may_add_data(access: Access, kb: KnowledgeBase) -> bool:
    return access.can(ADD_DATA) and kb.name in _granted(access)


def require_search(access: Access, kb: KnowledgeBase) -> None:
    access.require(VIEW)
    if not may_search(access, kb):
        raise PermissionDenied(f"No access rule lets you search knowledge base {kb.name}")


def require_add_data(access: Access, kb: KnowledgeBase) -> None:
    access.require(ADD_DATA)
    if not may_add_data(access, kb):
        raise PermissionDenied(f"No access rule lets you add data to knowledge base {kb.name}")
