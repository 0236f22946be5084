from __future__ import annotations

from django.apps import AppConfig


class KeysConfig(AppConfig):
    name = "keys"

    def ready(self) -> None:
        # Signals: members leaving drop out of access rules and lose their personal
        # keys; team -> group mirroring.
        from keys import access_rules, grants, services  # noqa: F401
