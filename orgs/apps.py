from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_roles(sender, **kwargs) -> None:
    from orgs.access import sync_builtin_roles
    from orgs.models import Role

    sync_builtin_roles(Role)


class OrgsConfig(AppConfig):
    name = "orgs"
    verbose_name = "Organizations"

    def ready(self) -> None:
        from orgs import sessions  # noqa: F401  (connects the session-family receivers)

        # Code is the source of truth for built-in roles: resync after every migrate.
        post_migrate.connect(_sync_roles, sender=self, dispatch_uid="orgs-sync-builtin-roles")
