from __future__ import annotations

from django.apps import AppConfig


class InferiaConfig(AppConfig):
    name = "inferia"
    verbose_name = "Inferia platform"

    def ready(self) -> None:
        # Registers the system checks and the OpenAPI extensions.
        from inferia import checks, schema  # noqa: F401
