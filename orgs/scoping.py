"""Tenant scope: the organization active in the current context.

Org-owned models inherit ``OrgOwnedModel``. Their default manager ``objects``
returns only rows of the active organization and raises ``OrgScopeError``
when none is active, so a forgotten filter fails loudly instead of leaking.
``all_orgs`` is the explicit cross-org manager (admin, migrations, rollups).
The scope is a context variable, so it works in sync, async and worker code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from django.db import models

if TYPE_CHECKING:
    from orgs.models import Organization


class OrgScopeError(RuntimeError):
    """An org-scoped query or write ran with no (or another) organization active."""


_current_org: ContextVar[Organization | None] = ContextVar("inferia_current_org", default=None)


def current_org() -> Organization:
    """The active organization; raises OrgScopeError when none is active."""
    org = _current_org.get()
    if org is None:
        raise OrgScopeError("no organization scope is active")
    return org


def current_org_or_none() -> Organization | None:
    return _current_org.get()


@contextmanager
def org_scope(org: Organization) -> Iterator[Organization]:
    """Activate ``org`` for the block (nesting restores the outer scope)."""
    token = _current_org.set(org)
    try:
        yield org
    finally:
        _current_org.reset(token)


def activate(org: Organization):
    """Activate ``org`` until ``deactivate(token)``; for request lifecycles."""
    return _current_org.set(org)


def deactivate(token) -> None:
    _current_org.reset(token)


def _refuse_foreign_org(org_id) -> None:
    active = current_org_or_none()
    if active is not None and org_id != active.pk:
        raise OrgScopeError("refusing to write a row of another organization in this scope")


class OrgScopedQuerySet(models.QuerySet):
    """Bulk writes bypass ``save()``: they get the same foreign-org refusal."""

    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        for obj in objs:
            _refuse_foreign_org(obj.org_id)
        return super().bulk_create(objs, *args, **kwargs)

    def update(self, **kwargs):
        # Moving rows to another org is a cross-tenant write.
        if "org" in kwargs:
            _refuse_foreign_org(getattr(kwargs["org"], "pk", kwargs["org"]))
        if "org_id" in kwargs:
            _refuse_foreign_org(kwargs["org_id"])
        return super().update(**kwargs)


_OrgScopedManagerBase = models.Manager.from_queryset(OrgScopedQuerySet)


class OrgScopedManager(_OrgScopedManagerBase):
    def get_queryset(self) -> models.QuerySet:
        org = current_org()
        return super().get_queryset().filter(org_id=org.pk)


class OrgOwnedModel(models.Model):
    """Abstract base for every row that belongs to exactly one organization."""

    org = models.ForeignKey(
        "orgs.Organization", on_delete=models.CASCADE, db_index=True, related_name="+"
    )

    objects = OrgScopedManager()
    # Reads every org; writes of foreign rows are still refused while a scope is active.
    all_orgs = OrgScopedQuerySet.as_manager()

    class Meta:
        abstract = True
        # Related-object access and cascades must not depend on the active scope.
        base_manager_name = "all_orgs"

    def save(self, *args, **kwargs) -> None:
        _refuse_foreign_org(self.org_id)
        super().save(*args, **kwargs)

    def validate_constraints(self, exclude=None) -> None:
        """Model forms (the admin runs with no scope) check unique constraints through
        the default, org-scoped manager: check them in this row's own organization.
        Every unique constraint of an org-owned row holds within one org."""
        if self.org_id is None:
            super().validate_constraints(exclude=exclude)
            return
        with org_scope(self.org):
            super().validate_constraints(exclude=exclude)
